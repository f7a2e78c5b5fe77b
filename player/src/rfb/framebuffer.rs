//! Paints decoded server messages into an RGBA image: what the player shows and exports.
//!
//! [`Framebuffer`] applies one [`ServerMsg`] at a time for a given pixel format, and holds the
//! ZRLE zlib stream, which RFC 6143 §7.7.6 keeps open for the whole connection. [`Replay`]
//! drives a [`ServerDecoder`] and a [`Framebuffer`] from the two byte streams of a recording.

use miniz_oxide::inflate::stream::InflateState;
use miniz_oxide::{DataFormat, MZError, MZFlush, MZStatus};

use crate::packed::PackedPixels;

use super::handshake::check_fb_size;
use super::server::hextile;
use super::{
    ClientMsg, Cur, Encoding, PResult, PixelFormat, Rectangle, RfbError, ServerDecoder, ServerInit,
    ServerMsg, Short, decode_client,
};

/// The last cursor shape the server sent (pseudo-encoding Cursor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CursorImage {
    /// Hotspot x.
    pub hotspot_x: u16,
    /// Hotspot y.
    pub hotspot_y: u16,
    /// Width.
    pub width: u16,
    /// Height.
    pub height: u16,
    /// RGBA pixels, alpha 0 where the mask hides the pixel.
    pub rgba: Vec<u8>,
}

/// A framebuffer as RGBA bytes, row-major.
///
/// INVARIANT: `rgba.len() == width * height * 4`, and the size passed `check_fb_size`.
///
/// Cloneable, zlib stream included, so a replay can keep snapshots to seek from.
#[derive(Clone)]
pub struct Framebuffer {
    width: u16,
    height: u16,
    rgba: Vec<u8>,
    /// Colour map for non-true-colour formats (16-bit entries reduced to 8 bits).
    colour_map: Vec<[u8; 3]>,
    /// The connection's ZRLE zlib stream (miniz_oxide's state, unlike flate2's, can be
    /// cloned: a keyframe needs it, since later rectangles refer back into its window).
    zlib: Box<InflateState>,
    cursor: Option<CursorImage>,
}

impl std::fmt::Debug for Framebuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Framebuffer")
            .field("width", &self.width)
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

fn rect_area(w: u16, h: u16) -> usize {
    usize::from(w) * usize::from(h)
}

impl Framebuffer {
    /// A black framebuffer of this size.
    pub fn new(width: u16, height: u16) -> Result<Self, RfbError> {
        check_fb_size(width, height)?;
        Ok(Framebuffer {
            width,
            height,
            rgba: black(width, height),
            colour_map: Vec::new(),
            zlib: InflateState::new_boxed(DataFormat::Zlib),
            cursor: None,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u16 {
        self.height
    }

    /// The image, RGBA, row-major.
    pub fn rgba(&self) -> &[u8] {
        &self.rgba
    }

    /// The last cursor shape, if the server sent one.
    pub fn cursor(&self) -> Option<&CursorImage> {
        self.cursor.as_ref()
    }

    /// Applies one server message decoded with pixel format `pf`.
    pub fn apply(&mut self, msg: &ServerMsg, pf: &PixelFormat) -> Result<(), RfbError> {
        match msg {
            ServerMsg::Rect(r) => self.apply_rect(r, pf),
            ServerMsg::SetColourMapEntries { first, colours } => {
                let end = usize::from(*first) + colours.len();
                if self.colour_map.len() < end {
                    // Bounded: first and the count are u16, so at most 128 Ki entries.
                    self.colour_map.resize(end, [0; 3]);
                }
                for (slot, c) in self
                    .colour_map
                    .iter_mut()
                    .skip(usize::from(*first))
                    .zip(colours)
                {
                    *slot = c.map(|v| v.to_be_bytes()[0]);
                }
                Ok(())
            }
            ServerMsg::FramebufferUpdate { .. } | ServerMsg::Bell | ServerMsg::ServerCutText(_) => {
                Ok(())
            }
        }
    }

    fn apply_rect(&mut self, r: &Rectangle, pf: &PixelFormat) -> Result<(), RfbError> {
        let bpp = pf.bytes_per_pixel();
        match r.encoding {
            Encoding::Raw => {
                let px: Vec<[u8; 4]> = r
                    .data
                    .chunks_exact(bpp)
                    .map(|b| pf.to_rgba(pf.read_pixel(b), &self.colour_map))
                    .collect();
                if px.len() != rect_area(r.width, r.height) {
                    return Err(RfbError::Malformed("raw rectangle"));
                }
                self.put_pixels(r.x, r.y, r.width, &px);
            }
            Encoding::CopyRect => {
                let mut c = Cur::new(&r.data);
                let (sx, sy) = (c.u16().map_err(short)?, c.u16().map_err(short)?);
                let mut px = Vec::with_capacity(rect_area(r.width, r.height));
                for j in 0..r.height {
                    for i in 0..r.width {
                        px.push(
                            self.pixel(u32::from(sx) + u32::from(i), u32::from(sy) + u32::from(j)),
                        );
                    }
                }
                self.put_pixels(r.x, r.y, r.width, &px);
            }
            Encoding::Rre => self.rre(r, pf).map_err(short)?,
            Encoding::Hextile => self.hextile(r, pf).map_err(short)?,
            Encoding::Zrle => self.zrle(r, pf)?,
            Encoding::DesktopSize => {
                check_fb_size(r.width, r.height)?;
                self.width = r.width;
                self.height = r.height;
                self.rgba = black(r.width, r.height);
            }
            Encoding::Cursor => {
                let n = rect_area(r.width, r.height);
                let (pixels, mask) = r
                    .data
                    .split_at_checked(n * bpp)
                    .ok_or(RfbError::Malformed("cursor"))?;
                let row = usize::from(r.width).div_ceil(8);
                let mut rgba = Vec::with_capacity(n * 4);
                for (i, b) in pixels.chunks_exact(bpp).enumerate() {
                    let (x, y) = (
                        i % usize::from(r.width.max(1)),
                        i / usize::from(r.width.max(1)),
                    );
                    let bit = mask
                        .get(y * row + x / 8)
                        .map_or(0, |m| (m >> (7 - x % 8)) & 1);
                    let [cr, cg, cb, _] = pf.to_rgba(pf.read_pixel(b), &self.colour_map);
                    rgba.extend_from_slice(&[cr, cg, cb, if bit == 1 { 255 } else { 0 }]);
                }
                self.cursor = Some(CursorImage {
                    hotspot_x: r.x,
                    hotspot_y: r.y,
                    width: r.width,
                    height: r.height,
                    rgba,
                });
            }
            Encoding::Other(n) => return Err(RfbError::UnexpectedEncoding(n)),
        }
        Ok(())
    }

    fn pixel(&self, x: u32, y: u32) -> [u8; 4] {
        let i = (y as usize * usize::from(self.width) + x as usize) * 4;
        self.rgba
            .get(i..i + 4)
            .and_then(|s| s.try_into().ok())
            .unwrap_or([0, 0, 0, 255])
    }

    /// Writes a `width`-wide block of pixels at (x, y), clipped to the framebuffer.
    fn put_pixels(&mut self, x: u16, y: u16, width: u16, px: &[[u8; 4]]) {
        let w = usize::from(width.max(1));
        let fbw = usize::from(self.width);
        for (row, line) in px.chunks(w).enumerate() {
            let yy = usize::from(y) + row;
            if yy >= usize::from(self.height) {
                break;
            }
            for (col, p) in line.iter().enumerate() {
                let xx = usize::from(x) + col;
                if xx >= fbw {
                    break;
                }
                let i = (yy * fbw + xx) * 4;
                if let Some(dst) = self.rgba.get_mut(i..i + 4) {
                    dst.copy_from_slice(p);
                }
            }
        }
    }

    /// Fills a block, clipped to the framebuffer.
    fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, p: [u8; 4]) {
        let fbw = usize::from(self.width);
        let x_end = (x + w).min(fbw);
        for yy in y..(y + h).min(usize::from(self.height)) {
            let (a, b) = ((yy * fbw + x.min(x_end)) * 4, (yy * fbw + x_end) * 4);
            if let Some(row) = self.rgba.get_mut(a..b) {
                for dst in row.chunks_exact_mut(4) {
                    dst.copy_from_slice(&p);
                }
            }
        }
    }

    fn rre(&mut self, r: &Rectangle, pf: &PixelFormat) -> PResult<()> {
        let bpp = pf.bytes_per_pixel();
        let mut c = Cur::new(&r.data);
        let n = c.u32()?;
        let bg = pf.to_rgba(pf.read_pixel(c.take(bpp)?), &self.colour_map);
        self.fill(r.x.into(), r.y.into(), r.width.into(), r.height.into(), bg);
        for _ in 0..n {
            let p = pf.to_rgba(pf.read_pixel(c.take(bpp)?), &self.colour_map);
            let (sx, sy, sw, sh) = (c.u16()?, c.u16()?, c.u16()?, c.u16()?);
            // Clip the subrectangle to its rectangle.
            let sx = sx.min(r.width);
            let sy = sy.min(r.height);
            let sw = sw.min(r.width - sx);
            let sh = sh.min(r.height - sy);
            self.fill(
                usize::from(r.x) + usize::from(sx),
                usize::from(r.y) + usize::from(sy),
                sw.into(),
                sh.into(),
                p,
            );
        }
        Ok(())
    }

    fn hextile(&mut self, r: &Rectangle, pf: &PixelFormat) -> PResult<()> {
        let bpp = pf.bytes_per_pixel();
        let mut c = Cur::new(&r.data);
        let (mut bg, mut fg) = ([0, 0, 0, 255], [0, 0, 0, 255]);
        for ty in (0..r.height).step_by(16) {
            let th = (r.height - ty).min(16);
            for tx in (0..r.width).step_by(16) {
                let tw = (r.width - tx).min(16);
                let (x0, y0) = (
                    usize::from(r.x) + usize::from(tx),
                    usize::from(r.y) + usize::from(ty),
                );
                let sub = c.u8()?;
                if sub & hextile::RAW != 0 {
                    let raw = c.take(rect_area(tw, th) * bpp)?;
                    let px: Vec<[u8; 4]> = raw
                        .chunks_exact(bpp)
                        .map(|b| pf.to_rgba(pf.read_pixel(b), &self.colour_map))
                        .collect();
                    self.put_pixels(r.x + tx, r.y + ty, tw, &px);
                    continue;
                }
                if sub & hextile::BACKGROUND != 0 {
                    bg = pf.to_rgba(pf.read_pixel(c.take(bpp)?), &self.colour_map);
                }
                if sub & hextile::FOREGROUND != 0 {
                    fg = pf.to_rgba(pf.read_pixel(c.take(bpp)?), &self.colour_map);
                }
                self.fill(x0, y0, tw.into(), th.into(), bg);
                if sub & hextile::ANY_SUBRECTS != 0 {
                    for _ in 0..c.u8()? {
                        let colour = if sub & hextile::SUBRECTS_COLOURED != 0 {
                            pf.to_rgba(pf.read_pixel(c.take(bpp)?), &self.colour_map)
                        } else {
                            fg
                        };
                        let (xy, wh) = (c.u8()?, c.u8()?);
                        let (sx, sy) = (usize::from(xy >> 4), usize::from(xy & 15));
                        let (sw, sh) = (usize::from(wh >> 4) + 1, usize::from(wh & 15) + 1);
                        let sw = sw.min(usize::from(tw).saturating_sub(sx));
                        let sh = sh.min(usize::from(th).saturating_sub(sy));
                        self.fill(x0 + sx, y0 + sy, sw, sh, colour);
                    }
                }
            }
        }
        Ok(())
    }

    fn zrle(&mut self, r: &Rectangle, pf: &PixelFormat) -> Result<(), RfbError> {
        let input = r
            .data
            .get(4..)
            .ok_or(RfbError::Malformed("zrle rectangle"))?;
        let cp = pf.cpixel_len();
        let tiles = usize::from(r.width).div_ceil(64) * usize::from(r.height).div_ceil(64);
        // The most a valid rectangle inflates to: every pixel a one-pixel run (cpixel + one
        // run byte), plus per tile a sub-encoding byte and a 127-entry palette. More is a
        // zlib bomb.
        let bound = rect_area(r.width, r.height) * (cp + 1) + tiles * (1 + 127 * cp);
        let data = inflate(&mut self.zlib, input, bound)?;
        let mut c = Cur::new(&data);
        for ty in (0..r.height).step_by(64) {
            let th = (r.height - ty).min(64);
            for tx in (0..r.width).step_by(64) {
                let tw = (r.width - tx).min(64);
                let px = zrle_tile(&mut c, pf, tw, th, &self.colour_map).map_err(short)?;
                self.put_pixels(r.x + tx, r.y + ty, tw, &px);
            }
        }
        Ok(())
    }
}

fn black(width: u16, height: u16) -> Vec<u8> {
    [0, 0, 0, 255].repeat(rect_area(width, height))
}

fn short(s: Short) -> RfbError {
    match s {
        Short::Incomplete => RfbError::Malformed("rectangle payload"),
        Short::Err(e) => e,
    }
}

/// Inflates `input` on the connection's stream, refusing to produce more than `bound` bytes.
fn inflate(z: &mut InflateState, input: &[u8], bound: usize) -> Result<Vec<u8>, RfbError> {
    let too_long = |len: usize| RfbError::TooLong {
        what: "inflated zrle rectangle",
        len: len as u64,
        max: bound as u64,
    };
    let mut out: Vec<u8> = Vec::new();
    let mut consumed = 0usize;
    loop {
        let len = out.len();
        if len > bound {
            return Err(too_long(len));
        }
        out.resize(len + (bound + 1 - len).min(64 * 1024), 0);
        let rest = input.get(consumed..).unwrap_or_default();
        let r = miniz_oxide::inflate::stream::inflate(
            z,
            rest,
            out.get_mut(len..).unwrap_or_default(),
            MZFlush::None,
        );
        consumed += r.bytes_consumed;
        let room_left = len + r.bytes_written < out.len();
        out.truncate(len + r.bytes_written);
        let progressed = r.bytes_consumed > 0 || r.bytes_written > 0;
        match r.status {
            Ok(MZStatus::StreamEnd) => break,
            // Buf: no progress possible with this input (all of it consumed).
            Ok(_) | Err(MZError::Buf) => {}
            Err(e) => return Err(RfbError::Zlib(format!("{e:?}"))),
        }
        if (consumed >= input.len() && room_left) || !progressed {
            break;
        }
    }
    if out.len() > bound {
        return Err(too_long(out.len()));
    }
    Ok(out)
}

/// ZRLE run length: bytes summed while they are 255, plus one.
fn run_length(c: &mut Cur<'_>, left: usize) -> PResult<usize> {
    let mut n = 1usize;
    loop {
        let b = c.u8()?;
        n += usize::from(b);
        if n > left {
            return Err(RfbError::Malformed("zrle run longer than its tile").into());
        }
        if b != 255 {
            return Ok(n);
        }
    }
}

fn zrle_tile(
    c: &mut Cur<'_>,
    pf: &PixelFormat,
    tw: u16,
    th: u16,
    map: &[[u8; 3]],
) -> PResult<Vec<[u8; 4]>> {
    let cp = pf.cpixel_len();
    let n = rect_area(tw, th);
    let cpixel =
        |c: &mut Cur<'_>| -> PResult<[u8; 4]> { Ok(pf.to_rgba(pf.read_cpixel(c.take(cp)?), map)) };
    let sub = c.u8()?;
    let mut px = Vec::with_capacity(n);
    match sub {
        0 => {
            for _ in 0..n {
                px.push(cpixel(c)?);
            }
        }
        1 => px.resize(n, cpixel(c)?),
        2..=16 => {
            let palette: Vec<[u8; 4]> = (0..sub).map(|_| cpixel(c)).collect::<PResult<_>>()?;
            let bits = match sub {
                2 => 1,
                3 | 4 => 2,
                _ => 4,
            };
            let row_bytes = (usize::from(tw) * bits).div_ceil(8);
            for _ in 0..th {
                let row = c.take(row_bytes)?;
                for i in 0..usize::from(tw) {
                    let bit = i * bits;
                    let byte = row.get(bit / 8).copied().unwrap_or(0);
                    let idx = (byte >> (8 - bits - bit % 8)) & ((1 << bits) - 1);
                    px.push(
                        *palette
                            .get(usize::from(idx))
                            .ok_or(RfbError::Malformed("zrle palette index"))?,
                    );
                }
            }
        }
        128 => {
            while px.len() < n {
                let p = cpixel(c)?;
                let run = run_length(c, n - px.len())?;
                px.resize(px.len() + run, p);
            }
        }
        130..=255 => {
            let palette: Vec<[u8; 4]> =
                (0..sub - 128).map(|_| cpixel(c)).collect::<PResult<_>>()?;
            while px.len() < n {
                let idx = c.u8()?;
                let p = *palette
                    .get(usize::from(idx & 127))
                    .ok_or(RfbError::Malformed("zrle palette index"))?;
                let run = if idx & 128 != 0 {
                    run_length(c, n - px.len())?
                } else {
                    1
                };
                px.resize(px.len() + run, p);
            }
        }
        _ => return Err(RfbError::Malformed("zrle sub-encoding").into()),
    }
    Ok(px)
}

/// Replays the two byte streams of a recorded RFB session into a [`Framebuffer`]: client bytes
/// (for SetPixelFormat) and server bytes (updates), in recording order.
///
/// A clone is a snapshot to resume from (the player's VNC keyframes).
#[derive(Debug, Clone)]
pub struct Replay {
    decoder: ServerDecoder,
    framebuffer: Framebuffer,
    client_buf: Vec<u8>,
    server_buf: Vec<u8>,
}

impl Replay {
    /// Starts from the session's ServerInit.
    pub fn new(init: &ServerInit) -> Result<Self, RfbError> {
        Ok(Replay {
            decoder: ServerDecoder::new(init.width, init.height, init.pixel_format),
            framebuffer: Framebuffer::new(init.width, init.height)?,
            client_buf: Vec::new(),
            server_buf: Vec::new(),
        })
    }

    /// The current image.
    pub fn framebuffer(&self) -> &Framebuffer {
        &self.framebuffer
    }

    /// Feeds bytes the viewer sent.
    pub fn client_bytes(&mut self, bytes: &[u8]) -> Result<(), RfbError> {
        self.client_buf.extend_from_slice(bytes);
        let mut pos = 0;
        while let Some((msg, n)) = decode_client(self.client_buf.get(pos..).unwrap_or_default())? {
            pos += n;
            if let ClientMsg::SetPixelFormat(pf) = msg {
                self.decoder.set_pixel_format(pf);
            }
        }
        self.client_buf.drain(..pos);
        Ok(())
    }

    /// Feeds bytes the server sent.
    pub fn server_bytes(&mut self, bytes: &[u8]) -> Result<(), RfbError> {
        self.server_buf.extend_from_slice(bytes);
        let mut pos = 0;
        while let Some((msg, n)) = self
            .decoder
            .decode(self.server_buf.get(pos..).unwrap_or_default())?
        {
            pos += n;
            let pf = self.decoder.pixel_format();
            self.framebuffer.apply(&msg, &pf)?;
        }
        self.server_buf.drain(..pos);
        Ok(())
    }
}

/// A [`Replay`] saved to resume from later: everything but the pixels as is (decoder, zlib
/// window, colour map, cursor, partial messages), the pixels deflated, since a screen of
/// administration work compresses tens of times.
#[derive(Debug, Clone)]
pub struct ReplaySnapshot {
    /// The replay with an empty image.
    state: Replay,
    /// The RGBA image.
    pixels: PackedPixels,
}

impl ReplaySnapshot {
    /// Memory the snapshot holds (bytes), roughly.
    pub fn size(&self) -> usize {
        let fb = &self.state.framebuffer;
        self.pixels.len()
            + std::mem::size_of::<InflateState>()
            + fb.colour_map.len() * 3
            + fb.cursor.as_ref().map_or(0, |c| c.rgba.len())
            + self.state.client_buf.len()
            + self.state.server_buf.len()
    }
}

impl Replay {
    /// Saves the replay's whole state (see [`ReplaySnapshot`]).
    pub fn snapshot(&self) -> ReplaySnapshot {
        let fb = &self.framebuffer;
        let pixels = PackedPixels::pack(&fb.rgba);
        ReplaySnapshot {
            state: Replay {
                decoder: self.decoder.clone(),
                framebuffer: Framebuffer {
                    width: fb.width,
                    height: fb.height,
                    rgba: Vec::new(),
                    colour_map: fb.colour_map.clone(),
                    zlib: fb.zlib.clone(),
                    cursor: fb.cursor.clone(),
                },
                client_buf: self.client_buf.clone(),
                server_buf: self.server_buf.clone(),
            },
            pixels,
        }
    }

    /// The replay as it was when `snap` was taken; `None` if its pixels do not inflate to the
    /// image's size (the snapshot was damaged in memory).
    pub fn restore(snap: &ReplaySnapshot) -> Option<Replay> {
        let fb = &snap.state.framebuffer;
        let rgba = snap.pixels.unpack(rect_area(fb.width, fb.height) * 4)?;
        let mut r = snap.state.clone();
        r.framebuffer.rgba = rgba;
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode_client, encode_rect_header, encode_update_header};
    use super::*;
    use proptest::prelude::*;

    const PF: PixelFormat = PixelFormat::RGB888_LE;

    fn px(r: u8, g: u8, b: u8) -> [u8; 4] {
        [b, g, r, 0]
    }

    fn replay(w: u16, h: u16) -> Replay {
        Replay::new(&ServerInit {
            width: w,
            height: h,
            pixel_format: PF,
            name: "t".into(),
        })
        .unwrap()
    }

    fn at(fb: &Framebuffer, x: usize, y: usize) -> [u8; 4] {
        let i = (y * usize::from(fb.width()) + x) * 4;
        fb.rgba()[i..i + 4].try_into().unwrap()
    }

    #[test]
    fn raw_copyrect_rre_hextile() {
        let mut rp = replay(32, 32);
        let mut s = Vec::new();
        encode_update_header(4, &mut s);
        encode_rect_header(0, 0, 2, 1, Encoding::Raw, &mut s);
        s.extend_from_slice(&px(255, 0, 0));
        s.extend_from_slice(&px(0, 255, 0));
        encode_rect_header(10, 10, 2, 1, Encoding::CopyRect, &mut s);
        s.extend_from_slice(&[0, 0, 0, 0]);
        encode_rect_header(20, 20, 4, 4, Encoding::Rre, &mut s);
        s.extend_from_slice(&1u32.to_be_bytes());
        s.extend_from_slice(&px(0, 0, 255));
        s.extend_from_slice(&px(255, 255, 255));
        for v in [1u16, 1, 2, 2] {
            s.extend_from_slice(&v.to_be_bytes());
        }
        encode_rect_header(0, 16, 16, 16, Encoding::Hextile, &mut s);
        s.push(hextile::BACKGROUND | hextile::FOREGROUND | hextile::ANY_SUBRECTS);
        s.extend_from_slice(&px(10, 20, 30));
        s.extend_from_slice(&px(40, 50, 60));
        s.extend_from_slice(&[1, 0x33, 0x00]);
        rp.server_bytes(&s[..7]).unwrap();
        rp.server_bytes(&s[7..]).unwrap();
        let fb = rp.framebuffer();
        assert_eq!(at(fb, 0, 0), [255, 0, 0, 255]);
        assert_eq!(at(fb, 1, 0), [0, 255, 0, 255]);
        assert_eq!(at(fb, 11, 10), [0, 255, 0, 255]);
        assert_eq!(at(fb, 20, 20), [0, 0, 255, 255]);
        assert_eq!(at(fb, 21, 21), [255, 255, 255, 255]);
        assert_eq!(at(fb, 0, 16), [10, 20, 30, 255]);
        assert_eq!(at(fb, 3, 19), [40, 50, 60, 255]);
    }

    fn zrle_rect(
        z: &mut flate2::Compress,
        x: u16,
        y: u16,
        w: u16,
        h: u16,
        tiles: &[u8],
        out: &mut Vec<u8>,
    ) {
        let mut comp = Vec::with_capacity(tiles.len() + 64);
        z.compress_vec(tiles, &mut comp, flate2::FlushCompress::Sync)
            .unwrap();
        encode_rect_header(x, y, w, h, Encoding::Zrle, out);
        out.extend_from_slice(&(comp.len() as u32).to_be_bytes());
        out.extend_from_slice(&comp);
    }

    #[test]
    fn zrle_tiles_and_persistent_stream() {
        let mut rp = replay(70, 8);
        let mut z = flate2::Compress::new(flate2::Compression::default(), true);
        let mut s = Vec::new();
        encode_update_header(2, &mut s);
        // 70x4: tile 1 (64x4) solid red, tile 2 (6x4) plain RLE green x24
        let mut t = vec![1, 0, 0, 255];
        t.extend_from_slice(&[128, 0, 255, 0, 23]);
        zrle_rect(&mut z, 0, 0, 70, 4, &t, &mut s);
        // 2x4 palette RLE (130: two colours), packed palette is covered by a 2-colour tile
        let t = vec![
            2,
            255,
            255,
            255,
            0,
            0,
            0,
            0b1010_0000,
            0b0101_0000,
            0b1010_0000,
            0b0101_0000,
        ];
        zrle_rect(&mut z, 10, 4, 4, 4, &t, &mut s);
        rp.server_bytes(&s).unwrap();
        let fb = rp.framebuffer();
        assert_eq!(at(fb, 63, 3), [255, 0, 0, 255]);
        assert_eq!(at(fb, 69, 3), [0, 255, 0, 255]);
        assert_eq!(at(fb, 10, 4), [0, 0, 0, 255]);
        assert_eq!(at(fb, 11, 4), [255, 255, 255, 255]);
        assert_eq!(at(fb, 10, 5), [255, 255, 255, 255]);
    }

    #[test]
    fn zrle_bomb_is_refused() {
        let mut rp = replay(8, 8);
        let mut z = flate2::Compress::new(flate2::Compression::default(), true);
        let mut s = Vec::new();
        encode_update_header(1, &mut s);
        zrle_rect(&mut z, 0, 0, 1, 1, &vec![0u8; 1_000_000], &mut s);
        assert!(matches!(rp.server_bytes(&s), Err(RfbError::TooLong { .. })));
    }

    #[test]
    fn pixel_format_change_and_desktop_size() {
        let mut rp = replay(8, 8);
        let pf16 = PixelFormat {
            bits_per_pixel: 16,
            depth: 16,
            big_endian: true,
            true_colour: true,
            red_max: 31,
            green_max: 63,
            blue_max: 31,
            red_shift: 11,
            green_shift: 5,
            blue_shift: 0,
        };
        let mut c = Vec::new();
        encode_client(&ClientMsg::SetPixelFormat(pf16), &mut c).unwrap();
        rp.client_bytes(&c).unwrap();
        let mut s = Vec::new();
        encode_update_header(2, &mut s);
        encode_rect_header(0, 0, 16, 4, Encoding::DesktopSize, &mut s);
        encode_rect_header(15, 3, 1, 1, Encoding::Raw, &mut s);
        s.extend_from_slice(&0xf800u16.to_be_bytes());
        rp.server_bytes(&s).unwrap();
        let fb = rp.framebuffer();
        assert_eq!((fb.width(), fb.height()), (16, 4));
        assert_eq!(at(fb, 15, 3), [255, 0, 0, 255]);
    }

    /// Replays a capture of QEMU 7.2's VNC server (SeaBIOS screen, 720x400): ServerInit, then
    /// everything QEMU sent for one full-screen request in the given encoding.
    fn replay_capture(bytes: &[u8]) -> Replay {
        let (init, n) = super::super::decode_server_init(bytes).unwrap().unwrap();
        assert_eq!(
            (init.width, init.height, init.name.as_str()),
            (720, 400, "QEMU")
        );
        let mut rp = Replay::new(&init).unwrap();
        rp.server_bytes(&bytes[n..]).unwrap();
        assert!(
            rp.server_buf.is_empty(),
            "the capture decodes to its last byte"
        );
        rp
    }

    fn lit(fb: &Framebuffer) -> usize {
        fb.rgba()
            .chunks_exact(4)
            .filter(|p| p[..3] != [0, 0, 0])
            .count()
    }

    #[test]
    fn real_qemu_zrle_and_hextile_captures_decode_alike() {
        let z = replay_capture(include_bytes!("testdata/qemu_seabios_zrle.bin"));
        let h = replay_capture(include_bytes!("testdata/qemu_seabios_hextile.bin"));
        assert!(lit(z.framebuffer()) > 500, "the firmware text is drawn");
        assert_eq!(z.framebuffer().rgba(), h.framebuffer().rgba());
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600), header in any::<bool>()) {
            let mut rp = replay(64, 64);
            if header {
                let _ = rp.server_bytes(&[0, 0, 0, 3]);
            }
            let _ = rp.server_bytes(&data);
        }

        #[test]
        fn garbage_rect_payloads_never_panic(enc in prop_oneof![Just(0i32), Just(1), Just(2), Just(5), Just(16), Just(-239)],
                                             x in 0u16..40, y in 0u16..40, w in 0u16..40, h in 0u16..40,
                                             data in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let mut fb = Framebuffer::new(64, 64).unwrap();
            let r = Rectangle { x, y, width: w, height: h, encoding: Encoding::from_i32(enc), data };
            let _ = fb.apply(&ServerMsg::Rect(r), &PF);
        }
    }
}
