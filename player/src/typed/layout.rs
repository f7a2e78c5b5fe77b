//! Keyboard layouts: scan code (set 1, as RDP sends them) to character, with and without
//! Shift. The layout is the RDP Client Core Data's `keyboardLayout` (an input locale
//! identifier, [MS-RDPBCGR 2.2.1.3.2]); US English (0x409) and Japanese (0x411) are known,
//! anything else is read as US (most layouts agree with it on letters and digits).
//!
//! [MS-RDPBCGR 2.2.1.3.2]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpbcgr/00f1da4a-ee9c-421a-852f-c19f92343d73

/// US English (input locale 0x409).
pub const LAYOUT_US: u32 = 0x409;
/// Japanese (input locale 0x411, the 106/109-key keyboard).
pub const LAYOUT_JA: u32 = 0x411;

/// A keyboard layout the decoder knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// US English.
    Us,
    /// Japanese 106/109.
    Japanese,
}

impl Layout {
    /// The layout of an input locale identifier: its low word is the language (a
    /// `keyboardLayout` of 0xE0010411 is a Japanese IME over the Japanese keyboard).
    pub fn from_locale(id: u32) -> Layout {
        if id & 0xFFFF == LAYOUT_JA & 0xFFFF {
            Layout::Japanese
        } else {
            Layout::Us
        }
    }

    /// Whether CapsLock needs Shift (the Japanese keyboard's 英数 key is CapsLock only with
    /// Shift).
    pub fn caps_needs_shift(self) -> bool {
        self == Layout::Japanese
    }

    /// The character of a non-extended scan code, unshifted and shifted; `None` for keys
    /// without one (modifiers, function keys, IME keys).
    pub fn char_of(self, scancode: u8, shift: bool) -> Option<char> {
        let (plain, shifted) = match self {
            Layout::Us => us(scancode)?,
            Layout::Japanese => match japanese(scancode) {
                Some(differs) => differs?,
                None => us(scancode)?,
            },
        };
        if shift { shifted } else { Some(plain) }
    }
}

/// US keys: (unshifted, shifted). Letters are lower case here; CapsLock is applied by the
/// caller.
fn us(sc: u8) -> Option<(char, Option<char>)> {
    let pair = |a: char, b: char| Some((a, Some(b)));
    match sc {
        0x02 => pair('1', '!'),
        0x03 => pair('2', '@'),
        0x04 => pair('3', '#'),
        0x05 => pair('4', '$'),
        0x06 => pair('5', '%'),
        0x07 => pair('6', '^'),
        0x08 => pair('7', '&'),
        0x09 => pair('8', '*'),
        0x0A => pair('9', '('),
        0x0B => pair('0', ')'),
        0x0C => pair('-', '_'),
        0x0D => pair('=', '+'),
        0x1A => pair('[', '{'),
        0x1B => pair(']', '}'),
        0x27 => pair(';', ':'),
        0x28 => pair('\'', '"'),
        0x29 => pair('`', '~'),
        0x2B => pair('\\', '|'),
        0x33 => pair(',', '<'),
        0x34 => pair('.', '>'),
        0x35 => pair('/', '?'),
        0x39 => pair(' ', ' '),
        _ => letter(sc).map(|c| (c, Some(c.to_ascii_uppercase()))),
    }
}

/// Keys where the Japanese 106/109 keyboard differs from US. The yen key (0x7D) and the ro
/// key (0x73) type a backslash (U+005C), which Japanese fonts draw as ¥. `None`: as on the
/// US keyboard; `Some(None)`: no character on this one.
#[allow(clippy::option_option)]
fn japanese(sc: u8) -> Option<Option<(char, Option<char>)>> {
    let pair = |a: char, b: char| Some(Some((a, Some(b))));
    match sc {
        0x03 => pair('2', '"'),
        0x07 => pair('6', '&'),
        0x08 => pair('7', '\''),
        0x09 => pair('8', '('),
        0x0A => pair('9', ')'),
        // Shift+0 types nothing on the Japanese keyboard.
        0x0B => Some(Some(('0', None))),
        0x0C => pair('-', '='),
        0x0D => pair('^', '~'),
        0x7D => pair('\\', '|'),
        0x1A => pair('@', '`'),
        0x1B => pair('[', '{'),
        0x27 => pair(';', '+'),
        0x28 => pair(':', '*'),
        0x2B => pair(']', '}'),
        0x73 => pair('\\', '_'),
        // 半角/全角 (IME on/off): no character.
        0x29 => Some(None),
        _ => None,
    }
}

fn letter(sc: u8) -> Option<char> {
    const ROWS: [(u8, &str); 3] = [(0x10, "qwertyuiop"), (0x1E, "asdfghjkl"), (0x2C, "zxcvbnm")];
    ROWS.iter().find_map(|(first, row)| {
        sc.checked_sub(*first)
            .and_then(|i| row.chars().nth(usize::from(i)))
    })
}

/// The character of a keypad key while NumLock is on (non-extended scan codes, and the
/// extended `/`).
pub fn keypad_char(scancode: u8, extended: bool) -> Option<char> {
    if extended {
        return (scancode == 0x35).then_some('/');
    }
    Some(match scancode {
        0x37 => '*',
        0x47 => '7',
        0x48 => '8',
        0x49 => '9',
        0x4A => '-',
        0x4B => '4',
        0x4C => '5',
        0x4D => '6',
        0x4E => '+',
        0x4F => '1',
        0x50 => '2',
        0x51 => '3',
        0x52 => '0',
        0x53 => '.',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_and_symbols_follow_the_layout() {
        let us = Layout::from_locale(0x409);
        let ja = Layout::from_locale(0xE001_0411);
        assert_eq!(ja, Layout::Japanese);
        assert_eq!(Layout::from_locale(0x407), Layout::Us);
        assert_eq!(us.char_of(0x1E, false), Some('a'));
        assert_eq!(us.char_of(0x1E, true), Some('A'));
        assert_eq!(us.char_of(0x32, false), Some('m'));
        assert_eq!(us.char_of(0x03, true), Some('@'));
        assert_eq!(ja.char_of(0x03, true), Some('"'));
        assert_eq!(us.char_of(0x1A, false), Some('['));
        assert_eq!(ja.char_of(0x1A, false), Some('@'));
        assert_eq!(ja.char_of(0x28, true), Some('*'));
        assert_eq!(ja.char_of(0x7D, false), Some('\\'));
        assert_eq!(ja.char_of(0x73, true), Some('_'));
        assert_eq!(ja.char_of(0x0B, true), None);
        assert_eq!(ja.char_of(0x29, false), None);
        assert_eq!(ja.char_of(0x1E, true), Some('A'));
        assert_eq!(us.char_of(0x2A, false), None);
        assert_eq!(keypad_char(0x4F, false), Some('1'));
        assert_eq!(keypad_char(0x35, true), Some('/'));
    }
}
