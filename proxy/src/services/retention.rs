//! Retention: deleting the recordings of sessions that ended more than
//! `[recording] retention_days` ago, and writing each deletion to the catalogue.
//!
//! The file is deleted first and the catalogue row marked after, so a crash in between leaves
//! a row that the next pass finds again (the file is then already gone, and the row is marked):
//! the catalogue never claims a recording exists that does not, for longer than one pass.
//! Only this instance's sessions are pruned, since only its storage holds their files.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use recorder::catalogue::{AuditEvent, Catalogue, InstanceId, SessionRow, event_kind};
use tracing::{info, warn};

use super::{ErrorKind, Services};

/// How often retention looks for recordings past `[recording] retention_days`.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

impl Services {
    /// Runs until shutdown: once at start, then every hour, deletes the recordings of this
    /// instance's sessions that ended more than `[recording] retention_days` ago (read from
    /// the current inventory, so a reload can switch retention on or off).
    pub async fn retain(self: Arc<Self>) {
        let mut tick = tokio::time::interval(RETENTION_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let Some(days) = self.inventory().recording().retention_days else {
                continue;
            };
            let result = prune(
                &self.catalogue,
                &self.recordings,
                &self.instance,
                days,
                Utc::now(),
                false,
                |id| self.is_live_here(id),
            )
            .await;
            match result {
                Ok(report) => {
                    for p in &report.deleted {
                        self.metrics.recording_deleted(p.size);
                    }
                    for _ in &report.failed {
                        self.metrics.error(ErrorKind::Retention);
                    }
                    if !report.deleted.is_empty() || !report.failed.is_empty() {
                        info!(
                            deleted = report.deleted.len(),
                            failed = report.failed.len(),
                            days,
                            "Retention pass done"
                        );
                    }
                }
                Err(e) => {
                    self.metrics.error(ErrorKind::Retention);
                    warn!(error = %format!("{e:#}"), "Retention pass failed");
                }
            }
        }
    }
}

/// Rows asked for per catalogue round trip.
const BATCH: u32 = 200;

/// One recording that retention deleted (or would delete, in a dry run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub session: policy::SessionId,
    pub location: String,
    pub ended_at: DateTime<Utc>,
    /// Bytes freed (0 when the file was already gone).
    pub size: u64,
}

/// What one pass did.
#[derive(Debug, Default)]
pub struct Report {
    pub deleted: Vec<Pruned>,
    /// Recordings that could not be deleted, with the error (tried again next pass).
    pub failed: Vec<(policy::SessionId, String)>,
}

/// Deletes (or with `dry_run`, lists) the recordings of `instance`'s sessions that ended
/// before `now - days`. `is_live` is asked once more before each deletion, as a last guard
/// for sessions the catalogue already shows ended but this process still holds.
pub async fn prune(
    catalogue: &Catalogue,
    recordings: &crate::recordings::Recordings,
    instance: &InstanceId,
    days: u32,
    now: DateTime<Utc>,
    dry_run: bool,
    is_live: impl Fn(policy::SessionId) -> bool,
) -> Result<Report> {
    let cutoff = now - chrono::Duration::days(i64::from(days));
    let mut report = Report::default();
    let mut seen = std::collections::HashSet::new();
    loop {
        let rows = catalogue
            .recordings_to_prune(instance, cutoff, BATCH)
            .await
            .context("cannot list recordings past retention")?;
        // A failed or dry-run row comes back in the next batch: stop once a batch is all
        // rows already handled.
        let fresh: Vec<SessionRow> = rows.into_iter().filter(|r| seen.insert(r.id)).collect();
        if fresh.is_empty() {
            break;
        }
        for row in fresh {
            let (Some(location), Some(ended_at)) = (row.recording.clone(), row.ended_at) else {
                continue;
            };
            if is_live(row.id) {
                continue;
            }
            let store = match recordings.reader(&location) {
                Ok(s) => s,
                Err(e) => {
                    warn!(session = %row.id, location = %location, error = %format!("{e:#}"), "Retention cannot delete a recording");
                    report.failed.push((row.id, format!("{e:#}")));
                    continue;
                }
            };
            if dry_run {
                let size = store.size(&location).await.unwrap_or(0);
                report.deleted.push(Pruned {
                    session: row.id,
                    location,
                    ended_at,
                    size,
                });
                continue;
            }
            let (removed, size) = match store.remove(&location).await {
                Ok(0) => ("already missing", 0),
                Ok(size) => ("deleted", size),
                Err(e) => {
                    warn!(session = %row.id, location = %location, error = %e, "Retention cannot delete a recording");
                    report.failed.push((row.id, e.to_string()));
                    continue;
                }
            };
            let detail = format!(
                "recording {location} of session {} ({}, {} on {}, ended {}) {removed} by retention after {days} days; {size} bytes, final hash {}",
                row.id,
                row.protocol,
                row.user,
                row.target,
                ended_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                row.recording_hash.as_deref().unwrap_or("none"),
            );
            let event = AuditEvent {
                at: Utc::now(),
                instance: instance.clone(),
                kind: event_kind::RETENTION_DELETED.to_owned(),
                detail: Some(detail),
                session_id: Some(row.id),
            };
            catalogue
                .recording_deleted(row.id, &event)
                .await
                .context("cannot write a retention deletion to the catalogue")?;
            info!(session = %row.id, location = %location, size, "Recording deleted by retention");
            report.deleted.push(Pruned {
                session: row.id,
                location,
                ended_at,
                size,
            });
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use recorder::catalogue::{AuditFilter, NewSession, Outcome, RecordingState, RecordingSummary};
    use std::path::Path;

    fn local() -> crate::recordings::Recordings {
        recorder::LocalDir::new(".").into()
    }

    async fn session(
        cat: &Catalogue,
        instance: &InstanceId,
        dir: &Path,
        started: DateTime<Utc>,
        ended: Option<DateTime<Utc>>,
    ) -> (policy::SessionId, std::path::PathBuf) {
        let id = policy::SessionId(uuid::Uuid::now_v7());
        let file = dir.join(format!("{}.skr", id.0));
        std::fs::write(&file, b"recording bytes").unwrap();
        let location = file.display().to_string();
        cat.session_started(&NewSession {
            id,
            instance: instance.clone(),
            protocol: policy::Protocol::Ssh,
            user: "tanaka".into(),
            contractor: "acme".into(),
            source: "127.0.10.11".parse().unwrap(),
            target: "file-phys02".into(),
            path: "internet-vpn".into(),
            console_session: None,
            started_at: started,
            recording: Some(location.clone()),
            detail: None,
        })
        .await
        .unwrap();
        if let Some(ended) = ended {
            cat.session_ended(
                id,
                ended,
                Outcome::Completed,
                Some(&RecordingSummary {
                    location,
                    state: RecordingState::Complete,
                    size: 15,
                    hash: Some("ab".repeat(32)),
                }),
            )
            .await
            .unwrap();
        }
        (id, file)
    }

    #[tokio::test]
    async fn sqlite_deletes_old_ended_recordings_only_and_writes_each_deletion() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("c.db").display());
        deletes_old_ended_recordings_only(&url, dir.path()).await;
    }

    /// The same against a real PostgreSQL (`scripts/pg-test-server`), shared with other
    /// tests: this one's rows are told apart by fresh instance ids.
    #[tokio::test]
    async fn postgres_deletes_old_ended_recordings_only_and_writes_each_deletion() {
        let Ok(url) = std::env::var("SEKISHO_TEST_POSTGRES_URL") else {
            assert!(
                std::env::var("SEKISHO_SKIP_PEERS").is_ok_and(|v| v == "1"),
                "SEKISHO_TEST_POSTGRES_URL is not set: start a test server with `eval \"$(scripts/pg-test-server start)\"`, or set SEKISHO_SKIP_PEERS=1"
            );
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        deletes_old_ended_recordings_only(&url, dir.path()).await;
    }

    async fn deletes_old_ended_recordings_only(url: &str, dir: &Path) {
        let cat = Catalogue::connect(url).await.unwrap();
        let me = InstanceId::new(format!("i-me-{}", uuid::Uuid::now_v7())).unwrap();
        let other = InstanceId::new(format!("i-other-{}", uuid::Uuid::now_v7())).unwrap();
        let now = Utc::now();
        let days = |n| now - chrono::Duration::days(n);
        let (old, old_file) = session(&cat, &me, dir, days(40), Some(days(39))).await;
        let (recent, recent_file) = session(&cat, &me, dir, days(40), Some(days(5))).await;
        // Started long ago and still live: never deleted.
        let (live, live_file) = session(&cat, &me, dir, days(60), None).await;
        // Another instance's old recording is on its storage, not ours.
        let (_, other_file) = session(&cat, &other, dir, days(40), Some(days(39))).await;
        // The catalogue shows it ended, but this process still holds it.
        let (held, held_file) = session(&cat, &me, dir, days(40), Some(days(35))).await;

        let dry = prune(&cat, &local(), &me, 30, now, true, |id| id == held)
            .await
            .unwrap();
        assert_eq!(
            dry.deleted.iter().map(|p| p.session).collect::<Vec<_>>(),
            vec![old]
        );
        assert!(old_file.exists(), "a dry run deletes nothing");

        let report = prune(&cat, &local(), &me, 30, now, false, |id| id == held)
            .await
            .unwrap();
        assert_eq!(report.deleted.len(), 1);
        assert_eq!(report.deleted[0].session, old);
        assert_eq!(report.deleted[0].size, 15);
        assert!(!old_file.exists());
        for f in [&recent_file, &live_file, &other_file, &held_file] {
            assert!(f.exists(), "{} must be kept", f.display());
        }
        let row = cat.get_session(old).await.unwrap().unwrap();
        assert_eq!(row.recording_state, Some(RecordingState::Deleted));
        assert_eq!(row.outcome, Outcome::Completed);
        for id in [recent, live] {
            let row = cat.get_session(id).await.unwrap().unwrap();
            assert_ne!(row.recording_state, Some(RecordingState::Deleted));
        }
        let events = cat
            .list_audit_events(&AuditFilter {
                kind: Some(event_kind::RETENTION_DELETED.to_owned()),
                instance: Some(me.clone()),
                ..AuditFilter::default()
            })
            .await
            .unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].session_id, Some(old));
        let detail = events[0].detail.as_deref().unwrap();
        assert!(
            detail.contains("after 30 days") && detail.contains("15 bytes"),
            "{detail}"
        );

        // A second pass has nothing left to do.
        let again = prune(&cat, &local(), &me, 30, now, false, |id| id == held)
            .await
            .unwrap();
        assert!(again.deleted.is_empty());

        // A file already gone (deleted by hand) is still marked, so the row tells the truth.
        std::fs::remove_file(&held_file).unwrap();
        let gone = prune(&cat, &local(), &me, 30, now, false, |_| false)
            .await
            .unwrap();
        assert_eq!(gone.deleted.len(), 1);
        let row = cat.get_session(held).await.unwrap().unwrap();
        assert_eq!(row.recording_state, Some(RecordingState::Deleted));
    }
}
