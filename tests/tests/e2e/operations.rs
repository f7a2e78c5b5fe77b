//! Operations with the real binary: configuration reload on SIGHUP while a real SSH console
//! session (OpenSSH through Sekisho to the hypervisor's sshd) and a real VNC console session
//! (QEMU's VNC server, the Python RFB viewer) are live, including the re-decision that revokes
//! them, and graceful shutdown on SIGTERM/SIGINT that seals the recordings.
//!
//! These tests start `sekisho serve` themselves (not through the harness) because they send
//! it signals and wait for its exit status.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::ssh::ssh_peers::{
    self, DEMO_PASSWORD, LAB_PASSWORD, Peer, Session, askpass, console_inventory, console_secrets,
    export, output_text, recording_path,
};
use crate::support::faults::session_events;
use crate::support::{
    InstanceOptions, SekishoInstance, demo_inventory, require_peers, sekisho_bin, wait_for_port,
};
use crate::vnc::vnc_peers::{
    Qemu, Reaped, ViewerArgs, spawn_serve_with_env, spawn_viewer, ssh_client, ssh_options,
    start_qemu_vnc, viewer_script, wait_viewer,
};

/// tanaka's VDI desktop (internet-vpn path).
const TANAKA_DESKTOP: &str = "127.0.10.11";

/// A Sekisho instance whose `serve` this test owns (to signal it), plus the sshd console and,
/// when asked for, QEMU as web01's VNC console.
struct Ops {
    sekisho: SekishoInstance,
    serve: Option<Reaped>,
    _sshd: Peer,
    _qemu: Option<Qemu>,
    askpass: std::path::PathBuf,
}

impl Ops {
    fn start() -> Result<Ops> {
        Ops::start_with(None)
    }

    /// [`Ops::start`] with QEMU's VNC server as web01's graphical console.
    fn start_with_vnc() -> Result<Ops> {
        Ops::start_with(Some(start_qemu_vnc(None)?))
    }

    fn start_with(qemu: Option<Qemu>) -> Result<Ops> {
        let sshd = ssh_peers::start_sshd(&[])?;
        let mut inventory = console_inventory(14501, sshd.port);
        if let Some(q) = &qemu {
            inventory = inventory.replace(
                "vnc_console = \"127.0.0.1:15901\"",
                &format!("vnc_console = \"127.0.0.1:{}\"", q.port),
            );
        }
        let sekisho = SekishoInstance::start_with(
            // web01's serial console stays where the demo inventory has it.
            &inventory,
            InstanceOptions {
                secrets: Some(console_secrets()),
                no_serve: true,
                ..InstanceOptions::default()
            },
        )?;
        let askpass = askpass(sekisho.dir.path(), DEMO_PASSWORD, None)?;
        let mut ops = Ops {
            sekisho,
            serve: None,
            _sshd: sshd,
            _qemu: qemu,
            askpass,
        };
        ops.spawn_serve()?;
        Ok(ops)
    }

    fn spawn_serve(&mut self) -> Result<()> {
        self.serve = Some(spawn_serve_with_env(
            &self.sekisho,
            &[("RUST_LOG", "info")],
        )?);
        // "Ready" is logged once the SIGHUP handler is installed.
        self.wait_log("Ready", 1, Duration::from_secs(10))
    }

    fn signal(&self, name: &str) -> Result<()> {
        let pid = self.serve.as_ref().context("serve not running")?.0.id();
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(pid.to_string())
            .status()?
            .success();
        if !ok {
            bail!("kill -{name} {pid} failed");
        }
        Ok(())
    }

    /// Waits until `needle` appears at least `count` times in serve's log.
    fn wait_log(&self, needle: &str, count: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.sekisho.serve_log();
            if log.matches(needle).count() >= count {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{needle:?} not logged {count} time(s) within {timeout:?}:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_serve_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let child = &mut self.serve.as_mut().context("serve not running")?.0;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                self.serve = None;
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!(
                    "serve did not exit within {timeout:?}:\n{}",
                    self.sekisho.serve_log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn ssh_tt(&self, login: &str) -> Result<Session> {
        ssh_peers::ssh_tt(
            &self.askpass,
            self.sekisho.listen.ssh.port(),
            TANAKA_DESKTOP,
            login,
        )
    }

    /// A console session on app02 through Sekisho, with a shell prompt working.
    fn console(&self, mark: &str) -> Result<Session> {
        let mut s = self.ssh_tt("tanaka+app02")?;
        s.wait_for("this session is recorded", Duration::from_secs(20))?;
        s.send(format!("echo {mark}-$((40+2))\n").as_bytes())?;
        s.wait_for(&format!("{mark}-42"), Duration::from_secs(20))?;
        Ok(s)
    }

    fn write_config(&self, edit: impl Fn(&str) -> String) -> Result<()> {
        let text = std::fs::read_to_string(&self.sekisho.config)?;
        let new = edit(&text);
        assert_ne!(text, new, "the edit must change the configuration");
        std::fs::write(&self.sekisho.config, new)?;
        Ok(())
    }

    fn session_rows(&self, target: &str) -> Result<Vec<serde_json::Value>> {
        ssh_peers::sessions_on(&self.sekisho, target)
    }

    /// The details of the audit events of `kind`, oldest first, read from the catalogue.
    fn audit(&self, kind: &str) -> Result<Vec<String>> {
        self.sekisho.audit_events(kind)
    }
}

impl Drop for Ops {
    fn drop(&mut self) {
        // serve ends before the instance (and its directory) does.
        self.serve = None;
        if std::thread::panicking() {
            eprintln!("--- sekisho serve log ---\n{}", self.sekisho.serve_log());
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `text` without the `[[user]]` table of `name`.
fn without_user(text: &str, name: &str) -> String {
    let marker = format!("[[user]]\nname = \"{name}\"\n");
    let Some(start) = text.find(&marker) else {
        return text.to_owned();
    };
    let rest = &text[start + marker.len()..];
    let end = rest
        .find("\n[")
        .map_or(text.len(), |i| start + marker.len() + i + 1);
    format!("{}{}", &text[..start], &text[end..])
}

#[test]
fn operations_sighup_reload_keeps_allowed_live_sessions_and_revokes_denied_ones() -> Result<()> {
    if !require_peers(&["ssh", "sshd"])? {
        return Ok(());
    }
    let ops = Ops::start()?;
    let original = std::fs::read_to_string(&ops.sekisho.config)?;
    let mut live = ops.console("BEFORE")?;

    // 1. A broken configuration: refused, the running one stays, the live session goes on.
    ops.write_config(|t| t.replace("[[contractor]]", "[[contractor]\n"))?;
    ops.signal("HUP")?;
    ops.wait_log("Configuration reload refused", 1, Duration::from_secs(10))?;
    let failed = ops.audit("config reload failed")?;
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(
        failed[0].contains("running configuration kept"),
        "{failed:?}"
    );
    live.send(b"echo BROKEN-$((1+1))\n")?;
    live.wait_for("BROKEN-2", Duration::from_secs(10))?;
    // A secrets file anyone may read: refused too, and the catalogue gets no parser detail.
    std::fs::write(&ops.sekisho.config, &original)?;
    let secrets = ops.sekisho.path("data/secrets.toml");
    set_mode(&secrets, 0o644)?;
    ops.signal("HUP")?;
    ops.wait_log("Configuration reload refused", 2, Duration::from_secs(10))?;
    let failed = ops.audit("config reload failed")?;
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed[1].contains("secrets file"), "{failed:?}");
    assert!(!failed[1].contains(LAB_PASSWORD), "{failed:?}");
    set_mode(&secrets, 0o600)?;
    // New logins are still decided by the old configuration.
    let mut second = ops.console("STILL")?;
    second.send(b"exit\n")?;
    second.wait_exit(Duration::from_secs(15))?;

    // 2. sato removed: tanaka's live session is re-decided, still allowed, and goes on.
    ops.write_config(|_| without_user(&original, "sato"))?;
    ops.signal("HUP")?;
    ops.wait_log("reloaded (", 1, Duration::from_secs(10))?;
    let reloaded = ops.audit("config reloaded")?;
    assert_eq!(reloaded.len(), 1, "{reloaded:?}");
    assert!(reloaded[0].contains("3 users"), "{reloaded:?}");
    // Several supervisor passes after the reload.
    std::thread::sleep(Duration::from_secs(1));
    live.send(b"echo AFTER-$((2+1))\n")?;
    live.wait_for("AFTER-3", Duration::from_secs(10))?;
    let rows = ops.session_rows("app02")?;
    assert!(
        rows.iter().any(|r| r["ended_at"].is_null()),
        "the console must still be live: {rows:?}"
    );

    // 3. acme's contract no longer names app02: the live session is revoked with a message,
    //    and a new login of tanaka to app02 is refused.
    ops.write_config(|_| {
        original.replacen(
            "targets = [\"web01\", \"app02\", \"db-phys01\", \"file-phys02\"]",
            "targets = [\"web01\", \"db-phys01\", \"file-phys02\"]",
            1,
        )
    })?;
    ops.signal("HUP")?;
    ops.wait_log("reloaded (", 2, Duration::from_secs(10))?;
    live.wait_for("sekisho: session ended", Duration::from_secs(10))?;
    live.wait_exit(Duration::from_secs(15))?;
    let ended = ops.ended_row("app02", "revoked")?;
    assert_eq!(ended["user"], "tanaka");
    ops.revocation_event(&ended, "contract.none")?;
    let mut refused = ops.ssh_tt("tanaka+app02")?;
    let status = refused.wait_exit(Duration::from_secs(30))?;
    assert_ne!(status.code(), Some(0), "{}", refused.output());
    assert!(
        refused.output().contains("denied (contract.none)"),
        "{}",
        refused.output()
    );
    Ok(())
}

/// How soon after the SIGHUP a revoked session must be told to end: the supervisor re-decides
/// right after a reload, so as soon as an emergency stop (the same generous bound).
const REVOKE_WITHIN: Duration = crate::support::EMERGENCY_STOP;

impl Ops {
    /// A viewer on web01's VNC console from tanaka's desktop, with a ticket taken through
    /// `ssh tanaka@sekisho console web01`, holding the console up to a minute; and the live
    /// session's row.
    fn vnc_console(&self) -> Result<(std::process::Child, serde_json::Value)> {
        let out = ssh_client(&self.askpass)
            .args(ssh_options(self.sekisho.listen.ssh.port(), TANAKA_DESKTOP))
            .arg("tanaka@127.0.0.1")
            .arg("console web01")
            .stdin(Stdio::null())
            .output()
            .context("run ssh console")?;
        let text = output_text(&out);
        let ticket = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("password:").map(str::trim))
            .with_context(|| format!("no ticket in: {text}"))?
            .to_owned();
        let script = viewer_script(self.sekisho.dir.path())?;
        let viewer = spawn_viewer(
            &script,
            &ViewerArgs {
                host: self.sekisho.listen.vnc.ip().to_string(),
                port: self.sekisho.listen.vnc.port(),
                source: TANAKA_DESKTOP.to_owned(),
                password: ticket,
                hold: 60.0,
                ..ViewerArgs::default()
            },
        )?;
        let row = self.sekisho.wait_until(
            Duration::from_secs(15),
            "a live console-vnc session",
            || {
                Ok(self
                    .session_rows("web01")?
                    .into_iter()
                    .find(|r| r["protocol"] == "console-vnc" && r["ended_at"].is_null()))
            },
        )?;
        Ok((viewer, row))
    }

    /// The ended session on `target` with `outcome` and a sealed recording.
    fn ended_row(&self, target: &str, outcome: &str) -> Result<serde_json::Value> {
        self.sekisho.wait_until(
            Duration::from_secs(10),
            &format!("a {outcome} session on {target}"),
            || {
                Ok(self
                    .session_rows(target)?
                    .into_iter()
                    .find(|r| r["outcome"] == outcome && r["recording_state"] == "complete"))
            },
        )
    }

    /// The session of `row` has a `revoked` event naming `rule` in the catalogue, and the
    /// same rule in its recording.
    fn revocation_event(&self, row: &serde_json::Value, rule: &str) -> Result<()> {
        let id = row["id"].as_str().context("session id")?;
        let events = session_events(&self.sekisho, id)?;
        assert!(
            events
                .iter()
                .any(|(kind, detail)| kind == "revoked" && detail.starts_with(&format!("{rule}: "))),
            "{events:?}"
        );
        let recorded = recorded_events(&self.recording_path(row)?)?;
        assert!(
            recorded.iter().any(|(kind, detail)| {
                *kind == recorder::EventKind::Policy
                    && detail.starts_with(&format!("revoked: {rule}: "))
            }),
            "{recorded:?}"
        );
        Ok(())
    }
}

/// The events of the recording at `path`: kind and detail.
fn recorded_events(path: &Path) -> Result<Vec<(recorder::EventKind, String)>> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let rec = recorder::reader::Recording::parse(&bytes)?;
    let mut out = Vec::new();
    for r in rec.records() {
        if let recorder::format::RecordKind::Event(e) = r?.kind {
            out.push((e.kind, e.detail));
        }
    }
    Ok(out)
}

/// Seconds since the epoch, as the viewer reports its `closed_at`.
fn epoch_now() -> Result<f64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64())
}

#[test]
fn operations_sighup_revokes_the_live_ssh_and_vnc_consoles_of_a_removed_user_promptly() -> Result<()>
{
    if !require_peers(&["ssh", "sshd", "qemu-system-x86_64", "python3"])? {
        return Ok(());
    }
    let ops = Ops::start_with_vnc()?;
    let original = std::fs::read_to_string(&ops.sekisho.config)?;
    let live = ops.console("LIVE")?;
    let (viewer, vnc_row) = ops.vnc_console()?;

    ops.write_config(|_| without_user(&original, "tanaka"))?;
    let hup_epoch = epoch_now()?;
    let hup = Instant::now();
    ops.signal("HUP")?;
    let told = live.wait_for("sekisho: session ended", Duration::from_secs(10))?;
    let ssh_delay = told.duration_since(hup);
    let report = wait_viewer(viewer)?;
    let closed_at = report["closed_at"]
        .as_f64()
        .with_context(|| format!("viewer was not disconnected: {report}"))?;
    let vnc_delay = closed_at - hup_epoch;
    eprintln!("SIGHUP -> SSH console told {ssh_delay:?}, VNC viewer disconnected {vnc_delay:.3} s");
    assert!(
        ssh_delay < REVOKE_WITHIN,
        "SSH console told after {ssh_delay:?}"
    );
    assert!(
        vnc_delay < REVOKE_WITHIN.as_secs_f64(),
        "VNC viewer disconnected after {vnc_delay:.3} s"
    );
    assert!(live.output().contains("user.unknown"), "{}", live.output());

    let ssh_row = ops.ended_row("app02", "revoked")?;
    assert_eq!(ssh_row["user"], "tanaka");
    ops.revocation_event(&ssh_row, "user.unknown")?;
    let vnc_ended = ops.ended_row("web01", "revoked")?;
    assert_eq!(vnc_ended["id"], vnc_row["id"]);
    ops.revocation_event(&vnc_ended, "user.unknown")?;
    // The revocations are deny decisions too.
    let denials = ops.sekisho.denials()?;
    assert!(
        denials
            .iter()
            .filter(|d| d["rule"] == "user.unknown" && d["user"] == "tanaka")
            .count()
            >= 2,
        "{denials:?}"
    );
    Ok(())
}

#[test]
fn operations_sighup_revokes_a_live_console_whose_desktop_is_given_to_another_user() -> Result<()> {
    if !require_peers(&["ssh", "sshd"])? {
        return Ok(());
    }
    let ops = Ops::start()?;
    let live = ops.console("LIVE")?;
    ops.write_config(|t| {
        t.replacen(
            "desktops = [\"127.0.10.11\"]",
            "desktops = [\"127.0.10.13\"]",
            1,
        )
        .replacen(
            "desktops = [\"127.0.11.21\"]",
            "desktops = [\"127.0.11.21\", \"127.0.10.11\"]",
            1,
        )
    })?;
    let hup = Instant::now();
    ops.signal("HUP")?;
    let told = live.wait_for("sekisho: session ended", Duration::from_secs(10))?;
    let delay = told.duration_since(hup);
    assert!(delay < REVOKE_WITHIN, "told after {delay:?}");
    let row = ops.ended_row("app02", "revoked")?;
    ops.revocation_event(&row, "source.desktop-mismatch")?;
    Ok(())
}

/// Shuts serve down with `signal` while a console session is live; checks the exit, the
/// session's outcome and its sealed recording.
fn graceful_shutdown(signal: &str) -> Result<()> {
    if !require_peers(&["ssh", "sshd"])? {
        return Ok(());
    }
    let mut ops = Ops::start()?;
    let mut live = ops.console("LIVE")?;
    ops.signal(signal)?;
    let status = ops.wait_serve_exit(Duration::from_secs(30))?;
    assert_eq!(status.code(), Some(0), "{}", ops.sekisho.serve_log());
    live.wait_for("shutting down", Duration::from_secs(10))?;
    live.wait_exit(Duration::from_secs(15))?;
    let log = ops.sekisho.serve_log();
    assert!(
        log.contains(&format!("signal=\"{signal}\"")) || log.contains(signal),
        "{log}"
    );
    assert!(
        log.contains("Every live session ended and its recording sealed"),
        "{log}"
    );
    // serve is stopped; the catalogue is SQLite, so the CLI reads it directly.
    let rows = ops.session_rows("app02")?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = rows.first().context("no session row")?;
    assert_eq!(row["outcome"], "shutdown", "{row}");
    assert_eq!(row["recording_state"], "complete", "{row}");
    let file = ops.recording_path(row)?;
    let out = ops
        .sekisho
        .cli_raw(&["recording", "verify", &file.display().to_string()])?;
    let text = output_text(&out);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("intact"), "{text}");
    // The recording holds the reason the session ended.
    assert!(export(&ops.sekisho, &file, "txt", "export.txt")?.contains("LIVE-42"));
    // The next start finds nothing to recover.
    ops.spawn_serve()?;
    assert!(
        !ops.sekisho
            .serve_log()
            .contains("Interrupted session sealed"),
        "{}",
        ops.sekisho.serve_log()
    );
    Ok(())
}

#[test]
fn operations_sigterm_ends_live_sessions_seals_recordings_and_exits_0() -> Result<()> {
    graceful_shutdown("TERM")
}

#[test]
fn operations_sigint_ends_live_sessions_seals_recordings_and_exits_0() -> Result<()> {
    graceful_shutdown("INT")
}

impl Ops {
    fn sql(&self, statement: &str) -> Result<String> {
        let out = Command::new("sqlite3")
            .arg(self.sekisho.path("data/sekisho.db"))
            .arg(statement)
            .output()
            .context("sqlite3")?;
        if !out.status.success() {
            bail!("sqlite3: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Moves a session `days` into the past, as if it had run then (the catalogue's fixed-width
    /// UTC text timestamps).
    fn age(&self, id: &str, days: i64, ended: bool) -> Result<()> {
        let at = (chrono::Utc::now() - chrono::Duration::days(days))
            .format("%Y-%m-%dT%H:%M:%S%.6fZ")
            .to_string();
        let set_end = if ended {
            format!(", ended_at = '{at}'")
        } else {
            String::new()
        };
        self.sql(&format!(
            "UPDATE sessions SET started_at = '{at}'{set_end} WHERE id = '{id}'"
        ))?;
        Ok(())
    }

    fn recording_path(&self, row: &serde_json::Value) -> Result<std::path::PathBuf> {
        recording_path(&self.sekisho, row)
    }

    fn prune(&self, dry_run: bool) -> Result<String> {
        let mut args = vec!["recording", "prune"];
        if dry_run {
            args.push("--dry-run");
        }
        let out = self.sekisho.cli(&args)?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(text)
    }
}

/// Ends a console session on app02 normally and returns its catalogue row.
fn completed_console(ops: &Ops, mark: &str) -> Result<serde_json::Value> {
    let mut s = ops.console(mark)?;
    s.send(b"exit\n")?;
    s.wait_exit(Duration::from_secs(15))?;
    ops.sekisho.wait_until(
        Duration::from_secs(10),
        "a completed console session",
        || {
            Ok(ops
                .session_rows("app02")?
                .into_iter()
                .find(|r| r["outcome"] == "completed" && r["recording_state"] == "complete"))
        },
    )
}

#[test]
fn operations_retention_deletes_old_recordings_of_ended_sessions_and_writes_it_down() -> Result<()>
{
    if !require_peers(&["ssh", "sshd", "sqlite3"])? {
        return Ok(());
    }
    let mut ops = Ops::start()?;
    ops.write_config(|t| {
        t.replacen(
            "[recording]\nrequired = true",
            "[recording]\nrequired = true\nretention_days = 30",
            1,
        )
    })?;

    // An old ended session, and a live one that started even earlier.
    let old = completed_console(&ops, "OLD")?;
    let old_id = old["id"].as_str().context("id")?.to_owned();
    let old_file = ops.recording_path(&old)?;
    ops.age(&old_id, 40, true)?;
    let mut live = ops.console("LIVE")?;
    let live_row = ops
        .session_rows("app02")?
        .into_iter()
        .find(|r| r["ended_at"].is_null())
        .context("no live session")?;
    let live_id = live_row["id"].as_str().context("id")?.to_owned();
    let live_file = ops.recording_path(&live_row)?;
    ops.age(&live_id, 60, false)?;

    let dry = ops.prune(true)?;
    assert!(dry.contains("would delete 1 recordings"), "{dry}");
    assert!(dry.contains(&old_id), "{dry}");
    assert!(old_file.exists(), "a dry run deletes nothing");

    let done = ops.prune(false)?;
    assert!(done.contains("deleted 1 recordings"), "{done}");
    assert!(!old_file.exists(), "{} must be deleted", old_file.display());
    assert!(
        live_file.exists(),
        "a live session's recording is never deleted"
    );
    let row = ops
        .sekisho
        .sessions()?
        .into_iter()
        .find(|r| r["id"] == old_id.as_str())
        .context("old row")?;
    assert_eq!(row["recording_state"], "deleted", "{row}");
    let events = ops.audit("retention deleted")?;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(
        events[0].contains(&old_id) && events[0].contains("after 30 days"),
        "{events:?}"
    );
    live.send(b"echo STILL-$((1+1))\n")?;
    live.wait_for("STILL-2", Duration::from_secs(10))?;
    drop(live);

    // serve's own pass (once at start, then hourly) does the same.
    let second =
        ops.sekisho
            .wait_until(Duration::from_secs(10), "the live session ended", || {
                Ok(ops
                    .sekisho
                    .sessions()?
                    .into_iter()
                    .find(|r| r["id"] == live_id.as_str() && !r["ended_at"].is_null()))
            })?;
    ops.age(&live_id, 45, true)?;
    let second_file = ops.recording_path(&second)?;
    assert!(second_file.exists());
    ops.signal("TERM")?;
    ops.wait_serve_exit(Duration::from_secs(30))?;
    ops.spawn_serve()?;
    ops.sekisho
        .wait_until(Duration::from_secs(15), "serve's retention pass", || {
            Ok((!second_file.exists()).then_some(()))
        })?;
    ops.sekisho.wait_until(
        Duration::from_secs(10),
        "the second deletion in the catalogue",
        || Ok((ops.audit("retention deleted")?.len() == 2).then_some(())),
    )?;
    Ok(())
}

#[test]
fn operations_log_json_writes_one_json_object_per_line() -> Result<()> {
    let sekisho = SekishoInstance::start_with(
        &demo_inventory(),
        InstanceOptions {
            no_serve: true,
            ..InstanceOptions::default()
        },
    )?;
    let log = sekisho.path("serve.log");
    let mut child = Command::new(sekisho_bin()?)
        .args(["--log-json", "serve", "--config"])
        .arg(&sekisho.config)
        .current_dir(sekisho.dir.path())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let result = (|| -> Result<()> {
        wait_for_port(sekisho.listen.ssh, Duration::from_secs(20))?;
        sekisho.wait_until(Duration::from_secs(10), "Ready", || {
            Ok(sekisho.serve_log().contains("Ready").then_some(()))
        })?;
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()?
            .success();
        anyhow::ensure!(ok, "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            anyhow::ensure!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert_eq!(status.code(), Some(0));
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    result?;
    let text = sekisho.serve_log();
    let mut messages = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("not a JSON log line: {line}"))?;
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    for want in ["Starting", "Ready", "Shutting down", "Stopped"] {
        assert!(
            messages.iter().any(|m| m == want),
            "{want} missing: {messages:?}"
        );
    }
    Ok(())
}
