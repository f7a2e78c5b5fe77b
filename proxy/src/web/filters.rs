//! What the filter forms share (session list, Find, denials dashboard): empty means any, dates
//! as people type them, and a from/to range of days in the configured time zone. Errors are
//! the message for the reader, in their language.

use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};

use super::WebState;
use super::i18n::{Lang, tr, trf};

/// The trimmed value, `None` when empty: an empty field matches everything.
pub(super) fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Today in the configured time zone (quick ranges and the date examples use it).
pub(super) fn today(state: &WebState) -> NaiveDate {
    Utc::now()
        .with_timezone(&state.services.inventory().timezone())
        .date_naive()
}

/// The start of `day` in the configured time zone.
pub(super) fn day_start(state: &WebState, day: NaiveDate) -> Option<DateTime<Utc>> {
    let tz = state.services.inventory().timezone();
    tz.from_local_datetime(&day.and_hms_opt(0, 0, 0)?)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

/// A date as people type it: `2026-12-07`, also `2026/12/07` and `20261207`.
pub(super) fn parse_day(s: &str) -> Option<NaiveDate> {
    ["%Y-%m-%d", "%Y/%m/%d", "%Y%m%d", "%Y.%m.%d"]
        .iter()
        .find_map(|f| NaiveDate::parse_from_str(s, f).ok())
}

/// The `from` and `to` days of a form, each a date and `from` not after `to`.
pub(super) fn days(
    state: &WebState,
    lang: Lang,
    from: &Option<String>,
    to: &Option<String>,
) -> Result<(Option<NaiveDate>, Option<NaiveDate>), String> {
    let example = today(state).format("%Y-%m-%d").to_string();
    let day = |v: &str| {
        parse_day(v).ok_or_else(|| {
            trf(
                lang,
                "filter.bad_date",
                &[("value", v), ("example", &example)],
            )
        })
    };
    let from = nonempty(from).map(|d| day(&d)).transpose()?;
    let to = nonempty(to).map(|d| day(&d)).transpose()?;
    if let (Some(a), Some(b)) = (from, to)
        && a > b
    {
        return Err(tr(lang, "filter.bad_range").to_owned());
    }
    Ok((from, to))
}

/// The start of day `d`, or the reader's message when it is out of the representable range.
pub(super) fn start_of(
    state: &WebState,
    lang: Lang,
    d: NaiveDate,
) -> Result<DateTime<Utc>, String> {
    day_start(state, d).ok_or_else(|| tr(lang, "filter.bad_date_range").to_owned())
}

/// The start of the day after `d`: the end of an inclusive `to`.
pub(super) fn end_of(state: &WebState, lang: Lang, d: NaiveDate) -> Result<DateTime<Utc>, String> {
    let next = d
        .succ_opt()
        .ok_or_else(|| tr(lang, "filter.bad_date_range").to_owned())?;
    start_of(state, lang, next)
}

/// A period's two ends, each when given.
pub(super) type Ends = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A form's from/to as a period: from the start of `from` to the end of `to`, each when given.
pub(super) fn period(
    state: &WebState,
    lang: Lang,
    from: &Option<String>,
    to: &Option<String>,
) -> Result<Ends, String> {
    let (from, to) = days(state, lang, from, to)?;
    Ok((
        from.map(|d| start_of(state, lang, d)).transpose()?,
        to.map(|d| end_of(state, lang, d)).transpose()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_read_in_the_forms_people_type() {
        let d = NaiveDate::from_ymd_opt(2026, 12, 7);
        for s in ["2026-12-07", "2026/12/07", "20261207", "2026.12.07"] {
            assert_eq!(parse_day(s), d, "{s}");
        }
        assert_eq!(parse_day("last tuesday"), None);
        assert_eq!(parse_day("7 Dec"), None);
        assert_eq!(parse_day("2026-13-01"), None);
    }
}
