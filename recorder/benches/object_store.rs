//! Benchmark (prints figures, asserts nothing): the recorder writing the same hour of a
//! terminal to the local disk and to a real S3-compatible store (Garage, from
//! `eval "$(scripts/garage-test-server start)"`), in the same run, and seeking to the middle of
//! that hour in the store by range reads.
//!
//! `cargo bench -p recorder --bench object_store` (scripts/bench runs it with its own Garage).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/garage.rs"]
mod garage;

use std::time::{Duration, Instant};

use bytes::Bytes;
use recorder::storage::Storage;
use recorder::storage::ranged::RangedRecording;
use recorder::{
    ChannelId, Direction, Header, Record, RecordKind, RecordingKey, RecordingWriter, WriterConfig,
};

const LINES: u64 = 72_000; // one line every 50 ms for an hour
const RUNS: usize = 3;

fn header() -> Header {
    Header {
        session_id: uuid::Uuid::now_v7(),
        protocol: "ssh".into(),
        user: Some("tanaka".into()),
        contractor: Some("acme".into()),
        source: "127.0.10.11".into(),
        target: "web01".into(),
        start_unix_us: chrono::Utc::now().timestamp_micros(),
        metadata: Default::default(),
    }
}

/// Writes the hour (times given, so it runs as fast as the writer goes); the lines hardly
/// compress, so the recording has thousands of chunks. Returns (location, bytes, time).
async fn write_an_hour(storage: &dyn Storage, key: &RecordingKey) -> (String, u64, Duration) {
    let started = Instant::now();
    let config = WriterConfig {
        chunk_bytes: 16 * 1024,
        flush_interval: Duration::from_millis(100),
        ..WriterConfig::default()
    };
    let w = RecordingWriter::create(storage, header(), key.clone(), config)
        .await
        .unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..LINES {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let text = format!("line {i} {state:016x}{:016x}\r\n", state.rotate_left(17));
        w.write_at(Record {
            at_us: i * 50_000,
            kind: RecordKind::Data {
                direction: Direction::ServerToClient,
                channel: ChannelId(0),
                bytes: Bytes::from(text),
            },
        })
        .await
        .unwrap();
    }
    let summary = w.finish().await.unwrap();
    (summary.location, summary.size, started.elapsed())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn main() {
    let Some(g) = garage::garage() else { return };
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let key = RecordingKey::generate().unwrap();
        let spool = tempfile::tempdir().unwrap();
        let store = g.store(
            &garage::unique_prefix("bench"),
            spool.path(),
            Duration::from_secs(10),
            1 << 30,
        );
        let local_dir = tempfile::tempdir().unwrap();
        let local = recorder::LocalDir::new(local_dir.path());
        let (mut t_local, mut t_store, mut seeks) = (Vec::new(), Vec::new(), Vec::new());
        let mut last = None;
        // Alternating, so both see the same machine load.
        for _ in 0..RUNS {
            let (_, _, t) = write_an_hour(&local, &key).await;
            t_local.push(t.as_secs_f64());
            let (location, size, t) = write_an_hour(&store, &key).await;
            t_store.push(t.as_secs_f64());
            last = Some((location, size));
        }
        let (location, size) = last.unwrap();
        let mut read_bytes = 0;
        for _ in 0..RUNS {
            let started = Instant::now();
            let rec = RangedRecording::open(&store, &location).await.unwrap();
            let mut cursor = rec.records_from(1_800_000_000);
            let chunk = cursor.next_chunk().await.unwrap().unwrap();
            seeks.push(started.elapsed().as_secs_f64() * 1000.0);
            read_bytes = chunk.len();
        }
        let (l, s) = (median(t_local), median(t_store));
        println!(
            "object store: one terminal hour ({size} bytes recorded, {LINES} lines), median of {RUNS}: local disk {l:.2} s, Garage {s:.2} s (written, finished, uploaded); seek to 30:00 in the object {:.1} ms ({read_bytes} records in the first chunk)",
            median(seeks.clone())
        );
        println!("BENCH store.ingest_local_s={l:.3} s");
        println!("BENCH store.ingest_garage_s={s:.3} s");
        println!("BENCH store.ingest_garage_vs_local={:.2} x", s / l);
        println!("BENCH store.seek_garage_ms={:.1} ms", median(seeks));
        store.remove(&location).await.unwrap();
    });
}
