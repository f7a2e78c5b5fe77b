//! Typed-text search across graphical sessions (`GET /search?q=…`): the lines contractors
//! typed in RDP and VNC sessions, as `services::typed_index` indexed them when each recording
//! was sealed. Each hit opens the player at the moment its line began.
//!
//! Keystrokes are as sensitive as what is on screen and more: only auditors and security
//! staff may search them ([`Caller::may_search_typed_text`]); anyone else gets the same 404 as an
//! unknown page, so the page's existence is not advertised to contractors.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use recorder::catalogue::{MAX_TYPED_QUERY_CHARS, TypedTextHit, TypedTextQuery};
use serde::Deserialize;

use super::WebState;
use super::auth::Caller;
use super::html::escape;
use super::i18n::tr;
use super::pages::{catalogue_failed, fmt_time, not_found, page};

/// Hits shown on one page (newest session first).
pub const MAX_PAGE_HITS: u32 = 200;

/// The search form's fields.
#[derive(Debug, Default, Deserialize)]
pub struct SearchForm {
    q: Option<String>,
    user: Option<String>,
    target: Option<String>,
}

fn non_empty(v: Option<String>) -> Option<String> {
    v.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// `GET /search?q=TEXT[&user=NAME][&target=NAME]`.
pub async fn page_handler(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Query(form): Query<SearchForm>,
) -> Response {
    if !caller.may_search_typed_text() {
        return not_found(&caller);
    }
    let lang = caller.lang;
    let q = form.q.unwrap_or_default();
    let user = non_empty(form.user);
    let target = non_empty(form.target);
    let mut body = format!(
        "<h1>{title}</h1><p class=\"hint\">{hint}</p>\
         <form id=\"typed-search\" method=\"get\" action=\"/search\" class=\"search\">\
         <input id=\"q\" name=\"q\" type=\"search\" maxlength=\"{max}\" value=\"{q}\" placeholder=\"{ph}\" autofocus>\
         <input id=\"user\" name=\"user\" maxlength=\"64\" value=\"{user}\" placeholder=\"{user_ph}\">\
         <input id=\"target\" name=\"target\" maxlength=\"64\" value=\"{target}\" placeholder=\"{target_ph}\">\
         <button id=\"search-go\">{go}</button></form>",
        title = tr(lang, "search.title"),
        hint = tr(lang, "search.hint"),
        max = MAX_TYPED_QUERY_CHARS,
        q = escape(&q),
        ph = tr(lang, "search.placeholder"),
        user = escape(user.as_deref().unwrap_or("")),
        user_ph = tr(lang, "search.user"),
        target = escape(target.as_deref().unwrap_or("")),
        target_ph = tr(lang, "search.target"),
        go = tr(lang, "player.search"),
    );
    if !q.trim().is_empty() {
        let query = TypedTextQuery {
            text: q.clone(),
            user,
            target,
            session: None,
            limit: MAX_PAGE_HITS + 1,
        };
        let hits = match state.services.catalogue().search_typed_text(&query).await {
            Ok(h) => h,
            Err(e) => return catalogue_failed(&state, &caller, &e),
        };
        results(&state, &caller, &q, &hits, &mut body);
    }
    page(&caller, tr(lang, "search.title"), &body).into_response()
}

fn results(state: &WebState, caller: &Caller, q: &str, hits: &[TypedTextHit], body: &mut String) {
    let lang = caller.lang;
    if hits.is_empty() {
        let _ = write!(body, "<p id=\"no-hits\">{}</p>", tr(lang, "player.no_hits"));
        return;
    }
    let shown = hits.len().min(MAX_PAGE_HITS as usize);
    let _ = write!(
        body,
        "<p id=\"hit-count\">{found}: {shown}{more}</p><table id=\"hits\"><thead><tr>\
         <th>{at}</th><th>{user}</th><th>{target}</th><th>{protocol}</th><th>{typed}</th>\
         </tr></thead><tbody>",
        more = if hits.len() > shown { "+" } else { "" },
        found = tr(lang, "search.found"),
        at = tr(lang, "search.at"),
        user = tr(lang, "search.user"),
        target = tr(lang, "search.target"),
        protocol = tr(lang, "search.protocol"),
        typed = tr(lang, "search.typed"),
    );
    for (i, h) in hits.iter().take(shown).enumerate() {
        let _ = write!(
            body,
            "<tr><td><a id=\"hit-{i}\" class=\"hit\" href=\"/sessions/{id}/play?t={t}\">{at}</a></td>\
             <td>{user}</td><td>{target}</td><td>{protocol}</td><td><code>{text}</code></td></tr>",
            id = h.session,
            t = seconds(h.at_us),
            at = fmt_time(state, h.at()),
            user = escape(&h.user),
            target = escape(&h.target),
            protocol = h.protocol,
            text = highlight(&h.text, q),
        );
    }
    body.push_str("</tbody></table>");
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
            let _ = write!(out, "<mark>{}</mark>", escape(&s));
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
