//! Graphical VM consoles over VNC against real peers: QEMU's VNC server as the VM console,
//! the OpenSSH client for `ssh USER@bastion console TARGET` (the one-time ticket), and a
//! Python RFB viewer (independent of Sekisho's codec, see `support/vnc_peers.rs`) as the
//! contractor's viewer, connecting from the contractor's VDI desktop address.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::support::{InstanceOptions, SekishoInstance, demo_inventory, require_peers};

#[path = "support/vnc_peers.rs"]
mod vnc_peers;

use vnc_peers::{
    DEMO_PASSWORD, Qemu, ViewerArgs, askpass, run_viewer, spawn_viewer, ssh_client, ssh_options,
    start_qemu_vnc, viewer_script, wait_viewer,
};

/// tanaka's VDI desktop (acme, contract in force at every hour in the demo inventory).
const TANAKA_DESKTOP: &str = "127.0.10.11";
/// Another address in the same VDI pool, not tanaka's.
const OTHER_DESKTOP: &str = "127.0.10.12";
/// yamada's desktop (globex, whose contract for app02 expired in 2021).
const YAMADA_DESKTOP: &str = "127.0.10.31";
/// The VNC password QEMU asks for in the upstream-password test.
const QEMU_VNC_PASSWORD: &str = "kvmpass1";

struct Lab {
    sekisho: SekishoInstance,
    _qemu: Qemu,
    askpass: std::path::PathBuf,
    script: std::path::PathBuf,
}

/// QEMU as web01's VNC console (with a VNC password from the secrets file if `password`), and a
/// Sekisho instance in front of it.
fn lab(password: bool) -> Result<Option<Lab>> {
    lab_with(password, |i| i)
}

/// [`lab`] with an edit of the inventory.
fn lab_with(password: bool, edit: impl Fn(String) -> String) -> Result<Option<Lab>> {
    if !require_peers(&["qemu-system-x86_64", "python3", "ssh"])? {
        return Ok(None);
    }
    let qemu = start_qemu_vnc(password.then_some(QEMU_VNC_PASSWORD))?;
    let mut inventory = edit(demo_inventory()).replace(
        "vnc_console = \"127.0.0.1:15901\"",
        &format!("vnc_console = \"127.0.0.1:{}\"", qemu.port),
    );
    let mut options = InstanceOptions::default();
    if password {
        inventory = inventory.replace(
            "name = \"kvm01\"\naddress = \"127.0.0.1\"",
            "name = \"kvm01\"\naddress = \"127.0.0.1\"\ncredential = \"kvm01-vnc\"",
        );
        options.secrets = Some(format!(
            "[credential.kvm01-vnc]\nusername = \"console\"\npassword = \"{QEMU_VNC_PASSWORD}\"\n"
        ));
    }
    let sekisho = SekishoInstance::start_with(&inventory, options)?;
    let askpass = askpass(sekisho.dir.path(), DEMO_PASSWORD)?;
    let script = viewer_script(sekisho.dir.path())?;
    Ok(Some(Lab {
        sekisho,
        _qemu: qemu,
        askpass,
        script,
    }))
}

impl Lab {
    /// `ssh USER@sekisho console TARGET` from `source`: exit status and output.
    fn console(&self, user: &str, target: &str, source: &str) -> Result<(bool, String)> {
        let out = ssh_client(&self.askpass)
            .args(ssh_options(self.sekisho.listen.ssh.port(), source))
            .arg(format!("{user}@127.0.0.1"))
            .arg(format!("console {target}"))
            .stdin(std::process::Stdio::null())
            .output()
            .context("run ssh console")?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok((out.status.success(), text))
    }

    /// A ticket for `user` on `target` from `source`; checks the printed VNC address.
    fn ticket(&self, user: &str, target: &str, source: &str) -> Result<String> {
        let (ok, text) = self.console(user, target, source)?;
        if !ok {
            bail!(
                "console {target} refused: {text}\n{}",
                self.sekisho.serve_log()
            );
        }
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(name).map(|v| v.trim().to_owned()))
                .with_context(|| format!("no `{name}` line in: {text}"))
        };
        let vnc = field("vnc:")?;
        assert_eq!(
            vnc,
            self.sekisho.listen.vnc.to_string(),
            "the printed VNC address is the listener"
        );
        let ticket = field("password:")?;
        assert_eq!(ticket.len(), 8, "VNC uses the first 8 bytes of a password");
        Ok(ticket)
    }

    fn viewer(&self, source: &str, password: &str) -> ViewerArgs {
        ViewerArgs {
            host: self.sekisho.listen.vnc.ip().to_string(),
            port: self.sekisho.listen.vnc.port(),
            source: source.to_owned(),
            password: password.to_owned(),
            ..ViewerArgs::default()
        }
    }

    fn denial(&self, rule: &str, contains: &str) -> Result<serde_json::Value> {
        self.sekisho.wait_until(
            Duration::from_secs(10),
            &format!("a {rule} denial with {contains:?}"),
            || {
                Ok(self.sekisho.denials()?.into_iter().find(|d| {
                    d["rule"] == rule && d["reason"].as_str().is_some_and(|r| r.contains(contains))
                }))
            },
        )
    }

    fn session(&self, live: bool) -> Result<serde_json::Value> {
        self.sekisho
            .wait_until(Duration::from_secs(10), "a console-vnc session row", || {
                Ok(self
                    .sekisho
                    .sessions()?
                    .into_iter()
                    .find(|s| s["protocol"] == "console-vnc" && s["ended_at"].is_null() == live))
            })
    }
}

/// The whole path: ticket, VNC auth, policy, QEMU's screen through Sekisho, SetEncodings
/// filtered (QEMU never answers the removed pseudo-encodings), the viewer's clipboard dropped,
/// the session recorded, and the ticket refused the second time.
#[test]
fn vnc_console_relays_screen_records_and_drops_clipboard() -> Result<()> {
    let Some(lab) = lab(false)? else {
        return Ok(());
    };
    let ticket = lab.ticket("tanaka", "web01", TANAKA_DESKTOP)?;
    let snapshot = lab.sekisho.path("screen.ppm");
    let mut args = lab.viewer(TANAKA_DESKTOP, &ticket);
    args.cut = Some("clipboard-secret-from-vdi".to_owned());
    args.hold = 1.5;
    args.snapshot = Some(snapshot.clone());
    let report = run_viewer(&lab.script, &args)?;
    assert_eq!(
        report["result"],
        "ok",
        "{report}\n{}",
        lab.sekisho.serve_log()
    );
    assert_eq!(report["server_version"], "RFB 003.008");
    assert_eq!(
        report["security_types"],
        serde_json::json!([2]),
        "VNC authentication only"
    );
    assert!(report["updates"].as_u64().unwrap_or(0) >= 1, "{report}");
    assert!(report["width"].as_u64().unwrap_or(0) > 0);
    for enc in report["encodings_seen"]
        .as_array()
        .context("encodings_seen")?
    {
        let enc = enc.as_i64().unwrap_or(0);
        assert!(
            [0, -223, -239].contains(&enc),
            "encoding {enc} was not filtered: {report}"
        );
    }
    assert!(
        report["nonblack_pixels"].as_u64().unwrap_or(0) > 100,
        "the firmware screen came through: {report}"
    );

    // The session is recorded, the clipboard drop is an event in it, and it verifies.
    let row = lab.session(false)?;
    assert_eq!(row["target"], "web01");
    assert_eq!(row["user"], "tanaka");
    let recording = row["recording"].as_str().context("recording path")?;
    let path = if std::path::Path::new(recording).is_absolute() {
        std::path::PathBuf::from(recording)
    } else {
        lab.sekisho.path(recording)
    };
    let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    assert!(
        bytes.len() > 2_000,
        "the screen is in the recording ({} bytes)",
        bytes.len()
    );
    let haystack = String::from_utf8_lossy(&bytes);
    assert!(
        !haystack.contains("clipboard-secret-from-vdi"),
        "the dropped clipboard must not reach the console or the recording"
    );
    let verify = lab
        .sekisho
        .cli_raw(&["recording", "verify", &path.display().to_string()])?;
    assert!(
        verify.status.success(),
        "recording verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        lab.sekisho.serve_log().contains("Clipboard dropped"),
        "the clipboard drop is logged (and recorded as an event)"
    );

    // Single use.
    let again = run_viewer(&lab.script, &lab.viewer(TANAKA_DESKTOP, &ticket))?;
    assert_eq!(again["result"], "refused", "{again}");
    assert!(
        again["reason"]
            .as_str()
            .unwrap_or("")
            .contains("already used"),
        "{again}"
    );
    lab.denial("vnc.ticket-invalid", "already used")?;
    Ok(())
}

#[test]
fn vnc_wrong_ticket_is_refused_and_recorded() -> Result<()> {
    let Some(lab) = lab(false)? else {
        return Ok(());
    };
    // A real ticket exists for this address, but the viewer guesses.
    let _ticket = lab.ticket("tanaka", "web01", TANAKA_DESKTOP)?;
    let report = run_viewer(&lab.script, &lab.viewer(TANAKA_DESKTOP, "guess123"))?;
    assert_eq!(report["result"], "refused", "{report}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap_or("")
            .contains("wrong VNC ticket"),
        "{report}"
    );
    lab.denial("vnc.ticket-invalid", "wrong VNC ticket")?;
    Ok(())
}

#[test]
fn vnc_ticket_is_bound_to_the_source_address() -> Result<()> {
    let Some(lab) = lab(false)? else {
        return Ok(());
    };
    let ticket = lab.ticket("tanaka", "web01", TANAKA_DESKTOP)?;
    let report = run_viewer(&lab.script, &lab.viewer(OTHER_DESKTOP, &ticket))?;
    assert_eq!(report["result"], "refused", "{report}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap_or("")
            .contains("issued to"),
        "{report}"
    );
    // The leaked ticket is void now, also from the right address.
    let report = run_viewer(&lab.script, &lab.viewer(TANAKA_DESKTOP, &ticket))?;
    assert_eq!(report["result"], "refused", "{report}");
    lab.denial("vnc.ticket-invalid", "issued to")?;
    Ok(())
}

/// Tickets are valid 60 s: this test waits that long.
#[test]
fn vnc_ticket_expires_after_60_seconds() -> Result<()> {
    let Some(lab) = lab(false)? else {
        return Ok(());
    };
    let ticket = lab.ticket("tanaka", "web01", TANAKA_DESKTOP)?;
    std::thread::sleep(Duration::from_secs(61));
    let report = run_viewer(&lab.script, &lab.viewer(TANAKA_DESKTOP, &ticket))?;
    assert_eq!(report["result"], "refused", "{report}");
    assert!(
        report["reason"].as_str().unwrap_or("").contains("expired"),
        "{report}"
    );
    lab.denial("vnc.ticket-invalid", "expired")?;
    Ok(())
}

#[test]
fn vnc_console_policy_denials() -> Result<()> {
    let Some(lab) = lab(false)? else {
        return Ok(());
    };
    // yamada's (globex's) contract for app02 expired in 2021: no ticket.
    let (ok, text) = lab.console("yamada", "app02", YAMADA_DESKTOP)?;
    assert!(!ok, "{text}");
    assert!(
        !text.contains("password:"),
        "no ticket for a denied console: {text}"
    );
    lab.denial("contract.expired", "")?;
    // A physical server has no hypervisor console.
    let (ok, text) = lab.console("tanaka", "file-phys02", TANAKA_DESKTOP)?;
    assert!(!ok, "{text}");
    assert!(!text.contains("password:"), "{text}");
    lab.denial("console.physical", "")?;
    Ok(())
}

#[test]
fn vnc_kill_ends_the_console_within_a_second() -> Result<()> {
    let Some(lab) = lab(false)? else {
        return Ok(());
    };
    let ticket = lab.ticket("tanaka", "web01", TANAKA_DESKTOP)?;
    let mut args = lab.viewer(TANAKA_DESKTOP, &ticket);
    args.hold = 60.0;
    let viewer = spawn_viewer(&lab.script, &args)?;
    let row = lab.session(true)?;
    let id = row["id"].as_str().context("session id")?.to_owned();
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    let started = Instant::now();
    let kill = lab.sekisho.cli(&["sessions", "kill", &id])?;
    assert!(
        kill.status.success(),
        "kill: {}",
        String::from_utf8_lossy(&kill.stderr)
    );
    let report = wait_viewer(viewer)?;
    assert!(started.elapsed() < Duration::from_secs(10));
    let closed_at = report["closed_at"]
        .as_f64()
        .with_context(|| format!("viewer was not disconnected: {report}"))?;
    let delay = closed_at - killed_at;
    eprintln!("kill -> viewer disconnected in {delay:.3} s");
    assert!(
        delay < 1.5,
        "kill took {delay:.3} s (the kill command itself included)"
    );
    let row = lab.session(false)?;
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["outcome"], "killed", "{row}");
    Ok(())
}

#[test]
fn vnc_console_ends_when_its_contract_window_closes() -> Result<()> {
    let window = crate::support::window_closing_soon();
    let Some(lab) = lab_with(false, |inv| crate::support::with_window(inv, &window))? else {
        return Ok(());
    };
    let ticket = lab.ticket("tanaka", "web01", TANAKA_DESKTOP)?;
    let mut args = lab.viewer(TANAKA_DESKTOP, &ticket);
    args.hold = 200.0;
    let viewer = spawn_viewer(&lab.script, &args)?;
    lab.session(true)?;
    let report = wait_viewer(viewer)?;
    assert!(
        report["closed_at"].as_f64().is_some(),
        "viewer was not disconnected: {report}"
    );
    let row = lab.session(false)?;
    assert_eq!(row["outcome"], "window-closed", "{row}");
    Ok(())
}

#[test]
fn vnc_upstream_password_comes_from_the_secrets_file() -> Result<()> {
    let Some(lab) = lab(true)? else { return Ok(()) };
    let ticket = lab.ticket("tanaka", "web01", TANAKA_DESKTOP)?;
    let report = run_viewer(&lab.script, &lab.viewer(TANAKA_DESKTOP, &ticket))?;
    assert_eq!(
        report["result"],
        "ok",
        "{report}\n{}",
        lab.sekisho.serve_log()
    );
    assert!(report["updates"].as_u64().unwrap_or(0) >= 1, "{report}");
    Ok(())
}
