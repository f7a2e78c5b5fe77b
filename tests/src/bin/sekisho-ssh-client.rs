//! Headless SSH client for load: opens many interactive sessions (pty + shell) through
//! Sekisho's SSH front door from one process, waits in each for a line the server shows once
//! the session is up, and holds them all. One OpenSSH client per session would cost the
//! machine gigabytes at the session counts the SSH bench asks for; this costs a few KiB each.
//!
//! ```text
//! sekisho-ssh-client 127.0.0.1:2222 tanaka+web01 --key id_ed25519 --source 127.0.10.11 \
//!     --expect "this session is recorded" --sessions 5000 --hold 10
//! ```
//!
//! Output is one `key=value` line per event, for scripts: `up i=… n=…`, `ramped …`, `held …`,
//! `summary …`; errors go to stderr. The exit code is 0 when every asked-for session came up
//! and was still open at the end of the hold.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use russh::client;
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};

#[derive(Parser, Debug)]
#[command(about = "Headless SSH client that holds many interactive sessions, for load tests")]
struct Args {
    /// Sekisho's SSH front door (or any SSH server), HOST:PORT.
    addr: SocketAddr,
    /// User name; through Sekisho, `user+target` names the target.
    user: String,
    /// The private key to log in with (OpenSSH format, no passphrase).
    #[arg(long)]
    key: PathBuf,
    /// Connect from this local address (e.g. a VDI desktop's loopback alias).
    #[arg(long)]
    source: Option<IpAddr>,
    /// Text the server sends once a session is up; a session counts as up when it has come.
    #[arg(long)]
    expect: String,
    /// How many concurrent sessions to open.
    #[arg(long, default_value_t = 1)]
    sessions: u32,
    /// How many set-ups run at once during the ramp.
    #[arg(long, default_value_t = 8)]
    parallel: u32,
    /// Seconds to hold the sessions once all are up.
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Seconds allowed for each set-up (TCP connect to the expected text).
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
}

/// Accepts any host key: the bench measures load, not trust (Sekisho's host key is fresh
/// for every bench instance).
struct AnyHostKey;

impl client::Handler for AnyHostKey {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// One session up and held: the connection and its channel stay alive while this lives.
struct Held {
    _handle: client::Handle<AnyHostKey>,
    channel: russh::Channel<client::Msg>,
}

async fn open(args: &Args, key: Arc<russh::keys::PrivateKey>) -> Result<Held> {
    let socket = match args.addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    if let Some(source) = args.source {
        socket
            .bind(SocketAddr::new(source, 0))
            .with_context(|| format!("bind {source}"))?;
    }
    let stream = socket.connect(args.addr).await.context("connect")?;
    stream.set_nodelay(true)?;
    let config = Arc::new(client::Config {
        inactivity_timeout: None,
        ..Default::default()
    });
    let mut handle = client::connect_stream(config, stream, AnyHostKey)
        .await
        .context("SSH handshake")?;
    let auth = handle
        .authenticate_publickey(&args.user, PrivateKeyWithHashAlg::new(key, None))
        .await
        .context("public key authentication")?;
    if !auth.success() {
        bail!("public key authentication refused");
    }
    let mut channel = handle
        .channel_open_session()
        .await
        .context("open session")?;
    channel
        .request_pty(false, "xterm", 80, 24, 0, 0, &[])
        .await
        .context("pty")?;
    channel.request_shell(false).await.context("shell")?;
    let mut seen = Vec::new();
    loop {
        match channel.wait().await {
            Some(russh::ChannelMsg::Data { data }) => {
                seen.extend_from_slice(&data);
                if contains(&seen, args.expect.as_bytes()) {
                    break;
                }
            }
            Some(russh::ChannelMsg::Eof | russh::ChannelMsg::Close) | None => {
                bail!(
                    "session closed before {:?}: {}",
                    args.expect,
                    String::from_utf8_lossy(&seen)
                );
            }
            Some(_) => {}
        }
    }
    Ok(Held {
        _handle: handle,
        channel,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

enum Event {
    Up(u32, Duration),
    Failed(u32, String),
    Lost(u32),
}

/// This process's CPU time (user + system) in seconds, from /proc.
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some((_, tail)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = tail.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn run(args: Arc<Args>) -> Result<()> {
    let key = Arc::new(
        russh::keys::load_secret_key(&args.key, None)
            .with_context(|| format!("load {}", args.key.display()))?,
    );
    let n = args.sessions;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let timeout = Duration::from_secs_f64(args.timeout);
    let spawn = |i: u32| {
        let (args, key, tx, mut stop) = (
            Arc::clone(&args),
            Arc::clone(&key),
            tx.clone(),
            stop_rx.clone(),
        );
        tokio::spawn(async move {
            let t0 = Instant::now();
            let mut held = match tokio::time::timeout(timeout, open(&args, key)).await {
                Ok(Ok(h)) => h,
                Ok(Err(e)) => {
                    let _ = tx.send(Event::Failed(i, format!("{e:#}")));
                    return;
                }
                Err(_) => {
                    let _ = tx.send(Event::Failed(i, "set-up timed out".to_owned()));
                    return;
                }
            };
            let _ = tx.send(Event::Up(i, t0.elapsed()));
            loop {
                tokio::select! {
                    msg = held.channel.wait() => match msg {
                        Some(russh::ChannelMsg::Eof | russh::ChannelMsg::Close) | None => {
                            let _ = tx.send(Event::Lost(i));
                            return;
                        }
                        Some(_) => {}
                    },
                    _ = stop.changed() => break,
                }
            }
            let _ = held.channel.close().await;
        });
    };
    let parallel = args.parallel.max(1);
    let (mut launched, mut up, mut in_flight, mut lost) = (0u32, 0u32, 0u32, 0u32);
    let mut failure: Option<String> = None;
    let mut setups = Vec::with_capacity(n as usize);
    while (up < n && failure.is_none()) || in_flight > 0 {
        while failure.is_none() && in_flight < parallel && launched < n {
            spawn(launched);
            launched += 1;
            in_flight += 1;
        }
        match rx.recv().await {
            Some(Event::Up(i, d)) => {
                up += 1;
                in_flight -= 1;
                setups.push(d.as_secs_f64() * 1e3);
                println!(
                    "up i={i} n={up} setup_ms={:.1} t_s={:.2}",
                    d.as_secs_f64() * 1e3,
                    started.elapsed().as_secs_f64()
                );
            }
            Some(Event::Failed(i, e)) => {
                in_flight -= 1;
                eprintln!("session {i} failed to come up: {e}");
                failure.get_or_insert(format!("session {i}: {e}"));
            }
            Some(Event::Lost(i)) => {
                lost += 1;
                eprintln!("session {i} lost");
            }
            None => break,
        }
    }
    println!(
        "ramped up={up} asked={n} t_s={:.2} client_cpu_s={:.2}",
        started.elapsed().as_secs_f64(),
        own_cpu_seconds()
    );
    let hold_until = tokio::time::Instant::now() + Duration::from_secs_f64(args.hold);
    loop {
        match tokio::time::timeout_at(hold_until, rx.recv()).await {
            Ok(Some(Event::Lost(i))) => {
                lost += 1;
                eprintln!("session {i} lost while held");
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let alive = up.saturating_sub(lost);
    println!(
        "held alive={alive} lost={lost} client_cpu_s={:.2}",
        own_cpu_seconds()
    );
    let _ = stop_tx.send(true);
    setups.sort_by(f64::total_cmp);
    let median = setups.get(setups.len() / 2).copied().unwrap_or(0.0);
    println!("summary asked={n} up={up} alive={alive} setup_median_ms={median:.1}");
    // Let the sessions send their close before the runtime goes away.
    tokio::time::sleep(Duration::from_millis(500)).await;
    match failure {
        Some(f) => bail!("ramp stopped at {up} sessions: {f}"),
        None if alive < n => bail!("{} of {n} sessions were lost", n - alive),
        None => Ok(()),
    }
}

fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(args))
}
