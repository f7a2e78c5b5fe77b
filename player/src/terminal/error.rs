//! The player's error type.

use recorder::format::DecodeError;
use recorder::reader::ReadError;

/// Why a recording cannot be replayed or exported.
///
/// Variants for a damaged or hostile recording ([`PlayerError::NotARecording`],
/// [`PlayerError::NotTerminal`], [`PlayerError::Corrupt`], [`PlayerError::LimitExceeded`])
/// are kept apart from caller misuse ([`PlayerError::InvalidSpeed`]) and output failures
/// ([`PlayerError::Io`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlayerError {
    /// The bytes are not a Sekisho recording (bad magic, damaged header, newer version).
    #[error("not a recording: {0}")]
    NotARecording(#[from] ReadError),
    /// A recording of a protocol this decoder does not render (`rdp`, `console-vnc`).
    #[error("not a terminal recording (protocol {0:?})")]
    NotTerminal(String),
    /// Bytes inside the recording can never be valid (damaged or altered file).
    #[error("corrupt recording at byte {offset}: {error}")]
    Corrupt {
        /// Offset of the frame that failed.
        offset: u64,
        /// Why.
        error: DecodeError,
    },
    /// A size from the recording exceeds a `MAX_*` limit of the player.
    #[error("{what} {len} exceeds limit {max}")]
    LimitExceeded {
        /// Which quantity.
        what: &'static str,
        /// Its value.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A playback speed outside [`crate::terminal::MIN_SPEED`]..=[`crate::terminal::MAX_SPEED`].
    #[error("speed {0} is outside 0.5 to 16")]
    InvalidSpeed(f64),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Io(#[from] std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_lowercase_without_period() {
        let errs = [
            PlayerError::NotTerminal("rdp".into()),
            PlayerError::InvalidSpeed(20.0),
            PlayerError::LimitExceeded {
                what: "terminal data",
                len: 2,
                max: 1,
            },
            PlayerError::Corrupt {
                offset: 7,
                error: DecodeError::Invalid("chunk"),
            },
        ];
        for e in errs {
            let s = e.to_string();
            assert!(s.chars().next().is_some_and(char::is_lowercase), "{s}");
            assert!(!s.ends_with('.'), "{s}");
        }
    }
}
