//! Recordings in an S3-compatible object store, against a real Garage
//! (`eval "$(scripts/garage-test-server start)"`): write, verify and seek by range reads; a
//! crash mid-session loses at most the ship interval and is sealed, from the spool at the next
//! start or from the store by another instance. The store going down is in `s3_outage.rs`
//! (it stops Garage, so it runs alone).

// Tests may unwrap and panic (the workspace lints deny them in library code only; clippy.toml
// exempts `#[test]` functions but not these shared helpers).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

#[path = "support/garage.rs"]
mod garage;

use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use recorder::storage::ranged::RangedRecording;
use recorder::storage::{BoxFuture, ObjectInfo, ObjectKey, ObjectWriter, Storage, StorageError};
use recorder::{
    ChannelId, Direction, Header, Record, RecordKind, RecordingKey, RecordingWriter, SealError,
    VerifyState, WriterConfig,
};

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

fn data(at_us: u64, text: String) -> Record {
    Record {
        at_us,
        kind: RecordKind::Data {
            direction: Direction::ServerToClient,
            channel: ChannelId(0),
            bytes: Bytes::from(text),
        },
    }
}

fn small_chunks() -> WriterConfig {
    WriterConfig {
        chunk_bytes: 16 * 1024,
        flush_interval: Duration::from_millis(100),
        ..WriterConfig::default()
    }
}

/// Counts what is read through it, to show a seek reads little of the object.
struct Counting<'a> {
    inner: &'a dyn Storage,
    bytes: AtomicU64,
    requests: AtomicU64,
}

impl Storage for Counting<'static> {
    fn create<'b>(
        &'b self,
        key: &'b ObjectKey,
    ) -> BoxFuture<'b, Result<Box<dyn ObjectWriter>, StorageError>> {
        self.inner.create(key)
    }
    fn read<'b>(&'b self, l: &'b str) -> BoxFuture<'b, Result<Vec<u8>, StorageError>> {
        self.inner.read(l)
    }
    fn list(&self) -> BoxFuture<'_, Result<Vec<ObjectInfo>, StorageError>> {
        self.inner.list()
    }
    fn discard<'b>(&'b self, l: &'b str) -> BoxFuture<'b, Result<(), StorageError>> {
        self.inner.discard(l)
    }
    fn size<'b>(&'b self, l: &'b str) -> BoxFuture<'b, Result<u64, StorageError>> {
        self.inner.size(l)
    }
    fn read_range<'b>(
        &'b self,
        l: &'b str,
        range: Range<u64>,
    ) -> BoxFuture<'b, Result<Bytes, StorageError>> {
        Box::pin(async move {
            let b = self.inner.read_range(l, range).await?;
            self.bytes.fetch_add(b.len() as u64, Ordering::Relaxed);
            self.requests.fetch_add(1, Ordering::Relaxed);
            Ok(b)
        })
    }
    fn remove<'b>(&'b self, l: &'b str) -> BoxFuture<'b, Result<u64, StorageError>> {
        self.inner.remove(l)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn written_to_the_store_verified_and_sought_by_range_reads() {
    let Some(g) = garage::garage() else { return };
    let spool = tempfile::tempdir().unwrap();
    let store = g.store(
        &garage::unique_prefix("round-trip"),
        spool.path(),
        Duration::from_millis(500),
        64 << 20,
    );
    let key = RecordingKey::generate().unwrap();
    // The same hour of a terminal to the local disk and to the store, for the figures.
    let local_dir = tempfile::tempdir().unwrap();
    let local = recorder::LocalDir::new(local_dir.path());
    let (local_summary, local_time) = write_an_hour(&local, &key).await;
    let (summary, store_time) = write_an_hour(&store, &key).await;
    eprintln!(
        "an hour of terminal output ({} bytes recorded): local disk {local_time:?}, Garage {store_time:?} (written, finished and uploaded)",
        summary.size
    );
    // Chunks also close on the 100 ms timer, so sizes differ a little; the records do not.
    assert_eq!(local_summary.records, summary.records);
    let location = summary.location.clone();
    assert!(location.starts_with(&format!("s3://{}/test/round-trip-", g.bucket)));

    // A finished recording lives only in the store: one object, no segments, empty spool.
    let listed = store.list().await.unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].location, location);
    assert_eq!(listed[0].size, summary.size);
    assert_eq!(
        std::fs::read_dir(spool.path()).unwrap().count(),
        0,
        "spool emptied"
    );
    let status = store.spool_status().unwrap();
    assert_eq!((status.spool_bytes, status.pending_uploads), (0, 0));
    assert!(status.store_reachable);

    // Verifying the object by range reads gives what verifying the same bytes as a file does.
    let trusted = key.verifying_key();
    let streamed = recorder::verify_stored(&store, &location, Some(&trusted))
        .await
        .unwrap();
    assert_eq!(streamed.state, VerifyState::Intact, "{streamed:?}");
    let whole = store.read(&location).await.unwrap();
    assert_eq!(streamed, recorder::verify(&whole, Some(&trusted)));
    assert_eq!(
        streamed.final_hash.as_deref(),
        Some(summary.final_hash.as_str())
    );
    let info = recorder::storage::info_stored(&store, &location)
        .await
        .unwrap();
    assert_eq!(info.records, 72_000);
    assert!(info.chunks > 20, "{} chunks", info.chunks);

    // Seeking to 30:00 reads the header, the trailer and the chunks from there: a fraction.
    let counting = Counting {
        inner: Box::leak(Box::new(store.clone())),
        bytes: AtomicU64::new(0),
        requests: AtomicU64::new(0),
    };
    let counting: &'static Counting<'static> = Box::leak(Box::new(counting));
    let started = Instant::now();
    let rec = RangedRecording::open(counting, &location).await.unwrap();
    let mut cursor = rec.records_from(1_800_000_000);
    let first = cursor.next_chunk().await.unwrap().unwrap();
    let seek_time = started.elapsed();
    assert_eq!(first.first().map(|r| r.at_us), Some(1_800_000_000));
    let read = counting.bytes.load(Ordering::Relaxed);
    eprintln!(
        "seek in a {} byte object: {} requests, {read} bytes, {seek_time:?}",
        summary.size,
        counting.requests.load(Ordering::Relaxed)
    );
    assert!(
        read < summary.size / 8,
        "a seek read {read} of {} bytes",
        summary.size
    );
    // And reading on from there yields the rest in order.
    let mut n = first.len();
    while let Some(chunk) = cursor.next_chunk().await {
        n += chunk.unwrap().len();
    }
    assert_eq!(n, 36_000);

    // Retention removes it.
    assert_eq!(store.remove(&location).await.unwrap(), summary.size);
    assert!(store.list().await.unwrap().is_empty());
}

/// An hour of a terminal, one line every 50 ms (times given, so it runs at once); the lines
/// hardly compress, so the recording has many chunks. Returns the summary and the time taken.
async fn write_an_hour(
    storage: &dyn Storage,
    key: &RecordingKey,
) -> (recorder::RecordingSummary, Duration) {
    let started = Instant::now();
    let w = RecordingWriter::create(storage, header(), key.clone(), small_chunks())
        .await
        .unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..72_000u64 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        w.write_at(data(
            i * 50_000,
            format!("line {i} {state:016x}{:016x}\r\n", state.rotate_left(17)),
        ))
        .await
        .unwrap();
    }
    let summary = w.finish().await.unwrap();
    (summary, started.elapsed())
}

/// Writes one record every 10 ms for `for_ms` on a runtime of its own, then drops that
/// runtime: every task stops where it is, as if the process were killed. Returns the time
/// (µs) of the last record written.
fn write_then_crash(store: recorder::S3Store, key: RecordingKey, for_ms: u64) -> (String, u64) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let result = rt.block_on(async {
            let w = RecordingWriter::create(&store, header(), key, small_chunks())
                .await
                .unwrap();
            let started = Instant::now();
            let mut last = 0;
            let mut i = 0u64;
            while started.elapsed() < Duration::from_millis(for_ms) {
                last = started.elapsed().as_micros() as u64;
                w.write_at(data(last, format!("output {i}\r\n")))
                    .await
                    .unwrap();
                i += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // Let the last chunk reach the spool (the writer closes one every 100 ms), as a
            // session does between keystrokes; then the "kill".
            tokio::time::sleep(Duration::from_millis(250)).await;
            (w.location().to_owned(), last)
        });
        rt.shutdown_timeout(Duration::ZERO);
        result
    })
    .join()
    .unwrap()
}

fn last_record_us(bytes: &[u8]) -> u64 {
    let rec = recorder::Recording::parse(bytes).unwrap();
    rec.chunks().last().map_or(0, |c| c.last_us)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_instance_recording_is_sealed_from_the_store_losing_at_most_the_ship_interval() {
    let Some(g) = garage::garage() else { return };
    let prefix = garage::unique_prefix("dead-instance");
    let ship = Duration::from_secs(1);
    let spool_a = tempfile::tempdir().unwrap();
    let key_a = RecordingKey::generate().unwrap();
    let store_a = g.store(&prefix, spool_a.path(), ship, 64 << 20);
    let (location, last_written) = write_then_crash(store_a, key_a.clone(), 3_500);

    // Another instance, with a spool of its own, seals what reached the store.
    let spool_b = tempfile::tempdir().unwrap();
    let store_b = g.store(&prefix, spool_b.path(), ship, 64 << 20);
    let key_b = RecordingKey::generate().unwrap();
    let (summary, reason) = store_b.seal_from_store(&location, &key_b).await.unwrap();
    assert_eq!(summary.location, location);
    eprintln!("sealed from the store: {reason}; {} chunks", summary.chunks);
    let bytes = store_b.read(&location).await.unwrap();
    let report = recorder::verify(&bytes, Some(&key_b.verifying_key()));
    assert_eq!(report.state, VerifyState::Interrupted, "{report:?}");
    let last_sealed = last_record_us(&bytes);
    let lost = Duration::from_micros(last_written.saturating_sub(last_sealed));
    eprintln!("written up to {last_written} µs, sealed up to {last_sealed} µs: {lost:?} lost");
    // The ship interval, plus the chunk that was still open (100 ms), plus scheduling.
    assert!(
        lost <= ship + Duration::from_millis(400),
        "{lost:?} lost with a {ship:?} ship interval"
    );
    assert!(last_sealed > 1_000_000, "at least the first second shipped");
    // Segments are gone: one object under the prefix.
    assert_eq!(store_b.list().await.unwrap().len(), 1);
    // A second seal finds it sealed.
    assert!(matches!(
        store_b.seal_from_store(&location, &key_b).await,
        Err(SealError::AlreadySealed("interrupted"))
    ));

    // The dead host comes back: its spool holds a longer version, which must not replace the
    // recording the catalogue already knows as sealed; it is kept aside.
    let store_a = g.store(&prefix, spool_a.path(), ship, 64 << 20);
    let recovered = store_a.recover_spool(&key_a).await.unwrap();
    assert_eq!(recovered.len(), 1);
    assert_eq!(store_a.drain_once().await, 0);
    assert_eq!(
        store_a.read(&location).await.unwrap(),
        bytes,
        "not overwritten"
    );
    let aside: Vec<_> = std::fs::read_dir(spool_a.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(
        aside
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "conflict")),
        "{aside:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_start_the_spool_is_sealed_and_shipped() {
    let Some(g) = garage::garage() else { return };
    let prefix = garage::unique_prefix("restart");
    let spool = tempfile::tempdir().unwrap();
    let key = RecordingKey::generate().unwrap();
    // A long ship interval: nothing but the header reaches the store before the crash.
    let ship = Duration::from_secs(60);
    let store = g.store(&prefix, spool.path(), ship, 64 << 20);
    let (location, last_written) = write_then_crash(store, key.clone(), 1_500);

    let store = g.store(&prefix, spool.path(), ship, 64 << 20);
    let recovered = store.recover_spool(&key).await.unwrap();
    assert_eq!(recovered.len(), 1);
    let r = &recovered[0];
    assert_eq!(r.location, location);
    let Some(Ok((summary, _reason))) = &r.sealed else {
        panic!("sealed expected: {r:?}")
    };
    assert_eq!(summary.location, location);
    assert_eq!(store.spool_status().unwrap().pending_uploads, 1);
    assert_eq!(store.drain_once().await, 0);
    let status = store.spool_status().unwrap();
    assert_eq!((status.spool_bytes, status.pending_uploads), (0, 0));
    let bytes = store.read(&location).await.unwrap();
    assert_eq!(
        recorder::verify(&bytes, Some(&key.verifying_key())).state,
        VerifyState::Interrupted
    );
    // The spool was fsync'd chunk by chunk: only the chunk still open was lost.
    let lost = last_written.saturating_sub(last_record_us(&bytes));
    assert!(lost <= 200_000, "{lost} µs lost from the spool");
    assert_eq!(std::fs::read_dir(spool.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_key_is_not_in_errors() {
    let Some(g) = garage::garage() else { return };
    let spool = tempfile::tempdir().unwrap();
    let store = recorder::S3Store::open(recorder::S3Config {
        bucket: g.bucket.clone(),
        prefix: "test/wrong-key".into(),
        endpoint: Some(g.endpoint.clone()),
        region: g.region.clone(),
        path_style: true,
        access_key_id: g.key_id.clone(),
        secret_access_key: recorder::storage::SecretKey::new("wrong-secret-0123456789abcdef"),
        spool: spool.path().to_owned(),
        ship_interval: Duration::from_secs(1),
        spool_limit: 1 << 20,
    })
    .unwrap();
    let e = store
        .read(&format!("s3://{}/test/wrong-key/x.skrec", g.bucket))
        .await;
    let text = format!("{e:?}");
    assert!(e.is_err());
    assert!(!text.contains("wrong-secret-0123456789abcdef"), "{text}");
}
