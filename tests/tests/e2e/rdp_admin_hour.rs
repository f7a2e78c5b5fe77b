//! Benchmark (run by hand or by `scripts/bench`; prints figures, asserts none): how large the
//! recording of an hour of administrative work on a real RDP server is.
//!
//! The release headless client logs on through Sekisho to xrdp (the lab's, TLS, Xvnc
//! backend, a ticking clock on the desktop) and holds the session. Meanwhile a script works
//! on that desktop as an administrator would: terminals opened, listings and logs scrolled at
//! a reading pace, `top` refreshing in a window that is moved, dialogs opened and dismissed, a
//! document paged through. Then the desktop stays idle for as long as the work took, the idle
//! half of a maintenance hour. The recording's size over the session's length, scaled to an
//! hour, is the figure.
//!
//! `cargo test -p e2e --test e2e rdp_admin_hour -- --ignored --nocapture`;
//! `RDP_ADMIN_SECONDS` sets the active stretch (default 90 s, then as long idle).

use std::io::BufRead;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::rdp::rdp_peers::{self, XRDP_PORT};
use crate::rdp_load::{DESKTOP, inventory};
use crate::ssh::ssh_peers;
use crate::support::inventory::PASSWORD as TANAKA_PASS;
use crate::support::{InstanceOptions, SekishoInstance, bench, require_peers};

/// What the administrator does, compressed into `$1` seconds, on `$DISPLAY`. No window
/// manager runs in the lab's session, so windows are placed and moved by the script itself.
const ADMIN_WORK: &str = r#"set -u
T=${1:-90}
pause() { sleep "$(( $1 * T / 100 ))"; }
# A terminal: a long listing, then package licences read at a reading pace (the window scrolls).
xterm -geometry 100x32+20+20 -title admin-shell -e bash -c '
  ls -l /usr/bin | head -400; sleep 2
  for f in /usr/share/doc/*/copyright; do head -12 "$f"; sleep 0.3; done' &
shell=$!
pause 30
# A second window over it: top, refreshed every second, moved across the screen once.
xterm -geometry 90x25+300+200 -title admin-top -e top -d 1 &
top=$!
pause 10
w=$(xdotool search --name admin-top 2>/dev/null | head -1)
[ -n "$w" ] && xdotool windowmove "$w" 120 80
pause 10
kill $top
# Dialogs opened and dismissed.
for i in 1 2 3 4 5; do
  xmessage -geometry +260+240 "Service restarted ($i/5)" & m=$!
  sleep "$(( T / 50 + 1 ))"; kill $m
done
# A document paged through, a screen a second.
xterm -geometry 100x40+60+30 -title admin-pager -e bash -c '
  for i in $(seq 0 38 3000); do clear; sed -n "$((i+1)),$((i+38))p" /usr/share/common-licenses/GPL-3; sleep 1; done' &
pager=$!
pause 25
kill $pager $shell 2>/dev/null
wait
"#;

/// The X display of the lab user's xrdp session and the cookie file for it.
fn session_display() -> Result<(String, PathBuf)> {
    let ps = Command::new("ps")
        .args(["-u", rdp_peers::LAB_USER, "-o", "args="])
        .output()
        .context("ps")?;
    let text = String::from_utf8_lossy(&ps.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("Xvnc ") || l.contains("/Xvnc "))
        .with_context(|| format!("no Xvnc of {} running:\n{text}", rdp_peers::LAB_USER))?;
    let mut words = line.split_whitespace();
    let display = words
        .find(|w| w.starts_with(':'))
        .context("Xvnc without a display")?
        .to_owned();
    let passwd = Command::new("getent")
        .args(["passwd", rdp_peers::LAB_USER])
        .output()
        .context("getent")?;
    let home = String::from_utf8_lossy(&passwd.stdout)
        .split(':')
        .nth(5)
        .context("no home for the lab user")?
        .to_owned();
    Ok((display, PathBuf::from(home).join(".Xauthority")))
}

#[test]
#[ignore = "benchmark: run by hand"]
fn rdp_admin_hour_bench_against_xrdp() -> Result<()> {
    if !require_peers(&[
        "xrdp",
        "xrdp-sesman",
        "Xvnc",
        "xterm",
        "xdotool",
        "xmessage",
    ])? {
        return Ok(());
    }
    let active: u64 = std::env::var("RDP_ADMIN_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(90);
    rdp_peers::ensure_xrdp()?;
    let _serial = rdp_peers::serial();
    let instance = SekishoInstance::start_with(
        &inventory(&[("srv01", XRDP_PORT)], None),
        InstanceOptions {
            secrets: Some(rdp_peers::lab_secrets(&["srv01"])),
            ..InstanceOptions::default()
        },
    )?;
    let client = bench::release_binary("e2e", "sekisho-rdp-client")?;
    let hold = 2 * active + 5;
    let mut child = Command::new(&client)
        .arg(instance.listen.rdp.to_string())
        .arg("tanaka+srv01")
        .args(["--source", &IpAddr::V4(DESKTOP).to_string()])
        .args(["--hold", &hold.to_string()])
        .env("SEKISHO_RDP_PASSWORD", TANAKA_PASS)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .context("run sekisho-rdp-client")?;
    let stdout = child.stdout.take().context("client stdout")?;
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    rdp_peers::live_session(&instance, "the RDP session to start")
        .with_context(|| instance.serve_log())?;
    // The session's desktop exists once xrdp has logged on: a few seconds after set-up.
    let t0 = Instant::now();
    let (display, xauthority) = loop {
        match session_display() {
            Ok(d) => break d,
            Err(e) if t0.elapsed() > Duration::from_secs(20) => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let script = instance.path("admin-work.sh");
    std::fs::write(&script, ADMIN_WORK)?;
    let worked = Instant::now();
    let ok = Command::new("bash")
        .arg(&script)
        .arg(active.to_string())
        .env("DISPLAY", &display)
        .env("XAUTHORITY", &xauthority)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .context("run the admin work")?
        .success();
    let worked = worked.elapsed();
    let status = child.wait()?;
    let lines = reader.join().unwrap_or_default();
    anyhow::ensure!(ok, "the admin work script failed");
    anyhow::ensure!(status.success(), "the client failed: {lines:?}");
    let row = rdp_peers::ended_session(&instance, "the RDP session to end")?;
    let file = ssh_peers::recording_path(&instance, &row)?;
    let size = std::fs::metadata(&file)?.len();
    let out = instance.cli(&["recording", "verify", &file.display().to_string()])?;
    anyhow::ensure!(out.status.success(), "the recording does not verify");
    // Kept for a look at what fills it (the instance's directory goes with the test).
    let keep = crate::support::workspace_root().join("target/bench-logs/rdp-admin-hour.skrec");
    if let Some(dir) = keep.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(&file, &keep)?;
    let session = lines
        .iter()
        .find(|l| l.starts_with("session "))
        .context("no session line from the client")?;
    let field = |key: &str| -> Option<f64> {
        session
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    let held_s = field("held_s").unwrap_or(hold as f64);
    let traffic = field("bytes").unwrap_or(0.0);
    let per_hour = size as f64 / held_s * 3600.0 / 1e6;
    println!();
    println!(
        "RDP admin hour against xrdp: {:.0} s of work then idle, {held_s:.0} s held, display {display}",
        worked.as_secs_f64()
    );
    println!(
        "  server to client traffic {:.2} MB, recording {:.2} MB ({:.1}x smaller)",
        traffic / 1e6,
        size as f64 / 1e6,
        traffic / (size as f64).max(1.0)
    );
    println!(
        "  recorded per hour: {per_hour:.1} MB/h (the recording: {})",
        keep.display()
    );
    println!("BENCH rdp.admin_hour_mb={per_hour:.2} MB/h");
    println!(
        "BENCH rdp.admin_hour_traffic_mb={:.2} MB/h",
        traffic / held_s * 3600.0 / 1e6
    );
    Ok(())
}
