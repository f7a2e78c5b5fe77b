//! Contract time windows such as `"mon-fri 08:30-20:00"`.
//!
//! Grammar: `[DAYS ]HH:MM-HH:MM`.
//! - DAYS is a comma list of days (`mon`..`sun`) or day ranges (`mon-fri`); a range may wrap
//!   (`fri-mon` is fri, sat, sun, mon). Without DAYS the window applies every day.
//! - Times are local to the configured timezone. The start minute is inside the window, the
//!   end minute is not (`08:30-20:00` allows 08:30 through 19:59). `24:00` may end a window.
//! - Overnight windows are allowed: `fri 22:00-06:00` runs from Friday 22:00 to Saturday 06:00.
//!   The days name the day the window *starts*.
//! - Start and end may not be equal (an all-day window is `00:00-24:00`).

use std::fmt;

use chrono::{Datelike, NaiveDateTime, Timelike, Weekday};

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MINUTES_PER_DAY: u16 = 24 * 60;

/// One parsed contract window.
///
/// INVARIANT: `days` has at least one bit set, `start < 1440`, `end <= 1440`, `start != end`.
#[derive(Clone, PartialEq, Eq)]
pub struct Window {
    /// Bit `n` set = the window starts on day `n` (0 = Monday).
    days: u8,
    /// Minutes after local midnight, inclusive.
    start: u16,
    /// Minutes after local midnight, exclusive; `<= start` means the window ends the next day.
    end: u16,
    /// The text as written, for reasons and Display.
    text: String,
}

impl fmt::Debug for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Window({:?})", self.text)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn parse_day(s: &str) -> Result<u8, String> {
    DAY_NAMES
        .iter()
        .position(|d| d.eq_ignore_ascii_case(s))
        .and_then(|p| u8::try_from(p).ok())
        .ok_or_else(|| format!("unknown day {s:?} (expected mon, tue, wed, thu, fri, sat or sun)"))
}

fn parse_days(s: &str) -> Result<u8, String> {
    let mut bits = 0u8;
    for item in s.split(',') {
        let item = item.trim();
        if item.is_empty() {
            return Err("empty day in day list".to_owned());
        }
        match item.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (parse_day(a.trim())?, parse_day(b.trim())?);
                let mut d = a;
                loop {
                    bits |= 1 << d;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => bits |= 1 << parse_day(item)?,
        }
    }
    Ok(bits)
}

fn parse_time(s: &str, allow_24: bool) -> Result<u16, String> {
    let bad = || format!("bad time {s:?} (expected HH:MM)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if m > 59 || h > 24 || (h == 24 && (m != 0 || !allow_24)) {
        return Err(format!("time {s:?} is out of range"));
    }
    Ok(h * 60 + m)
}

impl Window {
    /// Parses a window; the error says what is wrong (lowercase, no period).
    pub fn parse(text: &str) -> Result<Window, String> {
        let trimmed = text.trim();
        let (days, times) = match trimmed.rsplit_once(char::is_whitespace) {
            Some((d, t)) => (parse_days(d.trim())?, t),
            None => (0x7f, trimmed),
        };
        let (a, b) = times
            .split_once('-')
            .ok_or_else(|| format!("bad time range {times:?} (expected HH:MM-HH:MM)"))?;
        let start = parse_time(a, false)?;
        let end = parse_time(b, true)?;
        if start == end {
            return Err(format!(
                "window {trimmed:?} is empty: start and end are equal (use 00:00-24:00 for all day)"
            ));
        }
        Ok(Window {
            days,
            start,
            end,
            text: trimmed.to_owned(),
        })
    }

    /// True if the window runs past midnight.
    pub fn is_overnight(&self) -> bool {
        self.end <= self.start
    }

    fn starts_on(&self, day: Weekday) -> bool {
        self.days & (1 << day.num_days_from_monday()) != 0
    }

    /// Is the local time `at` inside this window (start inclusive, end exclusive)?
    pub fn contains(&self, at: NaiveDateTime) -> bool {
        // Hours and minutes are < 24 and < 60, so this fits a u16.
        let minute = u16::try_from(at.hour() * 60 + at.minute()).unwrap_or(MINUTES_PER_DAY);
        let day = at.weekday();
        if self.is_overnight() {
            (self.starts_on(day) && minute >= self.start)
                || (self.starts_on(day.pred()) && minute < self.end)
        } else {
            self.starts_on(day) && minute >= self.start && minute < self.end
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> NaiveDateTime {
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(h, min, 0)
            .unwrap()
    }

    #[test]
    fn weekday_window_edges() {
        let w = Window::parse("mon-fri 08:30-20:00").unwrap();
        // 2026-11-27 is a Friday.
        assert!(!w.contains(at(2026, 11, 27, 8, 29)));
        assert!(w.contains(at(2026, 11, 27, 8, 30)));
        assert!(w.contains(at(2026, 11, 27, 19, 59)));
        assert!(!w.contains(at(2026, 11, 27, 20, 0)));
        assert!(!w.contains(at(2026, 11, 28, 12, 0)));
    }

    #[test]
    fn lists_and_wrapping_ranges() {
        let w = Window::parse("mon,wed,fri 09:00-17:00").unwrap();
        assert!(w.contains(at(2026, 11, 25, 9, 0))); // Wednesday
        assert!(!w.contains(at(2026, 11, 24, 9, 0))); // Tuesday
        let w = Window::parse("fri-mon 09:00-17:00").unwrap();
        assert!(w.contains(at(2026, 11, 29, 10, 0))); // Sunday
        assert!(!w.contains(at(2026, 11, 25, 10, 0))); // Wednesday
        let w = Window::parse("10:00-11:00").unwrap();
        assert!(w.contains(at(2026, 11, 29, 10, 0)));
        let w = Window::parse("sat 00:00-24:00").unwrap();
        assert!(w.contains(at(2026, 11, 28, 23, 59)));
        assert!(!w.contains(at(2026, 11, 29, 0, 0)));
    }

    #[test]
    fn overnight_belongs_to_start_day() {
        let w = Window::parse("fri 22:00-06:00").unwrap();
        assert!(!w.contains(at(2026, 11, 27, 21, 59)));
        assert!(w.contains(at(2026, 11, 27, 22, 0)));
        assert!(w.contains(at(2026, 11, 28, 5, 59))); // Saturday morning
        assert!(!w.contains(at(2026, 11, 28, 6, 0)));
        assert!(!w.contains(at(2026, 11, 27, 5, 0))); // Friday morning: Thursday not listed
        assert!(!w.contains(at(2026, 11, 28, 22, 0))); // Saturday night
    }

    #[test]
    fn rejects_bad_windows() {
        for bad in [
            "",
            "mon-fri",
            "mon-fri 8:30-20:00",
            "mon-fri 08:30-25:00",
            "mon-fri 08:60-20:00",
            "mon-fri 08:30",
            "funday 08:30-20:00",
            "mon,,fri 08:30-20:00",
            "mon 10:00-10:00",
            "mon 24:00-10:00",
        ] {
            assert!(Window::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
