//! `verify_reader` streams: verifying a recording much larger than a chunk does not bring the
//! file into memory. Measured as the growth of the process's peak resident set (`VmHWM`,
//! reset through `/proc/self/clear_refs`), so this file holds one test: a test binary of its
//! own, with no other test allocating beside it.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::io::Write as _;

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use recorder::format::Encoder;
use recorder::{ChannelId, Direction, Header, Record, RecordKind, VerifyState};

/// The recording's size: several times the bound below, so holding it whole cannot pass.
const FILE_BYTES: usize = 96 << 20;
/// Each record: incompressible, so chunks stay about `CHUNK_BYTES` on disk too.
const RECORD_BYTES: usize = 256 << 10;
const CHUNK_BYTES: usize = 1 << 20;
/// What verification may add to the peak resident set: a few chunks' worth.
const MAX_GROWTH: u64 = 24 << 20;

/// (current, peak) resident set in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Incompressible bytes (xorshift64*).
fn noise(seed: &mut u64, len: usize) -> Bytes {
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        *seed ^= *seed >> 12;
        *seed ^= *seed << 25;
        *seed ^= *seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    Bytes::from(out)
}

#[test]
fn verifying_a_large_recording_keeps_memory_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.skrec");
    let key = SigningKey::from_bytes(&[9; 32]);
    let header = Header {
        session_id: uuid::Uuid::from_u128(0x0193_bbbb_0000_7000_8000_0000_0000_0001),
        protocol: "ssh".into(),
        user: Some("tanaka".into()),
        contractor: Some("acme".into()),
        source: "127.0.10.11".into(),
        target: "web01".into(),
        start_unix_us: 1_764_000_000_000_000,
        metadata: Default::default(),
    };
    // Written chunk by chunk, so the writing does not hold the file either.
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let (mut enc, head) =
        Encoder::new(&header, recorder::Compression::GRAPHICAL, CHUNK_BYTES).unwrap();
    file.write_all(&head).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut at_us = 0;
    while (enc.size() as usize) < FILE_BYTES {
        at_us += 1000;
        let record = Record {
            at_us,
            kind: RecordKind::Data {
                direction: Direction::ServerToClient,
                channel: ChannelId(0),
                bytes: noise(&mut seed, RECORD_BYTES),
            },
        };
        if let Some(chunk) = enc.push(&record).unwrap() {
            file.write_all(&chunk.bytes).unwrap();
        }
    }
    let (last, trailer, summary) = enc.finish(at_us, &key).unwrap();
    if let Some(chunk) = last {
        file.write_all(&chunk.bytes).unwrap();
    }
    file.write_all(&trailer).unwrap();
    file.into_inner().unwrap().sync_all().unwrap();
    assert!(summary.size >= FILE_BYTES as u64);

    // Reset the peak to what is resident now, then verify.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let (before, _) = rss();
    let report = recorder::verify_reader(
        std::fs::File::open(&path).unwrap(),
        Some(&key.verifying_key()),
    )
    .unwrap();
    let (_, peak) = rss();
    assert_eq!(report.state, VerifyState::Intact, "{report:?}");
    assert_eq!(report.size, summary.size);
    assert_eq!(report.chunks, summary.chunks);
    let growth = peak.saturating_sub(before);
    eprintln!(
        "verified {} MiB in {} chunks; peak resident set grew by {:.1} MiB",
        summary.size >> 20,
        summary.chunks,
        growth as f64 / f64::from(1u32 << 20)
    );
    assert!(
        growth < MAX_GROWTH,
        "verification grew the peak resident set by {growth} bytes for a {} byte file",
        summary.size
    );
}
