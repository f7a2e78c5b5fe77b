//! Evidence bundles of a session: what the catalogue knows about it, gathered for
//! [`player::export::bundle`] by `sekisho export SESSION --format bundle` and by the web UI's
//! download for auditors.
//!
//! A bundle proves the recording's place in the ledger only through a signed checkpoint that
//! covers the session's ledger rows. Checkpoints are signed hourly, so a session that ended a
//! minute ago has none yet: the caller, which holds the instance key, signs one then
//! ([`needs_checkpoint`]) rather than hand out a bundle that cannot say "verified".

use std::io::Cursor;

use anyhow::{Context, Result};
use chrono::Utc;
use player::export::bundle::{BundleSummary, Evidence, LedgerProof, write_bundle};
use policy::SessionId;
use recorder::catalogue::Catalogue;

/// The ledger rows from the session's first to the earliest checkpoint covering its last,
/// or to the ledger's head with no checkpoint when none covers it yet; `None` when the
/// ledger never named the session (a live session, or a catalogue older than the ledger).
pub async fn ledger_proof(catalogue: &Catalogue, id: SessionId) -> Result<Option<LedgerProof>> {
    let Some((first, last)) = catalogue
        .ledger_span_of_session(id)
        .await
        .context("cannot read the ledger")?
    else {
        return Ok(None);
    };
    let checkpoint = catalogue
        .checkpoint_covering(last)
        .await
        .context("cannot read the ledger checkpoints")?;
    let until = match &checkpoint {
        Some(cp) => cp.seq,
        None => {
            catalogue
                .ledger_head()
                .await
                .context("cannot read the ledger")?
                .0
        }
    };
    let entries = catalogue
        .ledger_range(first, until)
        .await
        .context("cannot read the ledger")?;
    Ok(Some(LedgerProof {
        entries,
        checkpoint,
    }))
}

/// Whether the session has ledger rows that no checkpoint covers yet.
pub fn needs_checkpoint(proof: Option<&LedgerProof>) -> bool {
    proof.is_some_and(|p| p.checkpoint.is_none())
}

/// Everything a bundle of session `id` holds, with its recording's bytes and the ledger proof
/// the caller settled on.
pub async fn gather(
    catalogue: &Catalogue,
    id: SessionId,
    recording: Vec<u8>,
    ledger: Option<LedgerProof>,
    exported_by: String,
) -> Result<Evidence> {
    let session = catalogue
        .get_session(id)
        .await
        .context("cannot read the catalogue")?
        .with_context(|| format!("no session {id} in the catalogue"))?;
    let decisions = catalogue
        .decisions_of_session(id)
        .await
        .context("cannot read the session's decisions")?;
    let events = catalogue
        .session_events(id)
        .await
        .context("cannot read the session's events")?;
    let trusted_keys = catalogue
        .signer_keys()
        .await
        .context("cannot read the signing keys")?;
    Ok(Evidence {
        session_id: id.to_string(),
        recording,
        session: serde_json::to_value(&session)?,
        decisions: serde_json::to_value(&decisions)?,
        events: serde_json::to_value(&events)?,
        trusted_keys,
        ledger,
        exported_by,
        exported_at: Utc::now(),
    })
}

/// The bundle as ZIP bytes (decoding and drawing: call off the async runtime).
pub fn zip(evidence: &Evidence) -> Result<(Vec<u8>, BundleSummary)> {
    let mut out = Cursor::new(Vec::new());
    let summary = write_bundle(evidence, &mut out).context("cannot write the bundle")?;
    Ok((out.into_inner(), summary))
}
