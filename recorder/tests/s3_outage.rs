//! The object store goes down mid-session (`scripts/garage-test-server pause`, a real Garage
//! stopped): live recordings go on spooling, new ones are refused once the unshipped bytes pass
//! the spool limit, and everything ships when the store returns. One test in a binary of its
//! own, because it stops the Garage every test of this crate uses.

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

use std::time::{Duration, Instant};

use bytes::Bytes;
use recorder::storage::Storage;
use recorder::{
    ChannelId, Direction, Header, RecordingKey, RecordingWriter, StorageError, VerifyState,
    WriteError, WriterConfig,
};

fn header() -> Header {
    Header {
        session_id: uuid::Uuid::now_v7(),
        protocol: "console-serial".into(),
        user: Some("tanaka".into()),
        contractor: Some("acme".into()),
        source: "127.0.10.11".into(),
        target: "kvm01-vm1".into(),
        start_unix_us: chrono::Utc::now().timestamp_micros(),
        metadata: Default::default(),
    }
}

/// Bytes that do not compress, so the spool grows by about what is written.
fn noise(n: usize, seed: &mut u64) -> Bytes {
    let mut v = Vec::with_capacity(n);
    while v.len() < n {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        v.extend_from_slice(&seed.to_le_bytes());
    }
    v.truncate(n);
    Bytes::from(v)
}

async fn wait_for(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Resumes Garage even when the test fails, so the next tests find it running.
struct Resume<'a>(&'a garage::Garage);

impl Drop for Resume<'_> {
    fn drop(&mut self) {
        self.0.control("resume");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_down_spools_refuses_past_the_limit_and_ships_when_back() {
    let Some(g) = garage::garage() else { return };
    let spool = tempfile::tempdir().unwrap();
    let limit = 256 * 1024;
    let store = g.store(
        &garage::unique_prefix("outage"),
        spool.path(),
        Duration::from_millis(500),
        limit,
    );
    let drainer = store.spawn_drainer();
    let key = RecordingKey::generate().unwrap();
    let config = WriterConfig {
        chunk_bytes: 16 * 1024,
        flush_interval: Duration::from_millis(100),
        ..WriterConfig::default()
    };
    let live = RecordingWriter::create(&store, header(), key.clone(), config.clone())
        .await
        .unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    live.data(
        Direction::ServerToClient,
        ChannelId(0),
        noise(8 * 1024, &mut seed),
    )
    .await
    .unwrap();
    // Shipped while the store is up.
    wait_for("first segment shipped", Duration::from_secs(10), || {
        store
            .spool_status()
            .is_some_and(|s| s.unshipped_bytes == 0 && s.spool_bytes > 0)
    })
    .await;

    g.control("pause");
    let resume = Resume(&g);
    // The live session goes on: every write succeeds into the spool.
    let mut written = 0;
    while written < 2 * limit {
        live.data(
            Direction::ServerToClient,
            ChannelId(0),
            noise(16 * 1024, &mut seed),
        )
        .await
        .unwrap();
        written += 16 * 1024;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for("store seen down", Duration::from_secs(30), || {
        store.spool_status().is_some_and(|s| !s.store_reachable)
    })
    .await;
    let status = store.spool_status().unwrap();
    eprintln!("store down: {status:?}");
    assert!(status.unshipped_bytes > limit);
    assert!(status.store_failures > 0);
    assert!(live.failure().is_none(), "the live session is not failed");
    // This instance still reads its live recording (from the spool), store or no store.
    let report = recorder::verify_stored(&store, live.location(), None)
        .await
        .unwrap();
    assert!(
        matches!(report.state, VerifyState::Incomplete { .. }),
        "{report:?}"
    );

    // A new session is refused (fail closed), with the reason.
    let refused = RecordingWriter::create(&store, header(), key.clone(), config.clone()).await;
    match refused {
        Err(WriteError::Create(StorageError::SpoolFull {
            unshipped,
            limit: l,
        })) => {
            assert!(unshipped > l);
            assert_eq!(l, limit);
        }
        other => panic!("refusal expected, got {other:?}"),
    }

    // A session that ends while the store is down is kept whole in the spool.
    let live_summary = live.finish().await.unwrap();
    assert_eq!(store.spool_status().unwrap().pending_uploads, 1);
    let report = recorder::verify_stored(&store, &live_summary.location, None)
        .await
        .unwrap();
    assert_eq!(
        report.state,
        VerifyState::Intact,
        "finished, read from the spool"
    );

    // The store returns: the drainer ships the finished recording, and new sessions are
    // admitted again.
    let back = Instant::now();
    drop(resume);
    wait_for("spool drained", Duration::from_secs(60), || {
        store
            .spool_status()
            .is_some_and(|s| s.spool_bytes == 0 && s.pending_uploads == 0 && s.store_reachable)
    })
    .await;
    eprintln!(
        "spool drained {:?} after the store returned",
        back.elapsed()
    );
    let report =
        recorder::verify_stored(&store, &live_summary.location, Some(&key.verifying_key()))
            .await
            .unwrap();
    assert_eq!(report.state, VerifyState::Intact, "{report:?}");
    assert_eq!(report.size, live_summary.size);
    let next = RecordingWriter::create(&store, header(), key.clone(), config)
        .await
        .unwrap();
    next.data(
        Direction::ClientToServer,
        ChannelId(0),
        Bytes::from_static(b"ls\r"),
    )
    .await
    .unwrap();
    let s = next.finish().await.unwrap();
    assert_eq!(
        store.list().await.unwrap().len(),
        2,
        "both recordings in the store"
    );
    assert_eq!(
        recorder::verify_stored(&store, &s.location, None)
            .await
            .unwrap()
            .state,
        VerifyState::Intact
    );
    drainer.abort();
}
