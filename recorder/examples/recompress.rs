//! What a real recording would weigh under other compression settings, and what each costs.
//!
//! ```text
//! cargo run --release -p recorder --example recompress -- FILE.skrec
//! ```
//!
//! Reads every record of FILE and encodes them again as the writer would (a chunk closed
//! every second of session time or every MiB), once per setting: the protocol's own, then other
//! zstd levels and histories. Prints the size, the ratio to the file, and the CPU time the
//! encoding took (one core). Used to choose `Compression` from recordings of real sessions,
//! e.g. the RDP admin-hour bench's (`target/bench-logs/rdp-admin-hour.skrec`).

use std::time::Instant;

use anyhow::{Context, Result};
use ed25519_dalek::SigningKey;
use recorder::format::Encoder;
use recorder::{Compression, Record, Recording};

/// The writer's chunk limits: a second of session time, a MiB of records.
const CHUNK_US: u64 = 1_000_000;
const CHUNK_BYTES: usize = 1024 * 1024;

fn encode(
    header: &recorder::Header,
    records: &[Record],
    compression: Compression,
) -> Result<(u64, f64)> {
    let started = Instant::now();
    let (mut enc, head) = Encoder::new(header, compression, CHUNK_BYTES)?;
    let mut size = head.len() as u64;
    let mut chunk_start = records.first().map_or(0, |r| r.at_us);
    for r in records {
        if r.at_us.saturating_sub(chunk_start) >= CHUNK_US {
            if let Some(c) = enc.flush()? {
                size += c.bytes.len() as u64;
            }
            chunk_start = r.at_us;
        }
        if let Some(c) = enc.push(r)? {
            size += c.bytes.len() as u64;
        }
    }
    let end = records.last().map_or(0, |r| r.at_us);
    let (last, trailer, _) = enc.finish(end, &SigningKey::from_bytes(&[7; 32]))?;
    size += last.map_or(0, |c| c.bytes.len() as u64) + trailer.len() as u64;
    Ok((size, started.elapsed().as_secs_f64()))
}

fn main() -> Result<()> {
    let path = std::env::args()
        .nth(1)
        .context("usage: recompress FILE.skrec")?;
    let bytes = std::fs::read(&path).with_context(|| format!("read {path}"))?;
    let recording = Recording::parse(&bytes).with_context(|| format!("parse {path}"))?;
    let header = recording.header().header.clone();
    let records = recording
        .records()
        .collect::<Result<Vec<_>, _>>()
        .context("decode the records")?;
    let payload: usize = records.iter().map(|r| r.kind.encoded_len()).sum();
    let own = Compression::for_protocol(&header.protocol);
    println!(
        "{path}: {} bytes, {} records, {:.1} MB of records, {:.0} s, protocol {}",
        bytes.len(),
        records.len(),
        payload as f64 / 1e6,
        recording.end_us() as f64 / 1e6,
        header.protocol
    );
    println!(
        "{:<34} {:>12} {:>9} {:>10}",
        "setting", "bytes", "vs file", "cpu (s)"
    );
    let mut settings = vec![("the protocol's own".to_owned(), own)];
    for (level, history) in [
        (1, 0),
        (1, 256 * 1024),
        (3, 64 * 1024),
        (3, 256 * 1024),
        (6, 64 * 1024),
        (9, 64 * 1024),
    ] {
        settings.push((
            format!("zstd {level}, history {} KiB", history / 1024),
            Compression {
                level,
                history_bytes: history,
                ..own
            },
        ));
    }
    for (name, compression) in settings {
        let (size, cpu) = encode(&header, &records, compression)?;
        println!(
            "{name:<34} {size:>12} {:>8.2}x {cpu:>10.3}",
            size as f64 / bytes.len() as f64
        );
    }
    Ok(())
}
