//! A session as a caller may reach it: the catalogue row if they may see it, its recording's
//! bytes and size, and the decoded terminal replay (cached) the player and the live view use.

use std::sync::Arc;

use axum::response::Response;
use policy::SessionId;
use recorder::catalogue::SessionRow;

use super::WebState;
use super::auth::Caller;
use super::layout::catalogue_failed;

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

/// The decoded terminal recording of `row`, from the one-entry cache when the file has not
/// changed since it was decoded.
pub(super) async fn replay_of(
    state: &WebState,
    row: &SessionRow,
) -> Option<Arc<player::terminal::TerminalReplay>> {
    let location = row.recording.as_deref()?;
    let size = recording_size(state, location).await?;
    let _decoding = state.player_decoding.lock().await;
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
