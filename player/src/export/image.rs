//! Pictures of recordings: one frame as PNG (`--format png`), or every frame at a fixed rate
//! as raw RGBA for a video encoder (`--format mp4`, through the system's ffmpeg, driven by
//! the command line). RDP and VNC recordings show the decoded screen; terminal recordings
//! (SSH, serial consoles) the emulated screen drawn with a font
//! ([`crate::terminal::TerminalFont`]).

use std::io::Write;

use bytes::Bytes;
use recorder::format::{Direction, RecordKind};
use recorder::reader::Recording;

use crate::rdp::{RDP_PROTOCOL, RdpError, RdpReplay, RgbaFrame};
use crate::rfb::{self, RfbError};
use crate::terminal::{
    PlayerError, TERMINAL_PROTOCOLS, TerminalFont, TerminalPictures, TerminalReplay,
};

/// The recording header's protocol for VNC consoles.
pub const VNC_PROTOCOL: &str = "console-vnc";
/// Frames per second of video exports: screens of administration work change at human pace,
/// and ten frames a second keep typing and scrolling readable at a tenth of the cost of 30.
pub const VIDEO_FPS: u32 = 10;

/// Why a picture cannot be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// The recording cannot be read.
    #[error(transparent)]
    Read(#[from] recorder::reader::ReadError),
    /// A chunk does not decode.
    #[error("recording damaged: {0}")]
    Records(#[from] recorder::format::DecodeError),
    /// The RDP decoder failed.
    #[error(transparent)]
    Rdp(#[from] RdpError),
    /// The terminal recording cannot be replayed.
    #[error(transparent)]
    Terminal(#[from] PlayerError),
    /// The RFB decoder failed.
    #[error("VNC recording: {0}")]
    Rfb(#[from] RfbError),
    /// The VNC recording has no ServerInit (header metadata or first keyframe).
    #[error("the VNC recording holds no ServerInit")]
    NoServerInit,
    /// A protocol the player has no pictures for.
    #[error("{0:?} recordings have no pictures")]
    NotGraphical(String),
    /// PNG encoding failed.
    #[error("cannot encode PNG: {0}")]
    Png(String),
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Server and client bytes between two VNC keyframes, at least. Decoding 4 MiB of RFB updates
/// takes tens of milliseconds, which bounds a seek; see [`VncReplay`].
pub const VNC_KEYFRAME_INTERVAL_BYTES: usize = 4 * 1024 * 1024;
/// A keyframe interval is at least this many times the size of the previous keyframe, so
/// keyframes never take more than about a quarter of the memory of the recording's own
/// bytes (a screen that compresses badly, e.g. a photo wallpaper, makes large keyframes).
const VNC_KEYFRAME_SIZE_FACTOR: usize = 4;

/// A VNC recording replayed in order, with keyframes for seeking.
///
/// RFB updates depend on the previous picture (CopyRect) and on the connection's ZRLE zlib
/// stream, so a keyframe is the replay's whole state ([`rfb::ReplaySnapshot`]: pixels
/// deflated, the inflater's window as is). Keyframes are laid as decoding first passes each
/// interval of recorded bytes (bytes, not time: decoding costs by the byte, and an idle
/// hour needs no keyframe), so opening stays cheap and the first look at a moment decodes up
/// to it; after that, a seek anywhere restores the nearest keyframe before the moment and
/// decodes at most one interval.
#[derive(Debug)]
pub struct VncReplay {
    init: rfb::ServerInit,
    records: Vec<(u64, bool, Bytes)>,
    replay: rfb::Replay,
    next: usize,
    end_us: u64,
    /// INVARIANT: ascending by the record index (the first record not applied).
    keyframes: Vec<(usize, rfb::ReplaySnapshot)>,
    /// Records decoded at least once (keyframes are laid up to here).
    laid_until: usize,
    /// Bytes decoded past the last keyframe.
    since_keyframe: usize,
    interval: usize,
    min_interval: usize,
    /// The record that failed to decode: nothing after it is shown.
    failed_at: Option<usize>,
    /// Damaged messages skip the rest of the recording from there; counted for callers.
    pub errors: u64,
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

impl VncReplay {
    /// Reads a VNC console recording.
    pub fn open(bytes: &[u8]) -> Result<VncReplay, ImageError> {
        Self::open_with_keyframe_interval(bytes, VNC_KEYFRAME_INTERVAL_BYTES)
    }

    /// [`Self::open`] with keyframes every `interval` bytes at least (tests, benches;
    /// `usize::MAX`: none).
    pub fn open_with_keyframe_interval(
        bytes: &[u8],
        interval: usize,
    ) -> Result<VncReplay, ImageError> {
        let rec = Recording::parse(bytes)?;
        let header = &rec.header().header;
        let mut init = header
            .metadata
            .get("rfb.server_init")
            .and_then(|h| unhex(h))
            .and_then(|raw| rfb::decode_server_init(&raw).ok().flatten())
            .map(|(si, _)| si);
        let mut records = Vec::new();
        for r in rec.records() {
            let r = r?;
            match r.kind {
                RecordKind::Data {
                    direction, bytes, ..
                } => records.push((r.at_us, direction == Direction::ServerToClient, bytes)),
                RecordKind::Keyframe { bytes, .. } if init.is_none() => {
                    init = rfb::decode_server_init(&bytes)?.map(|(si, _)| si);
                }
                _ => {}
            }
        }
        let init = init.ok_or(ImageError::NoServerInit)?;
        let end_us = rec.end_us().max(records.last().map(|r| r.0).unwrap_or(0));
        let interval = interval.max(1);
        Ok(VncReplay {
            replay: rfb::Replay::new(&init)?,
            init,
            records,
            next: 0,
            end_us,
            keyframes: Vec::new(),
            laid_until: 0,
            since_keyframe: 0,
            interval,
            min_interval: interval,
            failed_at: None,
            errors: 0,
        })
    }

    /// The end of the recording (µs since its start).
    pub fn end_us(&self) -> u64 {
        self.end_us
    }

    /// Takes in what a live recording gained since this replay read it: `grown` is the whole
    /// recording as it is now (it only ever grows). Returns the records added. What is already
    /// decoded stays; a record still being written at the end is left for the next call.
    pub fn follow(&mut self, grown: &[u8]) -> Result<usize, ImageError> {
        let rec = Recording::parse(grown)?;
        let known = self.records.len();
        let mut seen = 0usize;
        let mut last = self.end_us;
        for r in rec.records() {
            // A chunk still being written: the next call gets it whole.
            let Ok(r) = r else { break };
            last = last.max(r.at_us);
            if let RecordKind::Data {
                direction, bytes, ..
            } = r.kind
            {
                seen += 1;
                if seen > known {
                    self.records
                        .push((r.at_us, direction == Direction::ServerToClient, bytes));
                }
            }
        }
        self.end_us = rec.end_us().max(last);
        Ok(self.records.len() - known)
    }

    /// Keyframes laid so far.
    pub fn keyframe_count(&self) -> usize {
        self.keyframes.len()
    }

    /// Memory the keyframes hold (bytes, roughly).
    pub fn keyframe_bytes(&self) -> usize {
        self.keyframes.iter().map(|(_, k)| k.size()).sum()
    }

    /// Moves the replay to just after the last record at or before `at_us`.
    fn seek(&mut self, at_us: u64) -> Result<(), ImageError> {
        let target = self.records.partition_point(|r| r.0 <= at_us);
        let key = self
            .keyframes
            .partition_point(|(next, _)| *next <= target)
            .checked_sub(1)
            .and_then(|i| self.keyframes.get(i));
        let behind = self.next > target;
        let key_is_closer = key.is_some_and(|(next, _)| *next > self.next);
        if behind || key_is_closer {
            match key.and_then(|(next, k)| Some((*next, rfb::Replay::restore(k)?))) {
                Some((next, replay)) => {
                    self.replay = replay;
                    self.next = next;
                }
                None => {
                    self.replay = rfb::Replay::new(&self.init)?;
                    self.next = 0;
                }
            }
        }
        let stop = self.failed_at.map_or(target, |f| target.min(f));
        while self.next < stop {
            let Some((_, from_server, bytes)) = self.records.get(self.next) else {
                break;
            };
            let r = if *from_server {
                self.replay.server_bytes(bytes)
            } else {
                self.replay.client_bytes(bytes)
            };
            if r.is_err() {
                // The stream cannot be resynchronised after a bad message: show what was
                // decoded so far, wherever the moment is.
                self.errors += 1;
                self.failed_at = Some(self.next);
                break;
            }
            let len = bytes.len();
            self.next += 1;
            if self.next > self.laid_until {
                self.laid_until = self.next;
                self.since_keyframe += len;
                if self.since_keyframe >= self.interval {
                    let k = self.replay.snapshot();
                    self.interval = self
                        .min_interval
                        .max(k.size().saturating_mul(VNC_KEYFRAME_SIZE_FACTOR));
                    self.keyframes.push((self.next, k));
                    self.since_keyframe = 0;
                }
            }
        }
        Ok(())
    }

    /// The screen once everything recorded at or before `at_us` is applied.
    pub fn frame_at(&mut self, at_us: u64) -> Result<RgbaFrame, ImageError> {
        self.seek(at_us)?;
        let fb = self.replay.framebuffer();
        let mut rgba = fb.rgba().to_vec();
        for px in rgba.chunks_exact_mut(4) {
            if let Some(a) = px.get_mut(3) {
                *a = 255;
            }
        }
        Ok(RgbaFrame {
            width: fb.width(),
            height: fb.height(),
            rgba,
        })
    }
}

/// A replay that gives pictures: RDP, VNC, or a terminal drawn with a font.
#[derive(Debug)]
pub enum Graphical {
    /// RDP.
    Rdp(Box<RdpReplay>),
    /// VNC console.
    Vnc(Box<VncReplay>),
    /// SSH or serial console, drawn.
    Terminal(Box<TerminalPictures>),
}

impl Graphical {
    /// Opens an RDP, VNC or terminal recording (terminals drawn with
    /// [`TerminalFont::system`]); other protocols are [`ImageError::NotGraphical`].
    pub fn open(bytes: &[u8]) -> Result<Graphical, ImageError> {
        let rec = Recording::parse(bytes)?;
        let protocol = rec.header().header.protocol.clone();
        match protocol.as_str() {
            RDP_PROTOCOL => Ok(Graphical::Rdp(Box::new(RdpReplay::open(bytes)?))),
            VNC_PROTOCOL => Ok(Graphical::Vnc(Box::new(VncReplay::open(bytes)?))),
            p if TERMINAL_PROTOCOLS.contains(&p) => Ok(Graphical::Terminal(Box::new(
                TerminalPictures::new(TerminalReplay::open(bytes)?, TerminalFont::system()),
            ))),
            _ => Err(ImageError::NotGraphical(protocol)),
        }
    }

    /// The end of the recording (µs).
    pub fn end_us(&self) -> u64 {
        match self {
            Graphical::Rdp(r) => r.end_us(),
            Graphical::Vnc(v) => v.end_us(),
            Graphical::Terminal(t) => t.end_us(),
        }
    }

    /// Takes in what a live RDP or VNC recording gained (`grown`: the whole recording as it
    /// is now); a terminal drawn with a font is opened again. Returns whether anything was
    /// added.
    pub fn follow(&mut self, grown: &[u8]) -> Result<bool, ImageError> {
        match self {
            Graphical::Rdp(r) => Ok(r.follow(grown)? > 0),
            Graphical::Vnc(v) => Ok(v.follow(grown)? > 0),
            Graphical::Terminal(_) => {
                *self = Graphical::open(grown)?;
                Ok(true)
            }
        }
    }

    /// The screen at `at_us`.
    pub fn frame_at(&mut self, at_us: u64) -> Result<RgbaFrame, ImageError> {
        match self {
            Graphical::Rdp(r) => Ok(r.frame_at(at_us)?),
            Graphical::Vnc(v) => v.frame_at(at_us),
            Graphical::Terminal(t) => Ok(t.frame_at(at_us)),
        }
    }

    /// The screen at `at_us` (default: the end) as PNG.
    pub fn write_png_at(&mut self, at_us: Option<u64>, out: impl Write) -> Result<(), ImageError> {
        let at = at_us.unwrap_or_else(|| self.end_us());
        let frame = self.frame_at(at)?;
        write_png(&frame, out)
    }
}

/// Encodes a frame as PNG (RGB, no alpha: screens are opaque).
pub fn write_png(frame: &RgbaFrame, out: impl Write) -> Result<(), ImageError> {
    let mut enc = png::Encoder::new(out, u32::from(frame.width), u32::from(frame.height));
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    let rgb: Vec<u8> = frame
        .rgba
        .chunks_exact(4)
        .flat_map(|p| p.iter().take(3).copied())
        .collect();
    let mut w = enc
        .write_header()
        .map_err(|e| ImageError::Png(e.to_string()))?;
    w.write_image_data(&rgb)
        .map_err(|e| ImageError::Png(e.to_string()))?;
    w.finish().map_err(|e| ImageError::Png(e.to_string()))?;
    Ok(())
}

/// The screen of a recording at `at_us` (default: its end) as PNG.
pub fn export_png(bytes: &[u8], at_us: Option<u64>, out: impl Write) -> Result<(), ImageError> {
    Graphical::open(bytes)?.write_png_at(at_us, out)
}

/// Calls `each` with every frame at [`VIDEO_FPS`] from the start to the end, all of the size
/// of the first frame (a later resize is cropped or padded with black, since a video stream
/// has one size). Returns that size.
pub fn video_frames(
    g: &mut Graphical,
    mut each: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> Result<(u16, u16), ImageError> {
    let step = 1_000_000 / u64::from(VIDEO_FPS);
    let end = g.end_us();
    let first = g.frame_at(0)?;
    let (w, h) = (first.width, first.height);
    let mut canvas = vec![0u8; usize::from(w) * usize::from(h) * 4];
    let mut t = 0u64;
    loop {
        let f = g.frame_at(t)?;
        if (f.width, f.height) == (w, h) {
            each(&f.rgba)?;
        } else {
            canvas.fill(0);
            let cols = usize::from(w.min(f.width)) * 4;
            for y in 0..usize::from(h.min(f.height)) {
                let src = y * usize::from(f.width) * 4;
                let dst = y * usize::from(w) * 4;
                if let (Some(d), Some(s)) =
                    (canvas.get_mut(dst..dst + cols), f.rgba.get(src..src + cols))
                {
                    d.copy_from_slice(s);
                }
            }
            each(&canvas)?;
        }
        if t >= end {
            break;
        }
        t = (t + step).min(end);
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rfb::{
        Encoding, PixelFormat, ServerInit, encode_rect_header, encode_server_init,
        encode_update_header,
    };
    use recorder::format::{ChannelId, Record, encode_recording};
    use recorder::signing::RecordingKey;

    /// A VNC recording of `n` updates, one every 100 ms, mixing ZRLE (one zlib stream for
    /// the whole connection), CopyRect and raw rectangles: every kind of state a keyframe
    /// must carry.
    fn vnc_recording(n: u64) -> Vec<u8> {
        let init = ServerInit {
            width: 200,
            height: 120,
            pixel_format: PixelFormat::RGB888_LE,
            name: "t".into(),
        };
        let mut raw = Vec::new();
        encode_server_init(&init, &mut raw).unwrap();
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let header = serde_json::from_value(serde_json::json!({
            "session_id": "01936f5e-0000-7000-8000-000000000044",
            "protocol": "console-vnc",
            "user": "tanaka",
            "contractor": "acme",
            "source": "127.0.10.11",
            "target": "web01",
            "start_unix_us": 1_764_061_200_000_000i64,
            "metadata": { "rfb.server_init": hex },
        }))
        .unwrap();
        let mut z = flate2::Compress::new(flate2::Compression::default(), true);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut records = Vec::new();
        for i in 0..n {
            let mut m = Vec::new();
            encode_update_header(3, &mut m);
            // ZRLE: one raw 40x20 tile of noise (3-byte cpixels), so later data refers back
            // into the zlib window.
            let (x, y) = ((next() % 160) as u16, (next() % 100) as u16);
            let mut tile = vec![0u8];
            let c = next();
            for p in 0..40 * 20u64 {
                tile.extend_from_slice(&[(c >> (p % 7)) as u8, (p % 251) as u8, (i % 256) as u8]);
            }
            let mut comp = Vec::with_capacity(tile.len() + 64);
            z.compress_vec(&tile, &mut comp, flate2::FlushCompress::Sync)
                .unwrap();
            encode_rect_header(x, y, 40, 20, Encoding::Zrle, &mut m);
            m.extend_from_slice(&(comp.len() as u32).to_be_bytes());
            m.extend_from_slice(&comp);
            // CopyRect from elsewhere: depends on the picture so far.
            let (sx, sy) = ((next() % 180) as u16, (next() % 100) as u16);
            encode_rect_header(
                (next() % 180) as u16,
                (next() % 100) as u16,
                20,
                20,
                Encoding::CopyRect,
                &mut m,
            );
            m.extend_from_slice(&sx.to_be_bytes());
            m.extend_from_slice(&sy.to_be_bytes());
            encode_rect_header(
                (next() % 196) as u16,
                (next() % 116) as u16,
                4,
                4,
                Encoding::Raw,
                &mut m,
            );
            let c = next();
            for _ in 0..16 {
                m.extend_from_slice(&[c as u8, (c >> 8) as u8, (c >> 16) as u8, 0]);
            }
            // Split some updates across records, as a relay reads them.
            let cut = if i % 3 == 0 { m.len() / 2 } else { m.len() };
            for (k, part) in [&m[..cut], &m[cut..]].into_iter().enumerate() {
                if !part.is_empty() {
                    records.push(Record {
                        at_us: i * 100_000 + k as u64,
                        kind: RecordKind::Data {
                            direction: Direction::ServerToClient,
                            channel: ChannelId(0),
                            bytes: Bytes::copy_from_slice(part),
                        },
                    });
                }
            }
        }
        let key = RecordingKey::generate().unwrap();
        encode_recording(&header, &records, 1 << 16, n * 100_000, key.signing_key()).unwrap()
    }

    /// Where the chunk after byte `from` starts (its magic): a live recording is read up to
    /// a whole chunk.
    fn chunk_boundary_after(rec: &[u8], from: usize) -> usize {
        from + rec[from..]
            .windows(4)
            .position(|w| w == recorder::format::CHUNK_MAGIC)
            .unwrap()
    }

    #[test]
    fn a_followed_live_vnc_recording_shows_what_a_fresh_replay_shows() {
        let rec = vnc_recording(600);
        let first = chunk_boundary_after(&rec, rec.len() / 3);
        let mut live = Graphical::open(&rec[..first]).unwrap();
        let early_end = live.end_us();
        live.frame_at(early_end).unwrap();
        // A read that caught a chunk half written takes what is whole, and no more.
        let added = live.follow(&rec[..rec.len() * 2 / 3]).unwrap();
        assert!(added);
        assert!(live.end_us() > early_end);
        assert!(live.follow(&rec).unwrap());
        let end = live.end_us();
        let mut fresh = Graphical::open(&rec).unwrap();
        assert_eq!(end, fresh.end_us());
        assert_eq!(live.frame_at(end).unwrap(), fresh.frame_at(end).unwrap());
        // Nothing new: nothing added.
        assert!(!live.follow(&rec).unwrap());
    }

    #[test]
    fn vnc_frame_through_keyframes_equals_frame_from_start() {
        let rec = vnc_recording(1000);
        let mut keyed = VncReplay::open_with_keyframe_interval(&rec, 8 * 1024).unwrap();
        // Lay the keyframes, then seek around: back, forward, within one interval.
        keyed.frame_at(keyed.end_us()).unwrap();
        assert!(keyed.keyframe_count() >= 4, "{}", keyed.keyframe_count());
        assert!(keyed.keyframe_bytes() > 0);
        for t in [
            99_950_000, 100_000, 55_000_001, 55_050_000, 3_000_000, 89_000_000, 0, 7_700_000,
            7_650_000, 72_200_001,
        ] {
            let mut fresh = VncReplay::open_with_keyframe_interval(&rec, usize::MAX).unwrap();
            let want = fresh.frame_at(t).unwrap();
            assert_eq!(fresh.keyframe_count(), 0);
            let got = keyed.frame_at(t).unwrap();
            assert!(got == want, "frame at {t} µs differs");
            assert_eq!(keyed.errors, 0);
        }
    }
}
