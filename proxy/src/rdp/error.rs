//! Errors of the sans-IO RDP core.

/// What went wrong while reading or rewriting an RDP PDU.
///
/// Variants from a hostile or broken peer are kept apart from the one that means the caller
/// drove the machine wrongly.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RdpError {
    /// A frame announced a length above what Sekisho accepts.
    #[error("frame length {length} exceeds limit {limit}")]
    FrameTooLong {
        /// announced length
        length: usize,
        /// the `MAX_*` limit in force
        limit: usize,
    },
    /// A frame announced a length too short to hold its own header.
    #[error("frame length {0} is too short")]
    FrameTooShort(usize),
    /// A PDU could not be decoded.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// which PDU
        what: &'static str,
        /// decoder message
        detail: String,
    },
    /// The peer sent a PDU that does not belong at this point of the connection sequence.
    #[error("unexpected {got} while waiting for {expected}")]
    Unexpected {
        /// what arrived
        got: &'static str,
        /// what the machine waited for
        expected: &'static str,
    },
    /// A count in a PDU is above what Sekisho accepts.
    #[error("{what} count {count} exceeds limit {limit}")]
    TooMany {
        /// what was counted
        what: &'static str,
        /// the count
        count: usize,
        /// the `MAX_*` limit in force
        limit: usize,
    },
    /// The client offered no security protocol Sekisho speaks (TLS or CredSSP).
    #[error("client offers no supported security protocol (offered {0:#x})")]
    NoSupportedProtocol(u32),
    /// A rewritten PDU could not be encoded again.
    #[error("cannot encode {what}: {detail}")]
    Encode {
        /// which PDU
        what: &'static str,
        /// encoder message
        detail: String,
    },
    /// The caller used the machine in the wrong order (a bug in Sekisho, not the peer).
    #[error("caller misuse: {0}")]
    Misuse(&'static str),
}

impl RdpError {
    pub(crate) fn malformed(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Malformed {
            what,
            detail: e.to_string(),
        }
    }

    pub(crate) fn encode(what: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Encode {
            what,
            detail: e.to_string(),
        }
    }
}
