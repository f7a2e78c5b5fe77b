//! Playback endpoints of the player page: the timeline (duration, policy-event markers, idle
//! periods) of any recording, the screen of a graphical recording (RDP, VNC) at a moment as
//! PNG, and search in terminal recordings.
//!
//! Every handler goes through [`visible_session`] first, like the recording download: a
//! session the caller may not see is a 404 whatever its id.
//!
//! Graphical decoders move forward cheaply but a VNC replay must start again from the
//! beginning to go back (RFB updates depend on the previous picture), so decoded replays are
//! kept at the positions they reached: a small cache of "keyframes" per session. Playing
//! forward advances one of them; seeking back picks the latest one before the moment.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use player::export::Graphical;
use policy::{Protocol, SessionId};
use recorder::format::{Direction, EventKind, RecordKind};
use recorder::reader::Recording;
use serde::Deserialize;
use serde_json::json;

use super::WebState;
use super::access::{read_recording, recording_size, replay_of, visible_session};
use super::auth::Caller;
use super::i18n::{Lang, tr};
use super::layout::{is_terminal, not_found};

/// Gaps without activity at least this long are idle periods ("skip idle" jumps over them).
pub const IDLE_MIN: Duration = Duration::from_secs(3);
/// Decoded graphical replays kept, over all sessions (each holds its recording in memory).
pub const MAX_REPLAYS: usize = 6;
/// Decoded replays kept per session (positions to seek back to).
pub const MAX_REPLAYS_PER_SESSION: usize = 3;
/// Markers sent to the browser at most (a flood of events would not be readable anyway).
pub const MAX_MARKERS: usize = 2_000;
/// Search hits sent to the browser at most.
pub const MAX_HITS: usize = 200;

/// One decoded graphical replay, positioned at `pos_us`.
pub struct ReplaySlot {
    id: SessionId,
    /// The recording's size when decoded: a live recording grows, and a grown file is new.
    size: u64,
    pos_us: u64,
    /// RDP replays seek through their own keyframes: any position serves.
    seeks_back: bool,
    used: u64,
    replay: Graphical,
}

/// The decoded-replay cache (see the module docs).
#[derive(Default)]
pub struct ReplayCache {
    slots: Vec<ReplaySlot>,
    clock: u64,
}

impl ReplayCache {
    /// Takes out the best replay of `id` for moment `at_us`: the one furthest along but not
    /// past it (or any that can seek back).
    fn take(&mut self, id: SessionId, size: u64, at_us: u64) -> Option<ReplaySlot> {
        let best = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.id == id && s.size == size && (s.seeks_back || s.pos_us <= at_us))
            .max_by_key(|(_, s)| if s.seeks_back { 0 } else { s.pos_us })
            .map(|(i, _)| i)?;
        Some(self.slots.swap_remove(best))
    }

    /// Puts a replay back, dropping the least recently used beyond the caps.
    fn put(&mut self, mut slot: ReplaySlot) {
        self.clock += 1;
        slot.used = self.clock;
        // Stale decodes of a file that has grown since are of no use.
        self.slots
            .retain(|s| s.id != slot.id || s.size == slot.size);
        let id = slot.id;
        self.slots.push(slot);
        while self.slots.iter().filter(|s| s.id == id).count() > MAX_REPLAYS_PER_SESSION {
            self.evict(Some(id));
        }
        while self.slots.len() > MAX_REPLAYS {
            self.evict(None);
        }
    }

    fn evict(&mut self, only: Option<SessionId>) {
        let oldest = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| only.is_none_or(|id| s.id == id))
            .min_by_key(|(_, s)| s.used)
            .map(|(i, _)| i);
        if let Some(i) = oldest {
            self.slots.swap_remove(i);
        }
    }
}

fn is_graphical(p: Protocol) -> bool {
    matches!(p, Protocol::Rdp | Protocol::ConsoleVnc)
}

fn lock(state: &WebState) -> std::sync::MutexGuard<'_, ReplayCache> {
    match state.replays.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

pub(super) fn json_response(value: &serde_json::Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "private, no-store"),
        ],
        value.to_string(),
    )
        .into_response()
}

fn undecodable(lang: Lang) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        tr(lang, "player.undecodable"),
    )
        .into_response()
}

/// The label of a recorded event kind (`EventKind::as_str`) in `lang`.
pub fn marker_label(lang: Lang, kind: &str) -> &'static str {
    let key = match kind {
        "channel-stripped" => "event.channel-stripped",
        "clipboard-dropped" => "event.clipboard-dropped",
        "sftp-refused" => "event.sftp-refused",
        "forwarding-refused" => "event.forwarding-refused",
        "session-killed" => "event.session-killed",
        "recording-truncated" => "event.recording-truncated",
        "policy" => "event.policy",
        "note" => "event.note",
        "user-identified" => "event.user-identified",
        _ => "event.other",
    };
    tr(lang, key)
}

/// Idle periods of at least [`IDLE_MIN`] between activity times (ascending or not), from the
/// start to the end.
fn idle_between(activity: impl Iterator<Item = u64>, end_us: u64) -> Vec<(u64, u64)> {
    let min = u64::try_from(IDLE_MIN.as_micros()).unwrap_or(u64::MAX);
    let mut out = Vec::new();
    let mut prev = 0u64;
    for t in activity.chain(std::iter::once(end_us)) {
        if t > prev && t - prev >= min {
            out.push((prev, t));
        }
        prev = prev.max(t);
    }
    out
}

/// What the timeline of a graphical recording holds: (end, markers (µs, kind, detail), idle).
type GraphicalTimeline = (u64, Vec<(u64, String, String)>, Vec<(u64, u64)>);

/// Reads the timeline of a graphical recording: activity is what the server drew (the
/// client asks for updates continuously, so its side says nothing about activity).
fn graphical_timeline(bytes: &[u8]) -> Option<GraphicalTimeline> {
    let rec = Recording::parse(bytes).ok()?;
    let mut markers = Vec::new();
    let mut activity = Vec::new();
    let mut last = 0u64;
    for r in rec.records() {
        // A damaged tail: what came before is still the timeline.
        let Ok(r) = r else { break };
        last = last.max(r.at_us);
        match r.kind {
            RecordKind::Data {
                direction: Direction::ServerToClient,
                ..
            } => activity.push(r.at_us),
            RecordKind::Event(ev)
                if !matches!(ev.kind, EventKind::Resize { .. }) && markers.len() < MAX_MARKERS =>
            {
                markers.push((r.at_us, ev.kind.as_str().to_owned(), ev.detail));
            }
            _ => {}
        }
    }
    let end = rec.end_us().max(last);
    let idle = idle_between(activity.into_iter(), end);
    Some((end, markers, idle))
}

/// `GET /sessions/{id}/timeline`: JSON `{kind, duration_ms, markers: [{ms, kind, label,
/// detail}], idle: [{start_ms, end_ms}]}`.
pub async fn timeline(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    let lang = caller.lang;
    let row = match visible_session(&state, &caller, &id).await {
        Ok(Some(row)) if row.recording.is_some() => row,
        Ok(_) => return not_found(&caller),
        Err(resp) => return resp,
    };
    let (kind, end_us, markers, idle) = if is_terminal(row.protocol) {
        let Some(replay) = replay_of(&state, &row).await else {
            return undecodable(lang);
        };
        let markers = replay
            .markers()
            .iter()
            .take(MAX_MARKERS)
            .map(|m| (m.at_us, m.kind.clone(), m.detail.clone()))
            .collect::<Vec<_>>();
        let idle = replay
            .idle_periods(IDLE_MIN)
            .iter()
            .map(|p| (p.start_us, p.end_us))
            .collect::<Vec<_>>();
        ("terminal", replay.end_us(), markers, idle)
    } else if is_graphical(row.protocol) {
        let Some(bytes) = read_recording(&state, row.recording.as_deref().unwrap_or("")).await
        else {
            return not_found(&caller);
        };
        let parsed = tokio::task::spawn_blocking(move || graphical_timeline(&bytes)).await;
        let Ok(Some((end, markers, idle))) = parsed else {
            return undecodable(lang);
        };
        ("graphical", end, markers, idle)
    } else {
        return not_found(&caller);
    };
    let markers: Vec<_> = markers
        .into_iter()
        .map(|(at, kind, detail)| {
            json!({
                "ms": ms_after(at),
                "label": marker_label(lang, &kind),
                "kind": kind,
                "detail": detail,
            })
        })
        .collect();
    let idle: Vec<_> = idle
        .into_iter()
        .map(|(s, e)| json!({"start_ms": s / 1000, "end_ms": e / 1000}))
        .collect();
    json_response(&json!({
        "kind": kind,
        "protocol": row.protocol.to_string(),
        "duration_ms": ms_after(end_us),
        "markers": markers,
        "idle": idle,
    }))
}

/// The first whole millisecond at or after `at_us`: the browser asks for screens by the
/// millisecond, and a moment rounded down would be just before what happened at it.
fn ms_after(at_us: u64) -> u64 {
    at_us.div_ceil(1000)
}

/// The moment of a frame, in seconds from the start.
#[derive(Debug, Default, Deserialize)]
pub struct FrameQuery {
    t: Option<f64>,
    /// `1` draws the RDP pointer over the screen (other kinds have none to draw).
    pointer: Option<u8>,
}

/// Seconds (possibly fractional, possibly nonsense) to microseconds.
fn seconds_to_us(t: Option<f64>) -> u64 {
    match t {
        Some(t) if t.is_finite() && t > 0.0 => {
            let us = (t * 1_000_000.0).round();
            if us >= u64::MAX as f64 {
                u64::MAX
            } else {
                // In range and non-negative: checked just above.
                us as u64
            }
        }
        _ => 0,
    }
}

/// `GET /sessions/{id}/frame?t=SECONDS[&pointer=1]`: the screen of a graphical recording at `t` as PNG.
pub async fn frame(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<FrameQuery>,
) -> Response {
    let lang = caller.lang;
    let row = match visible_session(&state, &caller, &id).await {
        Ok(Some(row)) if is_graphical(row.protocol) => row,
        Ok(_) => return not_found(&caller),
        Err(resp) => return resp,
    };
    let Some(location) = row.recording.clone() else {
        return not_found(&caller);
    };
    let Some(size) = recording_size(&state, &location).await else {
        return not_found(&caller);
    };
    let at_us = seconds_to_us(q.t);
    let draw_pointer = q.pointer == Some(1);
    let cached = lock(&state).take(row.id, size, at_us);
    let slot = match cached {
        Some(slot) => slot,
        None => {
            let Some(bytes) = read_recording(&state, &location).await else {
                return not_found(&caller);
            };
            let opened = tokio::task::spawn_blocking(move || Graphical::open(&bytes)).await;
            match opened {
                Ok(Ok(replay)) => ReplaySlot {
                    id: row.id,
                    size,
                    pos_us: 0,
                    seeks_back: matches!(replay, Graphical::Rdp(_) | Graphical::Vnc(_)),
                    used: 0,
                    replay,
                },
                Ok(Err(e)) => {
                    tracing::info!(session = %row.id, error = %e, "Player cannot decode a recording");
                    return undecodable(lang);
                }
                Err(_) => return undecodable(lang),
            }
        }
    };
    let decoded = tokio::task::spawn_blocking(move || {
        let mut slot = slot;
        if let Graphical::Rdp(rdp) = &mut slot.replay {
            rdp.set_draw_pointer(draw_pointer);
        }
        let at = at_us.min(slot.replay.end_us());
        let png = slot.replay.frame_at(at).and_then(|f| {
            let mut out = Vec::new();
            player::export::write_png(&f, &mut out)?;
            Ok(out)
        });
        slot.pos_us = at;
        (slot, png, at)
    })
    .await;
    let Ok((slot, png, at)) = decoded else {
        return undecodable(lang);
    };
    lock(&state).put(slot);
    match png {
        Ok(png) => (
            [
                (header::CONTENT_TYPE, "image/png".to_owned()),
                (header::CACHE_CONTROL, "private, max-age=60".to_owned()),
                (
                    header::HeaderName::from_static("x-frame-at-ms"),
                    (at / 1000).to_string(),
                ),
            ],
            png,
        )
            .into_response(),
        Err(e) => {
            tracing::info!(session = %row.id, error = %e, "Player cannot decode a frame");
            undecodable(lang)
        }
    }
}

/// A search query.
#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    q: Option<String>,
}

/// `GET /sessions/{id}/search?q=TEXT`: where TEXT appeared in the output or was typed, in a
/// terminal recording; or, for auditors and security staff, where it was typed in a graphical
/// (RDP, VNC) session, from its typed-text index (`source` is `typed`): JSON
/// `{hits: [{ms, source, context}], more}`, in time order.
pub async fn search(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<SearchQuery>,
) -> Response {
    let lang = caller.lang;
    let row = match visible_session(&state, &caller, &id).await {
        Ok(Some(row)) if is_terminal(row.protocol) => row,
        Ok(Some(row)) if caller.may_search_typed_text() => {
            return typed_search(&state, &caller, row.id, q.q.unwrap_or_default()).await;
        }
        Ok(_) => return not_found(&caller),
        Err(resp) => return resp,
    };
    let query = q.q.unwrap_or_default();
    if query.trim().is_empty() || query.len() > player::terminal::MAX_QUERY_LEN {
        return (StatusCode::BAD_REQUEST, tr(lang, "error.bad_request")).into_response();
    }
    let Some(replay) = replay_of(&state, &row).await else {
        return undecodable(lang);
    };
    let hits = tokio::task::spawn_blocking(move || replay.search(&query)).await;
    let Ok(hits) = hits else {
        return undecodable(lang);
    };
    let more = hits.len() > MAX_HITS;
    let hits: Vec<_> = hits
        .iter()
        .take(MAX_HITS)
        .map(|h| {
            json!({
                "ms": ms_after(h.at_us),
                "source": match h.source {
                    player::terminal::Source::Output => "output",
                    player::terminal::Source::Input => "input",
                },
                "context": h.context,
            })
        })
        .collect();
    json_response(&json!({ "hits": hits, "more": more }))
}

/// The typed-text hits of one graphical session.
async fn typed_search(state: &WebState, caller: &Caller, id: SessionId, query: String) -> Response {
    let lang = caller.lang;
    if query.trim().is_empty() || query.chars().count() > recorder::catalogue::MAX_TYPED_QUERY_CHARS
    {
        return (StatusCode::BAD_REQUEST, tr(lang, "error.bad_request")).into_response();
    }
    let q = recorder::catalogue::TypedTextQuery {
        text: query,
        session: Some(id),
        limit: u32::try_from(MAX_HITS + 1).unwrap_or(u32::MAX),
        ..Default::default()
    };
    let mut hits = match state.services.catalogue().search_typed_text(&q).await {
        Ok(h) => h,
        Err(e) => return super::layout::catalogue_failed(state, caller, &e),
    };
    let more = hits.len() > MAX_HITS;
    hits.truncate(MAX_HITS);
    // Newest first from the catalogue; the player lists a session's hits in time order.
    hits.reverse();
    let hits: Vec<_> = hits
        .iter()
        .map(|h| json!({ "ms": ms_after(h.at_us), "source": "typed", "context": h.text }))
        .collect();
    json_response(&json!({ "hits": hits, "more": more }))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn idle_periods_cover_gaps_start_and_end() {
        let s = 1_000_000;
        let idle = idle_between([5 * s, 6 * s, 7 * s, 20 * s].into_iter(), 30 * s);
        assert_eq!(idle, vec![(0, 5 * s), (7 * s, 20 * s), (20 * s, 30 * s)]);
        assert!(idle_between([1, 2].into_iter(), 3).is_empty());
    }

    #[test]
    fn seconds_are_clamped() {
        assert_eq!(seconds_to_us(None), 0);
        assert_eq!(seconds_to_us(Some(f64::NAN)), 0);
        assert_eq!(seconds_to_us(Some(-3.0)), 0);
        assert_eq!(seconds_to_us(Some(1.5)), 1_500_000);
        assert_eq!(seconds_to_us(Some(1e300)), u64::MAX);
    }
}
