//! asciicast v2 ([spec]): one JSON header line, then one JSON array per event,
//! `[seconds, code, data]`, with `"o"` output, `"i"` input, `"r"` resize (`"COLSxROWS"`) and
//! `"m"` marker events.
//!
//! [spec]: https://docs.asciinema.org/manual/asciicast/v2/

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::terminal::{PlayerError, StepKind, TerminalReplay};

/// What goes into an asciicast export.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AsciicastOptions {
    /// Add typed keys as `"i"` events. Off by default: keys typed at a password prompt are
    /// not on screen but are in the input stream, and exports are made to be shared.
    pub include_input: bool,
    /// Add policy events ("sftp-refused", "session-killed") as `"m"` marker events, which
    /// asciinema-player shows on its timeline (older `asciinema play` ignores them).
    pub markers: bool,
    /// Written as the header's `idle_time_limit`: players cap pauses at this.
    pub idle_time_limit: Option<Duration>,
    /// The header's `title`; by default `"<protocol> <user>@<target> <session id>"`.
    pub title: Option<String>,
}

/// Opens the recording `bytes` and writes it as asciicast v2.
pub fn export_asciicast(
    bytes: &[u8],
    opts: &AsciicastOptions,
    out: &mut impl Write,
) -> Result<(), PlayerError> {
    write_asciicast(&TerminalReplay::open(bytes)?, opts, out)
}

/// Writes an opened recording as asciicast v2.
pub fn write_asciicast(
    replay: &TerminalReplay,
    opts: &AsciicastOptions,
    out: &mut impl Write,
) -> Result<(), PlayerError> {
    writeln!(out, "{}", header_json(replay, opts))?;
    for step in replay.steps() {
        let t = seconds(step.at_us);
        match &step.kind {
            StepKind::Output(text) => writeln!(out, "[{t}, \"o\", {}]", json_str(text))?,
            StepKind::Input(text) if opts.include_input => {
                writeln!(out, "[{t}, \"i\", {}]", json_str(text))?;
            }
            StepKind::Resize { cols, rows } => writeln!(out, "[{t}, \"r\", \"{cols}x{rows}\"]")?,
            StepKind::Marker(i) if opts.markers => {
                if let Some(m) = replay.markers().get(*i) {
                    let label = if m.detail.is_empty() {
                        m.kind.clone()
                    } else {
                        format!("{}: {}", m.kind, m.detail)
                    };
                    writeln!(out, "[{t}, \"m\", {}]", json_str(&label))?;
                }
            }
            StepKind::Input(_) | StepKind::Marker(_) => {}
        }
    }
    out.flush()?;
    Ok(())
}

fn header_json(replay: &TerminalReplay, opts: &AsciicastOptions) -> String {
    let h = replay.header();
    let (cols, rows) = replay.size();
    let title = opts.title.clone().unwrap_or_else(|| {
        format!(
            "{} {}@{} {}",
            h.protocol,
            h.user.as_deref().unwrap_or("?"),
            h.target,
            h.session_id
        )
    });
    let mut s = format!("{{\"version\": 2, \"width\": {cols}, \"height\": {rows}");
    s.push_str(&format!(
        ", \"timestamp\": {}",
        h.start_unix_us.div_euclid(1_000_000)
    ));
    s.push_str(&format!(", \"duration\": {}", seconds(replay.end_us())));
    if let Some(limit) = opts.idle_time_limit {
        s.push_str(&format!(", \"idle_time_limit\": {}", limit.as_secs_f64()));
    }
    s.push_str(&format!(", \"title\": {}", json_str(&title)));
    let mut env = serde_json::Map::new();
    if let Some(term) = replay.term() {
        env.insert("TERM".into(), Value::String(term.to_owned()));
    }
    s.push_str(&format!(", \"env\": {}", Value::Object(env)));
    s.push('}');
    s
}

/// Seconds with microsecond precision, as a JSON number.
fn seconds(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

fn json_str(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_format() {
        assert_eq!(seconds(0), "0.000000");
        assert_eq!(seconds(1_500_001), "1.500001");
    }

    #[test]
    fn json_strings_escape_controls() {
        assert_eq!(json_str("a\x1b[0m\"\n"), "\"a\\u001b[0m\\\"\\n\"");
    }
}
