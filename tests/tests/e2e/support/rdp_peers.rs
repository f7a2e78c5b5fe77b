//! Real RDP peers for the RDP tests: xrdp 0.9 (+ sesman, Xvnc) and xfreerdp 2 under Xvfb.
//!
//! xrdp is started through the lab's verified recipe (`peers.sh start_rdp_server xrdp`,
//! found at `$SEKISHO_LAB_PEERS` or `../shared/lab/peers.sh` beside the clone); it listens on
//! 127.0.0.1:13390 with its DEBUG log in `$LAB/xrdp/xrdp.log`, which names every channel a
//! client asked for ("Adding channel: name cliprdr …").

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::support::SekishoInstance;

/// xrdp's address (fixed by the lab recipe).
pub const XRDP_PORT: u16 = 13390;
/// The Linux account xrdp logs into (created by the recipe).
pub const LAB_USER: &str = "labuser";
/// Its password.
pub const LAB_PASS: &str = "LabPass123!";
/// The X display xfreerdp draws on (ours; the lab uses :92).
pub const CLIENT_DISPLAY: &str = ":93";

/// The secrets file for `targets`: each target's credential `TARGET-maint` is the lab
/// account, which Sekisho injects on the server leg.
pub fn lab_secrets(targets: &[&str]) -> String {
    targets
        .iter()
        .map(|t| {
            format!(
                "[credential.{t}-maint]\nusername = \"{LAB_USER}\"\npassword = \"{LAB_PASS}\"\n"
            )
        })
        .collect()
}

/// RDP tests share one xrdp and one sesman (fixed ports): run them one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    match LOCK.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

/// The lab directory (`LAB` of peers.sh).
pub fn lab_dir() -> PathBuf {
    PathBuf::from(std::env::var("LAB").unwrap_or_else(|_| "/tmp/sekisho-lab".to_owned()))
}

fn peers_sh() -> Result<PathBuf> {
    if let Ok(p) = std::env::var("SEKISHO_LAB_PEERS") {
        return Ok(PathBuf::from(p));
    }
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    for candidate in [
        manifest.join("../../shared/lab/peers.sh"),
        manifest.join("../shared/lab/peers.sh"),
        PathBuf::from("/work/shared/lab/peers.sh"),
    ] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("peers.sh not found (set SEKISHO_LAB_PEERS)")
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Whether a peer this process starts once has started (or why not).
type Started = OnceLock<std::result::Result<(), String>>;

/// Runs `start` the first time only; later calls get its first answer.
fn once(
    started: &'static Started,
    start: impl FnOnce() -> std::result::Result<(), String>,
) -> Result<()> {
    started
        .get_or_init(start)
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Starts xrdp once (reused if already listening).
pub fn ensure_xrdp() -> Result<()> {
    static STARTED: Started = OnceLock::new();
    once(&STARTED, || {
        if listening(XRDP_PORT) {
            return Ok(());
        }
        let script = peers_sh().map_err(|e| e.to_string())?;
        let out = Command::new("bash")
            .arg(&script)
            .args(["start_rdp_server", "xrdp"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run peers.sh: {e}"))?;
        if !listening(XRDP_PORT) {
            return Err(format!(
                "xrdp did not start: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    })
}

/// Starts the client's Xvfb once.
pub fn ensure_display() -> Result<()> {
    static STARTED: Started = OnceLock::new();
    once(&STARTED, || start_xvfb(CLIENT_DISPLAY, "1280x1024x24"))
}

/// Starts the Xvfb that freerdp-shadow-cli shares, once.
pub fn ensure_server_display() -> Result<()> {
    static STARTED: Started = OnceLock::new();
    once(&STARTED, || start_xvfb(SHADOW_DISPLAY, "1024x768x24"))
}

/// The X display freerdp-shadow-cli shares (ours; the lab uses :91).
pub const SHADOW_DISPLAY: &str = ":94";

/// Starts Xvfb on `display` unless something answers there already.
fn start_xvfb(display: &str, screen: &str) -> std::result::Result<(), String> {
    let n = display.trim_start_matches(':');
    let sock = format!("/tmp/.X11-unix/X{n}");
    if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
        return Ok(());
    }
    // A socket nobody answers on is left from an Xvfb that died: clear it and its lock.
    let _ = std::fs::remove_file(&sock);
    let _ = std::fs::remove_file(format!("/tmp/.X{n}-lock"));
    Command::new("Xvfb")
        .args([
            display,
            "-screen",
            "0",
            screen,
            "-nolisten",
            "tcp",
            "-noreset",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start Xvfb: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !Path::new(&sock).exists() {
        if Instant::now() > deadline {
            return Err("Xvfb did not start".to_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A freerdp-shadow-cli server sharing [`SHADOW_DISPLAY`], stopped on drop.
pub struct Shadow {
    child: std::process::Child,
    /// its HOME; the certificate it generated on first start is under `config/freerdp/shadow`
    pub home: PathBuf,
}

impl Drop for Shadow {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Shadow {
    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.home.join("shadow.log")).unwrap_or_default()
    }

    /// Asserts that its log after byte `since` shows an NLA logon of [`LAB_USER`]: the X.224
    /// cookie naming it, NLA negotiated, the NTLM exchange completed, the delegated credentials
    /// received and finalization reached (the server runs with `WLOG_LEVEL=DEBUG`). Its SAM
    /// file holds only that account, so a completed NTLM exchange is a logon of it.
    pub fn assert_nla_logon(&self, since: usize) {
        let log = self.log();
        let log = log.get(since..).unwrap_or_default();
        for marker in [
            format!("received cookie [Cookie: mstshash={LAB_USER}]"),
            "Negotiated Security: NLA:1".to_owned(),
            "NTLM_STATE_FINAL".to_owned(),
            "Receive Encryption Credentials".to_owned(),
            "CONNECTION_STATE_FINALIZATION".to_owned(),
        ] {
            assert!(log.contains(&marker), "no {marker:?} in:\n{log}");
        }
    }
}

/// Starts freerdp-shadow-cli on 127.0.0.1:`port` with its state in `home` (a new `home`
/// means a new self-signed certificate) and the security arguments `sec` (e.g. `/sec:tls
/// -auth`, or `/sec:nla /sam-file:F`).
pub fn start_shadow(home: &Path, port: u16, sec: &[&str]) -> Result<Shadow> {
    start_shadow_env(home, port, sec, &[])
}

/// [`start_shadow`] with extra environment variables, e.g. `WLOG_LEVEL=DEBUG` so that its
/// log shows the negotiated security and the NTLM states.
pub fn start_shadow_env(
    home: &Path,
    port: u16,
    sec: &[&str],
    env: &[(&str, &str)],
) -> Result<Shadow> {
    ensure_server_display()?;
    std::fs::create_dir_all(home.join("config"))?;
    let log = std::fs::File::create(home.join("shadow.log"))?;
    let child = Command::new("freerdp-shadow-cli")
        .arg("/bind-address:127.0.0.1")
        .arg(format!("/port:{port}"))
        .args(sec)
        .env("DISPLAY", SHADOW_DISPLAY)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start freerdp-shadow-cli")?;
    let shadow = Shadow {
        child,
        home: home.to_owned(),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listening(port) {
        if Instant::now() > deadline {
            bail!(
                "freerdp-shadow-cli did not listen on {port}:\n{}",
                shadow.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(shadow)
}

/// A freerdp-shadow-cli server in `home` on a free port of 127.0.0.1 that takes NLA only,
/// for [`LAB_USER`] with [`LAB_PASS`] (its SAM file holds that account alone), logging at
/// debug level for [`Shadow::assert_nla_logon`]; returns it and its port.
pub fn start_nla_shadow(home: &Path) -> Result<(Shadow, u16)> {
    let sam = write_sam(home, LAB_USER, LAB_PASS)?;
    let port = crate::support::free_port("127.0.0.1")?;
    let sam_arg = format!("/sam-file:{}", sam.display());
    let shadow = start_shadow_env(
        home,
        port,
        &["/sec:nla", &sam_arg],
        &[("WLOG_LEVEL", "DEBUG")],
    )?;
    Ok((shadow, port))
}

/// Writes `home/sam`, the SAM file freerdp-shadow-cli checks NLA logons against
/// (`/sam-file:`), with the NT hash of `user`'s `password` as `winpr-hash -f sam` prints it.
pub fn write_sam(home: &Path, user: &str, password: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(home)?;
    let out = Command::new("winpr-hash")
        .args(["-u", user, "-p", password, "-f", "sam"])
        .stdin(Stdio::null())
        .output()
        .context("cannot run winpr-hash")?;
    if !out.status.success() {
        bail!(
            "winpr-hash failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let path = home.join("sam");
    std::fs::write(&path, &out.stdout)?;
    Ok(path)
}

/// The current length of xrdp's log, to read only what a test caused.
pub fn xrdp_log_offset() -> u64 {
    std::fs::metadata(lab_dir().join("xrdp/xrdp.log"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// xrdp's log from `offset` on.
pub fn xrdp_log_since(offset: u64) -> String {
    let text = std::fs::read(lab_dir().join("xrdp/xrdp.log")).unwrap_or_default();
    let start = usize::try_from(offset).unwrap_or(0).min(text.len());
    String::from_utf8_lossy(text.get(start..).unwrap_or_default()).into_owned()
}

/// An iptables SNAT rule on loopback making connections to 127.0.0.1:`port` come from
/// `source` (xfreerdp cannot choose its source address); removed on drop.
pub struct Snat {
    port: u16,
    source: &'static str,
}

impl Snat {
    pub fn add(port: u16, source: &'static str) -> Result<Snat> {
        snat_rule("-A", port, source)?;
        Ok(Snat { port, source })
    }
}

impl Drop for Snat {
    fn drop(&mut self) {
        let _ = snat_rule("-D", self.port, self.source);
    }
}

fn snat_rule(op: &str, port: u16, source: &str) -> Result<()> {
    let status = Command::new("iptables")
        .args([
            "-t",
            "nat",
            op,
            "POSTROUTING",
            "-p",
            "tcp",
            "-d",
            "127.0.0.1",
            "--dport",
        ])
        .arg(port.to_string())
        .args(["-j", "SNAT", "--to-source", source])
        .status()?;
    anyhow::ensure!(status.success(), "iptables {op} failed");
    Ok(())
}

/// What one xfreerdp run showed.
#[derive(Debug)]
pub struct ClientRun {
    /// exit code (124 = still connected when the timeout fired)
    pub code: Option<i32>,
    /// how long it ran
    pub elapsed: Duration,
    /// its DEBUG log
    pub log: String,
}

impl ClientRun {
    /// Reached the active state.
    pub fn active(&self) -> bool {
        self.log.contains("CONNECTION_STATE_ACTIVE")
    }

    /// Asserts a refusal: never active (else `what`), and ended by Sekisho rather than by the
    /// client's own timeout (exit 124). How long it took is printed, not asserted.
    pub fn assert_refused(&self, what: &str) {
        assert!(!self.active(), "{what}:\n{}", self.log);
        assert_ne!(self.code, Some(124), "client hung until the timeout");
        println!("refused after {:?}", self.elapsed);
    }
}

/// Runs xfreerdp against `host:port` for at most `seconds`, asking for every redirection.
pub fn xfreerdp(
    host: &str,
    port: u16,
    user: &str,
    pass: &str,
    seconds: u32,
    extra: &[&str],
) -> Result<ClientRun> {
    let share = std::env::temp_dir().join("sekisho-e2e-share");
    std::fs::create_dir_all(&share)?;
    let mut cmd = Command::new("timeout");
    cmd.arg(seconds.to_string())
        .arg("xfreerdp")
        .arg(format!("/v:{host}:{port}"))
        .arg(format!("/u:{user}"))
        .arg(format!("/p:{pass}"))
        .args([
            "/cert:ignore",
            "+clipboard",
            "/printer",
            "/smartcard",
            "/usb:auto",
            "/log-level:DEBUG",
        ])
        .arg(format!("/drive:share,{}", share.display()))
        .args(extra);
    run_client(&mut cmd).context("cannot run xfreerdp")
}

/// Runs `cmd`, an xfreerdp (under `timeout`) that draws on [`CLIENT_DISPLAY`], to its end.
pub fn run_client(cmd: &mut Command) -> Result<ClientRun> {
    ensure_display()?;
    let started = Instant::now();
    let out = cmd
        .env("DISPLAY", CLIENT_DISPLAY)
        .stdin(Stdio::null())
        .output()?;
    let mut log = String::from_utf8_lossy(&out.stdout).into_owned();
    log.push_str(&String::from_utf8_lossy(&out.stderr));
    Ok(ClientRun {
        code: out.status.code(),
        elapsed: started.elapsed(),
        log,
    })
}

/// An [`xfreerdp`] run to 127.0.0.1 on a thread of its own, for a test that acts while the
/// session runs.
pub struct Background(std::thread::JoinHandle<Result<ClientRun>>);

impl Background {
    pub fn spawn(
        port: u16,
        user: &'static str,
        pass: &'static str,
        seconds: u32,
        extra: &'static [&'static str],
    ) -> Background {
        Background(std::thread::spawn(move || {
            xfreerdp("127.0.0.1", port, user, pass, seconds, extra)
        }))
    }

    /// What the run showed, once it has ended.
    pub fn join(self) -> Result<ClientRun> {
        self.0
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))?
    }
}

/// A catalogue listing: [`SekishoInstance::sessions`] or [`SekishoInstance::denials`].
type Rows = fn(&SekishoInstance) -> Result<Vec<serde_json::Value>>;

/// Waits up to `secs` for the first row of `rows` that `pred` accepts.
fn wait_row(
    instance: &SekishoInstance,
    rows: Rows,
    secs: u64,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    instance.wait_until(Duration::from_secs(secs), what, || {
        Ok(rows(instance)?.into_iter().find(|r| pred(r)))
    })
}

/// Waits up to `secs` for the first session row that `pred` accepts.
pub fn wait_session(
    instance: &SekishoInstance,
    secs: u64,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    wait_row(instance, SekishoInstance::sessions, secs, what, pred)
}

/// Waits up to 20 s for a live RDP session.
pub fn live_session(instance: &SekishoInstance, what: &str) -> Result<serde_json::Value> {
    wait_session(instance, 20, what, |s| {
        s["protocol"] == "rdp" && s["ended_at"].is_null()
    })
}

/// Waits up to 10 s for an ended RDP session.
pub fn ended_session(instance: &SekishoInstance, what: &str) -> Result<serde_json::Value> {
    wait_session(instance, 10, what, |s| {
        s["protocol"] == "rdp" && !s["ended_at"].is_null()
    })
}

/// Waits up to `secs` for the first denial that `pred` accepts.
pub fn wait_denial(
    instance: &SekishoInstance,
    secs: u64,
    what: &str,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> Result<serde_json::Value> {
    wait_row(instance, SekishoInstance::denials, secs, what, pred)
}
