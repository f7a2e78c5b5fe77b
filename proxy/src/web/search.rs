//! Find (`GET /search?q=…`, issue #18): one search across sessions, in what
//! `services::typed_index` indexed when each recording was sealed — the commands run and the
//! text shown in terminal sessions (SSH, serial console) and the text typed in graphical ones
//! (RDP, VNC) — with filters; each hit opens the player at its moment. And, for a terminal
//! session's page, the list of the commands run ([`command_list`]).
//!
//! Who finds what follows the player's own rules, so Find shows nothing the caller could not
//! already search session by session: the sessions the caller may see ([`Caller::may_see`]:
//! every session for auditors, security staff and administrators, their own for a
//! contractor), terminal sessions for everyone who may see them, and the typed text of
//! graphical sessions only for auditors and security staff
//! ([`Caller::may_search_typed_text`]). The restriction is applied to the catalogue query
//! whatever the form says, so a contractor never gets another user's hits.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, PreEscaped, html};
use policy::Protocol;
use recorder::catalogue::{MAX_TYPED_QUERY_CHARS, SessionRow, TextKind, TextQuery, TypedTextHit};
use serde::Deserialize;

use super::WebState;
use super::auth::Caller;
use super::filters::{self, nonempty};
use super::html::escape;
use super::i18n::{Lang, labels, tr, trf};
use super::layout::{catalogue_failed, fmt_time, is_terminal, page};

/// Hits shown on one page (newest session first).
pub const MAX_PAGE_HITS: u32 = 200;
/// Commands listed on a session's page at most: a day of shell work is a few hundred; the
/// player and Find reach the rest.
pub const MAX_LISTED_COMMANDS: u32 = 2000;
/// Longest filter value accepted (names and dates are far shorter).
const MAX_FILTER_CHARS: usize = 256;

/// The Find form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct SearchForm {
    q: Option<String>,
    user: Option<String>,
    contractor: Option<String>,
    target: Option<String>,
    protocol: Option<String>,
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// The kinds of line a search may be narrowed to, as the form names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Commands run in terminal sessions.
    Commands,
    /// Text shown in terminal sessions.
    Screen,
    /// Text typed in graphical sessions.
    Typed,
}

impl Kind {
    const ALL: [Kind; 3] = [Kind::Commands, Kind::Screen, Kind::Typed];

    fn as_str(self) -> &'static str {
        match self {
            Kind::Commands => "commands",
            Kind::Screen => "screen",
            Kind::Typed => "typed",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Kind::Commands => "find.kind_commands",
            Kind::Screen => "find.kind_screen",
            Kind::Typed => "find.kind_typed",
        }
    }

    /// What a hit is, by its line's kind and its session's protocol.
    fn of(hit: &TypedTextHit) -> Kind {
        match (hit.kind, is_terminal(hit.protocol)) {
            (TextKind::Screen, _) => Kind::Screen,
            (_, true) => Kind::Commands,
            (_, false) => Kind::Typed,
        }
    }
}

/// What the form asks, checked: the catalogue query (`None`: nothing the caller may find can
/// match, e.g. a contractor asking for graphical typed text), or the message saying what is
/// wrong, in the caller's language.
fn query_of(
    state: &WebState,
    caller: &Caller,
    form: &SearchForm,
) -> Result<Option<TextQuery>, String> {
    let lang = caller.lang;
    let text = form.q.clone().unwrap_or_default();
    if text.chars().count() > MAX_TYPED_QUERY_CHARS {
        let max = MAX_TYPED_QUERY_CHARS.to_string();
        return Err(trf(lang, "find.too_long", &[("max", &max)]));
    }
    let filters = [
        &form.user,
        &form.contractor,
        &form.target,
        &form.protocol,
        &form.kind,
        &form.from,
        &form.to,
    ];
    if filters.iter().any(|v| {
        v.as_ref()
            .is_some_and(|s| s.chars().count() > MAX_FILTER_CHARS)
    }) {
        let max = MAX_FILTER_CHARS.to_string();
        return Err(trf(lang, "filter.too_long", &[("max", &max)]));
    }
    let mut q = TextQuery {
        text,
        user: nonempty(&form.user),
        contractor: nonempty(&form.contractor),
        target: nonempty(&form.target),
        limit: MAX_PAGE_HITS + 1,
        ..TextQuery::default()
    };
    if let Some(p) = nonempty(&form.protocol) {
        q.protocol = Some(
            p.parse::<Protocol>()
                .ok()
                .filter(|p| Protocol::ALL.contains(p))
                .ok_or_else(|| trf(lang, "filter.bad_protocol", &[("value", &p)]))?,
        );
    }
    if let Some(k) = nonempty(&form.kind) {
        let kind = Kind::ALL
            .into_iter()
            .find(|x| x.as_str() == k)
            .ok_or_else(|| trf(lang, "find.bad_kind", &[("value", &k)]))?;
        (q.kind, q.terminal) = match kind {
            Kind::Commands => (Some(TextKind::Typed), Some(true)),
            Kind::Screen => (Some(TextKind::Screen), None),
            Kind::Typed => (Some(TextKind::Typed), Some(false)),
        };
    }
    (q.since, q.until) = filters::period(state, lang, &form.from, &form.to)?;
    // The caller's reach, whatever the form says.
    if !caller.sees_all_sessions() {
        q.user = Some(caller.user.clone());
        q.contractor = None;
    }
    if !caller.may_search_typed_text() {
        if q.terminal == Some(false) || q.protocol.is_some_and(|p| !is_terminal(p)) {
            return Ok(None);
        }
        q.terminal = Some(true);
    }
    Ok(Some(q))
}

/// `GET /search?q=TEXT[&user=…][&contractor=…][&target=…][&protocol=…][&kind=…][&from=…][&to=…]`.
pub async fn page_handler(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Query(form): Query<SearchForm>,
) -> Response {
    let lang = caller.lang;
    let title = tr(lang, "find.title");
    let query = match query_of(&state, &caller, &form) {
        Ok(q) => q,
        Err(message) => {
            let body = html! {
                h1 { (title) }
                (find_form(&state, &caller, &form))
                p.error id="find-error" role="alert" { (message) }
            };
            return (
                StatusCode::BAD_REQUEST,
                page(&caller, title, &body.into_string()),
            )
                .into_response();
        }
    };
    let text = form.q.as_deref().unwrap_or_default();
    let hits = match &query {
        Some(q) if !text.trim().is_empty() => {
            match state.services.catalogue().search_text(q).await {
                Ok(h) => Some(h),
                Err(e) => return catalogue_failed(&state, &caller, &e),
            }
        }
        // Nothing the caller may find can match.
        None if !text.trim().is_empty() => Some(Vec::new()),
        _ => None,
    };
    let body = html! {
        h1 { (title) }
        p.hint id="find-hint" {
            (tr(lang, hint_key(&caller)))
        }
        (find_form(&state, &caller, &form))
        @if let Some(hits) = &hits {
            (results(&state, lang, text, hits))
        }
    };
    page(&caller, title, &body.into_string()).into_response()
}

/// What the caller's Find covers, in a sentence's key.
fn hint_key(caller: &Caller) -> &'static str {
    if caller.may_search_typed_text() {
        "find.hint"
    } else if caller.sees_all_sessions() {
        "find.hint_terminal"
    } else {
        "find.hint_own"
    }
}

/// The form: the search box, then the filters with pick-lists (datalists) of the inventory.
fn find_form(state: &WebState, caller: &Caller, form: &SearchForm) -> Markup {
    let lang = caller.lang;
    let inventory = state.services.inventory();
    let value = |v: &Option<String>| v.clone().unwrap_or_default();
    let kinds: Vec<Kind> = Kind::ALL
        .into_iter()
        .filter(|k| *k != Kind::Typed || caller.may_search_typed_text())
        .collect();
    let protocols: Vec<Protocol> = [
        Protocol::Ssh,
        Protocol::ConsoleSerial,
        Protocol::Rdp,
        Protocol::ConsoleVnc,
    ]
    .into_iter()
    .filter(|p| is_terminal(*p) || caller.may_search_typed_text())
    .collect();
    html! {
        form id="typed-search" method="get" action="/search" role="search"
             aria-label=(tr(lang, "find.title")) {
            p.search {
                label.visually-hidden for="q" { (tr(lang, "find.label")) }
                input id="q" name="q" type="search" maxlength=(MAX_TYPED_QUERY_CHARS)
                      size="40" value=(value(&form.q))
                      placeholder=(tr(lang, "find.placeholder")) autofocus;
                " "
                button id="search-go" type="submit" { (tr(lang, "find.go")) }
            }
            div.filters id="find-filters" {
                @if caller.sees_all_sessions() {
                    label for="f-user" { (tr(lang, "field.user")) }
                    input id="f-user" name="user" type="text" list="users" autocomplete="off"
                          value=(value(&form.user));
                    datalist id="users" {
                        @for u in inventory.users() { option value=(u.name) {} }
                    }
                    label for="f-contractor" { (tr(lang, "field.contractor")) }
                    input id="f-contractor" name="contractor" type="text" list="contractors"
                          autocomplete="off" value=(value(&form.contractor));
                    datalist id="contractors" {
                        @for c in inventory.contractors() { option value=(c.id) { (c.name) } }
                    }
                }
                label for="f-target" { (tr(lang, "field.target")) }
                input id="f-target" name="target" type="text" list="targets" autocomplete="off"
                      value=(value(&form.target));
                datalist id="targets" {
                    @for t in inventory.targets() { option value=(t.name) {} }
                }
                label for="f-protocol" { (tr(lang, "field.protocol")) }
                select id="f-protocol" name="protocol" {
                    option value="" { (tr(lang, "filter.any")) }
                    @for p in &protocols {
                        option value=(p.as_str())
                               selected[form.protocol.as_deref() == Some(p.as_str())] {
                            (labels::protocol(lang, *p))
                        }
                    }
                }
                label for="f-kind" { (tr(lang, "find.kind")) }
                select id="f-kind" name="kind" {
                    option value="" { (tr(lang, "filter.any")) }
                    @for k in &kinds {
                        option value=(k.as_str())
                               selected[form.kind.as_deref() == Some(k.as_str())] {
                            (tr(lang, k.label()))
                        }
                    }
                }
                label for="f-from" { (tr(lang, "field.from")) }
                input id="f-from" name="from" type="date" value=(value(&form.from));
                label for="f-to" { (tr(lang, "field.to")) }
                input id="f-to" name="to" type="date" value=(value(&form.to));
                a id="clear" href="/search" { (tr(lang, "filter.clear")) }
            }
        }
    }
}

/// A session's title as people say it: "tanaka → web01, serial console" (the session list's
/// shape, from a hit rather than a session row).
fn hit_title(lang: Lang, h: &TypedTextHit) -> String {
    format!(
        "{} → {}{}{}",
        h.user,
        h.target,
        tr(lang, "title.separator"),
        labels::protocol(lang, h.protocol)
    )
}

/// The hits, grouped by session (the catalogue returns them newest session first).
fn results(state: &WebState, lang: Lang, q: &str, hits: &[TypedTextHit]) -> Markup {
    if hits.is_empty() {
        return html! { p id="no-hits" role="status" { (tr(lang, "find.none")) } };
    }
    let shown = hits.len().min(MAX_PAGE_HITS as usize);
    let n = shown.to_string();
    let count = if hits.len() > shown {
        trf(lang, "find.count_more", &[("n", &n)])
    } else {
        trf(lang, "find.count", &[("n", &n)])
    };
    let mut groups: Vec<(usize, &[TypedTextHit])> = Vec::new();
    let mut start = 0;
    let visible = hits.get(..shown).unwrap_or(hits);
    for (i, h) in visible.iter().enumerate() {
        let next_differs = visible.get(i + 1).is_none_or(|n| n.session != h.session);
        if next_differs {
            groups.push((start, visible.get(start..=i).unwrap_or_default()));
            start = i + 1;
        }
    }
    html! {
        p id="hit-count" role="status" { (count) }
        div id="hits" {
            @for (first, group) in &groups {
                @if let Some(s) = group.first() {
                    section.find-session data-session=(s.session) {
                        h2 {
                            a.title href={ "/sessions/" (s.session) } { (hit_title(lang, s)) }
                            @if !s.contractor.is_empty() { " " span.muted { "(" (s.contractor) ")" } }
                        }
                        ol.hits {
                            @for (j, h) in group.iter().enumerate() {
                                li.hit data-kind=(Kind::of(h).as_str()) {
                                    a.hit id={ "hit-" (first + j) }
                                      href={ "/sessions/" (h.session) "/play?t=" (seconds(h.at_us)) }
                                      title=(tr(lang, "find.open")) {
                                        time datetime=(h.at().to_rfc3339()) { (fmt_time(state, h.at())) }
                                    }
                                    " " span.kind.muted { (tr(lang, Kind::of(h).label())) } " "
                                    code { (PreEscaped(highlight(&h.text, q))) }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The commands run in a terminal session, each a link into the player at its first key,
/// for the session's page: a section with `h2` and `ol#commands`; empty markup for graphical
/// sessions, for callers who may not see the session, and when nothing is indexed (yet).
pub(super) async fn command_list(state: &WebState, caller: &Caller, row: &SessionRow) -> Markup {
    if !is_terminal(row.protocol) || !caller.may_see(&row.user) {
        return html! {};
    }
    let commands = match state
        .services
        .catalogue()
        .session_text(row.id, TextKind::Typed, MAX_LISTED_COMMANDS + 1)
        .await
    {
        Ok(c) => c,
        Err(e) => {
            // The session page stays useful without its list; the failure is counted and
            // logged like every catalogue failure of the web UI.
            state
                .catalogue_errors
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(error = %e, "Web UI cannot read a session's commands");
            return html! {};
        }
    };
    if commands.is_empty() {
        return html! {};
    }
    let lang = caller.lang;
    let more = commands.len() > MAX_LISTED_COMMANDS as usize;
    let shown = commands
        .get(..MAX_LISTED_COMMANDS as usize)
        .unwrap_or(&commands);
    html! {
        section.commands id="commands-section" {
            h2 { (tr(lang, "find.commands_title")) }
            ol.commands id="commands" {
                @for c in shown {
                    @let at = row.started_at
                        + chrono::Duration::microseconds(i64::try_from(c.at_us).unwrap_or(i64::MAX));
                    li {
                        a href={ "/sessions/" (row.id) "/play?t=" (seconds(c.at_us)) }
                          title=(tr(lang, "find.open")) {
                            time datetime=(at.to_rfc3339()) { (fmt_time(state, at)) }
                        }
                        " " code { (c.text) }
                    }
                }
            }
            @if more {
                p.muted id="commands-more" {
                    (trf(lang, "find.commands_more", &[("n", &MAX_LISTED_COMMANDS.to_string())]))
                }
            }
        }
    }
}

/// `at_us` as the player's `?t=SECONDS`.
pub fn seconds(at_us: u64) -> String {
    format!("{}.{:03}", at_us / 1_000_000, (at_us % 1_000_000) / 1000)
}

/// The line, escaped, with each case-insensitive occurrence of `q` in `<mark>`. Matching is
/// on lower-cased characters one by one, so the marks fall on the line's own characters.
fn highlight(line: &str, q: &str) -> String {
    let fold = |s: &str| -> Vec<char> { s.chars().flat_map(char::to_lowercase).collect() };
    let chars: Vec<char> = line.chars().collect();
    let needle = fold(q);
    // Only where lower-casing keeps one character per character (almost all text) can marks
    // be placed on the original; otherwise the line is shown unmarked.
    let folded: Vec<char> = chars
        .iter()
        .map(|c| {
            let mut l = c.to_lowercase();
            match (l.next(), l.next()) {
                (Some(one), None) => one,
                _ => '\u{0}',
            }
        })
        .collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        let hit = !needle.is_empty()
            && folded
                .get(i..i + needle.len())
                .is_some_and(|w| w == needle.as_slice());
        if hit {
            let s: String = chars
                .get(i..i + needle.len())
                .unwrap_or_default()
                .iter()
                .collect();
            out.push_str("<mark>");
            out.push_str(&escape(&s));
            out.push_str("</mark>");
            i += needle.len();
        } else {
            if let Some(c) = chars.get(i) {
                out.push_str(&escape(&c.to_string()));
            }
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn hits_are_marked_and_escaped() {
        assert_eq!(
            highlight("echo <Secret> SECRET", "secret"),
            "echo &lt;<mark>Secret</mark>&gt; <mark>SECRET</mark>"
        );
        assert_eq!(highlight("日本語", "本"), "日<mark>本</mark>語");
        assert_eq!(seconds(61_234_567), "61.234");
    }
}
