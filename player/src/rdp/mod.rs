//! RDP recordings: recovers the negotiated state from the recorded connection sequence and
//! replays the server's PDUs through IronRDP's decoders (`ironrdp-session`'s fast-path
//! processor, which drives `ironrdp-graphics`) into a framebuffer.
//!
//! What Sekisho records (docs/recording-format.md): every PDU after TLS, in both directions,
//! from the client's MCS Connect Initial on, one whole frame (TPKT/X.224 or fast-path) per
//! data record. Sekisho's man-in-the-middle makes a recording decodable: it clears the
//! Client Info `COMPRESSION` flag (no bulk compression, so no MPPC history to rebuild),
//! clears the drawing orders in the Confirm Active (the server sends bitmaps, not GDI
//! orders), and never lets the GFX pipeline be negotiated. So the screen is built from
//! bitmap updates (slow-path and fast-path, raw, interleaved RLE or planar) and surface
//! commands. The mouse pointer is not part of the screen (the server's screen, as `xwd` sees
//! it, has no cursor either): it is followed apart, its shapes from the server's pointer
//! updates and its position from the client's mouse input (and the server's position
//! updates), and drawn over the frame only when asked ([`RdpReplay::set_draw_pointer`]).
//!
//! Seeking: [`RdpReplay::open`] decodes the whole recording once and keeps a compressed
//! keyframe (the framebuffer) every [`KEYFRAME_INTERVAL_BYTES`] of server PDUs, so
//! [`RdpReplay::frame_at`] restores the nearest keyframe before the moment and decodes at
//! most that many bytes, wherever the moment is in a long recording.

use std::sync::Arc;

use bytes::Bytes;
use ironrdp_core::{ReadCursor, WriteBuf, decode, decode_cursor};
use ironrdp_graphics::image_processing::PixelFormat;
use ironrdp_graphics::pointer::{DecodedPointer, PointerBitmapTarget};
use ironrdp_pdu::bitmap::{BitmapData, BitmapUpdateData, Compression as BitmapCompression};
use ironrdp_pdu::fast_path::{
    FastPathHeader, FastPathUpdate, FastPathUpdatePdu, Fragmentation, UpdateCode,
};
use ironrdp_pdu::gcc::{ClientEarlyCapabilityFlags, HighColorDepth};
use ironrdp_pdu::geometry::InclusiveRectangle;
use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent};
use ironrdp_pdu::mcs::{ConnectInitial, ConnectResponse, McsMessage};
use ironrdp_pdu::pointer::PointerUpdateData;
use ironrdp_pdu::rdp::ClientInfoPdu;
use ironrdp_pdu::rdp::capability_sets::CapabilitySet;
use ironrdp_pdu::rdp::client_info::ClientInfoFlags;
use ironrdp_pdu::rdp::headers::{
    CompressionFlags, ShareControlHeader, ShareControlPdu, ShareDataPdu,
};
use ironrdp_pdu::slow_path::{self, GraphicsUpdateType};
use ironrdp_pdu::x224::{X224, X224Data};
use ironrdp_session::fast_path::{Processor, ProcessorBuilder};
use ironrdp_session::image::DecodedImage;

use crate::packed::PackedPixels;
use recorder::format::{DecodeError, Direction, RecordKind};
use recorder::reader::{ReadError, Recording};

/// The recording header's protocol for RDP sessions.
pub const RDP_PROTOCOL: &str = "rdp";
/// Largest desktop side accepted. RDP allows 8192 (MS-RDPBCGR 2.2.1.3.2 with monitor
/// layouts); the side comes from the recording, which may be hostile.
pub const MAX_DESKTOP_SIDE: u16 = 8192;
/// Server PDU bytes between two keyframes. Decoding 1 MiB of bitmap updates takes about
/// 40 ms on the 2-core bench machine, which bounds a seek (worst seek in a one-hour recording:
/// 127 ms with 4 MiB, 32 ms with 1 MiB, `benches/graphical.rs`); a compressed desktop
/// keyframe is tens to hundreds of KiB, held in memory while the replay is open.
pub const KEYFRAME_INTERVAL_BYTES: usize = 1024 * 1024;
/// Pointer shapes kept by cache index. Clients announce a cache of 25 or so (Pointer
/// capability); indexes come from the recording, so they are capped.
pub const MAX_POINTER_CACHE: usize = 256;
/// Rows per synthesized bitmap when a keyframe is painted back: keeps each rectangle well
/// under the 4 MiB a bitmap update may hold, even at 8192 pixels wide.
const RESTORE_ROWS: u16 = 64;

/// Why an RDP recording cannot be replayed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RdpError {
    /// The file is not a readable recording.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A chunk does not decode.
    #[error("recording damaged: {0}")]
    Records(#[from] DecodeError),
    /// The header says another protocol.
    #[error("not an RDP recording (protocol {0:?})")]
    NotRdp(String),
    /// No desktop size: neither a Connect Initial nor a Demand Active was recorded.
    #[error("the recording holds no desktop size (no MCS Connect Initial or Demand Active)")]
    NoDesktop,
    /// The desktop is larger than [`MAX_DESKTOP_SIDE`].
    #[error("desktop {0}x{1} is larger than the player accepts")]
    TooLarge(u16, u16),
    /// A keyframe the player made itself did not decompress (memory damage).
    #[error("keyframe damaged")]
    Keyframe,
}

/// The connection state recovered from the recording.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// Desktop size the client asked for (Client Core Data).
    pub client_desktop: Option<(u16, u16)>,
    /// Colour depth the client asked for (high colour depth, bits per pixel).
    pub client_color_depth: Option<u16>,
    /// Static channels the client asked for, by name, with the id the server gave when kept.
    pub channels: Vec<(String, Option<u16>)>,
    /// The MCS I/O channel (Connect Response).
    pub io_channel: Option<u16>,
    /// The MCS message channel, if the server opened one.
    pub message_channel: Option<u16>,
    /// The user channel (Attach User Confirm).
    pub user_channel: Option<u16>,
    /// The share id (Demand Active).
    pub share_id: Option<u32>,
    /// Desktop size and depth the server activated with (Bitmap capability, last Demand Active).
    pub server_desktop: Option<(u16, u16)>,
    /// Bits per pixel of the server's Bitmap capability.
    pub server_bpp: Option<u16>,
    /// Whether the recorded Client Info asks for bulk compression (Sekisho clears it).
    pub bulk_compression: Option<bool>,
}

/// One frame of the replay: an RGBA image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbaFrame {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// `width * height` RGBA pixels, row by row from the top.
    pub rgba: Vec<u8>,
}

/// A server or client PDU with its time.
#[derive(Debug, Clone)]
struct Pdu {
    at_us: u64,
    from_server: bool,
    bytes: Bytes,
}

/// Connection state the decoder carries between PDUs (part of each keyframe).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct LinkState {
    io_channel: Option<u16>,
    user_channel: Option<u16>,
    share_id: u32,
}

/// Counts of what the replay could not use (shown by callers; a clean recording has none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Server PDUs decoded.
    pub server_pdus: u64,
    /// Bytes of server PDUs.
    pub server_bytes: u64,
    /// PDUs that failed to decode (skipped).
    pub errors: u64,
    /// The first such failure, for people.
    pub first_error: Option<String>,
    /// Keyframes kept for seeking.
    pub keyframes: usize,
}

/// The mouse pointer as the recording shows it (part of each keyframe; shapes are shared).
#[derive(Debug, Clone, Default)]
struct PointerState {
    /// Shapes by cache index: the server sends a shape once and refers back to it.
    cache: Vec<Option<Arc<DecodedPointer>>>,
    /// The current shape (`None`: the system's default arrow, which the recording does not
    /// hold, so nothing is drawn).
    shape: Option<Arc<DecodedPointer>>,
    hidden: bool,
    position: Option<(u16, u16)>,
}

impl PointerState {
    fn cache_put(&mut self, index: u16, p: &Arc<DecodedPointer>) {
        let i = usize::from(index);
        if i < MAX_POINTER_CACHE {
            if self.cache.len() <= i {
                self.cache.resize(i + 1, None);
            }
            if let Some(slot) = self.cache.get_mut(i) {
                *slot = Some(p.clone());
            }
        }
    }

    fn update(&mut self, u: &PointerUpdateData<'_>) {
        let decoded = match u {
            PointerUpdateData::SetHidden => {
                self.hidden = true;
                return;
            }
            PointerUpdateData::SetDefault => {
                self.hidden = false;
                self.shape = None;
                return;
            }
            PointerUpdateData::SetPosition(p) => {
                self.position = Some((p.x, p.y));
                return;
            }
            PointerUpdateData::Cached(c) => {
                if let Some(Some(p)) = self.cache.get(usize::from(c.cache_index)) {
                    self.shape = Some(p.clone());
                    self.hidden = false;
                }
                return;
            }
            PointerUpdateData::Color(c) => {
                DecodedPointer::decode_color_pointer_attribute(c, PointerBitmapTarget::Accelerated)
                    .map(|p| (c.cache_index, p))
            }
            PointerUpdateData::New(n) => {
                DecodedPointer::decode_pointer_attribute(n, PointerBitmapTarget::Accelerated)
                    .map(|p| (n.color_pointer.cache_index, p))
            }
            PointerUpdateData::Large(l) => {
                DecodedPointer::decode_large_pointer_attribute(l, PointerBitmapTarget::Accelerated)
                    .map(|p| (l.cache_index, p))
            }
        };
        // A shape that does not decode leaves the previous one (as a client would).
        if let Ok((index, p)) = decoded {
            let p = Arc::new(p);
            self.cache_put(index, &p);
            self.shape = Some(p);
            self.hidden = false;
        }
    }

    /// Draws the pointer over RGBA pixels (its bitmap is RGBA, alpha not premultiplied).
    fn draw(&self, frame: &mut RgbaFrame) {
        let (Some(p), Some((x, y)), false) = (&self.shape, self.position, self.hidden) else {
            return;
        };
        let (fw, fh) = (i64::from(frame.width), i64::from(frame.height));
        let x0 = i64::from(x) - i64::from(p.hotspot_x);
        let y0 = i64::from(y) - i64::from(p.hotspot_y);
        for py in 0..i64::from(p.height) {
            for px in 0..i64::from(p.width) {
                let (tx, ty) = (x0 + px, y0 + py);
                if !(0..fw).contains(&tx) || !(0..fh).contains(&ty) {
                    continue;
                }
                let si = ((py * i64::from(p.width) + px) * 4) as usize;
                let di = ((ty * fw + tx) * 4) as usize;
                let (Some(src), Some(dst)) = (
                    p.bitmap_data.get(si..si + 4),
                    frame.rgba.get_mut(di..di + 3),
                ) else {
                    continue;
                };
                let a = u32::from(src.get(3).copied().unwrap_or(0));
                for (d, s) in dst.iter_mut().zip(src) {
                    *d = ((u32::from(*s) * a + u32::from(*d) * (255 - a) + 127) / 255) as u8;
                }
            }
        }
    }

    /// Follows the client's mouse input (a fast-path input PDU).
    fn client_input(&mut self, frame: &[u8]) {
        if frame.first().is_none_or(|b| b & 3 != 0) {
            return;
        }
        let Ok(input) = decode::<FastPathInput>(frame) else {
            return;
        };
        for ev in input.input_events() {
            match ev {
                FastPathInputEvent::MouseEvent(m) => {
                    self.position = Some((m.x_position, m.y_position));
                }
                FastPathInputEvent::MouseEventEx(m) => {
                    self.position = Some((m.x_position, m.y_position));
                }
                _ => {}
            }
        }
    }

    /// Reads a fast-path pointer update, if `frame` is one (whole, uncompressed).
    fn server_frame(&mut self, frame: &[u8]) {
        let mut cur = ReadCursor::new(frame);
        if decode_cursor::<FastPathHeader>(&mut cur).is_err() {
            return;
        }
        let Ok(pdu) = decode_cursor::<FastPathUpdatePdu<'_>>(&mut cur) else {
            return;
        };
        let pointer = matches!(
            pdu.update_code,
            UpdateCode::HiddenPointer
                | UpdateCode::DefaultPointer
                | UpdateCode::PositionPointer
                | UpdateCode::ColorPointer
                | UpdateCode::CachedPointer
                | UpdateCode::NewPointer
                | UpdateCode::LargePointer
        );
        if !pointer
            || pdu.fragmentation != Fragmentation::Single
            || pdu.compression_flags.is_some_and(|f| !f.is_empty())
        {
            return;
        }
        if let Ok(FastPathUpdate::Pointer(u)) =
            FastPathUpdate::decode_with_code(pdu.data, pdu.update_code)
        {
            self.update(&u);
        }
    }
}

struct Decoder {
    processor: Processor,
    image: DecodedImage,
    link: LinkState,
    pointer: PointerState,
    /// Index of the next PDU to feed.
    next: usize,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("size", &(self.image.width(), self.image.height()))
            .field("link", &self.link)
            .field("next", &self.next)
            .finish()
    }
}

fn processor(link: &LinkState) -> Processor {
    ProcessorBuilder {
        io_channel_id: link.io_channel.unwrap_or(0),
        user_channel_id: link.user_channel.unwrap_or(0),
        share_id: link.share_id,
        // Pointer updates are not part of the screen (see the module documentation).
        enable_server_pointer: false,
        pointer_software_rendering: false,
    }
    .build()
}

fn check_size(w: u16, h: u16) -> Result<(), RdpError> {
    if w == 0 || h == 0 || w > MAX_DESKTOP_SIDE || h > MAX_DESKTOP_SIDE {
        return Err(RdpError::TooLarge(w, h));
    }
    Ok(())
}

/// What one server PDU changed besides the picture.
enum Fed {
    Ok,
    Skipped(String),
}

impl Decoder {
    fn new(width: u16, height: u16, link: LinkState) -> Self {
        Decoder {
            processor: processor(&link),
            image: DecodedImage::new(PixelFormat::BgrX32, width, height),
            link,
            pointer: PointerState::default(),
            next: 0,
        }
    }

    /// Feeds one server frame. Never fails: a PDU that does not decode is reported and
    /// skipped, so one damaged update does not hide the rest of a session.
    fn server(&mut self, frame: &[u8], neg: &mut Negotiated) -> Fed {
        match ironrdp_pdu::find_size(frame) {
            Ok(Some(info)) if info.action == ironrdp_pdu::Action::FastPath => {
                self.pointer.server_frame(frame);
                let mut out = WriteBuf::new();
                match self
                    .processor
                    .process(&mut self.image, frame, &mut out, &mut None)
                {
                    Ok(_) => Fed::Ok,
                    Err(e) => Fed::Skipped(format!("fast-path update: {e}")),
                }
            }
            Ok(Some(_)) => self.x224(frame, neg),
            Ok(None) => Fed::Skipped("truncated frame".to_owned()),
            Err(e) => Fed::Skipped(format!("frame header: {e}")),
        }
    }

    fn x224(&mut self, frame: &[u8], neg: &mut Negotiated) -> Fed {
        if self.link.io_channel.is_none()
            && let Some(resp) = decode::<X224<X224Data<'_>>>(frame)
                .ok()
                .and_then(|d| decode::<ConnectResponse>(d.0.data.as_ref()).ok())
        {
            let gcc = resp.conference_create_response.gcc_blocks();
            self.link.io_channel = Some(gcc.network.io_channel);
            neg.io_channel = Some(gcc.network.io_channel);
            neg.message_channel = gcc
                .message_channel
                .as_ref()
                .map(|m| m.mcs_message_channel_id);
            let mut ids = gcc.network.channel_ids.iter().copied();
            for ch in &mut neg.channels {
                ch.1 = ids.next();
            }
            self.processor = processor(&self.link);
            return Fed::Ok;
        }
        let Ok(X224(msg)) = decode::<X224<McsMessage<'_>>>(frame) else {
            // Before the Connect Response nothing else is expected; X.224 PDUs that are not
            // MCS (none after the Connection Confirm, which is not recorded) are ignored.
            return Fed::Ok;
        };
        match msg {
            McsMessage::AttachUserConfirm(c) => {
                self.link.user_channel = Some(c.initiator_id);
                neg.user_channel = Some(c.initiator_id);
                Fed::Ok
            }
            McsMessage::SendDataIndication(ind) if Some(ind.channel_id) == self.link.io_channel => {
                self.io_data(&ind.user_data, neg)
            }
            _ => Fed::Ok,
        }
    }

    fn io_data(&mut self, data: &[u8], neg: &mut Negotiated) -> Fed {
        // Licensing PDUs on the I/O channel carry a security header instead: not screen data.
        let Ok(header) = decode::<ShareControlHeader>(data) else {
            return Fed::Ok;
        };
        match header.share_control_pdu {
            ShareControlPdu::ServerDemandActive(da) => {
                self.link.share_id = header.share_id;
                neg.share_id = Some(header.share_id);
                for cap in &da.pdu.capability_sets {
                    if let CapabilitySet::Bitmap(b) = cap {
                        neg.server_desktop = Some((b.desktop_width, b.desktop_height));
                        neg.server_bpp = Some(b.pref_bits_per_pix);
                        if (b.desktop_width, b.desktop_height)
                            != (self.image.width(), self.image.height())
                        {
                            if let Err(e) = check_size(b.desktop_width, b.desktop_height) {
                                return Fed::Skipped(e.to_string());
                            }
                            // Reactivation with a new size (MS-RDPBCGR 1.3.1.3): a new screen.
                            self.image = DecodedImage::new(
                                PixelFormat::BgrX32,
                                b.desktop_width,
                                b.desktop_height,
                            );
                        }
                    }
                }
                self.processor = processor(&self.link);
                Fed::Ok
            }
            ShareControlPdu::Data(d) => {
                if !(d.compression_flags & CompressionFlags::COMPRESSED).is_empty() {
                    return Fed::Skipped("bulk-compressed slow-path data".to_owned());
                }
                match d.share_data_pdu {
                    ShareDataPdu::Update(update) => self.slow_path_update(&update),
                    _ => Fed::Ok,
                }
            }
            _ => Fed::Ok,
        }
    }

    fn slow_path_update(&mut self, data: &[u8]) -> Fed {
        let mut src = ReadCursor::new(data);
        match slow_path::read_graphics_update_type(&mut src) {
            Ok(GraphicsUpdateType::Bitmap) => match slow_path::decode_slow_path_bitmap(&mut src) {
                Ok(bitmap) => match self
                    .processor
                    .process_bitmap_update(&mut self.image, bitmap)
                {
                    Ok(_) => Fed::Ok,
                    Err(e) => Fed::Skipped(format!("slow-path bitmap: {e}")),
                },
                Err(e) => Fed::Skipped(format!("slow-path bitmap: {e}")),
            },
            Ok(GraphicsUpdateType::Palette) => self.slow_path_palette(data),
            Ok(_) => Fed::Ok,
            Err(e) => Fed::Skipped(format!("slow-path update: {e}")),
        }
    }

    /// The fast-path processor keeps the palette; a slow-path palette update (8 bpp sessions)
    /// is handed to it as the equivalent fast-path update (same TS_UPDATE_PALETTE_DATA body).
    fn slow_path_palette(&mut self, data: &[u8]) -> Fed {
        const FASTPATH_UPDATETYPE_PALETTE: u8 = 0x2;
        let Ok(size) = u16::try_from(data.len()) else {
            return Fed::Skipped("palette update too long".to_owned());
        };
        let total = 3 + 3 + data.len();
        let Ok(total16) = u16::try_from(total) else {
            return Fed::Skipped("palette update too long".to_owned());
        };
        let mut frame = Vec::with_capacity(total);
        frame.push(0);
        frame.extend_from_slice(&(total16 | 0x8000).to_be_bytes());
        frame.push(FASTPATH_UPDATETYPE_PALETTE);
        frame.extend_from_slice(&size.to_le_bytes());
        frame.extend_from_slice(data);
        let mut out = WriteBuf::new();
        match self
            .processor
            .process(&mut self.image, &frame, &mut out, &mut None)
        {
            Ok(_) => Fed::Ok,
            Err(e) => Fed::Skipped(format!("palette update: {e}")),
        }
    }

    fn rgba(&self) -> RgbaFrame {
        let mut rgba = self.image.data().to_vec();
        for px in rgba.chunks_exact_mut(4) {
            px.swap(0, 2);
            if let Some(a) = px.get_mut(3) {
                *a = 255;
            }
        }
        RgbaFrame {
            width: self.image.width(),
            height: self.image.height(),
            rgba,
        }
    }

    /// Paints a framebuffer (BGRX rows, top-down) through the processor as uncompressed 32 bpp
    /// bitmap updates: the image type has no public pixel setter, and this keeps the pointer
    /// and region bookkeeping of the decoder consistent.
    fn paint(&mut self, bgrx: &[u8]) -> Result<(), RdpError> {
        let w = self.image.width();
        let h = self.image.height();
        let stride = usize::from(w) * 4;
        if bgrx.len() != stride * usize::from(h) {
            return Err(RdpError::Keyframe);
        }
        let mut top = 0u16;
        while top < h {
            let rows = RESTORE_ROWS.min(h - top);
            let mut data = Vec::with_capacity(stride * usize::from(rows));
            for y in (top..top + rows).rev() {
                let start = usize::from(y) * stride;
                data.extend_from_slice(bgrx.get(start..start + stride).ok_or(RdpError::Keyframe)?);
            }
            let update = BitmapUpdateData {
                rectangles: vec![BitmapData {
                    rectangle: InclusiveRectangle {
                        left: 0,
                        top,
                        right: w - 1,
                        bottom: top + rows - 1,
                    },
                    width: w,
                    height: rows,
                    bits_per_pixel: 32,
                    compression_flags: BitmapCompression::empty(),
                    compressed_data_header: None,
                    bitmap_data: &data,
                }],
            };
            self.processor
                .process_bitmap_update(&mut self.image, update)
                .map_err(|_| RdpError::Keyframe)?;
            top += rows;
        }
        Ok(())
    }
}

/// A framebuffer snapshot to restart decoding from.
#[derive(Debug, Clone)]
struct Keyframe {
    /// Index of the first PDU not yet applied.
    next: usize,
    width: u16,
    height: u16,
    link: LinkState,
    pointer: PointerState,
    /// The BGRX pixels.
    pixels: PackedPixels,
}

/// A decoded RDP recording that can show its screen at any moment.
#[derive(Debug)]
pub struct RdpReplay {
    pdus: Vec<Pdu>,
    negotiated: Negotiated,
    keyframes: Vec<Keyframe>,
    stats: ReplayStats,
    end_us: u64,
    initial: (u16, u16),
    current: Decoder,
    draw_pointer: bool,
}

impl RdpReplay {
    /// Reads an RDP recording, recovers the negotiated state and decodes it once to lay
    /// keyframes for seeking.
    pub fn open(bytes: &[u8]) -> Result<RdpReplay, RdpError> {
        Self::open_with_keyframe_interval(bytes, KEYFRAME_INTERVAL_BYTES)
    }

    /// [`Self::open`] with keyframes every `interval` bytes of server PDUs (tests, benches).
    pub fn open_with_keyframe_interval(
        bytes: &[u8],
        interval: usize,
    ) -> Result<RdpReplay, RdpError> {
        let rec = Recording::parse(bytes)?;
        let header = &rec.header().header;
        if header.protocol != RDP_PROTOCOL {
            return Err(RdpError::NotRdp(header.protocol.clone()));
        }
        let meta_size = |k: &str| header.metadata.get(k).and_then(|v| v.parse::<u16>().ok());
        let mut negotiated = Negotiated::default();
        let mut pdus = Vec::new();
        for r in rec.records() {
            let r = r?;
            if let RecordKind::Data {
                direction, bytes, ..
            } = r.kind
            {
                let from_server = direction == Direction::ServerToClient;
                if !from_server {
                    client_frame(&bytes, &mut negotiated);
                }
                pdus.push(Pdu {
                    at_us: r.at_us,
                    from_server,
                    bytes,
                });
            }
        }
        let end_us = rec.end_us().max(pdus.last().map(|p| p.at_us).unwrap_or(0));
        let initial = negotiated
            .client_desktop
            .or_else(|| meta_size("rdp.desktop-width").zip(meta_size("rdp.desktop-height")))
            .ok_or(RdpError::NoDesktop)?;
        check_size(initial.0, initial.1)?;

        let mut replay = RdpReplay {
            pdus,
            negotiated,
            keyframes: Vec::new(),
            stats: ReplayStats::default(),
            end_us,
            initial,
            current: Decoder::new(initial.0, initial.1, LinkState::default()),
            draw_pointer: false,
        };
        replay.first_pass(interval.max(1))?;
        Ok(replay)
    }

    fn first_pass(&mut self, interval: usize) -> Result<(), RdpError> {
        let mut since = 0usize;
        let mut neg = self.negotiated.clone();
        for i in 0..self.pdus.len() {
            let Some(pdu) = self.pdus.get(i) else { break };
            if !pdu.from_server {
                self.current.pointer.client_input(&pdu.bytes);
                self.current.next = i + 1;
                continue;
            }
            self.stats.server_pdus += 1;
            self.stats.server_bytes += pdu.bytes.len() as u64;
            since += pdu.bytes.len();
            if let Fed::Skipped(why) = self.current.server(&pdu.bytes, &mut neg) {
                self.stats.errors += 1;
                self.stats.first_error.get_or_insert(why);
            }
            self.current.next = i + 1;
            if since >= interval {
                since = 0;
                self.keyframes.push(self.snapshot());
            }
        }
        self.stats.keyframes = self.keyframes.len();
        self.negotiated = neg;
        Ok(())
    }

    fn snapshot(&self) -> Keyframe {
        Keyframe {
            next: self.current.next,
            width: self.current.image.width(),
            height: self.current.image.height(),
            link: self.current.link,
            pointer: self.current.pointer.clone(),
            pixels: PackedPixels::pack(self.current.image.data()),
        }
    }

    fn restore(&mut self, k: &Keyframe) -> Result<(), RdpError> {
        let len = usize::from(k.width) * usize::from(k.height) * 4;
        let pixels = k.pixels.unpack(len).ok_or(RdpError::Keyframe)?;
        let mut d = Decoder::new(k.width, k.height, k.link);
        d.paint(&pixels)?;
        d.pointer = k.pointer.clone();
        d.next = k.next;
        self.current = d;
        Ok(())
    }

    /// Takes in what a live recording gained since this replay read it: `grown` is the whole
    /// recording as it is now (it only ever grows). Returns the PDUs added. What is decoded
    /// stays; the added PDUs are decoded when a frame past them is asked for. A chunk still
    /// being written at the end is left for the next call.
    pub fn follow(&mut self, grown: &[u8]) -> Result<usize, RdpError> {
        let rec = Recording::parse(grown)?;
        let known = self.pdus.len();
        let mut seen = 0usize;
        let mut last = self.end_us;
        for r in rec.records() {
            let Ok(r) = r else { break };
            last = last.max(r.at_us);
            if let RecordKind::Data {
                direction, bytes, ..
            } = r.kind
            {
                seen += 1;
                if seen <= known {
                    continue;
                }
                let from_server = direction == Direction::ServerToClient;
                if !from_server {
                    client_frame(&bytes, &mut self.negotiated);
                }
                self.pdus.push(Pdu {
                    at_us: r.at_us,
                    from_server,
                    bytes,
                });
            }
        }
        self.end_us = rec.end_us().max(last);
        Ok(self.pdus.len() - known)
    }

    /// The connection state recovered from the recording.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// What the first pass met.
    pub fn stats(&self) -> &ReplayStats {
        &self.stats
    }

    /// The end of the recording (µs since its start).
    pub fn end_us(&self) -> u64 {
        self.end_us
    }

    /// Whether [`Self::frame_at`] draws the mouse pointer over the screen (off by default:
    /// the server's own picture of its screen has no pointer, and fidelity checks compare
    /// with it).
    pub fn set_draw_pointer(&mut self, draw: bool) {
        self.draw_pointer = draw;
    }

    /// The pointer's position at the current moment, if the recording showed one.
    pub fn pointer_position(&self) -> Option<(u16, u16)> {
        self.current.pointer.position
    }

    /// The screen once every server PDU recorded at or before `at_us` is applied, with the
    /// pointer drawn if [`Self::set_draw_pointer`] asked for it.
    pub fn frame_at(&mut self, at_us: u64) -> Result<RgbaFrame, RdpError> {
        self.seek(at_us)?;
        let mut frame = self.current.rgba();
        if self.draw_pointer {
            self.current.pointer.draw(&mut frame);
        }
        Ok(frame)
    }

    /// Like [`Self::frame_at`], without copying: `(width, height, BGRX pixels)`.
    pub fn bgrx_at(&mut self, at_us: u64) -> Result<(u16, u16, &[u8]), RdpError> {
        self.seek(at_us)?;
        let img = &self.current.image;
        Ok((img.width(), img.height(), img.data()))
    }

    fn seek(&mut self, at_us: u64) -> Result<(), RdpError> {
        let target = self.pdus.partition_point(|p| p.at_us <= at_us);
        let key = self
            .keyframes
            .iter()
            .rposition(|k| k.next <= target)
            .and_then(|i| self.keyframes.get(i).cloned());
        let behind = self.current.next > target;
        let key_is_closer = key.as_ref().is_some_and(|k| k.next > self.current.next);
        if behind || key_is_closer {
            match key {
                Some(k) => self.restore(&k)?,
                None => {
                    self.current =
                        Decoder::new(self.initial.0, self.initial.1, LinkState::default())
                }
            }
        }
        let mut neg = self.negotiated.clone();
        while self.current.next < target {
            let i = self.current.next;
            if let Some(pdu) = self.pdus.get(i) {
                let bytes = pdu.bytes.clone();
                if pdu.from_server {
                    let _ = self.current.server(&bytes, &mut neg);
                } else {
                    self.current.pointer.client_input(&bytes);
                }
            }
            self.current.next = i + 1;
        }
        Ok(())
    }
}

/// Reads what the player needs from a client frame: the Connect Initial (desktop, depth,
/// channels) and the Client Info (bulk compression).
fn client_frame(frame: &[u8], neg: &mut Negotiated) {
    if neg.client_desktop.is_none()
        && let Some(ci) = decode::<X224<X224Data<'_>>>(frame)
            .ok()
            .and_then(|d| decode::<ConnectInitial>(d.0.data.as_ref()).ok())
    {
        let blocks = ci.conference_create_request.gcc_blocks();
        neg.client_desktop = Some((blocks.core.desktop_width, blocks.core.desktop_height));
        let opt = &blocks.core.optional_data;
        let wants_32 = opt
            .early_capability_flags
            .is_some_and(|f| f.contains(ClientEarlyCapabilityFlags::WANT_32_BPP_SESSION));
        neg.client_color_depth = if wants_32 {
            Some(32)
        } else {
            opt.high_color_depth.map(|d| match d {
                HighColorDepth::Bpp4 => 4,
                HighColorDepth::Bpp8 => 8,
                HighColorDepth::Rgb555Bpp16 => 15,
                HighColorDepth::Rgb565Bpp16 => 16,
                HighColorDepth::Bpp24 => 24,
            })
        };
        neg.channels = blocks
            .network
            .as_ref()
            .map(|n| {
                n.channels
                    .iter()
                    .map(|c| (c.name.as_str().unwrap_or("?").to_owned(), None))
                    .collect()
            })
            .unwrap_or_default();
        return;
    }
    if neg.bulk_compression.is_none()
        && let Ok(X224(McsMessage::SendDataRequest(req))) = decode::<X224<McsMessage<'_>>>(frame)
        && let Ok(info) = decode::<ClientInfoPdu>(req.user_data.as_ref())
    {
        neg.bulk_compression = Some(
            info.client_info
                .flags
                .contains(ClientInfoFlags::COMPRESSION),
        );
    }
}

#[cfg(test)]
mod tests;
