//! Logons at the front doors: the failed-logon throttle and the matrix card passes every door
//! shares, and the catalogue rows and audit events a failed logon or a lockout leaves.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use policy::{Denial, Request, Rule};
use recorder::catalogue::event_kind;
use tracing::{error, warn};

use super::{ErrorKind, Services};
use crate::auth::second_factor::SecondFactors;
use crate::auth::throttle::{Lockout, Throttle};

impl Services {
    /// The failed-logon throttle every door shares ([`crate::auth::throttle`]).
    pub fn throttle(&self) -> &Arc<Throttle> {
        &self.throttle
    }

    /// The matrix card passes every door shares ([`crate::auth::second_factor`]).
    pub fn second_factors(&self) -> &Arc<SecondFactors> {
        &self.second_factors
    }

    /// Writes an `auth.failed` denial for a failed logon of `user` from `source` at a front
    /// door. `reason` says which factor failed and must hold no secret. The user name is the
    /// one typed (maybe unknown, maybe hostile): it is cut short and its control characters
    /// dropped before it reaches the catalogue.
    pub async fn auth_failed(
        &self,
        protocol: policy::Protocol,
        user: &str,
        source: IpAddr,
        target: Option<&str>,
        reason: String,
    ) {
        let user: String = user
            .chars()
            .filter(|c| !c.is_control())
            .take(crate::auth::throttle::MAX_KEY_LEN)
            .collect();
        let contractor = self
            .inventory()
            .user(&user)
            .and_then(|u| u.contractor.clone());
        let req = Request {
            protocol,
            source,
            target: policy::TargetRef::Name(target.unwrap_or_default().to_owned()),
            user: Some(user.clone()),
        };
        let denial = Denial::new(
            Rule::AuthFailed,
            reason,
            Some(user),
            contractor,
            target.map(str::to_owned),
        );
        self.record_refusal(None, &denial, &req).await;
    }

    /// `Some(denial)` (rule `auth.second-factor`) when `user` has a matrix card and has not
    /// passed it from `source` within `auth.second_factor_ttl` before `now`: a door without a
    /// card step of its own (VNC, RDP) refuses then, and the reason says where to pass the
    /// card. `None` for a user without a card (and for an unknown user: the policy refuses
    /// those). The caller writes the denial ([`Services::record_refusal`]).
    pub fn second_factor_missing(
        &self,
        protocol: policy::Protocol,
        user: &str,
        source: IpAddr,
        target: &str,
        now: Instant,
    ) -> Option<Denial> {
        let inventory = self.inventory();
        let u = inventory.user(user)?;
        u.matrix_card.as_ref()?;
        let ttl = inventory.auth().second_factor_ttl;
        if self.second_factors.passed(user, source, now, ttl) {
            return None;
        }
        Some(Denial::new(
            Rule::AuthSecondFactor,
            format!(
                "{} to {target} refused: {user} has a matrix card and has not passed it from {source} in the last {}; pass it from this desktop first (log in to the web UI, or `ssh {user}@bastion`), then try again",
                protocol.describe(),
                human_duration(ttl)
            ),
            Some(user.to_owned()),
            u.contractor.clone(),
            Some(target.to_owned()),
        ))
    }

    /// Writes each lockout a failed logon started as an audit event and a log line.
    pub async fn lockouts_started(
        &self,
        lockouts: &[Lockout],
        protocol: policy::Protocol,
        source: IpAddr,
    ) {
        self.write_lockouts(lockouts, source, &format!("over {}", protocol.describe()))
            .await;
    }

    /// [`Services::lockouts_started`] for a lockout that a failure seen by another instance
    /// of the catalogue tipped over (see `door_sync`).
    pub(super) async fn lockouts_started_elsewhere(&self, lockouts: &[Lockout], source: IpAddr) {
        self.write_lockouts(lockouts, source, "on another instance")
            .await;
    }

    async fn write_lockouts(&self, lockouts: &[Lockout], source: IpAddr, how: &str) {
        for lockout in lockouts {
            let detail = format!("{lockout} (last failure {how} from {source})");
            warn!(subject = %lockout.subject, client_ip = %source, how, lockout_secs = lockout.lockout.as_secs(), "Logons locked out after repeated failures");
            let event = recorder::catalogue::AuditEvent {
                at: Utc::now(),
                instance: self.instance.clone(),
                kind: event_kind::AUTH_LOCKOUT.to_owned(),
                detail: Some(detail),
                session_id: None,
            };
            if let Err(e) = self.catalogue.audit_event(&event).await {
                self.metrics.error(ErrorKind::Catalogue);
                error!(error = %e, "Cannot write the lockout audit event");
            }
        }
    }
}

/// `d` as a person says it: "8 h", "15 min", "90 s".
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}
