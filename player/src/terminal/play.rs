//! Playback of a terminal recording into a terminal (`sekisho play`).
//!
//! The output is written with its recorded timing, divided by the speed; idle gaps can be
//! capped. The clock is injected (`sleep`), so tests run instantly and a caller can pace
//! playback however it likes.
//!
//! Playback writes the recorded output, escape sequences included, to the viewer's terminal.
//! The target was under the contractor's control and could have printed sequences aimed at
//! the viewer's terminal (queries whose answers get typed into the auditor's shell, clipboard
//! writes): [`OutputSanitizer`] removes those by default; drawing is unaffected.
//! [`PlayOptions::danger_raw_output`] turns the filter off.

use std::io::Write;
use std::time::Duration;

use super::sanitize::OutputSanitizer;
use super::{PlayerError, StepKind, TerminalReplay};

/// Slowest playback speed.
pub const MIN_SPEED: f64 = 0.5;
/// Fastest playback speed.
pub const MAX_SPEED: f64 = 16.0;

/// How to play.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlayOptions {
    /// Speed factor, [`MIN_SPEED`]..=[`MAX_SPEED`].
    pub speed: f64,
    /// Cap on any recorded pause (before the speed is applied): a 20-minute coffee break
    /// plays as this long. `None` keeps pauses as recorded.
    pub skip_idle: Option<Duration>,
    /// Start here (µs since the start): the screen at that moment is drawn at once, then the
    /// output after it plays.
    pub from_us: u64,
    /// Write the recorded output unfiltered, including terminal queries, window operations
    /// and OSC/DCS strings the target printed (see [`OutputSanitizer`]). Off by default.
    pub danger_raw_output: bool,
}

impl Default for PlayOptions {
    fn default() -> Self {
        PlayOptions {
            speed: 1.0,
            skip_idle: None,
            from_us: 0,
            danger_raw_output: false,
        }
    }
}

/// What a playback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlayStats {
    /// Output events written.
    pub events: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Recorded time covered (µs).
    pub recorded_us: u64,
    /// Total time passed to `sleep`.
    pub slept: Duration,
}

/// Plays the terminal recording `bytes` into `out` at `speed` (0.5–16), capping pauses at
/// `skip_idle`, calling `sleep` for each delay (`std::thread::sleep` in the CLI).
pub fn play_terminal(
    bytes: &[u8],
    speed: f64,
    skip_idle: Option<Duration>,
    out: &mut impl Write,
    sleep: impl FnMut(Duration),
) -> Result<PlayStats, PlayerError> {
    let replay = TerminalReplay::open(bytes)?;
    play_replay(
        &replay,
        PlayOptions {
            speed,
            skip_idle,
            ..PlayOptions::default()
        },
        out,
        sleep,
    )
}

/// Plays an opened recording (see [`play_terminal`]), optionally from the middle.
pub fn play_replay(
    replay: &TerminalReplay,
    opts: PlayOptions,
    out: &mut impl Write,
    mut sleep: impl FnMut(Duration),
) -> Result<PlayStats, PlayerError> {
    if !(MIN_SPEED..=MAX_SPEED).contains(&opts.speed) {
        return Err(PlayerError::InvalidSpeed(opts.speed));
    }
    let cap_us = opts
        .skip_idle
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    let mut stats = PlayStats::default();
    let mut prev_us = opts.from_us;
    let mut filter = OutputSanitizer::new();
    let mut buf = String::new();
    let mut write = |text: &str, out: &mut dyn Write| -> std::io::Result<usize> {
        if opts.danger_raw_output {
            out.write_all(text.as_bytes())?;
            return Ok(text.len());
        }
        buf.clear();
        filter.push(text, &mut buf);
        out.write_all(buf.as_bytes())?;
        Ok(buf.len())
    };
    if opts.from_us > 0 {
        let dump = replay.dump_at(opts.from_us);
        // Clear the viewer's screen first so the dump lands on a blank terminal.
        out.write_all(b"\x1b[H\x1b[2J")?;
        write(&dump, out)?;
    }
    for step in replay.steps() {
        if step.at_us <= opts.from_us && opts.from_us > 0 {
            continue;
        }
        let StepKind::Output(text) = &step.kind else {
            continue;
        };
        let gap = step.at_us.saturating_sub(prev_us);
        let gap = cap_us.map_or(gap, |c| gap.min(c));
        prev_us = step.at_us;
        if gap > 0 {
            let d = Duration::from_secs_f64(gap as f64 / 1e6 / opts.speed);
            if !d.is_zero() {
                out.flush()?;
                sleep(d);
                stats.slept += d;
            }
        }
        let n = write(text, out)?;
        stats.events += 1;
        stats.bytes += n as u64;
    }
    out.flush()?;
    stats.recorded_us = prev_us.saturating_sub(opts.from_us);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    #[test]
    fn speed_bounds() {
        assert!((super::MIN_SPEED..=super::MAX_SPEED).contains(&1.0));
        assert!(!(super::MIN_SPEED..=super::MAX_SPEED).contains(&f64::NAN));
    }
}
