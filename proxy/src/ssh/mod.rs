//! SSH front door and text-console mediation.
//!
//! - `ssh USER+TARGET@bastion` lands on TARGET's text console (a VM's serial or hypervisor SSH
//!   console, or a physical server's own sshd); `ssh USER@bastion` shows a menu of targets.
//! - Authentication: password (argon2) or public key, then the matrix card through
//!   keyboard-interactive when the user has one ([`crate::auth`]).
//! - Nothing but the terminal leaves a session: SFTP/SCP, port/agent/X11 forwarding and other
//!   commands are refused, told to the user, and written to the catalogue and the recording.
//!
//! Layout: [`handler`] turns russh callbacks into events; [`session`] is one actor per
//! connection (the only place that talks to [`Services`]); [`console`] dials the backends;
//! [`menu`] is sans-IO text handling.

pub mod console;
pub mod events;
pub mod handler;
pub mod menu;
pub mod session;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use russh::keys::{Algorithm, PrivateKey};
use russh::{Disconnect, MethodKind, MethodSet};
use tokio::sync::{Semaphore, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::auth::matrix_card::MatrixGuard;
use crate::services::Services;

/// File name of the SSH host key in the data directory.
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";
/// How long sessions get to say goodbye and seal their recordings on shutdown before the
/// transport is cut.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// State shared by every connection of the listener.
pub struct Shared {
    /// Matrix card challenges and lockouts (in memory, per user), shared with the web login.
    pub matrix: Arc<MatrixGuard>,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
}

/// Loads the host key at `path`, creating an ed25519 key (mode 0600) on first start.
pub fn load_or_create_host_key(path: &Path) -> Result<PrivateKey> {
    if path.exists() {
        return russh::keys::load_secret_key(path, None)
            .with_context(|| format!("cannot load the SSH host key {}", path.display()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let key = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)
        .context("cannot generate the SSH host key")?;
    let text = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .context("cannot encode the SSH host key")?;
    crate::tls::write_private(path, text.as_bytes())?;
    info!(path = %path.display(), "Created the SSH host key");
    Ok(key)
}

/// The russh server configuration.
fn config(host_key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        server_id: russh::SshId::Standard("SSH-2.0-Sekisho".into()),
        // Keyboard-interactive (the matrix card) is offered after the first factor only.
        methods: MethodSet::from(&[MethodKind::PublicKey, MethodKind::Password][..]),
        auth_rejection_time: Duration::from_millis(500),
        // OpenSSH probes with "none" first; answering it at once costs nothing.
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        max_auth_attempts: 6,
        // Console sessions may idle for long; keepalives find dead peers instead.
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: 4,
        // Keystrokes are small: do not let Nagle delay them.
        nodelay: true,
        ..Default::default()
    }
}

/// Where the host key lives: `<data dir>/ssh_host_ed25519_key`.
pub fn host_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(HOST_KEY_FILE)
}

/// Runs the SSH front door on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    services: Arc<Services>,
    shutdown: CancellationToken,
) -> Result<()> {
    let key = load_or_create_host_key(&host_key_path(services.data_dir()))?;
    let config = Arc::new(config(key));
    let shared = Arc::new(Shared {
        matrix: crate::auth::matrix_card::process_guard(),
        shutdown: shutdown.clone(),
    });
    // `[limits] ssh_connections`, authenticated or not.
    let slots = Arc::new(Semaphore::new(
        services.inventory().limits().ssh_connections as usize,
    ));
    info!(addr = ?listener.local_addr().ok(), "SSH front door listening");
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(error = %e, "SSH accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            warn!(client_ip = %peer.ip(), "Too many SSH connections; refusing one");
            continue;
        };
        // Held until the connection authenticates (or ends).
        let pre_auth = match crate::preauth::gate(crate::preauth::Door::Ssh).enter(peer.ip()) {
            Ok(p) => p,
            Err(full) => {
                debug!(client_ip = %peer.ip(), reason = %full, "SSH connection closed before authentication");
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        info!(client_ip = %peer.ip(), "SSH connection");
        // One login deadline from accept, whatever stage the client stalls in.
        let deadline = tokio::time::Instant::now() + services.inventory().auth().preauth_timeout;
        // A second handle on the socket, to cut a client that ignores our disconnect: russh's
        // own task keeps a connection in key exchange open after its future is dropped.
        let (stream, cutter) = match duplicate(stream) {
            Ok(pair) => pair,
            Err(e) => {
                warn!(error = %e, "Cannot set up an SSH connection; refusing it");
                continue;
            }
        };
        let (authenticated_tx, authenticated_rx) = oneshot::channel();
        let handler = handler::ConnectionHandler::new(
            Arc::clone(&services),
            Arc::clone(&shared),
            peer,
            authenticated_tx,
        );
        let config = Arc::clone(&config);
        let shutdown = shutdown.clone();
        services.tasks().spawn(async move {
            let _slot = slot;
            let session = match tokio::time::timeout_at(
                deadline,
                russh::server::run_stream(config, stream, handler),
            )
            .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    debug!(error = %e, "SSH handshake failed");
                    return;
                }
                Err(_) => {
                    debug!("SSH handshake timed out");
                    return;
                }
            };
            let handle = session.handle();
            tokio::pin!(session);
            // Ends with the cutter when the login deadline passes first.
            let auth_timer = async move {
                if let Ok(Ok(())) = tokio::time::timeout_at(deadline, authenticated_rx).await {
                    // Authenticated: no longer counts against the pre-authentication caps, and
                    // the second descriptor on the socket goes (thousands of held sessions
                    // would otherwise each keep one).
                    drop(pre_auth);
                    drop(cutter);
                    return std::future::pending().await;
                }
                cutter
            };
            tokio::select! {
                r = &mut session => {
                    if let Err(e) = r {
                        debug!(error = %e, "SSH connection ended with an error");
                    }
                }
                cutter = auth_timer => {
                    info!(client_ip = %peer.ip(), "SSH authentication timed out");
                    let _ = handle
                        .disconnect(Disconnect::ByApplication, "authentication timed out".to_owned(), String::new())
                        .await;
                    if tokio::time::timeout(Duration::from_secs(1), &mut session).await.is_err() {
                        let _ = cutter.shutdown(std::net::Shutdown::Both);
                    }
                }
                _ = shutdown.cancelled() => {
                    // The session actor tells the user and seals the recording; then cut.
                    if tokio::time::timeout(SHUTDOWN_GRACE, &mut session).await.is_err() {
                        let _ = handle
                            .disconnect(Disconnect::ByApplication, "Sekisho is shutting down".to_owned(), String::new())
                            .await;
                    }
                }
            }
        });
    }
    Ok(())
}

/// Splits an accepted connection into the stream russh runs on and a handle that can shut the
/// same socket down.
fn duplicate(
    stream: tokio::net::TcpStream,
) -> std::io::Result<(tokio::net::TcpStream, std::net::TcpStream)> {
    let std_stream = stream.into_std()?;
    let cutter = std_stream.try_clone()?;
    Ok((tokio::net::TcpStream::from_std(std_stream)?, cutter))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn host_key_is_created_once_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = host_key_path(&dir.path().join("data"));
        let a = load_or_create_host_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = load_or_create_host_key(&path).unwrap();
        assert_eq!(a.public_key().key_data(), b.public_key().key_data());
    }
}
