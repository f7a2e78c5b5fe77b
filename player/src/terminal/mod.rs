//! Terminal recordings (`ssh`, `console-serial`): screen at any moment, playback, search,
//! markers and idle periods.
//!
//! A terminal recording holds, on one channel, the bytes the target printed (server to
//! client), the keys the contractor typed (client to server), `resize` events for window
//! changes and policy events ("sftp refused", "session killed"). The header's metadata gives
//! the initial size (`cols`/`rows`, as the SSH front door writes them, or `term.cols`/
//! `term.rows`; 80×24 when absent) and `term` (the `TERM` value).
//!
//! [`TerminalReplay::open`] decodes the recording once through `recorder`'s reader (the only
//! decoder of the format), turns the data into UTF-8 text (a character split across records is
//! joined; invalid bytes become U+FFFD), and runs the output through [avt], asciinema's VT
//! emulator, keeping a *checkpoint* (avt's state dump) every
//! [`CHECKPOINT_MIN_BYTES`] or more of output. [`TerminalReplay::screen_at`] restores the
//! nearest checkpoint before the moment and replays at most one interval, so seeking costs
//! the same anywhere in a long recording.
//!
//! [avt]: https://github.com/asciinema/avt

mod error;
mod play;
mod render;
mod sanitize;
mod search;
mod utf8;

use std::sync::OnceLock;
use std::time::Duration;

use avt::Terminal;
use recorder::format::{Direction, EventKind, Header, RecordKind};
use recorder::reader::{Recording, ScanEnd};

pub use error::PlayerError;
pub use play::{MAX_SPEED, MIN_SPEED, PlayOptions, PlayStats, play_replay, play_terminal};
pub use render::{
    Cell, CellGrid, DEFAULT_BG, DEFAULT_FG, FONT_PX, MAX_PICTURE_PIXELS, MAX_PICTURE_SIDE,
    SYSTEM_FONTS, TermColor, TerminalFont, TerminalPictures, indexed_rgb,
};
pub use sanitize::OutputSanitizer;
pub use search::{MAX_QUERY_LEN, MAX_SEARCH_RESULTS, SearchHit, Source};
pub use utf8::Utf8Stream;

/// Widest terminal the player emulates. Sizes come from the recording (header metadata and
/// resize events), which may be hostile: 1000×1000 cells is far beyond any real window and
/// keeps one screen (and one checkpoint) to a few MiB.
pub const MAX_TERMINAL_COLS: u16 = 1000;
/// Tallest terminal the player emulates (see [`MAX_TERMINAL_COLS`]).
pub const MAX_TERMINAL_ROWS: u16 = 1000;
/// Size used when the header does not say.
pub const DEFAULT_COLS: u16 = 80;
/// Size used when the header does not say.
pub const DEFAULT_ROWS: u16 = 24;
/// Cap on the decoded terminal data (output, input and event text) held in memory. zstd
/// chunks may expand a small hostile file into gigabytes; an hour of busy admin work is
/// tens of MiB, so 1 GiB leaves a wide margin while bounding memory.
pub const MAX_TERMINAL_DATA: u64 = 1 << 30;
/// Minimum output between two checkpoints. Restoring a checkpoint and replaying this much
/// output takes a few milliseconds, which bounds seek time anywhere in a recording.
pub const CHECKPOINT_MIN_BYTES: usize = 64 * 1024;
/// A checkpoint interval is at least this many times the size of the previous checkpoint, so
/// checkpoints never take more than about a quarter of the memory the output itself takes
/// (matters for large screens, whose dumps are large).
const CHECKPOINT_SIZE_FACTOR: usize = 4;

/// Protocols whose recordings are terminal streams.
pub const TERMINAL_PROTOCOLS: &[&str] = &["ssh", "console-serial"];

/// What happened at one moment of a terminal recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepKind {
    /// Text the target printed (escape sequences included).
    Output(String),
    /// Keys the contractor typed.
    Input(String),
    /// The window size changed.
    Resize {
        /// Columns.
        cols: u16,
        /// Rows.
        rows: u16,
    },
    /// A policy event (index into [`TerminalReplay::markers`]).
    Marker(usize),
}

/// One timed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Microseconds since the recording's start.
    pub at_us: u64,
    /// What happened.
    pub kind: StepKind,
}

/// A policy event on the timeline ("sftp-refused", "session-killed", …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Microseconds since the start.
    pub at_us: u64,
    /// The event kind's stable name (`recorder::EventKind::as_str`).
    pub kind: String,
    /// The recorded detail sentence.
    pub detail: String,
}

/// A period with neither output nor input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdlePeriod {
    /// Last activity before the gap (µs since the start).
    pub start_us: u64,
    /// First activity after it (or the end of the recording).
    pub end_us: u64,
}

impl IdlePeriod {
    /// Length of the gap.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.end_us.saturating_sub(self.start_us))
    }
}

/// The screen at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screen {
    /// The moment (µs since the start); every step at or before it is applied.
    pub at_us: u64,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
    /// The visible rows, trailing blanks removed; always `rows` entries.
    pub lines: Vec<String>,
    /// Cursor (column, row), zero-based; `None` when the application hid it.
    pub cursor: Option<(u16, u16)>,
    /// Whether a full-screen application (alternate screen: vim, less, top) is showing.
    pub alternate: bool,
}

impl Screen {
    /// The visible text, one line per row, trailing empty rows removed.
    pub fn text(&self) -> String {
        let n = self
            .lines
            .iter()
            .rposition(|l| !l.is_empty())
            .map_or(0, |i| i + 1);
        let mut s = self.lines.iter().take(n).fold(String::new(), |mut s, l| {
            s.push_str(l);
            s.push('\n');
            s
        });
        if s.is_empty() {
            s.push('\n');
        }
        s
    }
}

/// A saved emulator state.
///
/// INVARIANT: `dump`, fed to a fresh `cols`×`rows` terminal, reproduces the screen after the
/// first `step` steps.
#[derive(Debug, Clone)]
struct Checkpoint {
    step: usize,
    cols: u16,
    rows: u16,
    dump: String,
}

/// A decoded terminal recording, ready to seek, search and export.
#[derive(Debug)]
pub struct TerminalReplay {
    header: Header,
    cols: u16,
    rows: u16,
    term: Option<String>,
    /// INVARIANT: ascending by `at_us`.
    steps: Vec<Step>,
    markers: Vec<Marker>,
    /// INVARIANT: non-empty (the first is the empty terminal at step 0), ascending by `step`.
    checkpoints: Vec<Checkpoint>,
    end_us: u64,
    complete: bool,
    ignored_records: u64,
    clamped_sizes: u64,
    search: OnceLock<search::SearchIndex>,
}

impl TerminalReplay {
    /// Decodes a terminal recording (the whole file's bytes).
    ///
    /// A recording cut short (no trailer: a crash, or still being written) opens with
    /// [`TerminalReplay::is_complete`] false. Bytes that can never be a frame, or a chunk that
    /// does not decode, fail with [`PlayerError::Corrupt`]: verify the file with
    /// `sekisho recording verify` to learn more. Authenticity (hash chain, signature) is not
    /// checked here.
    pub fn open(bytes: &[u8]) -> Result<Self, PlayerError> {
        let rec = Recording::parse(bytes)?;
        let header = rec.header().header.clone();
        if !TERMINAL_PROTOCOLS.contains(&header.protocol.as_str()) {
            return Err(PlayerError::NotTerminal(header.protocol));
        }
        if let ScanEnd::Invalid { offset, error } = rec.end() {
            return Err(PlayerError::Corrupt {
                offset: *offset,
                error: error.clone(),
            });
        }
        let mut clamped_sizes = 0;
        let (cols, rows) = initial_size(&header, &mut clamped_sizes);
        let term = header
            .metadata
            .get("term")
            .or_else(|| header.metadata.get("term.name"))
            .cloned();

        let mut steps = Vec::new();
        let mut markers = Vec::new();
        let mut out_utf8 = Utf8Stream::new();
        let mut in_utf8 = Utf8Stream::new();
        let mut channel = None;
        let mut ignored_records = 0u64;
        let mut data_total = 0u64;
        let mut last_us = 0u64;
        for (chunk, records) in rec.decoded_chunks() {
            let records = records.map_err(|error| PlayerError::Corrupt {
                offset: chunk.offset,
                error,
            })?;
            for r in records {
                // Times never go backwards in a well-formed file; clamp so a hostile one
                // cannot break the ordering seeking relies on.
                let at_us = r.at_us.max(last_us);
                last_us = at_us;
                match r.kind {
                    RecordKind::Data {
                        direction,
                        channel: ch,
                        bytes,
                    } => {
                        // A terminal session has one channel (0 for the SSH front door and
                        // serial consoles): the first one seen; others are not terminal data.
                        if *channel.get_or_insert(ch) != ch {
                            ignored_records += 1;
                            continue;
                        }
                        data_total = add_data(data_total, bytes.len())?;
                        let mut text = String::new();
                        match direction {
                            Direction::ServerToClient => {
                                out_utf8.push(&bytes, &mut text);
                                push_text(&mut steps, at_us, text, StepKind::Output);
                            }
                            Direction::ClientToServer => {
                                in_utf8.push(&bytes, &mut text);
                                push_text(&mut steps, at_us, text, StepKind::Input);
                            }
                        }
                    }
                    RecordKind::Event(ev) => {
                        data_total = add_data(data_total, ev.detail.len())?;
                        match ev.kind {
                            // A zero dimension means "unknown" (RFC 4254 §6.2, e.g. `ssh -tt`
                            // without a terminal): keep the current size.
                            EventKind::Resize { width, height } if width == 0 || height == 0 => {}
                            EventKind::Resize { width, height } => {
                                let cols = clamp_dim(width, MAX_TERMINAL_COLS, &mut clamped_sizes);
                                let rows = clamp_dim(height, MAX_TERMINAL_ROWS, &mut clamped_sizes);
                                steps.push(Step {
                                    at_us,
                                    kind: StepKind::Resize { cols, rows },
                                });
                            }
                            kind => {
                                steps.push(Step {
                                    at_us,
                                    kind: StepKind::Marker(markers.len()),
                                });
                                markers.push(Marker {
                                    at_us,
                                    kind: kind.as_str().to_owned(),
                                    detail: ev.detail,
                                });
                            }
                        }
                    }
                    // Terminal recordings carry no keyframes (checkpoints are rebuilt here);
                    // unknown record types come from newer writers.
                    _ => ignored_records += 1,
                }
            }
        }
        // A character cut by the end of the recording is shown as U+FFFD, not dropped.
        let mut tail = String::new();
        out_utf8.finish(&mut tail);
        push_text(&mut steps, last_us, tail, StepKind::Output);
        let mut tail = String::new();
        in_utf8.finish(&mut tail);
        push_text(&mut steps, last_us, tail, StepKind::Input);

        let checkpoints = build_checkpoints(&steps, cols, rows);
        Ok(TerminalReplay {
            complete: matches!(rec.end(), ScanEnd::Trailer),
            end_us: rec.end_us().max(last_us),
            header,
            cols,
            rows,
            term,
            steps,
            markers,
            checkpoints,
            ignored_records,
            clamped_sizes,
            search: OnceLock::new(),
        })
    }

    /// The recording's header (session, user, target, start time, metadata).
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Initial size (columns, rows).
    pub fn size(&self) -> (u16, u16) {
        (self.cols, self.rows)
    }

    /// The `TERM` value the client announced, if recorded.
    pub fn term(&self) -> Option<&str> {
        self.term.as_deref()
    }

    /// End of the recording (µs since the start).
    pub fn end_us(&self) -> u64 {
        self.end_us
    }

    /// Whether the recording ends with its trailer (false: cut short, or still live).
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Records that are not terminal data (other channels, keyframes, unknown types).
    pub fn ignored_records(&self) -> u64 {
        self.ignored_records
    }

    /// Sizes from the recording that were outside 1..=[`MAX_TERMINAL_COLS`] ×
    /// 1..=[`MAX_TERMINAL_ROWS`] and were clamped.
    pub fn clamped_sizes(&self) -> u64 {
        self.clamped_sizes
    }

    /// Every step in time order.
    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    /// Output for playback: (µs since the start, text with escape sequences).
    pub fn output_events(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        self.steps.iter().filter_map(|s| match &s.kind {
            StepKind::Output(t) => Some((s.at_us, t.as_str())),
            _ => None,
        })
    }

    /// Typed keys: (µs since the start, text). Keystrokes may hold secrets typed at prompts;
    /// show them only to auditors.
    pub fn input_events(&self) -> impl Iterator<Item = (u64, &str)> + '_ {
        self.steps.iter().filter_map(|s| match &s.kind {
            StepKind::Input(t) => Some((s.at_us, t.as_str())),
            _ => None,
        })
    }

    /// Policy events with their times, for the timeline.
    pub fn markers(&self) -> &[Marker] {
        &self.markers
    }

    /// Gaps of at least `min_gap` with neither output nor input, including the stretch from
    /// the start to the first activity and from the last activity to the end.
    pub fn idle_periods(&self, min_gap: Duration) -> Vec<IdlePeriod> {
        let min = u64::try_from(min_gap.as_micros()).unwrap_or(u64::MAX);
        let mut out = Vec::new();
        let mut prev = 0u64;
        let activity = self
            .steps
            .iter()
            .filter(|s| matches!(s.kind, StepKind::Output(_) | StepKind::Input(_)))
            .map(|s| s.at_us)
            .chain(std::iter::once(self.end_us));
        for t in activity {
            if t.saturating_sub(prev) >= min && t > prev {
                out.push(IdlePeriod {
                    start_us: prev,
                    end_us: t,
                });
            }
            prev = prev.max(t);
        }
        out
    }

    /// Finds `query` (ASCII case-insensitive) in the printed output and in the typed keys
    /// (line-edited: backspace and Ctrl-U applied, escape sequences removed). Hits are in time
    /// order, at most [`MAX_SEARCH_RESULTS`]. The index is built on the first search.
    pub fn search(&self, query: &str) -> Vec<SearchHit> {
        self.search
            .get_or_init(|| {
                let mut out = search::OutputText::default();
                let mut inp = search::InputText::default();
                for s in &self.steps {
                    match &s.kind {
                        StepKind::Output(t) => out.push(s.at_us, t),
                        StepKind::Input(t) => inp.push(s.at_us, t),
                        _ => {}
                    }
                }
                search::SearchIndex {
                    output: out.finish(),
                    input: inp.finish(),
                }
            })
            .search(query)
    }

    /// Number of steps at or before `at_us`.
    fn steps_until(&self, at_us: u64) -> usize {
        self.steps.partition_point(|s| s.at_us <= at_us)
    }

    /// The emulator after every step at or before `at_us`, from the nearest checkpoint.
    fn terminal_at(&self, at_us: u64) -> Terminal {
        let n = self.steps_until(at_us);
        let cp_index = self
            .checkpoints
            .partition_point(|c| c.step <= n)
            .saturating_sub(1);
        let (mut term, from) = match self.checkpoints.get(cp_index) {
            Some(cp) => (restore(cp), cp.step),
            None => (new_terminal(self.cols, self.rows), 0),
        };
        for s in self.steps.get(from..n).unwrap_or_default() {
            apply(&mut term, s);
        }
        term
    }

    /// The screen after every step at or before `at_us` (clamped to the recording).
    pub fn screen_at(&self, at_us: u64) -> Screen {
        screen_of(&self.terminal_at(at_us), at_us)
    }

    /// The screen after every step at or before `at_us`, by replaying from the very start
    /// (no checkpoint). Slow; for tests and for checking the checkpoints.
    pub fn screen_at_sequential(&self, at_us: u64) -> Screen {
        let mut term = new_terminal(self.cols, self.rows);
        for s in self.steps.iter().take(self.steps_until(at_us)) {
            apply(&mut term, s);
        }
        screen_of(&term, at_us)
    }

    /// Escape sequences that bring a terminal of [`TerminalReplay::size_at`] to the screen
    /// at `at_us` (for a player that starts mid-recording: feed this, then the output after).
    pub fn dump_at(&self, at_us: u64) -> String {
        self.terminal_at(at_us).dump()
    }

    /// The size in force at `at_us`.
    pub fn size_at(&self, at_us: u64) -> (u16, u16) {
        let n = self.steps_until(at_us);
        self.steps
            .iter()
            .take(n)
            .rev()
            .find_map(|s| match s.kind {
                StepKind::Resize { cols, rows } => Some((cols, rows)),
                _ => None,
            })
            .unwrap_or((self.cols, self.rows))
    }

    /// Checkpoints kept (for the benchmark and tests).
    pub fn checkpoint_count(&self) -> usize {
        self.checkpoints.len()
    }
}

fn add_data(total: u64, len: usize) -> Result<u64, PlayerError> {
    let total = total.saturating_add(len as u64);
    if total > MAX_TERMINAL_DATA {
        return Err(PlayerError::LimitExceeded {
            what: "terminal data",
            len: total,
            max: MAX_TERMINAL_DATA,
        });
    }
    Ok(total)
}

fn push_text(steps: &mut Vec<Step>, at_us: u64, text: String, kind: fn(String) -> StepKind) {
    if !text.is_empty() {
        steps.push(Step {
            at_us,
            kind: kind(text),
        });
    }
}

/// Clamps a size from the recording to 1..=max, counting clamps.
fn clamp_dim(v: u32, max: u16, clamped: &mut u64) -> u16 {
    let c = v.clamp(1, u32::from(max));
    if c != v {
        *clamped += 1;
    }
    // c ≤ max ≤ u16::MAX.
    u16::try_from(c).unwrap_or(max)
}

fn initial_size(header: &Header, clamped: &mut u64) -> (u16, u16) {
    let get = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| header.metadata.get(*k))
            .and_then(|v| v.trim().parse::<u32>().ok())
            // Zero means "unknown" (RFC 4254 §6.2): fall back to the default.
            .filter(|v| *v > 0)
    };
    let cols = get(&["cols", "term.cols"])
        .map_or(DEFAULT_COLS, |v| clamp_dim(v, MAX_TERMINAL_COLS, clamped));
    let rows = get(&["rows", "term.rows"])
        .map_or(DEFAULT_ROWS, |v| clamp_dim(v, MAX_TERMINAL_ROWS, clamped));
    (cols, rows)
}

fn new_terminal(cols: u16, rows: u16) -> Terminal {
    // Sizes are clamped to ≥ 1, so the fallback is never used; it keeps this total.
    Terminal::new(usize::from(cols.max(1)), usize::from(rows.max(1))).unwrap_or_else(|_| {
        Terminal::new(usize::from(DEFAULT_COLS), usize::from(DEFAULT_ROWS))
            .unwrap_or_else(|_| unreachable_terminal())
    })
}

/// avt rejects only zero sizes; both calls above pass non-zero ones.
#[allow(clippy::panic)]
fn unreachable_terminal() -> Terminal {
    panic!("avt refused a non-zero terminal size")
}

fn restore(cp: &Checkpoint) -> Terminal {
    let mut t = new_terminal(cp.cols, cp.rows);
    t.feed(cp.dump.as_str());
    t
}

fn apply(term: &mut Terminal, step: &Step) {
    match &step.kind {
        StepKind::Output(text) => term.feed(text.as_str()),
        StepKind::Resize { cols, rows } => term.resize(usize::from(*cols), usize::from(*rows)),
        StepKind::Input(_) | StepKind::Marker(_) => {}
    }
}

fn build_checkpoints(steps: &[Step], cols: u16, rows: u16) -> Vec<Checkpoint> {
    let mut cps = vec![Checkpoint {
        step: 0,
        cols,
        rows,
        dump: String::new(),
    }];
    let mut term = new_terminal(cols, rows);
    let mut since = 0usize;
    let mut interval = CHECKPOINT_MIN_BYTES;
    for (i, s) in steps.iter().enumerate() {
        apply(&mut term, s);
        if let StepKind::Output(t) = &s.kind {
            since += t.len();
        }
        if since >= interval {
            let (c, r) = term.size();
            let dump = term.dump();
            interval = CHECKPOINT_MIN_BYTES.max(dump.len().saturating_mul(CHECKPOINT_SIZE_FACTOR));
            cps.push(Checkpoint {
                step: i + 1,
                cols: u16::try_from(c).unwrap_or(MAX_TERMINAL_COLS),
                rows: u16::try_from(r).unwrap_or(MAX_TERMINAL_ROWS),
                dump,
            });
            since = 0;
        }
    }
    cps
}

fn screen_of(term: &Terminal, at_us: u64) -> Screen {
    let (c, r) = term.size();
    let lines = term
        .screen()
        .visible_lines()
        .map(|l| l.text().trim_end().to_owned())
        .collect();
    let cursor = term.cursor().position().map(|(x, y)| {
        (
            u16::try_from(x).unwrap_or(u16::MAX),
            u16::try_from(y).unwrap_or(u16::MAX),
        )
    });
    Screen {
        at_us,
        cols: u16::try_from(c).unwrap_or(MAX_TERMINAL_COLS),
        rows: u16::try_from(r).unwrap_or(MAX_TERMINAL_ROWS),
        lines,
        cursor,
        alternate: term.active_screen_kind() == avt::ScreenKind::Alternate,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(at_us: u64, s: &str) -> Step {
        Step {
            at_us,
            kind: StepKind::Output(s.to_owned()),
        }
    }

    #[test]
    fn checkpoint_restore_matches_sequential() {
        // Enough output for several checkpoints, with colours, a scroll region, the
        // alternate screen and resizes between them.
        let mut steps = Vec::new();
        for i in 0..12000u64 {
            let text = match i % 7 {
                0 => format!("\x1b[3{}mline {i} \x1b[0mé関\r\n", i % 8),
                1 => "\x1b[?1049h\x1b[2;5Hin vim".to_owned(),
                2 => "\x1b[?1049l".to_owned(),
                3 => "\x1b[5;10r\x1b[7;1Hscrolled\n\n\x1b[r".to_owned(),
                4 => "no newline, long enough to wrap around the right margin of the screen "
                    .repeat(2),
                5 => "\t\x1b[1mtab\x1b[0m\x1b[K\r\n".to_owned(),
                _ => format!("\x1b[{};{}H*", i % 30, i % 90),
            };
            steps.push(out(i, &text));
            if i % 500 == 250 {
                let cols = 60 + (i % 3) as u16 * 20;
                steps.push(Step {
                    at_us: i,
                    kind: StepKind::Resize {
                        cols,
                        rows: 20 + (i % 2) as u16 * 10,
                    },
                });
            }
        }
        let cps = build_checkpoints(&steps, 80, 24);
        assert!(cps.len() > 3, "{} checkpoints", cps.len());
        for cp in &cps {
            let mut seq = new_terminal(80, 24);
            for s in &steps[..cp.step] {
                apply(&mut seq, s);
            }
            let mut restored = restore(cp);
            assert_eq!(
                screen_of(&restored, 0),
                screen_of(&seq, 0),
                "at step {}",
                cp.step
            );
            // And they keep agreeing afterwards.
            for s in steps.iter().skip(cp.step).take(200) {
                apply(&mut seq, s);
                apply(&mut restored, s);
            }
            assert_eq!(
                screen_of(&restored, 0),
                screen_of(&seq, 0),
                "after step {}",
                cp.step
            );
        }
    }

    #[test]
    fn screen_text_trims_empty_rows() {
        let mut t = new_terminal(10, 4);
        t.feed("a\r\nb  ");
        let s = screen_of(&t, 5);
        assert_eq!(s.lines, ["a", "b", "", ""]);
        assert_eq!(s.text(), "a\nb\n");
        assert_eq!(s.cursor, Some((3, 1)));
    }

    #[test]
    fn clamp_counts() {
        let mut n = 0;
        assert_eq!(clamp_dim(0, 1000, &mut n), 1);
        assert_eq!(clamp_dim(5000, 1000, &mut n), 1000);
        assert_eq!(clamp_dim(80, 1000, &mut n), 80);
        assert_eq!(n, 2);
    }
}
