//! Server-to-client messages (RFC 6143 §7.6). A FramebufferUpdate is decoded as its header
//! followed by one [`ServerMsg::Rect`] per rectangle, so neither the relay nor the player has
//! to buffer a whole update: only one rectangle at a time, capped by
//! [`MAX_MESSAGE_LEN`](super::MAX_MESSAGE_LEN).
//!
//! The decoder is stateful: a rectangle's length depends on the pixel format (which the viewer
//! sets with SetPixelFormat) and its bounds on the framebuffer size (which DesktopSize changes).

use super::handshake::check_fb_size;
use super::{
    Cur, Encoding, MAX_CURSOR_SIDE, MAX_CUT_TEXT_LEN, PResult, PixelFormat, RfbError, Short, finish,
};

/// A message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMsg {
    /// 0: a framebuffer update of `rects` rectangles; they follow as [`ServerMsg::Rect`].
    FramebufferUpdate {
        /// Number of rectangles that follow.
        rects: u16,
    },
    /// One rectangle of the current update.
    Rect(Rectangle),
    /// 1: colour map entries (16-bit RGB).
    SetColourMapEntries {
        /// First index.
        first: u16,
        /// Colours from `first` on.
        colours: Vec<[u16; 3]>,
    },
    /// 2: ring the bell.
    Bell,
    /// 3: the server's clipboard (Latin-1).
    ServerCutText(Vec<u8>),
}

impl ServerMsg {
    /// A short name for events and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ServerMsg::FramebufferUpdate { .. } => "update",
            ServerMsg::Rect(_) => "rect",
            ServerMsg::SetColourMapEntries { .. } => "colour-map",
            ServerMsg::Bell => "bell",
            ServerMsg::ServerCutText(_) => "cut-text",
        }
    }
}

/// One rectangle of a framebuffer update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rectangle {
    /// Left (the hotspot for Cursor).
    pub x: u16,
    /// Top (the hotspot for Cursor).
    pub y: u16,
    /// Width (the new width for DesktopSize).
    pub width: u16,
    /// Height (the new height for DesktopSize).
    pub height: u16,
    /// The encoding of `data`.
    pub encoding: Encoding,
    /// The encoded payload after the 12-byte rectangle header (empty from a decoder made
    /// [`ServerDecoder::without_rect_data`]).
    pub data: Vec<u8>,
}

/// Decodes server messages, tracking the pixel format, framebuffer size and the rectangles
/// still expected in the current update. Once it fails it only repeats the failure.
#[derive(Debug, Clone)]
pub struct ServerDecoder {
    pixel_format: PixelFormat,
    width: u16,
    height: u16,
    /// Rectangles of the current FramebufferUpdate not yet decoded.
    remaining_rects: u16,
    failed: Option<RfbError>,
    /// Copy each rectangle's payload into [`Rectangle::data`]; a relay that forwards the raw
    /// bytes has no use for the copy (megabytes a screen).
    keep_rect_data: bool,
}

impl ServerDecoder {
    /// A decoder for a connection whose ServerInit gave this size and pixel format.
    pub fn new(width: u16, height: u16, pixel_format: PixelFormat) -> Self {
        ServerDecoder {
            pixel_format,
            width,
            height,
            remaining_rects: 0,
            failed: None,
            keep_rect_data: true,
        }
    }

    /// A decoder that checks and frames rectangles without copying their payloads:
    /// [`Rectangle::data`] stays empty (the relay forwards the raw bytes instead).
    pub fn without_rect_data(mut self) -> Self {
        self.keep_rect_data = false;
        self
    }

    /// The viewer sent SetPixelFormat: later rectangles use `pf`.
    pub fn set_pixel_format(&mut self, pf: PixelFormat) {
        self.pixel_format = pf;
    }

    /// The current pixel format.
    pub fn pixel_format(&self) -> PixelFormat {
        self.pixel_format
    }

    /// The current framebuffer size.
    pub fn size(&self) -> (u16, u16) {
        (self.width, self.height)
    }

    /// True between a FramebufferUpdate header and its last rectangle.
    pub fn in_update(&self) -> bool {
        self.remaining_rects > 0
    }

    /// Decodes the next message or rectangle; `Ok(None)` means more bytes are needed.
    pub fn decode(&mut self, buf: &[u8]) -> Result<Option<(ServerMsg, usize)>, RfbError> {
        if let Some(e) = &self.failed {
            return Err(RfbError::Failed(Box::new(e.clone())));
        }
        let r = if self.remaining_rects > 0 {
            self.rect(buf)
        } else {
            self.message(buf)
        };
        match finish(r) {
            Ok(v) => Ok(v),
            Err(e) => {
                self.failed = Some(e.clone());
                Err(e)
            }
        }
    }

    fn message(&mut self, buf: &[u8]) -> PResult<(ServerMsg, usize)> {
        let mut c = Cur::new(buf);
        let msg = match c.u8()? {
            0 => {
                c.take(1)?;
                let rects = c.u16()?;
                self.remaining_rects = rects;
                ServerMsg::FramebufferUpdate { rects }
            }
            1 => {
                c.take(1)?;
                let first = c.u16()?;
                let n = c.u16()?;
                // At most 65535 entries of 6 bytes (384 KiB): bounded by the u16 count.
                let raw = c.take(usize::from(n) * 6)?;
                let colours = raw
                    .chunks_exact(6)
                    .map(|b| {
                        let v = |i: usize| {
                            u16::from_be_bytes([
                                b.get(i).copied().unwrap_or(0),
                                b.get(i + 1).copied().unwrap_or(0),
                            ])
                        };
                        [v(0), v(2), v(4)]
                    })
                    .collect();
                ServerMsg::SetColourMapEntries { first, colours }
            }
            2 => ServerMsg::Bell,
            3 => {
                c.take(3)?;
                let len = c.u32()?;
                if len > MAX_CUT_TEXT_LEN {
                    return Err(RfbError::TooLong {
                        what: "cut text",
                        len: len.into(),
                        max: MAX_CUT_TEXT_LEN.into(),
                    }
                    .into());
                }
                ServerMsg::ServerCutText(
                    c.take(usize::try_from(len).unwrap_or(usize::MAX))?.to_vec(),
                )
            }
            t => return Err(RfbError::UnknownServerMessage(t).into()),
        };
        Ok((msg, c.pos()))
    }

    fn rect(&mut self, buf: &[u8]) -> PResult<(ServerMsg, usize)> {
        let mut c = Cur::new(buf);
        let x = c.u16()?;
        let y = c.u16()?;
        let width = c.u16()?;
        let height = c.u16()?;
        let encoding = Encoding::from_i32(c.i32()?);
        let bpp = u64::try_from(self.pixel_format.bytes_per_pixel()).unwrap_or(4);
        let area = u64::from(width) * u64::from(height);
        let start = c.pos();
        match encoding {
            Encoding::Raw
            | Encoding::CopyRect
            | Encoding::Rre
            | Encoding::Hextile
            | Encoding::Zrle => {
                self.check_bounds(x, y, width, height)?;
            }
            _ => {}
        }
        match encoding {
            Encoding::Raw => {
                c.skip_declared(area * bpp, "raw rectangle")?;
            }
            Encoding::CopyRect => {
                let sx = c.u16()?;
                let sy = c.u16()?;
                self.check_bounds(sx, sy, width, height)?;
            }
            Encoding::Rre => {
                let n = c.u32()?;
                // More subrectangles than pixels can only be an attack.
                if u64::from(n) > area {
                    return Err(RfbError::TooLong {
                        what: "rre subrectangles",
                        len: n.into(),
                        max: area,
                    }
                    .into());
                }
                c.skip_declared(bpp + u64::from(n) * (bpp + 8), "rre rectangle")?;
            }
            Encoding::Hextile => hextile_len(&mut c, width, height, bpp)?,
            Encoding::Zrle => {
                let len = c.u32()?;
                c.skip_declared(len.into(), "zrle rectangle")?;
            }
            Encoding::DesktopSize => check_fb_size(width, height)?,
            Encoding::Cursor => {
                let side = width.max(height);
                if side > MAX_CURSOR_SIDE {
                    return Err(RfbError::TooLong {
                        what: "cursor side",
                        len: side.into(),
                        max: MAX_CURSOR_SIDE.into(),
                    }
                    .into());
                }
                let mask = u64::from(width).div_ceil(8) * u64::from(height);
                c.skip_declared(area * bpp + mask, "cursor")?;
            }
            Encoding::Other(n) => return Err(RfbError::UnexpectedEncoding(n).into()),
        }
        let payload = buf.get(start..c.pos()).ok_or(Short::Incomplete)?;
        let data = if self.keep_rect_data {
            payload.to_vec()
        } else {
            Vec::new()
        };
        // Only now that the whole rectangle is here does the state change.
        if encoding == Encoding::DesktopSize {
            self.width = width;
            self.height = height;
        }
        self.remaining_rects = self.remaining_rects.saturating_sub(1);
        Ok((
            ServerMsg::Rect(Rectangle {
                x,
                y,
                width,
                height,
                encoding,
                data,
            }),
            c.pos(),
        ))
    }

    fn check_bounds(&self, x: u16, y: u16, width: u16, height: u16) -> Result<(), RfbError> {
        let fits = u32::from(x) + u32::from(width) <= u32::from(self.width)
            && u32::from(y) + u32::from(height) <= u32::from(self.height);
        if fits {
            Ok(())
        } else {
            Err(RfbError::RectOutOfBounds {
                x,
                y,
                width,
                height,
                fb_width: self.width,
                fb_height: self.height,
            })
        }
    }
}

/// Hextile sub-encoding bits (RFC 6143 §7.7.4).
pub(crate) mod hextile {
    pub const RAW: u8 = 1;
    pub const BACKGROUND: u8 = 2;
    pub const FOREGROUND: u8 = 4;
    pub const ANY_SUBRECTS: u8 = 8;
    pub const SUBRECTS_COLOURED: u8 = 16;
}

/// Walks the hextile tiles to find where the rectangle ends. Each tile is bounded (at most
/// 16x16 raw pixels or 255 subrectangles), and the walk allocates nothing.
fn hextile_len(c: &mut Cur<'_>, width: u16, height: u16, bpp: u64) -> PResult<()> {
    let bpp = usize::try_from(bpp).unwrap_or(4);
    for ty in (0..height).step_by(16) {
        let th = usize::from((height - ty).min(16));
        for tx in (0..width).step_by(16) {
            let tw = usize::from((width - tx).min(16));
            let sub = c.u8()?;
            if sub & hextile::RAW != 0 {
                c.take(tw * th * bpp)?;
                continue;
            }
            if sub & hextile::BACKGROUND != 0 {
                c.take(bpp)?;
            }
            if sub & hextile::FOREGROUND != 0 {
                c.take(bpp)?;
            }
            if sub & hextile::ANY_SUBRECTS != 0 {
                let n = usize::from(c.u8()?);
                let each = if sub & hextile::SUBRECTS_COLOURED != 0 {
                    bpp + 2
                } else {
                    2
                };
                c.take(n * each)?;
            }
        }
    }
    Ok(())
}

/// Encodes a FramebufferUpdate header.
pub fn encode_update_header(rects: u16, out: &mut Vec<u8>) {
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&rects.to_be_bytes());
}

/// Encodes a rectangle header (the payload follows).
pub fn encode_rect_header(
    x: u16,
    y: u16,
    width: u16,
    height: u16,
    encoding: Encoding,
    out: &mut Vec<u8>,
) {
    for v in [x, y, width, height] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out.extend_from_slice(&encoding.to_i32().to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec() -> ServerDecoder {
        ServerDecoder::new(64, 48, PixelFormat::RGB888_LE)
    }

    #[test]
    fn update_with_raw_rect() {
        let mut out = Vec::new();
        encode_update_header(1, &mut out);
        encode_rect_header(1, 2, 3, 4, Encoding::Raw, &mut out);
        out.extend(std::iter::repeat_n(7u8, 3 * 4 * 4));
        let mut d = dec();
        let (m, n) = d.decode(&out).unwrap().unwrap();
        assert_eq!(m, ServerMsg::FramebufferUpdate { rects: 1 });
        assert!(d.in_update());
        let rest = &out[n..];
        for cut in 0..rest.len() {
            assert_eq!(d.decode(&rest[..cut]).unwrap(), None);
        }
        let (m, used) = d.decode(rest).unwrap().unwrap();
        assert_eq!(used, rest.len());
        let ServerMsg::Rect(r) = m else { panic!() };
        assert_eq!(
            (r.x, r.y, r.width, r.height, r.data.len()),
            (1, 2, 3, 4, 48)
        );
        assert!(!d.in_update());
    }

    #[test]
    fn hostile_rectangles_fail_cleanly_and_stick() {
        let mut d = dec();
        let mut out = Vec::new();
        encode_update_header(1, &mut out);
        d.decode(&out).unwrap().unwrap();
        let mut r = Vec::new();
        encode_rect_header(60, 0, 10, 10, Encoding::Raw, &mut r);
        assert!(matches!(
            d.decode(&r),
            Err(RfbError::RectOutOfBounds { .. })
        ));
        assert!(matches!(d.decode(&r), Err(RfbError::Failed(_))));

        let mut d = dec();
        d.decode(&out).unwrap().unwrap();
        let mut r = Vec::new();
        encode_rect_header(0, 0, 64, 48, Encoding::Zrle, &mut r);
        r.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(d.decode(&r), Err(RfbError::TooLong { .. })));

        let mut d = dec();
        d.decode(&out).unwrap().unwrap();
        let mut r = Vec::new();
        encode_rect_header(0, 0, 2, 2, Encoding::Rre, &mut r);
        r.extend_from_slice(&1000u32.to_be_bytes());
        assert!(matches!(d.decode(&r), Err(RfbError::TooLong { .. })));

        let mut d = dec();
        d.decode(&out).unwrap().unwrap();
        let mut r = Vec::new();
        encode_rect_header(0, 0, 2, 2, Encoding::Other(7), &mut r);
        assert_eq!(d.decode(&r), Err(RfbError::UnexpectedEncoding(7)));

        let mut d = dec();
        assert!(matches!(
            d.decode(&[3, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff]),
            Err(RfbError::TooLong { .. })
        ));
        let mut d = dec();
        assert_eq!(d.decode(&[9]), Err(RfbError::UnknownServerMessage(9)));
    }

    /// Oversized screens, cursors and rectangles are refused from their 12-byte header alone:
    /// the decoder never asks for (and the relay never buffers) the declared body.
    #[test]
    fn oversized_declarations_are_refused_from_the_header() {
        let header = |n: u16| {
            let mut out = Vec::new();
            encode_update_header(n, &mut out);
            out
        };
        let rect = |w: u16, h: u16, enc: Encoding| {
            let mut r = Vec::new();
            encode_rect_header(0, 0, w, h, enc, &mut r);
            r
        };
        for (w, h) in [(65535, 65535), (8193, 16), (7680, 4321)] {
            let mut d = dec();
            d.decode(&header(1)).unwrap().unwrap();
            assert!(
                matches!(
                    d.decode(&rect(w, h, Encoding::DesktopSize)),
                    Err(RfbError::TooLong { .. })
                ),
                "{w}x{h}"
            );
            assert_eq!(d.size(), (64, 48), "a refused size changes nothing");
        }
        let mut d = dec();
        d.decode(&header(1)).unwrap().unwrap();
        assert!(matches!(
            d.decode(&rect(257, 257, Encoding::Cursor)),
            Err(RfbError::TooLong { .. })
        ));
        // The largest screen allowed; a full-screen Raw rectangle of it is 132 MB, over the
        // message limit: refused before a single pixel arrives.
        let mut d = dec();
        d.decode(&header(2)).unwrap().unwrap();
        let (_, n) = d
            .decode(&rect(7680, 4320, Encoding::DesktopSize))
            .unwrap()
            .unwrap();
        assert_eq!(n, 12);
        assert!(matches!(
            d.decode(&rect(7680, 4320, Encoding::Raw)),
            Err(RfbError::TooLong { .. })
        ));
        // An update announcing 65535 rectangles allocates nothing for them up front.
        let mut d = dec();
        let (msg, n) = d.decode(&header(u16::MAX)).unwrap().unwrap();
        assert_eq!(n, 4);
        assert!(
            matches!(msg, ServerMsg::FramebufferUpdate { .. }),
            "{msg:?}"
        );
        assert!(d.in_update());
        // A truncated rectangle is "need more bytes", not an error and not a guess.
        assert_eq!(d.decode(&rect(2, 2, Encoding::Raw)), Ok(None));
    }

    #[test]
    fn desktop_size_changes_bounds() {
        let mut d = dec();
        let mut out = Vec::new();
        encode_update_header(2, &mut out);
        encode_rect_header(0, 0, 800, 600, Encoding::DesktopSize, &mut out);
        encode_rect_header(700, 500, 100, 100, Encoding::CopyRect, &mut out);
        out.extend_from_slice(&[0, 0, 0, 0]);
        let mut pos = 0;
        for _ in 0..3 {
            let (_, n) = d.decode(&out[pos..]).unwrap().unwrap();
            pos += n;
        }
        assert_eq!(pos, out.len());
        assert_eq!(d.size(), (800, 600));
    }

    #[test]
    fn hextile_length() {
        let mut d = dec();
        let mut out = Vec::new();
        encode_update_header(1, &mut out);
        encode_rect_header(0, 0, 20, 16, Encoding::Hextile, &mut out);
        // tile 1: background + 1 coloured subrect; tile 2 (4x16): raw
        out.extend_from_slice(&[hextile::BACKGROUND
            | hextile::ANY_SUBRECTS
            | hextile::SUBRECTS_COLOURED]);
        out.extend_from_slice(&[1, 2, 3, 0]);
        out.push(1);
        out.extend_from_slice(&[9, 9, 9, 0, 0x11, 0x22]);
        out.push(hextile::RAW);
        out.extend(std::iter::repeat_n(5u8, 4 * 16 * 4));
        let (_, n) = d.decode(&out).unwrap().unwrap();
        let (_, m) = d.decode(&out[n..]).unwrap().unwrap();
        assert_eq!(n + m, out.len());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..400), start_in_update in any::<bool>()) {
            let mut d = dec();
            if start_in_update {
                let _ = d.decode(&[0, 0, 0, 5]);
            }
            let mut pos = 0;
            while let Ok(Some((_, n))) = d.decode(&data[pos..]) {
                prop_assert!(n > 0 || data.len() == pos);
                pos += n;
                if n == 0 { break; }
            }
        }
    }
}
