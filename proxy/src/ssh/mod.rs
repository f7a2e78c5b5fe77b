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
pub mod handler;
pub mod menu;
pub mod session;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use russh::keys::{Algorithm, PrivateKey};
use russh::server::Server as _;
use russh::{MethodKind, MethodSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::auth::matrix_card::MatrixGuard;
use crate::services::Services;

/// File name of the SSH host key in the data directory.
pub const HOST_KEY_FILE: &str = "ssh_host_ed25519_key";

/// State shared by every connection of the listener.
pub struct Shared {
    /// Matrix card challenges and lockouts (in memory, per user).
    pub matrix: MatrixGuard,
    /// Cancelled on shutdown.
    pub shutdown: CancellationToken,
}

struct Listener {
    services: Arc<Services>,
    shared: Arc<Shared>,
}

impl russh::server::Server for Listener {
    type Handler = handler::ConnectionHandler;

    fn new_client(&mut self, peer: Option<std::net::SocketAddr>) -> Self::Handler {
        let peer = peer.unwrap_or_else(|| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
        info!(client_ip = %peer.ip(), "SSH connection");
        handler::ConnectionHandler::new(Arc::clone(&self.services), Arc::clone(&self.shared), peer)
    }

    fn handle_session_error(&mut self, error: russh::Error) {
        tracing::debug!(error = %error, "SSH connection ended with an error");
    }
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
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        f.write_all(text.as_bytes())?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
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
        matrix: MatrixGuard::new(),
        shutdown: shutdown.clone(),
    });
    let mut server = Listener { services, shared };
    let addr = listener.local_addr().ok();
    info!(?addr, "SSH front door listening");
    let running = server.run_on_socket(config, &listener);
    let handle = running.handle();
    tokio::select! {
        r = running => {
            if let Err(e) = &r {
                warn!(error = %e, "SSH listener failed");
            }
            r.context("ssh listener")?;
        }
        _ = shutdown.cancelled() => {
            handle.shutdown("Sekisho is shutting down".to_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
