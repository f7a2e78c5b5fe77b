//! Sans-IO RFB 3.8 ([RFC 6143]) codec: the handshake, client and server messages, and a
//! [`Framebuffer`] that paints decoded updates into an RGBA image.
//!
//! It lives in `player` because the player decodes the same messages from recordings that the
//! proxy relays live. Every decoder has the shape `decode(&[u8]) -> Result<Option<(Msg, usize)>>`:
//! `Ok(None)` means "need more bytes", `Ok(Some((msg, n)))` consumed `n` bytes. Every length a
//! peer declares is checked against a `MAX_*` limit before anything is allocated, and before a
//! caller is asked to buffer more bytes, so a hostile peer gets a typed [`RfbError`], never a
//! panic or an unbounded buffer.
//!
//! [RFC 6143]: https://www.rfc-editor.org/rfc/rfc6143

mod client;
mod error;
mod framebuffer;
mod handshake;
mod pixel;
mod server;

pub use client::{ClientMsg, QEMU_CLIENT_MESSAGE, decode_client, encode_client, filter_encodings};
pub use error::RfbError;
pub use framebuffer::{CursorImage, Framebuffer, Replay, ReplaySnapshot};
pub use handshake::{
    ProtocolVersion, SecurityResult, SecurityTypes, ServerInit, decode_client_init,
    decode_security_result, decode_security_types, decode_server_init, decode_version,
    encode_security_result, encode_security_types, encode_server_init,
};
pub use pixel::PixelFormat;
pub use server::{Rectangle, ServerDecoder, ServerMsg, encode_rect_header, encode_update_header};

/// Security type "None" (RFC 6143 §7.2.1).
pub const SECURITY_NONE: u8 = 1;
/// Security type "VNC Authentication" (RFC 6143 §7.2.2): DES challenge-response.
pub const SECURITY_VNC_AUTH: u8 = 2;
/// Length of the VNC authentication challenge and response.
pub const CHALLENGE_LEN: usize = 16;

/// Largest framebuffer side accepted. RFB carries u16 sides; 8192 covers an 8K display and
/// keeps the player's RGBA image within [`MAX_FRAMEBUFFER_PIXELS`].
pub const MAX_FRAMEBUFFER_SIDE: u16 = 8192;
/// Largest framebuffer area (an 8K UHD screen, 7680x4320, 132 MiB as RGBA in the player).
pub const MAX_FRAMEBUFFER_PIXELS: u64 = 7680 * 4320;
/// Largest desktop name in ServerInit. Names are VM names ("QEMU (web01)"); 4 KiB is generous.
pub const MAX_NAME_LEN: u32 = 4096;
/// Largest failure reason string (security types, SecurityResult). Reasons are one sentence.
pub const MAX_REASON_LEN: u32 = 4096;
/// Largest cut text (either direction). Sekisho drops clipboard data, but must still buffer a
/// whole message to find where the next one starts; 1 MiB covers any sensible paste and caps
/// what a hostile peer can make the relay hold.
pub const MAX_CUT_TEXT_LEN: u32 = 1024 * 1024;
/// Most encodings in one SetEncodings. Real viewers list 10-40; the u16 count allows 65535.
pub const MAX_ENCODINGS: u16 = 256;
/// Largest single message or rectangle the decoders ask a caller to buffer: a raw 32-bit
/// rectangle of the largest framebuffer is 132 MiB, but consoles never need that; a 4K screen
/// of raw 32-bit pixels (33 MiB) fits twice.
pub const MAX_MESSAGE_LEN: u64 = 64 * 1024 * 1024;
/// Largest cursor side (pseudo-encoding Cursor). Cursors are 16-64 px; 256 leaves room for
/// high-DPI cursors while capping the per-message cost.
pub const MAX_CURSOR_SIDE: u16 = 256;

/// An encoding (RFC 6143 §7.7) or pseudo-encoding number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// 0: uncompressed pixels.
    Raw,
    /// 1: copy a rectangle from elsewhere in the framebuffer.
    CopyRect,
    /// 2: rise-and-run-length.
    Rre,
    /// 5: 16x16 tiles.
    Hextile,
    /// 16: zlib run-length encoding (one zlib stream per connection).
    Zrle,
    /// -223: pseudo-encoding, the framebuffer changed size.
    DesktopSize,
    /// -239: pseudo-encoding, the cursor shape.
    Cursor,
    /// Any other number (not decodable by the player; filtered out by the proxy).
    Other(i32),
}

impl Encoding {
    /// The encodings the player decodes, so the proxy lets them through SetEncodings.
    pub const DECODABLE: [Encoding; 7] = [
        Encoding::Zrle,
        Encoding::Hextile,
        Encoding::Rre,
        Encoding::CopyRect,
        Encoding::Raw,
        Encoding::DesktopSize,
        Encoding::Cursor,
    ];

    /// From the wire number.
    pub fn from_i32(n: i32) -> Encoding {
        match n {
            0 => Encoding::Raw,
            1 => Encoding::CopyRect,
            2 => Encoding::Rre,
            5 => Encoding::Hextile,
            16 => Encoding::Zrle,
            -223 => Encoding::DesktopSize,
            -239 => Encoding::Cursor,
            other => Encoding::Other(other),
        }
    }

    /// The wire number.
    pub fn to_i32(self) -> i32 {
        match self {
            Encoding::Raw => 0,
            Encoding::CopyRect => 1,
            Encoding::Rre => 2,
            Encoding::Hextile => 5,
            Encoding::Zrle => 16,
            Encoding::DesktopSize => -223,
            Encoding::Cursor => -239,
            Encoding::Other(n) => n,
        }
    }

    /// True if the player can decode it.
    pub fn is_decodable(self) -> bool {
        !matches!(self, Encoding::Other(_))
    }
}

/// A cursor over input bytes; running out of bytes is [`Short::Incomplete`], distinct from a
/// protocol error, so the public decoders can answer `Ok(None)`.
pub(crate) struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Why a parse stopped: not enough bytes yet, or a real error.
#[derive(Debug)]
pub(crate) enum Short {
    Incomplete,
    Err(RfbError),
}

impl From<RfbError> for Short {
    fn from(e: RfbError) -> Self {
        Short::Err(e)
    }
}

pub(crate) type PResult<T> = Result<T, Short>;

/// Turns an internal parse result into the public "need more bytes" shape.
pub(crate) fn finish<T>(r: PResult<(T, usize)>) -> Result<Option<(T, usize)>, RfbError> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Short::Incomplete) => Ok(None),
        Err(Short::Err(e)) => Err(e),
    }
}

impl<'a> Cur<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Cur { buf, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> PResult<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or(Short::Incomplete)?;
        let s = self.buf.get(self.pos..end).ok_or(Short::Incomplete)?;
        self.pos = end;
        Ok(s)
    }

    /// Skips `n` bytes after checking `n` against [`MAX_MESSAGE_LEN`]: declared lengths are
    /// checked before a caller is told to wait for them.
    pub(crate) fn skip_declared(&mut self, n: u64, what: &'static str) -> PResult<&'a [u8]> {
        if n > MAX_MESSAGE_LEN {
            return Err(RfbError::TooLong {
                what,
                len: n,
                max: MAX_MESSAGE_LEN,
            }
            .into());
        }
        let n = usize::try_from(n).map_err(|_| RfbError::TooLong {
            what,
            len: n,
            max: MAX_MESSAGE_LEN,
        })?;
        self.take(n)
    }

    pub(crate) fn u8(&mut self) -> PResult<u8> {
        Ok(self.take(1)?.first().copied().unwrap_or_default())
    }

    pub(crate) fn u16(&mut self) -> PResult<u16> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes(
            b.try_into().map_err(|_| Short::Incomplete)?,
        ))
    }

    pub(crate) fn u32(&mut self) -> PResult<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes(
            b.try_into().map_err(|_| Short::Incomplete)?,
        ))
    }

    pub(crate) fn i32(&mut self) -> PResult<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes(
            b.try_into().map_err(|_| Short::Incomplete)?,
        ))
    }
}
