//! `sekisho serve`: start every listener and run until SIGTERM/SIGINT; SIGHUP reloads the
//! configuration.
//!
//! Start-up order matters for "fail closed": the catalogue, the signing key and the recording
//! directory must all work before a single listener accepts a connection.
//!
//! Shutdown: stop accepting, tell every live session to end (outcome `shutdown`, the reason
//! written into its recording), wait for their recordings to be sealed and their rows closed
//! (at most [`SHUTDOWN_GRACE`]), then exit 0. A session still open after that is left to
//! crash recovery at the next start, which seals it and marks it interrupted.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::services::{ErrorKind, Services, ServicesConfig};

/// How long shutdown waits for live sessions to seal their recordings.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

pub fn run(config: Option<PathBuf>) -> Result<ExitCode> {
    let config = super::load_config_or_default(config.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("sekisho")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: super::LoadedConfig) -> Result<()> {
    let config_path = config.path.clone();
    let inventory = config.inventory;
    match &config.path {
        Some(p) => info!(config = %p.display(), "Starting"),
        None => info!("Starting with built-in defaults"),
    }
    crate::fd_limit::raise_for(inventory.limits()).context("cannot read the open-file limit")?;
    let storage = inventory.storage().clone();
    let data_dir = data_dir_of(&storage.signing_key);
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;

    let secrets = crate::secrets::load(&storage.secrets)?;
    if secrets.is_none() {
        warn!(path = %storage.secrets.display(), "No secrets file: connections that need a credential will be refused");
    }
    let (signing_key, created) = recorder::signing::load_or_create(&storage.signing_key)
        .with_context(|| {
            format!(
                "cannot load or create the signing key {}",
                storage.signing_key.display()
            )
        })?;
    let public = signing_key.verifying_key();
    info!(
        public_key = %recorder::signing::public_key_hex(&public),
        fingerprint = %recorder::signing::fingerprint(&public),
        created,
        "Recording signing key ready"
    );
    let instance = instance_id(&data_dir)?;
    let catalogue = recorder::catalogue::Catalogue::connect(&storage.database)
        .await
        .context("cannot open the catalogue")?;
    if let Some(dir) = storage.recordings.local_dir() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the recordings directory {}", dir.display()))?;
    }
    let recordings = crate::recordings::Recordings::open(&storage, secrets.as_ref())?;
    // What the spool of an object store still holds from the last run is sealed before
    // anything else is written, so the catalogue's recovery below finds it sealed.
    let recovered = match recordings.s3() {
        Some(s3) => s3
            .recover_spool(&signing_key)
            .await
            .context("cannot recover the recording spool")?,
        None => Vec::new(),
    };

    recover_interrupted(&catalogue, &instance, &signing_key, &recordings, recovered).await?;
    if let Some(s3) = recordings.s3() {
        // Uploads what the spool holds (now, then every ship interval while the store is
        // down). It ends when the store is dropped, at exit.
        drop(s3.spawn_drainer());
        info!(store = %s3.url(), "Recordings go to the object store");
    }
    catalogue
        .heartbeat(&instance, chrono::Utc::now())
        .await
        .context("cannot register this instance in the catalogue")?;
    catalogue
        .register_signer(
            &instance,
            &recorder::signing::public_key_hex(&public),
            chrono::Utc::now(),
        )
        .await
        .context("cannot register this instance's recording key in the catalogue")?;
    let adopted = catalogue
        .adopt_into_empty_ledger()
        .await
        .context("cannot put the recordings sealed so far into the ledger")?;
    if adopted > 0 {
        info!(
            recordings = adopted,
            "Recordings sealed before the ledger existed were adopted into it"
        );
    }
    // Pins kept by earlier versions in the data directory join the shared store before any
    // target is dialled, so no key pinned then is trusted afresh now.
    crate::pins::import_legacy_files(
        &crate::pins::PinStore::new(catalogue.clone(), instance.clone()),
        &data_dir,
        &inventory,
    )
    .await
    .context("cannot move the pins of the data directory into the catalogue")?;

    let tls = match crate::tls::acceptor(&inventory.tls().cert, &inventory.tls().key) {
        Ok(a) => Some(a),
        Err(e) => {
            error!(error = %format!("{e:#}"), "TLS identity unavailable: RDP and web listeners stay off");
            None
        }
    };

    let listen = *inventory.listen();
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let services = Services::new(ServicesConfig {
        inventory,
        secrets,
        catalogue,
        recordings,
        signing_key,
        instance,
        data_dir,
        tls,
        shutdown: shutdown.clone(),
        tasks: tasks.clone(),
    });

    let ssh = bind("ssh", listen.ssh).await?;
    let rdp = bind("rdp", listen.rdp).await?;
    let vnc = bind("vnc", listen.vnc).await?;
    let web = bind("web", listen.web).await?;
    let metrics = match listen.metrics {
        Some(addr) => Some(bind("metrics", addr).await?),
        None => None,
    };

    // Terminal sessions sealed before Find indexed them are indexed in the background,
    // a bounded number per start.
    crate::services::index_unindexed(Arc::clone(&services));

    let mut listeners = tokio::task::JoinSet::new();
    listeners.spawn(crate::ssh::serve(
        ssh,
        Arc::clone(&services),
        shutdown.clone(),
    ));
    listeners.spawn(crate::rdp::serve(
        rdp,
        Arc::clone(&services),
        shutdown.clone(),
    ));
    listeners.spawn(crate::vnc::serve(
        vnc,
        Arc::clone(&services),
        shutdown.clone(),
    ));
    listeners.spawn(crate::web::serve(
        web,
        metrics,
        Arc::clone(&services),
        shutdown.clone(),
    ));
    let supervisor = tokio::spawn(Arc::clone(&services).supervise());
    let retention = tokio::spawn(Arc::clone(&services).retain());
    let checkpoints = tokio::spawn(Arc::clone(&services).checkpoint_ledger());
    let door_sync = tokio::spawn(Arc::clone(&services).share_door_events());
    // Installed before "Ready": SIGHUP's default action would end the process.
    let reloads = tokio::spawn(reload_on_hangup(
        Arc::clone(&services),
        config_path,
        shutdown.clone(),
    )?);
    info!("Ready");

    let mut failed = None;
    tokio::select! {
        signal = shutdown_signal() => info!(signal, "Shutting down"),
        Some(result) = listeners.join_next() => {
            let error = match result {
                Ok(Ok(())) => anyhow::anyhow!("a listener stopped unexpectedly"),
                Ok(Err(e)) => e,
                Err(e) => anyhow::anyhow!("a listener panicked: {e}"),
            };
            error!(error = %format!("{error:#}"), "Listener failed; shutting down");
            failed = Some(error);
        }
    }
    // The listeners watch the token and stop accepting; the supervisor tells every live
    // session to end with reason shutdown.
    shutdown.cancel();
    let _ = supervisor.await;
    let _ = retention.await;
    let _ = checkpoints.await;
    let _ = door_sync.await;
    let _ = reloads.await;
    listeners.shutdown().await;
    tasks.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait())
        .await
        .is_err()
    {
        warn!(
            grace_s = SHUTDOWN_GRACE.as_secs(),
            "Some sessions did not finish sealing in time; the next start seals them and marks them interrupted"
        );
    } else {
        info!("Every live session ended and its recording sealed");
    }
    // After the last seal, so the checkpoint covers every recording this run made.
    if let Err(e) = services.sign_ledger_checkpoint().await {
        warn!(error = %format!("{e:#}"), "Cannot sign the shutdown ledger checkpoint");
    }
    info!("Stopped");
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Reloads the configuration on every SIGHUP until shutdown. Returns the task to spawn, so
/// that the signal handler is in place before the caller announces it is ready.
fn reload_on_hangup(
    services: Arc<Services>,
    path: Option<PathBuf>,
    shutdown: CancellationToken,
) -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    Ok(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                got = hup.recv() => if got.is_none() { return },
            }
            match &path {
                Some(p) => {
                    reload(&services, p).await;
                }
                None => warn!(
                    "SIGHUP: serve started with built-in defaults (no configuration file); nothing to reload"
                ),
            }
        }
    })
}

/// Re-reads and validates the configuration and its secrets file. Valid: new decisions use
/// it at once and live sessions are re-checked against it. Invalid: the running
/// configuration stays, with an error in the log and an audit event in the catalogue.
pub async fn reload(services: &Services, path: &Path) -> ReloadOutcome {
    info!(config = %path.display(), "SIGHUP: reloading the configuration");
    // The catalogue gets the configuration's errors but not the secrets file's: a parse
    // error there can quote a value, and the catalogue is read by more people than the log.
    let loaded = match super::load_config(path) {
        Ok(c) => match crate::secrets::load(&c.inventory.storage().secrets) {
            Ok(secrets) => Ok((c.inventory, secrets)),
            Err(e) => Err((
                format!("{e:#}"),
                format!(
                    "secrets file {} is invalid (details in the instance's log)",
                    c.inventory.storage().secrets.display()
                ),
            )),
        },
        Err(e) => Err((format!("{e:#}"), format!("{e:#}"))),
    };
    let (inventory, secrets) = match loaded {
        Ok(v) => v,
        Err((error, for_catalogue)) => {
            services.metrics().error(ErrorKind::Reload);
            // The audit event goes in first: whoever sees the log line can find it.
            audit(
                services,
                recorder::catalogue::event_kind::CONFIG_RELOAD_FAILED,
                format!(
                    "{}: reload refused, running configuration kept: {for_catalogue}",
                    path.display()
                ),
            )
            .await;
            error!(config = %path.display(), error = %error, "Configuration reload refused; the running configuration stays in force");
            return ReloadOutcome::Refused(error);
        }
    };
    let old = services.inventory();
    if secrets.is_none() {
        warn!(path = %inventory.storage().secrets.display(), "No secrets file: connections that need a credential will be refused");
    }
    if let Some(secrets) = &secrets {
        for (credential, referrer) in inventory.missing_credentials(secrets) {
            warn!(credential = %credential, referrer = %referrer, "Credential not in the secrets file: connections that need it will be refused");
        }
    }
    let restart = restart_needed(&old, &inventory);
    for key in &restart {
        warn!(key = %key, "Changed in the configuration, but takes effect only after a restart");
    }
    let summary = format!(
        "{}: reloaded ({} targets, {} users, {} contractors, {} contracts){}",
        path.display(),
        inventory.targets().len(),
        inventory.users().len(),
        inventory.contractors().len(),
        inventory.contracts().len(),
        if restart.is_empty() {
            String::new()
        } else {
            format!("; restart needed for: {}", restart.join(", "))
        }
    );
    services.replace_config(inventory, secrets);
    audit(
        services,
        recorder::catalogue::event_kind::CONFIG_RELOADED,
        summary.clone(),
    )
    .await;
    info!(restart_needed = ?restart, "{summary}");
    ReloadOutcome::Applied { restart }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The new configuration is in force; these keys changed but need a restart.
    Applied { restart: Vec<String> },
    /// The configuration was invalid (the error); the old one stays.
    Refused(String),
}

/// Keys whose new value a running instance cannot take: its sockets, catalogue, storage,
/// signing key and TLS identity were opened at start.
fn restart_needed(old: &::policy::Inventory, new: &::policy::Inventory) -> Vec<String> {
    let mut keys = Vec::new();
    let (o, n) = (old.listen(), new.listen());
    for (key, a, b) in [
        ("listen.rdp", o.rdp, n.rdp),
        ("listen.ssh", o.ssh, n.ssh),
        ("listen.vnc", o.vnc, n.vnc),
        ("listen.web", o.web, n.web),
    ] {
        if a != b {
            keys.push(key.to_owned());
        }
    }
    if o.metrics != n.metrics {
        keys.push("listen.metrics".to_owned());
    }
    let (o, n) = (old.storage(), new.storage());
    if o.database != n.database {
        keys.push("storage.database".to_owned());
    }
    if o.recordings != n.recordings {
        keys.push("storage.recordings".to_owned());
    }
    if o.signing_key != n.signing_key {
        keys.push("storage.signing_key".to_owned());
    }
    if old.tls() != new.tls() {
        keys.push("tls".to_owned());
    }
    keys
}

async fn audit(services: &Services, kind: &str, detail: String) {
    let event = recorder::catalogue::AuditEvent {
        at: chrono::Utc::now(),
        instance: services.instance().clone(),
        kind: kind.to_owned(),
        detail: Some(detail),
        session_id: None,
    };
    if let Err(e) = services.catalogue().audit_event(&event).await {
        warn!(error = %e, kind, "Cannot write the audit event");
    }
}

/// The data directory: where the signing key lives (`data/` by default). Host keys, pinned
/// certificates and the instance id go beside it.
pub(crate) fn data_dir_of(signing_key: &Path) -> PathBuf {
    signing_key
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// This instance's stable identity, kept in `DATA/instance-id` so that after a crash the next
/// start knows which live sessions were its own.
pub(crate) fn instance_id(data_dir: &Path) -> Result<recorder::catalogue::InstanceId> {
    let path = data_dir.join("instance-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = recorder::catalogue::InstanceId::new(uuid::Uuid::now_v7().to_string())
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            std::fs::write(&path, format!("{id}\n"))
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Sessions this instance left live when it last stopped (a crash, `kill -9`): seal what their
/// recordings hold and mark them interrupted. A recording in an object store was sealed from
/// the spool already (`recovered`); one the spool no longer holds is sealed from the segments
/// that reached the store. Sessions another instance already marked interrupted meanwhile
/// (this one had stopped beating) have their recordings sealed here, where they are.
async fn recover_interrupted(
    catalogue: &recorder::catalogue::Catalogue,
    instance: &recorder::catalogue::InstanceId,
    key: &recorder::RecordingKey,
    recordings: &crate::recordings::Recordings,
    mut recovered: Vec<recorder::storage::s3::Recovered>,
) -> Result<()> {
    let mut left = catalogue
        .live_sessions(instance)
        .await
        .context("cannot read sessions left live")?;
    let marked_elsewhere = catalogue
        .interrupted_unsealed(instance)
        .await
        .context("cannot read interrupted sessions")?;
    left.extend(marked_elsewhere.into_iter().filter(|s| {
        s.recording
            .as_deref()
            .is_some_and(|l| l.starts_with("s3://") || Path::new(l).exists())
    }));
    for session in left {
        let sealed = match session.recording.as_deref() {
            None => None,
            Some(l) if l.starts_with("s3://") => {
                let from_spool = recovered
                    .iter()
                    .position(|r| r.location == l)
                    .map(|i| recovered.swap_remove(i));
                let sealed = match (from_spool, recordings.s3()) {
                    (Some(r), _) => r
                        .sealed
                        .unwrap_or(Err(recorder::SealError::AlreadySealed("intact"))),
                    (None, Some(s3)) => s3.seal_from_store(l, key).await,
                    (None, None) => Err(recorder::SealError::Io(format!(
                        "{l} is in an object store, but storage.recordings is a directory"
                    ))),
                };
                Some((l, sealed))
            }
            Some(l) => Some((l, recorder::seal_file(Path::new(l), key))),
        };
        if let Some((_, Err(e))) = &sealed {
            warn!(session = %session.id, error = %e, "Cannot seal an interrupted recording");
        }
        crate::recovery::record_interruption(
            catalogue,
            &session,
            sealed.as_ref().map(|(l, s)| (*l, s)),
        )
        .await?;
        info!(session = %session.id, "Interrupted session sealed and marked");
    }
    Ok(())
}

async fn bind(what: &str, addr: SocketAddr) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} ({what})"))?;
    info!(protocol = what, %addr, "Listening");
    Ok(listener)
}

async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        _ => {
            let _ = tokio::signal::ctrl_c().await;
            "SIGINT"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_needed_names_what_a_running_instance_cannot_take() {
        let base =
            "[listen]\nssh = \"127.0.0.1:12222\"\n[storage]\nrecordings = \"data/recordings\"\n";
        let old = ::policy::Inventory::from_toml(base, "a").unwrap();
        assert!(restart_needed(&old, &old).is_empty());
        let moved = base
            .replace("12222", "12223")
            .replace("data/recordings", "/srv/recordings");
        let new = ::policy::Inventory::from_toml(&format!("{moved}[tls]\ncert = \"x.pem\"\n"), "b")
            .unwrap();
        assert_eq!(
            restart_needed(&old, &new),
            ["listen.ssh", "storage.recordings", "tls"]
        );
        // Policy changes (users, contracts, retention) apply live.
        let live = ::policy::Inventory::from_toml(
            &format!("{base}[recording]\nretention_days = 30\n"),
            "c",
        )
        .unwrap();
        assert!(restart_needed(&old, &live).is_empty());
        let scraped = ::policy::Inventory::from_toml(
            &base.replace("[listen]\n", "[listen]\nmetrics = \"127.0.0.1:19090\"\n"),
            "d",
        )
        .unwrap();
        assert_eq!(restart_needed(&old, &scraped), ["listen.metrics"]);
    }
}
