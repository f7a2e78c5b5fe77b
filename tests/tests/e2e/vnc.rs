//! Graphical VM consoles over VNC against real peers: QEMU's VNC server as the VM console
//! (also with a one-time password set through its QMP monitor), TigerVNC's Xvnc as a console
//! that originates clipboard, the OpenSSH client for `ssh USER@bastion console TARGET` (the
//! one-time ticket), and as the contractor's viewer TigerVNC's `vncviewer` under its own Xvfb
//! (`vnc_tigervnc_*`) or a Python RFB viewer (independent of Sekisho's codec, see
//! `support/vnc_peers.rs`) for checks a GUI viewer cannot report (encodings seen, exact
//! timing of the close, hostile bytes).
//!
//! TigerVNC's viewer cannot bind a source address: an iptables SNAT rule on loopback for the
//! instance's VNC port (removed at the end) makes it connect from tanaka's VDI desktop.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::support::faults::session_events;
use crate::support::inventory::{card, with_card};
use crate::support::{InstanceOptions, SekishoInstance, demo_inventory, require_peers};

#[path = "support/vnc_peers.rs"]
pub(crate) mod vnc_peers;

use vnc_peers::{
    DEMO_PASSWORD, Qemu, Reaped, Snat, TigerViewer, ViewerArgs, askpass, get_selection, run_viewer,
    screen_mean, set_selection, spawn_serve_with_env, spawn_viewer, ssh_client, ssh_options,
    start_qemu_vnc, start_qemu_vnc_qmp, start_xvfb, start_xvnc, viewer_script, wait_viewer,
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
    /// A `serve` started here with extra environment (dropped before the instance's directory).
    _serve: Option<Reaped>,
    /// SNAT for TigerVNC's viewer (removed before the instance ends).
    _snat: Option<Snat>,
    sekisho: SekishoInstance,
    _qemu: Option<Qemu>,
    askpass: std::path::PathBuf,
    script: std::path::PathBuf,
}

/// How a test's lab is built.
#[derive(Default)]
struct LabOptions {
    /// QEMU asks for a VNC password, taken from the secrets file.
    password: bool,
    /// web01's console is this port (e.g. Xvnc) instead of a QEMU started here.
    console_port: Option<u16>,
    /// Environment for `serve` (e.g. a short ticket validity).
    env: Vec<(&'static str, &'static str)>,
    /// Connections to Sekisho's VNC listener come from tanaka's desktop (for TigerVNC's
    /// viewer, which cannot bind a source address).
    snat: bool,
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
    build_lab(
        LabOptions {
            password,
            ..LabOptions::default()
        },
        edit,
    )
}

/// Peers of the TigerVNC tests.
const TIGER_PEERS: &[&str] = &[
    "qemu-system-x86_64",
    "ssh",
    "vncviewer",
    "vncpasswd",
    "Xvfb",
    "Xvnc",
    "xclip",
    "xdotool",
    "xwd",
    "convert",
    "iptables",
];

fn build_lab(options: LabOptions, edit: impl Fn(String) -> String) -> Result<Option<Lab>> {
    let password = options.password;
    let (qemu, port) = match options.console_port {
        Some(port) => (None, port),
        None => {
            let q = start_qemu_vnc(password.then_some(QEMU_VNC_PASSWORD))?;
            let port = q.port;
            (Some(q), port)
        }
    };
    let mut inventory = edit(demo_inventory()).replace(
        "vnc_console = \"127.0.0.1:15901\"",
        &format!("vnc_console = \"127.0.0.1:{port}\""),
    );
    let mut instance = InstanceOptions::default();
    if password {
        inventory = inventory.replace(
            "name = \"kvm01\"\naddress = \"127.0.0.1\"",
            "name = \"kvm01\"\naddress = \"127.0.0.1\"\ncredential = \"kvm01-vnc\"",
        );
        instance.secrets = Some(format!(
            "[credential.kvm01-vnc]\nusername = \"console\"\npassword = \"{QEMU_VNC_PASSWORD}\"\n"
        ));
    }
    instance.no_serve = !options.env.is_empty();
    let sekisho = SekishoInstance::start_with(&inventory, instance)?;
    let serve = if options.env.is_empty() {
        None
    } else {
        Some(spawn_serve_with_env(&sekisho, &options.env)?)
    };
    let snat = if options.snat {
        Some(Snat::add(sekisho.listen.vnc.port(), TANAKA_DESKTOP)?)
    } else {
        None
    };
    let askpass = askpass(sekisho.dir.path(), DEMO_PASSWORD)?;
    let script = viewer_script(sekisho.dir.path())?;
    Ok(Some(Lab {
        _serve: serve,
        _snat: snat,
        sekisho,
        _qemu: qemu,
        askpass,
        script,
    }))
}

/// A lab for TigerVNC's viewer (which connects from tanaka's desktop through SNAT), built from
/// `options`.
fn tiger_lab(options: LabOptions) -> Result<Option<Lab>> {
    if !require_peers(TIGER_PEERS)? {
        return Ok(None);
    }
    build_lab(
        LabOptions {
            snat: true,
            ..options
        },
        |i| i,
    )
}

/// A viewer's `report` says it was refused for a reason containing `contains`.
fn assert_refused(report: &serde_json::Value, contains: &str) {
    assert_eq!(report["result"], "refused", "{report}");
    assert!(
        report["reason"].as_str().unwrap_or("").contains(contains),
        "{report}"
    );
}

/// A viewer's `report` says it got the console's screen.
fn assert_viewed(report: &serde_json::Value, sekisho: &SekishoInstance) {
    assert_eq!(report["result"], "ok", "{report}\n{}", sekisho.serve_log());
    assert!(report["updates"].as_u64().unwrap_or(0) >= 1, "{report}");
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

    /// The recording file of a session row.
    fn recording(&self, row: &serde_json::Value) -> Result<std::path::PathBuf> {
        crate::ssh::ssh_peers::recording_path(&self.sekisho, row)
    }

    /// `recording verify` accepts the recording at `path`.
    fn assert_verifies(&self, path: &std::path::Path) -> Result<()> {
        let verify = self
            .sekisho
            .cli_raw(&["recording", "verify", &path.display().to_string()])?;
        assert!(
            verify.status.success(),
            "recording verify: {}",
            crate::ssh::ssh_peers::output_text(&verify)
        );
        Ok(())
    }

    /// `sessions kill ID`, which must succeed.
    fn kill(&self, id: &str) -> Result<()> {
        let kill = self.sekisho.cli(&["sessions", "kill", id])?;
        assert!(
            kill.status.success(),
            "kill: {}",
            String::from_utf8_lossy(&kill.stderr)
        );
        Ok(())
    }

    /// A ticket for tanaka on web01 from his desktop.
    fn tanaka_ticket(&self) -> Result<String> {
        self.ticket("tanaka", "web01", TANAKA_DESKTOP)
    }

    /// The viewer's arguments toward web01 from tanaka's desktop, with a fresh ticket of his.
    fn tanaka_viewer(&self) -> Result<ViewerArgs> {
        Ok(self.viewer(TANAKA_DESKTOP, &self.tanaka_ticket()?))
    }

    /// tanaka takes a ticket for web01 and a viewer with it gets the console's screen: its report.
    fn tanaka_views_web01(&self) -> Result<serde_json::Value> {
        let report = run_viewer(&self.script, &self.tanaka_viewer()?)?;
        assert_viewed(&report, &self.sekisho);
        Ok(report)
    }

    /// Waits for a catalogue event of session `id` of `kind` whose detail contains `contains`.
    fn event(&self, id: &str, kind: &str, contains: &str) -> Result<(String, String)> {
        self.sekisho.wait_until(
            Duration::from_secs(10),
            &format!("a {kind} event with {contains:?} in session {id}"),
            || {
                Ok(session_events(&self.sekisho, id)?
                    .into_iter()
                    .find(|(k, d)| k == kind && d.contains(contains)))
            },
        )
    }

    /// TigerVNC's viewer on `display`, connecting to Sekisho's VNC listener with `ticket`.
    fn tiger(&self, display: &str, ticket: &str) -> Result<TigerViewer> {
        TigerViewer::start(
            display,
            self.sekisho.dir.path(),
            self.sekisho.listen.vnc,
            ticket,
        )
    }

    /// TigerVNC's viewer on `display` with `ticket`, once it shows the console: the viewer and
    /// the live session's row.
    fn tiger_connected(
        &self,
        display: &str,
        ticket: &str,
    ) -> Result<(TigerViewer, serde_json::Value)> {
        let viewer = self.tiger(display, ticket)?;
        viewer.wait_log("Using pixel format", Duration::from_secs(15))?;
        let row = self.session(true)?;
        Ok((viewer, row))
    }

    /// A TigerVNC viewer given `ticket` is refused with a reason containing `contains`, and the
    /// refusal is a `vnc.ticket-invalid` denial in the catalogue.
    fn tiger_refused(&self, display: &str, ticket: &str, contains: &str) -> Result<()> {
        let viewer = self.tiger(display, ticket)?;
        let log = viewer.wait_log("Authentication failure", Duration::from_secs(15))?;
        assert!(
            log.contains(contains),
            "the viewer shows the reason {contains:?}:\n{log}"
        );
        self.denial("vnc.ticket-invalid", contains)?;
        Ok(())
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
    let ticket = lab.tanaka_ticket()?;
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
    let path = lab.recording(&row)?;
    let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
    assert!(
        bytes.len() > 2_000,
        "the screen is in the recording ({} bytes)",
        bytes.len()
    );
    assert!(
        !recording_contains(&path, b"clipboard-secret-from-vdi")?,
        "the dropped clipboard must not reach the console or the recording"
    );
    lab.assert_verifies(&path)?;
    assert!(
        lab.sekisho.serve_log().contains("Clipboard dropped"),
        "the clipboard drop is logged (and recorded as an event)"
    );

    // Single use.
    let again = run_viewer(&lab.script, &lab.viewer(TANAKA_DESKTOP, &ticket))?;
    assert_refused(&again, "already used");
    lab.denial("vnc.ticket-invalid", "already used")?;
    Ok(())
}

#[test]
fn vnc_wrong_ticket_is_refused_and_recorded() -> Result<()> {
    let Some(lab) = lab(false)? else {
        return Ok(());
    };
    // A real ticket exists for this address, but the viewer guesses.
    let _ticket = lab.tanaka_ticket()?;
    let report = run_viewer(&lab.script, &lab.viewer(TANAKA_DESKTOP, "guess123"))?;
    assert_refused(&report, "wrong VNC ticket");
    lab.denial("vnc.ticket-invalid", "wrong VNC ticket")?;
    Ok(())
}

#[test]
fn vnc_ticket_is_bound_to_the_source_address() -> Result<()> {
    let Some(lab) = lab(false)? else {
        return Ok(());
    };
    let ticket = lab.tanaka_ticket()?;
    let report = run_viewer(&lab.script, &lab.viewer(OTHER_DESKTOP, &ticket))?;
    assert_refused(&report, "issued to");
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
    let ticket = lab.tanaka_ticket()?;
    std::thread::sleep(Duration::from_secs(61));
    let report = run_viewer(&lab.script, &lab.viewer(TANAKA_DESKTOP, &ticket))?;
    assert_refused(&report, "expired");
    lab.denial("vnc.ticket-invalid", "expired")?;
    Ok(())
}

/// A matrix card user's VNC console needs a card pass from the same desktop within
/// `auth.second_factor_ttl`: the SSH login that asks for the ticket passes it, and a ticket
/// redeemed after the pass expired is refused (`auth.second-factor`) with where to pass it.
#[test]
fn vnc_card_user_needs_a_recent_card_pass_from_the_desktop() -> Result<()> {
    let card = card();
    let Some(mut lab) = lab_with(false, |inv| {
        format!(
            "{}\n[auth]\nsecond_factor_ttl = 4\n",
            with_card(&inv, "127.0.10.11")
        )
    })?
    else {
        return Ok(());
    };
    let dir = lab.sekisho.path("card");
    std::fs::create_dir_all(&dir)?;
    lab.askpass = crate::ssh::ssh_peers::askpass(&dir, DEMO_PASSWORD, Some(&card))?;
    // Right after the SSH login that passed the card: the console.
    lab.tanaka_views_web01()?;
    // A ticket redeemed once the pass is older than the TTL: refused, and why.
    let ticket = lab.tanaka_ticket()?;
    std::thread::sleep(Duration::from_secs(5));
    let report = run_viewer(&lab.script, &lab.viewer(TANAKA_DESKTOP, &ticket))?;
    assert_refused(&report, "ssh tanaka@bastion");
    let row = lab.denial("auth.second-factor", "has a matrix card")?;
    assert_eq!(row["user"], "tanaka");
    assert_eq!(row["target"], "web01");
    assert_eq!(row["protocol"], "console-vnc");
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
fn vnc_kill_ends_the_console_promptly() -> Result<()> {
    let Some(lab) = lab(false)? else {
        return Ok(());
    };
    let mut args = lab.tanaka_viewer()?;
    args.hold = 60.0;
    let viewer = spawn_viewer(&lab.script, &args)?;
    let row = lab.session(true)?;
    let id = row["id"].as_str().context("session id")?.to_owned();
    let killed_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs_f64();
    let started = Instant::now();
    lab.kill(&id)?;
    let report = wait_viewer(viewer)?;
    println!("viewer ended {:?} after the kill", started.elapsed());
    let closed_at = report["closed_at"]
        .as_f64()
        .with_context(|| format!("viewer was not disconnected: {report}"))?;
    let delay = closed_at - killed_at;
    eprintln!("kill -> viewer disconnected in {delay:.3} s");
    assert!(
        delay < crate::support::EMERGENCY_STOP.as_secs_f64(),
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
    let mut args = lab.tanaka_viewer()?;
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
    lab.tanaka_views_web01()?;
    Ok(())
}

// ----- TigerVNC's viewer (a real third-party VNC client) under its own Xvfb -----

/// TigerVNC's `vncviewer`, given the ticket as its VNC password, shows QEMU's firmware screen
/// through Sekisho; the session is recorded with the screen in it; the same ticket is then
/// refused to a second viewer and the refusal is in the catalogue.
#[test]
fn vnc_tigervnc_viewer_shows_the_console_and_the_ticket_is_single_use() -> Result<()> {
    let Some(lab) = tiger_lab(LabOptions::default())? else {
        return Ok(());
    };
    let desktop = start_xvfb()?;
    let ticket = lab.tanaka_ticket()?;
    assert!(
        screen_mean(&desktop.display)? < 0.0001,
        "the desktop starts blank"
    );
    let (viewer, row) = lab.tiger_connected(&desktop.display, &ticket)?;
    assert_eq!(row["user"], "tanaka");
    assert_eq!(row["target"], "web01");
    assert_eq!(row["source"], TANAKA_DESKTOP, "{row}");
    // The firmware's text on black: a small but non-zero mean once the viewer has painted.
    let mean = lab.sekisho.wait_until(
        Duration::from_secs(15),
        "the console's screen in the viewer's window",
        || {
            let m = screen_mean(&desktop.display)?;
            Ok((m > 0.001).then_some(m))
        },
    )?;
    eprintln!("viewer screen mean brightness {mean:.4}");
    // Keys and pointer from the real viewer reach the console (and the recording).
    viewer.focus()?;
    let status = std::process::Command::new("xdotool")
        .env("DISPLAY", &desktop.display)
        .args(["mousemove", "100", "100", "type", "--delay", "20", "dir"])
        .status()?;
    assert!(status.success(), "xdotool");
    std::thread::sleep(Duration::from_millis(500));
    drop(viewer);

    let row = lab.session(false)?;
    assert_eq!(row["outcome"], "completed", "{row}");
    let path = lab.recording(&row)?;
    let (server_bytes, client) = relayed(&path)?;
    eprintln!("recording: {server_bytes} bytes from the console");
    // ZRLE (TigerVNC's choice once Tight is filtered) packs the firmware's text screen into
    // about 1.3 KB.
    assert!(
        server_bytes > 1_000,
        "the console's framebuffer updates are in the recording ({server_bytes} bytes)"
    );
    // KeyEvent, down, keysym 'd' (0x64): the first key xdotool typed.
    let key_d = [4u8, 1, 0, 0, 0, 0, 0, 0x64];
    assert!(
        client.windows(key_d.len()).any(|w| w == key_d),
        "the viewer's keys are in the recording"
    );
    assert!(client.contains(&5), "pointer events are in the recording");
    lab.assert_verifies(&path)?;
    let id = row["id"].as_str().context("session id")?;
    // TigerVNC asks for Tight, JPEG quality and more: the player decodes none of them.
    lab.event(id, "policy", "removed from the viewer's SetEncodings")?;

    // Single use: the same ticket again, from the right desktop, is refused.
    lab.tiger_refused(&desktop.display, &ticket, "already used")?;
    let sessions = lab.sekisho.sessions()?;
    assert_eq!(
        sessions
            .iter()
            .filter(|s| s["protocol"] == "console-vnc")
            .count(),
        1,
        "the refused viewer got no session: {sessions:?}"
    );
    Ok(())
}

/// A wrong ticket and an expired one (validity shortened to 3 s for the test) are refused to
/// TigerVNC's viewer, each with its reason, and each refusal is in the catalogue.
#[test]
fn vnc_tigervnc_viewer_wrong_and_expired_tickets_are_refused() -> Result<()> {
    let Some(lab) = tiger_lab(LabOptions {
        env: vec![("SEKISHO_VNC_TICKET_SECONDS", "3")],
        ..LabOptions::default()
    })?
    else {
        return Ok(());
    };
    let desktop = start_xvfb()?;
    let ticket = lab.tanaka_ticket()?;
    let wrong = if ticket == "guess123" {
        "guess124"
    } else {
        "guess123"
    };
    lab.tiger_refused(&desktop.display, wrong, "wrong VNC ticket")?;
    std::thread::sleep(Duration::from_secs(4));
    lab.tiger_refused(&desktop.display, &ticket, "expired")?;
    assert!(
        lab.sekisho
            .sessions()?
            .iter()
            .all(|s| s["protocol"] != "console-vnc"),
        "no console session for refused tickets"
    );
    Ok(())
}

/// Clipboard both ways with real peers: TigerVNC's viewer in front, TigerVNC's Xvnc as the
/// console (it announces its clipboard as ServerCutText, which QEMU cannot originate).
/// Viewer to console: the viewer's X clipboard is set with xclip, the viewer sends it, Sekisho
/// drops it with an event, and the console's clipboard stays empty. Console to viewer: the
/// console's clipboard is set, Xvnc sends it, Sekisho drops it, and the viewer's stays as it
/// was. A direct viewer on the same console shows the peers do pass clipboard without Sekisho.
#[test]
fn vnc_tigervnc_clipboard_is_cut_both_ways() -> Result<()> {
    if !require_peers(TIGER_PEERS)? {
        return Ok(());
    }
    let console = start_xvnc()?;
    let Some(lab) = tiger_lab(LabOptions {
        console_port: Some(console.port),
        ..LabOptions::default()
    })?
    else {
        return Ok(());
    };
    let desktop = start_xvfb()?;
    let ticket = lab.tanaka_ticket()?;
    let (viewer, row) = lab.tiger_connected(&desktop.display, &ticket)?;
    let id = row["id"].as_str().context("session id")?.to_owned();
    viewer.focus()?;

    // Viewer -> console.
    const FROM_VDI: &str = "vdi-clipboard-secret-4711";
    set_selection(&desktop.display, "clipboard", FROM_VDI)?;
    viewer.wait_log("Sending clipboard data", Duration::from_secs(10))?;
    let (_, detail) = lab.event(&id, "clipboard-dropped", "from the viewer")?;
    eprintln!("event: {detail}");
    assert_ne!(
        get_selection(&console.x.display, "clipboard")?,
        FROM_VDI,
        "the console never receives the viewer's clipboard"
    );
    assert_ne!(get_selection(&console.x.display, "primary")?, FROM_VDI);

    // Console -> viewer.
    const FROM_VM: &str = "vm-clipboard-secret-0815";
    set_selection(&console.x.display, "clipboard", FROM_VM)?;
    let (_, detail) = lab.event(&id, "clipboard-dropped", "from the console")?;
    eprintln!("event: {detail}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        get_selection(&desktop.display, "clipboard")?,
        FROM_VDI,
        "the viewer's clipboard is unchanged"
    );
    assert_ne!(get_selection(&desktop.display, "primary")?, FROM_VM);
    assert!(
        !viewer.log_text().contains("Got clipboard data"),
        "the viewer never got clipboard data:\n{}",
        viewer.log_text()
    );
    drop(viewer);
    let row = lab.session(false)?;
    let path = lab.recording(&row)?;
    for text in [FROM_VDI, FROM_VM] {
        assert!(
            !recording_contains(&path, text.as_bytes())?,
            "{text} is in the recording"
        );
    }
    // Both drops are events in the recording too, not only in the catalogue.
    let dropped = recorded_events(&path)?
        .into_iter()
        .filter(|(k, _)| *k == recorder::EventKind::ClipboardDropped)
        .map(|(_, d)| d)
        .collect::<Vec<_>>();
    assert!(
        dropped.iter().any(|d| d.contains("from the viewer"))
            && dropped.iter().any(|d| d.contains("from the console")),
        "clipboard events in the recording: {dropped:?}"
    );

    // Control: the same peers without Sekisho do pass the console's clipboard.
    let direct_desktop = start_xvfb()?;
    let direct = TigerViewer::start(
        &direct_desktop.display,
        lab.sekisho.dir.path(),
        std::net::SocketAddr::from(([127, 0, 0, 1], console.port)),
        "unused00",
    )?;
    direct.wait_log("Using pixel format", Duration::from_secs(15))?;
    direct.focus()?;
    const CONTROL: &str = "control-clipboard-1234";
    set_selection(&console.x.display, "clipboard", CONTROL)?;
    lab.sekisho.wait_until(
        Duration::from_secs(10),
        "the console's clipboard in a direct viewer",
        || Ok((get_selection(&direct_desktop.display, "clipboard")? == CONTROL).then_some(())),
    )?;
    Ok(())
}

/// `sessions kill` ends a console that TigerVNC's viewer is using: the viewer sees the end.
#[test]
fn vnc_tigervnc_viewer_is_disconnected_by_kill() -> Result<()> {
    let Some(lab) = tiger_lab(LabOptions::default())? else {
        return Ok(());
    };
    let desktop = start_xvfb()?;
    let ticket = lab.tanaka_ticket()?;
    let (viewer, row) = lab.tiger_connected(&desktop.display, &ticket)?;
    let id = row["id"].as_str().context("session id")?.to_owned();
    lab.kill(&id)?;
    let log = viewer.wait_log("End of stream", Duration::from_secs(5))?;
    assert!(!log.contains("Authentication failure"), "{log}");
    let row = lab.session(false)?;
    assert_eq!(row["outcome"], "killed", "{row}");
    Ok(())
}

/// `vnc_qmp`: QEMU's VNC console is password-protected with no password set (every viewer is
/// refused), and Sekisho sets a one-time password through QEMU's QMP monitor right before
/// connecting, then authenticates with it: the viewer gets the screen.
#[test]
fn vnc_one_time_console_password_is_set_through_qmp() -> Result<()> {
    if !require_peers(&["qemu-system-x86_64", "python3", "ssh"])? {
        return Ok(());
    }
    let qemu = start_qemu_vnc_qmp()?;
    let qmp = qemu.qmp_port.context("qmp port")?;
    crate::support::wait_for_port(
        std::net::SocketAddr::from(([127, 0, 0, 1], qmp)),
        Duration::from_secs(10),
    )?;
    let Some(lab) = build_lab(
        LabOptions {
            console_port: Some(qemu.port),
            ..LabOptions::default()
        },
        |inv| {
            inv.replacen(
                "vnc_console = \"127.0.0.1:15901\"",
                &format!("vnc_console = \"127.0.0.1:15901\"\nvnc_qmp = \"127.0.0.1:{qmp}\""),
                1,
            )
        },
    )?
    else {
        return Ok(());
    };
    // Control: without a password set through QMP, QEMU refuses a viewer.
    let direct = run_viewer(
        &lab.script,
        &ViewerArgs {
            host: "127.0.0.1".to_owned(),
            port: qemu.port,
            source: "127.0.0.1".to_owned(),
            password: "anything".to_owned(),
            ..ViewerArgs::default()
        },
    )?;
    assert_eq!(direct["result"], "refused", "{direct}");

    let report = lab.tanaka_views_web01()?;
    assert!(
        report["nonblack_pixels"].as_u64().unwrap_or(0) > 100,
        "the firmware screen came through: {report}"
    );
    let log = lab.sekisho.serve_log();
    assert!(
        log.contains("one-time VNC password through QMP"),
        "the password was set through QMP:\n{log}"
    );
    Ok(())
}

/// The bytes relayed from the console (count) and from the viewer (all of them, in order)
/// in the recording at `path`.
fn relayed(path: &std::path::Path) -> Result<(usize, Vec<u8>)> {
    use recorder::format::{Direction, RecordKind};
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let rec = recorder::reader::Recording::parse(&bytes)?;
    let (mut server, mut client) = (0, Vec::new());
    for r in rec.records() {
        if let RecordKind::Data {
            direction, bytes, ..
        } = r?.kind
        {
            match direction {
                Direction::ServerToClient => server += bytes.len(),
                Direction::ClientToServer => client.extend_from_slice(&bytes),
            }
        }
    }
    Ok((server, client))
}

/// A hostile viewer declaring a 4 GiB clipboard: Sekisho closes the connection at once (no
/// waiting for, or buffering, bytes that will never come), marks the session failed, and keeps
/// serving.
#[test]
fn vnc_hostile_viewer_gets_a_clean_close() -> Result<()> {
    let Some(lab) = lab(false)? else {
        return Ok(());
    };
    // ClientCutText with length 0xffffffff.
    let mut args = lab.tanaka_viewer()?;
    args.hostile = Some("06000000ffffffff".to_owned());
    let report = run_viewer(&lab.script, &args)?;
    assert_eq!(report["result"], "ok", "{report}");
    assert_eq!(
        report["closed"], "eof",
        "Sekisho closed the viewer: {report}"
    );
    let row = lab.session(false)?;
    assert_eq!(row["outcome"], "failed", "{row}");

    // Sekisho still serves: a well-behaved viewer gets the console.
    lab.tanaka_views_web01()?;
    Ok(())
}

/// A hostile console sending a rectangle outside its screen: Sekisho closes both connections,
/// the viewer never sees the bad update, and the session is marked failed.
#[test]
fn vnc_hostile_console_gets_a_clean_close() -> Result<()> {
    if !require_peers(&["python3", "ssh"])? {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let script = dir.path().join("hostile_server.py");
    std::fs::write(&script, vnc_peers::HOSTILE_SERVER_PY)?;
    let port_file = dir.path().join("port");
    // FramebufferUpdate, one Raw rectangle at x=60 of width 10 on a 64-pixel-wide screen.
    let payload = "00000001003c0000000a000a00000000";
    let server = std::process::Command::new("python3")
        .arg(&script)
        .arg(&port_file)
        .arg(payload)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let server = vnc_peers::Reaped(server);
    let deadline = Instant::now() + Duration::from_secs(10);
    let port: u16 = loop {
        if let Ok(p) = std::fs::read_to_string(&port_file) {
            break p.trim().parse()?;
        }
        anyhow::ensure!(Instant::now() < deadline, "hostile server did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let Some(lab) = build_lab(
        LabOptions {
            console_port: Some(port),
            ..LabOptions::default()
        },
        |i| i,
    )?
    else {
        return Ok(());
    };
    let mut args = lab.tanaka_viewer()?;
    args.hold = 5.0;
    let report = run_viewer(&lab.script, &args)?;
    assert_eq!(report["result"], "ok", "{report}");
    assert!(
        report["closed_at"].as_f64().is_some(),
        "Sekisho closed the viewer: {report}"
    );
    assert_eq!(
        report["updates"], 0,
        "the bad update never reached the viewer"
    );
    let row = lab.session(false)?;
    assert_eq!(row["outcome"], "failed", "{row}");
    let mut server = server;
    let out = {
        let child = &mut server.0;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            anyhow::ensure!(
                Instant::now() < deadline + Duration::from_secs(20),
                "hostile server still running"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut text = String::new();
        if let Some(mut o) = child.stdout.take() {
            std::io::Read::read_to_string(&mut o, &mut text)?;
        }
        (status, text)
    };
    assert!(
        out.1.contains("\"closed\": \"eof\""),
        "Sekisho closed the console too: {out:?}"
    );
    assert!(
        lab.sekisho
            .serve_log()
            .contains("Relay stopped on an error")
    );
    Ok(())
}

/// The events recorded in the recording at `path`, in order.
fn recorded_events(path: &std::path::Path) -> Result<Vec<(recorder::EventKind, String)>> {
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

/// Whether `needle` is in any decoded record of the recording at `path`: relayed bytes in
/// either direction (each direction's stream joined, so a text split over two records is
/// found), keyframes, event details and records of unknown kinds. The file itself is zstd
/// compressed, so searching its raw bytes would find nothing even if the text were recorded.
fn recording_contains(path: &std::path::Path, needle: &[u8]) -> Result<bool> {
    use recorder::format::{Direction, RecordKind};
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let rec = recorder::reader::Recording::parse(&bytes)?;
    let (mut to_server, mut to_client, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for r in rec.records() {
        match r?.kind {
            RecordKind::Data {
                direction: Direction::ClientToServer,
                bytes,
                ..
            } => to_server.extend_from_slice(&bytes),
            RecordKind::Data { bytes, .. } => to_client.extend_from_slice(&bytes),
            RecordKind::Keyframe { bytes, .. } => others.push(bytes.to_vec()),
            RecordKind::Event(e) => others.push(e.detail.into_bytes()),
            RecordKind::Unknown { body, .. } => others.push(body.to_vec()),
            _ => {}
        }
    }
    anyhow::ensure!(
        !to_server.is_empty() && !to_client.is_empty(),
        "the recording holds no relayed bytes to search"
    );
    let found = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    Ok(found(&to_server) || found(&to_client) || others.iter().any(|o| found(o)))
}
