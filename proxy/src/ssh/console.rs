//! Console backends: where a text console session's bytes go upstream.
//!
//! - Serial: raw TCP to the hypervisor's serial port (QEMU `-serial tcp:…,server`).
//! - SSH: a russh client to the hypervisor's SSH console (running `console_command`, e.g.
//!   `virsh console {vm}`) or to a physical server's own sshd, with a PTY of the client's size.
//!   The upstream host key is pinned on first use in the shared pin store ([`crate::pins`]);
//!   a changed key refuses the connection.
//!
//! Each backend runs as one task bridged to the session actor by two bounded channels, so the
//! actor treats every backend the same and backpressure reaches the socket.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use russh::ChannelMsg;
use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, trace};

use crate::pins::PinStore;
use recorder::catalogue::PinCheck;

/// Output chunks buffered between a backend and the session actor. Small: a full queue makes
/// the backend stop reading its socket, which is the backpressure we want.
const OUTPUT_QUEUE: usize = 32;
/// Input messages buffered toward a backend.
const INPUT_QUEUE: usize = 32;
/// Largest read from a serial socket at once. Held by every serial session, idle or not, so
/// kept small: a serial line brings a few KiB per second at most.
const SERIAL_READ: usize = 4 * 1024;
/// How long dialling and logging in to a console may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Credentials Sekisho injects toward an SSH console. Debug hides the password.
#[derive(Clone)]
pub enum UpstreamAuth {
    /// A password.
    Password(policy::Secret<String>),
    /// A private key file (OpenSSH format, no passphrase).
    Key(PathBuf),
}

impl std::fmt::Debug for UpstreamAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UpstreamAuth::Password(_) => f.write_str("Password(<secret>)"),
            UpstreamAuth::Key(p) => write!(f, "Key({})", p.display()),
        }
    }
}

/// Where and how to reach a console.
#[derive(Debug, Clone)]
pub enum Route {
    /// Raw TCP serial console.
    Serial {
        /// `host:port`.
        endpoint: String,
    },
    /// SSH console (hypervisor) or a physical server's sshd.
    Ssh {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
        /// Upstream user name.
        username: String,
        /// Password or key.
        auth: UpstreamAuth,
        /// Command to run instead of a shell (`{vm}` already replaced).
        command: Option<String>,
    },
}

impl Route {
    /// Short description for logs and messages (no secrets).
    pub fn describe(&self) -> String {
        match self {
            Route::Serial { endpoint } => format!("serial console {endpoint}"),
            Route::Ssh {
                host,
                port,
                username,
                command,
                ..
            } => match command {
                Some(c) => format!("ssh console {username}@{host}:{port} ({c})"),
                None => format!("ssh {username}@{host}:{port}"),
            },
        }
    }
}

/// The client's terminal, passed on to the console.
#[derive(Debug, Clone)]
pub struct Pty {
    /// `TERM`.
    pub term: String,
    /// Columns.
    pub cols: u32,
    /// Rows.
    pub rows: u32,
}

/// Toward a console.
#[derive(Debug)]
pub enum ConsoleInput {
    /// Keys.
    Data(Bytes),
    /// The client's window changed.
    Resize {
        /// Columns.
        cols: u32,
        /// Rows.
        rows: u32,
    },
}

/// A connected console: output arrives on `output` (closed when the console ends), input goes
/// to `input` (dropping it ends the backend).
#[derive(Debug)]
pub struct ConsoleIo {
    /// Console output.
    pub output: mpsc::Receiver<Bytes>,
    /// Keys and resizes.
    pub input: mpsc::Sender<ConsoleInput>,
    /// Set by the backend before it closes `output` because the console went away.
    lost: Arc<OnceLock<String>>,
}

impl ConsoleIo {
    /// Once `output` is closed: why the console went away, or `None` when it ended normally
    /// (the shell or console command exited).
    pub fn lost(&self) -> Option<&str> {
        self.lost.get().map(String::as_str)
    }
}

/// Why a console could not be reached.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    /// TCP connect failed or timed out.
    #[error("cannot connect to {what}: {error}")]
    Connect {
        /// Which console.
        what: String,
        /// Why.
        error: String,
    },
    /// The upstream SSH host key differs from the pinned one.
    #[error(
        "the host key of {endpoint} ({presented}) differs from the one pinned on first use \
         ({pinned}); refusing to connect"
    )]
    HostKeyChanged {
        /// `host:port`.
        endpoint: String,
        /// The fingerprint of the key presented now.
        presented: String,
        /// The fingerprint that stays pinned.
        pinned: String,
    },
    /// The pin store could not be consulted, so the host key was not compared with anything.
    #[error("cannot check the host key of {endpoint} against its pin: {error}")]
    PinStore {
        /// `host:port`.
        endpoint: String,
        /// Why.
        error: String,
    },
    /// Upstream authentication failed.
    #[error("the console at {0} did not accept Sekisho's credential")]
    AuthFailed(String),
    /// The private key could not be loaded.
    #[error("cannot load the private key {path}: {error}")]
    Key {
        /// The key file.
        path: String,
        /// Why.
        error: String,
    },
    /// An SSH protocol error after connecting.
    #[error("ssh console {what}: {error}")]
    Ssh {
        /// Which console.
        what: String,
        /// Why.
        error: String,
    },
}

/// Connects `route`, with the client's terminal `pty`; `pins` holds the SSH host keys.
pub async fn connect(route: &Route, pty: &Pty, pins: &PinStore) -> Result<ConsoleIo, ConsoleError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connect_inner(route, pty, pins)).await {
        Ok(r) => r,
        Err(_) => Err(ConsoleError::Connect {
            what: route.describe(),
            error: "timed out".to_owned(),
        }),
    }
}

async fn connect_inner(
    route: &Route,
    pty: &Pty,
    pins: &PinStore,
) -> Result<ConsoleIo, ConsoleError> {
    match route {
        Route::Serial { endpoint } => {
            let stream =
                TcpStream::connect(endpoint.as_str())
                    .await
                    .map_err(|e| ConsoleError::Connect {
                        what: route.describe(),
                        error: e.to_string(),
                    })?;
            let _ = stream.set_nodelay(true);
            Ok(spawn_serial(stream))
        }
        Route::Ssh {
            host,
            port,
            username,
            auth,
            command,
        } => connect_ssh(host, *port, username, auth, command.as_deref(), pty, pins).await,
    }
}

fn spawn_serial(stream: TcpStream) -> ConsoleIo {
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(OUTPUT_QUEUE);
    let (in_tx, mut in_rx) = mpsc::channel::<ConsoleInput>(INPUT_QUEUE);
    let lost = Arc::new(OnceLock::new());
    let lost_by_backend = Arc::clone(&lost);
    tokio::spawn(async move {
        let (rd, mut wr) = stream.into_split();
        // A serial line has no logout: the port closes only when the VM or its hypervisor
        // process goes away.
        let gone = |why: String| {
            let _ = lost_by_backend.set(why);
        };
        loop {
            tokio::select! {
                ready = rd.readable() => {
                    if let Err(e) = ready {
                        gone(format!("the serial console failed: {e}"));
                        break;
                    }
                    // The read buffer lives on the stack only while data is read, so an idle
                    // console (most of the thousands an instance holds) keeps none.
                    let chunk = {
                        let mut buf = [0u8; SERIAL_READ];
                        match rd.try_read(&mut buf) {
                            Ok(0) => { gone("the serial console closed the connection".to_owned()); break }
                            Ok(n) => Bytes::copy_from_slice(buf.get(..n).unwrap_or_default()),
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                            Err(e) => { gone(format!("the serial console failed: {e}")); break }
                        }
                    };
                    trace!(len = chunk.len(), "Serial console output");
                    if out_tx.send(chunk).await.is_err() {
                        break;
                    }
                }
                input = in_rx.recv() => match input {
                    Some(ConsoleInput::Data(bytes)) => {
                        if let Err(e) = wr.write_all(&bytes).await {
                            gone(format!("the serial console failed: {e}"));
                            break;
                        }
                    }
                    // A serial line has no window size.
                    Some(ConsoleInput::Resize { .. }) => {}
                    None => break,
                },
            }
        }
        debug!("Serial console closed");
    });
    ConsoleIo {
        output: out_rx,
        input: in_tx,
        lost,
    }
}

/// What the host key check saw, for the error after russh gives up on the connection.
#[derive(Debug, Default)]
enum KeyVerdict {
    #[default]
    Unchecked,
    Accepted,
    Changed {
        presented: String,
        pinned: String,
    },
    StoreFailed(String),
}

/// russh client handler: compares the server's host key with its pin.
struct Pinning {
    pins: PinStore,
    endpoint: String,
    verdict: Arc<Mutex<KeyVerdict>>,
}

impl Pinning {
    fn note(&self, verdict: KeyVerdict) {
        if let Ok(mut v) = self.verdict.lock() {
            *v = verdict;
        }
    }
}

impl client::Handler for Pinning {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false); // certificates: no CA configured, refuse
        };
        match self.pins.check_host_key(&self.endpoint, key).await {
            Ok(PinCheck::FirstUse | PinCheck::Match) => {
                self.note(KeyVerdict::Accepted);
                Ok(true)
            }
            Ok(PinCheck::Changed { pinned }) => {
                self.note(KeyVerdict::Changed {
                    presented: crate::pins::host_key_fingerprint(key),
                    pinned,
                });
                Ok(false)
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), endpoint = %self.endpoint, "Cannot check the host key; refusing");
                self.note(KeyVerdict::StoreFailed(format!("{e:#}")));
                Ok(false)
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn connect_ssh(
    host: &str,
    port: u16,
    username: &str,
    auth: &UpstreamAuth,
    command: Option<&str>,
    pty: &Pty,
    pins: &PinStore,
) -> Result<ConsoleIo, ConsoleError> {
    let what = format!("{host}:{port}");
    let ssh_err = |e: russh::Error| ConsoleError::Ssh {
        what: what.clone(),
        error: e.to_string(),
    };
    let verdict = Arc::new(Mutex::new(KeyVerdict::Unchecked));
    let endpoint = crate::pins::endpoint(host, port);
    let handler = Pinning {
        pins: pins.clone(),
        endpoint: endpoint.clone(),
        verdict: Arc::clone(&verdict),
    };
    let config = Arc::new(client::Config {
        nodelay: true,
        inactivity_timeout: None,
        ..Default::default()
    });
    let mut handle = match client::connect(config, (host, port), handler).await {
        Ok(h) => h,
        Err(e) => {
            let seen = verdict.lock().map(|mut v| std::mem::take(&mut *v));
            match seen {
                Ok(KeyVerdict::Changed { presented, pinned }) => {
                    return Err(ConsoleError::HostKeyChanged {
                        endpoint,
                        presented,
                        pinned,
                    });
                }
                Ok(KeyVerdict::StoreFailed(error)) => {
                    return Err(ConsoleError::PinStore { endpoint, error });
                }
                _ => {}
            }
            return Err(match e {
                russh::Error::IO(io) => ConsoleError::Connect {
                    what: what.clone(),
                    error: io.to_string(),
                },
                other => ssh_err(other),
            });
        }
    };
    let result = match auth {
        UpstreamAuth::Password(pw) => handle
            .authenticate_password(username, pw.expose().as_str())
            .await
            .map_err(ssh_err)?,
        UpstreamAuth::Key(path) => {
            let key = russh::keys::load_secret_key(path, None).map_err(|e| ConsoleError::Key {
                path: path.display().to_string(),
                error: e.to_string(),
            })?;
            let hash = handle
                .best_supported_rsa_hash()
                .await
                .map_err(ssh_err)?
                .flatten();
            handle
                .authenticate_publickey(username, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
                .await
                .map_err(ssh_err)?
        }
    };
    if !result.success() {
        return Err(ConsoleError::AuthFailed(what));
    }
    let channel = handle.channel_open_session().await.map_err(ssh_err)?;
    channel
        .request_pty(false, &pty.term, pty.cols, pty.rows, 0, 0, &[])
        .await
        .map_err(ssh_err)?;
    match command {
        Some(c) => channel.exec(false, c).await.map_err(ssh_err)?,
        None => channel.request_shell(false).await.map_err(ssh_err)?,
    }

    let (out_tx, out_rx) = mpsc::channel::<Bytes>(OUTPUT_QUEUE);
    let (in_tx, mut in_rx) = mpsc::channel::<ConsoleInput>(INPUT_QUEUE);
    let lost = Arc::new(OnceLock::new());
    let lost_by_backend = Arc::clone(&lost);
    tokio::spawn(async move {
        // Keep the connection alive as long as the channel.
        let _handle = handle;
        let (mut read, write) = channel.split();
        loop {
            tokio::select! {
                msg = read.wait() => match msg {
                    Some(ChannelMsg::Data { data }) | Some(ChannelMsg::ExtendedData { data, .. }) => {
                        if out_tx.send(data).await.is_err() {
                            break;
                        }
                    }
                    Some(ChannelMsg::Eof) | Some(ChannelMsg::Close) => break,
                    // The transport ended without the channel closing: the server went away.
                    None => {
                        let _ = lost_by_backend
                            .set("the SSH connection to the console was cut".to_owned());
                        break;
                    }
                    Some(other) => trace!(?other, "SSH console message"),
                },
                input = in_rx.recv() => match input {
                    Some(ConsoleInput::Data(bytes)) => {
                        if write.data_bytes(bytes).await.is_err() {
                            break;
                        }
                    }
                    Some(ConsoleInput::Resize { cols, rows }) => {
                        let _ = write.window_change(cols, rows, 0, 0).await;
                    }
                    None => {
                        let _ = write.close().await;
                        break;
                    }
                },
            }
        }
        debug!("SSH console closed");
    });
    Ok(ConsoleIo {
        output: out_rx,
        input: in_tx,
        lost,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_auth_debug_hides_password() {
        let a = UpstreamAuth::Password(policy::Secret::new("hunter2".to_owned()));
        assert_eq!(format!("{a:?}"), "Password(<secret>)");
    }
}
