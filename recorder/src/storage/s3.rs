//! Recordings in an S3-compatible object store (Garage, MinIO, Ceph RGW, AWS S3), through a
//! local spool.
//!
//! # Object layout
//! With `storage.recordings = "s3://BUCKET/PREFIX"`:
//! - `PREFIX/YYYY/MM/DD/<session-id>.skrec`: a finished (or sealed) recording, one object,
//!   byte for byte the file a local directory would hold. Its URL
//!   `s3://BUCKET/PREFIX/YYYY/MM/DD/<session-id>.skrec` is the catalogue's `recording`.
//! - `PREFIX/YYYY/MM/DD/<session-id>.skrec.live/<offset>`: segments of a live recording;
//!   `<offset>` (20 decimal digits) is where the segment's bytes start in the recording.
//!   Concatenated in offset order they are a prefix of the recording.
//!
//! # Writing
//! A part (header, chunk, trailer) is appended to `<spool>/<session-id>.skrec` and fsync'd, as
//! in a local directory: that is what "durable" means to the writer, so a store that is slow or
//! down never holds up a session. A shipper per recording sends the bytes added since its last
//! pass as one segment every `ship_interval` (10 s by default), so at most that much of a live
//! session exists only on the local disk. When the recording is finished, the whole spool file
//! is uploaded as the final object (one PUT, or a multipart upload above [`PART_BYTES`]), then
//! the segments and the spool file are deleted: a finished recording lives only in the store.
//! An upload that fails is retried by the drainer ([`S3Store::spawn_drainer`]) every
//! `ship_interval` until the store answers.
//!
//! # Crashes
//! At start, [`S3Store::recover_spool`] seals what the spool still holds (an incomplete file
//! gets a trailer flagged "sealed after interruption", [`crate::seal_file`]) and queues it for
//! upload. When a host never comes back, another instance calls [`S3Store::seal_from_store`]:
//! it concatenates the segments that reached the store, seals that prefix, uploads the final
//! object and deletes the segments.
//!
//! # When the store is down
//! Live sessions go on spooling. Bytes that are only in the spool are counted; once they pass
//! `spool_limit`, [`Storage::create`] refuses new recordings ([`StorageError::SpoolFull`]),
//! which the services turn into a refusal of the session (fail closed).

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use chrono::Datelike;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjPath;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, error, info, warn};
use uuid::Uuid;

use super::local::{blocking, sync_dir};
use super::spool::{FileState, Spool, SpoolFile};
use super::{
    BoxFuture, EXTENSION, ObjectInfo, ObjectKey, ObjectWriter, SpoolStatus, Storage, StorageError,
};
use crate::format;
use crate::signing::RecordingKey;
use crate::verify::{SealError, VerifyState};
use crate::writer::RecordingSummary;

/// Largest segment shipped at once: it is read into memory to be sent. 8 MiB is far more than
/// ten seconds of a terminal and about ten seconds of a busy RDP desktop; a shipper with more
/// to send sends several segments in one pass.
pub const MAX_SEGMENT_BYTES: u64 = 8 * 1024 * 1024;

/// Part size of the multipart upload of a final object (S3 wants at least 5 MiB but the last),
/// and the largest recording sent as one PUT.
pub const PART_BYTES: usize = 8 * 1024 * 1024;

/// Uploads (segments, final objects) in flight at once, over all recordings: each holds up to
/// [`MAX_SEGMENT_BYTES`] (a multipart upload up to two parts) in memory, so this bounds the
/// memory shipping takes (about 64 MiB) whatever the number of sessions.
pub const MAX_CONCURRENT_UPLOADS: usize = 4;

/// A request to the store that has not answered after this long has failed: the shipper
/// tries again at its next pass, and the spool keeps the bytes meanwhile.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// object_store retries a failed request itself; a short budget, because the shipper retries
/// anyway and a store that is down must not stall a pass for minutes.
const RETRIES: usize = 2;
const RETRY_TIMEOUT: Duration = Duration::from_secs(10);

/// Width of the offset in a segment's name, so names sort as numbers (u64 has 20 digits).
const OFFSET_DIGITS: usize = 20;

/// The secret access key: `Debug` prints `<secret>`, so it cannot reach a log by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretKey(String);

impl SecretKey {
    /// Wraps the key.
    pub fn new(key: impl Into<String>) -> Self {
        SecretKey(key.into())
    }

    /// The key. Call only where it is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// How to reach the store and where to spool (from `[storage]`, `[storage.s3]` and the
/// secrets file's `[s3]`).
#[derive(Debug, Clone)]
pub struct S3Config {
    /// The bucket (`s3://BUCKET/...`).
    pub bucket: String,
    /// Key prefix of every recording, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// `http(s)://host:port` of an S3-compatible server; `None`: AWS S3 of `region`.
    pub endpoint: Option<String>,
    /// The region (Garage's default is `garage`).
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`), as most self-hosted servers want, instead
    /// of virtual-hosted style (`bucket.endpoint/key`).
    pub path_style: bool,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: SecretKey,
    /// The local spool directory.
    pub spool: PathBuf,
    /// How often a live recording's new bytes are shipped (the window that exists only on the
    /// local disk).
    pub ship_interval: Duration,
    /// Unshipped bytes above which new recordings are refused.
    pub spool_limit: u64,
}

/// Recordings in an S3-compatible store (see the module documentation). Cheap to clone.
#[derive(Clone, Debug)]
pub struct S3Store {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn ObjectStore>,
    bucket: String,
    /// Without trailing `/`; empty for the bucket's root.
    prefix: String,
    spool: Spool,
    ship_interval: Duration,
    spool_limit: u64,
    /// Only to take it out of error texts (object_store's errors may quote a request).
    secret: SecretKey,
    failures: AtomicU64,
    reachable: AtomicBool,
    /// INVARIANT: every upload holds a permit while its bytes are in memory
    /// ([`MAX_CONCURRENT_UPLOADS`]).
    uploads: Semaphore,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("spool", &self.spool.dir())
            .finish_non_exhaustive()
    }
}

/// A spool file found at start, and what became of it.
#[derive(Debug)]
pub struct Recovered {
    /// The session.
    pub session_id: Uuid,
    /// Its final object's URL (the catalogue's `recording`).
    pub location: String,
    /// `None`: the recording was finished and only waited for its upload. `Some`: it was cut
    /// short, and this is what sealing it gave.
    pub sealed: Option<Result<(RecordingSummary, String), SealError>>,
}

impl S3Store {
    /// Configures the client and creates the spool directory (mode 0700). Makes no request:
    /// a store that is down at start does not stop the instance, it only spools.
    pub fn open(config: S3Config) -> Result<S3Store, StorageError> {
        let allow_http = config
            .endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"));
        let options = ClientOptions::new()
            .with_allow_http(allow_http)
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(REQUEST_TIMEOUT);
        let retry = RetryConfig {
            max_retries: RETRIES,
            retry_timeout: RETRY_TIMEOUT,
            ..RetryConfig::default()
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(&config.region)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(config.secret_access_key.expose())
            .with_virtual_hosted_style_request(!config.path_style)
            .with_client_options(options)
            .with_retry(retry);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        let store = builder.build().map_err(|e| {
            StorageError::Io(redact(
                &format!("object store configuration: {e}"),
                &config.secret_access_key,
            ))
        })?;
        create_private_dir(&config.spool)?;
        Ok(S3Store {
            inner: Arc::new(Inner {
                store: Arc::new(store),
                bucket: config.bucket,
                prefix: config.prefix.trim_matches('/').to_owned(),
                spool: Spool::new(config.spool),
                ship_interval: config.ship_interval.max(Duration::from_millis(100)),
                spool_limit: config.spool_limit,
                secret: config.secret_access_key,
                failures: AtomicU64::new(0),
                reachable: AtomicBool::new(true),
                uploads: Semaphore::new(MAX_CONCURRENT_UPLOADS),
            }),
        })
    }

    /// `s3://BUCKET` and the prefix, as configured.
    pub fn url(&self) -> String {
        self.inner.location_of(&self.inner.prefix)
    }

    /// Whether `location` is an object of this store.
    pub fn owns(&self, location: &str) -> bool {
        self.inner.path_of(location).is_ok()
    }

    /// Runs until the last handle to the store is dropped: every `ship_interval`, uploads the
    /// finished recordings still in the spool (their upload failed, or they were found at
    /// start). Call once, from a Tokio runtime, in a process that writes recordings.
    pub fn spawn_drainer(&self) -> JoinHandle<()> {
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let period = self.inner.ship_interval;
        tokio::spawn(
            async move {
                loop {
                    let Some(inner) = weak.upgrade() else { return };
                    inner.drain().await;
                    drop(inner);
                    tokio::time::sleep(period).await;
                }
            }
            .instrument(tracing::info_span!("spool drainer")),
        )
    }

    /// Uploads every finished recording in the spool now; returns how many still wait (the
    /// store did not take them).
    pub async fn drain_once(&self) -> usize {
        self.inner.drain().await
    }

    /// At start, before any recording is written: goes through the spool left by the last
    /// run, seals each recording that was cut short (signed with `key`, flagged sealed after
    /// interruption), and queues every recording for upload (call [`S3Store::drain_once`] or
    /// [`S3Store::spawn_drainer`]). A spool file without a whole header never held a
    /// recording and is removed; one that fails verification is kept aside (renamed
    /// `.tampered`) for a person to look at, never uploaded.
    pub async fn recover_spool(&self, key: &RecordingKey) -> Result<Vec<Recovered>, StorageError> {
        let inner = Arc::clone(&self.inner);
        let key = key.clone();
        blocking(move || inner.recover_spool_blocking(&key)).await
    }

    /// Seals the recording at `location` of an instance that died, from what reached the
    /// store: concatenates its segments (in offset order, up to the first gap) in a temporary
    /// file in the spool, seals that prefix with `key` (a trailer flagged sealed after
    /// interruption), uploads it as the final object and deletes the segments. Memory stays
    /// under one segment; the disk needs room for the recording once.
    ///
    /// Returns what [`crate::seal_file`] returns for a file, with the object's URL as the
    /// summary's location, so the result goes straight to the catalogue. Errors:
    /// [`SealError::AlreadySealed`] when the final object is already there and authentic (the
    /// instance finished it, or another one sealed it first); [`SealError::NoHeader`] when no
    /// segment reached the store; [`SealError::Io`] when the store or the spool disk failed
    /// (try again later).
    ///
    /// Two instances sealing the same recording at once would each upload their own seal:
    /// the caller makes sure one takes the work (the catalogue's takeover).
    pub async fn seal_from_store(
        &self,
        location: &str,
        key: &RecordingKey,
    ) -> Result<(RecordingSummary, String), SealError> {
        let inner = &self.inner;
        let io = |e: StorageError| SealError::Io(e.to_string());
        let path = inner.path_of(location).map_err(io)?;
        match inner.store.head(&path).await {
            Ok(_) => {
                let report = super::verify_stored(self, location, None)
                    .await
                    .map_err(io)?;
                return Err(match report.state {
                    VerifyState::Intact => SealError::AlreadySealed("intact"),
                    VerifyState::Interrupted => SealError::AlreadySealed("interrupted"),
                    other => SealError::Io(format!(
                        "{location}: the final object exists but is {}",
                        other.as_str()
                    )),
                });
            }
            Err(object_store::Error::NotFound { .. }) => inner.note_success(),
            Err(e) => return Err(io(inner.map_err("head", e))),
        }
        let tmp = inner
            .spool
            .dir()
            .join(format!("seal-{}.tmp", Uuid::now_v7()));
        let result = async {
            let len = inner.download_segments(&path, &tmp).await.map_err(io)?;
            if len == 0 {
                return Err(SealError::NoHeader);
            }
            let t = tmp.clone();
            let k = key.clone();
            let (mut summary, reason) =
                blocking(move || Ok(crate::seal_file(&t, &k)))
                    .await
                    .map_err(io)??;
            inner
                .upload_file(&tmp, &path, summary.size)
                .await
                .map_err(io)?;
            inner.delete_segments(&path).await.map_err(io)?;
            summary.location = location.to_owned();
            info!(%location, chunks = summary.chunks, "Recording of a dead instance sealed from the object store");
            Ok((summary, reason))
        }
        .await;
        if let Err(e) = std::fs::remove_file(&tmp)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            warn!(path = %tmp.display(), error = %e, "Cannot remove a temporary file of the spool");
        }
        result
    }
}

/// Makes `dir` (and parents) with mode 0700: the spool holds recordings.
fn create_private_dir(dir: &Path) -> Result<(), StorageError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir)
        .map_err(|e| StorageError::from_io(&format!("spool {}", dir.display()), &e))
}

/// Takes the secret key out of an error text.
fn redact(text: &str, secret: &SecretKey) -> String {
    if secret.expose().is_empty() {
        text.to_owned()
    } else {
        text.replace(secret.expose(), "<secret>")
    }
}

impl Inner {
    fn location_of(&self, path: &str) -> String {
        if path.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{path}", self.bucket)
        }
    }

    /// The object path of a location of this bucket (and prefix).
    fn path_of(&self, location: &str) -> Result<ObjPath, StorageError> {
        let foreign = || StorageError::ForeignLocation(location.to_owned());
        let rest = location
            .strip_prefix("s3://")
            .and_then(|r| r.strip_prefix(self.bucket.as_str()))
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(foreign)?;
        if !self.prefix.is_empty()
            && !rest
                .strip_prefix(self.prefix.as_str())
                .is_some_and(|r| r.starts_with('/'))
        {
            return Err(foreign());
        }
        ObjPath::parse(rest).map_err(|_| foreign())
    }

    fn object_path(&self, key: &ObjectKey) -> String {
        let d = key.started;
        let name = format!(
            "{:04}/{:02}/{:02}/{}.{EXTENSION}",
            d.year(),
            d.month(),
            d.day(),
            key.session_id
        );
        if self.prefix.is_empty() {
            name
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// This process's spool file of the object at `path`, while it has one (live, or waiting
    /// for its upload): it is fresher than the store, which holds only segments or nothing
    /// yet, so this instance's own web player and CLI see a live recording.
    fn spooled(&self, path: &ObjPath) -> Option<(super::LocalDir, String)> {
        let id = session_of(path)?;
        self.spool.get(id)?;
        Some((
            super::LocalDir::new(self.spool.dir()),
            self.spool.path(id).display().to_string(),
        ))
    }

    fn segments_of(path: &ObjPath) -> ObjPath {
        ObjPath::from(format!("{path}.live"))
    }

    fn segment(path: &ObjPath, offset: u64) -> ObjPath {
        ObjPath::from(format!("{path}.live/{offset:0OFFSET_DIGITS$}"))
    }

    fn status(&self) -> SpoolStatus {
        let t = self.spool.totals();
        SpoolStatus {
            spool_bytes: t.bytes,
            unshipped_bytes: t.unshipped,
            limit: self.spool_limit,
            pending_uploads: t.pending,
            store_failures: self.failures.load(Ordering::Relaxed),
            store_reachable: self.reachable.load(Ordering::Relaxed),
        }
    }

    fn note_success(&self) {
        if !self.reachable.swap(true, Ordering::Relaxed) {
            info!(bucket = %self.bucket, "Object store reachable again; shipping the spool");
        }
    }

    /// Maps a store error, counting it (a missing object is an answer, not a failure).
    fn map_err(&self, op: &str, e: object_store::Error) -> StorageError {
        match e {
            object_store::Error::NotFound { path, .. } => {
                self.note_success();
                StorageError::NotFound(self.location_of(&path))
            }
            object_store::Error::AlreadyExists { path, .. } => {
                self.note_success();
                StorageError::Exists(self.location_of(&path))
            }
            other => {
                let text = redact(&format!("{op}: {other}"), &self.secret);
                self.failures.fetch_add(1, Ordering::Relaxed);
                if self.reachable.swap(false, Ordering::Relaxed) {
                    warn!(bucket = %self.bucket, error = %text, "Object store unreachable; recordings stay in the local spool until it answers");
                } else {
                    debug!(error = %text, "Object store still unreachable");
                }
                StorageError::Unavailable(text)
            }
        }
    }

    /// Refuses a new recording while the spool holds too much that is not in the store.
    fn admit(&self) -> Result<(), StorageError> {
        let t = self.spool.totals();
        if t.unshipped > self.spool_limit {
            let e = StorageError::SpoolFull {
                unshipped: t.unshipped,
                limit: self.spool_limit,
            };
            error!(error = %e, "Refusing a new recording: the spool is over its limit");
            return Err(e);
        }
        Ok(())
    }

    /// Sends the spool file's bytes `from..to` as segments; returns how far it got.
    async fn ship(&self, id: Uuid, spool_path: &Path, path: &ObjPath, from: u64, to: u64) -> u64 {
        let mut pos = from;
        while pos < to {
            let len = (to - pos).min(MAX_SEGMENT_BYTES);
            let Ok(_permit) = self.uploads.acquire().await else {
                return pos;
            };
            let bytes = match read_at(spool_path, pos, len).await {
                Ok(b) => b,
                Err(e) => {
                    warn!(error = %e, "Cannot read the spool to ship it");
                    return pos;
                }
            };
            let segment = Self::segment(path, pos);
            match self.store.put(&segment, PutPayload::from(bytes)).await {
                Ok(_) => {
                    self.note_success();
                    pos += len;
                    self.spool.shipped(id, pos);
                    debug!(%segment, len, "Segment shipped");
                }
                Err(e) => {
                    let _ = self.map_err("ship segment", e);
                    return pos;
                }
            }
        }
        pos
    }

    /// Uploads the local file `file` (`size` bytes) as the object `path`.
    async fn upload_file(
        &self,
        file: &Path,
        path: &ObjPath,
        size: u64,
    ) -> Result<(), StorageError> {
        let _permit = self
            .uploads
            .acquire()
            .await
            .map_err(|_| StorageError::Closed)?;
        if size <= PART_BYTES as u64 {
            let bytes = read_at(file, 0, size).await?;
            self.store
                .put(path, PutPayload::from(bytes))
                .await
                .map_err(|e| self.map_err("upload", e))?;
            self.note_success();
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(|e| self.map_err("start multipart upload", e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut pos = 0;
        while pos < size {
            let len = (size - pos).min(PART_BYTES as u64);
            let part = match read_at(file, pos, len).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = w.abort().await;
                    return Err(e);
                }
            };
            // Two parts in flight at most: memory stays at about three parts.
            if let Err(e) = w.wait_for_capacity(1).await {
                let _ = w.abort().await;
                return Err(self.map_err("multipart upload", e));
            }
            w.put(part);
            pos += len;
        }
        w.finish()
            .await
            .map_err(|e| self.map_err("complete multipart upload", e))?;
        self.note_success();
        Ok(())
    }

    /// The segments of `path`, in offset order: (offset, object, size).
    async fn list_segments(
        &self,
        path: &ObjPath,
    ) -> Result<Vec<(u64, ObjPath, u64)>, StorageError> {
        let prefix = Self::segments_of(path);
        let mut stream = self.store.list(Some(&prefix));
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| self.map_err("list segments", e))?;
            // A name that is not an offset is not ours: leave it alone.
            if let Some(offset) = meta.location.filename().and_then(|n| n.parse::<u64>().ok()) {
                out.push((offset, meta.location, meta.size));
            }
        }
        self.note_success();
        out.sort_by_key(|(o, _, _)| *o);
        Ok(out)
    }

    async fn delete_segments(&self, path: &ObjPath) -> Result<(), StorageError> {
        for (_, segment, _) in self.list_segments(path).await? {
            match self.store.delete(&segment).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.map_err("delete segment", e)),
            }
        }
        Ok(())
    }

    /// Writes the segments of `path`, concatenated up to the first gap, to the new file
    /// `out`; returns its length. Overlapping segments (a shipper that sent a range again)
    /// are fine: the recording is append-only, so the overlap holds the same bytes.
    async fn download_segments(&self, path: &ObjPath, out: &Path) -> Result<u64, StorageError> {
        let segments = self.list_segments(path).await?;
        let file = {
            let out = out.to_owned();
            blocking(move || {
                let mut opts = std::fs::OpenOptions::new();
                opts.append(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                opts.open(&out)
                    .map_err(|e| StorageError::from_io(&out.display().to_string(), &e))
            })
            .await?
        };
        let mut file = Some(file);
        let mut end = 0u64;
        for (offset, segment, size) in segments {
            let skip = match continues(end, offset, size) {
                Continues::Gap => {
                    warn!(%segment, expected = end, "Gap between segments; the recording is sealed before it");
                    break;
                }
                Continues::Nothing => continue,
                Continues::After(skip) => skip,
            };
            let bytes = self
                .store
                .get(&segment)
                .await
                .map_err(|e| self.map_err("get segment", e))?
                .bytes()
                .await
                .map_err(|e| self.map_err("get segment", e))?;
            let skip = usize::try_from(skip).unwrap_or(usize::MAX);
            let new = bytes.slice(skip.min(bytes.len())..);
            let mut f = file.take().ok_or(StorageError::Closed)?;
            let len = new.len() as u64;
            f = blocking(move || {
                use std::io::Write;
                f.write_all(&new)
                    .map_err(|e| StorageError::from_io("write", &e))?;
                Ok(f)
            })
            .await?;
            file = Some(f);
            end += len;
        }
        if let Some(f) = file {
            blocking(move || f.sync_all().map_err(|e| StorageError::from_io("fsync", &e))).await?;
        }
        Ok(end)
    }

    /// Uploads a finished spool file as its final object, then deletes its segments and the
    /// spool file. When the final object is already there (a crash after the upload, or
    /// another instance sealed the recording as abandoned), an equal one is only cleaned up,
    /// and a different one is never overwritten: the spool file is kept aside.
    async fn publish(&self, id: Uuid, object: &str) -> Result<(), StorageError> {
        let spool_path = self.spool.path(id);
        let size = std::fs::metadata(&spool_path)
            .map_err(|e| StorageError::from_io("spool", &e))?
            .len();
        let path = ObjPath::from(object);
        let location = self.location_of(object);
        match self.store.head(&path).await {
            Ok(meta) if meta.size == size => {
                self.note_success();
                debug!(%location, "Final object already uploaded");
            }
            Ok(meta) => {
                self.note_success();
                let aside = spool_path.with_extension("conflict");
                warn!(%location, spool = %aside.display(), stored = meta.size, spooled = size, "The object store already holds another version of this recording (sealed by another instance?); the spooled one is kept aside, not uploaded");
                std::fs::rename(&spool_path, &aside)
                    .map_err(|e| StorageError::from_io("spool", &e))?;
                self.spool.remove(id);
                return Ok(());
            }
            Err(object_store::Error::NotFound { .. }) => {
                self.note_success();
                self.upload_file(&spool_path, &path, size).await?;
            }
            Err(e) => return Err(self.map_err("head", e)),
        }
        self.delete_segments(&path).await?;
        match std::fs::remove_file(&spool_path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::from_io("spool", &e)),
        }
        self.spool.remove(id);
        info!(%location, size, "Recording shipped to the object store");
        Ok(())
    }

    /// One pass over the finished spool files; returns how many are still waiting.
    async fn drain(&self) -> usize {
        let pending = self.spool.pending();
        let mut left = 0;
        for (id, file) in pending {
            if let Err(e) = self.publish(id, &file.object).await {
                left += 1;
                debug!(session = %id, error = %e, "Recording still waits for the object store");
                if matches!(e, StorageError::Unavailable(_)) {
                    // The store is down: the others would fail the same way.
                    return self.spool.pending().len();
                }
            }
        }
        left
    }

    fn recover_spool_blocking(&self, key: &RecordingKey) -> Result<Vec<Recovered>, StorageError> {
        let rd = match std::fs::read_dir(self.spool.dir()) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StorageError::from_io("spool", &e)),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| StorageError::from_io("spool", &e))?;
            let path = entry.path();
            if path.extension().is_none_or(|e| e != EXTENSION) {
                if path.extension().is_some_and(|e| e == "tmp") {
                    // A seal of another instance's recording that this process did not finish:
                    // the segments are still in the store, so it can be done again.
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            if let Some(r) = self.recover_file(&path, key)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn recover_file(
        &self,
        path: &Path,
        key: &RecordingKey,
    ) -> Result<Option<Recovered>, StorageError> {
        use std::io::Read;
        let io = |e: std::io::Error| StorageError::from_io(&path.display().to_string(), &e);
        let mut head = Vec::new();
        std::fs::File::open(path)
            .map_err(io)?
            .take((format::HEADER_PREFIX_LEN + format::MAX_HEADER_SIZE + format::HASH_LEN) as u64)
            .read_to_end(&mut head)
            .map_err(io)?;
        let header = match format::decode_header(&head) {
            Ok(Some((h, _))) => h.header,
            Ok(None) => {
                warn!(spool = %path.display(), "Spool file without a whole header (never a recording); removed");
                std::fs::remove_file(path).map_err(io)?;
                return Ok(None);
            }
            Err(e) => {
                let aside = path.with_extension("bad");
                warn!(spool = %path.display(), error = %e, "Spool file is not a recording; kept aside");
                std::fs::rename(path, &aside).map_err(io)?;
                return Ok(None);
            }
        };
        let id = header.session_id;
        if self.spool.path(id) != path {
            let aside = path.with_extension("bad");
            warn!(spool = %path.display(), session = %id, "Spool file named after another session; kept aside");
            std::fs::rename(path, &aside).map_err(io)?;
            return Ok(None);
        }
        let Some(started) = header.start_time() else {
            return Err(StorageError::Io(format!(
                "{}: start time out of range",
                path.display()
            )));
        };
        let object = self.object_path(&ObjectKey {
            session_id: id,
            started,
        });
        let location = self.location_of(&object);
        let report =
            crate::verify_reader(std::fs::File::open(path).map_err(io)?, None).map_err(io)?;
        let sealed = match &report.state {
            VerifyState::Intact | VerifyState::Interrupted => None,
            VerifyState::Incomplete { .. } => {
                let result = crate::seal_file(path, key);
                match &result {
                    Ok((_, reason)) => {
                        info!(%location, reason = %reason, "Spooled recording sealed after interruption")
                    }
                    Err(e) => warn!(%location, error = %e, "Cannot seal a spooled recording"),
                }
                Some(result.map(|(mut s, reason)| {
                    s.location = location.clone();
                    (s, reason)
                }))
            }
            VerifyState::Tampered { offset, reason } => {
                let aside = path.with_extension("tampered");
                error!(spool = %aside.display(), offset, reason = %reason, "Spooled recording fails verification; kept aside, not uploaded");
                std::fs::rename(path, &aside).map_err(io)?;
                return Ok(Some(Recovered {
                    session_id: id,
                    location,
                    sealed: Some(Err(SealError::Tampered {
                        offset: *offset,
                        reason: reason.clone(),
                    })),
                }));
            }
        };
        if matches!(sealed, Some(Err(_))) {
            return Ok(Some(Recovered {
                session_id: id,
                location,
                sealed,
            }));
        }
        let size = std::fs::metadata(path).map_err(io)?.len();
        self.spool.insert(
            id,
            SpoolFile {
                object,
                size,
                shipped: 0,
                state: FileState::Finished,
            },
        );
        Ok(Some(Recovered {
            session_id: id,
            location,
            sealed,
        }))
    }
}

/// What a segment adds to a recording assembled up to `end` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Continues {
    /// It starts after `end`: bytes are missing, the recording stops before it.
    Gap,
    /// It holds nothing past `end` (a range shipped again).
    Nothing,
    /// Its bytes after the first `n` (already there) continue the recording.
    After(u64),
}

/// See [`Continues`]: the segment at `offset`, `size` bytes long.
fn continues(end: u64, offset: u64, size: u64) -> Continues {
    if offset > end {
        Continues::Gap
    } else if offset.saturating_add(size) <= end {
        Continues::Nothing
    } else {
        Continues::After(end - offset)
    }
}

/// Reads `len` bytes at `offset` of a file, on the blocking pool.
async fn read_at(path: &Path, offset: u64, len: u64) -> Result<Bytes, StorageError> {
    let path = path.to_owned();
    blocking(move || {
        use std::io::{Read, Seek, SeekFrom};
        let io = |e: std::io::Error| StorageError::from_io(&path.display().to_string(), &e);
        let mut f = std::fs::File::open(&path).map_err(io)?;
        f.seek(SeekFrom::Start(offset)).map_err(io)?;
        let cap = usize::try_from(len).map_err(|_| StorageError::Io("read too large".into()))?;
        let mut buf = Vec::with_capacity(cap);
        f.take(len).read_to_end(&mut buf).map_err(io)?;
        Ok(Bytes::from(buf))
    })
    .await
}

impl Storage for S3Store {
    fn create<'a>(
        &'a self,
        key: &'a ObjectKey,
    ) -> BoxFuture<'a, Result<Box<dyn ObjectWriter>, StorageError>> {
        Box::pin(async move {
            let inner = &self.inner;
            inner.admit()?;
            let id = key.session_id;
            let object = inner.object_path(key);
            let spool_path = inner.spool.path(id);
            if inner.spool.get(id).is_some() {
                return Err(StorageError::Exists(inner.location_of(&object)));
            }
            let p = spool_path.clone();
            let file = blocking(move || {
                let dir = p.parent().unwrap_or(Path::new("."));
                create_private_dir(dir)?;
                let mut opts = std::fs::OpenOptions::new();
                opts.append(true).create_new(true);
                #[cfg(unix)]
                {
                    use std::os::unix::fs::OpenOptionsExt;
                    opts.mode(0o600);
                }
                let f = opts
                    .open(&p)
                    .map_err(|e| StorageError::from_io(&p.display().to_string(), &e))?;
                sync_dir(dir)?;
                Ok(f)
            })
            .await?;
            inner.spool.insert(
                id,
                SpoolFile {
                    object: object.clone(),
                    size: 0,
                    shipped: 0,
                    state: FileState::Live,
                },
            );
            let durable = Arc::new(AtomicU64::new(0));
            let (stop_tx, stop_rx) = watch::channel(false);
            let path = ObjPath::from(object.as_str());
            let shipper = tokio::spawn(
                ship_loop(
                    Arc::clone(inner),
                    id,
                    spool_path.clone(),
                    path.clone(),
                    Arc::clone(&durable),
                    stop_rx,
                )
                .instrument(tracing::debug_span!("shipper", session = %id)),
            );
            let w: Box<dyn ObjectWriter> = Box::new(S3Object {
                inner: Arc::clone(inner),
                id,
                location: inner.location_of(&object),
                object,
                file: Some(file),
                size: 0,
                durable,
                shipper: Some((stop_tx, shipper)),
            });
            Ok(w)
        })
    }

    fn read<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<Vec<u8>, StorageError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let path = inner.path_of(location)?;
            if let Some((dir, file)) = inner.spooled(&path) {
                // Uploaded and removed meanwhile: then the store has it.
                match dir.read(&file).await {
                    Err(StorageError::NotFound(_)) => {}
                    other => return other,
                }
            }
            let bytes = inner
                .store
                .get(&path)
                .await
                .map_err(|e| inner.map_err("get", e))?
                .bytes()
                .await
                .map_err(|e| inner.map_err("get", e))?;
            inner.note_success();
            Ok(bytes.to_vec())
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<ObjectInfo>, StorageError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let prefix = (!inner.prefix.is_empty()).then(|| ObjPath::from(inner.prefix.as_str()));
            let mut stream = inner.store.list(prefix.as_ref());
            let mut out = Vec::new();
            let suffix = format!(".{EXTENSION}");
            while let Some(meta) = stream.next().await {
                let meta = meta.map_err(|e| inner.map_err("list", e))?;
                // Final objects only: segments live under `<id>.skrec.live/`.
                if meta.location.as_ref().ends_with(&suffix) {
                    out.push(ObjectInfo {
                        location: inner.location_of(meta.location.as_ref()),
                        size: meta.size,
                    });
                }
            }
            inner.note_success();
            out.sort_by(|a, b| a.location.cmp(&b.location));
            Ok(out)
        })
    }

    fn discard<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<(), StorageError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let path = inner.path_of(location)?;
            // The object never got its header: only the spool file exists.
            if let Some(id) = session_of(&path) {
                inner.spool.remove(id);
                match std::fs::remove_file(inner.spool.path(id)) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(StorageError::from_io("spool", &e));
                    }
                    _ => {}
                }
            }
            Ok(())
        })
    }

    fn size<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<u64, StorageError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let path = inner.path_of(location)?;
            if let Some((dir, file)) = inner.spooled(&path) {
                match dir.size(&file).await {
                    Err(StorageError::NotFound(_)) => {}
                    other => return other,
                }
            }
            let meta = inner
                .store
                .head(&path)
                .await
                .map_err(|e| inner.map_err("head", e))?;
            inner.note_success();
            Ok(meta.size)
        })
    }

    fn read_range<'a>(
        &'a self,
        location: &'a str,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<Bytes, StorageError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let path = inner.path_of(location)?;
            if range.is_empty() {
                return Ok(Bytes::new());
            }
            if let Some((dir, file)) = inner.spooled(&path) {
                match dir.read_range(&file, range.clone()).await {
                    Err(StorageError::NotFound(_)) => {}
                    other => return other,
                }
            }
            let bytes = inner
                .store
                .get_range(&path, range)
                .await
                .map_err(|e| inner.map_err("get range", e))?;
            inner.note_success();
            Ok(bytes)
        })
    }

    fn remove<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<u64, StorageError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let path = inner.path_of(location)?;
            let size = match inner.store.head(&path).await {
                Ok(meta) => meta.size,
                Err(object_store::Error::NotFound { .. }) => 0,
                Err(e) => return Err(inner.map_err("head", e)),
            };
            match inner.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(inner.map_err("delete", e)),
            }
            inner.delete_segments(&path).await?;
            inner.note_success();
            Ok(size)
        })
    }

    fn spool_status(&self) -> Option<SpoolStatus> {
        Some(self.inner.status())
    }
}

/// The session id in an object path `…/<id>.skrec`.
fn session_of(path: &ObjPath) -> Option<Uuid> {
    path.filename()?
        .strip_suffix(&format!(".{EXTENSION}"))?
        .parse()
        .ok()
}

/// Ships what the writer made durable every `ship_interval`, until told to stop (or the
/// writer is dropped); returns the offset shipped up to.
async fn ship_loop(
    inner: Arc<Inner>,
    id: Uuid,
    spool_path: PathBuf,
    path: ObjPath,
    durable: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) -> u64 {
    let mut shipped = 0;
    loop {
        let stopped = tokio::select! {
            changed = stop.changed() => changed.is_err() || *stop.borrow(),
            () = tokio::time::sleep(inner.ship_interval) => false,
        };
        if stopped {
            // Finalising: the whole file is uploaded next, no segment is needed. Dropped
            // without finalise: send what is there, so the store has it for a takeover.
            if stop.has_changed().is_err() {
                let to = durable.load(Ordering::Acquire);
                shipped = inner.ship(id, &spool_path, &path, shipped, to).await;
            }
            return shipped;
        }
        let to = durable.load(Ordering::Acquire);
        if to > shipped {
            shipped = inner.ship(id, &spool_path, &path, shipped, to).await;
        }
    }
}

/// A recording being written: appends go to the spool file; a shipper task sends them on.
struct S3Object {
    inner: Arc<Inner>,
    id: Uuid,
    location: String,
    object: String,
    /// `None` after finalise or after a failed append (as for a local file).
    file: Option<std::fs::File>,
    size: u64,
    /// Bytes fsync'd in the spool: what the shipper may send.
    durable: Arc<AtomicU64>,
    shipper: Option<(watch::Sender<bool>, JoinHandle<u64>)>,
}

impl ObjectWriter for S3Object {
    fn location(&self) -> &str {
        &self.location
    }

    fn append(&mut self, part: Bytes) -> BoxFuture<'_, Result<(), StorageError>> {
        Box::pin(async move {
            let mut file = self.file.take().ok_or(StorageError::Closed)?;
            let len = part.len() as u64;
            let file = blocking(move || {
                use std::io::Write;
                file.write_all(&part)
                    .map_err(|e| StorageError::from_io("write spool", &e))?;
                file.sync_data()
                    .map_err(|e| StorageError::from_io("fsync spool", &e))?;
                Ok(file)
            })
            .await?;
            self.file = Some(file);
            self.size += len;
            self.inner.spool.appended(self.id, len);
            self.durable.store(self.size, Ordering::Release);
            Ok(())
        })
    }

    fn finalize(&mut self) -> BoxFuture<'_, Result<u64, StorageError>> {
        Box::pin(async move {
            let file = self.file.take().ok_or(StorageError::Closed)?;
            blocking(move || {
                file.sync_all()
                    .map_err(|e| StorageError::from_io("fsync spool", &e))
            })
            .await?;
            // Stop the shipper first, so no segment lands after the segments are deleted.
            if let Some((stop, task)) = self.shipper.take() {
                let _ = stop.send(true);
                if let Ok(shipped) = task.await {
                    self.inner.spool.shipped(self.id, shipped);
                }
            }
            self.inner.spool.finished(self.id);
            // The recording is whole and fsync'd in the spool: it is safe whatever the store
            // says now. A failed upload is the drainer's to retry.
            if let Err(e) = self.inner.publish(self.id, &self.object).await {
                warn!(location = %self.location, error = %e, "Recording kept in the spool; it is uploaded when the object store answers");
            }
            Ok(self.size)
        })
    }
}

impl Drop for S3Object {
    fn drop(&mut self) {
        // Dropped without finalise (the writer gave up): the shipper sends what is durable
        // and stops (it sees the sender gone). The spool file stays for the next start.
        if let Some((stop, _task)) = self.shipper.take() {
            drop(stop);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store pointing nowhere (no request is made) and its spool, removed when dropped.
    fn store(prefix: &str) -> (S3Store, tempfile::TempDir) {
        let spool = tempfile::tempdir().unwrap();
        let dir = spool.path().join("spool");
        let store = S3Store::open(S3Config {
            bucket: "rec".into(),
            prefix: prefix.into(),
            endpoint: Some("http://127.0.0.1:1".into()),
            region: "garage".into(),
            path_style: true,
            access_key_id: "GK1".into(),
            secret_access_key: SecretKey::new("very-secret-value"),
            spool: dir,
            ship_interval: Duration::from_secs(10),
            spool_limit: 1024,
        })
        .unwrap();
        (store, spool)
    }

    #[test]
    fn layout_and_locations() {
        let (s, _spool) = store("/site-a/");
        let key = ObjectKey {
            session_id: Uuid::from_u128(42),
            started: chrono::DateTime::from_timestamp(1_764_000_000, 0).unwrap(),
        };
        let object = s.inner.object_path(&key);
        assert_eq!(
            object,
            "site-a/2025/11/24/00000000-0000-0000-0000-00000000002a.skrec"
        );
        let location = s.inner.location_of(&object);
        assert_eq!(
            location,
            "s3://rec/site-a/2025/11/24/00000000-0000-0000-0000-00000000002a.skrec"
        );
        assert_eq!(s.inner.path_of(&location).unwrap().as_ref(), object);
        assert!(s.owns(&location));
        assert!(!s.owns("s3://other/site-a/x.skrec"));
        assert!(!s.owns("s3://rec/site-b/x.skrec"));
        assert!(!s.owns("/var/lib/sekisho/x.skrec"));
        let seg = Inner::segment(&ObjPath::from(object.as_str()), 1234);
        assert!(seg.as_ref().ends_with(".skrec.live/00000000000000001234"));
        assert_eq!(
            session_of(&ObjPath::from(object.as_str())),
            Some(key.session_id)
        );
        assert_eq!(store("").0.url(), "s3://rec");
    }

    #[test]
    fn segments_continue_a_recording_up_to_the_first_gap() {
        // In offset order: 0..100, 100..150, a repeat of 100..150 grown to 100..180, 180..200,
        // then 250..300 after a gap.
        let mut end = 0;
        let mut taken = Vec::new();
        for (offset, size) in [
            (0, 100),
            (100, 50),
            (100, 80),
            (150, 10),
            (180, 20),
            (250, 50),
        ] {
            match continues(end, offset, size) {
                Continues::Gap => break,
                Continues::Nothing => {}
                Continues::After(skip) => {
                    taken.push((offset, skip));
                    end = offset + size;
                }
            }
        }
        assert_eq!(end, 200);
        assert_eq!(taken, [(0, 0), (100, 0), (100, 50), (180, 0)]);
    }

    #[test]
    fn secret_never_printed() {
        let (s, _spool) = store("p");
        assert!(!format!("{s:?}").contains("very-secret-value"));
        assert_eq!(
            redact("error: very-secret-value in request", &s.inner.secret),
            "error: <secret> in request"
        );
        assert_eq!(format!("{:?}", s.inner.secret), "<secret>");
    }

    #[tokio::test]
    async fn refuses_new_recordings_over_the_spool_limit() {
        let (s, _spool) = store("p");
        let id = Uuid::from_u128(7);
        s.inner.spool.insert(
            id,
            SpoolFile {
                object: "p/x.skrec".into(),
                size: 4096,
                shipped: 0,
                state: FileState::Live,
            },
        );
        let key = ObjectKey {
            session_id: Uuid::from_u128(8),
            started: chrono::Utc::now(),
        };
        assert!(matches!(
            s.create(&key).await.err(),
            Some(StorageError::SpoolFull {
                unshipped: 4096,
                limit: 1024
            })
        ));
        let st = s.spool_status().unwrap();
        assert_eq!((st.unshipped_bytes, st.limit), (4096, 1024));
    }
}
