//! Verification of recordings for the session page: streamed through
//! [`recorder::verify_reader`] (memory bounded by one frame, not the file) and cached per file
//! version, so a page view does not re-read a recording that has not changed.
//!
//! A cached verdict is keyed on the file's identity *and* its change time: any write to the
//! file, even one that keeps its size and sets its modification time back, changes the stamp
//! and the file is verified again, so a tampered file shows as tampered on the next view.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use recorder::VerifyState;
use tokio::sync::Semaphore;

/// Verdicts kept: a path and a short reason each (a few hundred bytes), so about 1 MiB at
/// most; past it the least recently stored is dropped.
const MAX_CACHED_VERDICTS: usize = 4096;

/// Verifications running at once: each holds a blocking thread and up to one frame
/// ([`recorder::verify::MAX_VERIFY_FRAME`]) plus a decompressed chunk in memory, so a burst of
/// page views cannot multiply that.
const MAX_CONCURRENT_VERIFICATIONS: usize = 2;

/// One version of a file. `ctime` is set by the kernel on every write or metadata change and
/// cannot be set back by the file's owner (unlike `mtime`, which `touch -d` sets), and a file
/// replaced by a rename has another inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl FileStamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.len(),
            mtime_ns: ns(meta.mtime(), meta.mtime_nsec()),
            ctime_ns: ns(meta.ctime(), meta.ctime_nsec()),
        }
    }
}

struct Cached {
    stamp: FileStamp,
    state: VerifyState,
    /// When it was stored (a counter), to drop the oldest when full.
    stored: u64,
}

/// Verdicts on recording files, by path.
pub(super) struct VerifyCache {
    entries: Mutex<HashMap<PathBuf, Cached>>,
    /// Counts stores, for [`Cached::stored`].
    clock: AtomicU64,
    /// Verifications run (a file read from start to end).
    runs: AtomicU64,
    /// Views answered from the cache.
    hits: AtomicU64,
    permits: Semaphore,
}

impl Default for VerifyCache {
    fn default() -> Self {
        VerifyCache {
            entries: Mutex::new(HashMap::new()),
            clock: AtomicU64::new(0),
            runs: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            permits: Semaphore::new(MAX_CONCURRENT_VERIFICATIONS),
        }
    }
}

impl VerifyCache {
    /// The verdict on the recording at `location`, whose trailer must be signed by one of
    /// `trusted` (any key when empty); `None` when it cannot be read here (another store, a
    /// missing file, an I/O error).
    pub(super) async fn verify(
        &self,
        location: &str,
        trusted: Vec<ed25519_dalek::VerifyingKey>,
        recordings: &crate::recordings::Recordings,
    ) -> Option<VerifyState> {
        if location.contains("://") {
            // An object has no change time to key a cached verdict on (a PUT can replace it
            // with one of the same size), so it is verified on every view, by range reads.
            let store = recordings.reader(location).ok()?;
            let _permit = self.permits.acquire().await.ok()?;
            self.runs.fetch_add(1, Ordering::Relaxed);
            let report = recorder::verify_stored_trusting(store, location, &trusted)
                .await
                .ok()?;
            return Some(report.state);
        }
        let path = PathBuf::from(location);
        if let Some(state) = self.lookup(&path, stamp_of(&path).await?) {
            return Some(state);
        }
        let _permit = self.permits.acquire().await.ok()?;
        // The stamp is taken from the open file, before reading it, and only that many bytes
        // are read: a write during the read changes the stamp, so the next view re-verifies.
        let opened = path.clone();
        let (file, stamp) = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&opened)?;
            let stamp = FileStamp::of(&file.metadata()?);
            Ok::<_, std::io::Error>((file, stamp))
        })
        .await
        .ok()?
        .ok()?;
        // Another view may have verified this version while this one waited for a permit.
        if let Some(state) = self.lookup(&path, stamp) {
            return Some(state);
        }
        self.runs.fetch_add(1, Ordering::Relaxed);
        let report = tokio::task::spawn_blocking(move || {
            use std::io::Read as _;
            recorder::verify_reader_trusting(file.take(stamp.size), &trusted)
        })
        .await
        .ok()?
        .ok()?;
        self.store(path, stamp, report.state.clone());
        Some(report.state)
    }

    fn lookup(&self, path: &PathBuf, stamp: FileStamp) -> Option<VerifyState> {
        let entries = self.entries.lock().ok()?;
        let cached = entries.get(path).filter(|c| c.stamp == stamp)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(cached.state.clone())
    }

    fn store(&self, path: PathBuf, stamp: FileStamp, state: VerifyState) {
        let stored = self.clock.fetch_add(1, Ordering::Relaxed);
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_CACHED_VERDICTS && !entries.contains_key(&path) {
            let oldest = entries
                .iter()
                .min_by_key(|(_, c)| c.stored)
                .map(|(p, _)| p.clone());
            if let Some(oldest) = oldest {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            path,
            Cached {
                stamp,
                state,
                stored,
            },
        );
    }

    /// Verifications run so far (each reads a whole file).
    pub(super) fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }

    /// Views answered from the cache so far.
    pub(super) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }
}

async fn stamp_of(path: &std::path::Path) -> Option<FileStamp> {
    tokio::fs::metadata(path)
        .await
        .ok()
        .map(|m| FileStamp::of(&m))
}
