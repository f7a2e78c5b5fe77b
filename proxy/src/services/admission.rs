//! One admission: the decision, and what a dial needs, taken from the same inventory snapshot.
//!
//! An [`Admission`] is the only way a door that has one learns a target's endpoint: it is built
//! only by [`Services::admit`] from an allow decision (itself only built by `policy::evaluate`),
//! it is not `Clone`, and opening the recorded session consumes it. So a dial without a
//! decision does not type-check, and one decision opens one session.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Result;
use policy::{Authorized, Decision, Denial, Inventory, Request, Target};

use super::{LiveSession, Services, SessionMeta};

/// An allowed request, with the inventory snapshot it was decided on and its resolved target.
#[derive(Debug)]
pub struct Admission {
    authorized: Authorized,
    /// The stored allow decision (absent when it could not be stored: then it was refused).
    decision: Option<recorder::catalogue::DecisionId>,
    request: Request,
    inventory: Arc<Inventory>,
    target: Target,
}

impl Admission {
    /// The allow decision.
    pub fn authorized(&self) -> &Authorized {
        &self.authorized
    }

    /// The request that was decided.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The inventory snapshot the decision was made on.
    pub fn inventory(&self) -> &Inventory {
        &self.inventory
    }

    /// The target, as that snapshot describes it.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// Where the target's RDP service is.
    pub fn rdp_endpoint(&self) -> SocketAddr {
        SocketAddr::new(self.target.address, self.target.rdp_port)
    }
}

impl Services {
    /// Decides `req` (the decision is written to the catalogue either way) and, on allow,
    /// resolves its target in the same inventory snapshot. A denial comes back to be reported
    /// to the client; it is already in the catalogue.
    pub async fn admit(&self, req: &Request) -> Result<Admission, Denial> {
        let inventory = self.inventory();
        let (authorized, decision) = match self.decide_stored(&inventory, req).await {
            (Decision::Allow(authorized), id) => (authorized, id),
            (Decision::Deny(denial), _) => return Err(denial),
        };
        let Some(target) = inventory.target(authorized.target()).cloned() else {
            // The policy allowed a target its own snapshot lacks: a bug, refused all the same.
            let denial = Denial::new(
                policy::Rule::TargetUnknown,
                format!("target {} is not in the inventory", authorized.target()),
                Some(authorized.user().to_owned()),
                Some(authorized.contractor().to_owned()),
                Some(authorized.target().to_owned()),
            );
            self.record_refusal(None, &denial, req).await;
            return Err(denial);
        };
        Ok(Admission {
            authorized,
            decision,
            request: req.clone(),
            inventory,
            target,
        })
    }

    /// Opens the recording and the catalogue row of an admitted session, consuming the
    /// admission. An error means the session must not run (fail closed).
    pub async fn open_admitted(
        self: &Arc<Self>,
        admission: Admission,
        meta: SessionMeta,
    ) -> Result<LiveSession> {
        self.open_decided_session(
            &admission.authorized,
            &admission.request,
            meta,
            admission.decision,
        )
        .await
    }
}
