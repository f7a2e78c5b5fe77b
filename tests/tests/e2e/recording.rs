//! Recordings made through the real front door, end to end: a crash (`kill -9`) mid-session
//! leaves a readable, incomplete recording that the next start seals and marks interrupted;
//! a finished session verifies as intact, plays back and exports to asciicast that the stock
//! `asciinema` accepts.

use std::time::Duration;

use anyhow::{Context, Result};

use crate::support::{InstanceOptions, SekishoInstance, demo_inventory, require_peers};

use crate::ssh::ssh_peers::{
    self, DEMO_PASSWORD, Session, askpass, export, output_text as text, recording_path,
};

const TANAKA_DESKTOP: &str = "127.0.10.11";

struct Lab {
    sekisho: SekishoInstance,
    _qemu: ssh_peers::Peer,
    askpass: std::path::PathBuf,
}

fn lab() -> Result<Lab> {
    lab_with(|i| i)
}

fn lab_with(edit: impl Fn(String) -> String) -> Result<Lab> {
    let qemu = ssh_peers::start_qemu_serial()?;
    let inventory = edit(demo_inventory()).replace(
        "serial_console = \"127.0.0.1:14501\"",
        &format!("serial_console = \"127.0.0.1:{}\"", qemu.port),
    );
    let sekisho = SekishoInstance::start_with(&inventory, InstanceOptions::default())?;
    let askpass = askpass(sekisho.dir.path(), DEMO_PASSWORD, None)?;
    Ok(Lab {
        sekisho,
        _qemu: qemu,
        askpass,
    })
}

impl Lab {
    fn console(&self) -> Result<Session> {
        ssh_peers::ssh_tt(
            &self.askpass,
            self.sekisho.listen.ssh.port(),
            TANAKA_DESKTOP,
            "tanaka+web01",
        )
    }

    fn session_on_web01(&self, ended: bool) -> Result<serde_json::Value> {
        self.sekisho.wait_until(
            Duration::from_secs(15),
            if ended {
                "an ended session"
            } else {
                "a live session"
            },
            || {
                Ok(self
                    .sekisho
                    .sessions()?
                    .into_iter()
                    .find(|s| s["target"] == "web01" && s["ended_at"].is_null() != ended))
            },
        )
    }

    fn recording_path(&self, row: &serde_json::Value) -> Result<std::path::PathBuf> {
        recording_path(&self.sekisho, row)
    }
}

#[test]
fn a_crash_leaves_a_readable_recording_that_the_next_start_seals() -> Result<()> {
    if !require_peers(&["ssh", "qemu-system-x86_64"])? {
        return Ok(());
    }
    let mut lab = lab()?;
    let session = lab.console()?;
    session.wait_for("No bootable device", Duration::from_secs(20))?;
    let live = lab.session_on_web01(false)?;
    let id = live["id"].as_str().context("no id")?.to_owned();
    // Chunks close at least every second: after 2.5 s the output above is on disk.
    std::thread::sleep(Duration::from_millis(2500));

    lab.sekisho.crash()?;
    drop(session);
    let path = lab.recording_path(&live)?;

    // Cut short: readable, reported incomplete (not tampered), exit 1.
    let out = lab
        .sekisho
        .cli_raw(&["recording", "verify", &path.display().to_string()])?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("incomplete"), "{}", text(&out));
    assert!(!text(&out).contains("TAMPERED"), "{}", text(&out));
    // What it holds is there: the console output before the crash.
    let transcript = export(&lab.sekisho, &path, "txt", "before-seal.txt")?;
    assert!(transcript.contains("No bootable device"), "{transcript}");

    // The next start seals the prefix and marks the session interrupted.
    lab.sekisho.restart()?;
    let row = lab.session_on_web01(true)?;
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["outcome"], "interrupted", "{row}");
    assert_eq!(row["recording_state"], "sealed", "{row}");
    let out = lab
        .sekisho
        .cli(&["recording", "verify", &path.display().to_string()])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("interrupted"), "{}", text(&out));
    Ok(())
}

#[test]
fn a_finished_session_verifies_plays_and_exports() -> Result<()> {
    if !require_peers(&["ssh", "qemu-system-x86_64", "asciinema"])? {
        return Ok(());
    }
    let lab = lab()?;
    let session = lab.console()?;
    session.wait_for("No bootable device", Duration::from_secs(20))?;
    let live = lab.session_on_web01(false)?;
    let id = live["id"].as_str().context("no id")?.to_owned();
    drop(session);
    let row = lab.session_on_web01(true)?;
    assert_eq!(row["outcome"], "completed", "{row}");
    assert_eq!(row["recording_state"], "complete", "{row}");
    let path = lab.recording_path(&row)?;

    // Intact, against the instance's own key.
    let out = lab
        .sekisho
        .cli(&["recording", "verify", &path.display().to_string()])?;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("intact"), "{}", text(&out));
    // A key other than the instance's is refused.
    // RFC 8032's first test key: valid, and certainly not this instance's.
    let other = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    let out = lab.sekisho.cli_raw(&[
        "recording",
        "verify",
        "--key",
        other,
        &path.display().to_string(),
    ])?;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    // Info names the session.
    let out = lab
        .sekisho
        .cli_raw(&["recording", "info", &path.display().to_string()])?;
    let info: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(info["session_id"], id.as_str());
    assert_eq!(info["protocol"], "console-serial");
    assert_eq!(info["user"], "tanaka");

    // Play (fast) by session id, through the catalogue.
    let out = lab
        .sekisho
        .cli(&["play", &id, "--speed", "16", "--skip-idle", "0.1"])?;
    assert!(out.status.success(), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("No bootable device"));

    // asciicast that the stock asciinema reads back.
    let cast = lab.sekisho.path("session.cast");
    let out = lab.sekisho.cli(&[
        "export",
        &id,
        "--format",
        "asciicast",
        "-o",
        &cast.display().to_string(),
    ])?;
    assert!(out.status.success(), "{}", text(&out));
    // asciinema 2.x opens /dev/tty: give it one with util-linux `script`.
    let cat = std::process::Command::new("script")
        .args(["-qec"])
        .arg(format!("asciinema cat {}", cast.display()))
        .arg("/dev/null")
        .stdin(std::process::Stdio::null())
        .output()?;
    assert!(cat.status.success(), "{}", text(&cat));
    assert!(String::from_utf8_lossy(&cat.stdout).contains("No bootable device"));
    Ok(())
}

#[test]
fn a_session_is_warned_then_ended_when_its_contract_window_closes() -> Result<()> {
    let window = crate::support::window_closing_soon();
    let lab = lab_with(|inv| crate::support::with_window(inv, &window))?;
    let session = lab.console()?;
    session.wait_for("No bootable device", Duration::from_secs(20))?;
    // The window closes in under five minutes: the warning comes at once.
    session.wait_for("closes in", Duration::from_secs(10))?;
    let row = lab.sekisho.wait_until(
        Duration::from_secs(200),
        "the session ended by its window",
        || {
            Ok(lab
                .sekisho
                .sessions()?
                .into_iter()
                .find(|s| s["target"] == "web01" && !s["ended_at"].is_null()))
        },
    )?;
    assert_eq!(row["outcome"], "window-closed", "{row}");
    session.wait_for("session ended", Duration::from_secs(5))?;
    Ok(())
}
