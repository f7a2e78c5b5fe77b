//! The glue every front door uses: ask the policy, write the decision, open a recorded session,
//! and end sessions when they must end (kill, contract window, console gone, recording failure,
//! shutdown).
//!
//! A relay holds a [`LiveSession`]: every byte it moves goes through it into the recording, and
//! [`LiveSession::ended`] tells it when to stop. A relay never talks to the catalogue or the
//! recorder directly, so the rules "fail closed" and "nothing unrecorded" live here, once.

mod metrics;
pub mod retention;

pub use metrics::{ErrorKind, Metrics};

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use policy::{
    Authorized, Decision, Denial, Inventory, LiveConsole, Request, Rule, Secrets, SessionId,
};
use recorder::catalogue::{Catalogue, DecisionRecord, InstanceId, NewSession, Outcome, event_kind};
use recorder::{ChannelId, Direction, EventKind, RecordingKey, RecordingWriter, WriterConfig};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::auth::second_factor::SecondFactors;
use crate::auth::throttle::{Lockout, Throttle};

/// How often the supervisor looks for kill requests, ended consoles and closing windows.
/// Kill must take effect within 1 s; 250 ms leaves room for the relay to wind down.
const SUPERVISE_INTERVAL: Duration = Duration::from_millis(250);

/// How often retention looks for recordings past `[recording] retention_days`.
const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// How long before a contract window closes a session is warned.
pub const WINDOW_WARNING: chrono::Duration = chrono::Duration::minutes(5);

/// Why a live session was told to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// Security staff ran `sekisho sessions kill`.
    Killed { by: String },
    /// The contract (or its window) no longer allows the session.
    ContractEnded { rule: Rule, reason: String },
    /// The console session a hop rode on has ended.
    ConsoleEnded { console: SessionId },
    /// The recording could not be written: fail closed.
    RecordingFailed { error: String },
    /// Sekisho is shutting down.
    Shutdown,
}

impl EndReason {
    /// The catalogue outcome for a session ended for this reason.
    pub fn outcome(&self) -> Outcome {
        match self {
            EndReason::Killed { .. } => Outcome::Killed,
            EndReason::ContractEnded { .. } => Outcome::WindowClosed,
            EndReason::ConsoleEnded { .. } => Outcome::Completed,
            EndReason::RecordingFailed { .. } => Outcome::Failed,
            EndReason::Shutdown => Outcome::Shutdown,
        }
    }

    /// One line for the user, shown before the disconnect.
    pub fn message(&self) -> String {
        match self {
            EndReason::Killed { .. } => "sekisho: session ended by security staff".to_owned(),
            EndReason::ContractEnded { reason, .. } => format!("sekisho: session ended: {reason}"),
            EndReason::ConsoleEnded { .. } => {
                "sekisho: session ended: the console session it came from has ended".to_owned()
            }
            EndReason::RecordingFailed { .. } => {
                "sekisho: session ended: it can no longer be recorded".to_owned()
            }
            EndReason::Shutdown => {
                "sekisho: session ended: the bastion is shutting down".to_owned()
            }
        }
    }
}

/// Protocol metadata a player needs, written into the recording header.
#[derive(Debug, Clone, Default)]
pub struct SessionMeta {
    pub protocol_metadata: BTreeMap<String, String>,
    /// Free text for the catalogue row (e.g. the RDP channels negotiated).
    pub detail: Option<String>,
}

/// What the supervisor knows about one live session of this instance.
struct Registered {
    protocol: policy::Protocol,
    target: String,
    user: String,
    contractor: String,
    path: String,
    source: std::net::IpAddr,
    console: Option<SessionId>,
    end: watch::Sender<Option<EndReason>>,
    notices: mpsc::Sender<String>,
    warned: bool,
}

/// Shared state of a running instance. Cheap to share (`Arc<Services>`).
pub struct Services {
    inventory: RwLock<Arc<Inventory>>,
    secrets: RwLock<Option<Arc<Secrets>>>,
    catalogue: Catalogue,
    recordings: recorder::LocalDir,
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
    /// Failed logons and lockouts: the process-wide throttle, configured from `[auth]` here
    /// (at start and on every reload) so every door counts against the same limits.
    throttle: Arc<Throttle>,
    /// Matrix card passes (process-wide), for the doors without a card step of their own.
    second_factors: Arc<SecondFactors>,
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

/// A catalogue row still to be closed.
struct PendingClose {
    id: SessionId,
    ended_at: DateTime<Utc>,
    outcome: Outcome,
    recording: recorder::catalogue::RecordingSummary,
}

/// Everything [`Services::new`] needs; `serve` builds it from the configuration.
pub struct ServicesConfig {
    pub inventory: Inventory,
    pub secrets: Option<Secrets>,
    pub catalogue: Catalogue,
    pub recordings: recorder::LocalDir,
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
        })
    }

    /// The current inventory (a snapshot: a reload swaps it, live sessions keep theirs).
    pub fn inventory(&self) -> Arc<Inventory> {
        match self.inventory.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the inventory (configuration reload). Live sessions are re-checked against it
    /// by the supervisor.
    pub fn replace_inventory(&self, inventory: Inventory) {
        let mut guard = match self.inventory.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(inventory);
    }

    /// Applies a reloaded, validated configuration: new decisions use it at once; live
    /// sessions keep running and are re-checked against it by the supervisor's next pass
    /// (a contract no longer there ends them, as a closing window does).
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
        source: std::net::IpAddr,
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
        source: std::net::IpAddr,
        target: &str,
        now: std::time::Instant,
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
        source: std::net::IpAddr,
    ) {
        for lockout in lockouts {
            let detail = format!(
                "{lockout} (last failure over {} from {source})",
                protocol.describe()
            );
            warn!(subject = %lockout.subject, client_ip = %source, proto = protocol.as_str(), lockout_secs = lockout.lockout.as_secs(), "Logons locked out after repeated failures");
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
        self.metrics.render(&live)
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
        let local = self.lock_sessions();
        for (id, s) in local.iter() {
            let is_console = matches!(
                s.protocol,
                policy::Protocol::ConsoleSerial | policy::Protocol::ConsoleVnc
            );
            if is_console && !live.iter().any(|c| c.session_id == *id) {
                live.push(LiveConsole {
                    session_id: *id,
                    target: s.target.clone(),
                    user: s.user.clone(),
                    contractor: s.contractor.clone(),
                    path: s.path.clone(),
                });
            }
        }
        Ok(live)
    }

    fn lock_sessions(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Registered>> {
        lock_ignoring_poison(&self.sessions)
    }

    /// Decides a request and writes the decision to the catalogue. Fails closed: when the live
    /// sessions cannot be read or the decision cannot be written, the answer is a denial.
    pub async fn decide(&self, req: &Request) -> Decision {
        let now = Utc::now();
        let inventory = self.inventory();
        let decision = match self.live_consoles().await {
            Ok(live) => policy::evaluate(&inventory, &live, req, now),
            Err(e) => {
                error!(error = %format!("{e:#}"), "Cannot read live sessions; denying");
                self.metrics.error(ErrorKind::Catalogue);
                Decision::Deny(unavailable_denial(req))
            }
        };
        let decision = match self.write_decision(req, &decision, None, now).await {
            Ok(()) => decision,
            Err(e) => {
                error!(error = %format!("{e:#}"), "Cannot write the decision; denying");
                self.metrics.error(ErrorKind::Catalogue);
                Decision::Deny(unavailable_denial(req))
            }
        };
        self.metrics.decision(match &decision {
            Decision::Deny(d) => Some(d.rule()),
            _ => None,
        });
        decision
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
    ) -> Result<()> {
        let record = DecisionRecord::from_decision(at, &self.instance, req, decision, session);
        self.catalogue
            .record_decision(&record)
            .await
            .context("cannot write the decision to the catalogue")?;
        Ok(())
    }

    /// Opens the recording and the catalogue row of an allowed session and registers it with
    /// the supervisor. An error means the session must not run (fail closed).
    pub async fn open_session(
        self: &Arc<Self>,
        auth: &Authorized,
        req: &Request,
        meta: SessionMeta,
    ) -> Result<LiveSession> {
        // A session opened after the supervisor told every session to end would never be
        // told: refuse it (the client's listener is closing anyway).
        if self.shutdown.is_cancelled() {
            return Err(anyhow!("Sekisho is shutting down"));
        }
        let started_at = Utc::now();
        let id = SessionId(uuid::Uuid::now_v7());
        let header = recorder::Header {
            session_id: id.0,
            protocol: req.protocol.as_str().to_owned(),
            user: Some(auth.user().to_owned()),
            contractor: Some(auth.contractor().to_owned()),
            source: req.source.to_string(),
            target: auth.target().to_owned(),
            start_unix_us: started_at.timestamp_micros(),
            metadata: meta.protocol_metadata.clone(),
        };
        let writer = match RecordingWriter::create(
            &self.recordings,
            header,
            self.signing_key.clone(),
            WriterConfig::default(),
        )
        .await
        {
            Ok(w) => w,
            Err(e) => {
                self.metrics.error(ErrorKind::Recording);
                // The allow decision is already in the catalogue; the refusal that followed
                // it must be there too, or the audit trail says a session ran that never did.
                let denial = unrecordable_denial(req, auth, &e.to_string());
                self.record_refusal(None, &denial, req).await;
                return Err(e).context("cannot open the recording");
            }
        };
        let location = writer.location().to_owned();
        let new = NewSession {
            id,
            instance: self.instance.clone(),
            protocol: req.protocol,
            user: auth.user().to_owned(),
            contractor: auth.contractor().to_owned(),
            source: req.source,
            target: auth.target().to_owned(),
            path: auth.path().to_owned(),
            console_session: auth.console_session(),
            started_at,
            recording: Some(location.clone()),
            detail: meta.detail.clone(),
        };
        if let Err(e) = self.catalogue.session_started(&new).await {
            // The recording exists but the session will not run: close it so it is not
            // mistaken for a crash, then refuse.
            let _ = writer.finish().await;
            self.metrics.error(ErrorKind::Catalogue);
            return Err(e).context("cannot register the session in the catalogue");
        }

        let (end_tx, end_rx) = watch::channel(None);
        let (notice_tx, notice_rx) = mpsc::channel(8);
        self.lock_sessions().insert(
            id,
            Registered {
                protocol: req.protocol,
                target: auth.target().to_owned(),
                user: auth.user().to_owned(),
                contractor: auth.contractor().to_owned(),
                path: auth.path().to_owned(),
                source: req.source,
                console: auth.console_session(),
                end: end_tx.clone(),
                notices: notice_tx,
                warned: false,
            },
        );
        self.metrics.session_started(req.protocol);
        // Shutdown may have begun while the recording was being opened.
        if self.shutdown.is_cancelled() {
            end_tx.send_if_modified(|slot| set_once(slot, EndReason::Shutdown));
        }

        // A failing disk ends the session that cannot be recorded.
        let failed = writer.failed();
        let watcher_end = end_tx.clone();
        let services = Arc::clone(self);
        self.tasks.spawn(async move {
            // `failed` never resolves for a recording that finishes well: stop watching once
            // the session is gone (every receiver dropped), or shutdown would wait for ever.
            let failure = tokio::select! {
                failure = failed => failure,
                _ = watcher_end.closed() => return,
            };
            let error = failure.error.to_string();
            warn!(session = %id, error = %error, "Recording failed; ending the session");
            services.metrics.error(ErrorKind::Recording);
            let _ = services
                .catalogue
                .session_event(id, Utc::now(), event_kind::RECORDING_FAILED, Some(&error))
                .await;
            watcher_end
                .send_if_modified(|slot| set_once(slot, EndReason::RecordingFailed { error }));
        });

        info!(session = %id, protocol = %req.protocol, user = auth.user(), target = auth.target(), "Session started");
        Ok(LiveSession {
            id,
            protocol: req.protocol,
            services: Arc::clone(self),
            writer: Some(writer),
            end: end_rx,
            end_tx,
            notices: Some(notice_rx),
            location,
        })
    }

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
            let result = retention::prune(
                &self.catalogue,
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

    /// Closes a session's catalogue row; when the catalogue is unavailable the close is kept
    /// and retried by the supervisor until it succeeds.
    async fn close_row(
        &self,
        close: PendingClose,
    ) -> Result<(), recorder::catalogue::CatalogueError> {
        let result = self
            .catalogue
            .session_ended(
                close.id,
                close.ended_at,
                close.outcome,
                Some(&close.recording),
            )
            .await;
        if let Err(e) = &result {
            self.metrics.error(ErrorKind::Catalogue);
            warn!(session = %close.id, error = %e, "Cannot close the session in the catalogue; will retry");
            lock_ignoring_poison(&self.pending_closes).push(close);
        }
        result.map(|_| ())
    }

    /// Retries the closes that failed while the catalogue was unavailable.
    async fn retry_pending_closes(&self) {
        let pending = std::mem::take(&mut *lock_ignoring_poison(&self.pending_closes));
        for close in pending {
            let id = close.id;
            if self.close_row(close).await.is_ok() {
                info!(session = %id, "Session closed in the catalogue after it returned");
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

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

fn is_contract_rule(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::ContractNone | Rule::ContractExpired | Rule::ContractWindow
    )
}

fn set_once(slot: &mut Option<EndReason>, reason: EndReason) -> bool {
    if slot.is_some() {
        return false;
    }
    *slot = Some(reason);
    true
}

fn unrecordable_denial(req: &Request, auth: &Authorized, error: &str) -> Denial {
    Denial::new(
        Rule::SekishoUnavailable,
        format!(
            "{} from {} to {} denied: the session cannot be recorded right now ({error}); try again later",
            req.protocol,
            req.source,
            auth.target()
        ),
        Some(auth.user().to_owned()),
        Some(auth.contractor().to_owned()),
        Some(auth.target().to_owned()),
    )
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

/// A live, recorded session. Every byte a relay moves goes through it.
///
/// INVARIANT: while a `LiveSession` exists, its catalogue row is live and its recording open;
/// [`LiveSession::finish`] (or drop, as a last resort) closes both.
pub struct LiveSession {
    pub id: SessionId,
    protocol: policy::Protocol,
    services: Arc<Services>,
    writer: Option<RecordingWriter>,
    end: watch::Receiver<Option<EndReason>>,
    end_tx: watch::Sender<Option<EndReason>>,
    notices: Option<mpsc::Receiver<String>>,
    location: String,
}

impl LiveSession {
    fn writer(&self) -> Result<&RecordingWriter> {
        self.writer
            .as_ref()
            .ok_or_else(|| anyhow!("the recording is already closed"))
    }

    /// Records bytes the client sent on `channel` (keys, pointer, client PDUs).
    pub async fn client_data(&self, channel: u32, bytes: &[u8]) -> Result<()> {
        self.record(Direction::ClientToServer, channel, bytes).await
    }

    /// Records bytes the server sent on `channel` (screen, terminal output).
    pub async fn server_data(&self, channel: u32, bytes: &[u8]) -> Result<()> {
        self.record(Direction::ServerToClient, channel, bytes).await
    }

    async fn record(&self, direction: Direction, channel: u32, bytes: &[u8]) -> Result<()> {
        let result = self
            .writer()?
            .data(direction, ChannelId(channel), Bytes::copy_from_slice(bytes))
            .await;
        if result.is_ok() {
            self.services
                .metrics
                .recorded(direction == Direction::ClientToServer, bytes.len());
        }
        self.fail_on_error(result)
    }

    /// Records a terminal (or desktop) size change.
    pub async fn resize(&self, width: u32, height: u32) -> Result<()> {
        let result = self
            .writer()?
            .event(EventKind::Resize { width, height }, String::new())
            .await;
        self.fail_on_error(result)
    }

    /// Records a policy event in the recording and the catalogue ("clipboard channel
    /// stripped", "sftp refused").
    pub async fn event(&self, kind: EventKind, detail: &str) -> Result<()> {
        let catalogue_kind = kind.as_str();
        let result = self.writer()?.event(kind, detail).await;
        self.fail_on_error(result)?;
        self.services
            .catalogue
            .session_event(self.id, Utc::now(), catalogue_kind, Some(detail))
            .await
            .context("cannot write the session event to the catalogue")
    }

    /// Records a keyframe (a protocol snapshot a player can start from).
    pub async fn keyframe(&self, channel: u32, bytes: &[u8]) -> Result<()> {
        let result = self
            .writer()?
            .keyframe(ChannelId(channel), Bytes::copy_from_slice(bytes))
            .await;
        self.fail_on_error(result)
    }

    fn fail_on_error<T, E: std::fmt::Display>(
        &self,
        result: std::result::Result<T, E>,
    ) -> Result<T> {
        result.map_err(|e| {
            let error = e.to_string();
            self.end_tx.send_if_modified(|slot| {
                set_once(
                    slot,
                    EndReason::RecordingFailed {
                        error: error.clone(),
                    },
                )
            });
            anyhow!("recording failed: {error}")
        })
    }

    /// Resolves when the session must end, with the reason.
    pub async fn ended(&self) -> EndReason {
        let mut rx = self.end.clone();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                return EndReason::Shutdown;
            }
        }
    }

    /// The reason the session must end, if it must.
    pub fn end_reason(&self) -> Option<EndReason> {
        self.end.borrow().clone()
    }

    /// Messages for the user (the contract window warning); take it once.
    pub fn take_notices(&mut self) -> Option<mpsc::Receiver<String>> {
        self.notices.take()
    }

    /// Where the recording is stored.
    pub fn recording_location(&self) -> &str {
        &self.location
    }

    /// Seals the recording and closes the catalogue row with `outcome`.
    pub async fn finish(mut self, outcome: Outcome) -> Result<()> {
        let outcome = match self.end_reason() {
            Some(reason) if outcome == Outcome::Completed => reason.outcome(),
            _ => outcome,
        };
        if let Some(reason) = self.end_reason() {
            let detail = reason.message();
            let kind = match reason {
                EndReason::Killed { .. } => EventKind::SessionKilled,
                _ => EventKind::Policy,
            };
            if let Some(w) = self.writer.as_ref() {
                let _ = w.event(kind, detail.clone()).await;
            }
        }
        self.services.lock_sessions().remove(&self.id);
        let summary = match self.writer.take() {
            Some(w) => w.finish().await,
            None => Err(recorder::WriteError::Closed),
        };
        let recording = catalogue_summary(&self.location, &summary);
        if let Err(e) = &summary {
            error!(session = %self.id, error = %e, "Cannot seal the recording");
            self.services.metrics.error(ErrorKind::Seal);
        }
        self.services.metrics.session_ended(self.protocol, outcome);
        self.services
            .close_row(PendingClose {
                id: self.id,
                ended_at: Utc::now(),
                outcome,
                recording,
            })
            .await
            .context("cannot close the session in the catalogue (retrying in the background)")?;
        info!(session = %self.id, outcome = %outcome, "Session ended");
        summary
            .map(|_| ())
            .map_err(|e| anyhow!("cannot seal the recording: {e}"))
    }
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        // A relay that returned early without `finish` (a bug or a panic): still seal the
        // recording and close the row, in the background.
        if let Some(writer) = self.writer.take() {
            let services = Arc::clone(&self.services);
            let id = self.id;
            services.lock_sessions().remove(&id);
            let tasks = services.tasks.clone();
            let location = self.location.clone();
            services
                .metrics
                .session_ended(self.protocol, Outcome::Failed);
            tasks.spawn(async move {
                let summary = writer.finish().await;
                let recording = catalogue_summary(&location, &summary);
                let _ = services
                    .close_row(PendingClose {
                        id,
                        ended_at: Utc::now(),
                        outcome: Outcome::Failed,
                        recording,
                    })
                    .await;
            });
        }
    }
}

/// What the catalogue records of a recording once its writer has finished (or failed).
fn catalogue_summary(
    location: &str,
    summary: &std::result::Result<recorder::RecordingSummary, recorder::WriteError>,
) -> recorder::catalogue::RecordingSummary {
    match summary {
        Ok(s) => recorder::catalogue::RecordingSummary {
            location: s.location.clone(),
            state: recorder::catalogue::RecordingState::Complete,
            size: s.size,
            hash: Some(s.final_hash.clone()),
        },
        Err(_) => recorder::catalogue::RecordingSummary {
            location: location.to_owned(),
            state: recorder::catalogue::RecordingState::Incomplete,
            size: std::fs::metadata(location).map(|m| m.len()).unwrap_or(0),
            hash: None,
        },
    }
}
