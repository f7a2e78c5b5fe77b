//! The supervisor: one pass every [`SUPERVISE_INTERVAL`] applies kill requests, ends hops
//! whose console has ended, re-checks contracts and windows, and writes this instance's
//! heartbeat.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use chrono::{DateTime, Utc};
use policy::{Decision, Request, Rule, SessionId};
use tracing::warn;

use super::Services;
use super::live::{EndReason, set_once};

/// How often the supervisor looks for kill requests, ended consoles and closing windows.
/// Kill must take effect within 1 s; 250 ms leaves room for the relay to wind down.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(250);

/// How long before a contract window closes a session is warned.
pub const WINDOW_WARNING: chrono::Duration = chrono::Duration::minutes(5);

impl Services {
    /// Runs until shutdown: applies kill requests, ends hops whose console is gone, warns and
    /// ends sessions whose contract window closes.
    pub async fn supervise(self: Arc<Self>) {
        let mut tick = tokio::time::interval(SUPERVISE_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Other instances count this instance's consoles for hops only while it beats.
        let mut last_beat: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = self.shutdown.cancelled() => {
                    for s in self.lock_sessions().values() {
                        s.end.send_if_modified(|slot| set_once(slot, EndReason::Shutdown));
                    }
                    return;
                }
                _ = tick.tick() => {}
            }
            if last_beat.is_none_or(|t| t.elapsed() >= recorder::catalogue::HEARTBEAT_INTERVAL) {
                match self.catalogue.heartbeat(&self.instance, Utc::now()).await {
                    Ok(()) => last_beat = Some(tokio::time::Instant::now()),
                    Err(e) => warn!(error = %e, "Cannot write the heartbeat"),
                }
            }
            if let Err(e) = self.supervise_once(Utc::now()).await {
                warn!(error = %format!("{e:#}"), "Supervisor pass failed");
            }
        }
    }

    async fn supervise_once(&self, now: DateTime<Utc>) -> Result<()> {
        self.retry_pending_closes().await;
        // Kill requests (from any instance's CLI) for this instance's sessions.
        for id in self.catalogue.pending_kills(&self.instance).await? {
            if let Some(s) = self.lock_sessions().get(&id) {
                s.end.send_if_modified(|slot| {
                    set_once(
                        slot,
                        EndReason::Killed {
                            by: "security staff".to_owned(),
                        },
                    )
                });
            }
            self.catalogue.kill_handled(id).await?;
        }

        // Hops whose console has ended, anywhere.
        let hops: Vec<(SessionId, SessionId)> = self
            .lock_sessions()
            .iter()
            .filter_map(|(id, s)| s.console.map(|c| (*id, c)))
            .collect();
        if !hops.is_empty() {
            let live: Vec<SessionId> = self
                .live_consoles()
                .await?
                .into_iter()
                .map(|c| c.session_id)
                .collect();
            for (hop, console) in hops {
                if live.contains(&console) {
                    continue;
                }
                if let Some(s) = self.lock_sessions().get(&hop) {
                    s.end.send_if_modified(|slot| {
                        set_once(slot, EndReason::ConsoleEnded { console })
                    });
                }
            }
        }

        // Contract and window: re-ask the policy now, and a few minutes ahead for the warning.
        // Only contract rules end a session here; consoles and kills are handled above.
        let inventory = self.inventory();
        let live = self.live_consoles().await?;
        let mut sessions = self.lock_sessions();
        for s in sessions.values_mut() {
            let req = Request {
                protocol: s.protocol,
                source: s.source,
                target: policy::TargetRef::Name(s.target.clone()),
                user: Some(s.user.clone()),
            };
            let contract_denial = |at| match policy::evaluate(&inventory, &live, &req, at) {
                Decision::Deny(d) if is_contract_rule(d.rule()) => Some(d),
                _ => None,
            };
            if let Some(denial) = contract_denial(now) {
                s.end.send_if_modified(|slot| {
                    set_once(
                        slot,
                        EndReason::ContractEnded {
                            rule: denial.rule(),
                            reason: denial.reason().to_owned(),
                        },
                    )
                });
            } else if !s.warned && contract_denial(now + WINDOW_WARNING).is_some() {
                s.warned = true;
                let _ = s.notices.try_send(format!(
                    "sekisho: the maintenance window for {} closes in {} minutes; this session will then be ended",
                    s.target,
                    WINDOW_WARNING.num_minutes()
                ));
            }
        }
        Ok(())
    }
}

fn is_contract_rule(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::ContractNone | Rule::ContractExpired | Rule::ContractWindow
    )
}
