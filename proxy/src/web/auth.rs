//! Logging in to the web UI: argon2 passwords from the inventory, server-side sessions behind
//! a random cookie, CSRF tokens on every form, and the failed-logon throttle per user and per
//! address that every front door shares (`auth::throttle`): while locked out, a login gets
//! the answer of a wrong password and the password is not checked. Every failed login is an
//! `auth.failed` denial row (protocol `web`).
//!
//! A user with a matrix card in the inventory logs in in two steps: the password step gives
//! only a short-lived pending login (its own cookie and CSRF token, no access to any page),
//! then the answer to three cells of the card gives the session. The card is asked whether
//! the password was right or not, and only the card step says no, so the first step confirms
//! no password. The challenges (one pending per user, shown again until answered) and the
//! card's lockout are `auth::matrix_card`'s, shared with SSH; a passed card is recorded in
//! `auth::second_factor` for the VNC and RDP doors, and a logout forgets it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use policy::Protocol;
use policy::Role;
use rand::RngCore as _;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use tracing::{debug, info, warn};

use super::cookies::{cookie, set_cookie};
use super::html::page_without_caller;
use super::i18n::{Lang, tr};
use super::{ClientAddr, WebState};
use crate::auth::matrix_card::{CHALLENGE_CELLS, MatrixCard, Verdict};
use maud::html;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "sekisho_session";
/// The cookie that carries the login form's CSRF token (double submit: no session yet).
pub const LOGIN_CSRF_COOKIE: &str = "sekisho_login_csrf";
/// A session unused for this long is logged out.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after login whatever happens.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);
/// At most this many live browser sessions: a login flood must not grow memory without bound.
pub const MAX_WEB_SESSIONS: usize = 10_000;
/// Longest user name accepted in the login form (inventory names are short).
pub const MAX_USER_LEN: usize = 128;
/// The cookie of a login waiting for its matrix card answer.
pub const PENDING_COOKIE: &str = "sekisho_login_pending";
/// How long a password step stays good for answering the matrix card.
pub const PENDING_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// At most this many logins waiting for their card at once (memory bound).
pub const MAX_PENDING: usize = 10_000;

/// A login waiting for the matrix card. Grants nothing by itself.
#[derive(Debug, Clone)]
struct PendingLogin {
    user: String,
    csrf: String,
    created: Instant,
    /// The password was right.
    /// INVARIANT: the session is given only when this is true and the card answer is right.
    password_ok: bool,
    /// The user or address was locked out at the password step: nothing was checked, and no
    /// card answer is either.
    locked: bool,
}

/// A logged-in browser.
#[derive(Debug, Clone)]
struct WebSession {
    user: String,
    csrf: String,
    created: Instant,
    last_used: Instant,
}

/// Browser sessions and pending card logins, in memory (a restart logs everyone out).
#[derive(Debug, Default)]
pub struct AuthStore {
    sessions: Mutex<HashMap<String, WebSession>>,
    pending: Mutex<HashMap<String, PendingLogin>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// 256 random bits as hex.
pub fn random_token() -> String {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl AuthStore {
    pub(super) fn create(&self, user: &str) -> Option<(String, String)> {
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| alive(s, now));
        if sessions.len() >= MAX_WEB_SESSIONS {
            return None;
        }
        let token = random_token();
        let csrf = random_token();
        sessions.insert(
            token.clone(),
            WebSession {
                user: user.to_owned(),
                csrf: csrf.clone(),
                created: now,
                last_used: now,
            },
        );
        Some((token, csrf))
    }

    fn lookup(&self, token: &str) -> Option<WebSession> {
        let now = Instant::now();
        let mut sessions = lock(&self.sessions);
        let s = sessions.get_mut(token)?;
        if !alive(s, now) {
            sessions.remove(token);
            return None;
        }
        s.last_used = now;
        Some(s.clone())
    }

    fn remove(&self, token: &str) {
        lock(&self.sessions).remove(token);
    }

    /// A pending login for `user`: (cookie token, CSRF token), or `None` when too many wait.
    fn create_pending(
        &self,
        user: &str,
        password_ok: bool,
        locked: bool,
    ) -> Option<(String, String)> {
        let now = Instant::now();
        let mut pending = lock(&self.pending);
        pending.retain(|_, p| now.duration_since(p.created) < PENDING_TIMEOUT);
        if pending.len() >= MAX_PENDING {
            return None;
        }
        let token = random_token();
        let csrf = random_token();
        pending.insert(
            token.clone(),
            PendingLogin {
                user: user.to_owned(),
                csrf: csrf.clone(),
                created: now,
                password_ok,
                locked,
            },
        );
        Some((token, csrf))
    }

    fn pending(&self, token: &str) -> Option<PendingLogin> {
        let now = Instant::now();
        let mut pending = lock(&self.pending);
        let p = pending.get(token)?;
        if now.duration_since(p.created) >= PENDING_TIMEOUT {
            pending.remove(token);
            return None;
        }
        Some(p.clone())
    }

    fn remove_pending(&self, token: &str) {
        lock(&self.pending).remove(token);
    }

    /// Makes every pending login `by` older (tests of the expiry without sleeping).
    #[cfg(test)]
    pub(super) fn age_pending(&self, by: Duration) {
        for p in lock(&self.pending).values_mut() {
            p.created = p.created.checked_sub(by).unwrap_or(p.created);
        }
    }
}

fn alive(s: &WebSession, now: Instant) -> bool {
    now.duration_since(s.last_used) < IDLE_TIMEOUT
        && now.duration_since(s.created) < ABSOLUTE_TIMEOUT
}

/// The logged-in caller, resolved against the current inventory on every request (a user
/// removed from the inventory is logged out at once).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user's name.
    pub user: String,
    /// The user's role now.
    pub role: Role,
    /// The session's CSRF token (put in every form).
    pub csrf: String,
    /// The language of the pages.
    pub lang: Lang,
}

impl Caller {
    /// Every session (auditor, security, admin).
    pub fn sees_all_sessions(&self) -> bool {
        matches!(self.role, Role::Auditor | Role::Security | Role::Admin)
    }

    /// Typed text of graphical sessions (auditor and security only: administrators administer
    /// Sekisho and do not review what contractors type).
    pub fn may_search_typed_text(&self) -> bool {
        matches!(self.role, Role::Auditor | Role::Security)
    }

    /// Denials dashboard, live sessions and kill (security, admin).
    pub fn is_security(&self) -> bool {
        matches!(self.role, Role::Security | Role::Admin)
    }

    /// Whether the caller may see a session of `user`.
    pub fn may_see(&self, user: &str) -> bool {
        self.sees_all_sessions() || self.user == user
    }

    /// Checks a submitted CSRF token.
    pub fn csrf_ok(&self, submitted: &str) -> bool {
        ct_eq(&self.csrf, submitted)
    }
}

/// Why a request has no [`Caller`]: not logged in.
pub struct NotLoggedIn;

impl IntoResponse for NotLoggedIn {
    fn into_response(self) -> Response {
        Redirect::to("/login").into_response()
    }
}

impl FromRequestParts<Arc<WebState>> for Caller {
    type Rejection = NotLoggedIn;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<WebState>,
    ) -> Result<Self, Self::Rejection> {
        let token = cookie(&parts.headers, SESSION_COOKIE).ok_or(NotLoggedIn)?;
        let session = state.auth.lookup(&token).ok_or(NotLoggedIn)?;
        let inventory = state.services.inventory();
        let Some(user) = inventory.user(&session.user) else {
            state.auth.remove(&token);
            return Err(NotLoggedIn);
        };
        Ok(Caller {
            user: user.name.clone(),
            role: user.role,
            csrf: session.csrf,
            lang: Lang::of(&parts.headers),
        })
    }
}

/// `GET /login`.
pub async fn login_page(State(state): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    let lang = Lang::of(&headers);
    login_form(&state, lang, None, StatusCode::OK)
}

fn login_form(state: &WebState, lang: Lang, error: Option<&str>, status: StatusCode) -> Response {
    let csrf = random_token();
    let body = html! {
        h1 { (tr(lang, "login.title")) }
        @if let Some(e) = error { p.error id="login-error" role="alert" { (e) } }
        form.login method="post" action="/login" {
            input type="hidden" name="csrf" value=(csrf);
            label for="user" { (tr(lang, "login.user")) }
            input name="user" id="user" autocomplete="username" required;
            label for="password" { (tr(lang, "login.password")) }
            input name="password" id="password" type="password" autocomplete="current-password" required;
            button type="submit" id="login" { (tr(lang, "login.submit")) }
        }
    };
    let mut resp = (
        status,
        page_without_caller(lang, tr(lang, "login.title"), &body.into_string()),
    )
        .into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, LOGIN_CSRF_COOKIE, &csrf, Some(3600)),
    );
    resp
}

/// The login form.
#[derive(Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
    csrf: String,
}

/// `POST /login`.
pub async fn login(
    State(state): State<Arc<WebState>>,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang = Lang::of(&headers);
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if expected.is_empty() || !ct_eq(&expected, &form.csrf) {
        return login_form(
            &state,
            lang,
            Some(tr(lang, "error.csrf")),
            StatusCode::FORBIDDEN,
        );
    }
    let ip = client.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.0);
    let user = form.user.trim().to_owned();
    if user.is_empty() || user.len() > MAX_USER_LEN {
        return login_form(
            &state,
            lang,
            Some(tr(lang, "login.failed")),
            StatusCode::UNAUTHORIZED,
        );
    }
    let now = Instant::now();
    let (hash, has_card, known) = state
        .services
        .inventory()
        .user(&user)
        .map(|u| (u.password_hash.clone(), u.matrix_card.is_some(), true))
        .unwrap_or_default();
    // While the card is locked the password is not even checked: a right and a wrong password
    // get the same answer, so the lockout is no oracle for guessing it.
    if has_card && state.matrix.is_locked(&user, now) {
        warn!(user = %user, client_ip = %ip, "Web login refused: matrix card locked out");
        return card_locked(&state, lang);
    }
    // Likewise while the user or address is locked out by the throttle: the answer is a wrong
    // password's (for a card user, the card step that fails at its end).
    let locked = match state.throttle.check(&user, ip, now) {
        Ok(()) => false,
        Err(l) => {
            debug!(user = %user, client_ip = %ip, subject = %l.subject, "Web login refused: locked out after repeated failures");
            true
        }
    };
    if locked && !has_card {
        return login_form(
            &state,
            lang,
            Some(tr(lang, "login.failed")),
            StatusCode::UNAUTHORIZED,
        );
    }
    let password = form.password;
    let ok = match hash {
        Some(hash) if !locked => {
            tokio::task::spawn_blocking(move || crate::auth::verify_password(&hash, &password))
                .await
                .unwrap_or(false)
        }
        _ => false,
    };
    if has_card {
        return start_card(&state, lang, &user, ip, ok, locked);
    }
    if !ok {
        let why = if known {
            "wrong password"
        } else {
            "unknown user"
        };
        failed(&state, &user, ip, why).await;
        return login_form(
            &state,
            lang,
            Some(tr(lang, "login.failed")),
            StatusCode::UNAUTHORIZED,
        );
    }
    state.throttle.record_success(&user, ip);
    logged_in(&state, lang, &user, ip, "Web login")
}

/// A failed web login: counted by the throttle (a lockout it starts is audited), logged and
/// written as an `auth.failed` denial. `why` names the factor, never a secret.
async fn failed(state: &WebState, user: &str, ip: IpAddr, why: &str) {
    let lockouts = state.throttle.record_failure(user, ip, Instant::now());
    info!(user = %user, client_ip = %ip, reason = why, "Web login failed");
    state
        .services
        .auth_failed(
            Protocol::Web,
            user,
            ip,
            None,
            format!("web UI login of {user} from {ip} refused: {why}"),
        )
        .await;
    state
        .services
        .lockouts_started(&lockouts, Protocol::Web, ip)
        .await;
}

/// Opens the browser session of `user` and sends them to the session list.
fn logged_in(state: &WebState, lang: Lang, user: &str, ip: IpAddr, what: &str) -> Response {
    let Some((token, _csrf)) = state.auth.create(user) else {
        return login_form(
            state,
            lang,
            Some(tr(lang, "login.limited")),
            StatusCode::SERVICE_UNAVAILABLE,
        );
    };
    info!(user = %user, client_ip = %ip, "{what}");
    let mut resp = Redirect::to("/sessions").into_response();
    let headers = resp.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(state, SESSION_COOKIE, &token, None),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(state, LOGIN_CSRF_COOKIE, "", Some(0)),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(state, PENDING_COOKIE, "", Some(0)),
    );
    resp
}

/// The user's card from the current inventory; `None` (logged) when it is gone or unusable:
/// the login is refused then, never let through on the password alone.
fn card_of(state: &WebState, user: &str, ip: IpAddr) -> Option<MatrixCard> {
    let rows = state.services.inventory().user(user)?.matrix_card.clone()?;
    match MatrixCard::from_config_rows(&rows) {
        Ok(card) => Some(card),
        Err(e) => {
            warn!(user = %user, client_ip = %ip, error = %e, "Web login refused: the user's matrix card is unusable");
            None
        }
    }
}

/// The password step of a card user is done (`password_ok` says how, `locked` whether it was
/// refused unchecked): a pending login and the challenge, whatever the answer was.
fn start_card(
    state: &WebState,
    lang: Lang,
    user: &str,
    ip: IpAddr,
    password_ok: bool,
    locked: bool,
) -> Response {
    let Some(card) = card_of(state, user, ip) else {
        return login_form(
            state,
            lang,
            Some(tr(lang, "login.failed")),
            StatusCode::UNAUTHORIZED,
        );
    };
    let Some((token, csrf)) = state.auth.create_pending(user, password_ok, locked) else {
        return login_form(
            state,
            lang,
            Some(tr(lang, "login.limited")),
            StatusCode::SERVICE_UNAVAILABLE,
        );
    };
    let Some(mut resp) = card_form(state, lang, user, &card, &csrf, None, StatusCode::OK) else {
        state.auth.remove_pending(&token);
        warn!(user = %user, client_ip = %ip, "Web login refused: matrix card locked out");
        return card_locked(state, lang);
    };
    info!(user = %user, client_ip = %ip, "Web login: matrix card asked");
    let headers = resp.headers_mut();
    headers.append(
        header::SET_COOKIE,
        set_cookie(
            state,
            PENDING_COOKIE,
            &token,
            Some(PENDING_TIMEOUT.as_secs()),
        ),
    );
    headers.append(
        header::SET_COOKIE,
        set_cookie(state, LOGIN_CSRF_COOKIE, "", Some(0)),
    );
    resp
}

/// The login form with `message`, the pending login's cookie cleared: the card step is over.
fn login_form_ending_card(
    state: &WebState,
    lang: Lang,
    message: &'static str,
    status: StatusCode,
) -> Response {
    let mut resp = login_form(state, lang, Some(tr(lang, message)), status);
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(state, PENDING_COOKIE, "", Some(0)),
    );
    resp
}

/// The login form saying the card is locked.
fn card_locked(state: &WebState, lang: Lang) -> Response {
    login_form_ending_card(state, lang, "card.locked", StatusCode::TOO_MANY_REQUESTS)
}

/// The login form again because the pending login is gone (expired, unknown, or its user
/// or card removed from the inventory).
fn card_expired(state: &WebState, lang: Lang) -> Response {
    login_form_ending_card(state, lang, "card.expired", StatusCode::UNAUTHORIZED)
}

/// The matrix card form with the user's pending challenge (drawn if there is none); `None`
/// while the card is locked out.
fn card_form(
    state: &WebState,
    lang: Lang,
    user: &str,
    card: &MatrixCard,
    csrf: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Option<Response> {
    let challenge = state
        .matrix
        .challenge(user, card, &mut rand::rng(), Instant::now())?;
    let body = html! {
        h1 { (tr(lang, "card.title")) }
        @if let Some(e) = error { p.error id="card-error" role="alert" { (e) } }
        p id="card-intro" { (tr(lang, "card.intro")) }
        form.login id="card-form" method="post" action="/login/card" {
            input type="hidden" name="csrf" value=(csrf);
            @for (i, cell) in challenge.cells().iter().enumerate() {
                label for={ "answer-" (i) } {
                    (tr(lang, "card.cell")) " " span.card-cell id={ "cell-" (i) } { (cell) }
                }
                input name={ "a" (i) } id={ "answer-" (i) } inputmode="numeric" maxlength="2"
                    autocomplete="off" required;
            }
            button type="submit" id="card-submit" { (tr(lang, "card.submit")) }
        }
    };
    Some(
        (
            status,
            page_without_caller(lang, tr(lang, "card.title"), &body.into_string()),
        )
            .into_response(),
    )
}

/// `GET /login/card`: the card form of the pending login, with the user's pending challenge (a
/// reload shows the same cells until they are answered: redrawing gives nothing new).
pub async fn card_page(
    State(state): State<Arc<WebState>>,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
) -> Response {
    let lang = Lang::of(&headers);
    let ip = client.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.0);
    let Some(token) = cookie(&headers, PENDING_COOKIE) else {
        return Redirect::to("/login").into_response();
    };
    let Some(pending) = state.auth.pending(&token) else {
        return card_expired(&state, lang);
    };
    let Some(card) = card_of(&state, &pending.user, ip) else {
        state.auth.remove_pending(&token);
        return card_expired(&state, lang);
    };
    match card_form(
        &state,
        lang,
        &pending.user,
        &card,
        &pending.csrf,
        None,
        StatusCode::OK,
    ) {
        Some(resp) => resp,
        None => {
            state.auth.remove_pending(&token);
            warn!(user = %pending.user, client_ip = %ip, "Web login refused: matrix card locked out");
            card_locked(&state, lang)
        }
    }
}

// The form has one field per challenged cell.
const _: () = assert!(CHALLENGE_CELLS == 3);

/// The matrix card form: one answer per challenged cell, in order.
#[derive(Deserialize)]
pub struct CardForm {
    csrf: String,
    #[serde(default)]
    a0: String,
    #[serde(default)]
    a1: String,
    #[serde(default)]
    a2: String,
}

/// `POST /login/card`: checks the answer; right gives the session, wrong draws new cells.
pub async fn card_answer(
    State(state): State<Arc<WebState>>,
    client: Option<axum::Extension<ClientAddr>>,
    headers: HeaderMap,
    Form(form): Form<CardForm>,
) -> Response {
    let lang = Lang::of(&headers);
    let ip = client.map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.0);
    let Some(pending) = cookie(&headers, PENDING_COOKIE)
        .and_then(|token| state.auth.pending(&token).map(|p| (token, p)))
    else {
        info!(client_ip = %ip, "Web matrix card answer without a pending login (expired or unknown)");
        return card_expired(&state, lang);
    };
    let (token, pending) = pending;
    let user = pending.user.clone();
    let Some(card) = card_of(&state, &user, ip) else {
        state.auth.remove_pending(&token);
        info!(user = %user, client_ip = %ip, "Web matrix card answer refused: the user or card is gone from the inventory");
        return card_expired(&state, lang);
    };
    if !ct_eq(&pending.csrf, &form.csrf) {
        warn!(user = %user, client_ip = %ip, "Web matrix card answer without a valid CSRF token");
        return card_form(
            &state,
            lang,
            &user,
            &card,
            &pending.csrf,
            Some(tr(lang, "error.csrf")),
            StatusCode::FORBIDDEN,
        )
        .unwrap_or_else(|| card_locked(&state, lang));
    }
    let now = Instant::now();
    let retry = |state: &WebState| {
        card_form(
            state,
            lang,
            &user,
            &card,
            &pending.csrf,
            Some(tr(lang, "card.failed")),
            StatusCode::UNAUTHORIZED,
        )
    };
    // Locked out (at the password step, or since): refused like a wrong answer, unchecked.
    if pending.locked || state.throttle.check(&user, ip, now).is_err() {
        debug!(user = %user, client_ip = %ip, "Web matrix card answer refused: locked out after repeated failures");
        return retry(&state).unwrap_or_else(|| {
            state.auth.remove_pending(&token);
            card_locked(&state, lang)
        });
    }
    let answers = [form.a0.as_str(), form.a1.as_str(), form.a2.as_str()];
    let verdict = state.matrix.answer(&user, &card, &answers, now);
    if pending.password_ok && verdict == Verdict::Pass {
        state.auth.remove_pending(&token);
        state.throttle.record_success(&user, ip);
        state.second_factors.record_pass(&user, ip, now);
        return logged_in(&state, lang, &user, ip, "Web login (with matrix card)");
    }
    let why = match verdict {
        Verdict::Pass => "wrong password",
        Verdict::Fail { remaining } => {
            info!(user = %user, client_ip = %ip, remaining, "Web matrix card answer rejected");
            if pending.password_ok {
                "wrong matrix card answer"
            } else {
                "wrong password and wrong matrix card answer"
            }
        }
        Verdict::Locked => {
            warn!(user = %user, client_ip = %ip, "Web matrix card locked out after repeated failures");
            "wrong matrix card answer; the card is now locked out"
        }
    };
    failed(&state, &user, ip, why).await;
    if verdict == Verdict::Locked {
        state.auth.remove_pending(&token);
        return card_locked(&state, lang);
    }
    retry(&state).unwrap_or_else(|| {
        state.auth.remove_pending(&token);
        card_locked(&state, lang)
    })
}

/// A form with only a CSRF token (logout, kill).
#[derive(Deserialize)]
pub struct CsrfForm {
    /// The token.
    pub csrf: String,
}

/// `POST /logout`.
pub async fn logout(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    if !caller.csrf_ok(&form.csrf) {
        return (StatusCode::FORBIDDEN, tr(caller.lang, "error.csrf")).into_response();
    }
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state.auth.remove(&token);
    }
    // The matrix card passed at this login no longer counts for VNC consoles or RDP.
    state.second_factors.forget(&caller.user);
    info!(user = %caller.user, "Web logout");
    let mut resp = Redirect::to("/login").into_response();
    resp.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&state, SESSION_COOKIE, "", Some(0)),
    );
    resp
}
