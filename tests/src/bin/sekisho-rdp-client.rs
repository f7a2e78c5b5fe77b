//! Headless RDP client for automation: connects (directly or through Sekisho with
//! `user+target`), waits for the first graphics update, holds the session, prints what it
//! received and optionally saves the last frame as PNG.
//!
//! ```text
//! SEKISHO_RDP_PASSWORD=… sekisho-rdp-client 127.0.0.1:3389 tanaka+srv01 --hold 5 --png out.png
//! ```

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use e2e::rdp_client::{self, ConnectOptions};

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
    /// Seconds to hold the session after the first graphics update (0: leave at once).
    #[arg(long, default_value_t = 0.0)]
    hold: f64,
    /// Seconds allowed for the set-up (TCP connect to the first graphics update).
    #[arg(long, default_value_t = 20.0)]
    timeout: f64,
    /// Send one key press (scan code, e.g. 0x1e) after the first update.
    #[arg(long, value_parser = parse_u8)]
    key: Option<u8>,
    /// Write the last decoded frame here as PNG.
    #[arg(long)]
    png: Option<PathBuf>,
}

fn parse_u8(s: &str) -> Result<u8, String> {
    let r = match s.strip_prefix("0x") {
        Some(hex) => u8::from_str_radix(hex, 16),
        None => s.parse(),
    };
    r.map_err(|e| e.to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut options = ConnectOptions::new(args.addr, args.user.clone(), args.password.clone());
    options.source = args.source;
    options.width = args.width;
    options.height = args.height;
    options.timeout = Duration::from_secs_f64(args.timeout);
    let mut session = rdp_client::connect(&options)
        .await
        .with_context(|| format!("connecting to {} as {}", args.addr, args.user))?;
    if let Some(k) = args.key {
        session.key(k).await.context("sending the key")?;
    }
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
    println!(
        "desktop={w}x{h} setup_ms={:.1} held_s={:.2} bytes={} pdus={} updates={} screens={:.2} non_black={:.3}",
        setup.as_secs_f64() * 1e3,
        held.as_secs_f64(),
        stats.bytes,
        stats.pdus,
        stats.updates,
        stats.pixels as f64 / (f64::from(w) * f64::from(h)).max(1.0),
        lit
    );
    Ok(())
}
