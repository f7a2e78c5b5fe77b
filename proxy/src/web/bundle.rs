//! `GET /sessions/{id}/bundle`: the evidence bundle of an ended session, for the roles that
//! review every session (auditor, security, admin). The same ZIP as
//! `sekisho export SESSION --format bundle` (see [`crate::evidence`]).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use recorder::catalogue::{AuditEvent, event_kind};
use tracing::{info, warn};

use super::WebState;
use super::access::{read_recording, visible_session};
use super::auth::Caller;
use super::i18n::tr;
use super::layout::not_found;

/// `GET /sessions/{id}/bundle`.
pub async fn bundle(
    State(state): State<Arc<WebState>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Response {
    if !caller.sees_all_sessions() {
        return not_found(&caller);
    }
    let row = match visible_session(&state, &caller, &id).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(&caller),
        Err(resp) => return resp,
    };
    if row.ended_at.is_none() {
        // A live recording has no trailer and no ledger row yet: nothing a bundle can prove.
        return (StatusCode::CONFLICT, tr(caller.lang, "bundle.live")).into_response();
    }
    let Some(bytes) = read_recording(&state, row.recording.as_deref().unwrap_or("")).await else {
        return not_found(&caller);
    };
    match make(&state, &caller, row.id, bytes).await {
        Ok(zip) => {
            info!(user = %caller.user, session = %row.id, "Evidence bundle downloaded");
            (
                [
                    (header::CONTENT_TYPE, "application/zip".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"sekisho-evidence-{}.zip\"", row.id),
                    ),
                ],
                zip,
            )
                .into_response()
        }
        Err(e) => {
            warn!(session = %row.id, error = %format!("{e:#}"), "Cannot make an evidence bundle");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                tr(caller.lang, "bundle.failed"),
            )
                .into_response()
        }
    }
}

async fn make(
    state: &WebState,
    caller: &Caller,
    id: policy::SessionId,
    bytes: Vec<u8>,
) -> anyhow::Result<Vec<u8>> {
    let services = &state.services;
    let catalogue = services.catalogue();
    let mut proof = crate::evidence::ledger_proof(catalogue, id).await?;
    if crate::evidence::needs_checkpoint(proof.as_ref()) {
        services.sign_ledger_checkpoint().await?;
        proof = crate::evidence::ledger_proof(catalogue, id).await?;
    }
    let by = format!(
        "{} ({}) on {}",
        caller.user,
        caller.role,
        services.instance()
    );
    let evidence = crate::evidence::gather(catalogue, id, bytes, proof, by.clone()).await?;
    let (zip, _) = tokio::task::spawn_blocking(move || crate::evidence::zip(&evidence)).await??;
    catalogue
        .audit_event(&AuditEvent {
            at: Utc::now(),
            instance: services.instance().clone(),
            kind: event_kind::EVIDENCE_EXPORTED.to_owned(),
            detail: Some(format!("bundle downloaded by {by}")),
            session_id: Some(id),
        })
        .await?;
    Ok(zip)
}
