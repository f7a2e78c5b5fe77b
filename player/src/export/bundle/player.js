// The offline evidence player: verifies the bundled recording (hash chain and ed25519
// signature, as docs/recording-format.md specifies), the ledger rows that account for it and
// the signed checkpoint that fixes them, then plays the pictures rendered from it. Nothing
// here reaches the network: everything is in the page.
"use strict";
(() => {
  const evidence = JSON.parse(document.getElementById("evidence").textContent);
  const $ = (id) => document.getElementById(id);
  const enc = new TextEncoder();

  // ----- bytes -----
  function fromBase64(text) {
    const bin = atob(text);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }
  function fromHex(text) {
    if (typeof text !== "string" || text.length % 2 !== 0 || /[^0-9a-f]/i.test(text)) return null;
    const out = new Uint8Array(text.length / 2);
    for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
    return out;
  }
  const toHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  function concat(parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }
  function u32(v) { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v, true); return b; }
  function u64(v) { const b = new Uint8Array(8); new DataView(b.buffer).setBigUint64(0, BigInt(v), true); return b; }
  function i64(v) { const b = new Uint8Array(8); new DataView(b.buffer).setBigInt64(0, BigInt(v), true); return b; }

  // SK: and the first 16 bytes of H(key), in groups of four hex digits.
  function fingerprint(key) {
    const h = toHex(BLAKE3.hash(key).subarray(0, 16));
    return "SK:" + h.match(/.{4}/g).join(":");
  }

  async function ed25519Verify(key, signature, message) {
    if (!window.crypto || !crypto.subtle) throw new Error("this browser has no Web Crypto");
    const k = await crypto.subtle.importKey("raw", key, { name: "Ed25519" }, false, ["verify"]);
    return crypto.subtle.verify({ name: "Ed25519" }, k, signature, message);
  }

  // ----- the recording -----
  const FILE_MAGIC = [0x89, 0x53, 0x4b, 0x52, 0x45, 0x43, 0x0d, 0x0a];
  const SKCK = [0x53, 0x4b, 0x43, 0x4b]; // a chunk of format version 1
  const SKC2 = [0x53, 0x4b, 0x43, 0x32]; // a chunk of format version 2
  const SKTR = [0x53, 0x4b, 0x54, 0x52];
  const SKRECEND = [0x53, 0x4b, 0x52, 0x45, 0x43, 0x45, 0x4e, 0x44];
  const TRAILER_FIXED_LEN = 89;
  const SIGNATURE_CONTEXT = enc.encode("sekisho-recording-trailer-v1\0");

  // Walks header, chunks and trailer, recomputing every hash; the first problem is the answer.
  async function verifyRecording(bytes, trusted) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const has = (at, magic) => at + magic.length <= bytes.length && magic.every((m, i) => bytes[at + i] === m);
    const bad = (why) => ({ state: "tampered", why });
    if (!has(0, FILE_MAGIC)) return bad("not a Sekisho recording (file magic)");
    if (bytes.length < 14) return bad("cut inside the header");
    const version = view.getUint16(8, true);
    if (version !== 1 && version !== 2) return bad("unknown format version");
    const bodyLen = view.getUint32(10, true);
    if (bodyLen > 65536 || 14 + bodyLen + 32 > bytes.length) return bad("header length out of range");
    const headerHash = BLAKE3.hash(bytes.subarray(0, 14 + bodyLen));
    if (!equal(headerHash, bytes.subarray(14 + bodyLen, 14 + bodyLen + 32))) return bad("header hash does not match");
    let at = 14 + bodyLen + 32;
    let chain = headerHash;
    let chunks = 0;
    // Version 1: fixed-width fields, the whole chain hash stored. Version 2: a length byte,
    // LEB128 fields (seq, first time, span, records, uncompressed, compressed, history) and
    // the chain hash's first 8 bytes (the chain itself runs on whole hashes).
    const leb128 = (from, to) => {
      const values = [];
      let v = 0n, shift = 0n;
      for (let i = from; i < to; i++) {
        v |= BigInt(bytes[i] & 0x7f) << shift;
        shift += 7n;
        if ((bytes[i] & 0x80) === 0) { values.push(v); v = 0n; shift = 0n; }
      }
      return values;
    };
    while (has(at, version === 1 ? SKCK : SKC2)) {
      let seq, clen, prefix, checkLen;
      if (version === 1) {
        if (at + 36 > bytes.length) return bad("cut inside chunk " + chunks);
        seq = view.getUint32(at + 4, true);
        clen = view.getUint32(at + 32, true);
        prefix = 36;
        checkLen = 32;
      } else {
        if (at + 5 > bytes.length) return bad("cut inside chunk " + chunks);
        prefix = 5 + bytes[at + 4];
        if (at + prefix > bytes.length) return bad("cut inside chunk " + chunks);
        const fields = leb128(at + 5, at + prefix);
        if (fields.length !== 7) return bad("chunk " + chunks + ": malformed prefix");
        seq = Number(fields[0]);
        clen = Number(fields[5]);
        checkLen = 8;
      }
      if (seq !== chunks) return bad("chunk " + chunks + " out of sequence");
      const end = at + prefix + clen;
      if (end + checkLen > bytes.length) return bad("cut inside chunk " + chunks);
      const expected = BLAKE3.hash(concat([chain, bytes.subarray(at, end)]));
      if (!equal(expected.subarray(0, checkLen), bytes.subarray(end, end + checkLen))) return bad("chunk " + chunks + ": chain hash does not match");
      chain = expected;
      chunks += 1;
      at = end + checkLen;
    }
    if (at === bytes.length) {
      return { state: "unsealed", why: "no trailer: the recording was not sealed", chunks, finalHash: toHex(chain) };
    }
    if (!has(at, SKTR) || at + 8 > bytes.length) return bad("unexpected bytes after chunk " + chunks);
    const trailerLen = view.getUint32(at + 4, true);
    const body = bytes.subarray(at + 8, at + 8 + trailerLen);
    const sigAt = at + 8 + trailerLen;
    if (trailerLen < TRAILER_FIXED_LEN || sigAt + 64 + 16 !== bytes.length) return bad("trailer length out of range");
    const bodyView = new DataView(body.buffer, body.byteOffset, body.byteLength);
    const flags = body[0];
    const chunkCount = bodyView.getUint32(1, true);
    const records = bodyView.getBigUint64(5, true);
    const endUs = bodyView.getBigUint64(13, true);
    const finalHash = body.subarray(21, 53);
    const key = body.subarray(53, 85);
    const indexCount = bodyView.getUint32(85, true);
    if (trailerLen !== TRAILER_FIXED_LEN + 20 * indexCount) return bad("trailer index length does not match");
    if ((flags & ~1) !== 0) return bad("unknown trailer flags");
    if (chunkCount !== chunks) return bad("the trailer counts " + chunkCount + " chunks, the file has " + chunks);
    if (!equal(finalHash, chain)) return bad("the trailer's final hash does not match the chain");
    if (view.getBigUint64(sigAt + 64, true) !== BigInt(at)) return bad("trailer offset does not match");
    if (!has(sigAt + 72, SKRECEND)) return bad("end magic missing");
    const message = concat([SIGNATURE_CONTEXT, headerHash, BLAKE3.hash(body)]);
    let ok;
    try {
      ok = await ed25519Verify(key, bytes.subarray(sigAt, sigAt + 64), message);
    } catch (e) {
      return { state: "unverifiable", why: "cannot check the signature: " + e.message };
    }
    if (!ok) return bad("the signature does not match");
    const signer = toHex(key);
    if (!trusted.includes(signer)) return bad("signed by a key this bundle does not trust (" + fingerprint(key) + ")");
    return {
      state: "verified",
      why: "hash chain of " + chunks + " chunks and signature hold",
      chunks, records: records.toString(), endUs: Number(endUs),
      finalHash: toHex(chain), signer, sealedAfterInterruption: (flags & 1) === 1,
    };
  }

  // ----- the ledger -----
  const ENTRY_DOMAIN = enc.encode("sekisho ledger entry v1\n");
  const CHECKPOINT_DOMAIN = enc.encode("sekisho ledger checkpoint v1\n");
  function text(s) {
    if (s === null || s === undefined) return u32(0xffffffff);
    const b = enc.encode(s);
    return concat([u32(b.length), b]);
  }
  const optI64 = (v) => (v === null || v === undefined ? new Uint8Array([0]) : concat([new Uint8Array([1]), i64(v)]));

  function entryHash(e) {
    const prev = fromHex(e.prev_hash);
    if (!prev || prev.length !== 32) return null;
    return BLAKE3.hash(concat([
      ENTRY_DOMAIN, u64(e.seq), prev, i64(e.at_us),
      text(e.instance), text(e.kind), text(e.session_id), text(e.location), text(e.recording_hash),
      optI64(e.size), optI64(e.started_at_us), optI64(e.ended_at_us), text(e.signer), text(e.detail),
    ]));
  }

  // The rows run without a gap to the checkpoint, each hash recomputes, the checkpoint's
  // signature holds under a trusted key, and a row seals this recording with its final hash.
  async function verifyLedger(ledger, recording, sessionId, trusted) {
    if (!ledger) return { state: "incomplete", why: "the bundle carries no ledger rows" };
    const bad = (why) => ({ state: "tampered", why });
    const { entries, checkpoint } = ledger;
    if (!entries.length) return { state: "incomplete", why: "no ledger row names this session" };
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i];
      const h = entryHash(e);
      if (!h || toHex(h) !== e.hash) return bad("ledger row " + e.seq + " does not hash to its stated hash");
      if (i > 0 && (String(BigInt(entries[i - 1].seq) + 1n) !== String(e.seq) || entries[i - 1].hash !== e.prev_hash)) {
        return bad("ledger rows " + entries[i - 1].seq + " and " + e.seq + " do not chain");
      }
    }
    if (!checkpoint) return { state: "incomplete", why: "no signed checkpoint covers the rows yet" };
    const last = entries[entries.length - 1];
    if (String(last.seq) !== String(checkpoint.seq) || last.hash !== checkpoint.head_hash) {
      return bad("the rows do not end at the checkpoint's head");
    }
    const key = fromHex(checkpoint.public_key);
    const sig = fromHex(checkpoint.signature);
    if (!key || key.length !== 32 || !sig || sig.length !== 64) return bad("the checkpoint is malformed");
    const message = concat([
      CHECKPOINT_DOMAIN, u64(checkpoint.seq), enc.encode(checkpoint.head_hash), i64(checkpoint.at_us),
      enc.encode(checkpoint.instance),
    ]);
    let ok;
    try {
      ok = await ed25519Verify(key, sig, message);
    } catch (e) {
      return { state: "unverifiable", why: "cannot check the checkpoint: " + e.message };
    }
    if (!ok) return bad("the checkpoint's signature does not match");
    if (!trusted.includes(checkpoint.public_key)) return bad("the checkpoint is signed by an untrusted key");
    const sealed = entries.filter((e) => e.session_id === sessionId && e.kind === "recording-sealed");
    const row = sealed[sealed.length - 1];
    if (!row) return { state: "incomplete", why: "no ledger row seals this session's recording" };
    if (recording.finalHash && row.recording_hash !== recording.finalHash) {
      return bad("ledger row " + row.seq + " seals a different recording");
    }
    if (recording.signer && row.signer !== recording.signer) return bad("ledger row " + row.seq + " names another signer");
    return {
      state: "verified",
      why: "row " + row.seq + " seals this recording; rows to " + checkpoint.seq + " are fixed by the checkpoint signed " +
        checkpoint.at + " by " + checkpoint.instance,
    };
  }

  // ----- the page -----
  const STATUS_TEXT = {
    verified: "verified · 検証済み",
    tampered: "tampered · 改ざんあり",
    incomplete: "incomplete · 未完了",
    unverifiable: "unverifiable · 検証できません",
  };

  function row(table, cells) {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c === null || c === undefined ? "" : String(c);
      tr.appendChild(td);
    }
    $(table).appendChild(tr);
  }

  function check(label, result) {
    const li = document.createElement("li");
    li.dataset.state = result.state;
    li.textContent = label + ": " + result.state + " (" + result.why + ")";
    $("checks").appendChild(li);
  }

  function describe() {
    const s = evidence.session;
    document.title = "Sekisho evidence " + s.id;
    const facts = [
      ["Session", s.id], ["Protocol", s.protocol], ["User", s.user], ["Contractor", s.contractor],
      ["Source", s.source], ["Target", s.target], ["Started", s.started_at], ["Ended", s.ended_at],
      ["Outcome", s.outcome], ["Exported", evidence.exported_at + " by " + evidence.exported_by],
    ];
    for (const [k, v] of facts) row("facts", [k, v]);
    for (const d of evidence.decisions) row("decisions", [d.at, d.verdict, d.rule, d.reason]);
    for (const e of evidence.events) row("events", [e.at, e.kind, e.detail]);
    if (evidence.ledger) {
      for (const e of evidence.ledger.entries) row("ledger", [e.seq, e.at, e.kind, e.session_id, e.recording_hash]);
    }
    $("keys").textContent = evidence.trusted_keys.map((k) => fingerprint(fromHex(k)) + "  " + k).join("\n");
  }

  async function verifyAll(bytes) {
    const recording = await verifyRecording(bytes, evidence.trusted_keys);
    const ledger = await verifyLedger(evidence.ledger, recording, evidence.session.id, evidence.trusted_keys);
    const pictures = recording.finalHash === evidence.playback.rendered_from
      ? { state: "verified", why: "rendered from this recording" }
      : { state: "tampered", why: "the pictures were rendered from another recording" };
    const results = [recording, ledger, pictures];
    let overall = "verified";
    if (results.some((r) => r.state === "tampered")) overall = "tampered";
    else if (results.some((r) => r.state === "unverifiable")) overall = "unverifiable";
    else if (results.some((r) => r.state !== "verified")) overall = "incomplete";
    return { overall, recording, ledger, pictures };
  }

  // ----- playback -----
  const playback = evidence.playback;
  const frames = playback.frames;
  let position = 0; // ms
  let playing = false;
  let lastTick = 0;
  let shown = -1;

  function frameAt(ms) {
    let lo = 0, hi = frames.length - 1, found = 0;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (frames[mid].ms <= ms) { found = mid; lo = mid + 1; } else hi = mid - 1;
    }
    return found;
  }
  const clock = (ms) => {
    const s = Math.floor(ms / 1000);
    return String(Math.floor(s / 60)).padStart(2, "0") + ":" + String(s % 60).padStart(2, "0");
  };
  function show() {
    const i = frameAt(position);
    if (i !== shown && frames.length) {
      shown = i;
      if (playback.kind === "pictures") $("screen").src = "data:image/png;base64," + frames[i].png;
      else $("terminal").textContent = frames[i].text;
      document.body.dataset.frame = String(i);
    }
    $("seek").value = String(position);
    $("time").textContent = clock(position) + " / " + clock(playback.end_ms);
  }
  function tick(now) {
    if (!playing) return;
    position = Math.min(playback.end_ms, position + (now - lastTick) * Number($("speed").value));
    lastTick = now;
    show();
    if (position >= playback.end_ms) { playing = false; $("play").textContent = "Play ▶"; return; }
    requestAnimationFrame(tick);
  }
  function setPlaying(on) {
    playing = on;
    $("play").textContent = on ? "Pause ❚❚" : "Play ▶";
    if (on) {
      if (position >= playback.end_ms) position = 0;
      lastTick = performance.now();
      requestAnimationFrame(tick);
    }
  }

  async function main() {
    describe();
    $("seek").max = String(playback.end_ms);
    $(playback.kind === "pictures" ? "terminal" : "screen").hidden = true;
    $("play").addEventListener("click", () => setPlaying(!playing));
    $("seek").addEventListener("input", () => { position = Number($("seek").value); show(); });
    document.addEventListener("keydown", (e) => {
      if (e.key === " " && e.target.tagName !== "SELECT") { e.preventDefault(); setPlaying(!playing); }
    });
    show();
    let bytes;
    try {
      bytes = fromBase64(evidence.recording.bytes_b64);
    } catch (e) {
      bytes = new Uint8Array(0);
    }
    const result = await verifyAll(bytes);
    check("Recording " + evidence.recording.name, result.recording);
    check("Ledger", result.ledger);
    check("Pictures", result.pictures);
    if (result.recording.finalHash) $("hash").textContent = result.recording.finalHash;
    document.body.dataset.status = result.overall;
    $("status").textContent = STATUS_TEXT[result.overall];
    $("status").className = "status " + result.overall;
  }
  main().catch((e) => {
    document.body.dataset.status = "unverifiable";
    $("status").textContent = STATUS_TEXT.unverifiable + " (" + e.message + ")";
  });
})();
