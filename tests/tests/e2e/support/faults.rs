//! Helpers for the fault tests: a small filesystem the test mounts (and unmounts on drop), a
//! private PostgreSQL cluster that the test can stop and start, raw TCP clients that hang,
//! dribble or spray garbage at a listener, and a few probes of a running `serve`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::support::{SekishoInstance, workspace_root};

/// A tmpfs mounted by the test; unmounted (lazily, so a busy file cannot keep it) on drop.
pub struct TmpfsMount {
    dir: PathBuf,
}

impl TmpfsMount {
    /// Mounts a tmpfs of `size` (e.g. `"4m"`) on `dir`, which is created if missing. Needs root.
    pub fn mount(dir: &Path, size: &str) -> Result<TmpfsMount> {
        std::fs::create_dir_all(dir)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0750")])
            .arg("tmpfs")
            .arg(dir)
            .output()
            .context("run mount")?;
        if !out.status.success() {
            bail!(
                "mount -t tmpfs on {} failed (the e2e suite runs as root): {}",
                dir.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(TmpfsMount {
            dir: dir.to_path_buf(),
        })
    }

    /// Free bytes on the filesystem, as `df` reports them.
    pub fn free_bytes(&self) -> Result<u64> {
        let out = Command::new("df")
            .args(["--output=avail", "-B1"])
            .arg(&self.dir)
            .output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .nth(1)
            .and_then(|l| l.trim().parse().ok())
            .with_context(|| format!("cannot read df output: {text}"))
    }
}

impl Drop for TmpfsMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// A private PostgreSQL cluster (via `scripts/pg-test-server` with its own directory), so the
/// test can stop and start it without touching the suite's shared server. Deleted on drop.
pub struct PgCluster {
    dir: PathBuf,
    pub url: String,
}

impl PgCluster {
    pub fn start() -> Result<PgCluster> {
        let dir = std::env::temp_dir().join(format!(
            "sekisho-pg-faults-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let mut cluster = PgCluster {
            dir,
            url: String::new(),
        };
        cluster.script("start")?;
        cluster.url = std::fs::read_to_string(cluster.dir.join("url"))?
            .trim()
            .to_owned();
        Ok(cluster)
    }

    /// Runs `scripts/pg-test-server COMMAND` on this cluster.
    fn script(&self, command: &str) -> Result<()> {
        let script = workspace_root().join("scripts/pg-test-server");
        let out = Command::new(&script)
            .arg(command)
            .env("SEKISHO_PG_DIR", &self.dir)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "pg-test-server {command} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }

    /// Stops the server (fast shutdown: open connections are cut).
    pub fn stop(&self) -> Result<()> {
        self.script("pause")
    }

    /// Starts it again, on the same port.
    pub fn start_again(&self) -> Result<()> {
        self.script("resume")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.script("stop");
        let _ = std::fs::remove_file(self.dir.with_extension("lock"));
    }
}

/// How a client that never completes its handshake behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stall {
    /// Connects and sends nothing.
    Silent,
    /// Sends one byte of `prefix` per second (then `x`), never finishing a message.
    Dribble(&'static [u8]),
    /// Sends nothing for `after`, then `line` at once, then nothing again.
    Late {
        after: Duration,
        line: &'static [u8],
    },
}

/// Connects to `addr` and stalls as told until the server closes the connection; returns how
/// long that took, or `None` when it was still open after `give_up`.
pub fn stall(addr: SocketAddr, how: Stall, give_up: Duration) -> Result<Option<Duration>> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connect {addr}"))?;
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut sent = 0usize;
    let mut next_byte = t0;
    let mut buf = [0u8; 4096];
    while t0.elapsed() < give_up {
        if let Stall::Dribble(prefix) = how
            && Instant::now() >= next_byte
        {
            let b = prefix.get(sent).copied().unwrap_or(b'x');
            if s.write_all(&[b]).is_err() {
                return Ok(Some(t0.elapsed()));
            }
            sent += 1;
            next_byte += Duration::from_secs(1);
        }
        if let Stall::Late { after, line } = how
            && sent == 0
            && t0.elapsed() >= after
        {
            if s.write_all(line).is_err() {
                return Ok(Some(t0.elapsed()));
            }
            sent = line.len();
        }
        match s.read(&mut buf) {
            Ok(0) => return Ok(Some(t0.elapsed())),
            Ok(_) => {} // the server's greeting (SSH id, RFB version)
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Ok(Some(t0.elapsed())),
        }
    }
    Ok(None)
}

/// A small deterministic generator (xorshift64*): garbage needs no cryptographic quality.
pub struct Garbage(u64);

impl Garbage {
    pub fn new(seed: u64) -> Garbage {
        Garbage(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next_u64() >> 56) as u8).collect()
    }
}

/// Opens a connection to `addr`, writes `bytes` and closes at once. Errors (a refused or reset
/// connection) are counted by the caller, not fatal.
pub fn spray(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<()> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.write_all(bytes)?;
    Ok(())
}

/// The `sekisho serve` process of an instance (found by its configuration path).
pub fn serve_pid(sekisho: &SekishoInstance) -> Option<u32> {
    let config = sekisho.config.display().to_string();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        (cmd.contains(" serve ") && cmd.contains(&config)).then_some(pid)
    })
}

/// Fails if `serve` is gone or has logged a panic.
pub fn assert_serving(sekisho: &SekishoInstance) -> Result<()> {
    if serve_pid(sekisho).is_none() {
        bail!("sekisho serve is not running\n{}", sekisho.serve_log());
    }
    let log = sekisho.serve_log();
    if log.contains("panicked") {
        bail!("sekisho serve panicked:\n{log}");
    }
    Ok(())
}

/// `GET /metrics` on the instance's metrics listener (`listen.metrics`, plain HTTP): status
/// and body.
pub fn metrics(sekisho: &SekishoInstance) -> Result<(u16, String)> {
    curl_status(&format!("http://{}/metrics", sekisho.listen.metrics))
}

/// `GET /metrics` on the instance's web listener (self-signed TLS), without a token: status
/// and body. Without `[metrics] token` in the secrets file it is 404.
pub fn metrics_on_web_port(sekisho: &SekishoInstance) -> Result<(u16, String)> {
    curl_status(&format!("https://{}/metrics", sekisho.listen.web))
}

fn curl_status(url: &str) -> Result<(u16, String)> {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-w", "\n%{http_code}"])
        .arg(url)
        .output()
        .context("run curl")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((code.trim().parse().unwrap_or(0), body.to_owned()))
}

/// All processes descended from `pid` (children first found through /proc).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut frontier = vec![pid];
    while let Some(parent) = frontier.pop() {
        let Ok(rd) = std::fs::read_dir("/proc") else {
            break;
        };
        for e in rd.flatten() {
            let Some(child) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            // The fields after the command name (which may hold spaces) start at ") ".
            let ppid = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(parent) && !all.contains(&child) {
                all.push(child);
                frontier.push(child);
            }
        }
    }
    all
}

/// SIGKILL to each of `pids`.
pub fn kill9(pids: &[u32]) {
    for pid in pids {
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// p-th percentile of sorted durations, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default().as_secs_f64() * 1e3
}

/// Runs `f` on a fresh current-thread Tokio runtime (for the catalogue crate in tests).
pub fn block_on<F: std::future::Future>(f: F) -> Result<F::Output> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f))
}

/// The catalogue events of session `id` as (kind, detail), read from the instance's SQLite.
pub fn session_events(sekisho: &SekishoInstance, id: &str) -> Result<Vec<(String, String)>> {
    let url = format!("sqlite://{}", sekisho.path("data/sekisho.db").display());
    let id: uuid::Uuid = id.parse()?;
    block_on(async move {
        let cat = recorder::catalogue::Catalogue::connect(&url).await?;
        let rows = cat.session_events(policy::SessionId(id)).await?;
        cat.close().await;
        anyhow::Ok(
            rows.into_iter()
                .map(|r| (r.kind, r.detail.unwrap_or_default()))
                .collect(),
        )
    })?
}

/// Every decision (allow and deny) in the instance's SQLite catalogue, newest first, as JSON-ish
/// (verdict, rule, target, reason).
pub fn decisions(sekisho: &SekishoInstance) -> Result<Vec<(String, String, String, String)>> {
    let url = format!("sqlite://{}", sekisho.path("data/sekisho.db").display());
    block_on(async move {
        let cat = recorder::catalogue::Catalogue::connect(&url).await?;
        let rows = cat
            .list_decisions(&recorder::catalogue::DecisionFilter::default())
            .await?;
        cat.close().await;
        anyhow::Ok(
            rows.into_iter()
                .map(|r| {
                    (
                        r.verdict.as_str().to_owned(),
                        r.rule.clone(),
                        r.target.clone().unwrap_or_default(),
                        r.reason.clone(),
                    )
                })
                .collect(),
        )
    })?
}

/// Recording files (`*.skrec`) under `dir`.
pub fn recording_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "skrec") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
