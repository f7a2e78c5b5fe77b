//! The session list (`GET /sessions`): who reached what, when, for how long, and how it ended;
//! filters that forgive (a prefix in any case), pick-lists from the inventory, quick ranges, a
//! result count and keyset paging. A filter that does not parse is answered with the form and
//! a message in the page's language, never a parser's error.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Days, NaiveDate, Utc};
use maud::{Markup, html};
use policy::config::Role;
use policy::{Protocol, SessionId};
use recorder::catalogue::{Outcome, SessionCursor, SessionFilter, SessionRow};
use serde::Deserialize;

use super::WebState;
use super::auth::Caller;
use super::filters::{self, nonempty, today};
use super::i18n::{Lang, labels, tr, trf};
use super::layout::{catalogue_failed, fmt_time, page, urlenc};

/// Sessions per page of the list.
pub const PAGE_SIZE: u32 = 50;
/// Longest filter value accepted (names in the inventory are short).
pub const MAX_FILTER_LEN: usize = 256;

/// The list's filters as the form sends them (all optional; empty means any).
#[derive(Debug, Default, Deserialize)]
pub struct SessionQuery {
    user: Option<String>,
    contractor: Option<String>,
    target: Option<String>,
    protocol: Option<String>,
    from: Option<String>,
    to: Option<String>,
    outcome: Option<String>,
    after: Option<String>,
}

/// Why a filter was refused: the message the reader gets, in their language.
struct FilterError(String);

fn parse_cursor(s: &str) -> Option<SessionCursor> {
    let (micros, id) = s.split_once('_')?;
    Some(SessionCursor {
        started_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
        id: id.parse::<SessionId>().ok()?,
    })
}

fn encode_cursor(c: &SessionCursor) -> String {
    format!("{}_{}", c.started_at.timestamp_micros(), c.id)
}

impl SessionQuery {
    /// The catalogue filter (without a row limit), or the message saying what is wrong.
    fn filter(&self, state: &WebState, caller: &Caller) -> Result<SessionFilter, FilterError> {
        let lang = caller.lang;
        let values = [
            &self.user,
            &self.contractor,
            &self.target,
            &self.protocol,
            &self.from,
            &self.to,
            &self.outcome,
            &self.after,
        ];
        if values
            .iter()
            .any(|v| v.as_ref().is_some_and(|s| s.len() > MAX_FILTER_LEN))
        {
            let max = MAX_FILTER_LEN.to_string();
            return Err(FilterError(trf(lang, "filter.too_long", &[("max", &max)])));
        }
        let inventory = state.services.inventory();
        let mut f = SessionFilter::default();
        // A name picked from the list (or typed whole) is matched exactly, which the
        // catalogue's indexes answer; anything else is a prefix in any case.
        if let Some(u) = nonempty(&self.user) {
            if inventory.users().iter().any(|x| x.name == u) {
                f.user = Some(u);
            } else {
                f.user_prefix = Some(u);
            }
        }
        if let Some(c) = nonempty(&self.contractor) {
            if inventory.contractors().iter().any(|x| x.id == c) {
                f.contractor = Some(c);
            } else {
                f.contractor_prefix = Some(c);
            }
        }
        if let Some(t) = nonempty(&self.target) {
            if inventory.targets().iter().any(|x| x.name == t) {
                f.target = Some(t);
            } else {
                f.target_prefix = Some(t);
            }
        }
        if !caller.sees_all_sessions() {
            // A contractor sees only their own sessions, whatever the form says.
            f.user = Some(caller.user.clone());
            f.user_prefix = None;
            f.contractor = None;
            f.contractor_prefix = None;
        }
        if let Some(p) = nonempty(&self.protocol) {
            f.protocol =
                Some(p.parse::<Protocol>().map_err(|_| {
                    FilterError(trf(lang, "filter.bad_protocol", &[("value", &p)]))
                })?);
        }
        if let Some(o) = nonempty(&self.outcome) {
            f.outcome = Some(
                o.parse::<Outcome>()
                    .map_err(|_| FilterError(trf(lang, "filter.bad_outcome", &[("value", &o)])))?,
            );
        }
        let (since, until) =
            filters::period(state, lang, &self.from, &self.to).map_err(FilterError)?;
        f.since = since;
        f.until = until;
        if let Some(a) = nonempty(&self.after) {
            f.after = Some(
                parse_cursor(&a)
                    .ok_or_else(|| FilterError(tr(lang, "filter.bad_page").to_owned()))?,
            );
        }
        Ok(f)
    }

    /// The query string of these filters with `from`/`to` replaced, without `after`.
    fn with_range(&self, from: Option<&str>, to: Option<&str>) -> String {
        let pairs = [
            ("user", nonempty(&self.user)),
            ("contractor", nonempty(&self.contractor)),
            ("target", nonempty(&self.target)),
            ("protocol", nonempty(&self.protocol)),
            ("from", from.map(str::to_owned)),
            ("to", to.map(str::to_owned)),
            ("outcome", nonempty(&self.outcome)),
        ];
        pairs
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", urlenc(v))))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// The query string without `after`.
    fn base(&self) -> String {
        self.with_range(
            nonempty(&self.from).as_deref(),
            nonempty(&self.to).as_deref(),
        )
    }
}

/// A session's title as people say it: "tanaka → web01, serial console".
pub(super) fn session_title(lang: Lang, row: &SessionRow) -> String {
    format!(
        "{} → {}{}{}",
        row.user,
        row.target,
        tr(lang, "title.separator"),
        labels::protocol(lang, row.protocol)
    )
}

/// `h:mm:ss` (or `m:ss` under an hour).
pub(super) fn fmt_duration(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    let (h, m, s) = (s / 3600, (s / 60) % 60, s % 60);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}")
    } else {
        format!("{m}:{s:02}")
    }
}

/// A size in bytes as people read it (1000-based, one decimal).
pub(super) fn fmt_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1000.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// The recording column: its state (live is "recording (live)") and size.
fn recording_cell(lang: Lang, row: &SessionRow) -> Markup {
    let Some(_) = row.recording else {
        return html! { span.muted { (tr(lang, "verify.none")) } };
    };
    let state = row.recording_state;
    html! {
        @if let Some(s) = state {
            span class={ "rec rec-" (s.as_str()) } { (labels::recording_state(lang, s)) }
        }
        @if let Some(size) = row.recording_size {
            " " span.size { (fmt_size(size)) }
        }
    }
}

fn session_table(state: &WebState, lang: Lang, rows: &[SessionRow]) -> Markup {
    let now = Utc::now();
    html! {
        table.sessions id="sessions" {
            caption.visually-hidden { (tr(lang, "sessions.title")) }
            thead { tr {
                th scope="col" { (tr(lang, "field.session")) }
                th scope="col" { (tr(lang, "field.started")) }
                th scope="col" { (tr(lang, "field.duration")) }
                th scope="col" { (tr(lang, "field.outcome")) }
                th scope="col" { (tr(lang, "field.recording")) }
                th scope="col" { (tr(lang, "field.source")) }
                th scope="col" { span.visually-hidden { (tr(lang, "session.play")) } }
            } }
            tbody {
                @for r in rows {
                    tr.session-row data-id=(r.id) {
                        td { a.title href={ "/sessions/" (r.id) } { (session_title(lang, r)) }
                             @if !r.contractor.is_empty() { " " span.muted { "(" (r.contractor) ")" } } }
                        td { time datetime=(r.started_at.to_rfc3339()) { (fmt_time(state, r.started_at)) } }
                        td.num { (fmt_duration(r.ended_at.unwrap_or(now) - r.started_at)) }
                        td { span class={ "outcome outcome-" (r.outcome.as_str()) } { (labels::outcome(lang, r.outcome)) } }
                        td { (recording_cell(lang, r)) }
                        td { (r.source) }
                        td { @if r.recording.is_some() {
                            a.play href={ "/sessions/" (r.id) "/play" }
                              aria-label=(trf(lang, "sessions.play_label", &[("title", &session_title(lang, r))])) {
                                "▶ " (tr(lang, "session.play"))
                            }
                        } }
                    }
                }
            }
        }
    }
}

/// The filter form, with pick-lists (datalists) of the inventory's names and quick ranges.
fn filter_form(state: &WebState, caller: &Caller, q: &SessionQuery) -> Markup {
    let lang = caller.lang;
    let inventory = state.services.inventory();
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let today = today(state);
    let day = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
    let yesterday = today.checked_sub_days(Days::new(1)).unwrap_or(today);
    let week_ago = today.checked_sub_days(Days::new(6)).unwrap_or(today);
    let ranges = [
        ("range-today", "range.today", day(today), day(today)),
        (
            "range-yesterday",
            "range.yesterday",
            day(yesterday),
            day(yesterday),
        ),
        ("range-week", "range.week", day(week_ago), day(today)),
    ];
    let protocols = [
        Protocol::ConsoleSerial,
        Protocol::ConsoleVnc,
        Protocol::Rdp,
        Protocol::Ssh,
    ];
    html! {
        form.filters id="filters" method="get" action="/sessions" role="search"
             aria-label=(tr(lang, "filter.label")) {
            @if caller.sees_all_sessions() {
                label for="f-user" { (tr(lang, "field.user")) }
                input id="f-user" name="user" type="text" list="users" autocomplete="off"
                      value=(value(&q.user));
                datalist id="users" {
                    @for u in inventory.users().iter().filter(|u| u.role == Role::Contractor) {
                        option value=(u.name) {}
                    }
                }
                label for="f-contractor" { (tr(lang, "field.contractor")) }
                input id="f-contractor" name="contractor" type="text" list="contractors"
                      autocomplete="off" value=(value(&q.contractor));
                datalist id="contractors" {
                    @for c in inventory.contractors() { option value=(c.id) { (c.name) } }
                }
            }
            label for="f-target" { (tr(lang, "field.target")) }
            input id="f-target" name="target" type="text" list="targets" autocomplete="off"
                  value=(value(&q.target));
            datalist id="targets" {
                @for t in inventory.targets() { option value=(t.name) {} }
            }
            label for="f-protocol" { (tr(lang, "field.protocol")) }
            select id="f-protocol" name="protocol" {
                option value="" { (tr(lang, "filter.any")) }
                @for p in protocols {
                    option value=(p.as_str()) selected[q.protocol.as_deref() == Some(p.as_str())] {
                        (labels::protocol(lang, p))
                    }
                }
            }
            label for="f-outcome" { (tr(lang, "field.outcome")) }
            select id="f-outcome" name="outcome" {
                option value="" { (tr(lang, "filter.any")) }
                @for o in Outcome::ALL {
                    option value=(o.as_str()) selected[q.outcome.as_deref() == Some(o.as_str())] {
                        (labels::outcome(lang, *o))
                    }
                }
            }
            label for="f-from" { (tr(lang, "field.from")) }
            input id="f-from" name="from" type="date" value=(value(&q.from));
            label for="f-to" { (tr(lang, "field.to")) }
            input id="f-to" name="to" type="date" value=(value(&q.to));
            button id="apply" type="submit" { (tr(lang, "filter.apply")) }
            a id="clear" href="/sessions" { (tr(lang, "filter.clear")) }
        }
        p.ranges id="ranges" {
            span { (tr(lang, "range.label")) }
            @for (id, key, from, to) in &ranges {
                a id=(id) href={ "/sessions?" (q.with_range(Some(from), Some(to))) } { (tr(lang, key)) }
            }
        }
    }
}

/// `GET /sessions`: the list with filters, 50 per page (keyset paging).
pub async fn sessions(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Query(q): Query<SessionQuery>,
) -> Response {
    let lang = caller.lang;
    let title = tr(lang, "sessions.title");
    let filter = match q.filter(&state, &caller) {
        Ok(f) => f,
        Err(FilterError(message)) => {
            let body = html! {
                h1 { (title) }
                (filter_form(&state, &caller, &q))
                p.error id="filter-error" role="alert" { (message) }
            };
            return (
                StatusCode::BAD_REQUEST,
                page(&caller, title, &body.into_string()),
            )
                .into_response();
        }
    };
    let catalogue = state.services.catalogue();
    let total = match catalogue
        .count_sessions(&SessionFilter {
            after: None,
            ..filter.clone()
        })
        .await
    {
        Ok(n) => n,
        Err(e) => return catalogue_failed(&state, &caller, &e),
    };
    let mut rows = match catalogue
        .list_sessions(&SessionFilter {
            limit: Some(PAGE_SIZE + 1),
            ..filter
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return catalogue_failed(&state, &caller, &e),
    };
    let more = rows.len() > PAGE_SIZE as usize;
    rows.truncate(PAGE_SIZE as usize);
    let base = q.base();
    let sep = if base.is_empty() { "" } else { "&" };
    let first_page = q.after.as_deref().is_some_and(|a| !a.is_empty());
    let next = rows.last().filter(|_| more).map(|last| {
        format!(
            "/sessions?{base}{sep}after={}",
            urlenc(&encode_cursor(&last.cursor()))
        )
    });
    let body = html! {
        h1 { (title) }
        (filter_form(&state, &caller, &q))
        p.count id="result-count" aria-live="polite" {
            (trf(lang, "sessions.count", &[("n", &total.to_string())]))
        }
        @if rows.is_empty() {
            p id="no-sessions" { (tr(lang, "sessions.none")) }
        } @else {
            div.table-wrap { (session_table(&state, lang, &rows)) }
        }
        nav.paging aria-label=(tr(lang, "sessions.paging")) {
            @if first_page {
                a id="first-page" href={ "/sessions?" (base) } { (tr(lang, "sessions.first")) }
            }
            @if let Some(next) = next {
                a id="next-page" href=(next) { (tr(lang, "sessions.next")) }
            }
        }
    };
    page(&caller, title, &body.into_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_people_write_them() {
        assert_eq!(fmt_size(999), "999 B");
        assert_eq!(fmt_size(143_000), "143.0 KB");
        assert_eq!(fmt_size(36_900_000), "36.9 MB");
        assert_eq!(fmt_duration(chrono::Duration::seconds(65)), "1:05");
        assert_eq!(fmt_duration(chrono::Duration::seconds(3725)), "1:02:05");
        assert_eq!(fmt_duration(chrono::Duration::seconds(-3)), "0:00");
    }
}
