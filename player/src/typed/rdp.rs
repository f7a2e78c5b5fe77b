//! Typed text of an RDP recording: the client's keyboard input events ([MS-RDPBCGR 2.2.8.1.1.3]
//! slow-path, [MS-RDPBCGR 2.2.8.1.2.2] fast-path), scan codes through the session's keyboard
//! layout and Unicode events as they are.
//!
//! Logon screens: a line is indexed only if its first key was pressed after the server's logon
//! notification, the Save Session Info PDU ([MS-RDPBCGR 2.2.10.1], share data `pduType2`
//! 0x26) of a logon type. Until a server sends one, the desktop may be a logon screen (Windows'
//! own, xrdp's login dialog) and what is typed may be a password.
//!
//! A server that never sends it has nothing of its session indexed, unless Sekisho's leg to it
//! negotiated NLA (`rdp.server_selected_protocol` HYBRID or HYBRID_EX): that server
//! authenticated the user before the session existed, so a logon screen without a logon
//! notification cannot follow (freerdp-shadow-cli shares a desktop that is already logged on).
//! A server that asks again after NLA (Windows' "always prompt for password") sends the
//! notification once that logon ends: what was typed before it is dropped then, so the
//! recording is read whole before anything is indexed.
//!
//! [MS-RDPBCGR 2.2.8.1.1.3]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpbcgr/5186005a-36f5-4f5d-8c06-968f28e2d992
//! [MS-RDPBCGR 2.2.8.1.2.2]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpbcgr/a1c4caa8-00ed-45bb-a06e-5177473766d3
//! [MS-RDPBCGR 2.2.10.1]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpbcgr/6d3e8bd9-1c65-4eb8-9e3c-5d2a4d9d2ab2

use ironrdp_core::decode;
use ironrdp_pdu::input::InputEvent;
use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent, KeyboardFlags};
use ironrdp_pdu::mcs::{ConnectInitial, ConnectResponse, McsMessage};
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu, ShareDataPdu};
use ironrdp_pdu::x224::{X224, X224Data};
use recorder::format::{Direction, RecordKind};
use recorder::reader::Recording;

use super::layout::{Layout, keypad_char};
use super::{Key, LineBuilder, TypedError, TypedLine};

/// The header metadata key naming the client's keyboard layout (hex input locale, e.g.
/// `0x411`), written by the proxy from the Client Core Data.
pub const KEYBOARD_LAYOUT_KEY: &str = "rdp.keyboard-layout";
/// The MCS I/O channel when no Connect Response was recorded (the one Sekisho's contractor leg
/// always gives, `rdp.io_channel_default`).
const DEFAULT_IO_CHANNEL: u16 = 1003;
/// Share Data `pduType2` of the Save Session Info PDU.
const PDUTYPE2_SAVE_SESSION_INFO: u8 = 0x26;
/// The header metadata key with the security protocol Sekisho's leg to the server negotiated
/// (hex `RequestedProtocols` bits), written by the proxy.
pub const SERVER_PROTOCOL_KEY: &str = "rdp.server_selected_protocol";
/// `PROTOCOL_HYBRID` (CredSSP, NLA) of [MS-RDPBCGR 2.2.1.1.1].
const PROTOCOL_HYBRID: u32 = 0x2;
/// `PROTOCOL_HYBRID_EX` (NLA with the Early User Authorization Result PDU).
const PROTOCOL_HYBRID_EX: u32 = 0x8;
/// Share Control `pduType` of a Data PDU (low 4 bits).
const PDUTYPE_DATA: u16 = 0x7;

/// Typed text of an RDP recording.
pub fn typed_text(rec: &Recording<'_>) -> Result<Vec<TypedLine>, TypedError> {
    let header = &rec.header().header;
    if header.protocol != crate::rdp::RDP_PROTOCOL {
        return Err(TypedError::NotGraphical(header.protocol.clone()));
    }
    let layout = header
        .metadata
        .get(KEYBOARD_LAYOUT_KEY)
        .and_then(|v| parse_number(v))
        .map(Layout::from_locale);
    let nla = header
        .metadata
        .get(SERVER_PROTOCOL_KEY)
        .and_then(|v| parse_number(v))
        .is_some_and(|p| p & (PROTOCOL_HYBRID | PROTOCOL_HYBRID_EX) != 0);
    let mut keys = RdpKeys::new(layout).authenticated_by_nla(nla);
    for r in rec.records() {
        let r = r?;
        if let RecordKind::Data {
            direction, bytes, ..
        } = r.kind
        {
            match direction {
                Direction::ClientToServer => keys.client_frame(r.at_us, &bytes),
                Direction::ServerToClient => keys.server_frame(&bytes),
            }
        }
    }
    Ok(keys.finish())
}

fn parse_number(v: &str) -> Option<u32> {
    let v = v.trim();
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// The keyboard state of one RDP session, fed its frames in recording order.
#[derive(Debug)]
pub struct RdpKeys {
    /// From the header; else from the recorded Connect Initial; else US.
    layout: Option<Layout>,
    io_channel: Option<u16>,
    /// Whether the server has said the user is logged on.
    logged_on: bool,
    /// Whether the server authenticated the user (NLA) before the session: lines are kept
    /// provisionally until a logon notification, which drops them, or the end.
    nla: bool,
    shift_left: bool,
    shift_right: bool,
    ctrl: bool,
    alt: bool,
    caps: bool,
    num: bool,
    /// Scan codes held down (index: code + 256 if extended), so a held key's repeats do not
    /// toggle CapsLock again.
    held: Vec<bool>,
    /// A Unicode high surrogate waiting for its low half.
    high_surrogate: Option<u16>,
    lines: LineBuilder,
}

impl RdpKeys {
    /// A session whose layout is `layout` if the header names one.
    pub fn new(layout: Option<Layout>) -> RdpKeys {
        RdpKeys {
            layout,
            io_channel: None,
            logged_on: false,
            nla: false,
            shift_left: false,
            shift_right: false,
            ctrl: false,
            alt: false,
            caps: false,
            num: false,
            held: vec![false; 512],
            high_surrogate: None,
            lines: LineBuilder::default(),
        }
    }

    /// Whether the server leg negotiated NLA (see the module docs).
    pub fn authenticated_by_nla(mut self, nla: bool) -> RdpKeys {
        self.nla = nla;
        self
    }

    /// The lines indexed.
    pub fn finish(mut self) -> Vec<TypedLine> {
        if let Some(ended) = self.lines.flush() {
            self.lines.keep(ended);
        }
        self.lines.into_lines()
    }

    /// A server frame: the Connect Response (the I/O channel) and the logon notification.
    pub fn server_frame(&mut self, frame: &[u8]) {
        // Fast-path output is screen and pointer updates only.
        if frame.first().is_none_or(|b| b & 3 != 3) {
            return;
        }
        if self.io_channel.is_none()
            && let Some(resp) = decode::<X224<X224Data<'_>>>(frame)
                .ok()
                .and_then(|d| decode::<ConnectResponse>(d.0.data.as_ref()).ok())
        {
            self.io_channel = Some(
                resp.conference_create_response
                    .gcc_blocks()
                    .network
                    .io_channel,
            );
            return;
        }
        let Ok(X224(McsMessage::SendDataIndication(ind))) = decode::<X224<McsMessage<'_>>>(frame)
        else {
            return;
        };
        if ind.channel_id == self.io_channel.unwrap_or(DEFAULT_IO_CHANNEL)
            && is_logon_notification(&ind.user_data)
            && !self.logged_on
        {
            self.logged_on = true;
            // A line begun on the logon screen may hold the password: never indexed; after
            // NLA, neither are the lines kept provisionally (a logon screen came after all).
            self.lines.discard();
            if self.nla {
                self.lines.forget_kept();
            }
        }
    }

    /// A client frame: fast-path input, or a slow-path PDU (Connect Initial, Input PDU).
    pub fn client_frame(&mut self, at_us: u64, frame: &[u8]) {
        let Some(first) = frame.first() else { return };
        if first & 3 == 0 {
            let Ok(input) = decode::<FastPathInput>(frame) else {
                return;
            };
            for ev in input.input_events() {
                match *ev {
                    FastPathInputEvent::KeyboardEvent(flags, code) => self.scancode(
                        at_us,
                        code,
                        flags.contains(KeyboardFlags::EXTENDED),
                        flags.contains(KeyboardFlags::RELEASE),
                    ),
                    FastPathInputEvent::UnicodeKeyboardEvent(flags, unit) => {
                        self.unicode(at_us, unit, flags.contains(KeyboardFlags::RELEASE))
                    }
                    FastPathInputEvent::SyncEvent(flags) => {
                        use ironrdp_pdu::input::fast_path::SynchronizeFlags as S;
                        self.caps = flags.contains(S::CAPS_LOCK);
                        self.num = flags.contains(S::NUM_LOCK);
                        // A sync follows focus changes: every key is up again.
                        self.release_all();
                    }
                    _ => {}
                }
            }
            return;
        }
        if self.layout.is_none()
            && let Some(ci) = decode::<X224<X224Data<'_>>>(frame)
                .ok()
                .and_then(|d| decode::<ConnectInitial>(d.0.data.as_ref()).ok())
        {
            let core = &ci.conference_create_request.gcc_blocks().core;
            self.layout = Some(Layout::from_locale(core.keyboard_layout));
            return;
        }
        let Ok(X224(McsMessage::SendDataRequest(req))) = decode::<X224<McsMessage<'_>>>(frame)
        else {
            return;
        };
        if req.channel_id != self.io_channel.unwrap_or(DEFAULT_IO_CHANNEL) {
            return;
        }
        let Ok(header) = decode::<ShareControlHeader>(req.user_data.as_ref()) else {
            return;
        };
        let ShareControlPdu::Data(d) = header.share_control_pdu else {
            return;
        };
        let ShareDataPdu::Input(pdu) = d.share_data_pdu else {
            return;
        };
        for ev in &pdu.0 {
            match ev {
                InputEvent::ScanCode(s) => {
                    use ironrdp_pdu::input::scan_code::KeyboardFlags as F;
                    // Slow-path scan codes are 16 bits; set-1 codes fit in the low byte.
                    let Ok(code) = u8::try_from(s.key_code) else {
                        continue;
                    };
                    self.scancode(
                        at_us,
                        code,
                        s.flags.contains(F::EXTENDED),
                        s.flags.contains(F::RELEASE),
                    );
                }
                InputEvent::Unicode(u) => {
                    use ironrdp_pdu::input::unicode::KeyboardFlags as F;
                    self.unicode(at_us, u.unicode_code, u.flags.contains(F::RELEASE));
                }
                InputEvent::Sync(s) => {
                    use ironrdp_pdu::input::sync::SyncToggleFlags as S;
                    self.caps = s.flags.contains(S::CAPS_LOCK);
                    self.num = s.flags.contains(S::NUM_LOCK);
                    self.release_all();
                }
                _ => {}
            }
        }
    }

    fn release_all(&mut self) {
        self.held.iter_mut().for_each(|h| *h = false);
        self.shift_left = false;
        self.shift_right = false;
        self.ctrl = false;
        self.alt = false;
    }

    fn scancode(&mut self, at_us: u64, code: u8, extended: bool, release: bool) {
        let slot = usize::from(code) + if extended { 256 } else { 0 };
        let was_down = self.held.get(slot).copied().unwrap_or(false);
        if let Some(h) = self.held.get_mut(slot) {
            *h = !release;
        }
        let down = !release;
        match (code, extended) {
            (0x2A, false) => self.shift_left = down,
            (0x36, false) => self.shift_right = down,
            (0x1D, _) => self.ctrl = down,
            (0x38, _) => self.alt = down,
            _ => {}
        }
        if release {
            return;
        }
        let layout = self.layout.unwrap_or(Layout::Us);
        let shift = self.shift_left || self.shift_right;
        let key = match (code, extended) {
            (0x3A, false) => {
                if !was_down && (shift || !layout.caps_needs_shift()) {
                    self.caps = !self.caps;
                }
                None
            }
            (0x45, false) => {
                if !was_down {
                    self.num = !self.num;
                }
                None
            }
            (0x1C, _) => Some(Key::Enter),
            (0x0F, false) => Some(Key::Tab),
            (0x0E, false) => Some(Key::Backspace),
            // Ctrl or Alt held: a shortcut, not text (AltGr is Ctrl+Alt on Windows; the US and
            // Japanese keyboards type nothing with it).
            _ if self.ctrl || self.alt => None,
            (c, true) => {
                if self.num || c == 0x35 {
                    keypad_char(c, true).map(Key::Char)
                } else {
                    None
                }
            }
            (c @ (0x37 | 0x47..=0x53), false) => {
                if self.num || c == 0x37 || c == 0x4A || c == 0x4E {
                    keypad_char(c, false).map(Key::Char)
                } else {
                    None
                }
            }
            (c, false) => layout
                .char_of(c, shift)
                .map(|ch| Key::Char(apply_caps(ch, self.caps))),
        };
        if let Some(key) = key {
            self.key(at_us, key);
        }
    }

    fn unicode(&mut self, at_us: u64, unit: u16, release: bool) {
        if release {
            return;
        }
        let ch = if (0xD800..0xDC00).contains(&unit) {
            self.high_surrogate = Some(unit);
            return;
        } else if (0xDC00..0xE000).contains(&unit) {
            let Some(high) = self.high_surrogate.take() else {
                return;
            };
            char::decode_utf16([high, unit]).next().and_then(Result::ok)
        } else {
            char::from_u32(u32::from(unit))
        };
        self.high_surrogate = None;
        let key = match ch {
            Some('\r' | '\n') => Key::Enter,
            Some('\t') => Key::Tab,
            Some('\u{8}') => Key::Backspace,
            Some(c) => Key::Char(c),
            None => return,
        };
        self.key(at_us, key);
    }

    fn key(&mut self, at_us: u64, key: Key) {
        if !self.logged_on && !self.nla {
            // The logon screen: typed there, never indexed.
            return;
        }
        if let Some(ended) = self.lines.key(at_us, key) {
            self.lines.keep(ended);
        }
    }
}

/// CapsLock inverts the case of letters only.
fn apply_caps(ch: char, caps: bool) -> char {
    if !caps || !ch.is_ascii_alphabetic() {
        return ch;
    }
    if ch.is_ascii_lowercase() {
        ch.to_ascii_uppercase()
    } else {
        ch.to_ascii_lowercase()
    }
}

/// Whether I/O channel data is a Save Session Info PDU saying the user is logged on.
///
/// Read by hand rather than through `ShareDataPdu`'s decoder: a logon notification must be
/// recognised even where the decoder rejects a detail of its body. Layout: Share Control
/// Header (totalLength u16, pduType u16, pduSource u16), Share Data Header (shareId u32, pad
/// u8, streamId u8, uncompressedLength u16, pduType2 u8, compressedType u8,
/// compressedLength u16), then infoType u32. Logon types are INFOTYPE_LOGON (0),
/// INFOTYPE_LOGON_LONG (1) and INFOTYPE_LOGON_PLAINNOTIFY (2); INFOTYPE_LOGON_EXTENDED_INFO
/// (3) counts only when it carries an auto-reconnect cookie (given after a logon) and no
/// logon errors (which a logon screen reports).
fn is_logon_notification(data: &[u8]) -> bool {
    let u16_at = |i: usize| {
        data.get(i..i + 2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    };
    let u32_at = |i: usize| {
        data.get(i..i + 4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    };
    if u16_at(2).map(|t| t & 0xF) != Some(PDUTYPE_DATA)
        || data.get(14).copied() != Some(PDUTYPE2_SAVE_SESSION_INFO)
        // Bulk-compressed (Sekisho clears compression; a compressed body cannot be read).
        || data.get(15).is_some_and(|c| c & 0x20 != 0)
    {
        return false;
    }
    match u32_at(18) {
        Some(0..=2) => true,
        Some(3) => {
            // Logon Info Extended: Length u16, FieldsPresent u32.
            let fields = u32_at(24).unwrap_or(0);
            const AUTORECONNECT_COOKIE: u32 = 0x1;
            const LOGON_ERRORS: u32 = 0x2;
            fields & AUTORECONNECT_COOKIE != 0 && fields & LOGON_ERRORS == 0
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
