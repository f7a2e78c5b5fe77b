//! `sekisho serve`: start every listener and run until SIGTERM/SIGINT.
//!
//! Start-up order matters for "fail closed": the catalogue, the signing key and the recording
//! directory must all work before a single listener accepts a connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::services::{Services, ServicesConfig};

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
    let inventory = config.inventory;
    match &config.path {
        Some(p) => info!(config = %p.display(), "Starting"),
        None => info!("Starting with built-in defaults"),
    }
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
    std::fs::create_dir_all(&storage.recordings).with_context(|| {
        format!(
            "cannot create the recordings directory {}",
            storage.recordings.display()
        )
    })?;
    let recordings = recorder::LocalDir::new(storage.recordings.clone());

    recover_interrupted(&catalogue, &instance, &signing_key).await?;
    catalogue
        .heartbeat(&instance, chrono::Utc::now())
        .await
        .context("cannot register this instance in the catalogue")?;

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
        Arc::clone(&services),
        shutdown.clone(),
    ));
    let supervisor = tokio::spawn(Arc::clone(&services).supervise());
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
    shutdown.cancel();
    let _ = supervisor.await;
    listeners.shutdown().await;
    tasks.close();
    if tokio::time::timeout(std::time::Duration::from_secs(10), tasks.wait())
        .await
        .is_err()
    {
        warn!("Some sessions did not finish sealing within 10 s");
    }
    info!("Stopped");
    match failed {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The data directory: where the signing key lives (`data/` by default). Host keys, pinned
/// certificates and the instance id go beside it.
fn data_dir_of(signing_key: &Path) -> PathBuf {
    signing_key
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// This instance's stable identity, kept in `DATA/instance-id` so that after a crash the next
/// start knows which live sessions were its own.
fn instance_id(data_dir: &Path) -> Result<recorder::catalogue::InstanceId> {
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
/// recordings hold and mark them interrupted.
async fn recover_interrupted(
    catalogue: &recorder::catalogue::Catalogue,
    instance: &recorder::catalogue::InstanceId,
    key: &recorder::RecordingKey,
) -> Result<()> {
    let left = catalogue
        .live_sessions(instance)
        .await
        .context("cannot read sessions left live")?;
    for session in left {
        let location = session.recording.clone();
        let sealed = location.as_deref().map(|l| {
            let sealed = recorder::seal_file(Path::new(l), key);
            if let Err(e) = &sealed {
                warn!(session = %session.id, error = %e, "Cannot seal an interrupted recording");
            }
            (l, sealed)
        });
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
