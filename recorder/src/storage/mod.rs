//! Where recording bytes go: an append-only object per session.
//!
//! The interface serves a local directory ([`LocalDir`], `local.rs`) and an S3-compatible
//! object store ([`S3Store`], `s3.rs`): an object is created, receives parts in order (the
//! header, each chunk, finally the trailer: every part is final once appended, nothing is
//! rewritten), and is finalised. Reading goes through the same trait, by byte ranges, so a
//! reader of an object store fetches what it needs ([`ranged`]) and a verifier streams
//! ([`verify_stored`]) in bounded memory.

use std::future::Future;
use std::ops::Range;
use std::pin::Pin;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use uuid::Uuid;

mod local;
pub mod ranged;
pub mod s3;
mod spool;

pub use local::LocalDir;
pub use s3::{S3Config, S3Store, SecretKey};

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
    /// The object store did not answer or refused the request (network, credentials, server
    /// error). The text never holds the secret key.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// New recordings are refused: the bytes that exist only in the local spool passed the
    /// configured limit (the object store has been unreachable for a while).
    #[error(
        "recording spool over its limit ({unshipped} bytes not yet in the object store, limit {limit}); the object store is unreachable"
    )]
    SpoolFull {
        /// Bytes in the spool not yet shipped.
        unshipped: u64,
        /// `[storage.s3] spool_limit`.
        limit: u64,
    },
    /// The location does not belong to this store (another bucket, or a file path given to
    /// an object store): caller misuse.
    #[error("not a location of this store: {0}")]
    ForeignLocation(String),
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

    /// The size of an object, in bytes.
    fn size<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<u64, StorageError>>;

    /// Reads `range` of an object (a range GET on an object store). A range past the end is
    /// cut at the end.
    fn read_range<'a>(
        &'a self,
        location: &'a str,
        range: Range<u64>,
    ) -> BoxFuture<'a, Result<Bytes, StorageError>>;

    /// Deletes a finished recording (retention), with whatever the store kept beside it. A
    /// missing object is not an error; returns the bytes freed (0 if it was gone).
    fn remove<'a>(&'a self, location: &'a str) -> BoxFuture<'a, Result<u64, StorageError>>;

    /// The local spool of a store that has one (object stores), for `/metrics`.
    fn spool_status(&self) -> Option<SpoolStatus> {
        None
    }
}

/// The state of an object store's local spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStatus {
    /// Bytes of the spool files on the local disk (live recordings are kept whole until
    /// they are published).
    pub spool_bytes: u64,
    /// Bytes that exist only on the local disk (not yet shipped to the store).
    pub unshipped_bytes: u64,
    /// `[storage.s3] spool_limit`: new recordings are refused while `unshipped_bytes` is
    /// above it.
    pub limit: u64,
    /// Finished recordings waiting for their upload.
    pub pending_uploads: u64,
    /// Requests to the store that failed, since start.
    pub store_failures: u64,
    /// Whether the last request to the store succeeded.
    pub store_reachable: bool,
}

/// [`crate::info`] of a stored recording: the header by one range read, the rest verified
/// as [`verify_stored`] does (bounded memory).
pub async fn info_stored(
    storage: &dyn Storage,
    location: &str,
) -> Result<crate::RecordingInfo, InfoError> {
    let size = storage.size(location).await?;
    let header_max = (crate::format::HEADER_PREFIX_LEN
        + crate::format::MAX_HEADER_SIZE
        + crate::format::HASH_LEN) as u64;
    let head = storage
        .read_range(location, 0..size.min(header_max))
        .await?;
    let (frame, _) = crate::format::decode_header(&head)
        .map_err(crate::ReadError::Header)?
        .ok_or(crate::ReadError::HeaderIncomplete)?;
    let report = verify_stored(storage, location, None).await?;
    Ok(crate::info_of(&frame, report))
}

/// Why [`info_stored`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InfoError {
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// Not a recording.
    #[error(transparent)]
    Read(#[from] crate::ReadError),
}

/// How much [`verify_stored`] reads per request: large enough that an object store answers a
/// few range GETs per recording, small enough to bound memory.
pub const VERIFY_BLOCK: u64 = 4 * 1024 * 1024;

/// Verifies a stored recording as [`crate::verify`] does a file, reading it a block
/// ([`VERIFY_BLOCK`]) at a time: memory stays under one block plus one frame, whatever its
/// size, and the verdict is the same as for the same bytes in a file.
pub async fn verify_stored(
    storage: &dyn Storage,
    location: &str,
    trusted: Option<&crate::signing::VerifyingKey>,
) -> Result<crate::VerifyReport, StorageError> {
    verify_stored_trusting(
        storage,
        location,
        trusted.map(std::slice::from_ref).unwrap_or_default(),
    )
    .await
}

/// [`verify_stored`] accepting a trailer signed by any of `keys` (the instances of one
/// catalogue; see [`crate::verify::Verifier::trusting`]).
pub async fn verify_stored_trusting(
    storage: &dyn Storage,
    location: &str,
    keys: &[crate::signing::VerifyingKey],
) -> Result<crate::VerifyReport, StorageError> {
    let size = storage.size(location).await?;
    let mut v = crate::verify::StreamVerifier::trusting(keys);
    let mut pos = 0;
    while pos < size && !v.is_done() {
        let end = size.min(pos + VERIFY_BLOCK);
        let block = storage.read_range(location, pos..end).await?;
        if block.is_empty() {
            break;
        }
        pos += block.len() as u64;
        v.push(&block);
    }
    Ok(v.finish(size))
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
