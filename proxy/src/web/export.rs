//! `GET /sessions/{id}/export/{format}`: the exports of `sekisho export` from the web UI:
//! `txt` and `asciicast` of terminal sessions, `png` (a moment, `?t=SECONDS[&pointer=1]`) and
//! `mp4` of graphical ones (RDP, VNC). The same code as the command line makes them
//! ([`crate::export::export_in_memory`], [`crate::export::encode_mp4`]).
//!
//! Access is the player's: a session the caller may not see is a 404 whatever its id. The
//! recording is read whole (capped at [`MAX_RECORDING_BYTES`]) and decoded on the blocking
//! pool, never on the async runtime. Downloads are named after the session
//! ([`download_name`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use policy::Protocol;
use recorder::catalogue::SessionRow;
use serde::Deserialize;
use tracing::{info, warn};

use super::WebState;
use super::access::{read_recording, visible_session};
use super::auth::Caller;
use super::i18n::{Lang, tr};
use super::layout::{is_terminal, not_found};
use crate::export::ExportFormat;

#[cfg(doc)]
use super::MAX_RECORDING_BYTES;

/// Largest video served from the web UI: the file is read into memory to be sent, and a
/// video past this is a long session better exported with `sekisho export` on the server.
pub const MAX_VIDEO_BYTES: u64 = 256 << 20;

/// Videos encoded at once: each holds a decoded replay and an ffmpeg using the CPU for as long
/// as the recording plays at 10 frames a second; one at a time keeps the UI responsive.
static VIDEO_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// The formats the web UI exports (the command line's, less the bundle, which has its own
/// endpoint with its own rules in `bundle.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebFormat {
    /// The session's text, one screen after another (terminals).
    Txt,
    /// asciicast v2 with the policy events as markers (terminals).
    Asciicast,
    /// The screen at a moment (graphical sessions).
    Png,
    /// The whole session as H.264 video (graphical sessions; needs ffmpeg).
    Mp4,
}

impl WebFormat {
    /// Parses the path segment (`txt`, `asciicast`, `png`, `mp4`).
    pub fn parse(s: &str) -> Option<WebFormat> {
        match s {
            "txt" => Some(WebFormat::Txt),
            "asciicast" => Some(WebFormat::Asciicast),
            "png" => Some(WebFormat::Png),
            "mp4" => Some(WebFormat::Mp4),
            _ => None,
        }
    }

    /// The file name's extension.
    pub fn extension(self) -> &'static str {
        match self {
            WebFormat::Txt => "txt",
            WebFormat::Asciicast => "cast",
            WebFormat::Png => "png",
            WebFormat::Mp4 => "mp4",
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            WebFormat::Txt => "text/plain; charset=utf-8",
            WebFormat::Asciicast => "application/x-asciicast",
            WebFormat::Png => "image/png",
            WebFormat::Mp4 => "video/mp4",
        }
    }

    /// Whether the format applies to a session of `protocol`: text for terminals, pictures
    /// for RDP and VNC (the command line also draws terminals as pictures, but the player
    /// shows a terminal as text, which is what its exports give).
    pub fn applies_to(self, protocol: Protocol) -> bool {
        match self {
            WebFormat::Txt | WebFormat::Asciicast => is_terminal(protocol),
            WebFormat::Png | WebFormat::Mp4 => {
                matches!(protocol, Protocol::Rdp | Protocol::ConsoleVnc)
            }
        }
    }
}

/// Why an export was not made; each is told to the caller in their language.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("format does not apply to this session")]
    NotApplicable,
    #[error("cannot export the recording: {0:#}")]
    Undecodable(anyhow::Error),
    #[error("ffmpeg is not installed")]
    NoFfmpeg,
    #[error("another video is being exported")]
    Busy,
    #[error("the video exceeds the web download limit")]
    TooLarge,
}

impl ExportError {
    fn response(&self, lang: Lang) -> Response {
        let (status, key) = match self {
            ExportError::NotApplicable => {
                (StatusCode::UNPROCESSABLE_ENTITY, "export.not_applicable")
            }
            ExportError::Undecodable(_) => (StatusCode::UNPROCESSABLE_ENTITY, "export.failed"),
            ExportError::NoFfmpeg => (StatusCode::SERVICE_UNAVAILABLE, "export.no_ffmpeg"),
            ExportError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "export.busy"),
            ExportError::TooLarge => (StatusCode::UNPROCESSABLE_ENTITY, "export.too_large"),
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            tr(lang, key),
        )
            .into_response()
    }
}

/// The moment of a PNG export and whether to draw the RDP pointer.
#[derive(Debug, Default, Deserialize)]
pub struct ExportQuery {
    /// Seconds from the start (default 0).
    t: Option<f64>,
    /// `1` draws the recorded pointer (RDP only; ignored for other kinds).
    pointer: Option<u8>,
}

/// `sekisho-<user>-<target>-<YYYYMMDD-HHMM>-<shortid>.<ext>`, the start in the configured
/// time zone; the short id is the id's last 8 hex digits (its random part: the first ones
/// of a UUIDv7 are the time, shared by sessions started together). Names are reduced to
/// `[A-Za-z0-9._-]` so the header needs no quoting rules and no file system is surprised.
pub fn download_name(row: &SessionRow, timezone: Tz, format: WebFormat) -> String {
    download_name_of(
        &row.user,
        &row.target,
        row.started_at,
        timezone,
        &row.id.0.simple().to_string(),
        format,
    )
}

fn download_name_of(
    user: &str,
    target: &str,
    started: DateTime<Utc>,
    timezone: Tz,
    id_hex: &str,
    format: WebFormat,
) -> String {
    let safe = |s: &str| -> String {
        let cleaned: String = s
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(64)
            .collect();
        // A leading dot would hide the file on some systems.
        cleaned.trim_start_matches('.').to_owned()
    };
    let short = id_hex
        .char_indices()
        .rev()
        .nth(7)
        .and_then(|(i, _)| id_hex.get(i..))
        .unwrap_or(id_hex);
    format!(
        "sekisho-{}-{}-{}-{}.{}",
        safe(user),
        safe(target),
        started.with_timezone(&timezone).format("%Y%m%d-%H%M"),
        short,
        format.extension()
    )
}

/// Seconds (possibly nonsense) to microseconds from the start, clamped at zero.
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

/// `GET /sessions/{id}/export/{format}[?t=SECONDS&pointer=1]`.
pub async fn export(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path((id, format)): Path<(String, String)>,
    Query(q): Query<ExportQuery>,
) -> Response {
    let lang = caller.lang;
    let row = match visible_session(&state, &caller, &id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(&caller),
        Err(resp) => return resp,
    };
    let Some(format) = WebFormat::parse(&format) else {
        return not_found(&caller);
    };
    if !format.applies_to(row.protocol) {
        return ExportError::NotApplicable.response(lang);
    }
    let Some(location) = row.recording.as_deref() else {
        return not_found(&caller);
    };
    let made = match format {
        WebFormat::Mp4 => {
            // Asked before the recording is read: both are the likely refusals.
            let Ok(slot) = VIDEO_SLOTS.try_acquire() else {
                return ExportError::Busy.response(lang);
            };
            let Some(ffmpeg) = crate::export::find_ffmpeg() else {
                return ExportError::NoFfmpeg.response(lang);
            };
            let Some(bytes) = read_recording(&state, location).await else {
                return not_found(&caller);
            };
            video(
                slot,
                ffmpeg,
                bytes,
                row.protocol == Protocol::Rdp && q.pointer == Some(1),
            )
            .await
        }
        _ => {
            let Some(bytes) = read_recording(&state, location).await else {
                return not_found(&caller);
            };
            let (cli_format, at_us, pointer) = match format {
                WebFormat::Txt => (ExportFormat::Txt, None, false),
                WebFormat::Asciicast => (ExportFormat::Asciicast, None, false),
                _ => (
                    ExportFormat::Png,
                    Some(seconds_to_us(q.t)),
                    row.protocol == Protocol::Rdp && q.pointer == Some(1),
                ),
            };
            tokio::task::spawn_blocking(move || {
                crate::export::export_in_memory(cli_format, &bytes, at_us, pointer)
            })
            .await
            .map_err(anyhow::Error::new)
            .and_then(|r| r)
            .map_err(ExportError::Undecodable)
        }
    };
    match made {
        Ok(body) => {
            let name = download_name(&row, state.services.inventory().timezone(), format);
            info!(user = %caller.user, session = %row.id, format = format.extension(), "Recording exported");
            (
                [
                    (header::CONTENT_TYPE, format.content_type().to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                    (header::CACHE_CONTROL, "private, no-store".to_owned()),
                ],
                body,
            )
                .into_response()
        }
        Err(e) => {
            warn!(session = %row.id, format = format.extension(), error = %e, "Cannot export a recording");
            e.response(lang)
        }
    }
}

/// Sets its flag when dropped: the request is gone (answered, or cut by the request timeout),
/// so an encoding still running for it is abandoned.
struct AbandonOnDrop(Arc<AtomicBool>);

impl Drop for AbandonOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Encodes the whole recording as MP4 into a temporary file and reads it back.
async fn video(
    slot: tokio::sync::SemaphorePermit<'static>,
    ffmpeg: std::path::PathBuf,
    bytes: Vec<u8>,
    pointer: bool,
) -> Result<Vec<u8>, ExportError> {
    let abandoned = Arc::new(AtomicBool::new(false));
    let _guard = AbandonOnDrop(Arc::clone(&abandoned));
    let tmp = std::env::temp_dir().join(format!("sekisho-export-{}.mp4", uuid::Uuid::now_v7()));
    let encoded = tokio::task::spawn_blocking(move || {
        // Held until the encoding really ends, even when the request has gone.
        let _slot = slot;
        let result = encode_file(&ffmpeg, &bytes, pointer, &tmp, &abandoned);
        let _ = std::fs::remove_file(&tmp);
        result
    })
    .await;
    match encoded {
        Ok(r) => r,
        Err(e) => Err(ExportError::Undecodable(anyhow::Error::new(e))),
    }
}

fn encode_file(
    ffmpeg: &std::path::Path,
    bytes: &[u8],
    pointer: bool,
    tmp: &std::path::Path,
    abandoned: &AtomicBool,
) -> Result<Vec<u8>, ExportError> {
    let mut replay = player::export::Graphical::open(bytes)
        .map_err(|e| ExportError::Undecodable(anyhow::Error::new(e)))?;
    if let player::export::Graphical::Rdp(r) = &mut replay {
        r.set_draw_pointer(pointer);
    }
    crate::export::encode_mp4(ffmpeg, &mut replay, tmp, &|| {
        abandoned.load(Ordering::Relaxed)
    })
    .map_err(ExportError::Undecodable)?;
    let size = std::fs::metadata(tmp)
        .map_err(|e| ExportError::Undecodable(anyhow::Error::new(e)))?
        .len();
    if size > MAX_VIDEO_BYTES {
        return Err(ExportError::TooLarge);
    }
    std::fs::read(tmp).map_err(|e| ExportError::Undecodable(anyhow::Error::new(e)))
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn names_carry_user_target_local_start_and_short_id() {
        let started = DateTime::parse_from_rfc3339("2026-03-01T23:30:00Z")
            .map(|t| t.with_timezone(&Utc))
            .unwrap();
        let name = download_name_of(
            "tanaka",
            "web01",
            started,
            chrono_tz::Asia::Tokyo,
            "0195f0c2a1b27c3d8e9f00112233aabb",
            WebFormat::Txt,
        );
        // 23:30 UTC is 08:30 the next day in Tokyo.
        assert_eq!(name, "sekisho-tanaka-web01-20260302-0830-2233aabb.txt");
    }

    #[test]
    fn names_cannot_carry_quotes_paths_or_hidden_files() {
        let name = download_name_of(
            "..\"/etc/x",
            "a b;c",
            Utc::now(),
            chrono_tz::UTC,
            "abc",
            WebFormat::Asciicast,
        );
        assert!(name.starts_with("sekisho-_"), "{name}");
        assert!(!name.contains('"') && !name.contains('/') && !name.contains(' '));
        assert!(name.ends_with("-abc.cast"), "{name}");
    }

    #[test]
    fn formats_apply_to_their_kind_of_session() {
        assert_eq!(WebFormat::parse("mp4"), Some(WebFormat::Mp4));
        assert_eq!(WebFormat::parse("bundle"), None);
        assert!(WebFormat::Txt.applies_to(Protocol::Ssh));
        assert!(!WebFormat::Txt.applies_to(Protocol::Rdp));
        assert!(WebFormat::Png.applies_to(Protocol::ConsoleVnc));
        assert!(!WebFormat::Mp4.applies_to(Protocol::Ssh));
    }

    #[test]
    fn seconds_are_clamped() {
        assert_eq!(seconds_to_us(None), 0);
        assert_eq!(seconds_to_us(Some(f64::NAN)), 0);
        assert_eq!(seconds_to_us(Some(-1.0)), 0);
        assert_eq!(seconds_to_us(Some(2.5)), 2_500_000);
    }
}
