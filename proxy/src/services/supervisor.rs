//! The supervisor: one pass every [`SUPERVISE_INTERVAL`], and one right after a
//! configuration reload, applies kill requests, re-decides every live session with the full
//! policy (ending those the current configuration no longer admits, hops whose console has
//! ended and sessions whose contract window closed), warns ahead of a closing window, and
//! writes this instance's heartbeat; on each heartbeat it looks after the other instances
//! sharing the catalogue (`takeover.rs`).
//!
//! Fail closed: when the catalogue cannot be read, the re-decision still runs on what this
//! instance knows (the current inventory, the clock, its own consoles); only kill requests,
//! which live in the catalogue, wait for it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use policy::{Denial, Request, SessionId};
use recorder::catalogue::event_kind;
use tracing::{info, warn};

use super::live::{EndReason, set_once};
use super::redecide::{Consoles, Verdict, redecide};
use super::{ErrorKind, Services};

/// How often the supervisor looks for kill requests, ended consoles and closing windows.
/// Kill must take effect within 1 s; 250 ms leaves room for the relay to wind down.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(250);

/// How long before a contract window closes a session is warned.
pub const WINDOW_WARNING: chrono::Duration = chrono::Duration::minutes(5);

/// A session the re-decision revoked, to write down once the session lock is released.
struct Revocation {
    id: SessionId,
    request: Request,
    denial: Denial,
}

impl Services {
    /// Runs until shutdown: applies kill requests, re-decides live sessions (on every tick
    /// and at once after a reload), warns and ends sessions whose contract window closes.
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
                _ = self.redecide_now.notified() => {}
            }
            if last_beat.is_none_or(|t| t.elapsed() >= recorder::catalogue::HEARTBEAT_INTERVAL) {
                match self.catalogue.heartbeat(&self.instance, Utc::now()).await {
                    Ok(()) => {
                        last_beat = Some(tokio::time::Instant::now());
                        self.look_after_other_instances().await;
                    }
                    Err(e) => warn!(error = %e, "Cannot write the heartbeat"),
                }
            }
            self.supervise_once(Utc::now()).await;
        }
    }

    /// On each heartbeat: closes what silent instances left live, and ends this instance's
    /// sessions that another one closed while this one was cut off.
    async fn look_after_other_instances(&self) {
        if let Err(e) = self.take_over_orphans(Utc::now()).await {
            self.metrics.error(ErrorKind::Catalogue);
            warn!(error = %format!("{e:#}"), "Cannot look for sessions of silent instances; will retry");
        }
        if let Err(e) = self.end_sessions_closed_elsewhere().await {
            self.metrics.error(ErrorKind::Catalogue);
            warn!(error = %format!("{e:#}"), "Cannot compare live sessions with the catalogue; will retry");
        }
    }

    async fn supervise_once(&self, now: DateTime<Utc>) {
        self.retry_pending_closes().await;
        if let Err(e) = self.apply_kills().await {
            self.metrics.error(ErrorKind::Catalogue);
            warn!(error = %format!("{e:#}"), "Cannot apply kill requests; will retry");
        }
        let catalogue_consoles = self.live_consoles().await;
        let (consoles, complete) = match catalogue_consoles {
            Ok(all) => (all, true),
            Err(e) => {
                self.metrics.error(ErrorKind::Catalogue);
                warn!(error = %format!("{e:#}"), "Cannot read live console sessions; re-deciding with this instance's own");
                (self.local_consoles(), false)
            }
        };
        let consoles = if complete {
            Consoles::All(&consoles)
        } else {
            Consoles::LocalOnly(&consoles)
        };
        let revoked = self.redecide_all(consoles, now);
        for r in revoked {
            self.write_revocation(r, now).await;
        }
        self.sync_watchers(now).await;
    }

    /// Kill requests (from any instance's CLI) for this instance's sessions.
    async fn apply_kills(&self) -> anyhow::Result<()> {
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
        Ok(())
    }

    /// Re-decides every live session not already ending; tells those that must end, warns
    /// those whose window closes soon. Returns the revocations to write down.
    fn redecide_all(&self, consoles: Consoles<'_>, now: DateTime<Utc>) -> Vec<Revocation> {
        let inventory = self.inventory();
        let mut revoked = Vec::new();
        let mut sessions = self.lock_sessions();
        for (id, s) in sessions.iter_mut() {
            if s.end.borrow().is_some() {
                continue;
            }
            let verdict = redecide(
                &s.admitted,
                &s.allowed_under,
                &inventory,
                consoles,
                now,
                WINDOW_WARNING,
            );
            let end = match verdict {
                Verdict::Keep | Verdict::WarnWindow => {
                    s.allowed_under = Arc::clone(&inventory);
                    if verdict == Verdict::WarnWindow && !s.warned {
                        s.warned = true;
                        let _ = s.notices.try_send(format!(
                            "sekisho: the maintenance window for {} closes in {} minutes; this session will then be ended",
                            s.admitted.target,
                            WINDOW_WARNING.num_minutes()
                        ));
                    }
                    continue;
                }
                Verdict::WindowClosed(denial) => EndReason::ContractEnded {
                    rule: denial.rule(),
                    reason: denial.reason().to_owned(),
                },
                Verdict::ConsoleEnded(console) => EndReason::ConsoleEnded { console },
                Verdict::Revoke(denial) => {
                    info!(
                        session = %id,
                        rule = denial.rule().as_str(),
                        reason = denial.reason(),
                        "Live session revoked; ending it"
                    );
                    let end = EndReason::Revoked {
                        rule: denial.rule(),
                        reason: denial.reason().to_owned(),
                    };
                    revoked.push(Revocation {
                        id: *id,
                        request: s.admitted.request.clone(),
                        denial,
                    });
                    end
                }
            };
            s.end.send_if_modified(|slot| set_once(slot, end));
        }
        revoked
    }

    /// Writes a revocation to the catalogue: a session event (rule and reason) and a deny
    /// decision tied to the session, so `denials list` shows it too. The recording gets the
    /// same rule and reason when the session finishes.
    async fn write_revocation(&self, r: Revocation, now: DateTime<Utc>) {
        let detail = format!("{}: {}", r.denial.rule(), r.denial.reason());
        if let Err(e) = self
            .catalogue
            .session_event(r.id, now, event_kind::REVOKED, Some(&detail))
            .await
        {
            self.metrics.error(ErrorKind::Catalogue);
            warn!(session = %r.id, error = %e, "Cannot write the revocation to the catalogue");
        }
        self.record_refusal(Some(r.id), &r.denial, &r.request).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::{ServicesConfig, SessionMeta};
    use policy::{Decision, Inventory, Protocol, Rule, TargetRef};
    use recorder::catalogue::{Catalogue, InstanceId};
    use tokio_util::sync::CancellationToken;
    use tokio_util::task::TaskTracker;

    /// tanaka (acme) on VDI desktop 127.0.10.11 may SSH to the physical db-phys01 at any time.
    const INVENTORY: &str = r#"timezone = "Asia/Tokyo"

[[vdi_pool]]
name = "vdi-internet"
path = "internet-vpn"
networks = ["127.0.10.0/24"]

[zones]
business = ["internet-vpn"]

[[contractor]]
id = "acme"
name = "ACME"

[[user]]
name = "tanaka"
contractor = "acme"
role = "contractor"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$IvBzMLDZyFbDrkZ3n1bk7w$8NW46C5ZNmNfiHNU+fwLLsnh9hyP7iNV8iEC4MEm5fU"
desktops = ["127.0.10.11"]

[[target]]
name = "db-phys01"
address = "127.0.20.21"
kind = "physical"
zone = "business"

[[contract]]
contractor = "acme"
targets = ["db-phys01"]
valid_from = "2026-01-01"
valid_until = "2099-12-31"
"#;

    #[tokio::test]
    async fn a_catalogue_that_cannot_be_read_does_not_stop_the_re_decision() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::connect(&format!("sqlite://{}/cat.db", dir.path().display()))
            .await
            .unwrap();
        std::fs::create_dir_all(dir.path().join("rec")).unwrap();
        let services = Services::new(ServicesConfig {
            inventory: Inventory::from_toml(INVENTORY, "test.toml").unwrap(),
            secrets: None,
            catalogue,
            recordings: recorder::LocalDir::new(dir.path().join("rec")).into(),
            signing_key: recorder::RecordingKey::generate().unwrap(),
            instance: InstanceId::new("test").unwrap(),
            data_dir: dir.path().to_owned(),
            tls: None,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let req = Request {
            protocol: Protocol::Ssh,
            source: "127.0.10.11".parse().unwrap(),
            target: TargetRef::Name("db-phys01".to_owned()),
            user: Some("tanaka".to_owned()),
        };
        let Decision::Allow(auth) = policy::evaluate(&services.inventory(), &[], &req, Utc::now())
        else {
            panic!("tanaka must be allowed");
        };
        let live = services
            .open_session(&auth, &req, SessionMeta::default())
            .await
            .unwrap();
        services.supervise_once(Utc::now()).await;
        assert_eq!(live.end_reason(), None, "still admitted");

        // The catalogue goes away (every query now fails), then tanaka is removed.
        services.catalogue().close().await;
        let without = INVENTORY.replacen("name = \"tanaka\"", "name = \"tanaka-left\"", 1);
        services.replace_inventory(Inventory::from_toml(&without, "test.toml").unwrap());
        services.supervise_once(Utc::now()).await;
        match live.end_reason() {
            Some(EndReason::Revoked { rule, reason }) => {
                assert_eq!(rule, Rule::UserUnknown, "{reason}");
            }
            other => panic!("not revoked: {other:?}"),
        }
    }
}
