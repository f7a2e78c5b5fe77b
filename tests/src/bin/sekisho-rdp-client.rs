//! Headless RDP client for automation and load: connects (directly or through Sekisho with
//! `user+target`), waits for the first graphics update, holds the session, prints what it
//! received and optionally saves the last frame as PNG.
//!
//! ```text
//! SEKISHO_RDP_PASSWORD=… sekisho-rdp-client 127.0.0.1:3389 tanaka+srv01 --hold 5 --png out.png
//! sekisho-rdp-client ADDR USER --repeat 10          # set-up time, one connection after another
//! sekisho-rdp-client ADDR USER --sessions 200 --hold 30   # ramp to 200 concurrent sessions
//! sekisho-rdp-client ADDR USER --sessions 1000 --spread A=U1 --spread A=U2   # over two targets
//! sekisho-rdp-client ADDR USER --client-info truncated   # a hostile Client Info PDU
//! ```
//!
//! Output is one `key=value` line per event, for scripts: `setup i=… ms=…`, `session …`,
//! `summary …`; errors go to stderr. The exit code is 0 when every asked-for session came up.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use e2e::rdp_client::{self, ClientInfoShape, ConnectOptions, Stats};

#[derive(Parser, Debug)]
#[command(about = "Headless RDP client (ironrdp) for automation and load tests")]
struct Args {
    /// The RDP server or Sekisho's RDP front door, HOST:PORT.
    addr: SocketAddr,
    /// User name; through Sekisho, `user+target` names the target.
    user: String,
    /// Password (prefer the environment variable: a command line is visible to every user).
    #[arg(long, env = "SEKISHO_RDP_PASSWORD", hide_env_values = true)]
    password: String,
    /// Connect from this local address (e.g. a VDI desktop's loopback alias).
    #[arg(long)]
    source: Option<IpAddr>,
    /// Desktop width asked for.
    #[arg(long, default_value_t = 1024)]
    width: u16,
    /// Desktop height asked for.
    #[arg(long, default_value_t = 768)]
    height: u16,
    /// Seconds to hold the session(s) after the first graphics update (0: leave at once).
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Seconds allowed for each set-up (TCP connect to the first graphics update).
    #[arg(long, default_value_t = 20.0)]
    timeout: f64,
    /// Send one key press (scan code, e.g. 0x1e) after the first update.
    #[arg(long, value_parser = parse_u8)]
    key: Option<u8>,
    /// Write the last decoded frame here as PNG (single session only).
    #[arg(long)]
    png: Option<PathBuf>,
    /// Connect this many times one after the other (connect, first update, disconnect) and
    /// print each set-up time and their median.
    #[arg(long)]
    repeat: Option<u32>,
    /// Ramp up to this many concurrent sessions, hold them `--hold` seconds, then disconnect
    /// them all; stops the ramp at the first failure.
    #[arg(long)]
    sessions: Option<u32>,
    /// With `--sessions`: spread the sessions round-robin over these `ADDR=USER` pairs
    /// (repeat the option) instead of ADDR and USER, to load several servers at once.
    #[arg(long, value_parser = parse_endpoint)]
    spread: Vec<(SocketAddr, String)>,
    /// With `--sessions`: how many set-ups run at once during the ramp.
    #[arg(long, default_value_t = 4)]
    parallel: u32,
    /// Offer NLA (CredSSP, NTLM) as well as TLS; the server chooses.
    #[arg(long)]
    nla: bool,
    /// Bend the Client Info PDU to play a hostile client: plain, compression-bits,
    /// unknown-performance-flag or truncated.
    #[arg(long, default_value = "plain", value_parser = parse_shape)]
    client_info: ClientInfoShape,
}

fn parse_shape(s: &str) -> Result<ClientInfoShape, String> {
    ClientInfoShape::ALL
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, shape)| *shape)
        .ok_or_else(|| {
            let names: Vec<&str> = ClientInfoShape::ALL.iter().map(|(n, _)| *n).collect();
            format!("one of {}", names.join(", "))
        })
}

fn parse_endpoint(s: &str) -> Result<(SocketAddr, String), String> {
    let (addr, user) = s
        .split_once('=')
        .ok_or_else(|| format!("{s:?} is not ADDR=USER"))?;
    Ok((
        addr.parse().map_err(|e| format!("{addr}: {e}"))?,
        user.to_owned(),
    ))
}

fn parse_u8(s: &str) -> Result<u8, String> {
    let r = match s.strip_prefix("0x") {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| e.to_string())
}

/// CPU seconds (user + system) this process has used so far.
fn own_cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some((_, tail)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = tail.split_whitespace().collect();
    // After "pid (comm)": state is field 3, utime 14 and stime 15 (1-based over the whole line).
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn options(args: &Args) -> ConnectOptions {
    let mut o = ConnectOptions::new(args.addr, args.user.clone(), args.password.clone());
    o.nla = args.nla;
    o.client_info = args.client_info;
    o.source = args.source;
    o.width = args.width;
    o.height = args.height;
    o.timeout = Duration::from_secs_f64(args.timeout);
    o
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    if let Some(n) = args.sessions {
        return rt.block_on(concurrent(&args, n));
    }
    if let Some(n) = args.repeat {
        return rt.block_on(repeat(&args, n));
    }
    rt.block_on(single(&args))
}

async fn single(args: &Args) -> Result<()> {
    let mut session = rdp_client::connect(&options(args))
        .await
        .with_context(|| format!("connecting to {} as {}", args.addr, args.user))?;
    if let Some(k) = args.key {
        session.key(k).await.context("sending the key")?;
    }
    let before = session.stats();
    if args.hold > 0.0 {
        session
            .pump_for(Duration::from_secs_f64(args.hold))
            .await
            .context("holding the session")?;
    }
    let (w, h) = session.desktop_size();
    let setup = session.setup_time();
    let held = session.first_update_at().elapsed();
    if let Some(path) = &args.png {
        session
            .save_png(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let lit = rdp_client::non_black_fraction(session.image());
    let stats = session.disconnect().await.context("disconnecting")?;
    let area = (f64::from(w) * f64::from(h)).max(1.0);
    let secs = held.as_secs_f64().max(1e-9);
    // Rates count only what came after the first update, over the time held.
    let bytes = stats.bytes.saturating_sub(before.bytes);
    let screens = stats.pixels.saturating_sub(before.pixels) as f64 / area;
    println!(
        "session desktop={w}x{h} setup_ms={:.1} held_s={secs:.2} bytes={} pdus={} updates={} \
         screens={:.2} non_black={lit:.3} mb_per_s={:.3} screens_per_s={:.3} client_cpu_s={:.2}",
        setup.as_secs_f64() * 1e3,
        stats.bytes,
        stats.pdus,
        stats.updates,
        stats.pixels as f64 / area,
        bytes as f64 / secs / 1e6,
        screens / secs,
        own_cpu_seconds()
    );
    Ok(())
}

async fn repeat(args: &Args, n: u32) -> Result<()> {
    let o = options(args);
    let mut times = Vec::new();
    for i in 0..n {
        let s = rdp_client::connect(&o)
            .await
            .with_context(|| format!("connection {i}"))?;
        let ms = s.setup_time().as_secs_f64() * 1e3;
        s.disconnect().await.context("disconnecting")?;
        println!("setup i={i} ms={ms:.1}");
        times.push(ms);
        // The server (and Sekisho) finish with the last session before the next starts.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(0.0);
    let min = times.first().copied().unwrap_or(0.0);
    let max = times.last().copied().unwrap_or(0.0);
    println!("summary setups={n} median_ms={median:.1} min_ms={min:.1} max_ms={max:.1}");
    Ok(())
}

enum Event {
    Up(u32, Duration),
    Failed(u32, String),
    Lost(u32, String),
    Done(Stats),
}

async fn concurrent(args: &Args, n: u32) -> Result<()> {
    let endpoints: Vec<Arc<ConnectOptions>> = if args.spread.is_empty() {
        vec![Arc::new(options(args))]
    } else {
        args.spread
            .iter()
            .map(|(addr, user)| {
                let mut o = options(args);
                o.addr = *addr;
                o.user = user.clone();
                Arc::new(o)
            })
            .collect()
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let started = Instant::now();
    let parallel = args.parallel.max(1);
    let (mut launched, mut up, mut in_flight) = (0u32, 0u32, 0u32);
    let mut failure: Option<String> = None;
    let mut setups = Vec::new();
    let spawn = |i: u32| {
        let o = endpoints
            .get(i as usize % endpoints.len())
            .map(Arc::clone)
            .unwrap_or_else(|| Arc::new(options(args)));
        let (tx, mut stop) = (tx.clone(), stop_rx.clone());
        tokio::spawn(async move {
            let mut s = match rdp_client::connect(&o).await {
                Ok(s) => s,
                Err(e) => {
                    let _ = tx.send(Event::Failed(i, e.to_string()));
                    return;
                }
            };
            let _ = tx.send(Event::Up(i, s.setup_time()));
            loop {
                tokio::select! {
                    r = s.pump_for(Duration::from_secs(3600)) => {
                        if let Err(e) = r {
                            let _ = tx.send(Event::Lost(i, e.to_string()));
                            return;
                        }
                    }
                    _ = stop.changed() => break,
                }
            }
            match s.disconnect().await {
                Ok(stats) => {
                    let _ = tx.send(Event::Done(stats));
                }
                Err(e) => {
                    let _ = tx.send(Event::Lost(i, e.to_string()));
                }
            }
        });
    };
    // Ramp: keep `parallel` set-ups in flight until n are up or one fails.
    let mut lost = 0u32;
    while up < n && failure.is_none() {
        while in_flight < parallel && launched < n {
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
                failure = Some(format!("session {i}: {e}"));
            }
            Some(Event::Lost(i, e)) => {
                lost += 1;
                eprintln!("session {i} lost: {e}");
            }
            Some(Event::Done(_)) | None => {}
        }
    }
    // Let set-ups still in flight finish before holding.
    while in_flight > 0 {
        match rx.recv().await {
            Some(Event::Up(..)) => {
                up += 1;
                in_flight -= 1;
            }
            Some(Event::Failed(..)) => in_flight -= 1,
            Some(Event::Lost(..)) => lost += 1,
            _ => {}
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
            Ok(Some(Event::Lost(i, e))) => {
                lost += 1;
                eprintln!("session {i} lost while held: {e}");
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
    drop(tx);
    let (mut bytes, mut done) = (0u64, 0u32);
    let drain = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(ev) = rx.recv().await {
            if let Event::Done(s) = ev {
                bytes += s.bytes;
                done += 1;
            }
        }
    })
    .await;
    setups.sort_by(f64::total_cmp);
    let median = setups.get(setups.len() / 2).copied().unwrap_or(0.0);
    println!(
        "summary asked={n} up={up} alive={alive} disconnected={done} bytes={bytes} \
         setup_median_ms={median:.1} drained={}",
        drain.is_ok()
    );
    match failure {
        Some(f) => anyhow::bail!("ramp stopped at {up} sessions: {f}"),
        None if alive < n => anyhow::bail!("{} of {n} sessions were lost", n - alive),
        None => Ok(()),
    }
}
