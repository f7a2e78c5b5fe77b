//! The live view: security staff and auditors watch a live session as it happens (terminal,
//! VNC, RDP), with the emergency stop on the same page for security staff.
//!
//! Opening `/sessions/{id}/watch` registers the viewer as a watcher in the catalogue; every
//! picture the page fetches (`watch/screen` for terminals, `watch/frame` for RDP and VNC)
//! beats for it, and leaving the page says so (`watch/leave`). The instance running the
//! session reads the watchers, tells the contractor and records each join and leave
//! (`services/watching.rs`): watching is itself on the record.
//!
//! The picture is the recording as written so far, so what staff see is what the auditors
//! will replay. Graphical recordings are followed: each fetch decodes only what the recording
//! gained since the last one ([`player::export::Graphical::follow`]).

use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use player::export::Graphical;
use policy::{Protocol, SessionId};
use recorder::catalogue::{SessionRow, Watcher, WatcherId};
use serde::Deserialize;
use tracing::info;

use super::WebState;
use super::access::{read_recording, recording_size, replay_of, visible_session};
use super::auth::Caller;
use super::i18n::tr;
use super::layout::{catalogue_failed, is_terminal, not_found, page};
use super::session_list::session_title;
use maud::html;

/// Live graphical replays kept (one per watched session; the least recently used goes).
pub const MAX_LIVE_REPLAYS: usize = 8;

/// A followed graphical recording and its latest picture.
struct LiveReplay {
    id: SessionId,
    /// The recording's size when last followed.
    size: u64,
    replay: Graphical,
    png: Arc<Vec<u8>>,
    at_us: u64,
    used: u64,
}

/// The followed replays of watched graphical sessions.
#[derive(Default)]
pub struct LiveCache {
    entries: Vec<LiveReplay>,
    clock: u64,
}

impl LiveCache {
    fn take(&mut self, id: SessionId) -> Option<LiveReplay> {
        let i = self.entries.iter().position(|e| e.id == id)?;
        Some(self.entries.swap_remove(i))
    }

    fn put(&mut self, mut e: LiveReplay) {
        self.clock += 1;
        e.used = self.clock;
        self.entries.retain(|x| x.id != e.id);
        self.entries.push(e);
        while self.entries.len() > MAX_LIVE_REPLAYS {
            let Some(oldest) = self
                .entries
                .iter()
                .enumerate()
                .min_by_key(|(_, x)| x.used)
                .map(|(i, _)| i)
            else {
                break;
            };
            self.entries.swap_remove(oldest);
        }
    }
}

fn lock(state: &WebState) -> std::sync::MutexGuard<'_, LiveCache> {
    match state.live.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// A live session that `caller` may watch (staff only), or the response to give instead.
async fn watchable(state: &WebState, caller: &Caller, id: &str) -> Result<SessionRow, Response> {
    if !caller.sees_all_sessions() {
        return Err(not_found(caller));
    }
    match visible_session(state, caller, id).await {
        Ok(Some(row)) if row.recording.is_some() => Ok(row),
        Ok(_) => Err(not_found(caller)),
        Err(resp) => Err(resp),
    }
}

/// `GET /sessions/{id}/watch` (auditor, security, admin): the live view. A session that has
/// ended goes to its player.
pub async fn watch(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let lang = caller.lang;
    let row = match watchable(&state, &caller, &id).await {
        Ok(row) => row,
        Err(resp) => return resp,
    };
    let watcher = Watcher {
        viewer: caller.user.clone(),
        role: caller.role.as_str().to_owned(),
    };
    let joined = state
        .services
        .catalogue()
        .watch_join(row.id, &watcher, state.services.instance(), Utc::now())
        .await;
    let watcher_id = match joined {
        Ok(Some(w)) => w,
        Ok(None) => return Redirect::to(&format!("/sessions/{}/play", row.id)).into_response(),
        Err(e) => return catalogue_failed(&state, &caller, &e),
    };
    info!(user = %caller.user, session = %row.id, "Watching a live session");
    let terminal = is_terminal(row.protocol);
    let title = tr(lang, "watch.title");
    let body = html! {
        h1 { (title) ": " a href={ "/sessions/" (row.id) } { (session_title(lang, &row)) } }
        div id="watch" data-session=(row.id) data-watcher=(watcher_id)
            data-kind=(if terminal { "terminal" } else { "graphical" })
            data-csrf=(caller.csrf) data-msg-ended=(tr(lang, "watch.ended")) {
            p id="watch-status" class="live" role="status" { (tr(lang, "watch.live")) }
            @if terminal {
                pre id="screen" class="terminal" {}
            } @else {
                div.canvas-box { canvas id="canvas" width="0" height="0" {} }
            }
        }
        @if caller.is_security() {
            (super::pages::stop_form(&caller, &row, None))
        }
        script src="/assets/watch.js" {}
    };
    page(&caller, title, &body.into_string()).into_response()
}

/// Which watcher a picture is fetched for.
#[derive(Debug, Deserialize)]
pub struct WatchQuery {
    w: String,
}

/// Beats for the watcher; `Err` is the response when it is no longer watching (it left, or
/// the session ended: the page stops and says so).
async fn beat(state: &WebState, caller: &Caller, w: &str) -> Result<(), Response> {
    let Ok(watcher) = w.parse::<WatcherId>() else {
        return Err((
            StatusCode::BAD_REQUEST,
            tr(caller.lang, "error.bad_request"),
        )
            .into_response());
    };
    match state
        .services
        .catalogue()
        .watch_beat(watcher, &caller.user, Utc::now())
        .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(StatusCode::GONE.into_response()),
        Err(e) => Err(catalogue_failed(state, caller, &e)),
    }
}

/// `GET /sessions/{id}/watch/screen?w=WATCHER`: a terminal session's screen now, as JSON
/// `{at_ms, cols, rows, lines, cursor}`; 410 once the session has ended.
pub async fn screen(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<WatchQuery>,
) -> Response {
    let row = match watchable(&state, &caller, &id).await {
        Ok(row) if is_terminal(row.protocol) => row,
        Ok(_) => return not_found(&caller),
        Err(resp) => return resp,
    };
    if let Err(resp) = beat(&state, &caller, &q.w).await {
        return resp;
    }
    let Some(replay) = replay_of(&state, &row).await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            tr(caller.lang, "player.undecodable"),
        )
            .into_response();
    };
    let json = tokio::task::spawn_blocking(move || {
        let end = replay.end_us();
        let s = replay.screen_at(end);
        serde_json::json!({
            // Rounded up, like the player's moments: the screen holds everything recorded
            // up to that millisecond.
            "at_ms": s.at_us.div_ceil(1000),
            "cols": s.cols,
            "rows": s.rows,
            "lines": s.lines,
            "cursor": s.cursor,
        })
    })
    .await;
    match json {
        Ok(json) => super::playback::json_response(&json),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// `GET /sessions/{id}/watch/frame?w=WATCHER`: an RDP or VNC session's screen now, as PNG
/// (header `x-frame-at-ms`: the moment it shows); 410 once the session has ended.
pub async fn frame(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<WatchQuery>,
) -> Response {
    let row = match watchable(&state, &caller, &id).await {
        Ok(row) if matches!(row.protocol, Protocol::Rdp | Protocol::ConsoleVnc) => row,
        Ok(_) => return not_found(&caller),
        Err(resp) => return resp,
    };
    if let Err(resp) = beat(&state, &caller, &q.w).await {
        return resp;
    }
    let location = row.recording.clone().unwrap_or_default();
    let Some(size) = recording_size(&state, &location).await else {
        return not_found(&caller);
    };
    let cached = lock(&state).take(row.id);
    let entry = match cached {
        Some(e) if e.size == size => Some(e),
        stale => {
            let Some(bytes) = read_recording(&state, &location).await else {
                return not_found(&caller);
            };
            let id = row.id;
            tokio::task::spawn_blocking(move || follow(id, stale, &bytes, size))
                .await
                .ok()
                .flatten()
        }
    };
    let Some(entry) = entry else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            tr(caller.lang, "player.undecodable"),
        )
            .into_response();
    };
    let (png, at_us) = (Arc::clone(&entry.png), entry.at_us);
    lock(&state).put(entry);
    (
        [
            (header::CONTENT_TYPE, "image/png".to_owned()),
            (header::CACHE_CONTROL, "private, no-store".to_owned()),
            (
                header::HeaderName::from_static("x-frame-at-ms"),
                // Rounded up: the picture holds everything recorded up to that millisecond.
                at_us.div_ceil(1000).to_string(),
            ),
        ],
        png.as_ref().clone(),
    )
        .into_response()
}

/// Brings a live replay up to `bytes` (opening one if there is none yet) and draws its end.
fn follow(
    id: SessionId,
    previous: Option<LiveReplay>,
    bytes: &[u8],
    size: u64,
) -> Option<LiveReplay> {
    let mut replay = match previous {
        Some(mut e) => match e.replay.follow(bytes) {
            Ok(_) => e.replay,
            // The recording is not what was followed (replaced): start again.
            Err(_) => {
                e.replay = Graphical::open(bytes).ok()?;
                e.replay
            }
        },
        None => Graphical::open(bytes).ok()?,
    };
    let at_us = replay.end_us();
    let frame = replay.frame_at(at_us).ok()?;
    let mut png = Vec::new();
    player::export::write_png(&frame, &mut png).ok()?;
    Some(LiveReplay {
        id,
        size,
        replay,
        png: Arc::new(png),
        at_us,
        used: 0,
    })
}

/// The form the page sends when it is left.
#[derive(Debug, Deserialize)]
pub struct LeaveForm {
    csrf: String,
    w: String,
}

/// `POST /sessions/{id}/watch/leave`: the viewer left the page (sent as a beacon).
pub async fn leave(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(_id): Path<String>,
    Form(form): Form<LeaveForm>,
) -> Response {
    if !caller.csrf_ok(&form.csrf) {
        return (StatusCode::FORBIDDEN, tr(caller.lang, "error.csrf")).into_response();
    }
    let Ok(watcher) = form.w.parse::<WatcherId>() else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    match state
        .services
        .catalogue()
        .watch_leave(watcher, &caller.user, Utc::now())
        .await
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => catalogue_failed(&state, &caller, &e),
    }
}
