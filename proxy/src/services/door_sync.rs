//! The instances of one catalogue share one failed-logon throttle and one record of matrix
//! card passes.
//!
//! Behind a load balancer each attempt may land on another instance. Counted per instance,
//! a guesser would get the failure limit once per instance, and a card passed on one instance
//! would not count for RDP or VNC on another. So on each supervisor pass every instance writes
//! what its doors noted (`auth::outbox`) to the catalogue and replays what the others wrote on
//! its own throttle and card registry. A lockout may therefore start a moment late (one pass,
//! a quarter of a second) on an instance the guesser has not used yet; it is never lost.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use recorder::catalogue::{DoorEvent, DoorEventKind};
use tracing::warn;

use super::{ErrorKind, Services};

/// Events are read again this far back, so one committed late (or written by an instance
/// whose clock is a little behind) is not missed; ids make the replay idempotent.
const OVERLAP: chrono::Duration = chrono::Duration::seconds(10);
/// How often old events are deleted from the catalogue.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often events are shared: a guesser switching instances gains at most this.
const SYNC_EVERY: Duration = Duration::from_millis(250);

/// Where this instance is in the shared events.
struct DoorSync {
    cursor: DateTime<Utc>,
    seen: HashMap<uuid::Uuid, DateTime<Utc>>,
    last_prune: Option<Instant>,
}

impl DoorSync {
    /// Starts far enough back to learn the lockouts and card passes still running.
    fn starting(services: &Services) -> DoorSync {
        DoorSync {
            cursor: Utc::now() - relevance(services),
            seen: HashMap::new(),
            last_prune: None,
        }
    }
}

/// How long an event can still matter: a failure until its window and a lockout it starts
/// are over, a card pass for its time to live.
fn relevance(services: &Services) -> chrono::Duration {
    let auth = *services.inventory().auth();
    let longest = (auth.failure_window + auth.lockout).max(auth.second_factor_ttl);
    chrono::Duration::from_std(longest).unwrap_or(chrono::Duration::days(31))
}

/// `at` on this process's monotonic clock; `None` for a time before the process started
/// (such an event is dropped: a failure that old is past its window, and a card pass that
/// old is asked again rather than trusted on a guess).
fn instant_of(at: DateTime<Utc>) -> Option<Instant> {
    let age = (Utc::now() - at).to_std().unwrap_or(Duration::ZERO);
    Instant::now().checked_sub(age)
}

impl Services {
    /// Shares door events with the other instances every [`SYNC_EVERY`] until shutdown; a task
    /// of its own, so a slow catalogue never delays the supervisor's kills and re-decisions.
    pub async fn share_door_events(self: std::sync::Arc<Self>) {
        let mut sync = DoorSync::starting(&self);
        let mut tick = tokio::time::interval(SYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    // What the doors noted last still reaches the others.
                    self.sync_doors(&mut sync).await;
                    return;
                }
                _ = tick.tick() => self.sync_doors(&mut sync).await,
            }
        }
    }

    /// Shares this instance's door events and replays the others'. Fail closed on what
    /// matters: a catalogue that cannot be written keeps the notes for the next pass, and the
    /// local throttle keeps counting whatever happens.
    async fn sync_doors(&self, sync: &mut DoorSync) {
        let mut notes = self.throttle.outbox().take();
        notes.extend(self.second_factors.outbox().take());
        if !notes.is_empty() {
            notes.sort_by_key(|n| n.at);
            if let Err(e) = self
                .catalogue
                .write_door_events(&self.instance, &notes)
                .await
            {
                self.metrics.error(ErrorKind::Catalogue);
                warn!(error = %e, "Cannot share logon events with the other instances; will retry");
                self.throttle.outbox().put_back(notes);
            }
        }
        match self
            .catalogue
            .door_events_since(&self.instance, sync.cursor - OVERLAP)
            .await
        {
            Ok(events) => {
                for e in events {
                    sync.cursor = sync.cursor.max(e.at);
                    if sync.seen.insert(e.id, e.at).is_none() {
                        self.replay(&e).await;
                    }
                }
                let horizon = sync.cursor - OVERLAP - OVERLAP;
                sync.seen.retain(|_, at| *at >= horizon);
            }
            Err(e) => {
                self.metrics.error(ErrorKind::Catalogue);
                warn!(error = %e, "Cannot read the other instances' logon events; will retry");
            }
        }
        if sync.last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            sync.last_prune = Some(Instant::now());
            let before = Utc::now() - relevance(self) - OVERLAP;
            if let Err(e) = self.catalogue.prune_door_events(before).await {
                warn!(error = %e, "Cannot delete old logon events");
            }
        }
    }

    async fn replay(&self, e: &DoorEvent) {
        match (e.kind, e.source, instant_of(e.at)) {
            (DoorEventKind::Failure, Some(ip), Some(at)) => {
                let lockouts = self.throttle.record_remote_failure(&e.user, ip, at);
                if !lockouts.is_empty() {
                    // Counted across instances: the failure that tipped it was seen here
                    // only as a replay, so this instance writes the lockout down.
                    self.lockouts_started_elsewhere(&lockouts, ip).await;
                }
            }
            (DoorEventKind::Success, _, _) => self.throttle.record_remote_success(&e.user),
            (DoorEventKind::CardPass, Some(ip), Some(at)) => {
                self.second_factors.record_remote_pass(&e.user, ip, at);
            }
            (DoorEventKind::Logout, _, _) => self.second_factors.forget_remote(&e.user),
            _ => {}
        }
    }
}
