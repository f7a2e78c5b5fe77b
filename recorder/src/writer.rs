//! The async recording writer: one per session.
//!
//! Relays hand records to [`RecordingWriter`]; a background task groups them into chunks,
//! compresses, appends and fsyncs each chunk, closes a chunk at least every
//! [`WriterConfig::flush_interval`] (1 s) so a crash loses at most about a second, and writes
//! the signed trailer on [`RecordingWriter::finish`].
//!
//! An idle session holds no zstd context (chunks are compressed with one context per thread,
//! shared by all sessions) and, after [`WriterConfig::forget_history_after`] without a record,
//! no compression history and no large buffer (a chunk buffer a burst grew past 16 KiB is
//! kept while the session is busy, then released): a few KiB per idle session.
//!
//! Memory per session is bounded (see [`WriterConfig`]): a relay that produces faster than
//! the disk absorbs waits in [`RecordingWriter::write`] (backpressure), it never grows a
//! queue. When storage fails or fills, the failure is sticky: every later write returns it,
//! and [`RecordingWriter::failed`] resolves so the session can end itself (fail closed).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use tracing::{Instrument, debug, error, info, warn};

use crate::format::{
    self, ChannelId, Compression, Direction, EncodeError, EncodedChunk, Encoder, Event, EventKind,
    Header, Record, RecordKind,
};
use crate::signing::RecordingKey;
use crate::storage::{ObjectKey, ObjectWriter, Storage, StorageError};

/// Writer tuning. Defaults suit every protocol.
///
/// INVARIANT (memory bound per session): queued records hold at most `queue_bytes` encoded
/// bytes and at most `queue_records` records; the chunk being built holds at most
/// `chunk_bytes` plus one record ([`format::MAX_RECORD_PAYLOAD`]); one compressed chunk is in
/// flight at a time. So a session uses at most about
/// `queue_bytes + 2 × (chunk_bytes + MAX_RECORD_PAYLOAD)` for recording (≈ 18 MiB with the
/// defaults), however slow the disk.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// A chunk closes once its uncompressed records reach this size.
    pub chunk_bytes: usize,
    /// A non-empty chunk closes at least this often (the crash-loss window).
    pub flush_interval: Duration,
    /// Maximum records waiting for the background task.
    pub queue_records: usize,
    /// Maximum encoded bytes waiting for the background task. A record larger than this still
    /// passes, alone (it takes the whole budget).
    pub queue_bytes: usize,
    /// How chunks are compressed; `None`: by the header's protocol
    /// ([`Compression::for_protocol`]).
    pub compression: Option<Compression>,
    /// A session that records nothing for this long drops its compression history (the
    /// next chunk is a seek point) and a chunk buffer a burst grew, so an idle session holds
    /// no more than a few KiB.
    pub forget_history_after: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            chunk_bytes: 1024 * 1024,
            flush_interval: Duration::from_secs(1),
            queue_records: 4096,
            queue_bytes: 8 * 1024 * 1024,
            compression: None,
            forget_history_after: Duration::from_secs(30),
        }
    }
}

/// Why recording stopped: the storage error, shared by every handle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("recording failed: {error}")]
pub struct WriterFailure {
    /// The cause; [`StorageError::Full`] when the disk filled.
    pub error: StorageError,
}

/// Errors from the writer API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// Storage failed (now or earlier): the session must end.
    #[error(transparent)]
    Failed(#[from] WriterFailure),
    /// Creating the recording failed.
    #[error("cannot create recording: {0}")]
    Create(StorageError),
    /// The writer was finished; no more records.
    #[error("recording already finished")]
    Closed,
    /// The record or header cannot be encoded (caller misuse: over a limit).
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// What a finished recording is, for the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingSummary {
    /// File path or storage URL.
    pub location: String,
    /// Size in bytes.
    pub size: u64,
    /// Final chain hash, lowercase hex (what the trailer signs).
    pub final_hash: String,
    /// Number of chunks.
    pub chunks: u32,
    /// Number of records.
    pub records: u64,
}

enum Msg {
    /// A record and the queue budget it holds until the background task has taken it.
    Record(Record, OwnedSemaphorePermit),
    Finish {
        end_us: u64,
        reply: oneshot::Sender<Result<RecordingSummary, WriteError>>,
    },
}

struct Shared {
    tx: mpsc::Sender<Msg>,
    budget: Arc<Semaphore>,
    failure: watch::Receiver<Option<WriterFailure>>,
    started: tokio::time::Instant,
    location: String,
    queue_bytes: usize,
}

/// A session's recording. Cheap to clone (both relay directions can hold one); records from
/// all clones go to one file in the order they are accepted.
#[derive(Clone)]
pub struct RecordingWriter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RecordingWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecordingWriter")
            .field("location", &self.shared.location)
            .finish_non_exhaustive()
    }
}

impl RecordingWriter {
    /// Creates the recording object and writes (and fsyncs) the header, then starts the
    /// background task. Record times are measured from this call (with Tokio's clock, so
    /// tests can pause time); `header.start_unix_us` should be the wall-clock time now.
    pub async fn create(
        storage: &dyn Storage,
        header: Header,
        key: RecordingKey,
        config: WriterConfig,
    ) -> Result<RecordingWriter, WriteError> {
        let compression = config
            .compression
            .unwrap_or_else(|| Compression::for_protocol(&header.protocol));
        let (enc, header_bytes) = Encoder::new(&header, compression, config.chunk_bytes)?;
        let started_at = header
            .start_time()
            .ok_or(EncodeError::TooLong {
                what: "start time",
                len: 0,
                max: 0,
            })
            .map_err(WriteError::Encode)?;
        let object_key = ObjectKey {
            session_id: header.session_id,
            started: started_at,
        };
        let mut object = storage
            .create(&object_key)
            .await
            .map_err(WriteError::Create)?;
        if let Err(e) = object.append(Bytes::from(header_bytes)).await {
            let location = object.location().to_owned();
            drop(object);
            if let Err(discard) = storage.discard(&location).await {
                warn!(%location, error = %discard, "Cannot remove a recording whose header could not be written");
            }
            return Err(WriteError::Create(e));
        }
        let location = object.location().to_string();
        info!(%location, session = %header.session_id, "Recording started");

        let queue_bytes = config.queue_bytes.clamp(1, Semaphore::MAX_PERMITS);
        let budget = Arc::new(Semaphore::new(queue_bytes));
        let (tx, rx) = mpsc::channel(config.queue_records.max(1));
        let (fail_tx, fail_rx) = watch::channel(None);
        let task = Task {
            rx,
            object,
            enc: Some(enc),
            key,
            flush_interval: config.flush_interval,
            forget_history_after: config.forget_history_after,
            quiet_since: tokio::time::Instant::now(),
            released: false,
            fail_tx,
            budget: budget.clone(),
            failed: None,
        };
        let span = tracing::info_span!("recording", session = %header.session_id);
        tokio::spawn(task.run().instrument(span));
        Ok(RecordingWriter {
            shared: Arc::new(Shared {
                tx,
                budget,
                failure: fail_rx,
                started: tokio::time::Instant::now(),
                location,
                queue_bytes,
            }),
        })
    }

    /// Where the recording is stored.
    pub fn location(&self) -> &str {
        &self.shared.location
    }

    /// Microseconds since the recording started.
    pub fn now_us(&self) -> u64 {
        u64::try_from(self.shared.started.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// The failure, if storage has failed.
    pub fn failure(&self) -> Option<WriterFailure> {
        self.shared.failure.borrow().clone()
    }

    /// Resolves when storage fails (never, if it does not). Select on it in the session
    /// actor and end the session when it fires.
    pub fn failed(&self) -> impl std::future::Future<Output = WriterFailure> + Send + 'static {
        let mut rx = self.shared.failure.clone();
        async move {
            loop {
                if let Some(f) = rx.borrow_and_update().clone() {
                    return f;
                }
                if rx.changed().await.is_err() {
                    // Writer finished without failure: nothing will ever fail.
                    std::future::pending::<()>().await;
                }
            }
        }
    }

    fn closed_error(&self) -> WriteError {
        match self.failure() {
            Some(f) => WriteError::Failed(f),
            None => WriteError::Closed,
        }
    }

    /// Records `kind` now. Waits while the queue is full (backpressure).
    pub async fn write(&self, kind: RecordKind) -> Result<(), WriteError> {
        let at_us = self.now_us();
        self.write_at(Record { at_us, kind }).await
    }

    /// Records a record with an explicit time (µs since start). Times that go backwards are
    /// raised to the previous record's time.
    pub async fn write_at(&self, record: Record) -> Result<(), WriteError> {
        if let Some(f) = self.failure() {
            return Err(WriteError::Failed(f));
        }
        format::validate(&record.kind)?;
        let cost = record.kind.encoded_len().clamp(1, self.shared.queue_bytes);
        // cost ≤ queue_bytes ≤ Semaphore::MAX_PERMITS, and MAX_RECORD_PAYLOAD < u32::MAX.
        let permits = u32::try_from(cost).unwrap_or(u32::MAX);
        let permit = self
            .shared
            .budget
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| self.closed_error())?;
        self.shared
            .tx
            .send(Msg::Record(record, permit))
            .await
            .map_err(|_| self.closed_error())
    }

    /// Records relayed bytes.
    pub async fn data(
        &self,
        direction: Direction,
        channel: ChannelId,
        bytes: Bytes,
    ) -> Result<(), WriteError> {
        self.write(RecordKind::Data {
            direction,
            channel,
            bytes,
        })
        .await
    }

    /// Records an event.
    pub async fn event(
        &self,
        kind: EventKind,
        detail: impl Into<String>,
    ) -> Result<(), WriteError> {
        self.write(RecordKind::Event(Event {
            kind,
            detail: detail.into(),
        }))
        .await
    }

    /// Records a keyframe.
    pub async fn keyframe(&self, channel: ChannelId, bytes: Bytes) -> Result<(), WriteError> {
        self.write(RecordKind::Keyframe { channel, bytes }).await
    }

    /// Flushes the last chunk, writes the signed trailer and closes the object. Other clones
    /// get [`WriteError::Closed`] afterwards.
    pub async fn finish(self) -> Result<RecordingSummary, WriteError> {
        let end_us = self.now_us();
        let (reply, rx) = oneshot::channel();
        self.shared
            .tx
            .send(Msg::Finish { end_us, reply })
            .await
            .map_err(|_| self.closed_error())?;
        rx.await.map_err(|_| self.closed_error())?
    }
}

/// The background task's state.
struct Task {
    rx: mpsc::Receiver<Msg>,
    object: Box<dyn ObjectWriter>,
    /// `None` once finished.
    enc: Option<Encoder>,
    key: RecordingKey,
    flush_interval: Duration,
    forget_history_after: Duration,
    /// When the last chunk was written (or the recording started).
    quiet_since: tokio::time::Instant,
    /// The encoder let its idle memory go since the last chunk.
    released: bool,
    fail_tx: watch::Sender<Option<WriterFailure>>,
    budget: Arc<Semaphore>,
    /// Sticky: once set, records are discarded and `finish` reports it.
    failed: Option<WriterFailure>,
}

impl Task {
    async fn run(mut self) {
        let period = self.flush_interval.max(Duration::from_millis(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(Msg::Record(record, permit)) => {
                        self.add(record).await;
                        drop(permit);
                    }
                    Some(Msg::Finish { end_us, reply }) => {
                        let result = self.finish(end_us).await;
                        let _ = reply.send(result);
                        break;
                    }
                    None => {
                        // Every handle dropped without finish: keep what we have; the file
                        // stays without trailer ("incomplete") until sealed.
                        self.flush().await;
                        warn!(location = %self.object.location(), "Recording dropped without finish");
                        break;
                    }
                },
                _ = tick.tick() => self.flush().await,
            }
        }
        // Wake writers still waiting for budget.
        self.budget.close();
    }

    fn fail(&mut self, error: StorageError) {
        error!(error = %error, location = %self.object.location(), "Recording failed");
        let f = WriterFailure { error };
        self.failed = Some(f.clone());
        self.enc = None;
        let _ = self.fail_tx.send(Some(f));
        self.budget.close();
    }

    async fn add(&mut self, record: Record) {
        let Some(enc) = self.enc.as_mut() else {
            return;
        };
        match enc.push(&record) {
            Ok(Some(chunk)) => self.append(chunk).await,
            Ok(None) => {}
            // Validated by the handle; reaching this is a bug, and losing a record silently
            // would be worse than stopping.
            Err(e) => self.fail(StorageError::Io(format!("encode: {e}"))),
        }
    }

    async fn append(&mut self, chunk: EncodedChunk) {
        self.quiet_since = tokio::time::Instant::now();
        self.released = false;
        let len = chunk.bytes.len();
        debug!(
            seq = chunk.seq,
            records = chunk.record_count,
            len,
            "Chunk written"
        );
        if let Err(e) = self.object.append(Bytes::from(chunk.bytes)).await {
            self.fail(e);
        }
    }

    /// Closes the current chunk, if any, and appends it durably.
    async fn flush(&mut self) {
        let Some(enc) = self.enc.as_mut() else {
            return;
        };
        match enc.flush() {
            Ok(Some(chunk)) => self.append(chunk).await,
            Ok(None) => {
                if !self.released && self.quiet_since.elapsed() >= self.forget_history_after {
                    enc.release_idle_memory();
                    self.released = true;
                }
            }
            Err(e) => self.fail(StorageError::Io(format!("encode: {e}"))),
        }
    }

    fn failure(&self) -> WriteError {
        WriteError::Failed(self.failed.clone().unwrap_or(WriterFailure {
            error: StorageError::Closed,
        }))
    }

    async fn finish(&mut self, end_us: u64) -> Result<RecordingSummary, WriteError> {
        let Some(enc) = self.enc.take() else {
            return Err(self.failure());
        };
        let (last, trailer, summary) = match enc.finish(end_us, self.key.signing_key()) {
            Ok(v) => v,
            Err(e) => {
                self.fail(StorageError::Io(format!("encode: {e}")));
                return Err(self.failure());
            }
        };
        if let Some(chunk) = last {
            self.append(chunk).await;
            if self.failed.is_some() {
                return Err(self.failure());
            }
        }
        let result = async {
            self.object.append(Bytes::from(trailer)).await?;
            self.object.finalize().await
        }
        .await;
        match result {
            Ok(_) => {
                let summary = RecordingSummary {
                    location: self.object.location().to_string(),
                    size: summary.size,
                    final_hash: hex::encode(summary.final_hash),
                    chunks: summary.chunks,
                    records: summary.records,
                };
                info!(location = %summary.location, size = summary.size, chunks = summary.chunks, "Recording finished");
                Ok(summary)
            }
            Err(e) => {
                self.fail(e);
                Err(self.failure())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tests::sample_header;
    use crate::storage::{BoxFuture, LocalDir, ObjectInfo};
    use crate::verify::{VerifyState, verify};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Storage in memory whose appends start failing after `ok_appends` parts.
    struct FlakyStorage {
        ok_appends: usize,
        error: StorageError,
        data: Arc<Mutex<Vec<u8>>>,
        discarded: Mutex<bool>,
    }

    struct FlakyObject {
        left: Arc<AtomicUsize>,
        error: StorageError,
        data: Arc<Mutex<Vec<u8>>>,
    }

    impl Storage for FlakyStorage {
        fn create<'a>(
            &'a self,
            _key: &'a ObjectKey,
        ) -> BoxFuture<'a, Result<Box<dyn ObjectWriter>, StorageError>> {
            let o: Box<dyn ObjectWriter> = Box::new(FlakyObject {
                left: Arc::new(AtomicUsize::new(self.ok_appends)),
                error: self.error.clone(),
                data: self.data.clone(),
            });
            Box::pin(async move { Ok(o) })
        }
        fn read<'a>(&'a self, _l: &'a str) -> BoxFuture<'a, Result<Vec<u8>, StorageError>> {
            let d = self.data.lock().unwrap().clone();
            Box::pin(async move { Ok(d) })
        }
        fn list(&self) -> BoxFuture<'_, Result<Vec<ObjectInfo>, StorageError>> {
            Box::pin(async { Ok(vec![]) })
        }
        fn discard<'a>(&'a self, _l: &'a str) -> BoxFuture<'a, Result<(), StorageError>> {
            self.data.lock().unwrap().clear();
            *self.discarded.lock().unwrap() = true;
            Box::pin(async { Ok(()) })
        }
        fn size<'a>(&'a self, _l: &'a str) -> BoxFuture<'a, Result<u64, StorageError>> {
            let n = self.data.lock().unwrap().len() as u64;
            Box::pin(async move { Ok(n) })
        }
        fn read_range<'a>(
            &'a self,
            _l: &'a str,
            range: std::ops::Range<u64>,
        ) -> BoxFuture<'a, Result<Bytes, StorageError>> {
            let d = self.data.lock().unwrap().clone();
            let r = d.get(range.start as usize..(range.end as usize).min(d.len()));
            let b = Bytes::copy_from_slice(r.unwrap_or_default());
            Box::pin(async move { Ok(b) })
        }
        fn remove<'a>(&'a self, _l: &'a str) -> BoxFuture<'a, Result<u64, StorageError>> {
            Box::pin(async { Ok(0) })
        }
    }

    impl ObjectWriter for FlakyObject {
        fn location(&self) -> &str {
            "memory:flaky"
        }
        fn append(&mut self, part: Bytes) -> BoxFuture<'_, Result<(), StorageError>> {
            Box::pin(async move {
                if self
                    .left
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_err()
                {
                    return Err(self.error.clone());
                }
                self.data.lock().unwrap().extend_from_slice(&part);
                Ok(())
            })
        }
        fn finalize(&mut self) -> BoxFuture<'_, Result<u64, StorageError>> {
            let n = self.data.lock().unwrap().len() as u64;
            Box::pin(async move { Ok(n) })
        }
    }

    fn key() -> RecordingKey {
        RecordingKey::new(ed25519_dalek::SigningKey::from_bytes(&[1; 32]))
    }

    #[tokio::test]
    async fn disk_full_reaches_failure_channel_and_sticks() {
        let storage = FlakyStorage {
            ok_appends: 2, // header and one chunk
            error: StorageError::Full("no space left on device".into()),
            data: Arc::default(),
            discarded: Mutex::default(),
        };
        let config = WriterConfig {
            chunk_bytes: 1024,
            ..WriterConfig::default()
        };
        let w = RecordingWriter::create(&storage, sample_header(), key(), config)
            .await
            .unwrap();
        let failed = w.failed();
        let mut result = Ok(());
        for i in 0..200u32 {
            result = w
                .data(
                    Direction::ServerToClient,
                    ChannelId(0),
                    Bytes::from(format!("line {i} ").repeat(40)),
                )
                .await;
            if result.is_err() {
                break;
            }
        }
        let f = tokio::time::timeout(Duration::from_secs(5), failed)
            .await
            .expect("failure signalled");
        assert!(matches!(f.error, StorageError::Full(_)));
        assert!(matches!(result, Err(WriteError::Failed(_))) || w.failure().is_some());
        assert!(matches!(
            w.event(EventKind::Note, "after").await,
            Err(WriteError::Failed(_))
        ));
        assert!(matches!(w.finish().await, Err(WriteError::Failed(_))));
        // What did reach storage is a valid, incomplete recording.
        let bytes = storage.data.lock().unwrap().clone();
        assert!(matches!(
            verify(&bytes, None).state,
            VerifyState::Incomplete { .. }
        ));
    }

    #[tokio::test]
    async fn header_write_failure_refuses_session() {
        let storage = FlakyStorage {
            ok_appends: 0,
            error: StorageError::Io("broken".into()),
            data: Arc::default(),
            discarded: Mutex::default(),
        };
        let r = RecordingWriter::create(&storage, sample_header(), key(), WriterConfig::default())
            .await;
        assert!(matches!(r, Err(WriteError::Create(_))));
        assert!(
            *storage.discarded.lock().unwrap(),
            "the headerless object is removed"
        );
    }

    #[tokio::test]
    async fn a_local_recording_without_its_header_is_not_left_behind() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalDir::new(dir.path());
        let key_for = ObjectKey {
            session_id: sample_header().session_id,
            started: sample_header().start_time().unwrap(),
        };
        let mut object = storage.create(&key_for).await.unwrap();
        let location = object.location().to_owned();
        object.append(Bytes::from_static(b"x")).await.unwrap();
        drop(object);
        assert!(std::path::Path::new(&location).exists());
        storage.discard(&location).await.unwrap();
        assert!(!std::path::Path::new(&location).exists());
        // Discarding what is not there is not an error.
        storage.discard(&location).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn chunk_closes_within_flush_interval() {
        let storage = FlakyStorage {
            ok_appends: usize::MAX,
            error: StorageError::Closed,
            data: Arc::default(),
            discarded: Mutex::default(),
        };
        let w = RecordingWriter::create(&storage, sample_header(), key(), WriterConfig::default())
            .await
            .unwrap();
        let header_len = storage.data.lock().unwrap().len();
        w.data(
            Direction::ClientToServer,
            ChannelId(0),
            Bytes::from_static(b"ls\r"),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(1100)).await;
        // Let the background task run its blocking-free append.
        tokio::task::yield_now().await;
        assert!(
            storage.data.lock().unwrap().len() > header_len,
            "chunk flushed by the tick"
        );
        let s = w.finish().await.unwrap();
        assert_eq!((s.chunks, s.records), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_session_forgets_its_history_and_starts_a_segment_again() {
        let storage = FlakyStorage {
            ok_appends: usize::MAX,
            error: StorageError::Closed,
            data: Arc::default(),
            discarded: Mutex::default(),
        };
        let w = RecordingWriter::create(&storage, sample_header(), key(), WriterConfig::default())
            .await
            .unwrap();
        let line = || Bytes::from_static(b"tanaka@web01:~$ tail -f /var/log/syslog\r\n");
        // Lines a second apart, 40 s of silence after the third, then one more.
        for pause in [1100, 1100, 40_000, 1100] {
            w.data(Direction::ServerToClient, ChannelId(0), line())
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(pause)).await;
            tokio::task::yield_now().await;
        }
        let s = w.finish().await.unwrap();
        assert_eq!(s.chunks, 4);
        let bytes = storage.data.lock().unwrap().clone();
        let rec = crate::reader::Recording::parse(&bytes).unwrap();
        let seek: Vec<bool> = rec.chunks().iter().map(|c| c.seek_point).collect();
        // The second and third chunks refer back (the third holds the line written just
        // before the silence); the fourth comes after it, with nothing kept in memory
        // meanwhile, so it stands alone.
        assert_eq!(seek, [true, false, false, true]);
        assert_eq!(verify(&bytes, None).state, VerifyState::Intact);
    }

    #[tokio::test]
    async fn local_dir_round_trip_is_intact() {
        let dir = tempfile::tempdir().unwrap();
        let storage = LocalDir::new(dir.path());
        let w = RecordingWriter::create(&storage, sample_header(), key(), WriterConfig::default())
            .await
            .unwrap();
        let w2 = w.clone();
        w.event(
            EventKind::Resize {
                width: 80,
                height: 24,
            },
            "",
        )
        .await
        .unwrap();
        w2.data(
            Direction::ServerToClient,
            ChannelId(0),
            Bytes::from_static(b"$ "),
        )
        .await
        .unwrap();
        let s = w.finish().await.unwrap();
        assert!(matches!(
            w2.event(EventKind::Note, "late").await,
            Err(WriteError::Closed)
        ));
        let bytes = std::fs::read(&s.location).unwrap();
        assert_eq!(bytes.len() as u64, s.size);
        let report = verify(&bytes, Some(&key().verifying_key()));
        assert_eq!(report.state, VerifyState::Intact, "{report:?}");
        assert_eq!(report.final_hash.as_deref(), Some(s.final_hash.as_str()));
        assert_eq!(s.records, 2);
    }
}
