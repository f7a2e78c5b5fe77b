//! Commands run and text shown in a terminal session (SSH, serial console), for the auditors'
//! Find page (issue #18).
//!
//! Sans-IO: [`terminal_text`] takes a whole recording's bytes, decodes it through
//! [`TerminalReplay`] (so through `recorder`'s reader) and replays the output through avt,
//! asciinema's VT emulator, once, start to end.
//!
//! # Commands: the keys say *when*, the echo says *what*
//!
//! The keys alone cannot tell what ran: Tab completes, ↑ recalls history, a shell may rewrite
//! the line. The screen can: the shell echoes the line as it will run it. So a command is the
//! cursor's (logical, soft-wrap-joined) line at the moment the echo of Enter leaves it —
//! the first line feed the target prints after Enter — minus the prompt, which is that same
//! line as it stood when the first key of the line was typed. The keys give the time (the
//! line's first key) and the end (Enter, CR or LF); Ctrl-C abandons a line; Backspace/DEL,
//! Ctrl-U and Ctrl-W edit the keys' own copy of the line; escape sequences (arrows, function
//! keys) are not text.
//!
//! When the prompt is not known (keys typed ahead while an earlier line still waited for its
//! echo: a paste of several lines) or the echoed line does not begin with it (the screen was
//! redrawn), the keys' own line is taken, but only if the echoed line ends with it: a line
//! is indexed only if it was on the screen.
//!
//! # Secrets
//!
//! That rule is also what keeps passwords out. A password prompt turns echo off, so what is
//! typed there never reaches the screen: at the line feed after Enter the cursor line is still
//! the prompt alone, and nothing is indexed. No line is ever taken from the keys alone.
//!
//! # Screen text
//!
//! Each line the target completed with a line feed on the normal screen (not a full-screen
//! application's alternate screen, which is redrawn in place), as the emulator shows it, with
//! the time of the first output after the previous line feed: what scrolled past the user.

use avt::{ScreenKind, Terminal};

use super::{MAX_LINE_CHARS, MAX_LINES, TypedError, TypedLine};
use crate::terminal::{DEFAULT_COLS, DEFAULT_ROWS, StepKind, TerminalReplay};

/// Lines ended by Enter and still waiting for their echo, at most: a paste of many lines
/// runs ahead of the echo; beyond this many, the oldest is dropped (its echo is long past or
/// never comes).
const MAX_AWAITING: usize = 64;

/// What a terminal session's recording says was run and shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TerminalText {
    /// The command lines, each stamped with its first key, in time order.
    pub commands: Vec<TypedLine>,
    /// The text lines shown, each stamped with when it began to appear, in time order.
    pub screen: Vec<TypedLine>,
}

/// Commands and screen text of a terminal recording (`ssh`, `console-serial`).
pub fn terminal_text(bytes: &[u8]) -> Result<TerminalText, TypedError> {
    let replay = TerminalReplay::open(bytes)?;
    Ok(text_of(&replay))
}

/// Commands and screen text of a decoded terminal recording.
pub fn text_of(replay: &TerminalReplay) -> TerminalText {
    let (cols, rows) = replay.size();
    let mut x = Extractor::new(cols, rows);
    for step in replay.steps() {
        match &step.kind {
            StepKind::Output(text) => x.output(step.at_us, text),
            StepKind::Input(keys) => x.input(step.at_us, keys),
            StepKind::Resize { cols, rows } => {
                x.term.resize(usize::from(*cols), usize::from(*rows));
            }
            StepKind::Marker(_) => {}
        }
    }
    TerminalText {
        commands: x.commands,
        screen: x.screen,
    }
}

/// A line being typed.
#[derive(Debug)]
struct Pending {
    /// Its first key.
    at_us: u64,
    /// The cursor line when that key was typed; `None` when an earlier line was still waiting
    /// for its echo, so the screen did not show this line's prompt.
    prompt: Option<String>,
    /// The keys' own copy of the line (printable characters, edited).
    keys: String,
}

/// The escape-sequence skipper of the keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum KeyState {
    #[default]
    Ground,
    /// After ESC.
    Escape,
    /// Inside `ESC [` or `ESC O` until the final byte.
    Sequence,
}

struct Extractor {
    term: Terminal,
    keys: KeyState,
    pending: Option<Pending>,
    /// INVARIANT: at most [`MAX_AWAITING`] entries, oldest first.
    awaiting: std::collections::VecDeque<Pending>,
    /// When the current output line began (first output after the last line feed).
    line_began: Option<u64>,
    commands: Vec<TypedLine>,
    screen: Vec<TypedLine>,
}

impl Extractor {
    fn new(cols: u16, rows: u16) -> Self {
        let term = Terminal::new(usize::from(cols.max(1)), usize::from(rows.max(1)))
            .or_else(|_| Terminal::new(usize::from(DEFAULT_COLS), usize::from(DEFAULT_ROWS)));
        Extractor {
            // Both sizes are non-zero, which is all avt checks; the fallback keeps this total.
            term: term.unwrap_or_else(|_| fallback_terminal()),
            keys: KeyState::Ground,
            pending: None,
            awaiting: std::collections::VecDeque::new(),
            line_began: None,
            commands: Vec::new(),
            screen: Vec::new(),
        }
    }

    /// The cursor's logical line: its row, joined with the rows above that soft-wrap into
    /// it, trailing blanks removed.
    fn cursor_line(&self) -> String {
        let screen = self.term.screen();
        let row = self.term.cursor().row;
        let mut first = row;
        while let Some(above) = first.checked_sub(1)
            && screen.line(above).is_some_and(avt::Line::is_wrapped)
        {
            first = above;
        }
        let mut text: String = (first..=row)
            .filter_map(|r| screen.line(r))
            .map(avt::Line::text)
            .collect();
        text.truncate(text.trim_end().len());
        text
    }

    fn output(&mut self, at_us: u64, text: &str) {
        let mut parts = text.split('\n').peekable();
        while let Some(part) = parts.next() {
            if !part.is_empty() {
                self.line_began.get_or_insert(at_us);
                self.term.feed(part);
            }
            if parts.peek().is_some() {
                // A line feed: the cursor is about to leave its line.
                self.line_done(at_us);
                self.term.feed('\n');
            }
        }
    }

    fn line_done(&mut self, at_us: u64) {
        let began = self.line_began.take().unwrap_or(at_us);
        if self.term.active_screen_kind() == ScreenKind::Alternate {
            // A full-screen application: its keys are not shell commands, its screen is
            // redrawn in place rather than scrolled.
            self.awaiting.clear();
            return;
        }
        let line = self.cursor_line();
        if !self.awaiting.is_empty() {
            self.echo(&line);
        }
        push(&mut self.screen, began, &line);
    }

    /// A line feed after Enter: the echoed line decides what ran.
    fn echo(&mut self, line: &str) {
        let Some(front) = self.awaiting.front() else {
            return;
        };
        let by_prompt = front.prompt.as_deref().and_then(|p| {
            let p = p.trim_end();
            line.strip_prefix(p).map(|rest| rest.trim().to_owned())
        });
        let keys = front.keys.trim();
        let by_keys = (!keys.is_empty() && line.ends_with(keys)).then(|| keys.to_owned());
        match (by_prompt, by_keys) {
            // The screen shows the prompt: what follows it ran (nothing, after a password).
            (Some(cmd), _) => {
                if let Some(p) = self.awaiting.pop_front() {
                    push(&mut self.commands, p.at_us, &cmd);
                }
            }
            (None, Some(cmd)) => {
                if let Some(p) = self.awaiting.pop_front() {
                    push(&mut self.commands, p.at_us, &cmd);
                }
            }
            // With a known prompt, the first line feed is the echo even if the screen was
            // redrawn: the line is done, unindexed. Without one, this line feed may be output
            // of an earlier command; the line waits for its own echo.
            (None, None) => {
                if front.prompt.is_some() {
                    self.awaiting.pop_front();
                }
            }
        }
    }

    fn input(&mut self, at_us: u64, keys: &str) {
        for c in keys.chars() {
            match self.keys {
                KeyState::Escape => {
                    self.keys = if c == '[' || c == 'O' {
                        KeyState::Sequence
                    } else {
                        KeyState::Ground
                    };
                    continue;
                }
                KeyState::Sequence => {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        self.keys = KeyState::Ground;
                    }
                    continue;
                }
                KeyState::Ground => {}
            }
            match c {
                '\u{1b}' => {
                    self.keys = KeyState::Escape;
                    self.begin(at_us);
                }
                '\r' | '\n' => self.enter(at_us),
                // Ctrl-C: the line is abandoned, never run.
                '\u{3}' => self.pending = None,
                '\u{8}' | '\u{7f}' => {
                    if let Some(p) = &mut self.pending {
                        p.keys.pop();
                    }
                }
                // Ctrl-U: the line so far is erased.
                '\u{15}' => {
                    if let Some(p) = &mut self.pending {
                        p.keys.clear();
                    }
                }
                // Ctrl-W: the last word is erased.
                '\u{17}' => {
                    if let Some(p) = &mut self.pending {
                        let kept = p.keys.trim_end().rfind(' ').map_or(0, |i| i + 1);
                        p.keys.truncate(kept);
                    }
                }
                c if c.is_control() => {
                    self.begin(at_us);
                }
                c => {
                    let p = self.begin(at_us);
                    if p.keys.chars().count() < MAX_LINE_CHARS {
                        p.keys.push(c);
                    }
                }
            }
        }
    }

    /// The pending line, begun by a key at `at_us` if none is.
    fn begin(&mut self, at_us: u64) -> &mut Pending {
        if self.pending.is_none() {
            let prompt = self.awaiting.is_empty().then(|| self.cursor_line());
            self.pending = Some(Pending {
                at_us,
                prompt,
                keys: String::new(),
            });
        }
        self.pending.get_or_insert_with(|| Pending {
            at_us,
            prompt: None,
            keys: String::new(),
        })
    }

    fn enter(&mut self, at_us: u64) {
        self.begin(at_us);
        let Some(p) = self.pending.take() else {
            return;
        };
        // Without a prompt and without keys there is nothing its echo could be checked
        // against (the LF of a CR LF pair, an Enter typed ahead on an empty line).
        if p.prompt.is_none() && p.keys.trim().is_empty() {
            return;
        }
        if self.awaiting.len() >= MAX_AWAITING {
            self.awaiting.pop_front();
        }
        self.awaiting.push_back(p);
    }
}

/// Keeps a non-blank line, cut to [`MAX_LINE_CHARS`], up to [`MAX_LINES`].
fn push(lines: &mut Vec<TypedLine>, at_us: u64, text: &str) {
    let text = text.trim_end();
    if text.trim().is_empty() || lines.len() >= MAX_LINES {
        return;
    }
    lines.push(TypedLine {
        at_us,
        text: text.chars().take(MAX_LINE_CHARS).collect(),
    });
}

/// avt refuses only zero sizes, and [`Extractor::new`] passes none.
#[allow(clippy::panic)]
fn fallback_terminal() -> Terminal {
    panic!("avt refused a non-zero terminal size")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use recorder::format::Header;

    use super::*;
    use crate::typed::test_recording::{Frame, of_frames};

    fn recording_of(frames: &[Frame]) -> Vec<u8> {
        let header: Header = serde_json::from_value(serde_json::json!({
            "session_id": "01936f5e-0000-7000-8000-000000000044",
            "protocol": "ssh",
            "user": "tanaka",
            "contractor": "acme",
            "source": "127.0.10.11",
            "target": "web01",
            "start_unix_us": 1_764_061_200_000_000i64,
            "metadata": { "cols": "40", "rows": "5" },
        }))
        .unwrap();
        of_frames(&header, frames)
    }

    /// Keys typed one record each, 10 ms apart from `at`, each echoed 1 ms later as `echo`
    /// says (None: not echoed).
    fn typed(at: u64, keys: &str, echo: impl Fn(char) -> Option<String>) -> Vec<Frame> {
        let mut out = Vec::new();
        for (i, c) in keys.chars().enumerate() {
            let t = at + i as u64 * 10_000;
            out.push((t, false, c.to_string().into_bytes()));
            if let Some(e) = echo(c) {
                out.push((t + 1000, true, e.into_bytes()));
            }
        }
        out
    }

    /// A shell's echo: printable as is, DEL as "\b \b" (erase one), CR as CR LF.
    fn shell_echo(c: char) -> Option<String> {
        Some(match c {
            '\u{7f}' => "\u{8} \u{8}".into(),
            '\r' => "\r\n".into(),
            c => c.to_string(),
        })
    }

    fn commands(frames: &[Frame]) -> Vec<(u64, String)> {
        terminal_text(&recording_of(frames))
            .unwrap()
            .commands
            .into_iter()
            .map(|l| (l.at_us, l.text))
            .collect()
    }

    #[test]
    fn commands_are_read_from_the_echo_and_stamped_with_their_first_key() {
        let mut f = vec![(0, true, b"$ ".to_vec())];
        f.extend(typed(1_000_000, "lsx\u{7f} -l\r", shell_echo));
        f.push((2_000_000, true, b"total 0\r\n$ ".to_vec()));
        f.extend(typed(3_000_000, "echo typo\u{15}uname\r", |c| match c {
            // Ctrl-U: readline erases the line and redraws the prompt.
            '\u{15}' => Some("\r\u{1b}[K$ ".into()),
            c => shell_echo(c),
        }));
        f.push((4_000_000, true, b"Linux\r\n$ ".to_vec()));
        assert_eq!(
            commands(&f),
            vec![
                (1_000_000, "ls -l".to_owned()),
                (3_000_000, "uname".to_owned()),
            ]
        );
    }

    #[test]
    fn tab_completion_and_history_come_from_the_echo() {
        let mut f = vec![(0, true, b"$ ".to_vec())];
        // "cat /et<Tab>" completes to "cat /etc/"; then "hosts".
        f.extend(typed(1_000_000, "cat /et\thosts\r", |c| match c {
            '\t' => Some("c/".into()),
            c => shell_echo(c),
        }));
        f.push((2_000_000, true, b"127.0.0.1 localhost\r\n$ ".to_vec()));
        // ↑ recalls it; Enter runs it again.
        f.push((3_000_000, false, b"\x1b[A".to_vec()));
        f.push((3_001_000, true, b"cat /etc/hosts".to_vec()));
        f.push((3_500_000, false, b"\r".to_vec()));
        f.push((3_501_000, true, b"\r\n127.0.0.1 localhost\r\n$ ".to_vec()));
        assert_eq!(
            commands(&f),
            vec![
                (1_000_000, "cat /etc/hosts".to_owned()),
                (3_000_000, "cat /etc/hosts".to_owned()),
            ]
        );
    }

    #[test]
    fn a_password_typed_with_echo_off_is_never_indexed() {
        let mut f = vec![(0, true, b"$ ".to_vec())];
        f.extend(typed(1_000_000, "sudo id\r", shell_echo));
        f.push((1_500_000, true, b"[sudo] password for tanaka: ".to_vec()));
        // Echo off: the keys reach the target, nothing comes back until sudo's own newline.
        f.extend(typed(2_000_000, "Hunter2Secret\r", |_| None));
        f.push((3_000_000, true, b"\r\nuid=0(root)\r\n$ ".to_vec()));
        let text = terminal_text(&recording_of(&f)).unwrap();
        assert_eq!(
            text.commands
                .iter()
                .map(|l| l.text.as_str())
                .collect::<Vec<_>>(),
            vec!["sudo id"]
        );
        for l in text.commands.iter().chain(&text.screen) {
            assert!(!l.text.contains("Hunter2"), "{l:?}");
        }
        assert!(
            text.screen
                .iter()
                .any(|l| l.text == "[sudo] password for tanaka:")
        );
    }

    #[test]
    fn ctrl_c_abandons_the_line() {
        let mut f = vec![(0, true, b"$ ".to_vec())];
        f.extend(typed(1_000_000, "rm -rf /\u{3}", |c| match c {
            '\u{3}' => Some("^C\r\n$ ".into()),
            c => shell_echo(c),
        }));
        f.extend(typed(2_000_000, "pwd\r", shell_echo));
        f.push((3_000_000, true, b"/root\r\n$ ".to_vec()));
        assert_eq!(commands(&f), vec![(2_000_000, "pwd".to_owned())]);
    }

    #[test]
    fn a_paste_of_several_lines_is_matched_to_its_echo() {
        let f = vec![
            (0, true, b"$ ".to_vec()),
            (1_000_000, false, b"echo one\recho two\r".to_vec()),
            (1_001_000, true, b"echo one\r\none\r\n$ ".to_vec()),
            (1_002_000, true, b"echo two\r\ntwo\r\n$ ".to_vec()),
        ];
        assert_eq!(
            commands(&f),
            vec![
                (1_000_000, "echo one".to_owned()),
                (1_000_000, "echo two".to_owned()),
            ]
        );
    }

    #[test]
    fn screen_lines_are_stamped_when_they_began_and_joined_across_wraps() {
        let f = vec![
            (0, true, b"$ ".to_vec()),
            (1_000_000, false, b"\r".to_vec()),
            (1_001_000, true, b"\r\n".to_vec()),
            // 45 characters on a 40-column screen: one line on two rows.
            (
                2_000_000,
                true,
                b"abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".to_vec(),
            ),
            (2_500_000, true, b"HI\r\n$ ".to_vec()),
        ];
        let text = terminal_text(&recording_of(&f)).unwrap();
        assert!(text.commands.is_empty());
        let screen: Vec<_> = text
            .screen
            .iter()
            .map(|l| (l.at_us, l.text.as_str()))
            .collect();
        assert_eq!(
            screen,
            vec![
                (0, "$"),
                (2_000_000, "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHI")
            ]
        );
    }

    #[test]
    fn graphical_recordings_are_refused() {
        let header: Header = serde_json::from_value(serde_json::json!({
            "session_id": "01936f5e-0000-7000-8000-000000000045",
            "protocol": "rdp",
            "user": "tanaka",
            "contractor": "acme",
            "source": "127.0.10.11",
            "target": "web01",
            "start_unix_us": 1_764_061_200_000_000i64,
            "metadata": {},
        }))
        .unwrap();
        assert!(terminal_text(&of_frames(&header, &[(0, true, vec![1])])).is_err());
    }
}
