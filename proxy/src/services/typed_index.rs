//! Indexes a session's text once its recording is sealed, for the Find page (`web/search.rs`):
//! the typed text of a graphical session (RDP, VNC); the commands run (kind `typed`) and the
//! screen lines (kind `screen`) of a terminal session (SSH, serial console), read by
//! `player::typed::terminal` from the keys and their echo, so nothing typed with echo off
//! (a password) is ever indexed.
//!
//! Off the session's path: the session has ended and its recording is sealed and its row
//! closed before this starts, in a task of its own; decoding runs on the blocking pool. A
//! failure is logged (never with the text: keystrokes stay in the recording and the
//! catalogue) and leaves the session without an index, nothing else.

use std::sync::Arc;

use policy::{Protocol, SessionId};
use recorder::catalogue::TypedLineRow;
use tokio::sync::Semaphore;
use tracing::{debug, info, warn};

use super::Services;

/// Largest recording indexed: decoding holds it in memory (the web player's own cap).
pub const MAX_INDEXED_RECORDING_BYTES: u64 = crate::recordings::MAX_RECORDING_BYTES;
/// Recordings decoded at once: each holds its recording (and, for VNC, two screens) in
/// memory, and a shift's end may close many sessions together.
const MAX_CONCURRENT_INDEXING: usize = 2;

/// Sessions the startup pass indexes at most: it catches up on terminal sessions sealed
/// before they were indexed, a bounded amount of work per start (the next start continues).
pub const MAX_BACKFILL_SESSIONS: u32 = 1000;

static INDEXING: Semaphore = Semaphore::const_new(MAX_CONCURRENT_INDEXING);

/// Whether sessions of `protocol` have text to index.
pub fn indexed(protocol: Protocol) -> bool {
    matches!(
        protocol,
        Protocol::Rdp | Protocol::ConsoleVnc | Protocol::Ssh | Protocol::ConsoleSerial
    )
}

/// Indexes the sealed recording at `location` of session `id` in the background.
pub fn index_later(services: Arc<Services>, id: SessionId, location: String) {
    let tasks = services.tasks.clone();
    tasks.spawn(async move {
        let Ok(_permit) = INDEXING.acquire().await else {
            return;
        };
        match index(&services, id, &location).await {
            Ok(lines) => debug!(session = %id, lines, "Session text indexed"),
            Err(e) => {
                warn!(session = %id, error = %format!("{e:#}"), "Cannot index the session text")
            }
        }
    });
}

/// Indexes, in the background and one at a time, the terminal sessions this instance ran
/// whose sealed recording has no index yet (sealed before terminal sessions were indexed, or
/// whose indexing failed), oldest first, at most [`MAX_BACKFILL_SESSIONS`]; stops at
/// shutdown. For `serve` to call once at startup.
pub fn index_unindexed(services: Arc<Services>) {
    let tasks = services.tasks.clone();
    tasks.spawn(async move {
        let shutdown = services.shutdown_token();
        let pending = match services
            .catalogue()
            .unindexed_terminal_sessions(services.instance(), MAX_BACKFILL_SESSIONS)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                warn!(error = %e, "Cannot list the sessions to index");
                return;
            }
        };
        let mut done = 0usize;
        for (id, location) in pending {
            if shutdown.is_cancelled() {
                break;
            }
            let Ok(_permit) = INDEXING.acquire().await else {
                return;
            };
            match index(&services, id, &location).await {
                Ok(_) => done += 1,
                Err(e) => {
                    warn!(session = %id, error = %format!("{e:#}"), "Cannot index the session text")
                }
            }
        }
        if done > 0 {
            info!(
                sessions = done,
                "Indexed the text of earlier terminal sessions"
            );
        }
    });
}

async fn index(services: &Services, id: SessionId, location: &str) -> anyhow::Result<usize> {
    let bytes = services
        .recordings()
        .read(location, MAX_INDEXED_RECORDING_BYTES)
        .await?;
    let (typed, screen) = tokio::task::spawn_blocking(move || lines_of(&bytes)).await??;
    Ok(services.catalogue().index_text(id, &typed, &screen).await?)
}

/// The typed (or run) and shown lines of a recording, by the protocol its header names.
fn lines_of(
    bytes: &[u8],
) -> Result<(Vec<TypedLineRow>, Vec<TypedLineRow>), player::typed::TypedError> {
    let rows = |lines: Vec<player::typed::TypedLine>| -> Vec<TypedLineRow> {
        lines
            .into_iter()
            .map(|l| TypedLineRow {
                at_us: l.at_us,
                text: l.text,
            })
            .collect()
    };
    match player::typed::typed_text(bytes) {
        Ok(lines) => Ok((rows(lines), Vec::new())),
        Err(player::typed::TypedError::NotGraphical(_)) => {
            let text = player::typed::terminal::terminal_text(bytes)?;
            Ok((rows(text.commands), rows(text.screen)))
        }
        Err(e) => Err(e),
    }
}
