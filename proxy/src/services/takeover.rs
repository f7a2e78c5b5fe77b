//! Instances sharing a catalogue look after each other.
//!
//! - An instance that stops beating (a crash, `kill -9`, a host that never comes back) leaves
//!   live sessions behind. Every other instance looks for them on its heartbeat and the first
//!   to get there marks them `interrupted` and writes an audit event, so the catalogue never
//!   shows a session live that nobody runs. A recording in the shared object store is sealed
//!   by that instance from the segments that reached the store; one on the dead host's disk
//!   stays there until that instance starts again and seals it.
//! - The other way round: an instance that was only cut off (a network partition, a stalled
//!   database) may find that its sessions were closed meanwhile. The catalogue is the record,
//!   so it ends them too rather than run sessions the catalogue says are over.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use recorder::catalogue::{AuditEvent, Interrupted, STALE_INSTANCE_AFTER, SessionRow};
use tracing::{info, warn};

use super::Services;
use super::live::{EndReason, set_once};

/// The audit event of a session interrupted by another instance than its own.
pub const ORPHAN_INTERRUPTED: &str = "orphan interrupted";

impl Services {
    /// Marks the live sessions of instances presumed dead at `now` as interrupted, one audit
    /// event each (written only by the instance whose mark took effect).
    pub(super) async fn take_over_orphans(&self, now: DateTime<Utc>) -> anyhow::Result<()> {
        let orphans = self
            .catalogue
            .orphaned_sessions(&self.instance, now, STALE_INSTANCE_AFTER)
            .await?;
        for session in orphans {
            self.take_over(&session, now).await?;
        }
        Ok(())
    }

    async fn take_over(&self, session: &SessionRow, now: DateTime<Utc>) -> anyhow::Result<()> {
        let marked = self
            .catalogue
            .mark_interrupted(Interrupted::Sessions(&[session.id]), now)
            .await?;
        if marked.is_empty() {
            // Another instance (or its own, back again) got there first.
            return Ok(());
        }
        // Only the instance whose mark took effect seals: one sealer per recording.
        let shared = session
            .recording
            .as_deref()
            .filter(|l| l.starts_with("s3://"));
        let sealed_here = match shared {
            Some(location) => {
                let sealed = self
                    .recordings()
                    .seal_abandoned(location, &self.signing_key)
                    .await;
                if let Err(e) = &sealed {
                    warn!(session = %session.id, error = %e, "Cannot seal the recording of a silent instance's session");
                }
                crate::recovery::record_interruption(
                    &self.catalogue,
                    session,
                    Some((location, &sealed)),
                )
                .await?;
                sealed.is_ok()
            }
            None => false,
        };
        let last_seen = self
            .catalogue
            .instances()
            .await?
            .into_iter()
            .find(|i| i.instance_id == session.instance_id)
            .map_or_else(
                || "never sent a heartbeat".to_owned(),
                |i| format!("last beat at {}", i.last_seen.to_rfc3339()),
            );
        let recording = if sealed_here {
            "its recording was sealed from what reached the object store"
        } else if shared.is_some() {
            "its recording could not be sealed from the object store (see the log)"
        } else {
            "the recording stays on that instance's storage until it starts again and seals it"
        };
        let detail = format!(
            "{} session of {} on {} (started {}) interrupted by instance {}: its instance {} \
             stopped beating ({last_seen}); {recording}",
            session.protocol,
            session.user,
            session.target,
            session.started_at.to_rfc3339(),
            self.instance,
            session.instance_id,
        );
        warn!(session = %session.id, instance = %session.instance_id, "Session of a silent instance marked interrupted");
        self.catalogue
            .audit_event(&AuditEvent {
                at: now,
                instance: self.instance.clone(),
                kind: ORPHAN_INTERRUPTED.to_owned(),
                detail: Some(detail),
                session_id: Some(session.id),
            })
            .await?;
        Ok(())
    }

    /// Ends the sessions this instance runs whose catalogue rows were closed elsewhere.
    pub(super) async fn end_sessions_closed_elsewhere(&self) -> anyhow::Result<()> {
        // The registry is read before the catalogue: a session registers only after its row
        // is written, so one missing from the live rows read afterwards has truly been closed.
        let running: Vec<_> = self.lock_sessions().keys().copied().collect();
        if running.is_empty() {
            return Ok(());
        }
        let live: HashSet<_> = self
            .catalogue
            .live_sessions(&self.instance)
            .await?
            .into_iter()
            .map(|s| s.id)
            .collect();
        for id in running.into_iter().filter(|id| !live.contains(id)) {
            if let Some(s) = self.lock_sessions().get(&id) {
                let ended = s
                    .end
                    .send_if_modified(|slot| set_once(slot, EndReason::ClosedElsewhere));
                if ended {
                    info!(session = %id, "Session closed in the catalogue by another instance; ending it");
                }
            }
        }
        Ok(())
    }
}
