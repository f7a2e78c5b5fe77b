//! The local spool of an object store: which spool files exist, how much of each reached the
//! store, and which finished recordings still wait for their upload.
//!
//! The files themselves are `<spool>/<session-id>.skrec`, written and fsync'd part by part
//! like a local recording; this module only keeps the books, so `/metrics` and the admission
//! check ("refuse new recordings once the unshipped bytes pass the limit") read totals
//! without touching the disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use uuid::Uuid;

use super::EXTENSION;

/// Where a spool file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileState {
    /// A writer appends to it; its shipper sends new bytes as segments.
    Live,
    /// Complete (or sealed): waits for its upload as the final object.
    Finished,
}

/// One spool file's books.
#[derive(Debug, Clone)]
pub(super) struct SpoolFile {
    /// The object path (key without bucket) of the final object.
    pub object: String,
    /// Bytes in the file.
    pub size: u64,
    /// Bytes already in the store as segments (for a finished file found at start: 0, since
    /// what the crashed process shipped is not known; the count errs on the safe side).
    pub shipped: u64,
    pub state: FileState,
}

/// The spool directory and its books.
#[derive(Debug)]
pub(super) struct Spool {
    dir: PathBuf,
    files: Mutex<HashMap<Uuid, SpoolFile>>,
}

/// Totals over the spool.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Totals {
    pub bytes: u64,
    pub unshipped: u64,
    pub pending: u64,
}

impl Spool {
    pub fn new(dir: PathBuf) -> Self {
        Spool {
            dir,
            files: Mutex::new(HashMap::new()),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The spool file of a session.
    pub fn path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.{EXTENSION}"))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, SpoolFile>> {
        match self.files.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    pub fn insert(&self, id: Uuid, file: SpoolFile) {
        self.lock().insert(id, file);
    }

    pub fn appended(&self, id: Uuid, len: u64) {
        if let Some(f) = self.lock().get_mut(&id) {
            f.size += len;
        }
    }

    pub fn shipped(&self, id: Uuid, upto: u64) {
        if let Some(f) = self.lock().get_mut(&id) {
            f.shipped = f.shipped.max(upto);
        }
    }

    pub fn finished(&self, id: Uuid) {
        if let Some(f) = self.lock().get_mut(&id) {
            f.state = FileState::Finished;
        }
    }

    pub fn remove(&self, id: Uuid) {
        self.lock().remove(&id);
    }

    pub fn get(&self, id: Uuid) -> Option<SpoolFile> {
        self.lock().get(&id).cloned()
    }

    /// Finished files waiting for their upload, oldest session first (ids are UUIDv7).
    pub fn pending(&self) -> Vec<(Uuid, SpoolFile)> {
        let mut v: Vec<_> = self
            .lock()
            .iter()
            .filter(|(_, f)| f.state == FileState::Finished)
            .map(|(id, f)| (*id, f.clone()))
            .collect();
        v.sort_by_key(|(id, _)| *id);
        v
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for f in self.lock().values() {
            t.bytes += f.size;
            t.unshipped += f.size.saturating_sub(f.shipped);
            if f.state == FileState::Finished {
                t.pending += 1;
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_count_unshipped_and_pending() {
        let s = Spool::new(PathBuf::from("/nonexistent"));
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        for id in [a, b] {
            s.insert(
                id,
                SpoolFile {
                    object: String::new(),
                    size: 0,
                    shipped: 0,
                    state: FileState::Live,
                },
            );
        }
        s.appended(a, 100);
        s.appended(b, 50);
        s.shipped(a, 60);
        s.finished(b);
        let t = s.totals();
        assert_eq!((t.bytes, t.unshipped, t.pending), (150, 90, 1));
        assert_eq!(s.pending().len(), 1);
        s.remove(b);
        assert_eq!(s.totals().bytes, 100);
        assert!(
            s.path(a)
                .ends_with("00000000-0000-0000-0000-000000000001.skrec")
        );
    }
}
