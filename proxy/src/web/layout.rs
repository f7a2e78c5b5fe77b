//! What every page of a logged-in caller shares: the page with its navigation, the error
//! pages, times in the configured zone, and small helpers of the HTML. (The shell itself, also
//! for the login page, is [`super::html`].)

use std::sync::atomic::Ordering;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::html;
use policy::Protocol;
use recorder::catalogue::CatalogueError;
use std::fmt::Write as _;
use tracing::warn;

use super::WebState;
use super::auth::Caller;
use super::html::shell;
use super::i18n::{labels, tr};

/// Percent-encodes a query value.
pub(super) fn urlenc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A page for a logged-in caller: navigation by role, who is logged in, the logout form.
pub(super) fn page(caller: &Caller, title: &str, body: &str) -> Html<String> {
    let lang = caller.lang;
    let nav = html! {
        nav aria-label=(tr(lang, "nav.label")) {
            a id="nav-sessions" href="/sessions" { (tr(lang, "nav.sessions")) }
            @if caller.is_security() {
                a id="nav-denials" href="/denials" { (tr(lang, "nav.denials")) }
                a id="nav-live" href="/live" { (tr(lang, "nav.live")) }
            }
            // Find answers everyone within what they may see (their own sessions, for a
            // contractor; terminal text only, for an administrator).
            a id="nav-search" href="/search" { (tr(lang, "nav.search")) }
        }
        span.who id="who" { (caller.user) " (" (labels::role(lang, caller.role)) ")" }
        form.inline method="post" action="/logout" {
            input type="hidden" name="csrf" value=(caller.csrf);
            button id="logout" { (tr(lang, "nav.logout")) }
        }
    };
    shell(lang, title, nav, body)
}

/// An error page's body: the message, announced.
fn error_body(msg: &str) -> String {
    html! { p.error role="alert" { (msg) } }.into_string()
}

pub(super) fn not_found(caller: &Caller) -> Response {
    let msg = tr(caller.lang, "error.notfound");
    (StatusCode::NOT_FOUND, page(caller, msg, &error_body(msg))).into_response()
}

pub(super) fn catalogue_failed(state: &WebState, caller: &Caller, e: &CatalogueError) -> Response {
    state.catalogue_errors.fetch_add(1, Ordering::Relaxed);
    warn!(error = %e, "Web UI cannot read the catalogue");
    let msg = tr(caller.lang, "error.catalogue");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        page(caller, msg, &error_body(msg)),
    )
        .into_response()
}

pub(super) fn fmt_time(state: &WebState, t: DateTime<Utc>) -> String {
    t.with_timezone(&state.services.inventory().timezone())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

pub(super) fn is_terminal(p: Protocol) -> bool {
    matches!(p, Protocol::Ssh | Protocol::ConsoleSerial)
}
