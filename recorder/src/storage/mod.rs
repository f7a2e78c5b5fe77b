//! Where recording bytes go: an append-only object per session.
//!
//! The interface is shaped for an S3-compatible store as well as a local directory: an object
//! is created, receives parts in order (the header, each chunk, finally the trailer: every
//! part is final once appended, nothing is rewritten), and is finalised. With S3 a part maps
//! to a multipart-upload part (buffered up to the 5 MiB minimum), finalise to
//! `CompleteMultipartUpload`.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

mod local;

pub use local::LocalDir;

/// A boxed future, so storage backends can be chosen at run time (`Arc<dyn Storage>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// File name extension of recordings.
pub const EXTENSION: &str = "skrec";

/// A storage failure. `Full` is kept apart because operators act on it differently.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// No space left (ENOSPC, EDQUOT).
    #[error("storage full: {0}")]
    Full(String),
    /// Any other I/O failure.
    #[error("storage i/o error: {0}")]
    Io(String),
    /// The object already exists (a session id reused).
    #[error("recording already exists: {0}")]
    Exists(String),
    /// No such object.
    #[error("recording not found: {0}")]
    NotFound(String),
    /// The object was used after finalising or after an earlier failure.
    #[error("recording object closed")]
    Closed,
}

impl StorageError {
    /// Maps an I/O error, keeping "disk full" distinct.
    pub fn from_io(context: &str, e: &std::io::Error) -> Self {
        use std::io::ErrorKind;
        let text = format!("{context}: {e}");
        match e.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => StorageError::Full(text),
            ErrorKind::AlreadyExists => StorageError::Exists(text),
            ErrorKind::NotFound => StorageError::NotFound(text),
            _ => StorageError::Io(text),
        }
    }
}

/// What names a recording object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectKey {
    /// The session.
    pub session_id: Uuid,
    /// Its start (UTC), which picks the date directory.
    pub started: DateTime<Utc>,
}

/// A stored recording, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Path or URL, as stored in the catalogue.
    pub location: String,
    /// Size in bytes.
    pub size: u64,
}

/// An append-only recording store.
pub trait Storage: Send + Sync + 'static {
    /// Creates a new, empty object; fails if it exists.
    fn create<'a>(
        &'a self,
        key: &'a ObjectKey,
    ) -> BoxFuture<'a, Result<Box<dyn ObjectWriter>, StorageError>>;

    /// Reads a whole object.
    fn read<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<Vec<u8>, StorageError>>;

    /// Lists all objects.
    fn list(&self) -> BoxFuture<'_, Result<Vec<ObjectInfo>, StorageError>>;

    /// Removes an object that never held a recording (its header could not be written), so
    /// no empty file is left for recovery or auditors to puzzle over. A missing object is not
    /// an error.
    fn discard<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<(), StorageError>>;
}

/// One object being written.
pub trait ObjectWriter: Send {
    /// Where it lives (file path or URL).
    fn location(&self) -> &str;

    /// Appends a part. When this returns `Ok`, the part is durable (fsync'd).
    fn append(&mut self, part: Bytes) -> BoxFuture<'_, Result<(), StorageError>>;

    /// Closes the object; returns its final size. No append may follow.
    fn finalize(&mut self) -> BoxFuture<'_, Result<u64, StorageError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_is_typed() {
        let e = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(matches!(
            StorageError::from_io("write", &e),
            StorageError::Full(_)
        ));
    }
}
