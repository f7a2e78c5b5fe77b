//! Errors of the RFB codec.

/// An RFB decoding error. Every variant but [`RfbError::Failed`] and
/// [`RfbError::InvalidArgument`] means the peer (or the recording) sent something malformed
/// or hostile: the connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RfbError {
    /// The ProtocolVersion message is not `RFB xxx.yyy\n` or names an unsupported version.
    #[error("unsupported protocol version {0:?}")]
    BadVersion(String),
    /// A client message type this codec does not know (or refuses).
    #[error("unknown client message type {0}")]
    UnknownClientMessage(u8),
    /// A QEMU client message (type 255) sub-type that is refused.
    #[error("refused qemu client message sub-type {0}")]
    UnsupportedQemuMessage(u8),
    /// A server message type this codec does not know.
    #[error("unknown server message type {0}")]
    UnknownServerMessage(u8),
    /// A declared length or count exceeds its `MAX_*` limit.
    #[error("{what} length {len} exceeds limit {max}")]
    TooLong {
        /// What was too long.
        what: &'static str,
        /// The declared length.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// A rectangle does not fit in the framebuffer.
    #[error(
        "rectangle {x},{y} {width}x{height} lies outside the {fb_width}x{fb_height} framebuffer"
    )]
    RectOutOfBounds {
        /// Left.
        x: u16,
        /// Top.
        y: u16,
        /// Width.
        width: u16,
        /// Height.
        height: u16,
        /// Framebuffer width.
        fb_width: u16,
        /// Framebuffer height.
        fb_height: u16,
    },
    /// The server used an encoding that was not negotiated or is not decodable.
    #[error("unexpected encoding {0}")]
    UnexpectedEncoding(i32),
    /// A pixel format that cannot be decoded.
    #[error("invalid pixel format: {0}")]
    BadPixelFormat(&'static str),
    /// A structurally malformed message.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The ZRLE zlib stream is corrupt.
    #[error("zlib stream: {0}")]
    Zlib(String),
    /// Caller misuse: the decoder failed earlier and only repeats that failure.
    #[error("decoder failed earlier: {0}")]
    Failed(Box<RfbError>),
    /// Caller misuse: an argument out of range (e.g. encoding a name longer than allowed).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
}
