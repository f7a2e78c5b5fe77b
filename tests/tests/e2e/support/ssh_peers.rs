//! Real peers for the SSH front door tests: OpenSSH `sshd` as a console target, QEMU as a
//! serial console, and the OpenSSH client driven through pipes.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::support::{SekishoInstance, free_port, wait_for_port};

/// The lab user sshd logs Sekisho in as (RECIPES.md §4).
pub const LAB_USER: &str = "labuser";
/// Its password.
pub const LAB_PASSWORD: &str = "LabPass123!";
/// The password of every user of the demo inventory.
pub const DEMO_PASSWORD: &str = "change-me-now";

/// Creates the Linux user `labuser` (home under /var/tmp) if it does not exist. Needs root.
pub fn ensure_lab_user() -> Result<()> {
    static DONE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let exists = Command::new("id")
            .arg(LAB_USER)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| e.to_string())?
            .success();
        if !exists {
            let home = Path::new("/var/tmp/sekisho-lab/home").join(LAB_USER);
            std::fs::create_dir_all(home.parent().unwrap_or(Path::new("/")))
                .map_err(|e| e.to_string())?;
            let ok = Command::new("useradd")
                .args(["-m", "-d"])
                .arg(&home)
                .args(["-s", "/bin/bash", LAB_USER])
                .status()
                .map_err(|e| e.to_string())?
                .success();
            if !ok {
                return Err("useradd labuser failed (the e2e suite runs as root)".into());
            }
            let mut chpasswd = Command::new("chpasswd")
                .stdin(Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())?;
            if let Some(mut stdin) = chpasswd.stdin.take() {
                writeln!(stdin, "{LAB_USER}:{LAB_PASSWORD}").map_err(|e| e.to_string())?;
            }
            chpasswd.wait().map_err(|e| e.to_string())?;
            let _ = std::fs::write(home.join(".hushlogin"), "");
        }
        Ok(())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// A process killed on drop.
pub struct Peer {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts OpenSSH sshd listening on 127.0.0.1 and on each of `extra_addresses`, same port.
pub fn start_sshd(extra_addresses: &[&str]) -> Result<Peer> {
    ensure_lab_user()?;
    std::fs::create_dir_all("/run/sshd")?;
    let dir = tempfile::Builder::new().prefix("sekisho-sshd-").tempdir()?;
    let key = dir.path().join("ssh_host_ed25519_key");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()?
        .success();
    if !ok {
        bail!("ssh-keygen failed");
    }
    let port = free_port("127.0.0.1")?;
    let mut config = format!(
        "Port {port}\nListenAddress 127.0.0.1\nHostKey {}\nPidFile {}\n\
         PasswordAuthentication yes\nKbdInteractiveAuthentication no\nUsePAM yes\n\
         PermitRootLogin no\nAllowUsers {LAB_USER}\nPrintMotd no\nPrintLastLog no\n\
         LogLevel VERBOSE\nSubsystem sftp internal-sftp\n",
        key.display(),
        dir.path().join("sshd.pid").display()
    );
    for a in extra_addresses {
        config.push_str(&format!("ListenAddress {a}\n"));
    }
    let config_path = dir.path().join("sshd_config");
    std::fs::write(&config_path, config)?;
    let log = std::fs::File::create(dir.path().join("sshd.log"))?;
    let sshd = crate::support::which("sshd").context("sshd not found")?;
    let child = Command::new(sshd)
        .arg("-D")
        .arg("-e")
        .arg("-f")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("spawn sshd")?;
    let peer = Peer { child, dir, port };
    wait_for_port(([127, 0, 0, 1], port).into(), Duration::from_secs(10))?;
    Ok(peer)
}

/// True when something listens on 127.0.0.1:`port` (read from /proc, without connecting:
/// a connection would be QEMU's one serial client).
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
        t.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
        })
    })
}

/// Starts QEMU (TCG, no disk) whose serial port is a TCP server that waits for its first
/// client before the guest starts, so that client sees SeaBIOS from the start.
pub fn start_qemu_serial() -> Result<Peer> {
    let dir = tempfile::Builder::new().prefix("sekisho-qemu-").tempdir()?;
    let port = free_port("127.0.0.1")?;
    let log = std::fs::File::create(dir.path().join("qemu.log"))?;
    let child = Command::new("qemu-system-x86_64")
        .args([
            "-nodefaults",
            "-machine",
            "pc,accel=tcg,graphics=off",
            "-m",
            "64",
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
        ])
        .arg(format!("tcp:127.0.0.1:{port},server=on,wait=on"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("spawn qemu-system-x86_64")?;
    let peer = Peer { child, dir, port };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listening(port) {
        if Instant::now() > deadline {
            bail!("qemu serial port {port} not listening");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(peer)
}

/// Writes an `SSH_ASKPASS` program that answers password prompts with `password` and matrix
/// card prompts from `card` (rows of digits), if any. Every prompt it is asked is appended to
/// `dir/prompts.log` (see [`askpass_prompts`]).
pub fn askpass(dir: &Path, password: &str, card: Option<&[String]>) -> Result<PathBuf> {
    let card_file = dir.join("card.txt");
    if let Some(rows) = card {
        std::fs::write(&card_file, rows.join("\n") + "\n")?;
    }
    let script = format!(
        r#"#!/bin/sh
printf '%s\n' "$1" >> '{prompts}'
case "$1" in
  *"Matrix card cell "*)
    cell=$(printf '%s' "$1" | sed 's/.*cell \([A-Z]\)\([0-9]*\).*/\1 \2/')
    set -- $cell
    col=$(( $(printf '%d' "'$1") - 64 ))
    sed -n "${{2}}p" '{card}' | cut -c"$col"
    ;;
  *) printf '%s\n' '{password}' ;;
esac
"#,
        card = card_file.display(),
        prompts = dir.join("prompts.log").display()
    );
    let path = dir.join("askpass.sh");
    std::fs::write(&path, script)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

/// The prompts the askpass program written into `dir` was asked, oldest first.
pub fn askpass_prompts(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("prompts.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The OpenSSH client options every test uses toward Sekisho at `port`, from `source`.
pub fn ssh_options(port: u16, source: &str) -> Vec<String> {
    [
        "-F",
        "/dev/null",
        "-p",
        &port.to_string(),
        "-b",
        source,
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "ConnectTimeout=10",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A client program (ssh, sftp, scp) with askpass set up and output captured.
pub fn client(program: &str, askpass: &Path) -> Command {
    let mut c = Command::new(program);
    c.env("SSH_ASKPASS", askpass)
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .env_remove("SSH_AUTH_SOCK");
    c
}

/// `ssh` toward Sekisho at `port` from `source` with `args` (more options, the login, a
/// command), its password prompts answered by `askpass`.
pub fn ssh(askpass: &Path, port: u16, source: &str, args: &[&str]) -> Result<Session> {
    let mut cmd = client("ssh", askpass);
    cmd.args(ssh_options(port, source)).args(args);
    Session::spawn(cmd)
}

/// `ssh -tt LOGIN@127.0.0.1` at `port` from `source`: an interactive login.
pub fn ssh_tt(askpass: &Path, port: u16, source: &str, login: &str) -> Result<Session> {
    ssh(
        askpass,
        port,
        source,
        &["-tt", &format!("{login}@127.0.0.1")],
    )
}

/// The demo inventory with web01's serial console on `serial` and app02's console on the
/// hypervisor's sshd at `sshd`, which Sekisho logs in to with [`console_secrets`].
pub fn console_inventory(serial: u16, sshd: u16) -> String {
    crate::support::demo_inventory()
        .replace(
            "serial_console = \"127.0.0.1:14501\"",
            &format!("serial_console = \"127.0.0.1:{serial}\""),
        )
        .replace(
            "vnc_console = \"127.0.0.1:15902\"",
            &format!("vnc_console = \"127.0.0.1:15902\"\nssh_console = \"127.0.0.1:{sshd}\""),
        )
        .replace(
            "name = \"kvm01\"\naddress = \"127.0.0.1\"",
            "name = \"kvm01\"\naddress = \"127.0.0.1\"\ncredential = \"kvm01-console\"",
        )
}

/// The secrets of [`console_inventory`]: the lab user on the hypervisor's sshd.
pub fn console_secrets() -> String {
    format!(
        "[credential.kvm01-console]\nusername = \"{LAB_USER}\"\npassword = \"{LAB_PASSWORD}\"\n"
    )
}

/// The recording file of a catalogue session row (relative paths are under the instance).
pub fn recording_path(sekisho: &SekishoInstance, row: &serde_json::Value) -> Result<PathBuf> {
    let rec = row["recording"]
        .as_str()
        .context("session row without recording")?;
    Ok(if Path::new(rec).is_absolute() {
        PathBuf::from(rec)
    } else {
        sekisho.path(rec)
    })
}

/// The catalogue rows (`sessions list`) of the sessions on `target`.
pub fn sessions_on(sekisho: &SekishoInstance, target: &str) -> Result<Vec<serde_json::Value>> {
    Ok(sekisho
        .sessions()?
        .into_iter()
        .filter(|s| s["target"] == target)
        .collect())
}

/// A command's stdout and stderr, one after the other.
pub fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `sekisho export FILE --format FORMAT` into the instance's `name`, which must succeed; what
/// it wrote.
pub fn export(sekisho: &SekishoInstance, file: &Path, format: &str, name: &str) -> Result<String> {
    let to = sekisho.path(name);
    let out = sekisho.cli_raw(&[
        "export",
        &file.display().to_string(),
        "--format",
        format,
        "-o",
        &to.display().to_string(),
    ])?;
    assert_eq!(out.status.code(), Some(0), "export: {}", output_text(&out));
    Ok(std::fs::read_to_string(to)?)
}

/// A running client with its output (stdout and stderr together) captured.
pub struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Arc<Mutex<Vec<u8>>>,
}

impl Session {
    pub fn spawn(mut cmd: Command) -> Result<Session> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("spawn client")?;
        let out = Arc::new(Mutex::new(Vec::new()));
        for mut pipe in [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let out = Arc::clone(&out);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let (Ok(mut out), Some(chunk)) = (out.lock(), buf.get(..n)) {
                        out.extend_from_slice(chunk);
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        Ok(Session { child, stdin, out })
    }

    pub fn send(&mut self, bytes: &[u8]) -> Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        stdin.write_all(bytes)?;
        stdin.flush()?;
        Ok(())
    }

    /// The client's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn output(&self) -> String {
        self.out
            .lock()
            .map(|o| String::from_utf8_lossy(&o).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the output contains `needle`; returns when it was seen.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.output().contains(needle) {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out waiting for {needle:?}; output so far:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                // Let the reader threads drain.
                std::thread::sleep(Duration::from_millis(50));
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!(
                    "client did not exit within {timeout:?}; output:\n{}",
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
