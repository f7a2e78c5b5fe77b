//! Typed text of graphical sessions (RDP, VNC): the client's keyboard input turned into lines
//! of text with their time, for the auditors' search (issue #15); and the commands run and
//! text shown in terminal sessions ([`terminal`], issue #18).
//!
//! Sans-IO: [`rdp::typed_text`] and [`vnc::typed_text`] take a whole recording's bytes (read
//! through `recorder`'s reader) and return [`TypedLine`]s. Keys go through a [`LineBuilder`]:
//! printable characters append to the pending line, Backspace removes its last character,
//! Tab appends a tab (a field separator), Enter ends the line. A line is stamped with the time
//! of its first key, so a hit opens the player where the typing began.
//!
//! Passwords: nothing typed while the server shows a logon screen may be indexed. Each
//! protocol decides which lines count ([`rdp`]: only after the server's logon notification;
//! [`vnc`]: only lines that visibly changed the screen while they were typed).

pub mod layout;
pub mod rdp;
pub mod terminal;
pub mod vnc;

/// Longest line kept, in characters: a line typed without Enter (a long paste of keys, a key
/// held down) is cut here and a new one begins, so one entry stays readable and bounded.
pub const MAX_LINE_CHARS: usize = 1024;
/// Lines kept per recording at most: the index of one session is bounded whatever the
/// recording holds (a recording may be hostile; a day of typing is a few thousand lines).
pub const MAX_LINES: usize = 100_000;

/// One line of typed text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedLine {
    /// When its first key was pressed (µs since the recording's start).
    pub at_us: u64,
    /// The text, without the Enter that ended it.
    pub text: String,
}

/// Why typed text cannot be read from a recording.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TypedError {
    /// The file is not a readable recording.
    #[error(transparent)]
    Read(#[from] recorder::reader::ReadError),
    /// A chunk does not decode.
    #[error("recording damaged: {0}")]
    Records(#[from] recorder::format::DecodeError),
    /// The header names a protocol without keyboard input to index.
    #[error("not a graphical recording (protocol {0:?})")]
    NotGraphical(String),
    /// A terminal recording does not decode.
    #[error(transparent)]
    Terminal(#[from] crate::terminal::PlayerError),
}

/// What the protocol decoders feed a [`LineBuilder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// A character typed.
    Char(char),
    /// Enter: ends the line.
    Enter,
    /// Tab: a field separator within the line.
    Tab,
    /// Backspace: removes the last character of the pending line.
    Backspace,
}

/// A line being typed, and the lines done.
#[derive(Debug, Default)]
pub struct LineBuilder {
    pending: String,
    pending_chars: usize,
    pending_at: Option<u64>,
    done: Vec<TypedLine>,
}

/// A line ended by [`LineBuilder::key`] or [`LineBuilder::flush`], before it is kept: the
/// protocol decides whether it may be indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndedLine {
    /// The line.
    pub line: TypedLine,
}

impl LineBuilder {
    /// When the pending line's first key was pressed, if one is pending.
    pub fn pending_since(&self) -> Option<u64> {
        self.pending_at
    }

    /// Feeds one key pressed at `at_us`; returns the line it ended, if any.
    pub fn key(&mut self, at_us: u64, key: Key) -> Option<EndedLine> {
        match key {
            Key::Char(c) if !c.is_control() => self.push(at_us, c),
            Key::Char(_) => None,
            Key::Tab => self.push(at_us, '\t'),
            Key::Backspace => {
                if self.pending.pop().is_some() {
                    self.pending_chars = self.pending_chars.saturating_sub(1);
                }
                None
            }
            Key::Enter => self.flush(),
        }
    }

    fn push(&mut self, at_us: u64, c: char) -> Option<EndedLine> {
        self.pending_at.get_or_insert(at_us);
        self.pending.push(c);
        self.pending_chars += 1;
        if self.pending_chars >= MAX_LINE_CHARS {
            return self.flush();
        }
        None
    }

    /// Ends the pending line (the session ended, or Enter). Lines of blanks only are dropped.
    pub fn flush(&mut self) -> Option<EndedLine> {
        let text = std::mem::take(&mut self.pending);
        self.pending_chars = 0;
        let at_us = self.pending_at.take()?;
        if text.trim().is_empty() {
            return None;
        }
        Some(EndedLine {
            line: TypedLine { at_us, text },
        })
    }

    /// Drops the pending line unseen (typed on a logon screen).
    pub fn discard(&mut self) {
        self.pending.clear();
        self.pending_chars = 0;
        self.pending_at = None;
    }

    /// Forgets every line kept so far (they turned out to be typed on a logon screen).
    pub fn forget_kept(&mut self) {
        self.done.clear();
    }

    /// Keeps a line the protocol allowed, up to [`MAX_LINES`].
    pub fn keep(&mut self, ended: EndedLine) {
        if self.done.len() < MAX_LINES {
            self.done.push(ended.line);
        }
    }

    /// The lines kept.
    pub fn into_lines(self) -> Vec<TypedLine> {
        self.done
    }
}

/// Typed text of any graphical recording, by the protocol its header names.
pub fn typed_text(bytes: &[u8]) -> Result<Vec<TypedLine>, TypedError> {
    let rec = recorder::reader::Recording::parse(bytes)?;
    match rec.header().header.protocol.as_str() {
        crate::rdp::RDP_PROTOCOL => rdp::typed_text(&rec),
        vnc::VNC_PROTOCOL => vnc::typed_text(&rec),
        other => Err(TypedError::NotGraphical(other.to_owned())),
    }
}

/// A signed recording of data records for the typed-text tests of each protocol.
#[cfg(test)]
pub(crate) mod test_recording {
    use bytes::Bytes;
    use recorder::format::{ChannelId, Direction, Header, Record, RecordKind, encode_recording};
    use recorder::signing::RecordingKey;

    /// One recorded frame: (time, from the server, bytes).
    pub(crate) type Frame = (u64, bool, Vec<u8>);

    /// `frames` as channel-0 data records under `header`, ending just after the last.
    pub(crate) fn of_frames(header: &Header, frames: &[Frame]) -> Vec<u8> {
        let records: Vec<Record> = frames
            .iter()
            .map(|(at, from_server, b)| Record {
                at_us: *at,
                kind: RecordKind::Data {
                    direction: if *from_server {
                        Direction::ServerToClient
                    } else {
                        Direction::ClientToServer
                    },
                    channel: ChannelId(0),
                    bytes: Bytes::copy_from_slice(b),
                },
            })
            .collect();
        let key = RecordingKey::generate().unwrap();
        let end = frames.last().map(|f| f.0).unwrap_or(0) + 1;
        encode_recording(header, &records, 64 * 1024, end, key.signing_key()).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(keys: &[(u64, Key)]) -> Vec<TypedLine> {
        let mut b = LineBuilder::default();
        for (at, k) in keys {
            if let Some(l) = b.key(*at, *k) {
                b.keep(l);
            }
        }
        if let Some(l) = b.flush() {
            b.keep(l);
        }
        b.into_lines()
    }

    #[test]
    fn lines_are_stamped_with_their_first_key_and_edited_by_backspace() {
        let lines = typed(&[
            (10, Key::Char('l')),
            (20, Key::Char('x')),
            (30, Key::Backspace),
            (40, Key::Char('s')),
            (50, Key::Enter),
            (60, Key::Enter),
            (70, Key::Char('a')),
            (80, Key::Tab),
            (90, Key::Char('b')),
        ]);
        assert_eq!(
            lines,
            vec![
                TypedLine {
                    at_us: 10,
                    text: "ls".into()
                },
                TypedLine {
                    at_us: 70,
                    text: "a\tb".into()
                },
            ]
        );
    }

    #[test]
    fn long_lines_are_cut() {
        let keys: Vec<_> = (0..MAX_LINE_CHARS as u64 + 5)
            .map(|i| (i, Key::Char('x')))
            .collect();
        let lines = typed(&keys);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text.chars().count(), MAX_LINE_CHARS);
        assert_eq!(lines[1].at_us, MAX_LINE_CHARS as u64);
    }

    #[test]
    fn blank_lines_and_control_characters_are_not_kept() {
        let lines = typed(&[
            (1, Key::Char(' ')),
            (2, Key::Enter),
            (3, Key::Char('\u{7}')),
            (4, Key::Enter),
        ]);
        assert!(lines.is_empty());
    }
}
