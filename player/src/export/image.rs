//! Pictures of graphical recordings (RDP, VNC): one frame as PNG (`--format png`), or every
//! frame at a fixed rate as raw RGBA for a video encoder (`--format mp4`, through the
//! system's ffmpeg, driven by the command line).

use std::io::Write;

use bytes::Bytes;
use recorder::format::{Direction, RecordKind};
use recorder::reader::Recording;

use crate::rdp::{RDP_PROTOCOL, RdpError, RdpReplay, RgbaFrame};
use crate::rfb::{self, RfbError};

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
    /// The RFB decoder failed.
    #[error("VNC recording: {0}")]
    Rfb(#[from] RfbError),
    /// The VNC recording has no ServerInit (header metadata or first keyframe).
    #[error("the VNC recording holds no ServerInit")]
    NoServerInit,
    /// Not a graphical recording.
    #[error("{0:?} recordings have no pictures; export them as asciicast or txt")]
    NotGraphical(String),
    /// PNG encoding failed.
    #[error("cannot encode PNG: {0}")]
    Png(String),
    /// Writing failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A VNC recording replayed in order (RFB updates depend on the previous picture, e.g.
/// CopyRect and the ZRLE zlib stream, so going back means starting again).
#[derive(Debug)]
pub struct VncReplay {
    init: rfb::ServerInit,
    records: Vec<(u64, bool, Bytes)>,
    replay: rfb::Replay,
    next: usize,
    end_us: u64,
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
        Ok(VncReplay {
            replay: rfb::Replay::new(&init)?,
            init,
            records,
            next: 0,
            end_us,
            errors: 0,
        })
    }

    /// The end of the recording (µs since its start).
    pub fn end_us(&self) -> u64 {
        self.end_us
    }

    /// The screen once everything recorded at or before `at_us` is applied.
    pub fn frame_at(&mut self, at_us: u64) -> Result<RgbaFrame, ImageError> {
        let target = self.records.partition_point(|r| r.0 <= at_us);
        if self.next > target {
            self.replay = rfb::Replay::new(&self.init)?;
            self.next = 0;
        }
        while self.next < target {
            if let Some((_, from_server, bytes)) = self.records.get(self.next) {
                let r = if *from_server {
                    self.replay.server_bytes(bytes)
                } else {
                    self.replay.client_bytes(bytes)
                };
                if r.is_err() {
                    // The stream cannot be resynchronised after a bad message: show what was
                    // decoded so far.
                    self.errors += 1;
                    self.next = self.records.len();
                    break;
                }
            }
            self.next += 1;
        }
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

/// An RDP or VNC replay.
#[derive(Debug)]
pub enum Graphical {
    /// RDP.
    Rdp(Box<RdpReplay>),
    /// VNC console.
    Vnc(Box<VncReplay>),
}

impl Graphical {
    /// Opens a graphical recording; other protocols are [`ImageError::NotGraphical`].
    pub fn open(bytes: &[u8]) -> Result<Graphical, ImageError> {
        let rec = Recording::parse(bytes)?;
        let protocol = rec.header().header.protocol.clone();
        match protocol.as_str() {
            RDP_PROTOCOL => Ok(Graphical::Rdp(Box::new(RdpReplay::open(bytes)?))),
            VNC_PROTOCOL => Ok(Graphical::Vnc(Box::new(VncReplay::open(bytes)?))),
            _ => Err(ImageError::NotGraphical(protocol)),
        }
    }

    /// The end of the recording (µs).
    pub fn end_us(&self) -> u64 {
        match self {
            Graphical::Rdp(r) => r.end_us(),
            Graphical::Vnc(v) => v.end_us(),
        }
    }

    /// The screen at `at_us`.
    pub fn frame_at(&mut self, at_us: u64) -> Result<RgbaFrame, ImageError> {
        match self {
            Graphical::Rdp(r) => Ok(r.frame_at(at_us)?),
            Graphical::Vnc(v) => v.frame_at(at_us),
        }
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

/// The screen of a graphical recording at `at_us` (default: its end) as PNG.
pub fn export_png(bytes: &[u8], at_us: Option<u64>, out: impl Write) -> Result<(), ImageError> {
    let mut g = Graphical::open(bytes)?;
    let at = at_us.unwrap_or_else(|| g.end_us());
    let frame = g.frame_at(at)?;
    write_png(&frame, out)
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
