//! Plain-text transcript of a terminal recording.
//!
//! Layout (UTF-8, `\n` line ends):
//! ```text
//! [sekisho] session 0193… ssh tanaka@web01 from 127.0.10.11, started 2026-11-25T09:00:00Z, 80x24
//! …transcript lines…
//! [sekisho] full-screen output at 00:12:34 (alternate screen, last state)
//! …the screen of vim/less/top as it was when the application exited…
//! [sekisho] end of full-screen output
//! …
//! [sekisho] events:
//! [sekisho] 00:03:10 sftp-refused: subsystem sftp refused
//! [sekisho] end 01:00:00, complete recording
//! ```
//! Lines starting with `[sekisho]` are annotations; everything else is what the target
//! printed, rendered by the VT emulator (escape sequences applied, not shown).

use std::io::Write;

use avt::observer::{Observation, Observer, Transcript};
use avt::operation::Operation;
use avt::parser::{DecMode, Function};
use avt::{ScreenKind, Terminal};

use crate::terminal::{PlayerError, StepKind, TerminalReplay};

/// Prefix of annotation lines.
const NOTE: &str = "[sekisho]";

/// Opens the recording `bytes` and writes its transcript.
pub fn export_text(bytes: &[u8], out: &mut impl Write) -> Result<(), PlayerError> {
    write_text(&TerminalReplay::open(bytes)?, out)
}

/// Writes the transcript of an opened recording.
pub fn write_text(replay: &TerminalReplay, out: &mut impl Write) -> Result<(), PlayerError> {
    let h = replay.header();
    let (cols, rows) = replay.size();
    let started = h
        .start_time()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| h.start_unix_us.to_string());
    writeln!(
        out,
        "{NOTE} session {} {} {}@{} from {}, started {started}, {cols}x{rows}",
        h.session_id,
        h.protocol,
        h.user.as_deref().unwrap_or("?"),
        h.target,
        h.source,
    )?;

    // No scrollback: every line leaving the screen goes to the transcript at once. The
    // transcript is collected first because a full-screen block belongs where the
    // application started, among lines that are only emitted later.
    let mut term =
        Terminal::new(usize::from(cols.max(1)), usize::from(rows.max(1))).map_err(|_| {
            PlayerError::LimitExceeded {
                what: "terminal size",
                len: 0,
                max: 0,
            }
        })?;
    let mut transcript = Transcript::new();
    let mut alt = AltScreenCapture::default();
    let mut lines = Vec::new();
    for step in replay.steps() {
        alt.now_us = step.at_us;
        let ((), evicted) = match &step.kind {
            StepKind::Output(text) => term.feed_with(text.as_str(), (&mut alt, &mut transcript)),
            StepKind::Resize { cols, rows } => term.resize_with(
                usize::from(*cols),
                usize::from(*rows),
                (&mut alt, &mut transcript),
            ),
            StepKind::Input(_) | StepKind::Marker(_) => continue,
        };
        lines.extend(evicted);
    }
    lines.extend(transcript.finish(&term));
    if term.active_screen_kind() == ScreenKind::Alternate {
        alt.capture(&term, replay.end_us());
    }
    let mut blocks = alt.blocks.into_iter().peekable();
    for (i, line) in lines.iter().enumerate() {
        while let Some(block) = blocks.next_if(|b| b.pos <= i) {
            write_block(out, &block)?;
        }
        write_lines(out, std::slice::from_ref(line))?;
    }
    for block in blocks {
        write_block(out, &block)?;
    }

    if !replay.markers().is_empty() {
        writeln!(out, "{NOTE} events:")?;
        for m in replay.markers() {
            writeln!(
                out,
                "{NOTE} {} {}: {}",
                clock(m.at_us),
                m.kind,
                one_line(&m.detail)
            )?;
        }
    }
    writeln!(
        out,
        "{NOTE} end {}, {}",
        clock(replay.end_us()),
        if replay.is_complete() {
            "complete recording"
        } else {
            "recording cut short (no trailer)"
        }
    )?;
    out.flush()?;
    Ok(())
}

fn write_lines(out: &mut impl Write, lines: &[String]) -> std::io::Result<()> {
    for l in lines {
        // A hostile target could print text that looks like an annotation; mark it.
        if l.starts_with(NOTE) {
            out.write_all(b" ")?;
        }
        out.write_all(l.as_bytes())?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// `HH:MM:SS` from µs since the start.
pub(crate) fn clock(us: u64) -> String {
    let s = us / 1_000_000;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// The alternate screen's rows, trailing blanks removed.
fn alt_lines(term: &Terminal) -> Vec<String> {
    let mut lines: Vec<String> = term
        .screen()
        .visible_lines()
        .map(|l| l.text().trim_end().to_owned())
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// A full-screen application's last screen.
struct AltBlock {
    /// Transcript position (logical lines before it).
    pos: usize,
    at_us: u64,
    lines: Vec<String>,
}

fn write_block(out: &mut impl Write, b: &AltBlock) -> std::io::Result<()> {
    writeln!(
        out,
        "{NOTE} full-screen output at {} (alternate screen, last state)",
        clock(b.at_us)
    )?;
    write_lines(out, &b.lines)?;
    writeln!(out, "{NOTE} end of full-screen output")
}

/// Captures the alternate screen just before a full-screen application leaves it, because
/// avt's [`Transcript`] follows the primary screen only, and notes where in the transcript
/// the application started.
#[derive(Default)]
struct AltScreenCapture {
    now_us: u64,
    /// Logical lines the transcript has received (evicted, unwrapped rows).
    evicted: usize,
    /// Transcript position at which the current full-screen application started.
    entry: Option<usize>,
    /// In transcript order.
    blocks: Vec<AltBlock>,
}

impl AltScreenCapture {
    fn capture(&mut self, term: &Terminal, at_us: u64) {
        let lines = alt_lines(term);
        let pos = self.entry.take().unwrap_or(self.evicted);
        // Nothing drawn: not worth a block.
        if !lines.is_empty() {
            self.blocks.push(AltBlock { pos, at_us, lines });
        }
    }
}

fn is_alt_mode(m: &DecMode) -> bool {
    matches!(
        m,
        DecMode::AltScreenBuffer | DecMode::SaveCursorAltScreenBuffer
    )
}

impl Observer for AltScreenCapture {
    type Output = ();

    fn before(&mut self, context: &mut Observation<'_>, operation: &Operation) {
        let term = context.terminal();
        let on_alt = term.active_screen_kind() == ScreenKind::Alternate;
        match operation {
            Operation::Function(Function::Decset(modes))
                if !on_alt && modes.as_slice().iter().any(is_alt_mode) =>
            {
                // The block goes after the primary lines above the cursor: those are what
                // had appeared when the application started.
                let cursor_row = term.cursor().row;
                let above = term
                    .primary_screen()
                    .visible_lines()
                    .take(cursor_row)
                    .filter(|l| !l.is_wrapped())
                    .count();
                self.entry = Some(self.evicted + above);
            }
            Operation::Function(Function::Decrst(modes))
                if on_alt && modes.as_slice().iter().any(is_alt_mode) =>
            {
                self.capture(term, self.now_us);
            }
            Operation::Function(Function::Ris) if on_alt => self.capture(term, self.now_us),
            _ => {}
        }
    }

    fn evicted(&mut self, _: &mut Observation<'_>, line: &avt::Line) {
        if !line.is_wrapped() {
            self.evicted += 1;
        }
    }

    fn end(&mut self, _: &mut Observation<'_>) -> Self::Output {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_format() {
        assert_eq!(clock(0), "00:00:00");
        assert_eq!(clock(3_723_000_000), "01:02:03");
    }
}
