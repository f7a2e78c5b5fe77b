//! The web UI's pages. Each handler takes a [`Caller`] (no caller: redirect to the login
//! page) and checks the caller's role itself; a session the caller may not see is a 404.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, TimeZone as _, Utc};
use policy::{Protocol, SessionId};
use recorder::catalogue::{
    CatalogueError, DenialFilter, DenialRow, Outcome, PolicyEventRow, ReviewSubject, SessionCursor,
    SessionFilter, SessionRow,
};
use serde::Deserialize;
use tracing::{info, warn};

use super::WebState;
use super::auth::{Caller, CsrfForm};
use super::cookies::set_cookie;
use super::html::{escape, shell};
use super::i18n::{Lang, tr};

/// Sessions per page of the list.
pub const PAGE_SIZE: u32 = 50;
/// Denials read for the dashboard at most (the catalogue's page cap).
pub const MAX_DASHBOARD_DENIALS: u32 = recorder::catalogue::MAX_PAGE;
/// Denials listed one by one on the dashboard.
pub const DENIALS_LISTED: usize = 200;
/// Longest a dashboard period may be, in days.
pub const MAX_DASHBOARD_DAYS: i64 = 366;
/// Longest filter value accepted (names in the inventory are short).
pub const MAX_FILTER_LEN: usize = 256;

/// One stylesheet for every page; the player's rules live in their own file for reading.
const STYLE: &str = concat!(
    include_str!("assets/style.css"),
    include_str!("assets/player.css")
);
const PLAYER_JS: &str = include_str!("assets/player.js");
const WATCH_JS: &str = include_str!("assets/watch.js");

/// Percent-encodes a query value.
fn urlenc(s: &str) -> String {
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

/// A page for a logged-in caller: navigation by role, logout form.
pub fn page(caller: &Caller, title: &str, body: &str) -> Html<String> {
    let lang = caller.lang;
    let mut nav = format!(
        "<nav><a id=\"nav-sessions\" href=\"/sessions\">{}</a>",
        tr(lang, "nav.sessions")
    );
    if caller.is_security() {
        let _ = write!(
            nav,
            "<a id=\"nav-denials\" href=\"/denials\">{}</a><a id=\"nav-live\" href=\"/live\">{}</a>",
            tr(lang, "nav.denials"),
            tr(lang, "nav.live")
        );
    }
    if caller.may_search_typed_text() {
        let _ = write!(
            nav,
            "<a id=\"nav-search\" href=\"/search\">{}</a>",
            tr(lang, "nav.search")
        );
    }
    let _ = write!(
        nav,
        "</nav><span class=\"who\" id=\"who\">{} ({})</span>\
         <form method=\"post\" action=\"/logout\" class=\"inline\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
         <button id=\"logout\">{}</button></form>",
        escape(&caller.user),
        caller.role,
        escape(&caller.csrf),
        tr(lang, "nav.logout")
    );
    shell(lang, title, &nav, body)
}

pub(super) fn not_found(caller: &Caller) -> Response {
    let msg = tr(caller.lang, "error.notfound");
    (
        StatusCode::NOT_FOUND,
        page(caller, msg, &format!("<p class=\"error\">{msg}</p>")),
    )
        .into_response()
}

fn bad_request(caller: &Caller) -> Response {
    let msg = tr(caller.lang, "error.bad_request");
    (
        StatusCode::BAD_REQUEST,
        page(caller, msg, &format!("<p class=\"error\">{msg}</p>")),
    )
        .into_response()
}

pub(super) fn catalogue_failed(state: &WebState, caller: &Caller, e: &CatalogueError) -> Response {
    state.catalogue_errors.fetch_add(1, Ordering::Relaxed);
    warn!(error = %e, "Web UI cannot read the catalogue");
    let msg = tr(caller.lang, "error.catalogue");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        page(caller, msg, &format!("<p class=\"error\">{msg}</p>")),
    )
        .into_response()
}

pub(super) fn fmt_time(state: &WebState, t: DateTime<Utc>) -> String {
    t.with_timezone(&state.services.inventory().timezone())
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

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

/// The session list's filters (all optional; empty means any).
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

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn day_start(state: &WebState, date: &str) -> Option<DateTime<Utc>> {
    let d = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let tz = state.services.inventory().timezone();
    tz.from_local_datetime(&d.and_hms_opt(0, 0, 0)?)
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

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
    fn too_long(&self) -> bool {
        [
            &self.user,
            &self.contractor,
            &self.target,
            &self.protocol,
            &self.from,
            &self.to,
            &self.outcome,
            &self.after,
        ]
        .iter()
        .any(|v| v.as_ref().is_some_and(|s| s.len() > MAX_FILTER_LEN))
    }

    /// The catalogue filter, or `None` when a value does not parse.
    fn filter(&self, state: &WebState, caller: &Caller) -> Option<SessionFilter> {
        let mut f = SessionFilter {
            user: nonempty(&self.user),
            contractor: nonempty(&self.contractor),
            target: nonempty(&self.target),
            limit: Some(PAGE_SIZE + 1),
            ..SessionFilter::default()
        };
        if !caller.sees_all_sessions() {
            // A contractor sees only their own sessions, whatever the form says.
            f.user = Some(caller.user.clone());
        }
        if let Some(p) = nonempty(&self.protocol) {
            f.protocol = Some(p.parse::<Protocol>().ok()?);
        }
        if let Some(o) = nonempty(&self.outcome) {
            f.outcome = Some(o.parse::<Outcome>().ok()?);
        }
        if let Some(d) = nonempty(&self.from) {
            f.since = Some(day_start(state, &d)?);
        }
        if let Some(d) = nonempty(&self.to) {
            // Inclusive: up to the start of the next day.
            let next = NaiveDate::parse_from_str(&d, "%Y-%m-%d").ok()?.succ_opt()?;
            f.until = Some(day_start(state, &next.format("%Y-%m-%d").to_string())?);
        }
        if let Some(a) = nonempty(&self.after) {
            f.after = Some(parse_cursor(&a)?);
        }
        Some(f)
    }

    /// The query string without `after`.
    fn base(&self) -> String {
        let pairs = [
            ("user", &self.user),
            ("contractor", &self.contractor),
            ("target", &self.target),
            ("protocol", &self.protocol),
            ("from", &self.from),
            ("to", &self.to),
            ("outcome", &self.outcome),
        ];
        pairs
            .iter()
            .filter_map(|(k, v)| nonempty(v).map(|v| format!("{k}={}", urlenc(&v))))
            .collect::<Vec<_>>()
            .join("&")
    }
}

fn select(name: &str, label: &str, options: &[&str], current: Option<&str>, any: &str) -> String {
    let mut s = format!(
        "<label>{label} <select name=\"{name}\" id=\"f-{name}\"><option value=\"\">{any}</option>"
    );
    for o in options {
        let sel = if current == Some(*o) { " selected" } else { "" };
        let _ = write!(s, "<option value=\"{o}\"{sel}>{o}</option>");
    }
    s.push_str("</select></label>");
    s
}

fn session_table(state: &WebState, lang: Lang, rows: &[SessionRow]) -> String {
    let mut t = format!(
        "<table class=\"sessions\" id=\"sessions\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        tr(lang, "field.started"),
        tr(lang, "field.user"),
        tr(lang, "field.contractor"),
        tr(lang, "field.target"),
        tr(lang, "field.protocol"),
        tr(lang, "field.source"),
        tr(lang, "field.ended"),
        tr(lang, "field.outcome"),
    );
    for r in rows {
        let _ = write!(
            t,
            "<tr class=\"session-row\" data-id=\"{id}\"><td><a href=\"/sessions/{id}\">{started}</a></td><td>{user}</td><td>{contractor}</td><td>{target}</td><td>{protocol}</td><td>{source}</td><td>{ended}</td><td class=\"outcome-{outcome}\">{outcome}</td></tr>",
            id = r.id,
            started = fmt_time(state, r.started_at),
            user = escape(&r.user),
            contractor = escape(&r.contractor),
            target = escape(&r.target),
            protocol = r.protocol,
            source = r.source,
            ended = r.ended_at.map(|t| fmt_time(state, t)).unwrap_or_default(),
            outcome = r.outcome,
        );
    }
    t.push_str("</tbody></table>");
    t
}

/// `GET /sessions`: the list with filters, 50 per page (keyset paging).
pub async fn sessions(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Query(q): Query<SessionQuery>,
) -> Response {
    let lang = caller.lang;
    if q.too_long() {
        return bad_request(&caller);
    }
    let Some(filter) = q.filter(&state, &caller) else {
        return bad_request(&caller);
    };
    let mut rows = match state.services.catalogue().list_sessions(&filter).await {
        Ok(r) => r,
        Err(e) => return catalogue_failed(&state, &caller, &e),
    };
    let more = rows.len() > PAGE_SIZE as usize;
    rows.truncate(PAGE_SIZE as usize);

    let any = tr(lang, "filter.any");
    let text = |name: &str, key: &'static str, v: &Option<String>, kind: &str| {
        format!(
            "<label>{} <input name=\"{name}\" id=\"f-{name}\" type=\"{kind}\" value=\"{}\"></label>",
            tr(lang, key),
            escape(v.as_deref().unwrap_or(""))
        )
    };
    let mut body = format!(
        "<h1>{}</h1><form method=\"get\" action=\"/sessions\" class=\"filters\" id=\"filters\">",
        tr(lang, "sessions.title")
    );
    if caller.sees_all_sessions() {
        body.push_str(&text("user", "field.user", &q.user, "text"));
        body.push_str(&text(
            "contractor",
            "field.contractor",
            &q.contractor,
            "text",
        ));
    }
    body.push_str(&text("target", "field.target", &q.target, "text"));
    let protocols: Vec<&str> = [
        Protocol::Rdp,
        Protocol::Ssh,
        Protocol::ConsoleSerial,
        Protocol::ConsoleVnc,
    ]
    .iter()
    .map(|p| p.as_str())
    .collect();
    body.push_str(&select(
        "protocol",
        tr(lang, "field.protocol"),
        &protocols,
        q.protocol.as_deref(),
        any,
    ));
    body.push_str(&text("from", "field.from", &q.from, "date"));
    body.push_str(&text("to", "field.to", &q.to, "date"));
    let outcomes: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
    body.push_str(&select(
        "outcome",
        tr(lang, "field.outcome"),
        &outcomes,
        q.outcome.as_deref(),
        any,
    ));
    let _ = write!(
        body,
        "<button id=\"apply\">{}</button></form>",
        tr(lang, "filter.apply")
    );
    if rows.is_empty() {
        let _ = write!(
            body,
            "<p id=\"no-sessions\">{}</p>",
            tr(lang, "sessions.none")
        );
    } else {
        body.push_str(&session_table(&state, lang, &rows));
    }
    let base = q.base();
    body.push_str("<p class=\"paging\">");
    if q.after.as_deref().is_some_and(|a| !a.is_empty()) {
        let _ = write!(
            body,
            "<a id=\"first-page\" href=\"/sessions?{}\">{}</a> ",
            escape(&base),
            tr(lang, "sessions.first")
        );
    }
    if more && let Some(last) = rows.last() {
        let sep = if base.is_empty() { "" } else { "&" };
        let _ = write!(
            body,
            "<a id=\"next-page\" href=\"/sessions?{}{sep}after={}\">{}</a>",
            escape(&base),
            urlenc(&encode_cursor(&last.cursor())),
            tr(lang, "sessions.next")
        );
    }
    body.push_str("</p>");
    page(&caller, tr(lang, "sessions.title"), &body).into_response()
}

/// Looks up a session the caller may see; `None` for "no such session" and "not yours" alike.
pub(super) async fn visible_session(
    state: &WebState,
    caller: &Caller,
    id: &str,
) -> Result<Option<SessionRow>, Response> {
    let Ok(id) = id.parse::<SessionId>() else {
        return Ok(None);
    };
    match state.services.catalogue().get_session(id).await {
        Ok(Some(row)) if caller.may_see(&row.user) => Ok(Some(row)),
        Ok(_) => Ok(None),
        Err(e) => Err(catalogue_failed(state, caller, &e)),
    }
}

/// Reads a recording (a file, or an object of this instance's object store), capped in size.
pub(super) async fn read_recording(state: &WebState, location: &str) -> Option<Vec<u8>> {
    let recordings = state.services.recordings();
    match recordings
        .read(location, crate::recordings::MAX_RECORDING_BYTES)
        .await
    {
        Ok(bytes) => Some(bytes),
        Err(e) => {
            tracing::debug!(%location, error = %format!("{e:#}"), "Web UI cannot read a recording");
            None
        }
    }
}

/// The size of a recording (a file, or an object), which changes while it is live.
pub(super) async fn recording_size(state: &WebState, location: &str) -> Option<u64> {
    let store = state.services.recordings().reader(location).ok()?;
    store.size(location).await.ok()
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

pub(super) fn is_terminal(p: Protocol) -> bool {
    matches!(p, Protocol::Ssh | Protocol::ConsoleSerial)
}

/// `GET /sessions/{id}`: catalogue data, timeline, verification, download, kill.
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
    let mut body = format!(
        "<h1>{} {}</h1><dl class=\"session\" id=\"session\">",
        tr(lang, "session.title"),
        row.id
    );
    let mut field = |key: &'static str, value: String| {
        let _ = write!(body, "<dt>{}</dt><dd>{}</dd>", tr(lang, key), value);
    };
    field("field.user", escape(&row.user));
    field("field.contractor", escape(&row.contractor));
    field("field.target", escape(&row.target));
    field("field.protocol", row.protocol.to_string());
    field("field.source", row.source.to_string());
    field("field.path", escape(&row.path));
    field("field.started", fmt_time(&state, row.started_at));
    field(
        "field.ended",
        row.ended_at
            .map(|t| fmt_time(&state, t))
            .unwrap_or_default(),
    );
    field("field.outcome", row.outcome.to_string());
    if let Some(c) = row.console_session {
        field(
            "field.console",
            format!("<a href=\"/sessions/{c}\">{c}</a>"),
        );
    }
    field(
        "field.recording_state",
        row.recording_state
            .map(|s| s.to_string())
            .unwrap_or_default(),
    );
    field(
        "field.verification",
        format!(
            "<span id=\"verification\" class=\"verify-{vclass}\">{}</span>",
            escape(&vtext)
        ),
    );
    if let Some(d) = &row.detail {
        field("field.detail", escape(d));
    }
    body.push_str("</dl><p>");
    if row.recording.is_some() {
        let _ = write!(
            body,
            "<a id=\"download\" href=\"/sessions/{}/recording\">{}</a> ",
            row.id,
            tr(lang, "session.download")
        );
        let _ = write!(
            body,
            "<a id=\"play\" href=\"/sessions/{}/play\">{}</a>",
            row.id,
            tr(lang, "session.play")
        );
        if row.ended_at.is_some() && caller.sees_all_sessions() {
            let _ = write!(
                body,
                " <a id=\"bundle\" href=\"/sessions/{}/bundle\">{}</a>",
                row.id,
                tr(lang, "session.bundle")
            );
        }
        if row.outcome == Outcome::Live && caller.sees_all_sessions() {
            let _ = write!(
                body,
                " <a id=\"watch\" href=\"/sessions/{}/watch\">{}</a>",
                row.id,
                tr(lang, "live.watch")
            );
        }
    }
    body.push_str("</p>");
    if row.outcome == Outcome::Live && caller.is_security() {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/sessions/{}/kill\"><input type=\"hidden\" name=\"csrf\" value=\"{}\"><button class=\"danger\" id=\"kill\">{}</button></form>",
            row.id,
            escape(&caller.csrf),
            tr(lang, "session.kill")
        );
    }
    let _ = write!(body, "<h2>{}</h2>", tr(lang, "session.events"));
    if events.is_empty() {
        let _ = write!(body, "<p>{}</p>", tr(lang, "session.no_events"));
    } else {
        body.push_str("<ol class=\"timeline\" id=\"timeline\">");
        for e in &events {
            let _ = write!(
                body,
                "<li><time>{}</time> <strong>{}</strong> {}</li>",
                fmt_time(&state, e.at),
                escape(&e.kind),
                escape(e.detail.as_deref().unwrap_or(""))
            );
        }
        body.push_str("</ol>");
    }
    page(&caller, tr(lang, "session.title"), &body).into_response()
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

/// `POST /sessions/{id}/kill` (security, admin; CSRF-checked).
pub async fn kill(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !caller.csrf_ok(&form.csrf) {
        return (StatusCode::FORBIDDEN, tr(caller.lang, "error.csrf")).into_response();
    }
    let row = match visible_session(&state, &caller, &id).await {
        Ok(Some(row)) if caller.is_security() => row,
        Ok(_) => return not_found(&caller),
        Err(resp) => return resp,
    };
    let by = format!("web:{}", caller.user);
    match state.services.catalogue().request_kill(row.id, &by).await {
        Ok(true) => {
            info!(user = %caller.user, session = %row.id, "Kill requested from the web UI");
            Redirect::to(&format!("/sessions/{}", row.id)).into_response()
        }
        Ok(false) => {
            let msg = tr(caller.lang, "session.not_live");
            (
                StatusCode::CONFLICT,
                page(
                    &caller,
                    msg,
                    &format!("<p class=\"error\" id=\"not-live\">{msg}</p>"),
                ),
            )
                .into_response()
        }
        Err(e) => catalogue_failed(&state, &caller, &e),
    }
}

/// The dashboard's period, and whether to list only what is still unreviewed.
#[derive(Debug, Default, Deserialize)]
pub struct DenialQuery {
    days: Option<i64>,
    unreviewed: Option<String>,
}

impl DenialQuery {
    /// The period in days, within the dashboard's bounds (default 30).
    pub fn days(&self) -> i64 {
        self.days.unwrap_or(30).clamp(1, MAX_DASHBOARD_DAYS)
    }

    fn unreviewed_only(&self) -> bool {
        self.unreviewed
            .as_deref()
            .is_some_and(|v| !v.is_empty() && v != "0")
    }
}

/// `GET /denials` (security, admin): counts by rule, user and day, and the latest denials.
pub async fn denials(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Query(q): Query<DenialQuery>,
) -> Response {
    if !caller.is_security() {
        return not_found(&caller);
    }
    let lang = caller.lang;
    let days = q.days();
    let since = Utc::now() - chrono::Duration::days(days);
    let filter = DenialFilter {
        since: Some(since),
        limit: Some(MAX_DASHBOARD_DENIALS),
        ..DenialFilter::default()
    };
    let rows = match state.services.catalogue().list_denials(&filter).await {
        Ok(r) => r,
        Err(e) => return catalogue_failed(&state, &caller, &e),
    };
    let reviews = match state.services.catalogue().latest_reviews(since).await {
        Ok(r) => r,
        Err(e) => return catalogue_failed(&state, &caller, &e),
    };
    let events = match state
        .services
        .catalogue()
        .policy_events(since, MAX_DASHBOARD_DENIALS)
        .await
    {
        Ok(e) => e,
        Err(e) => return catalogue_failed(&state, &caller, &e),
    };
    let denial_reviewed = |r: &DenialRow| reviews.contains_key(&ReviewSubject::Denial(r.id));
    let event_reviewed =
        |e: &PolicyEventRow| reviews.contains_key(&ReviewSubject::PolicyEvent(e.id));
    // What is still to review, denials and policy events alike: (rule or event, user,
    // contractor).
    let unreviewed: Vec<(&str, &str, &str)> = rows
        .iter()
        .filter(|r| !denial_reviewed(r))
        .map(|r| {
            (
                r.rule.as_str(),
                r.user.as_deref().unwrap_or("-"),
                r.contractor.as_deref().unwrap_or("-"),
            )
        })
        .chain(
            events
                .iter()
                .filter(|e| !event_reviewed(e))
                .map(|e| (e.kind.as_str(), e.user.as_str(), e.contractor.as_str())),
        )
        .collect();
    let mut unreviewed_by_rule: BTreeMap<&str, u64> = BTreeMap::new();
    let mut unreviewed_by_user: BTreeMap<&str, u64> = BTreeMap::new();
    let mut unreviewed_by_contractor: BTreeMap<&str, u64> = BTreeMap::new();
    for (rule, user, contractor) in &unreviewed {
        *unreviewed_by_rule.entry(rule).or_default() += 1;
        *unreviewed_by_user.entry(user).or_default() += 1;
        *unreviewed_by_contractor.entry(contractor).or_default() += 1;
    }
    let tz = state.services.inventory().timezone();
    let mut by_rule: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_user: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_day: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        *by_rule.entry(&r.rule).or_default() += 1;
        *by_user.entry(r.user.as_deref().unwrap_or("-")).or_default() += 1;
        *by_day
            .entry(
                r.started_at
                    .with_timezone(&tz)
                    .format("%Y-%m-%d")
                    .to_string(),
            )
            .or_default() += 1;
    }
    let counts = |id: &str, title: &'static str, head: &'static str, items: Vec<(String, u64)>| {
        let max = items.iter().map(|(_, n)| *n).max().unwrap_or(1).max(1);
        let mut s = format!(
            "<section><h2>{}</h2><table id=\"{id}\"><thead><tr><th>{}</th><th>{}</th><th></th></tr></thead><tbody>",
            tr(lang, title),
            tr(lang, head),
            tr(lang, "field.count")
        );
        for (k, n) in items {
            let _ = write!(
                s,
                "<tr><td>{}</td><td class=\"num\">{n}</td><td><span class=\"bar\" style=\"width:{}px\"></span></td></tr>",
                escape(&k),
                n * 200 / max
            );
        }
        s.push_str("</tbody></table></section>");
        s
    };
    let mut body = format!(
        "<h1>{}</h1><form method=\"get\" action=\"/denials\"><label>{} <input name=\"days\" type=\"number\" min=\"1\" max=\"{MAX_DASHBOARD_DAYS}\" value=\"{days}\"></label> <label><input type=\"checkbox\" name=\"unreviewed\" value=\"1\"{}> {}</label> <button>{}</button> <a id=\"denials-csv\" href=\"/denials.csv?days={days}\">{}</a></form>\
         <p id=\"unreviewed-count\">{}: <strong>{}</strong> / {}</p><div class=\"dashboard\">",
        tr(lang, "denials.title"),
        tr(lang, "denials.days"),
        if q.unreviewed_only() { " checked" } else { "" },
        tr(lang, "review.unreviewed_only"),
        tr(lang, "filter.apply"),
        tr(lang, "review.csv"),
        tr(lang, "review.unreviewed"),
        unreviewed.len(),
        rows.len() + events.len(),
    );
    let mut rules: Vec<(String, u64)> = by_rule
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
    rules.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let mut users: Vec<(String, u64)> = by_user
        .into_iter()
        .map(|(k, n)| (k.to_owned(), n))
        .collect();
    users.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    body.push_str(&counts("by-rule", "denials.by_rule", "field.rule", rules));
    body.push_str(&counts("by-user", "denials.by_user", "field.user", users));
    body.push_str(&counts(
        "by-day",
        "denials.by_day",
        "field.day",
        by_day.into_iter().collect(),
    ));
    let sorted = |m: BTreeMap<&str, u64>| {
        let mut v: Vec<(String, u64)> = m.into_iter().map(|(k, n)| (k.to_owned(), n)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        v
    };
    body.push_str(&counts(
        "unreviewed-by-rule",
        "review.unreviewed_by_rule",
        "field.rule",
        sorted(unreviewed_by_rule),
    ));
    body.push_str(&counts(
        "unreviewed-by-user",
        "review.unreviewed_by_user",
        "field.user",
        sorted(unreviewed_by_user),
    ));
    body.push_str(&counts(
        "unreviewed-by-contractor",
        "review.unreviewed_by_contractor",
        "field.contractor",
        sorted(unreviewed_by_contractor),
    ));
    let _ = write!(
        body,
        "</div><h2>{}</h2><table id=\"denials\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>",
        tr(lang, "denials.list"),
        tr(lang, "field.time"),
        tr(lang, "field.user"),
        tr(lang, "field.source"),
        tr(lang, "field.target"),
        tr(lang, "field.protocol"),
        tr(lang, "field.rule"),
        tr(lang, "field.reason"),
        tr(lang, "review.title"),
    );
    let listed = rows
        .iter()
        .filter(|r| !q.unreviewed_only() || !denial_reviewed(r))
        .take(DENIALS_LISTED);
    for r in listed {
        let _ = write!(
            body,
            "<tr class=\"denial-row\" id=\"d-{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            r.id,
            fmt_time(&state, r.started_at),
            escape(r.user.as_deref().unwrap_or("")),
            r.source,
            escape(r.target.as_deref().unwrap_or("")),
            r.protocol,
            escape(&r.rule),
            escape(&r.reason),
            super::reviews::review_cell(
                &caller,
                ReviewSubject::Denial(r.id),
                reviews.get(&ReviewSubject::Denial(r.id)),
                days
            ),
        );
    }
    body.push_str("</tbody></table>");
    let listed: Vec<&PolicyEventRow> = events
        .iter()
        .filter(|e| !q.unreviewed_only() || !event_reviewed(e))
        .take(DENIALS_LISTED)
        .collect();
    body.push_str(&super::reviews::policy_event_table(
        &state, &caller, &listed, &reviews, days,
    ));
    page(&caller, tr(lang, "denials.title"), &body).into_response()
}

/// `GET /live` (security, admin): live sessions with a kill button each.
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
    let mut body = format!("<h1>{}</h1>", tr(lang, "live.title"));
    if rows.is_empty() {
        let _ = write!(body, "<p id=\"no-live\">{}</p>", tr(lang, "live.none"));
    } else {
        body.push_str("<table id=\"live\"><tbody>");
        for r in &rows {
            let _ = write!(
                body,
                "<tr><td><a href=\"/sessions/{id}\">{started}</a></td><td>{user}</td><td>{target}</td><td>{protocol}</td><td><a class=\"button\" id=\"watch-{id}\" href=\"/sessions/{id}/watch\">{watch}</a></td><td><form method=\"post\" action=\"/sessions/{id}/kill\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\"><button class=\"danger\">{kill}</button></form></td></tr>",
                id = r.id,
                started = fmt_time(&state, r.started_at),
                user = escape(&r.user),
                target = escape(&r.target),
                protocol = r.protocol,
                csrf = escape(&caller.csrf),
                kill = tr(lang, "session.kill"),
                watch = tr(lang, "live.watch"),
            );
        }
        body.push_str("</tbody></table>");
    }
    page(&caller, tr(lang, "live.title"), &body).into_response()
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

/// The decoded terminal recording of `row`, from the one-entry cache when the file has not
/// changed since it was decoded.
pub(super) async fn replay_of(
    state: &WebState,
    row: &SessionRow,
) -> Option<Arc<player::terminal::TerminalReplay>> {
    let location = row.recording.as_deref()?;
    let size = recording_size(state, location).await?;
    {
        let cache = match state.player_cache.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some((id, len, replay)) = cache.as_ref()
            && *id == row.id
            && *len == size
        {
            return Some(Arc::clone(replay));
        }
    }
    let bytes = read_recording(state, location).await?;
    let replay =
        tokio::task::spawn_blocking(move || player::terminal::TerminalReplay::open(&bytes).ok())
            .await
            .ok()
            .flatten()
            .map(Arc::new)?;
    let mut cache = match state.player_cache.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    *cache = Some((row.id, size, Arc::clone(&replay)));
    Some(replay)
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
