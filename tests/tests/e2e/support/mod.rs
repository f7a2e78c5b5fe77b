//! Shared harness: temporary Sekisho instances, peers, skipping rules.
//!
//! A test gets a [`SekishoInstance`]: a temporary directory holding a generated `sekisho.toml`
//! (the test's inventory plus free loopback ports and local storage), the real `sekisho`
//! binary running `serve` in it, and [`SekishoInstance::cli`] to run any other subcommand
//! against the same configuration.

#![allow(dead_code)] // each test module uses a different part of the harness

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod bench;
pub mod faults;
pub mod images;
pub mod inventory;
pub mod netns;

/// Root of the workspace (the parent of this package).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// True when the run explicitly allows tests to skip peers that are not installed.
pub fn skip_peers_allowed() -> bool {
    std::env::var("SEKISHO_SKIP_PEERS").is_ok_and(|v| v == "1")
}

/// Checks that every named program is on the PATH. Missing ones fail the test, unless
/// `SEKISHO_SKIP_PEERS=1`, in which case the caller should return early (`Ok(false)`).
pub fn require_peers(programs: &[&str]) -> Result<bool> {
    let missing: Vec<&str> = programs
        .iter()
        .copied()
        .filter(|p| which(p).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(true);
    }
    if skip_peers_allowed() {
        eprintln!("SKIPPED: peers not installed: {}", missing.join(", "));
        return Ok(false);
    }
    bail!(
        "real peers missing: {} (run scripts/install-deps as root, or set SEKISHO_SKIP_PEERS=1)",
        missing.join(", ")
    )
}

/// Finds a program on the PATH (or an absolute path that exists).
pub fn which(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        let p = PathBuf::from(program);
        return p.exists().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// The `sekisho` binary, built once per test run.
pub fn sekisho_bin() -> Result<PathBuf> {
    static BIN: OnceLock<std::result::Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = workspace_root();
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "-p", "proxy", "--bin", "sekisho"])
            .current_dir(&root)
            .status()
            .map_err(|e| format!("cannot run cargo build: {e}"))?;
        if !status.success() {
            return Err(format!("cargo build of sekisho failed: {status}"));
        }
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let bin = target.join("debug").join("sekisho");
        if bin.is_file() {
            Ok(bin)
        } else {
            Err(format!("{} not found after build", bin.display()))
        }
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// How soon an emergency stop (`sessions kill`) must end a session, as the client sees it.
/// The supervisor applies kill requests every 250 ms, so on an idle machine it takes a few
/// hundred milliseconds; the bound is "about a second", made generous for a loaded 2-core
/// machine. It is the one timing the suite asserts as behaviour (speed figures are printed
/// and measured in the benches): a kill applied only by some later pass would exceed it.
pub const EMERGENCY_STOP: Duration = Duration::from_secs(3);

/// A free TCP port on `ip`, never the same one twice in this test process.
///
/// The probe listener is dropped before the caller binds, and the kernel may hand the
/// same ephemeral port to the next probe (it did: an instance got one port for RDP and
/// metrics and refused its configuration), so ports already given out are skipped.
/// Another process taking the port in between remains possible but rare.
pub fn free_port(ip: &str) -> Result<u16> {
    static GIVEN_OUT: std::sync::Mutex<Vec<(String, u16)>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..1000 {
        let l = TcpListener::bind((ip, 0)).with_context(|| format!("bind {ip}:0"))?;
        let port = l.local_addr()?.port();
        let mut given = GIVEN_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !given.iter().any(|(i, p)| i == ip && *p == port) {
            given.push((ip.to_string(), port));
            return Ok(port);
        }
    }
    bail!("no unused port on {ip} after 1000 probes")
}

/// Waits until something accepts TCP connections on `addr`.
pub fn wait_for_port(addr: SocketAddr, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("nothing listening on {addr} after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The listener addresses of one instance.
#[derive(Debug, Clone)]
pub struct Listeners {
    pub rdp: SocketAddr,
    pub ssh: SocketAddr,
    pub vnc: SocketAddr,
    pub web: SocketAddr,
    /// `listen.metrics`: `/metrics` in plain HTTP (not on the web port without a token).
    pub metrics: SocketAddr,
}

/// Options for [`SekishoInstance::start_with`].
#[derive(Debug, Clone, Default)]
pub struct InstanceOptions {
    /// Catalogue URL; default: SQLite in the instance directory.
    pub database: Option<String>,
    /// Do not start `serve` (for CLI-only tests).
    pub no_serve: bool,
    /// Contents of the secrets file (written mode 0600), if any.
    pub secrets: Option<String>,
    /// `storage.recordings` and the tables that go with it (`[storage.s3]`); default: the
    /// directory `data/recordings`.
    pub recordings: Option<(String, String)>,
}

/// One Sekisho instance in a temporary directory.
pub struct SekishoInstance {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub listen: Listeners,
    /// The catalogue URL, as the CLI run in the instance directory sees it.
    database: String,
    serve: Option<Child>,
    /// The binary `serve` runs: the test build unless a bench asked for another.
    serve_binary: Option<PathBuf>,
}

impl SekishoInstance {
    /// Writes `inventory` (TOML without `[storage]` and `[listen]`) plus generated storage
    /// and listener tables, then starts `sekisho serve`.
    pub fn start(inventory: &str) -> Result<Self> {
        Self::start_with(inventory, InstanceOptions::default())
    }

    pub fn start_with(inventory: &str, options: InstanceOptions) -> Result<Self> {
        sekisho_bin()?; // build first, so a build failure reads as one
        let dir = tempfile::Builder::new().prefix("sekisho-e2e-").tempdir()?;
        let listen = Listeners {
            rdp: SocketAddr::from(([127, 0, 0, 1], free_port("127.0.0.1")?)),
            ssh: SocketAddr::from(([127, 0, 0, 1], free_port("127.0.0.1")?)),
            vnc: SocketAddr::from(([127, 0, 0, 1], free_port("127.0.0.1")?)),
            web: SocketAddr::from(([127, 0, 0, 1], free_port("127.0.0.1")?)),
            metrics: SocketAddr::from(([127, 0, 0, 1], free_port("127.0.0.1")?)),
        };
        let database = options
            .database
            .clone()
            .unwrap_or_else(|| "sqlite://data/sekisho.db".to_owned());
        let (recordings, storage_tables) = options
            .recordings
            .clone()
            .unwrap_or_else(|| ("data/recordings".to_owned(), String::new()));
        let generated = format!(
            "[storage]\ndatabase = \"{database}\"\nrecordings = \"{recordings}\"\n\
             signing_key = \"data/signing.key\"\nsecrets = \"data/secrets.toml\"\n\n\
             {storage_tables}\n\
             [tls]\ncert = \"data/tls/cert.pem\"\nkey = \"data/tls/key.pem\"\n\n\
             [listen]\nrdp = \"{}\"\nssh = \"{}\"\nvnc = \"{}\"\nweb = \"{}\"\nmetrics = \"{}\"\n\n",
            listen.rdp, listen.ssh, listen.vnc, listen.web, listen.metrics
        );
        let config = dir.path().join("sekisho.toml");
        std::fs::write(&config, split_top_level(inventory, &generated))?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        if let Some(secrets) = &options.secrets {
            use std::os::unix::fs::PermissionsExt;
            let path = dir.path().join("data/secrets.toml");
            std::fs::write(&path, secrets)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        }
        let mut instance = SekishoInstance {
            dir,
            config,
            listen,
            database,
            serve: None,
            serve_binary: None,
        };
        if !options.no_serve {
            instance.spawn_serve()?;
        }
        Ok(instance)
    }

    /// Starts `serve` from `binary` (a bench's release build) in an instance made with
    /// `no_serve`, and waits for it as [`SekishoInstance::start_with`] does.
    pub fn serve_with(&mut self, binary: PathBuf) -> Result<()> {
        self.serve_binary = Some(binary);
        self.spawn_serve()
    }

    /// Starts `sekisho serve` in the instance directory and waits for its SSH listener.
    fn spawn_serve(&mut self) -> Result<()> {
        let bin = match &self.serve_binary {
            Some(b) => b.clone(),
            None => sekisho_bin()?,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("serve.log"))?;
        let child = Command::new(&bin)
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .env("RUST_LOG", "info,proxy=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn sekisho serve")?;
        self.serve = Some(child);
        if let Err(e) = wait_for_port(self.listen.ssh, Duration::from_secs(20)) {
            bail!("sekisho serve did not come up: {e}\n{}", self.serve_log());
        }
        Ok(())
    }

    /// Starts `serve` again in the same directory (after [`Self::stop`] or [`Self::crash`]).
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.spawn_serve()
    }

    /// The path of a file inside the instance directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Runs `sekisho ARGS --config <this instance's config>` in the instance directory.
    pub fn cli(&self, args: &[&str]) -> Result<Output> {
        let bin = sekisho_bin()?;
        let out = Command::new(bin)
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()?;
        Ok(out)
    }

    /// Runs `sekisho ARGS` (no `--config` added) in the instance directory.
    pub fn cli_raw(&self, args: &[&str]) -> Result<Output> {
        let bin = sekisho_bin()?;
        Ok(Command::new(bin)
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()?)
    }

    /// `sekisho sessions list --json` parsed.
    pub fn sessions(&self) -> Result<Vec<serde_json::Value>> {
        self.json_list(&["sessions", "list", "--json"])
    }

    /// Every session of the catalogue (`sessions list --json` without its default cap of
    /// 1,000 rows), for the benches that hold thousands.
    pub fn all_sessions(&self) -> Result<Vec<serde_json::Value>> {
        self.json_list(&["sessions", "list", "--json", "--limit", "1000000"])
    }

    /// `sekisho denials list --json` parsed.
    pub fn denials(&self) -> Result<Vec<serde_json::Value>> {
        self.json_list(&["denials", "list", "--json"])
    }

    /// `sekisho pins list --json` parsed.
    pub fn pins(&self) -> Result<Vec<serde_json::Value>> {
        self.json_list(&["pins", "list", "--json"])
    }

    fn json_list(&self, args: &[&str]) -> Result<Vec<serde_json::Value>> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!(
                "sekisho {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("{} is not JSON", String::from_utf8_lossy(&out.stdout)))?;
        v.as_array()
            .cloned()
            .context("expected a JSON array from the list command")
    }

    /// The details of the audit events of `kind`, oldest first, read from the catalogue.
    pub fn audit_events(&self, kind: &str) -> Result<Vec<String>> {
        // A relative SQLite path is relative to the instance directory, where serve runs.
        let url = match self.database.strip_prefix("sqlite://") {
            Some(rel) if !rel.starts_with('/') => {
                format!("sqlite://{}", self.dir.path().join(rel).display())
            }
            _ => self.database.clone(),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let rows = rt.block_on(async {
            let catalogue = recorder::catalogue::Catalogue::connect(&url).await?;
            let rows = catalogue
                .list_audit_events(&recorder::catalogue::AuditFilter {
                    kind: Some(kind.to_owned()),
                    ..Default::default()
                })
                .await?;
            catalogue.close().await;
            anyhow::Ok(rows)
        })?;
        Ok(rows
            .into_iter()
            .rev()
            .map(|r| r.detail.unwrap_or_default())
            .collect())
    }

    /// Polls `check` every 100 ms until it returns `Some`, or fails after `timeout`.
    pub fn wait_until<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut check: impl FnMut() -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = check()? {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("timed out waiting for {what}\n{}", self.serve_log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What `serve` has logged so far.
    pub fn serve_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }

    /// Stops `serve` with SIGTERM (graceful shutdown) and waits for it.
    pub fn stop(&mut self) -> Result<()> {
        if let Some(mut child) = self.serve.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if child.try_wait()?.is_some() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Sends SIGHUP to `serve`: it reloads its configuration file (and re-decides live
    /// sessions against it). Waits until the log says the reload was applied or refused.
    pub fn reload(&self) -> Result<()> {
        let child = self.serve.as_ref().context("serve not running")?;
        let count = |log: &str| {
            log.matches("reloaded (").count() + log.matches("Configuration reload refused").count()
        };
        let before = count(&self.serve_log());
        let ok = Command::new("kill")
            .arg("-HUP")
            .arg(child.id().to_string())
            .status()?
            .success();
        if !ok {
            bail!("kill -HUP {} failed", child.id());
        }
        self.wait_until(Duration::from_secs(10), "the reload", || {
            Ok((count(&self.serve_log()) > before).then_some(()))
        })
    }

    /// Kills `serve` with SIGKILL (a crash).
    pub fn crash(&mut self) -> Result<()> {
        if let Some(mut child) = self.serve.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }
}

impl Drop for SekishoInstance {
    fn drop(&mut self) {
        let _ = self.stop();
        if std::thread::panicking() {
            eprintln!("--- sekisho serve log ---\n{}", self.serve_log());
        }
    }
}

/// Puts `generated` (tables) after the top-level keys of `inventory` (e.g. `timezone`), since
/// TOML keys after a table header would belong to that table.
fn split_top_level(inventory: &str, generated: &str) -> String {
    let first_table = inventory
        .lines()
        .position(|l| l.trim_start().starts_with('['))
        .unwrap_or(usize::MAX);
    let mut out = String::new();
    for (i, line) in inventory.lines().enumerate() {
        if i == first_table {
            out.push_str(generated);
        }
        out.push_str(line);
        out.push('\n');
    }
    if first_table == usize::MAX {
        out.push_str(generated);
    }
    out
}

/// A contract window (`"HH:MM-HH:MM"`, Tokyo time: the test inventories' zone, UTC+9 all year)
/// that opened an hour ago and closes at the second minute boundary from now, so that a
/// session opened now is warned at once and ended within two minutes.
pub fn window_closing_soon() -> String {
    use chrono::Timelike;
    let tokyo = chrono::Utc::now() + chrono::Duration::hours(9);
    let start = tokyo - chrono::Duration::hours(1);
    let end = tokyo + chrono::Duration::minutes(2);
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        start.hour(),
        start.minute(),
        end.hour(),
        end.minute()
    )
}

/// `inventory` with acme's contract limited to `window`.
pub fn with_window(inventory: String, window: &str) -> String {
    inventory.replacen(
        "valid_until = \"2099-12-31\"",
        &format!("valid_until = \"2099-12-31\"\nwindows = [\"{window}\"]"),
        1,
    )
}

/// The inventory used by most tests: the shape of `examples/sekisho.toml`, with the contract
/// open at every hour so tests do not depend on the wall clock, and ports chosen by the test.
pub fn demo_inventory() -> String {
    r#"timezone = "Asia/Tokyo"

[recording]
required = true

[[vdi_pool]]
name = "vdi-internet"
path = "internet-vpn"
networks = ["127.0.10.0/24"]

[[vdi_pool]]
name = "vdi-ipvpn"
path = "ip-vpn"
networks = ["127.0.11.0/24"]

[zones]
business = ["internet-vpn", "ip-vpn"]
dmz = ["internet-vpn", "ip-vpn"]
mynumber = ["ip-vpn"]

[[contractor]]
id = "acme"
name = "ACME Systems K.K."

[[contractor]]
id = "globex"
name = "Globex"

[[user]]
name = "tanaka"
contractor = "acme"
role = "contractor"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$IvBzMLDZyFbDrkZ3n1bk7w$8NW46C5ZNmNfiHNU+fwLLsnh9hyP7iNV8iEC4MEm5fU"
desktops = ["127.0.10.11"]

[[user]]
name = "sato"
contractor = "acme"
role = "contractor"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$IvBzMLDZyFbDrkZ3n1bk7w$8NW46C5ZNmNfiHNU+fwLLsnh9hyP7iNV8iEC4MEm5fU"
desktops = ["127.0.11.21"]

[[user]]
name = "yamada"
contractor = "globex"
role = "contractor"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$IvBzMLDZyFbDrkZ3n1bk7w$8NW46C5ZNmNfiHNU+fwLLsnh9hyP7iNV8iEC4MEm5fU"
desktops = ["127.0.10.31"]

[[user]]
name = "suzuki"
role = "auditor"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$IvBzMLDZyFbDrkZ3n1bk7w$8NW46C5ZNmNfiHNU+fwLLsnh9hyP7iNV8iEC4MEm5fU"

[[hypervisor]]
name = "kvm01"
address = "127.0.0.1"

[[target]]
name = "web01"
address = "127.0.20.11"
kind = "vm"
zone = "business"
hypervisor = "kvm01"
vnc_console = "127.0.0.1:15901"
serial_console = "127.0.0.1:14501"
rdp_port = 13390

[[target]]
name = "app02"
address = "127.0.20.12"
kind = "vm"
zone = "business"
hypervisor = "kvm01"
vnc_console = "127.0.0.1:15902"
rdp_port = 13390

[[target]]
name = "db-phys01"
address = "127.0.20.21"
kind = "physical"
zone = "mynumber"
rdp_port = 13390

[[target]]
name = "file-phys02"
address = "127.0.20.22"
kind = "physical"
zone = "business"
rdp_port = 13390

[[contract]]
contractor = "acme"
targets = ["web01", "app02", "db-phys01", "file-phys02"]
valid_from = "2026-01-01"
valid_until = "2099-12-31"

[[contract]]
contractor = "globex"
targets = ["app02"]
valid_from = "2020-01-01"
valid_until = "2021-03-31"
"#
    .to_owned()
}
