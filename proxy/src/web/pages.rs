//! The web UI's pages. Each handler takes a [`Caller`] (no caller: redirect to the login
//! page) and checks the caller's role itself; a session the caller may not see is a 404.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use policy::Protocol;
use recorder::catalogue::{DenialFilter, Outcome, SessionFilter, SessionRow};
use serde::Deserialize;
use tracing::{info, warn};

use super::WebState;
use super::access::{read_recording, replay_of, visible_session};
use super::auth::Caller;
use super::cookies::set_cookie;
use super::denials::MAX_DASHBOARD_DENIALS;
use super::i18n::{Lang, labels, tr, trf};
use super::layout::{catalogue_failed, fmt_time, is_terminal, not_found, page};
use super::session_list::{fmt_duration, fmt_size, session_title};
use maud::html;

/// Longest reason for an emergency stop, in characters.
pub const MAX_STOP_REASON: usize = 500;
/// How long the emergency stop waits for the session to end before showing its page.
const STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// One stylesheet for every page; the player's and the dashboard's rules live in their own
/// files for reading.
const STYLE: &str = concat!(
    include_str!("assets/style.css"),
    include_str!("assets/player.css"),
    include_str!("assets/denials.css")
);
const PLAYER_JS: &str = include_str!("assets/player.js");
const WATCH_JS: &str = include_str!("assets/watch.js");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// `GET /`.
pub async fn index(_caller: Caller) -> Redirect {
    Redirect::to("/sessions")
}

/// `GET /lang/{code}`: remembers the language in a cookie.
pub async fn set_lang(
    State(state): State<Arc<WebState>>,
    Path(code): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(lang) = Lang::parse(&code) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    // Back to the page the link was on, when it is ours (a relative path), else the list.
    let back = headers
        .get(header::REFERER)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.find("://").map(|i| r.get(i + 3..).unwrap_or("")))
        .and_then(|rest| rest.find('/').and_then(|i| rest.get(i..)))
        .filter(|p| p.starts_with('/') && !p.starts_with("//"))
        .unwrap_or("/sessions")
        .to_owned();
    let mut resp = Redirect::to(&back).into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, "lang", lang.code(), Some(365 * 24 * 3600)),
    );
    resp
}

/// The keys a recording may be signed by: this instance's, and those the instances sharing
/// the catalogue registered (each signs its own recordings, and seals a dead one's). With no
/// key at all, any signature is checked for self-consistency only.
async fn trusted_keys(state: &WebState) -> Vec<ed25519_dalek::VerifyingKey> {
    let mut keys: Vec<_> = state.verifying_key.into_iter().collect();
    match state.services.catalogue().signer_keys().await {
        Ok(signers) => keys.extend(signers),
        Err(e) => {
            warn!(error = %e, "Cannot read the instances' keys; trusting this instance's only")
        }
    }
    keys
}

/// The verification state of a session's recording: (css class, text).
async fn verification(state: &WebState, lang: Lang, row: &SessionRow) -> (String, String) {
    let Some(location) = row.recording.as_deref() else {
        return ("none".into(), tr(lang, "verify.none").into());
    };
    if row.ended_at.is_none() {
        // Still being written: its end is not signed yet, which is not a fault.
        return ("live".into(), tr(lang, "recording.live").into());
    }
    // Streamed and cached per file version (see `verify_cache`): a view of an unchanged
    // recording does not read it again, and a changed one is verified again.
    let Some(verdict) = state
        .verified
        .verify(
            location,
            trusted_keys(state).await,
            state.services.recordings(),
        )
        .await
    else {
        return ("unavailable".into(), tr(lang, "verify.unavailable").into());
    };
    use recorder::VerifyState as V;
    match &verdict {
        V::Intact => ("intact".into(), tr(lang, "verify.intact").into()),
        V::Interrupted => ("interrupted".into(), tr(lang, "verify.interrupted").into()),
        V::Incomplete { reason, .. } => (
            "incomplete".into(),
            format!("{}: {}", tr(lang, "verify.incomplete"), reason),
        ),
        V::Tampered { reason, offset } => (
            "tampered".into(),
            format!(
                "{} (offset {offset}): {reason}",
                tr(lang, "verify.tampered")
            ),
        ),
    }
}

/// `GET /sessions/{id}`: catalogue data, timeline, verification, download, emergency stop.
pub async fn session(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let lang = caller.lang;
    let row = match visible_session(&state, &caller, &id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(&caller),
        Err(resp) => return resp,
    };
    let events = match state.services.catalogue().session_events(row.id).await {
        Ok(e) => e,
        Err(e) => return catalogue_failed(&state, &caller, &e),
    };
    let (vclass, vtext) = verification(&state, lang, &row).await;
    let commands = super::search::command_list(&state, &caller, &row).await;
    let title = session_title(lang, &row);
    let live = row.outcome == Outcome::Live;
    let duration = fmt_duration(row.ended_at.unwrap_or_else(Utc::now) - row.started_at);
    let body = html! {
        h1 { (title) }
        p.subtitle { (tr(lang, "field.id")) " " code { (row.id) } }
        dl.session id="session" {
            dt { (tr(lang, "field.user")) } dd { (row.user) }
            dt { (tr(lang, "field.contractor")) } dd { (row.contractor) }
            dt { (tr(lang, "field.target")) } dd { (row.target) }
            dt { (tr(lang, "field.protocol")) } dd { (labels::protocol(lang, row.protocol)) }
            dt { (tr(lang, "field.source")) } dd { (row.source) }
            dt { (tr(lang, "field.path")) } dd { (row.path) }
            dt { (tr(lang, "field.started")) } dd { (fmt_time(&state, row.started_at)) }
            dt { (tr(lang, "field.ended")) }
            dd { @if let Some(t) = row.ended_at { (fmt_time(&state, t)) } }
            dt { (tr(lang, "field.duration")) } dd { (duration) }
            dt { (tr(lang, "field.outcome")) }
            dd { span id="outcome" class={ "outcome outcome-" (row.outcome.as_str()) } {
                (labels::outcome(lang, row.outcome)) } }
            @if let Some(c) = row.console_session {
                dt { (tr(lang, "field.console")) } dd { a href={ "/sessions/" (c) } { (c) } }
            }
            dt { (tr(lang, "field.recording_state")) }
            dd { @if let Some(s) = row.recording_state {
                span id="recording-state" class={ "rec rec-" (s.as_str()) } {
                    (labels::recording_state(lang, s)) }
                @if let Some(size) = row.recording_size { " " span.size { (fmt_size(size)) } }
            } }
            dt { (tr(lang, "field.verification")) }
            dd { span id="verification" class={ "verify-" (vclass) } { (vtext) } }
            @if let Some(d) = &row.detail {
                dt { (tr(lang, "field.detail")) } dd { (d) }
            }
        }
        @if row.recording.is_some() {
            p.actions {
                a.button id="play" href={ "/sessions/" (row.id) "/play" } { "▶ " (tr(lang, "session.play")) }
                a id="download" href={ "/sessions/" (row.id) "/recording" } { (tr(lang, "session.download")) }
                @if row.ended_at.is_some() && caller.sees_all_sessions() {
                    a id="bundle" href={ "/sessions/" (row.id) "/bundle" } { (tr(lang, "session.bundle")) }
                }
                @if live && caller.sees_all_sessions() {
                    a id="watch" href={ "/sessions/" (row.id) "/watch" } { (tr(lang, "live.watch")) }
                }
            }
        }
        @if live && caller.is_security() {
            (stop_form(&caller, &row, None))
        }
        (commands)
        h2 { (tr(lang, "session.events")) }
        @if events.is_empty() {
            p { (tr(lang, "session.no_events")) }
        } @else {
            ol.timeline id="timeline" {
                @for e in &events {
                    li class={ "ev ev-" (e.kind.replace(' ', "-")) } {
                        time { (fmt_time(&state, e.at)) } " "
                        strong { (labels::session_event(lang, &e.kind).unwrap_or(e.kind.as_str())) } " "
                        (e.detail.as_deref().unwrap_or(""))
                    }
                }
            }
        }
    };
    page(&caller, &title, &body.into_string()).into_response()
}

/// The emergency stop: a reason (kept in the catalogue) and an explicit confirmation, so a
/// stray click cannot end someone's work.
pub(super) fn stop_form(caller: &Caller, row: &SessionRow, error: Option<&str>) -> maud::Markup {
    let lang = caller.lang;
    html! {
        form.stop id="stop-form" method="post" action={ "/sessions/" (row.id) "/kill" } {
            h2 { (tr(lang, "stop.title")) }
            p { (tr(lang, "stop.intro")) }
            @if let Some(e) = error { p.error id="stop-error" role="alert" { (e) } }
            input type="hidden" name="csrf" value=(caller.csrf);
            label for="stop-reason" { (tr(lang, "stop.reason")) }
            textarea id="stop-reason" name="reason" required maxlength=(MAX_STOP_REASON)
                rows="2" {}
            label.check {
                input id="stop-confirm" type="checkbox" name="confirm" value="yes" required;
                " " (trf(lang, "stop.confirm", &[("title", &session_title(lang, row))]))
            }
            button.danger id="kill" type="submit" { (tr(lang, "session.kill")) }
        }
    }
}

/// `GET /sessions/{id}/recording`: the raw recording file.
pub async fn recording(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let row = match visible_session(&state, &caller, &id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(&caller),
        Err(resp) => return resp,
    };
    let Some(bytes) = read_recording(&state, row.recording.as_deref().unwrap_or("")).await else {
        return not_found(&caller);
    };
    info!(user = %caller.user, session = %row.id, "Recording downloaded");
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{}.{}\"",
                    row.id,
                    recorder::storage::EXTENSION
                ),
            ),
        ],
        bytes,
    )
        .into_response()
}

/// The emergency stop form: the CSRF token, the reason and the confirmation.
#[derive(Debug, Deserialize)]
pub struct StopForm {
    csrf: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    confirm: Option<String>,
}

/// `POST /sessions/{id}/kill` (security, admin; CSRF-checked): the emergency stop. Needs a
/// reason and the confirmation box; records both, wakes this instance's supervisor and waits
/// briefly for the session to end, so the page it returns to already shows it ended.
pub async fn kill(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<StopForm>,
) -> Response {
    let lang = caller.lang;
    if !caller.csrf_ok(&form.csrf) {
        return (StatusCode::FORBIDDEN, tr(lang, "error.csrf")).into_response();
    }
    let row = match visible_session(&state, &caller, &id).await {
        Ok(Some(row)) if caller.is_security() => row,
        Ok(_) => return not_found(&caller),
        Err(resp) => return resp,
    };
    let reason = form.reason.trim();
    let problem = if reason.is_empty() {
        Some(tr(lang, "stop.need_reason"))
    } else if reason.chars().count() > MAX_STOP_REASON {
        Some(tr(lang, "stop.reason_too_long"))
    } else if form.confirm.as_deref() != Some("yes") {
        Some(tr(lang, "stop.need_confirm"))
    } else {
        None
    };
    if let Some(problem) = problem {
        let title = tr(lang, "stop.title");
        let body = html! {
            h1 { (session_title(lang, &row)) }
            (stop_form(&caller, &row, Some(problem)))
            p { a href={ "/sessions/" (row.id) } { (tr(lang, "stop.back")) } }
        };
        return (
            StatusCode::BAD_REQUEST,
            page(&caller, title, &body.into_string()),
        )
            .into_response();
    }
    let by = format!("web:{}", caller.user);
    let catalogue = state.services.catalogue();
    match catalogue
        .request_kill_because(row.id, &by, Some(reason))
        .await
    {
        Ok(true) => {
            info!(user = %caller.user, session = %row.id, "Emergency stop requested from the web UI");
            state.services.supervise_now();
            // The session runs here or on another instance; either polls its kill requests
            // within a second or so. Wait that long so the page shows it ended.
            let deadline = tokio::time::Instant::now() + STOP_WAIT;
            while tokio::time::Instant::now() < deadline {
                match catalogue.get_session(row.id).await {
                    Ok(Some(r)) if r.ended_at.is_some() => break,
                    Ok(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
                    Err(_) => break,
                }
            }
            Redirect::to(&format!("/sessions/{}", row.id)).into_response()
        }
        Ok(false) => {
            let msg = tr(lang, "session.not_live");
            let body = html! { p.error id="not-live" { (msg) } };
            (
                StatusCode::CONFLICT,
                page(&caller, msg, &body.into_string()),
            )
                .into_response()
        }
        Err(e) => catalogue_failed(&state, &caller, &e),
    }
}

/// `GET /live` (security, admin): live sessions, each with its live view and the way to its
/// emergency stop (on the session page, where the reason is asked).
pub async fn live(State(state): State<Arc<WebState>>, caller: Caller) -> Response {
    if !caller.is_security() {
        return not_found(&caller);
    }
    let lang = caller.lang;
    let filter = SessionFilter {
        outcome: Some(Outcome::Live),
        ..SessionFilter::default()
    };
    let rows = match state.services.catalogue().list_sessions(&filter).await {
        Ok(r) => r,
        Err(e) => return catalogue_failed(&state, &caller, &e),
    };
    let now = Utc::now();
    let title = tr(lang, "live.title");
    let body = html! {
        h1 { (title) }
        @if rows.is_empty() {
            p id="no-live" { (tr(lang, "live.none")) }
        } @else {
            div.table-wrap { table id="live" {
                thead { tr {
                    th scope="col" { (tr(lang, "field.session")) }
                    th scope="col" { (tr(lang, "field.started")) }
                    th scope="col" { (tr(lang, "field.duration")) }
                    th scope="col" { (tr(lang, "field.source")) }
                    th scope="col" { span.visually-hidden { (tr(lang, "live.actions")) } }
                } }
                tbody { @for r in &rows {
                    tr.live-row data-id=(r.id) {
                        td { a.title href={ "/sessions/" (r.id) } { (session_title(lang, r)) } }
                        td { (fmt_time(&state, r.started_at)) }
                        td.num { (fmt_duration(now - r.started_at)) }
                        td { (r.source) }
                        td.actions {
                            a.button id={ "watch-" (r.id) } href={ "/sessions/" (r.id) "/watch" } { (tr(lang, "live.watch")) }
                            a.stop-link id={ "stop-" (r.id) } href={ "/sessions/" (r.id) "#stop-form" } { (tr(lang, "stop.title")) }
                        }
                    }
                } }
            } }
        }
    };
    page(&caller, title, &body.into_string()).into_response()
}

/// The moment asked for, in milliseconds from the start.
#[derive(Debug, Default, Deserialize)]
pub struct ScreenQuery {
    ms: Option<u64>,
}

/// `GET /sessions/{id}/screen?ms=T`: the terminal screen at T as JSON.
pub async fn screen(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<ScreenQuery>,
) -> Response {
    let row = match visible_session(&state, &caller, &id).await {
        Ok(Some(row)) if is_terminal(row.protocol) => row,
        Ok(_) => return not_found(&caller),
        Err(resp) => return resp,
    };
    let Some(replay) = replay_of(&state, &row).await else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            "cannot decode the recording",
        )
            .into_response();
    };
    let at_us = q.ms.unwrap_or(0).saturating_mul(1000);
    let result = tokio::task::spawn_blocking(move || {
        let end_us = replay.end_us();
        let s = replay.screen_at(at_us.min(end_us));
        Some(serde_json::json!({
            "at_ms": s.at_us / 1000,
            "end_ms": end_us / 1000,
            "cols": s.cols,
            "rows": s.rows,
            "lines": s.lines,
            "cursor": s.cursor,
        }))
    })
    .await;
    match result {
        Ok(Some(json)) => (
            [(header::CONTENT_TYPE, "application/json")],
            json.to_string(),
        )
            .into_response(),
        _ => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "cannot decode the recording",
        )
            .into_response(),
    }
}

/// `GET /metrics` on the web port: served only to `Authorization: Bearer TOKEN` with the
/// secrets file's `[metrics] token`, compared in constant time. Without a token configured it
/// is 404 (the scraper's way is `listen.metrics`); a missing or wrong token is 401.
pub async fn metrics_with_token(
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
) -> Response {
    let secrets = state.services.secrets();
    let Some(expected) = secrets.as_deref().and_then(policy::Secrets::metrics_token) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if !bearer_matches(&headers, expected) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"sekisho metrics\"")],
        )
            .into_response();
    }
    metrics(State(state)).await
}

/// Whether `headers` carry `Authorization: Bearer` with `expected`. The comparison takes the
/// same time whatever the bytes (it tells only whether the lengths differ).
fn bearer_matches(headers: &HeaderMap, expected: &policy::Secret<String>) -> bool {
    use subtle::ConstantTimeEq as _;
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    given
        .trim()
        .as_bytes()
        .ct_eq(expected.expose().as_bytes())
        .into()
}

/// `GET /metrics`: Prometheus text format (no personal data: counts only). Open on the
/// `listen.metrics` listener; on the web port only through [`metrics_with_token`].
pub async fn metrics(State(state): State<Arc<WebState>>) -> Response {
    let catalogue = state.services.catalogue();
    let mut out = String::new();
    out.push_str("# HELP sekisho_sessions_live Live sessions in the catalogue, by protocol.\n# TYPE sekisho_sessions_live gauge\n");
    for p in [
        Protocol::Rdp,
        Protocol::Ssh,
        Protocol::ConsoleSerial,
        Protocol::ConsoleVnc,
    ] {
        let filter = SessionFilter {
            protocol: Some(p),
            outcome: Some(Outcome::Live),
            ..SessionFilter::default()
        };
        match catalogue.count_sessions(&filter).await {
            Ok(n) => {
                let _ = writeln!(out, "sekisho_sessions_live{{protocol=\"{p}\"}} {n}");
            }
            Err(e) => {
                state.catalogue_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "Metrics cannot read the catalogue");
            }
        }
    }
    out.push_str("# HELP sekisho_denials_24h Denials over the last 24 hours, by rule.\n# TYPE sekisho_denials_24h gauge\n");
    let filter = DenialFilter {
        since: Some(Utc::now() - chrono::Duration::hours(24)),
        limit: Some(MAX_DASHBOARD_DENIALS),
        ..DenialFilter::default()
    };
    match catalogue.list_denials(&filter).await {
        Ok(rows) => {
            let mut by_rule: BTreeMap<&str, u64> = BTreeMap::new();
            for r in &rows {
                *by_rule.entry(&r.rule).or_default() += 1;
            }
            for (rule, n) in by_rule {
                let rule = rule.replace(['\\', '"', '\n'], "_");
                let _ = writeln!(out, "sekisho_denials_24h{{rule=\"{rule}\"}} {n}");
            }
        }
        Err(e) => {
            state.catalogue_errors.fetch_add(1, Ordering::Relaxed);
            warn!(error = %e, "Metrics cannot read the catalogue");
        }
    }
    let _ = writeln!(
        out,
        "# HELP sekisho_web_catalogue_errors_total Catalogue errors seen by the web UI.\n# TYPE sekisho_web_catalogue_errors_total counter\nsekisho_web_catalogue_errors_total {}",
        state.catalogue_errors.load(Ordering::Relaxed)
    );
    let _ = writeln!(
        out,
        "# HELP sekisho_web_verifications_total Recording verifications for the session page: run (the file read) or cached (an unchanged file).\n# TYPE sekisho_web_verifications_total counter\nsekisho_web_verifications_total{{result=\"run\"}} {}\nsekisho_web_verifications_total{{result=\"cached\"}} {}",
        state.verified.runs(),
        state.verified.hits()
    );
    let _ = writeln!(
        out,
        "# HELP sekisho_web_connections_refused_total Web and metrics connections closed at once: over the cap in total or from one address.\n# TYPE sekisho_web_connections_refused_total counter\nsekisho_web_connections_refused_total{{cap=\"total\"}} {}\nsekisho_web_connections_refused_total{{cap=\"address\"}} {}",
        state.refused_total.load(Ordering::Relaxed),
        state.refused_per_addr.load(Ordering::Relaxed)
    );
    // This instance's own counters (sessions, decisions, bytes recorded, errors, reloads).
    out.push_str(&state.services.render_metrics());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}

/// `GET /assets/style.css`.
pub async fn style() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

/// `GET /assets/favicon.svg`: the checkpoint gate.
pub async fn favicon() -> Response {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        FAVICON,
    )
        .into_response()
}

/// `GET /assets/watch.js`.
pub async fn watch_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        WATCH_JS,
    )
        .into_response()
}

/// `GET /assets/player.js`.
pub async fn player_js() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        PLAYER_JS,
    )
        .into_response()
}
