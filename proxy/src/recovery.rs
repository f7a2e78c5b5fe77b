//! Closing the catalogue row of a session that was cut short (a crash, `kill -9`), once its
//! recording has been sealed or sealing failed. `serve` does it at start for its own sessions,
//! `sekisho recording seal` for one file by hand; both go through here so the row, the
//! recording state and the audit event always agree.

use anyhow::{Context, Result};
use recorder::catalogue::{
    AuditEvent, Catalogue, Interrupted, RecordingState, RecordingSummary, SessionRow, event_kind,
};

/// What `recorder::seal_file` gave: the sealed recording and why it had been cut short.
pub type Sealed = Result<(recorder::RecordingSummary, String), recorder::SealError>;

/// Marks `session` interrupted. When it has a recording at `location`, records what sealing it
/// gave — sealed (size, final hash) or, when sealing failed, incomplete — and writes an audit
/// event saying which.
pub async fn record_interruption(
    catalogue: &Catalogue,
    session: &SessionRow,
    recording: Option<(&str, &Sealed)>,
) -> Result<()> {
    catalogue
        .mark_interrupted(Interrupted::Sessions(&[session.id]), chrono::Utc::now())
        .await
        .context("cannot mark a session interrupted")?;
    let Some((location, sealed)) = recording else {
        return Ok(());
    };
    let (summary, detail) = match sealed {
        Ok((sealed, reason)) => (
            RecordingSummary {
                location: location.to_owned(),
                state: RecordingState::Sealed,
                size: sealed.size,
                hash: Some(sealed.final_hash.clone()),
            },
            format!("recording sealed after interruption: {reason}"),
        ),
        Err(e) => (
            RecordingSummary {
                location: location.to_owned(),
                state: RecordingState::Incomplete,
                size: std::fs::metadata(location).map(|m| m.len()).unwrap_or(0),
                hash: None,
            },
            format!("recording could not be sealed: {e}"),
        ),
    };
    catalogue
        .set_recording(session.id, &summary)
        .await
        .context("cannot update an interrupted session's recording")?;
    catalogue
        .audit_event(&AuditEvent {
            at: chrono::Utc::now(),
            instance: session.instance_id.clone(),
            kind: event_kind::INTERRUPTED_SESSION_SEALED.to_owned(),
            detail: Some(detail),
            session_id: Some(session.id),
        })
        .await
        .context("cannot write the audit event")?;
    Ok(())
}
