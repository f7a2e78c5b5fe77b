//! Recordings in an S3-compatible object store, end to end: `serve` configured with
//! `storage.recordings = "s3://…"` records a console session through the SSH front door to a
//! real Garage (`scripts/garage-test-server`); the catalogue holds the object's URL, and
//! `recording verify`, `recording info` and `play` read it from the store; and the store going
//! down mid-session (`scripts/garage-test-server pause`) is survived without losing a byte.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::ssh::ssh_peers::{self, DEMO_PASSWORD, askpass, output_text as text};
use crate::support::{InstanceOptions, SekishoInstance, demo_inventory, require_peers};

const TANAKA_DESKTOP: &str = "127.0.10.11";

/// The test Garage's settings, from `eval "$(scripts/garage-test-server start)"`.
pub(crate) struct Garage {
    pub(crate) endpoint: String,
    pub(crate) region: String,
    pub(crate) bucket: String,
    pub(crate) key_id: String,
    pub(crate) secret: String,
}

impl Garage {
    /// `serve` options recording under `url` in this Garage: the local spool in the instance
    /// directory, `s3_lines` more in `[storage.s3]` (`ship_interval`, `spool_limit`), and
    /// `secrets` beside the S3 keys in the secrets file.
    pub(crate) fn options(&self, url: &str, s3_lines: &str, secrets: &str) -> InstanceOptions {
        InstanceOptions {
            recordings: Some((
                url.to_owned(),
                format!(
                    "[storage.s3]\nendpoint = \"{}\"\nregion = \"{}\"\nspool = \"data/spool\"\n{s3_lines}",
                    self.endpoint, self.region
                ),
            )),
            secrets: Some(format!(
                "{secrets}\n[s3]\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\n",
                self.key_id, self.secret
            )),
            ..InstanceOptions::default()
        }
    }
}

/// The running test Garage; `None` (skip) when there is none and peers may be skipped.
pub(crate) fn garage() -> Result<Option<Garage>> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        var("SEKISHO_TEST_S3_ENDPOINT"),
        var("SEKISHO_TEST_S3_BUCKET"),
        var("SEKISHO_TEST_S3_KEY_ID"),
        var("SEKISHO_TEST_S3_SECRET"),
    ) {
        (Some(endpoint), Some(bucket), Some(key_id), Some(secret)) => Ok(Some(Garage {
            endpoint,
            region: var("SEKISHO_TEST_S3_REGION").unwrap_or_else(|| "garage".into()),
            bucket,
            key_id,
            secret,
        })),
        _ if crate::support::skip_peers_allowed() => {
            eprintln!("SKIPPED: no Garage (eval \"$(scripts/garage-test-server start)\")");
            Ok(None)
        }
        _ => anyhow::bail!(
            "no Garage: eval \"$(scripts/garage-test-server start)\" (or SEKISHO_SKIP_PEERS=1)"
        ),
    }
}

/// `serve` recording to the test Garage (ship interval 1 s), with a QEMU serial console
/// behind target web01. `None`: skipped.
fn lab() -> Result<Option<(SekishoInstance, ssh_peers::Peer, Garage, String)>> {
    if !require_peers(&["ssh", "qemu-system-x86_64", "curl"])? {
        return Ok(None);
    }
    let Some(g) = garage()? else {
        return Ok(None);
    };
    let qemu = ssh_peers::start_qemu_serial()?;
    let inventory = demo_inventory().replace(
        "serial_console = \"127.0.0.1:14501\"",
        &format!("serial_console = \"127.0.0.1:{}\"", qemu.port),
    );
    let url = format!("s3://{}/e2e/{}", g.bucket, uuid::Uuid::now_v7());
    let sekisho =
        SekishoInstance::start_with(&inventory, g.options(&url, "ship_interval = \"1s\"\n", ""))?;
    Ok(Some((sekisho, qemu, g, url)))
}

fn console(sekisho: &SekishoInstance) -> Result<ssh_peers::Session> {
    let askpass = askpass(sekisho.dir.path(), DEMO_PASSWORD, None)?;
    ssh_peers::ssh_tt(
        &askpass,
        sekisho.listen.ssh.port(),
        TANAKA_DESKTOP,
        "tanaka+web01",
    )
}

#[test]
fn a_console_session_is_recorded_to_the_object_store() -> Result<()> {
    let Some((sekisho, _qemu, g, url)) = lab()? else {
        return Ok(());
    };
    let session = console(&sekisho)?;
    session.wait_for("No bootable device", Duration::from_secs(20))?;
    let live = sekisho.wait_until(Duration::from_secs(15), "a live session", || {
        Ok(sekisho
            .sessions()?
            .into_iter()
            .find(|s| s["target"] == "web01" && s["ended_at"].is_null()))
    })?;
    let id = live["id"].as_str().context("no id")?.to_owned();
    let location = live["recording"]
        .as_str()
        .context("no recording")?
        .to_owned();
    assert!(
        location.starts_with(&format!("{url}/")) && location.ends_with(&format!("{id}.skrec")),
        "{location}"
    );

    // While live, the new bytes ship every second: /metrics shows the store up and (almost)
    // nothing that exists only on the local disk.
    std::thread::sleep(Duration::from_millis(2500));
    let (status, body) = crate::support::faults::metrics(&sekisho)?;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.lines().any(|l| l == "sekisho_object_store_up 1"),
        "{body}"
    );
    assert!(
        body.lines()
            .any(|l| l.starts_with("sekisho_recording_spool_unshipped_bytes ")),
        "{body}"
    );

    drop(session);
    let row = sekisho.wait_until(Duration::from_secs(15), "the session ended", || {
        Ok(sekisho
            .sessions()?
            .into_iter()
            .find(|s| s["id"] == id.as_str() && !s["ended_at"].is_null()))
    })?;
    assert_eq!(row["outcome"], "completed", "{row}");
    assert_eq!(row["recording_state"], "complete", "{row}");
    assert_eq!(
        row["recording"],
        location.as_str(),
        "sessions list shows the URL"
    );

    // A finished recording lives only in the store: the spool is empty.
    let spool = sekisho.path("data/spool");
    sekisho.wait_until(Duration::from_secs(10), "the spool emptied", || {
        Ok((std::fs::read_dir(&spool)?.count() == 0).then_some(()))
    })?;

    // Verified from the store, against the instance's key (from --config).
    let out = sekisho.cli(&["recording", "verify", &location])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("intact"), "{}", text(&out));
    let out = sekisho.cli(&["recording", "info", &location])?;
    assert!(out.status.success(), "{}", text(&out));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(info["session_id"], id.as_str());
    assert_eq!(info["protocol"], "console-serial");
    assert_eq!(info["verification"]["state"], "intact");

    // Played by session id: the catalogue gives the URL, the store the bytes.
    let out = sekisho.cli(&["play", &id, "--speed", "16", "--skip-idle", "0.1"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("No bootable device"));

    // The secret key never reaches the log.
    assert!(
        !sekisho.serve_log().contains(&g.secret),
        "secret in the log"
    );
    Ok(())
}

#[test]
fn a_crash_is_sealed_from_the_spool_and_shipped_at_the_next_start() -> Result<()> {
    let Some((mut sekisho, _qemu, _g, _url)) = lab()? else {
        return Ok(());
    };
    let session = console(&sekisho)?;
    session.wait_for("No bootable device", Duration::from_secs(20))?;
    let live = sekisho.wait_until(Duration::from_secs(15), "a live session", || {
        Ok(sekisho
            .sessions()?
            .into_iter()
            .find(|s| s["target"] == "web01" && s["ended_at"].is_null()))
    })?;
    let id = live["id"].as_str().context("no id")?.to_owned();
    let location = live["recording"]
        .as_str()
        .context("no recording")?
        .to_owned();
    std::thread::sleep(Duration::from_millis(2500));
    sekisho.crash()?;
    drop(session);
    // Not finished: no final object yet.
    let out = sekisho.cli_raw(&["recording", "verify", &location, "--config", "sekisho.toml"])?;
    assert_ne!(out.status.code(), Some(0), "{}", text(&out));

    // The next start seals the spooled recording, ships it, and marks the session.
    sekisho.restart()?;
    let row = sekisho.wait_until(Duration::from_secs(15), "the session marked", || {
        Ok(sekisho
            .sessions()?
            .into_iter()
            .find(|s| s["id"] == id.as_str() && !s["ended_at"].is_null()))
    })?;
    assert_eq!(row["outcome"], "interrupted", "{row}");
    assert_eq!(row["recording_state"], "sealed", "{row}");
    assert_eq!(row["recording"], location.as_str());
    let spool = sekisho.path("data/spool");
    sekisho.wait_until(Duration::from_secs(15), "the spool shipped", || {
        Ok((std::fs::read_dir(&spool)?.count() == 0).then_some(()))
    })?;
    let out = sekisho.cli(&["recording", "verify", &location])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("interrupted"), "{}", text(&out));
    let out = sekisho.cli(&["play", &id, "--speed", "16", "--skip-idle", "0.1"])?;
    assert!(String::from_utf8_lossy(&out.stdout).contains("No bootable device"));
    Ok(())
}

/// `scripts/garage-test-server pause` (the Garage process stopped, its data kept); resumed on
/// drop, so a failing test does not leave the suite's store down.
struct GarageOutage {
    resumed: bool,
}

impl GarageOutage {
    fn begin() -> Result<GarageOutage> {
        garage_control("pause")?;
        Ok(GarageOutage { resumed: false })
    }

    fn end(&mut self) -> Result<()> {
        self.resumed = true;
        garage_control("resume")
    }
}

impl Drop for GarageOutage {
    fn drop(&mut self) {
        if !self.resumed {
            let _ = garage_control("resume");
        }
    }
}

fn garage_control(arg: &str) -> Result<()> {
    let script = crate::support::workspace_root().join("scripts/garage-test-server");
    let status = std::process::Command::new(&script)
        .arg(arg)
        .stdin(std::process::Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", script.display()))?;
    anyhow::ensure!(status.success(), "garage-test-server {arg} failed");
    Ok(())
}

/// A metric's value in a `/metrics` body.
fn metric(body: &str, name: &str) -> Option<f64> {
    body.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok())?
    })
}

/// The store goes down while an instance records a console session: the session goes on
/// (its bytes spool), a new session is refused once the unshipped bytes pass the spool limit
/// (`sekisho.unavailable`, nothing opened on the console), `/metrics` and the log say why,
/// and when the store is back everything ships, new sessions run again, and the recording
/// made across the outage verifies intact with what was typed during it.
#[test]
fn garage_stopped_mid_session_spools_refuses_new_sessions_and_ships_on_return() -> Result<()> {
    if !require_peers(&["ssh", "sshd", "runuser", "curl", "base64"])? {
        return Ok(());
    }
    let Some(g) = garage()? else {
        return Ok(());
    };
    let sshd = ssh_peers::start_sshd(&[])?;
    let url = format!("s3://{}/outage/{}", g.bucket, uuid::Uuid::now_v7());
    let sekisho = SekishoInstance::start_with(
        &ssh_peers::console_inventory(14501, sshd.port),
        g.options(
            &url,
            "ship_interval = \"1s\"\nspool_limit = \"1MiB\"\n",
            &ssh_peers::console_secrets(),
        ),
    )?;
    let askpass = askpass(sekisho.dir.path(), DEMO_PASSWORD, None)?;
    let app02 = || {
        ssh_peers::ssh_tt(
            &askpass,
            sekisho.listen.ssh.port(),
            TANAKA_DESKTOP,
            "tanaka+app02",
        )
    };
    let mut live = app02()?;
    live.wait_for("this session is recorded", Duration::from_secs(30))?;
    live.send(b"echo BEFORE-$((6*7))\n")?;
    live.wait_for("BEFORE-42", Duration::from_secs(30))?;
    let id = sekisho.wait_until(Duration::from_secs(10), "a live session", || {
        Ok(sekisho
            .sessions()?
            .into_iter()
            .find(|s| s["target"] == "app02" && s["ended_at"].is_null()))
    })?["id"]
        .as_str()
        .context("no id")?
        .to_owned();

    let mut outage = GarageOutage::begin()?;
    // About 2 MB of recording that does not compress: more than the 1 MiB spool limit.
    live.send(b"head -c 1500000 /dev/urandom | base64; echo DURING-$((6*7))\n")?;
    live.wait_for("DURING-42", Duration::from_secs(60))?;
    let body = sekisho.wait_until(
        Duration::from_secs(60),
        "/metrics showing the store down and the spool over its limit",
        || {
            let (_, body) = crate::support::faults::metrics(&sekisho)?;
            let over = metric(&body, "sekisho_recording_spool_unshipped_bytes")
                .zip(metric(&body, "sekisho_recording_spool_limit_bytes"))
                .is_some_and(|(unshipped, limit)| unshipped > limit);
            let down = metric(&body, "sekisho_object_store_up") == Some(0.0);
            Ok((over && down).then_some(body))
        },
    )?;
    assert_eq!(
        metric(&body, "sekisho_recording_spool_limit_bytes"),
        Some(1_048_576.0)
    );

    // A new session is refused and catalogued; the console was not opened for it.
    let sshd_log = || std::fs::read_to_string(sshd.dir.path().join("sshd.log"));
    let consoles_before = sshd_log()?.matches("Connection from").count();
    assert!(
        consoles_before > 0,
        "sshd logged no console connection: the check below would prove nothing"
    );
    let mut refused = app02()?;
    let status = refused.wait_exit(Duration::from_secs(60))?;
    assert!(
        !status.success(),
        "a session started with the spool over its limit: {}",
        refused.output()
    );
    assert!(
        !refused.output().contains("this session is recorded"),
        "{}",
        refused.output()
    );
    let denial = sekisho.wait_until(Duration::from_secs(10), "the refusal catalogued", || {
        Ok(sekisho
            .denials()?
            .into_iter()
            .find(|d| d["rule"] == "sekisho.unavailable"))
    })?;
    let reason = denial["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("spool over its limit") && reason.contains("app02"),
        "{denial}"
    );
    assert_eq!(
        sshd_log()?.matches("Connection from").count(),
        consoles_before,
        "the refused session reached the console"
    );
    // The live session is untouched.
    live.send(b"echo STILL-$((6*7))\n")?;
    live.wait_for("STILL-42", Duration::from_secs(30))?;
    assert!(
        sekisho.serve_log().contains("Object store unreachable"),
        "the log does not say the store is down"
    );

    // The store returns: the spool drains, and a new session runs.
    outage.end()?;
    sekisho.wait_until(Duration::from_secs(60), "the spool shipped", || {
        let (_, body) = crate::support::faults::metrics(&sekisho)?;
        let up = metric(&body, "sekisho_object_store_up") == Some(1.0);
        let small = metric(&body, "sekisho_recording_spool_unshipped_bytes")
            .is_some_and(|unshipped| unshipped < 1_048_576.0);
        Ok((up && small).then_some(()))
    })?;
    let mut after = app02()?;
    after.wait_for("this session is recorded", Duration::from_secs(30))?;
    after.send(b"echo AFTER-$((6*7))\n")?;
    after.wait_for("AFTER-42", Duration::from_secs(30))?;
    drop(after);
    drop(live);

    let row = sekisho.wait_until(Duration::from_secs(60), "the recording complete", || {
        Ok(sekisho
            .sessions()?
            .into_iter()
            .find(|s| s["id"] == id.as_str() && s["recording_state"] == "complete"))
    })?;
    let location = row["recording"].as_str().context("recording URL")?;
    assert!(location.starts_with(&url), "{location}");
    let out = sekisho.cli(&["recording", "verify", location])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("intact"), "{}", text(&out));
    let out = sekisho.cli(&["export", &id, "--format", "txt", "-o", "outage.txt"])?;
    assert!(out.status.success(), "{}", text(&out));
    let typed = std::fs::read_to_string(sekisho.path("outage.txt"))?;
    for tag in ["BEFORE-42", "DURING-42", "STILL-42"] {
        assert!(typed.contains(tag), "{tag} is missing from the recording");
    }
    let spool = sekisho.path("data/spool");
    sekisho.wait_until(Duration::from_secs(30), "the spool emptied", || {
        Ok((std::fs::read_dir(&spool)?.count() == 0).then_some(()))
    })?;
    Ok(())
}
