// BLAKE3-256 (default, unkeyed mode) over a whole Uint8Array, written from the BLAKE3
// specification for the offline evidence player: the recording's hash chain and the ledger
// rows are BLAKE3, and browsers have no BLAKE3 of their own.
"use strict";
const BLAKE3 = (() => {
  const IV = new Uint32Array([
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
  ]);
  const PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
  const CHUNK_START = 1, CHUNK_END = 2, PARENT = 4, ROOT = 8;
  const CHUNK_LEN = 1024, BLOCK_LEN = 64;

  function g(s, a, b, c, d, x, y) {
    s[a] = (s[a] + s[b] + x) | 0;
    s[d] ^= s[a]; s[d] = (s[d] >>> 16) | (s[d] << 16);
    s[c] = (s[c] + s[d]) | 0;
    s[b] ^= s[c]; s[b] = (s[b] >>> 12) | (s[b] << 20);
    s[a] = (s[a] + s[b] + y) | 0;
    s[d] ^= s[a]; s[d] = (s[d] >>> 8) | (s[d] << 24);
    s[c] = (s[c] + s[d]) | 0;
    s[b] ^= s[c]; s[b] = (s[b] >>> 7) | (s[b] << 25);
  }

  // The compression function: 16 output words.
  function compress(cv, block, counter, blockLen, flags) {
    const s = new Uint32Array(16);
    s.set(cv, 0);
    s.set(IV.subarray(0, 4), 8);
    s[12] = counter >>> 0;
    s[13] = Math.floor(counter / 0x100000000) >>> 0;
    s[14] = blockLen;
    s[15] = flags;
    let m = Uint32Array.from(block);
    for (let round = 0; round < 7; round++) {
      g(s, 0, 4, 8, 12, m[0], m[1]);
      g(s, 1, 5, 9, 13, m[2], m[3]);
      g(s, 2, 6, 10, 14, m[4], m[5]);
      g(s, 3, 7, 11, 15, m[6], m[7]);
      g(s, 0, 5, 10, 15, m[8], m[9]);
      g(s, 1, 6, 11, 12, m[10], m[11]);
      g(s, 2, 7, 8, 13, m[12], m[13]);
      g(s, 3, 4, 9, 14, m[14], m[15]);
      if (round < 6) {
        const next = new Uint32Array(16);
        for (let i = 0; i < 16; i++) next[i] = m[PERMUTATION[i]];
        m = next;
      }
    }
    for (let i = 0; i < 8; i++) {
      s[i] ^= s[i + 8];
      s[i + 8] ^= cv[i];
    }
    return s;
  }

  // A 64-byte block of `bytes` from `at` (zero-padded) as little-endian words.
  function blockWords(bytes, at, len) {
    const w = new Uint32Array(16);
    for (let i = 0; i < len; i++) w[i >> 2] |= bytes[at + i] << (8 * (i & 3));
    return w;
  }

  // What a node needs to produce either its chaining value or, at the root, the hash.
  function chunkOutput(bytes, chunkIndex) {
    const start = chunkIndex * CHUNK_LEN;
    const end = Math.min(bytes.length, start + CHUNK_LEN);
    const blocks = Math.max(1, Math.ceil((end - start) / BLOCK_LEN));
    let cv = IV;
    for (let b = 0; b < blocks - 1; b++) {
      const flags = b === 0 ? CHUNK_START : 0;
      const words = blockWords(bytes, start + b * BLOCK_LEN, BLOCK_LEN);
      cv = compress(cv, words, chunkIndex, BLOCK_LEN, flags).subarray(0, 8);
    }
    const lastAt = start + (blocks - 1) * BLOCK_LEN;
    const lastLen = end - lastAt;
    return {
      cv,
      block: blockWords(bytes, lastAt, lastLen),
      counter: chunkIndex,
      blockLen: lastLen,
      flags: (blocks === 1 ? CHUNK_START : 0) | CHUNK_END,
    };
  }

  function chainingValue(o) {
    return compress(o.cv, o.block, o.counter, o.blockLen, o.flags).subarray(0, 8);
  }

  function parentOutput(left, right) {
    const block = new Uint32Array(16);
    block.set(left, 0);
    block.set(right, 8);
    return { cv: IV, block, counter: 0, blockLen: BLOCK_LEN, flags: PARENT };
  }

  // BLAKE3-256 of `bytes` (a Uint8Array): 32 bytes.
  function hash(bytes) {
    const chunks = Math.max(1, Math.ceil(bytes.length / CHUNK_LEN));
    const stack = [];
    for (let i = 0; i < chunks - 1; i++) {
      let cv = chainingValue(chunkOutput(bytes, i));
      // Merge completed subtrees: one per trailing zero bit of the chunk count so far.
      let total = i + 1;
      while ((total & 1) === 0) {
        cv = chainingValue(parentOutput(stack.pop(), cv));
        total >>>= 1;
      }
      stack.push(cv);
    }
    let out = chunkOutput(bytes, chunks - 1);
    while (stack.length > 0) out = parentOutput(stack.pop(), chainingValue(out));
    const words = compress(out.cv, out.block, out.counter, out.blockLen, out.flags | ROOT);
    const digest = new Uint8Array(32);
    for (let i = 0; i < 32; i++) digest[i] = (words[i >> 2] >>> (8 * (i & 3))) & 0xff;
    return digest;
  }

  return { hash };
})();
if (typeof module !== "undefined") module.exports = BLAKE3;
