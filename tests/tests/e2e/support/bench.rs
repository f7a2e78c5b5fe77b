//! What the benchmarks among the end-to-end tests share: the release binaries they measure
//! and the process figures they read from `/proc`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

/// The `sekisho` binary a benchmark measures: `SEKISHO_BIN` if set, else a release build (the
/// debug build the other tests use is several times slower and says little).
pub fn sekisho_binary() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SEKISHO_BIN") {
        return Ok(PathBuf::from(bin));
    }
    release_binary("proxy", "sekisho")
}

/// Builds `bin` of `package` in release mode and returns its path.
pub fn release_binary(package: &str, bin: &str) -> Result<PathBuf> {
    let root = super::workspace_root();
    let ok = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "-p", package, "--bin", bin])
        .current_dir(&root)
        .status()
        .context("cargo build --release")?
        .success();
    anyhow::ensure!(ok, "cargo build --release of {bin} failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release").join(bin))
}

/// Resident memory of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time (utime + stime) of `pid` in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let (_, tail) = stat.rsplit_once(')')?;
    let f: Vec<&str> = tail.split_whitespace().collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((t(11)? + t(12)?) / 100.0)
}

/// Linux perf sampling one process with call graphs, from [`Profiler::start`] to
/// [`Profiler::finish`].
pub struct Profiler {
    perf: std::process::Child,
    data: PathBuf,
}

impl Profiler {
    /// Starts `perf record` on `pid`, writing to `data`.
    pub fn start(pid: u32, data: &std::path::Path) -> Result<Profiler> {
        if let Some(dir) = data.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let perf = Command::new("perf")
            .args(["record", "-F", "499", "--call-graph", "dwarf,16384", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(data)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .context("run perf record (linux-perf)")?;
        // perf needs a moment to attach before the measured work starts.
        std::thread::sleep(std::time::Duration::from_millis(500));
        Ok(Profiler {
            perf,
            data: data.to_owned(),
        })
    }

    /// Stops perf (SIGINT, so it writes its data) and returns where the data is, with the
    /// command that reads it.
    pub fn finish(mut self) -> Result<String> {
        let _ = Command::new("kill")
            .args(["-INT", &self.perf.id().to_string()])
            .status();
        self.perf.wait()?;
        Ok(format!(
            "{} (perf report --no-children -i {})",
            self.data.display(),
            self.data.display()
        ))
    }
}

/// A process a bench started (a peer, a painter, a window); killed on drop.
pub struct Proc {
    pub child: std::process::Child,
    name: &'static str,
}

impl Proc {
    /// Spawns `cmd` with stdin closed; `name` is for the messages.
    pub fn spawn(name: &'static str, cmd: &mut Command) -> Result<Proc> {
        let child = cmd
            .stdin(std::process::Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Proc { child, name })
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        if self.child.wait().is_err() {
            eprintln!("{} did not exit", self.name);
        }
    }
}
