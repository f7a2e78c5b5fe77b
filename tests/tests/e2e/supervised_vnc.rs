//! Four eyes on a graphical console: a supervised VM's VNC console (QEMU) through Sekisho,
//! watched in Chromium. QEMU traces every key event that reaches it (`vnc_key_event_map`), so
//! the test sees exactly what the console received.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::support::faults::session_events;
use crate::support::{SekishoInstance, demo_inventory, require_peers};
use crate::vnc::vnc_peers::{self, ViewerArgs};
use crate::web::web_browser::Browser;
use crate::web::{login, web_base, with_staff};

/// tanaka's VDI desktop in the demo inventory.
const DESKTOP: &str = "127.0.10.11";

/// X keysyms of the three phases: typed while watched, while nobody watches, watched again.
const WATCHED: [u32; 3] = [0x31, 0x32, 0x33]; // 1 2 3
const HELD: [u32; 3] = [0x37, 0x38, 0x39]; // 7 8 9
const RESUMED: [u32; 3] = [0x34, 0x35, 0x36]; // 4 5 6

/// The demo inventory with web01 `supervised` and its VNC console at QEMU's `port`.
fn supervised_web01(port: u16) -> Result<String> {
    let demo = demo_inventory();
    let edited = demo.replacen(
        "vnc_console = \"127.0.0.1:15901\"",
        &format!("vnc_console = \"127.0.0.1:{port}\"\nsupervised = true"),
        1,
    );
    ensure!(edited != demo, "the demo inventory's web01 changed");
    Ok(with_staff(edited))
}

/// The keysyms QEMU received pressed, in order.
fn keys_received(trace: &Path) -> Vec<u32> {
    std::fs::read_to_string(trace)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("vnc_key_event_map down 1"))
        .filter_map(|l| l.split("sym 0x").nth(1))
        .filter_map(|s| u32::from_str_radix(s.split_whitespace().next().unwrap_or(""), 16).ok())
        .collect()
}

/// Waits up to `secs` for `check`.
async fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check()? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{what}: not within {secs} s")
}

/// web01 is `supervised`. tanaka's VNC viewer gets no ServerInit (sees nothing, sends nothing
/// to QEMU) until kobayashi watches the session in Chromium; watched, its keys reach QEMU;
/// when kobayashi leaves, its keys are held (QEMU never receives them, then or later) while
/// the screen keeps coming; when kobayashi returns, keys flow again. Each step is an event.
#[test]
fn supervised_vnc_console_waits_for_a_watcher_and_holds_keys_without_one() -> Result<()> {
    if !require_peers(&[
        "chromium",
        "chromedriver",
        "qemu-system-x86_64",
        "python3",
        "ssh",
    ])? {
        return Ok(());
    }
    let trace_dir = tempfile::Builder::new()
        .prefix("sekisho-qemu-keys-")
        .tempdir()?;
    let trace = trace_dir.path().join("keys.log");
    let qemu = vnc_peers::start_qemu_vnc_tracing_keys(&trace)?;
    let instance = SekishoInstance::start(&supervised_web01(qemu.port)?)?;
    let script = vnc_peers::viewer_script(instance.dir.path())?;
    let ticket = vnc_peers::tanaka_web01_ticket(&instance, DESKTOP)?;
    // The viewer types each phase after a pause long enough for the test to change who
    // watches in between (the phases are checked below, not assumed).
    let mut keys: Vec<u32> = WATCHED.to_vec();
    keys.extend([0; 8]);
    keys.extend(HELD);
    keys.extend([0; 10]);
    keys.extend(RESUMED);
    // Read on a thread of its own: the catalogue client has its own runtime, which cannot
    // start inside the browser's.
    let events_have = |id: &str, want: &str| -> Result<bool> {
        let events = std::thread::scope(|s| {
            s.spawn(|| session_events(&instance, id))
                .join()
                .map_err(|_| anyhow::anyhow!("reading the events panicked"))
        })??;
        Ok(events.iter().any(|(_, d)| d.starts_with(want)))
    };

    let runtime = tokio::runtime::Runtime::new()?;
    let (id, report) = runtime.block_on(async {
        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        // Logged in before the viewer connects: the viewer gives up on a silent server after
        // 10 s, and a session waiting for a watcher is silent.
        login(&b, &base, "kobayashi").await?;
        let viewer = vnc_peers::spawn_viewer(
            &script,
            &ViewerArgs {
                host: instance.listen.vnc.ip().to_string(),
                port: instance.listen.vnc.port(),
                source: DESKTOP.to_owned(),
                password: ticket.clone(),
                hold: 28.0,
                keys: keys.clone(),
                ..ViewerArgs::default()
            },
        )?;
        let mut id = String::new();
        let result = async {
            id = instance.wait_until(Duration::from_secs(10), "the waiting session", || {
                Ok(instance
                    .sessions()?
                    .into_iter()
                    .find(|s| s["target"] == "web01" && s["ended_at"].is_null()))
            })?["id"]
                .as_str()
                .context("id")?
                .to_owned();
            wait_for(5, "the wait for a watcher", || {
                events_have(&id, "supervised: waiting for a watcher")
            })
            .await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            ensure!(
                keys_received(&trace).is_empty(),
                "QEMU received keys before anyone watched: {:?}",
                keys_received(&trace)
            );
            b.goto(&format!("{base}/sessions/{id}/watch")).await?;
            // Watched: the viewer gets its screen and its keys arrive.
            wait_for(20, "the watched keys at QEMU", || {
                Ok(WATCHED.iter().all(|k| keys_received(&trace).contains(k)))
            })
            .await?;
            // kobayashi leaves: the hold begins before the viewer types its second phase.
            b.goto(&format!("{base}/sessions")).await?;
            wait_for(6, "the hold", || {
                events_have(&id, "input held: nobody is watching")
            })
            .await?;
            // The held phase is typed (at most 8 s after the first) and never arrives.
            tokio::time::sleep(Duration::from_secs(9)).await;
            // kobayashi returns before the third phase (10 s after the second).
            b.goto(&format!("{base}/sessions/{id}/watch")).await?;
            wait_for(6, "the resume", || events_have(&id, "input resumed (")).await?;
            wait_for(20, "the resumed keys at QEMU", || {
                Ok(RESUMED.iter().all(|k| keys_received(&trace).contains(k)))
            })
            .await?;
            anyhow::Ok(())
        }
        .await;
        b.close().await?;
        let report = vnc_peers::wait_viewer(viewer)?;
        result.map_err(|e| {
            anyhow::anyhow!(
                "{e:#}\nQEMU received {:?}\nviewer: {report}\n--- serve log ---\n{}",
                keys_received(&trace),
                instance.serve_log()
            )
        })?;
        anyhow::Ok((id, report))
    })?;
    let received = keys_received(&trace);
    ensure!(
        !HELD.iter().any(|k| received.contains(k)),
        "held keys reached QEMU: {received:?}"
    );
    ensure!(
        report["updates"].as_u64().unwrap_or(0) > 1,
        "the viewer got no screen: {report}"
    );
    let events = session_events(&instance, &id)?;
    for want in [
        "supervised: waiting for a watcher",
        "watcher joined: kobayashi (security)",
        "input held: nobody is watching",
        "input resumed (6 key and pointer events",
    ] {
        ensure!(
            events.iter().any(|(_, d)| d.starts_with(want)),
            "no {want:?} in {events:?}"
        );
    }
    Ok(())
}
