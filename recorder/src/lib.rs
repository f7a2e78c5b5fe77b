//! Sekisho recorder: the recording format (writer, reader, verification), signing, storage,
//! and the audit catalogue.
//!
//! Layers (mini-redis style): [`format`] is the sans-IO codec (bytes ↔ frames, no clock, no
//! I/O); [`reader`] and [`verify`] work on bytes ([`verify::Verifier`] a frame at a time, so
//! [`verify_reader`] streams a file through it in bounded memory); [`writer`] is the async driver that feeds
//! [`storage`]. The byte layout is specified in `docs/recording-format.md`.

#[cfg(feature = "catalogue")]
pub mod catalogue;
pub mod format;
pub mod ledger;
pub mod reader;
pub mod signing;
pub mod storage;
pub mod verify;
pub mod writer;

pub use format::{ChannelId, Compression, Direction, Event, EventKind, Header, Record, RecordKind};
pub use reader::{ReadError, Recording};
pub use signing::{RecordingKey, fingerprint, load_or_create, public_key_hex};
pub use storage::{
    LocalDir, ObjectKey, S3Config, S3Store, SpoolStatus, Storage, StorageError, verify_stored,
    verify_stored_trusting,
};
pub use verify::{
    RecordingInfo, SealError, SealPlan, StreamVerifier, Verifier, VerifyReport, VerifyState, info,
    info_of, seal, seal_file, verify, verify_reader, verify_reader_trusting,
};
pub use writer::{RecordingSummary, RecordingWriter, WriteError, WriterConfig, WriterFailure};

/// A recording's state as the catalogue records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordingState {
    /// Being written.
    Live,
    /// Finished and signed.
    Complete,
    /// Cut short (crash, disk failure); not yet sealed.
    Incomplete,
    /// Cut short, then sealed: authentic up to the interruption.
    Interrupted,
    /// Verification found an alteration.
    Tampered,
}

impl RecordingState {
    /// `live`, `complete`, `incomplete`, `interrupted`, `tampered`.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Live => "live",
            RecordingState::Complete => "complete",
            RecordingState::Incomplete => "incomplete",
            RecordingState::Interrupted => "interrupted",
            RecordingState::Tampered => "tampered",
        }
    }
}

impl std::fmt::Display for RecordingState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RecordingState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "live" => RecordingState::Live,
            "complete" => RecordingState::Complete,
            "incomplete" => RecordingState::Incomplete,
            "interrupted" => RecordingState::Interrupted,
            "tampered" => RecordingState::Tampered,
            other => return Err(format!("unknown recording state {other:?}")),
        })
    }
}

impl From<&VerifyState> for RecordingState {
    fn from(s: &VerifyState) -> Self {
        match s {
            VerifyState::Intact => RecordingState::Complete,
            VerifyState::Interrupted => RecordingState::Interrupted,
            VerifyState::Incomplete { .. } => RecordingState::Incomplete,
            VerifyState::Tampered { .. } => RecordingState::Tampered,
        }
    }
}
