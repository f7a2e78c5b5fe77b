//! The catalogue's error type.

use std::path::PathBuf;

use super::SessionId;

/// Everything that can go wrong talking to the catalogue.
///
/// Callers must fail closed on any of these: a session whose decision or start cannot be
/// written is not allowed to proceed.
///
/// Variants are grouped by whose fault they are: the configuration (URL, directory),
/// the database server (connection, query, migration), data in the database that this
/// version cannot read (written by a newer instance, or tampered with), and caller misuse.
/// No variant ever carries a database password: URLs are redacted before they are stored.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogueError {
    /// The URL names no backend we support.
    #[error(
        "unsupported catalogue url {url}: expected sqlite://PATH, postgres://… or postgresql://…"
    )]
    UnsupportedUrl {
        /// The URL with any password replaced by `***`.
        url: String,
    },
    /// The URL has a supported scheme but cannot be parsed.
    #[error("invalid catalogue url {url}: {reason}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// Why, with any password scrubbed.
        reason: String,
    },
    /// The directory for the SQLite file could not be created.
    #[error("cannot create catalogue directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be reached or refused us.
    #[error("cannot connect to catalogue {url}: {reason}")]
    Connect {
        /// The URL with any password replaced by `***`.
        url: String,
        /// Why, with any password scrubbed.
        reason: String,
    },
    /// The schema migrations failed (or the database has migrations this version lacks).
    #[error("catalogue migration failed: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// A query failed (lost connection, constraint violation, timeout, ...).
    #[error("catalogue query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// A stored value cannot be read back: written by a newer Sekisho or altered by hand.
    #[error("catalogue holds an invalid {what}: {value:?}")]
    Corrupt {
        /// Which column or kind of value.
        what: &'static str,
        /// The offending value (truncated).
        value: String,
    },
    /// Caller misuse: an instance id that is empty, too long or has control characters.
    #[error("invalid instance id {0:?}: must be 1 to 128 printable characters")]
    InvalidInstanceId(String),
    /// Caller misuse: a value that does not fit the catalogue's column (e.g. a size over i64).
    #[error("{0} is out of range")]
    OutOfRange(&'static str),
    /// Caller misuse: `session_ended` with [`Outcome::Live`](super::Outcome::Live).
    #[error("a session cannot end with outcome live")]
    EndedLive,
    /// Caller misuse: no session with that id.
    #[error("unknown session {0}")]
    UnknownSession(SessionId),
}

impl CatalogueError {
    /// Builds a [`CatalogueError::Corrupt`], keeping at most a short prefix of the value.
    pub(crate) fn corrupt(what: &'static str, value: &str) -> Self {
        /// Enough to recognise the value in a log line, not enough to flood it.
        const MAX_SHOWN: usize = 80;
        CatalogueError::Corrupt {
            what,
            value: value.chars().take(MAX_SHOWN).collect(),
        }
    }
}
