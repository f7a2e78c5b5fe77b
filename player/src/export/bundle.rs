//! Evidence bundles (`sekisho export SESSION --format bundle`): one ZIP an auditor can hand to
//! someone without an account, which proves itself without Sekisho.
//!
//! The archive holds:
//! - `SESSION.skrec`: the recording, byte for byte;
//! - `public-key.txt`: the keys the exporting instance trusts (its cluster's signers), hex and
//!   fingerprint, to compare with the key the auditor was given;
//! - `ledger.json`: the ledger rows from this session's first row up to a signed checkpoint,
//!   and that checkpoint; the rows in between belong to other sessions but cannot be left
//!   out, since each row's hash covers the one before;
//! - `session.json`: the catalogue's session row, its decisions and its events;
//! - `player.html`: one self-contained page (no network, no server: its Content Security
//!   Policy forbids any fetch) that recomputes the recording's BLAKE3 hash chain, checks its
//!   ed25519 signature and the checkpoint's with the browser's Web Crypto, recomputes the
//!   ledger rows, and plays pictures the exporter drew from the recording;
//! - `README.txt`: what each file is and how to check it by other means.
//!
//! The pictures are a rendering, not the evidence: the page checks that they were drawn from
//! the recording it verifies (by its final hash), and `sekisho recording verify` checks the
//! same `.skrec` independently.

use std::io::{Seek, Write};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use recorder::ledger::{Checkpoint, Entry};
use recorder::reader::Recording;
use recorder::signing::VerifyingKey;
use serde_json::{Value, json};
use zip::write::SimpleFileOptions;

use super::image::{Graphical, ImageError, write_png};
use crate::terminal::{PlayerError, StepKind, TERMINAL_PROTOCOLS, TerminalReplay};

const PLAYER_TEMPLATE: &str = include_str!("bundle/player.html");
const PLAYER_JS: &str = include_str!("bundle/player.js");
const BLAKE3_JS: &str = include_str!("bundle/blake3.js");

/// Identifies the layout of `player.html`'s evidence block and of `ledger.json`.
pub const BUNDLE_FORMAT: &str = "sekisho-evidence-bundle-1";

/// Pictures of a graphical session are drawn at most this often: a screen of administration
/// work changes at human pace, and two pictures a second keep typing readable.
const PICTURE_INTERVAL_US: u64 = 500_000;
/// At most this many pictures (longer sessions are sampled more sparsely), so that a bundle
/// of a day-long session stays a file a browser opens.
const MAX_PICTURES: u64 = 1_800;
/// A terminal screen is taken at most this often.
const SCREEN_INTERVAL_US: u64 = 100_000;
/// At most this many terminal screens.
const MAX_SCREENS: usize = 20_000;

/// Why a bundle cannot be written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BundleError {
    /// The recording cannot be read at all.
    #[error(transparent)]
    Read(#[from] recorder::reader::ReadError),
    /// Pictures cannot be drawn from it.
    #[error(transparent)]
    Pictures(#[from] ImageError),
    /// The terminal recording cannot be replayed.
    #[error(transparent)]
    Terminal(#[from] PlayerError),
    /// The archive cannot be written.
    #[error("cannot write the archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The session facts do not serialise.
    #[error("cannot encode the evidence: {0}")]
    Json(#[from] serde_json::Error),
}

/// The ledger rows that account for a recording and the checkpoint that fixes them.
#[derive(Debug, Clone, Default)]
pub struct LedgerProof {
    /// Consecutive rows, from the session's first row to the checkpoint's head (or to the
    /// ledger's head when no checkpoint covers them yet).
    pub entries: Vec<Entry>,
    /// The earliest checkpoint that covers the session's last row.
    pub checkpoint: Option<Checkpoint>,
}

/// What goes into a bundle.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The session id, as the catalogue and the ledger write it.
    pub session_id: String,
    /// The recording's bytes.
    pub recording: Vec<u8>,
    /// The catalogue's session row (JSON).
    pub session: Value,
    /// Its decisions (JSON array).
    pub decisions: Value,
    /// Its events (JSON array).
    pub events: Value,
    /// The signing keys the exporter trusts.
    pub trusted_keys: Vec<VerifyingKey>,
    /// The ledger rows and checkpoint, when the catalogue has them.
    pub ledger: Option<LedgerProof>,
    /// Who exported (an instance or a user).
    pub exported_by: String,
    /// When.
    pub exported_at: DateTime<Utc>,
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleSummary {
    /// The exporter's own verdict on the recording (`intact`, `tampered`, …).
    pub recording_state: String,
    /// Pictures or screens in the offline player.
    pub frames: usize,
    /// Ledger rows included.
    pub ledger_rows: usize,
    /// Whether a signed checkpoint covers the session.
    pub checkpointed: bool,
}

/// The offline player's timeline: pictures (PNG) or terminal screens (text), by time.
#[derive(Debug, Clone)]
pub enum Playback {
    /// PNG pictures of an RDP or VNC screen.
    Pictures(Vec<(u64, Vec<u8>)>),
    /// Text screens of a terminal.
    Screens(Vec<(u64, String)>),
}

impl Playback {
    /// Draws the timeline of a recording.
    pub fn render(bytes: &[u8]) -> Result<(Playback, u64), BundleError> {
        let protocol = Recording::parse(bytes)?.header().header.protocol.clone();
        if TERMINAL_PROTOCOLS.contains(&protocol.as_str()) {
            let replay = TerminalReplay::open(bytes)?;
            return Ok((terminal_screens(&replay), replay.end_us()));
        }
        let mut g = Graphical::open(bytes)?;
        let end = g.end_us();
        Ok((pictures(&mut g)?, end))
    }

    fn len(&self) -> usize {
        match self {
            Playback::Pictures(p) => p.len(),
            Playback::Screens(s) => s.len(),
        }
    }

    fn to_json(&self) -> Value {
        let b64 = base64::engine::general_purpose::STANDARD;
        match self {
            Playback::Pictures(p) => Value::Array(
                p.iter()
                    .map(|(us, png)| json!({ "ms": us / 1000, "png": b64.encode(png) }))
                    .collect(),
            ),
            Playback::Screens(s) => Value::Array(
                s.iter()
                    .map(|(us, text)| json!({ "ms": us / 1000, "text": text }))
                    .collect(),
            ),
        }
    }
}

/// A picture every [`PICTURE_INTERVAL_US`] (or sparser, for long sessions), skipping pictures
/// equal to the previous one, plus the last picture.
fn pictures(g: &mut Graphical) -> Result<Playback, BundleError> {
    let end = g.end_us();
    let step = PICTURE_INTERVAL_US.max(end.div_ceil(MAX_PICTURES));
    let mut out = Vec::new();
    let mut previous: Option<blake3::Hash> = None;
    let mut t = 0u64;
    loop {
        let frame = g.frame_at(t)?;
        let digest = blake3::hash(&frame.rgba);
        if previous != Some(digest) {
            let mut png = Vec::new();
            write_png(&frame, &mut png)?;
            out.push((t, png));
            previous = Some(digest);
        }
        if t >= end {
            break;
        }
        t = (t + step).min(end);
    }
    Ok(Playback::Pictures(out))
}

/// The screen after each burst of output (at most every [`SCREEN_INTERVAL_US`]), skipping
/// screens equal to the previous one. Typed keys are not shown apart from their echo, as in
/// the other exports: a password typed at a prompt is not echoed.
fn terminal_screens(replay: &TerminalReplay) -> Playback {
    let mut times: Vec<u64> = vec![0];
    for step in replay.steps() {
        if matches!(step.kind, StepKind::Output(_) | StepKind::Resize { .. })
            && times
                .last()
                .is_none_or(|&t| step.at_us >= t + SCREEN_INTERVAL_US)
        {
            times.push(step.at_us);
        }
    }
    times.push(replay.end_us());
    if times.len() > MAX_SCREENS {
        let keep = times.len().div_ceil(MAX_SCREENS);
        let last = replay.end_us();
        times = times.into_iter().step_by(keep).collect();
        times.push(last);
    }
    let mut out: Vec<(u64, String)> = Vec::new();
    for t in times {
        // A burst's screen is taken once it has drawn: just before the next sample.
        let text = replay.screen_at(t).text();
        if out.last().is_none_or(|(_, prev)| *prev != text) {
            out.push((t, text));
        }
    }
    Playback::Screens(out)
}

/// JSON for one ledger row, with times as microsecond strings: what the page hashes must be
/// exactly what the ledger hashed, and JSON numbers lose precision past 2^53.
fn entry_json(e: &Entry) -> Value {
    let us = |t: &DateTime<Utc>| t.timestamp_micros().to_string();
    let c = &e.content;
    json!({
        "seq": e.seq,
        "at": c.at,
        "at_us": us(&c.at),
        "instance": c.instance,
        "kind": c.kind.as_str(),
        "session_id": c.session_id.map(|u| u.to_string()),
        "location": c.location,
        "recording_hash": c.recording_hash,
        // As the ledger hashes it: an i64, saturated.
        "size": c.size.map(|s| i64::try_from(s).unwrap_or(i64::MAX).to_string()),
        "started_at_us": c.started_at.as_ref().map(us),
        "ended_at_us": c.ended_at.as_ref().map(us),
        "signer": c.signer,
        "detail": c.detail,
        "prev_hash": e.prev_hash,
        "hash": e.hash,
    })
}

fn checkpoint_json(cp: &Checkpoint) -> Value {
    json!({
        "seq": cp.seq,
        "head_hash": cp.head_hash,
        "at": cp.at,
        "at_us": cp.at.timestamp_micros().to_string(),
        "instance": cp.instance,
        "public_key": cp.public_key,
        "signature": cp.signature,
    })
}

fn ledger_json(proof: Option<&LedgerProof>) -> Value {
    match proof {
        None => Value::Null,
        Some(p) => json!({
            "format": BUNDLE_FORMAT,
            "entries": p.entries.iter().map(entry_json).collect::<Vec<_>>(),
            "checkpoint": p.checkpoint.as_ref().map(checkpoint_json),
        }),
    }
}

/// Makes JSON safe inside `<script>`: `<`, `>` and `&` only occur inside JSON strings, where
/// their `\u` escapes mean the same, so no recorded name can close the script element.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// The self-contained offline player page.
pub fn offline_player(
    evidence: &Evidence,
    playback: &Playback,
    end_us: u64,
    final_hash: Option<&str>,
) -> Result<String, BundleError> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let data = json!({
        "format": BUNDLE_FORMAT,
        "exported_at": evidence.exported_at,
        "exported_by": evidence.exported_by,
        "session": evidence.session,
        "decisions": evidence.decisions,
        "events": evidence.events,
        "recording": {
            "name": recording_name(evidence),
            "bytes_b64": b64.encode(&evidence.recording),
        },
        "trusted_keys": evidence.trusted_keys.iter().map(|k| hex::encode(k.as_bytes())).collect::<Vec<_>>(),
        "ledger": ledger_json(evidence.ledger.as_ref()),
        "playback": {
            "kind": match playback { Playback::Pictures(_) => "pictures", Playback::Screens(_) => "text" },
            "end_ms": end_us / 1000,
            "rendered_from": final_hash,
            "frames": playback.to_json(),
        },
    });
    let data = script_safe(&serde_json::to_string(&data)?);
    // The scripts first, the evidence last: its text can never be taken for a placeholder.
    Ok(PLAYER_TEMPLATE
        .replacen("/*BLAKE3*/", BLAKE3_JS, 1)
        .replacen("/*PLAYER*/", PLAYER_JS, 1)
        .replacen("/*EVIDENCE*/", &data, 1))
}

fn recording_name(evidence: &Evidence) -> String {
    format!("{}.skrec", evidence.session_id)
}

fn public_key_text(keys: &[VerifyingKey]) -> String {
    let mut s = String::from(
        "# The ed25519 keys (hex) whose signatures this bundle accepts, with their fingerprints.\n\
         # Compare them with the key the prefecture gave you before trusting anything here.\n",
    );
    for k in keys {
        s.push_str(&format!(
            "{}  {}\n",
            hex::encode(k.as_bytes()),
            recorder::signing::fingerprint(k)
        ));
    }
    s
}

fn readme(evidence: &Evidence, summary: &BundleSummary) -> String {
    let name = recording_name(evidence);
    format!(
        "Sekisho evidence bundle ({BUNDLE_FORMAT})\n\
         Session {id}, exported {at} by {by}.\n\
         \n\
         player.html      open it in a browser (no network is used): it verifies the recording,\n\
         \x20                the ledger rows and the checkpoint, and replays the session.\n\
         {name}  the recording ({state} when exported). Check it with\n\
         \x20                sekisho recording verify {name} --key KEY\n\
         public-key.txt   the signing keys the exporter trusts; compare with the key you hold.\n\
         ledger.json      ledger rows {rows} and the signed checkpoint that fixes them{cp}.\n\
         session.json     the session as catalogued, its decisions and events.\n\
         \n\
         The recording format is specified in docs/recording-format.md, the ledger in\n\
         docs/ledger.md, of the Sekisho sources.\n",
        id = evidence.session_id,
        at = evidence
            .exported_at
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        by = evidence.exported_by,
        state = summary.recording_state,
        rows = match (
            evidence.ledger.as_ref().and_then(|l| l.entries.first()),
            evidence.ledger.as_ref().and_then(|l| l.entries.last()),
        ) {
            (Some(a), Some(b)) => format!("{}–{}", a.seq, b.seq),
            _ => "(none)".to_owned(),
        },
        cp = if summary.checkpointed {
            ""
        } else {
            " (none yet: no checkpoint covers this session)"
        },
    )
}

/// Writes the bundle as a ZIP.
pub fn write_bundle<W: Write + Seek>(
    evidence: &Evidence,
    out: W,
) -> Result<BundleSummary, BundleError> {
    // Verified against whichever trusted key signed it: a cluster has one key per instance.
    let mut report = recorder::verify(&evidence.recording, None);
    let trusted: Vec<String> = evidence
        .trusted_keys
        .iter()
        .map(|k| hex::encode(k.as_bytes()))
        .collect();
    let mut recording_state = report.state.as_str().to_owned();
    if let Some(signer) = report.signer.as_mut() {
        let known = trusted.contains(&signer.public_key);
        signer.trusted = Some(known);
        if !known {
            recording_state = format!("{recording_state}, signed by an untrusted key");
        }
    }
    let (playback, end_us) = Playback::render(&evidence.recording)?;
    let summary = BundleSummary {
        recording_state,
        frames: playback.len(),
        ledger_rows: evidence.ledger.as_ref().map_or(0, |l| l.entries.len()),
        checkpointed: evidence
            .ledger
            .as_ref()
            .is_some_and(|l| l.checkpoint.is_some()),
    };
    let html = offline_player(evidence, &playback, end_us, report.final_hash.as_deref())?;
    let session = serde_json::to_string_pretty(&json!({
        "format": BUNDLE_FORMAT,
        "session": evidence.session,
        "decisions": evidence.decisions,
        "events": evidence.events,
        "verified_at_export": report,
    }))?;
    let ledger = serde_json::to_string_pretty(&ledger_json(evidence.ledger.as_ref()))?;

    let mut zip = zip::ZipWriter::new(out);
    let deflated =
        SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    // The recording is zstd inside already: stored as is, so its bytes are plain in the file.
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("README.txt", deflated)?;
    zip.write_all(readme(evidence, &summary).as_bytes())?;
    zip.start_file("player.html", deflated)?;
    zip.write_all(html.as_bytes())?;
    zip.start_file(recording_name(evidence), stored)?;
    zip.write_all(&evidence.recording)?;
    zip.start_file("public-key.txt", deflated)?;
    zip.write_all(public_key_text(&evidence.trusted_keys).as_bytes())?;
    zip.start_file("ledger.json", deflated)?;
    zip.write_all(ledger.as_bytes())?;
    zip.start_file("session.json", deflated)?;
    zip.write_all(session.as_bytes())?;
    zip.finish()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::io::Read;

    use bytes::Bytes;
    use recorder::format::{ChannelId, Direction, Header, Record, RecordKind, encode_recording};
    use recorder::signing::RecordingKey;

    /// A terminal recording: a prompt, a command typed, its output, one second apart.
    fn terminal_recording(key: &RecordingKey) -> Vec<u8> {
        let header = Header {
            session_id: uuid::Uuid::now_v7(),
            protocol: "ssh".into(),
            user: Some("tanaka".into()),
            contractor: Some("acme".into()),
            source: "127.0.10.11".into(),
            target: "web01".into(),
            start_unix_us: 1_796_000_000_000_000,
            metadata: BTreeMap::from([
                ("term.cols".to_owned(), "80".to_owned()),
                ("term.rows".to_owned(), "24".to_owned()),
            ]),
        };
        let data = |at_us, direction, text: &str| Record {
            at_us,
            kind: RecordKind::Data {
                direction,
                channel: ChannelId(0),
                bytes: Bytes::copy_from_slice(text.as_bytes()),
            },
        };
        let records = [
            data(0, Direction::ServerToClient, "web01$ "),
            data(1_000_000, Direction::ClientToServer, "uptime\r"),
            data(
                1_100_000,
                Direction::ServerToClient,
                "uptime\r\n up 42 days\r\nweb01$ ",
            ),
        ];
        encode_recording(&header, &records, 64 * 1024, 3_000_000, key.signing_key()).unwrap()
    }

    fn evidence(recording: Vec<u8>, key: &RecordingKey) -> Evidence {
        Evidence {
            session_id: "01a25000-0000-7000-8000-000000000000".into(),
            recording,
            session: json!({ "id": "01a25000-0000-7000-8000-000000000000", "user": "</script>" }),
            decisions: json!([]),
            events: json!([]),
            trusted_keys: vec![key.verifying_key()],
            ledger: None,
            exported_by: "test".into(),
            exported_at: Utc::now(),
        }
    }

    #[test]
    fn a_terminal_bundle_holds_every_file_and_screens_of_the_session() {
        let key = RecordingKey::generate().unwrap();
        let recording = terminal_recording(&key);
        let mut zip_bytes = std::io::Cursor::new(Vec::new());
        let summary = write_bundle(&evidence(recording.clone(), &key), &mut zip_bytes).unwrap();
        assert_eq!(summary.recording_state, "intact");
        assert!(!summary.checkpointed);
        let mut archive = zip::ZipArchive::new(zip_bytes).unwrap();
        let mut read = |name: &str| {
            let mut s = Vec::new();
            archive.by_name(name).unwrap().read_to_end(&mut s).unwrap();
            s
        };
        assert_eq!(
            read("01a25000-0000-7000-8000-000000000000.skrec"),
            recording
        );
        let html = String::from_utf8(read("player.html")).unwrap();
        let readme = String::from_utf8(read("README.txt")).unwrap();
        assert!(readme.contains("no checkpoint covers this session"));
        let keys = String::from_utf8(read("public-key.txt")).unwrap();
        assert!(keys.contains(&hex::encode(key.verifying_key().as_bytes())));
        // A recorded name cannot end the evidence script early.
        assert_eq!(html.matches("</script>").count(), 3);
        let open = "<script type=\"application/json\" id=\"evidence\">";
        let start = html.find(open).unwrap() + open.len();
        let end = start + html[start..].find("</script>").unwrap();
        let data: Value = serde_json::from_str(&html[start..end]).unwrap();
        assert_eq!(data["session"]["user"], "</script>");
        assert_eq!(data["playback"]["kind"], "text");
        let frames = data["playback"]["frames"].as_array().unwrap();
        let last = frames.last().unwrap()["text"].as_str().unwrap();
        assert!(last.contains("up 42 days"), "{last}");
        assert_eq!(data["playback"]["end_ms"], 3000);
        let report = recorder::verify(&recording, None);
        assert_eq!(
            data["playback"]["rendered_from"].as_str(),
            report.final_hash.as_deref()
        );
    }

    #[test]
    fn a_recording_signed_by_an_untrusted_key_says_so_in_the_summary() {
        let key = RecordingKey::generate().unwrap();
        let other = RecordingKey::generate().unwrap();
        let mut zip_bytes = std::io::Cursor::new(Vec::new());
        let summary =
            write_bundle(&evidence(terminal_recording(&key), &other), &mut zip_bytes).unwrap();
        assert_eq!(
            summary.recording_state,
            "intact, signed by an untrusted key"
        );
    }

    #[test]
    fn json_in_a_script_cannot_close_it() {
        let text = serde_json::to_string(&json!({ "user": "</script><script>alert(1)" })).unwrap();
        let safe = script_safe(&text);
        assert!(!safe.contains("</"));
        let back: Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back["user"], "</script><script>alert(1)");
    }
}
