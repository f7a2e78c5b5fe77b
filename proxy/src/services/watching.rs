//! Staff watching live sessions: the instance running a session reads who watches it (any
//! instance's web UI registers watchers in the catalogue), tells the contractor when someone
//! starts or stops watching, and records each join and leave in the session's recording and
//! catalogue events, so a replay shows who saw the session live.

use chrono::{DateTime, Utc};
use recorder::EventKind;
use recorder::catalogue::{Watcher, event_kind};
use tracing::{info, warn};

use super::{ErrorKind, Services};

/// What changed for one session since the last look, to act on outside the sessions lock.
struct Change {
    id: policy::SessionId,
    writer: recorder::RecordingWriter,
    notices: tokio::sync::mpsc::Sender<String>,
    joined: Vec<Watcher>,
    left: Vec<Watcher>,
}

impl Services {
    /// Compares who watches this instance's live sessions with the last look, and records
    /// and announces each change. Reads the catalogue only while sessions run here.
    pub(super) async fn sync_watchers(&self, now: DateTime<Utc>) {
        if self.lock_sessions().is_empty() {
            return;
        }
        let present = match self.catalogue.present_watchers(now).await {
            Ok(p) => p,
            Err(e) => {
                self.metrics.error(ErrorKind::Catalogue);
                warn!(error = %e, "Cannot read who is watching; will retry");
                // Fail closed: a watcher that cannot be confirmed does not count, so a
                // supervised session holds its input until the catalogue answers again.
                for s in self.lock_sessions().values() {
                    s.watched.send_if_modified(|w| std::mem::replace(w, false));
                }
                return;
            }
        };
        let mut changes = Vec::new();
        for (id, s) in self.lock_sessions().iter_mut() {
            let now_watching = present.get(id).cloned().unwrap_or_default();
            // Set on every look, not only on a change: a catalogue outage cleared it.
            s.watched
                .send_if_modified(|w| std::mem::replace(w, !now_watching.is_empty()) != *w);
            if now_watching == s.watchers {
                continue;
            }
            changes.push(Change {
                id: *id,
                writer: s.writer.clone(),
                notices: s.notices.clone(),
                joined: now_watching.difference(&s.watchers).cloned().collect(),
                left: s.watchers.difference(&now_watching).cloned().collect(),
            });
            s.watchers = now_watching;
        }
        for c in changes {
            for (who, kind, notice) in c
                .joined
                .iter()
                .map(|w| {
                    (
                        w,
                        event_kind::WATCHER_JOINED,
                        "is now watching this session",
                    )
                })
                .chain(
                    c.left
                        .iter()
                        .map(|w| (w, event_kind::WATCHER_LEFT, "stopped watching this session")),
                )
            {
                info!(session = %c.id, watcher = %who, "{kind}");
                let detail = format!("{kind}: {who}");
                // A recording that cannot take the event ends the session on its own (the
                // writer's failure watch); the catalogue keeps the event regardless.
                let _ = c.writer.event(EventKind::Note, detail.clone()).await;
                if let Err(e) = self
                    .catalogue
                    .session_event(c.id, now, kind, Some(&detail))
                    .await
                {
                    self.metrics.error(ErrorKind::Catalogue);
                    warn!(session = %c.id, error = %e, "Cannot write a watcher event");
                }
                let _ = c.notices.try_send(format!("sekisho: {who} {notice}"));
            }
        }
    }
}
