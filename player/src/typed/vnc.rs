//! Typed text of a VNC console recording: the viewer's KeyEvents ([RFC 6143 §7.5.4]) and
//! QEMU's extended key events, by X keysym (the viewer has already applied Shift, CapsLock
//! and its keyboard layout, so the keysym is the character).
//!
//! Logon screens: RFB carries no signal that the guest has logged someone on, so the rule is
//! about the screen. A line is indexed only if the screen visibly changed while it was typed:
//! between its first key and the key that ended it, the decoded picture changed over more than
//! one character cell ([`MAX_UNCHANGED_SPAN`]; a blinking cursor changes one). A password at
//! a prompt that does not echo (a text console's `login:`/`Password:`, `sudo`, `su`, `ssh`)
//! changes nothing and is left out; so is anything typed where the screen does not react.
//! A graphical logon screen that draws a dot per character does change, and is not
//! recognised: docs/typed-text-search.md says so.
//!
//! [RFC 6143 §7.5.4]: https://www.rfc-editor.org/rfc/rfc6143#section-7.5.4

use recorder::format::{Direction, RecordKind};
use recorder::reader::Recording;

use super::{EndedLine, Key, LineBuilder, TypedError, TypedLine};
use crate::rfb::{self, ClientMsg, Replay};

/// The recording header's protocol for VNC console sessions.
pub const VNC_PROTOCOL: &str = "console-vnc";
/// Changes to the screen at most this many pixels wide do not count as the screen reacting
/// to typing: a character cell (8 or 9 pixels on text consoles, 6 to 12 in X terminals) with
/// room to spare, so a cursor blinking in place does not make a password look echoed. Typed
/// text that is echoed spreads sideways: two characters and the cursor moving already span
/// more than this.
pub const MAX_UNCHANGED_SPAN: usize = 16;
/// Changes at most this many pixels high, unless wider than [`MAX_UNCHANGED_SPAN`], do not
/// count either: a tall text cursor (large fonts) blinks over a few lines' height; an echoed
/// line that wraps or scrolls moves more.
pub const MAX_UNCHANGED_HEIGHT: usize = 64;
/// Client bytes buffered for one message at most: a KeyEvent is 8 bytes and the largest
/// message (ClientCutText) is capped by the RFB decoder; more means the stream is lost.
const MAX_CLIENT_BUF: usize = 1 << 20;

/// Typed text of a VNC console recording.
pub fn typed_text(rec: &Recording<'_>) -> Result<Vec<TypedLine>, TypedError> {
    let header = &rec.header().header;
    if header.protocol != VNC_PROTOCOL {
        return Err(TypedError::NotGraphical(header.protocol.clone()));
    }
    let mut init = header
        .metadata
        .get("rfb.server_init")
        .and_then(|h| unhex(h))
        .and_then(|raw| rfb::decode_server_init(&raw).ok().flatten())
        .map(|(si, _)| si);
    if !any_key_pressed(rec)? {
        return Ok(Vec::new());
    }
    let mut keys = VncKeys::default();
    // `None`: no screen to tell what changed (no ServerInit, or undecodable updates); then
    // no line can be shown to have changed it, and none is indexed.
    let mut screen: Option<Replay> = None;
    let mut started = false;
    for r in rec.records() {
        let r = r?;
        match r.kind {
            RecordKind::Keyframe { bytes, .. } if init.is_none() => {
                init = rfb::decode_server_init(&bytes)
                    .ok()
                    .flatten()
                    .map(|(si, _)| si);
            }
            RecordKind::Data {
                direction, bytes, ..
            } => {
                if !started {
                    started = true;
                    screen = init.as_ref().and_then(|si| Replay::new(si).ok());
                }
                match direction {
                    Direction::ServerToClient => {
                        if let Some(s) = screen.as_mut()
                            && s.server_bytes(&bytes).is_err()
                        {
                            screen = None;
                        }
                    }
                    Direction::ClientToServer => {
                        if let Some(s) = screen.as_mut()
                            && s.client_bytes(&bytes).is_err()
                        {
                            screen = None;
                        }
                        keys.client_bytes(r.at_us, &bytes, screen.as_ref());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(keys.finish(screen.as_ref()))
}

/// Whether the viewer pressed a key that could be typed text. Many console sessions are
/// watched, not typed into (a boot, a hung guest); judging lines needs every screen update
/// decoded, which for a session of raw full screens costs more than the session did, so it
/// is done only when there is something to judge. A client stream that cannot be followed
/// counts as pressed: the full pass decides.
fn any_key_pressed(rec: &Recording<'_>) -> Result<bool, TypedError> {
    let mut buf = Vec::new();
    for r in rec.records() {
        let RecordKind::Data {
            direction: Direction::ClientToServer,
            bytes,
            ..
        } = r?.kind
        else {
            continue;
        };
        buf.extend_from_slice(&bytes);
        let mut pos = 0;
        loop {
            match rfb::decode_client(buf.get(pos..).unwrap_or_default()) {
                Ok(Some((msg, n))) => {
                    pos += n;
                    let pressed = match msg {
                        ClientMsg::KeyEvent { down, key } => down.then_some(key),
                        ClientMsg::QemuKeyEvent { down, keysym, .. } => down.then_some(keysym),
                        _ => None,
                    };
                    if pressed.and_then(key_of).is_some() {
                        return Ok(true);
                    }
                }
                Ok(None) => break,
                Err(_) => return Ok(true),
            }
        }
        buf.drain(..pos.min(buf.len()));
        if buf.len() > MAX_CLIENT_BUF {
            return Ok(true);
        }
    }
    Ok(false)
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

/// The screen when a line's first key was pressed: its size and RGBA pixels.
#[derive(Debug)]
struct Before {
    width: u16,
    height: u16,
    rgba: Vec<u8>,
}

/// The keyboard state of one VNC session.
#[derive(Debug, Default)]
struct VncKeys {
    buf: Vec<u8>,
    /// The stream of client messages could not be followed: nothing more is read.
    lost: bool,
    ctrl: u8,
    alt: u8,
    lines: LineBuilder,
    before: Option<Before>,
}

impl VncKeys {
    fn client_bytes(&mut self, at_us: u64, bytes: &[u8], screen: Option<&Replay>) {
        if self.lost {
            return;
        }
        self.buf.extend_from_slice(bytes);
        let mut pos = 0;
        loop {
            match rfb::decode_client(self.buf.get(pos..).unwrap_or_default()) {
                Ok(Some((msg, n))) => {
                    pos += n;
                    match msg {
                        ClientMsg::KeyEvent { down, key } => self.keysym(at_us, down, key, screen),
                        ClientMsg::QemuKeyEvent { down, keysym, .. } => {
                            self.keysym(at_us, down, keysym, screen)
                        }
                        _ => {}
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    self.lost = true;
                    break;
                }
            }
        }
        self.buf.drain(..pos.min(self.buf.len()));
        if self.buf.len() > MAX_CLIENT_BUF {
            self.lost = true;
            self.buf = Vec::new();
        }
    }

    fn keysym(&mut self, at_us: u64, down: bool, keysym: u32, screen: Option<&Replay>) {
        let count = |c: &mut u8| {
            *c = if down {
                c.saturating_add(1)
            } else {
                c.saturating_sub(1)
            }
        };
        match keysym {
            // Control_L/R.
            0xFFE3 | 0xFFE4 => return count(&mut self.ctrl),
            // Meta_L/R, Alt_L/R, Super_L/R: shortcuts.
            0xFFE7..=0xFFEC => return count(&mut self.alt),
            _ => {}
        }
        if !down {
            return;
        }
        let Some(key) = key_of(keysym) else { return };
        if matches!(key, Key::Char(_)) && (self.ctrl > 0 || self.alt > 0) {
            return;
        }
        if self.lines.pending_since().is_none() && matches!(key, Key::Char(_) | Key::Tab) {
            self.before = screen.map(|s| {
                let fb = s.framebuffer();
                Before {
                    width: fb.width(),
                    height: fb.height(),
                    rgba: fb.rgba().to_vec(),
                }
            });
        }
        if let Some(ended) = self.lines.key(at_us, key) {
            self.judge(ended, screen);
        }
    }

    /// Keeps `ended` only if the screen changed while it was typed.
    fn judge(&mut self, ended: EndedLine, screen: Option<&Replay>) {
        let before = self.before.take();
        if let (Some(before), Some(now)) = (before, screen)
            && changed(&before, now)
        {
            self.lines.keep(ended);
        }
    }

    fn finish(mut self, screen: Option<&Replay>) -> Vec<TypedLine> {
        if let Some(ended) = self.lines.flush() {
            self.judge(ended, screen);
        }
        self.lines.into_lines()
    }
}

/// Whether the screen changed over more than one character cell since `before`.
fn changed(before: &Before, now: &Replay) -> bool {
    let fb = now.framebuffer();
    if (fb.width(), fb.height()) != (before.width, before.height) {
        return true;
    }
    let width = usize::from(fb.width()).max(1);
    let (mut x0, mut y0, mut x1, mut y1) = (usize::MAX, usize::MAX, 0, 0);
    for (i, (a, b)) in before
        .rgba
        .chunks_exact(4)
        .zip(fb.rgba().chunks_exact(4))
        .enumerate()
    {
        if a != b {
            let (x, y) = (i % width, i / width);
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
    }
    x0 != usize::MAX && (x1 - x0 + 1 > MAX_UNCHANGED_SPAN || y1 - y0 + 1 > MAX_UNCHANGED_HEIGHT)
}

/// The key an X keysym types (X11 `keysymdef.h`).
pub fn key_of(keysym: u32) -> Option<Key> {
    Some(match keysym {
        0xFF0D | 0xFF8D => Key::Enter,
        0xFF09 | 0xFE20 => Key::Tab,
        0xFF08 => Key::Backspace,
        0xFF80 => Key::Char(' '),
        0xFFAA => Key::Char('*'),
        0xFFAB => Key::Char('+'),
        0xFFAC => Key::Char(','),
        0xFFAD => Key::Char('-'),
        0xFFAE => Key::Char('.'),
        0xFFAF => Key::Char('/'),
        0xFFBD => Key::Char('='),
        0xFFB0..=0xFFB9 => Key::Char(char::from_digit(keysym - 0xFFB0, 10)?),
        // Latin-1 keysyms are their code points.
        0x20..=0x7E | 0xA0..=0xFF => Key::Char(char::from_u32(keysym)?),
        // Half-width katakana (JIS X 0201), kana_fullstop to semivoicedsound.
        0x04A1..=0x04DF => Key::Char(char::from_u32(0xFF61 + (keysym - 0x04A1))?),
        // Unicode keysyms.
        0x0100_0100..=0x0110_FFFF => Key::Char(char::from_u32(keysym - 0x0100_0000)?),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use recorder::format::Header;

    use super::*;
    use crate::rfb::{Encoding, PixelFormat, ServerInit, encode_rect_header, encode_update_header};
    use crate::typed::test_recording::{Frame, of_frames};

    const W: u16 = 64;
    const H: u16 = 32;

    fn server_init() -> Vec<u8> {
        let mut out = Vec::new();
        rfb::encode_server_init(
            &ServerInit {
                width: W,
                height: H,
                pixel_format: PixelFormat::RGB888_LE,
                name: "test".into(),
            },
            &mut out,
        )
        .unwrap();
        out
    }

    /// A raw update painting a `w`×`h` white rectangle at (x, y).
    fn paint(x: u16, y: u16, w: u16, h: u16) -> Vec<u8> {
        paint_with(x, y, w, h, 0xFF)
    }

    fn paint_with(x: u16, y: u16, w: u16, h: u16, v: u8) -> Vec<u8> {
        let mut out = Vec::new();
        encode_update_header(1, &mut out);
        encode_rect_header(x, y, w, h, Encoding::Raw, &mut out);
        out.extend(std::iter::repeat_n(v, usize::from(w) * usize::from(h) * 4));
        out
    }

    fn key(down: bool, keysym: u32) -> Vec<u8> {
        let mut out = vec![4, u8::from(down), 0, 0];
        out.extend_from_slice(&keysym.to_be_bytes());
        out
    }

    fn typed(s: &str) -> Vec<u8> {
        s.chars()
            .flat_map(|c| {
                let k = match c {
                    '\n' => 0xFF0D,
                    '\u{8}' => 0xFF08,
                    c => u32::from(c),
                };
                [key(true, k), key(false, k)].concat()
            })
            .collect()
    }

    /// A recording of (time, from the server, bytes) frames whose header holds the
    /// ServerInit.
    fn recording_of(frames: &[Frame]) -> Vec<u8> {
        let hex: String = server_init().iter().map(|b| format!("{b:02x}")).collect();
        let header: Header = serde_json::from_value(serde_json::json!({
            "session_id": "01936f5e-0000-7000-8000-000000000043",
            "protocol": "console-vnc",
            "user": "tanaka",
            "contractor": "acme",
            "source": "127.0.10.11",
            "target": "web01",
            "start_unix_us": 1_764_061_200_000_000i64,
            "metadata": { "rfb.server_init": hex },
        }))
        .unwrap();
        of_frames(&header, frames)
    }

    /// (time, from the server, bytes)
    fn lines_of(frames: &[Frame]) -> Vec<(u64, String)> {
        crate::typed::typed_text(&recording_of(frames))
            .unwrap()
            .into_iter()
            .map(|l| (l.at_us, l.text))
            .collect()
    }

    #[test]
    fn a_line_that_changed_nothing_on_screen_is_not_indexed() {
        let lines = lines_of(&[
            (1, true, paint_with(0, 0, W, H, 0x20)),
            // "login:" prompt answered, echoed.
            (10, false, typed("root")),
            (11, true, paint(0, 0, 30, 8)),
            (12, false, typed("\n")),
            // "Password:" typed with no echo; only the cursor blinks in one cell.
            (20, false, typed("hunter2")),
            (21, true, paint(40, 0, 8, 16)),
            (21, true, paint(50, 0, 2, 30)),
            (22, false, typed("\n")),
            // A shell command, echoed.
            (30, false, typed("uname -a")),
            (31, true, paint(0, 16, 40, 8)),
            (32, false, typed("\n")),
        ]);
        assert_eq!(lines, vec![(10, "root".into()), (30, "uname -a".into())]);
    }

    #[test]
    fn keysyms_are_characters_and_shortcuts_are_not() {
        let lines = lines_of(&[
            (10, false, typed("Ab\u{8}c")),
            (11, false, key(true, 0xFFE3)),
            (11, false, typed("c")),
            (11, false, key(false, 0xFFE3)),
            (12, false, key(true, 0x0100_65E5)),
            (12, false, key(true, 0x04B1)),
            (13, true, paint(0, 0, W, H)),
            (14, false, typed("\n")),
            // The last line, ended by the session's end, with no change: dropped.
            (20, false, typed("secret")),
        ]);
        assert_eq!(lines, vec![(10, "Ac日ｱ".into())]);
        assert_eq!(key_of(0xFFB7), Some(Key::Char('7')));
        assert_eq!(key_of(0xFFE1), None);
    }

    #[test]
    fn a_session_without_key_presses_is_not_replayed() {
        // Screens and the pointer only, then a stream the screen decoder would choke on:
        // without a key pressed there is nothing to judge, so the screens are not decoded.
        let pointer = vec![5, 0, 0, 10, 0, 10];
        let mut frames = vec![(1, true, paint_with(0, 0, W, H, 0x20)), (2, false, pointer)];
        frames.push((3, false, [key(false, u32::from('a'))].concat()));
        frames.push((4, true, vec![9, 9, 9]));
        assert!(lines_of(&frames).is_empty());
        assert!(
            !any_key_pressed_in(&frames),
            "a release alone is not a key pressed"
        );
        frames.push((5, false, typed("x")));
        assert!(any_key_pressed_in(&frames));
    }

    fn any_key_pressed_in(frames: &[Frame]) -> bool {
        let bytes = recording_of(frames);
        any_key_pressed(&Recording::parse(&bytes).unwrap()).unwrap()
    }

    #[test]
    fn without_a_decodable_screen_nothing_is_indexed() {
        let lines = lines_of(&[
            (10, false, typed("ls")),
            // Not a valid server message: the screen is lost.
            (11, true, vec![9, 9, 9]),
            (12, false, typed("\n")),
        ]);
        assert!(lines.is_empty());
    }
}
