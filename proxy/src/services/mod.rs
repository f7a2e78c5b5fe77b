//! The glue every front door uses: ask the policy, write the decision, open a recorded session,
//! and end sessions when they must end (kill, contract window, console gone, revocation by a
//! re-decision under the current configuration, recording failure, shutdown).
//!
//! A relay holds a [`LiveSession`]: every byte it moves goes through it into the recording, and
//! [`LiveSession::ended`] tells it when to stop. A relay never talks to the catalogue or the
//! recorder directly, so the rules "fail closed" and "nothing unrecorded" live here, once.

mod admission;
mod door_sync;
mod ledger;
mod live;
mod logons;
mod metrics;
mod redecide;
pub mod retention;
pub mod supervision;
mod supervisor;
mod takeover;
mod typed_index;
mod watching;

pub use admission::Admission;
pub use live::{EndReason, LiveSession, SessionMeta};
pub use metrics::{ErrorKind, Metrics};
pub use supervisor::WINDOW_WARNING;
pub use typed_index::index_unindexed;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use policy::{Decision, Denial, Inventory, LiveConsole, Request, Rule, Secrets, SessionId};
use recorder::RecordingKey;
use recorder::catalogue::{Catalogue, DecisionRecord, InstanceId};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::error;

use crate::auth::second_factor::SecondFactors;
use crate::auth::throttle::Throttle;
use crate::pins::PinStore;
use live::{PendingClose, Registered};

/// Shared state of a running instance. Cheap to share (`Arc<Services>`).
pub struct Services {
    inventory: RwLock<Arc<Inventory>>,
    secrets: RwLock<Option<Arc<Secrets>>>,
    catalogue: Catalogue,
    recordings: crate::recordings::Recordings,
    signing_key: RecordingKey,
    instance: InstanceId,
    sessions: Mutex<HashMap<SessionId, Registered>>,
    data_dir: PathBuf,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    metrics: Metrics,
    /// Sessions that ended while the catalogue could not be written; the supervisor retries
    /// closing their rows, so a session never stays "live" after the catalogue returns.
    pending_closes: Mutex<Vec<PendingClose>>,
    /// Wakes the supervisor for a pass now (a reload must reach live sessions within a
    /// second, not at the next tick).
    redecide_now: tokio::sync::Notify,
    /// Failed logons and lockouts: the process-wide throttle, configured from `[auth]` here
    /// (at start and on every reload) so every door counts against the same limits.
    throttle: Arc<Throttle>,
    /// Matrix card passes (process-wide), for the doors without a card step of their own.
    second_factors: Arc<SecondFactors>,
    /// Trust on first use for the keys of the targets dialled, in the catalogue.
    pins: PinStore,
}

/// Everything [`Services::new`] needs; `serve` builds it from the configuration.
pub struct ServicesConfig {
    pub inventory: Inventory,
    pub secrets: Option<Secrets>,
    pub catalogue: Catalogue,
    pub recordings: crate::recordings::Recordings,
    pub signing_key: RecordingKey,
    pub instance: InstanceId,
    pub data_dir: PathBuf,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

impl Services {
    pub fn new(config: ServicesConfig) -> Arc<Self> {
        let throttle = crate::auth::throttle::process_throttle();
        throttle.configure(*config.inventory.auth());
        Arc::new(Services {
            throttle,
            second_factors: crate::auth::second_factor::process_second_factors(),
            pins: PinStore::new(config.catalogue.clone(), config.instance.clone()),
            inventory: RwLock::new(Arc::new(config.inventory)),
            secrets: RwLock::new(config.secrets.map(Arc::new)),
            catalogue: config.catalogue,
            recordings: config.recordings,
            signing_key: config.signing_key,
            instance: config.instance,
            sessions: Mutex::new(HashMap::new()),
            data_dir: config.data_dir,
            tls: config.tls,
            shutdown: config.shutdown,
            tasks: config.tasks,
            metrics: Metrics::default(),
            pending_closes: Mutex::new(Vec::new()),
            redecide_now: tokio::sync::Notify::new(),
        })
    }

    /// The pins of the targets' keys (RDP certificates, SSH host keys).
    pub fn pins(&self) -> &PinStore {
        &self.pins
    }

    /// The current inventory (a snapshot: a reload swaps it, and the supervisor re-decides
    /// live sessions against the new one).
    pub fn inventory(&self) -> Arc<Inventory> {
        match self.inventory.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the inventory (configuration reload) and wakes the supervisor, which
    /// Wakes the supervisor for a pass now: an emergency stop asked from the web UI is
    /// applied within moments, not at the next tick.
    pub fn supervise_now(&self) {
        self.redecide_now.notify_one();
    }

    /// re-decides every live session against it at once.
    pub fn replace_inventory(&self, inventory: Inventory) {
        {
            let mut guard = match self.inventory.write() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            *guard = Arc::new(inventory);
        }
        self.redecide_now.notify_one();
    }

    /// Applies a reloaded, validated configuration: new decisions use it at once, and the
    /// supervisor re-decides every live session against it right away: a session the new
    /// configuration would not admit as it was admitted (user removed, desktops changed,
    /// target removed or changed, contract gone...) is ended with outcome `revoked`.
    pub fn replace_config(&self, inventory: Inventory, secrets: Option<Secrets>) {
        {
            let mut guard = match self.secrets.write() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            *guard = secrets.map(Arc::new);
        }
        self.throttle.configure(*inventory.auth());
        self.replace_inventory(inventory);
        self.metrics.reloaded();
    }

    /// This instance's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// `/metrics` text for this instance's counters and live sessions.
    pub fn render_metrics(&self) -> String {
        let mut live: Vec<(policy::Protocol, u64)> = Vec::new();
        for s in self.lock_sessions().values() {
            match live.iter_mut().find(|(p, _)| *p == s.protocol) {
                Some((_, n)) => *n += 1,
                None => live.push((s.protocol, 1)),
            }
        }
        self.metrics
            .render(&live, self.recordings.store().spool_status())
    }

    /// Where recordings are written, and how any catalogued one is read.
    pub fn recordings(&self) -> &crate::recordings::Recordings {
        &self.recordings
    }

    /// Whether this process holds session `id` live.
    pub fn is_live_here(&self, id: SessionId) -> bool {
        self.lock_sessions().contains_key(&id)
    }

    /// The credentials Sekisho injects; `None` when the secrets file does not exist.
    pub fn secrets(&self) -> Option<Arc<Secrets>> {
        match self.secrets.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The catalogue (for front doors that record their own events, such as failed logins).
    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    /// This instance's identity in the shared catalogue.
    pub fn instance(&self) -> &InstanceId {
        &self.instance
    }

    /// The directory for state such as host keys and pinned server certificates.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Sekisho's TLS identity toward clients (RDP contractor leg, web UI).
    pub fn tls_acceptor(&self) -> Option<tokio_rustls::TlsAcceptor> {
        self.tls.clone()
    }

    /// Cancelled when the instance shuts down.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Tracks session tasks so shutdown can wait for every recording to be sealed.
    pub fn tasks(&self) -> &TaskTracker {
        &self.tasks
    }

    /// The live console sessions every instance knows of (from the catalogue), plus this
    /// instance's own (which are in the catalogue too; merging protects against a lagging
    /// read replica).
    async fn live_consoles(&self) -> Result<Vec<LiveConsole>> {
        let mut live = self
            .catalogue
            .live_consoles()
            .await
            .context("cannot read live console sessions")?;
        for local in self.local_consoles() {
            if !live.iter().any(|c| c.session_id == local.session_id) {
                live.push(local);
            }
        }
        Ok(live)
    }

    /// This instance's own live console sessions (known without the catalogue).
    fn local_consoles(&self) -> Vec<LiveConsole> {
        self.lock_sessions()
            .iter()
            .filter(|(_, s)| {
                matches!(
                    s.protocol,
                    policy::Protocol::ConsoleSerial | policy::Protocol::ConsoleVnc
                )
            })
            .map(|(id, s)| LiveConsole {
                session_id: *id,
                target: s.admitted.target.clone(),
                user: s.admitted.user.clone(),
                contractor: s.admitted.contractor.clone(),
                path: s.admitted.path.clone(),
            })
            .collect()
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Registered>> {
        lock_ignoring_poison(&self.sessions)
    }

    /// Decides a request and writes the decision to the catalogue. Fails closed: when the live
    /// sessions cannot be read or the decision cannot be written, the answer is a denial.
    pub async fn decide(&self, req: &Request) -> Decision {
        self.decide_on(&self.inventory(), req).await
    }

    /// [`Services::decide`] on the inventory snapshot `inventory`.
    pub(crate) async fn decide_on(&self, inventory: &Inventory, req: &Request) -> Decision {
        self.decide_stored(inventory, req).await.0
    }

    /// [`Services::decide_on`], with the id under which the decision was stored.
    pub(crate) async fn decide_stored(
        &self,
        inventory: &Inventory,
        req: &Request,
    ) -> (Decision, Option<recorder::catalogue::DecisionId>) {
        let now = Utc::now();
        let decision = match self.live_consoles().await {
            Ok(live) => policy::evaluate(inventory, &live, req, now),
            Err(e) => {
                error!(error = %format!("{e:#}"), "Cannot read live sessions; denying");
                self.metrics.error(ErrorKind::Catalogue);
                Decision::Deny(unavailable_denial(req))
            }
        };
        let (decision, id) = match self.write_decision(req, &decision, None, now).await {
            Ok(id) => (decision, Some(id)),
            Err(e) => {
                error!(error = %format!("{e:#}"), "Cannot write the decision; denying");
                self.metrics.error(ErrorKind::Catalogue);
                (Decision::Deny(unavailable_denial(req)), None)
            }
        };
        self.metrics.decision(match &decision {
            Decision::Deny(d) => Some(d.rule()),
            _ => None,
        });
        (decision, id)
    }

    /// Records a refusal that is not a connection decision, such as an SFTP request inside an
    /// allowed SSH session (`ssh.file-transfer`) or a port forwarding (`ssh.forwarding`).
    pub async fn record_refusal(&self, session: Option<SessionId>, denial: &Denial, req: &Request) {
        let decision = Decision::Deny(denial.clone());
        self.metrics.decision(Some(denial.rule()));
        if let Err(e) = self
            .write_decision(req, &decision, session, Utc::now())
            .await
        {
            error!(error = %format!("{e:#}"), rule = denial.rule().as_str(), "Cannot write a refusal");
        }
    }

    async fn write_decision(
        &self,
        req: &Request,
        decision: &Decision,
        session: Option<SessionId>,
        at: DateTime<Utc>,
    ) -> Result<recorder::catalogue::DecisionId> {
        let record = DecisionRecord::from_decision(at, &self.instance, req, decision, session);
        self.catalogue
            .record_decision(&record)
            .await
            .context("cannot write the decision to the catalogue")
    }
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn unavailable_denial(req: &Request) -> Denial {
    Denial::new(
        Rule::SekishoUnavailable,
        format!(
            "{} from {} denied: Sekisho cannot record this decision right now (catalogue unavailable); try again later",
            req.protocol, req.source
        ),
        req.user.clone(),
        None,
        None,
    )
}
