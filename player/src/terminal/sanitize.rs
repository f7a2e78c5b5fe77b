//! Removes, from recorded output about to be written to a *viewer's* terminal, the sequences
//! that make a terminal answer or act outside its screen.
//!
//! The output of a recorded session was produced by the target, which the contractor
//! controlled. Played raw into an auditor's terminal, a query such as "report the window
//! title" (`CSI 21 t`) or "device status" (`CSI 6 n`) makes the auditor's terminal type its
//! answer, which lands in the auditor's shell once playback ends; an OSC 52 string writes the
//! auditor's clipboard. The filter drops: OSC, DCS, SOS, PM and APC strings (titles,
//! hyperlinks, clipboard, terminal-specific commands), and the CSI requests that produce a
//! reply (`n` DSR, `c` DA, `t` window operations and reports, `x` DECREQTPARM, `$ p` DECRQM).
//! Drawing (text, colours, cursor motion, erasing, the alternate screen) is untouched, so the
//! screen looks the same.

/// Longest CSI sequence kept whole; longer ones are dropped (real ones are a few dozen
/// bytes, and the buffer must stay bounded on hostile output).
const MAX_CSI_LEN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    #[default]
    Ground,
    /// After ESC.
    Escape,
    /// Inside a CSI sequence (buffered in `csi`).
    Csi,
    /// Inside a string (OSC, DCS, …) being dropped.
    Str,
    /// ESC inside a dropped string: `\` ends it.
    StrEscape,
    /// A CSI sequence too long to buffer: dropped until its final byte.
    CsiOverflow,
}

/// Streaming filter; sequences may be split across calls.
///
/// INVARIANT: `csi.len()` ≤ [`MAX_CSI_LEN`] + 4 (one char).
#[derive(Debug, Clone, Default)]
pub struct OutputSanitizer {
    state: State,
    csi: String,
}

impl OutputSanitizer {
    /// A filter in the ground state.
    pub fn new() -> Self {
        OutputSanitizer::default()
    }

    /// Appends the safe part of `text` to `out`.
    pub fn push(&mut self, text: &str, out: &mut String) {
        for c in text.chars() {
            match self.state {
                State::Ground => match c {
                    '\u{1b}' => self.state = State::Escape,
                    '\u{9b}' => self.start_csi("\u{1b}["),
                    '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => self.state = State::Str,
                    c => out.push(c),
                },
                State::Escape => match c {
                    '[' => self.start_csi("\u{1b}["),
                    ']' | 'P' | 'X' | '^' | '_' => self.state = State::Str,
                    c => {
                        out.push('\u{1b}');
                        out.push(c);
                        self.state = State::Ground;
                    }
                },
                State::Csi => {
                    self.csi.push(c);
                    if is_final(c) {
                        if !is_request(&self.csi, c) {
                            out.push_str(&self.csi);
                        }
                        self.csi.clear();
                        self.state = State::Ground;
                    } else if self.csi.len() > MAX_CSI_LEN {
                        self.csi.clear();
                        self.state = State::CsiOverflow;
                    }
                }
                State::CsiOverflow => {
                    if is_final(c) {
                        self.state = State::Ground;
                    }
                }
                State::Str => match c {
                    '\u{7}' | '\u{9c}' => self.state = State::Ground,
                    '\u{1b}' => self.state = State::StrEscape,
                    _ => {}
                },
                State::StrEscape => {
                    self.state = if c == '\\' { State::Ground } else { State::Str };
                }
            }
        }
    }

    fn start_csi(&mut self, prefix: &str) {
        self.csi.clear();
        self.csi.push_str(prefix);
        self.state = State::Csi;
    }
}

fn is_final(c: char) -> bool {
    ('\u{40}'..='\u{7e}').contains(&c)
}

/// Whether a complete CSI sequence asks the terminal to answer (or to act on its window).
fn is_request(seq: &str, last: char) -> bool {
    match last {
        'n' | 'c' | 't' | 'x' => true,
        'p' => seq.contains('$'),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(parts: &[&str]) -> String {
        let mut f = OutputSanitizer::new();
        let mut out = String::new();
        for p in parts {
            f.push(p, &mut out);
        }
        out
    }

    #[test]
    fn drawing_passes_unchanged() {
        let s =
            "\x1b[?1049h\x1b[H\x1b[2J\x1b[1;31mred\x1b[0m 関所\r\n\x1b[5;10r\x1b(B\x1b7\x1b8\x1b[K";
        assert_eq!(clean(&[s]), s);
    }

    #[test]
    fn queries_and_strings_are_dropped_even_when_split() {
        assert_eq!(
            clean(&["a\x1b[6n", "b\x1b[21t", "c\x1b[>c", "d\x1b[?2$p"]),
            "abcd"
        );
        assert_eq!(
            clean(&["x\x1b]52;c;cm0gLXJmIC8=", "\x07y\x1b]0;title\x1b", "\\z"]),
            "xyz"
        );
        assert_eq!(
            clean(&["1\x1bP$q\"p\x1b\\2", "\u{9b}6n3\u{9d}0;t\u{9c}4"]),
            "1234"
        );
        assert_eq!(clean(&["\x1b", "[", "6", "n", "ok"]), "ok");
    }

    #[test]
    fn oversized_csi_is_dropped_with_bounded_memory() {
        let long = format!("\x1b[{}m after", "1;".repeat(10_000));
        assert_eq!(clean(&[&long]), " after");
    }
}
