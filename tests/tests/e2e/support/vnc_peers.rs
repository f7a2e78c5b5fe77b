//! Real peers for the VNC console tests: QEMU's VNC server as the VM console, and a Python RFB
//! viewer (the RFB steps of `shared/lab/probes/rfb_probe.py`, an implementation independent of
//! Sekisho's codec) as the contractor's viewer. The viewer speaks RFB 3.8 with VNC
//! authentication, asks for Raw/DesktopSize/Cursor plus encodings Sekisho must filter, can
//! send a clipboard, key and pointer events, and reports what it saw as one JSON line.
//!
//! Also TigerVNC's `vncviewer` (a real third-party viewer) under an Xvfb of its own, given the
//! ticket through a `vncpasswd -f` file; TigerVNC's `Xvnc` as a console that originates
//! clipboard (ServerCutText); xclip and xdotool to drive the X clipboards and focus; and a
//! crafted hostile console for the hostile-input test.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::support::free_port;

/// QEMU with a VNC console (no disk: the SeaBIOS screen), killed on drop.
pub struct Qemu {
    pub child: Child,
    /// Holds QEMU's log until the peer is dropped.
    pub _dir: tempfile::TempDir,
    pub port: u16,
    /// The QMP monitor's port, when started with one.
    pub qmp_port: Option<u16>,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts QEMU with its VNC console on a free port, protected by `password` if given.
pub fn start_qemu_vnc(password: Option<&str>) -> Result<Qemu> {
    start_qemu(password, false, None)
}

/// QEMU without a VNC password that writes every key event reaching it from its VNC server to
/// `trace` (QEMU's `vnc_key_event_map` trace event: `down 1, sym 0x61 -> keycode 0x1e [a]`),
/// so a test sees exactly what the console received.
pub fn start_qemu_vnc_tracing_keys(trace: &Path) -> Result<Qemu> {
    start_qemu(None, false, Some(trace))
}

/// QEMU whose VNC console needs a password that is not set yet (`password=on`: every viewer is
/// refused until one is set), with its QMP monitor on a free port to set one.
pub fn start_qemu_vnc_qmp() -> Result<Qemu> {
    start_qemu(None, true, None)
}

fn start_qemu(password: Option<&str>, qmp: bool, key_trace: Option<&Path>) -> Result<Qemu> {
    let dir = tempfile::Builder::new()
        .prefix("sekisho-qemu-vnc-")
        .tempdir()?;
    let port = free_port("127.0.0.1")?;
    let display = port
        .checked_sub(5900)
        .context("free port below 5900; cannot express it as a VNC display")?;
    let log = std::fs::File::create(dir.path().join("qemu.log"))?;
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-nodefaults",
        "-machine",
        "pc,accel=tcg",
        "-m",
        "64",
        "-vga",
        "std",
        "-display",
        "none",
        "-monitor",
        "none",
    ]);
    match password {
        Some(pw) => {
            cmd.args(["-object", &format!("secret,id=vncpw,data={pw}")]);
            cmd.args([
                "-vnc",
                &format!("127.0.0.1:{display},password-secret=vncpw"),
            ]);
        }
        None if qmp => {
            cmd.args(["-vnc", &format!("127.0.0.1:{display},password=on")]);
        }
        None => {
            cmd.args(["-vnc", &format!("127.0.0.1:{display}")]);
        }
    }
    if let Some(trace) = key_trace {
        cmd.args([
            "-trace",
            &format!("enable=vnc_key_event_map,file={}", trace.display()),
        ]);
    }
    let qmp_port = if qmp {
        let p = free_port("127.0.0.1")?;
        cmd.args(["-qmp", &format!("tcp:127.0.0.1:{p},server=on,wait=off")]);
        Some(p)
    } else {
        None
    };
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("spawn qemu-system-x86_64")?;
    let q = Qemu {
        child,
        _dir: dir,
        port,
        qmp_port,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("qemu vnc port {port} not listening");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(q)
}

/// The viewer script (written next to the test's files).
pub const VIEWER_PY: &str = r#"
import json, socket, struct, sys, time

def recvn(s, n):
    b = b""
    while len(b) < n:
        c = s.recv(n - len(b))
        if not c:
            raise EOFError("closed after %d/%d bytes" % (len(b), n))
        b += c
    return b

def des_response(password, challenge):
    try:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
    except ImportError:
        from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES
    from cryptography.hazmat.primitives.ciphers import Cipher, modes
    key = bytes(int("{:08b}".format(b)[::-1], 2) for b in password.encode()[:8].ljust(8, b"\0"))
    enc = Cipher(TripleDES(key * 3), modes.ECB()).encryptor()
    return enc.update(challenge) + enc.finalize()

args = json.loads(sys.argv[1])
out = {"result": None, "encodings_seen": [], "updates": 0, "server_cut": 0}
t0 = time.time()
s = socket.socket()
s.bind((args["source"], 0))
s.connect((args["host"], args["port"]))
s.settimeout(args.get("timeout", 10))
ver = recvn(s, 12)
out["server_version"] = ver.decode().strip()
s.sendall(b"RFB 003.008\n")
n = recvn(s, 1)[0]
if n == 0:
    out["result"] = "refused"
    out["reason"] = recvn(s, struct.unpack(">I", recvn(s, 4))[0]).decode(errors="replace")
    print(json.dumps(out)); sys.exit(0)
out["security_types"] = list(recvn(s, n))
s.sendall(b"\x02")
s.sendall(des_response(args["password"], recvn(s, 16)))
res = struct.unpack(">I", recvn(s, 4))[0]
if res != 0:
    out["result"] = "refused"
    out["reason"] = recvn(s, struct.unpack(">I", recvn(s, 4))[0]).decode(errors="replace")
    print(json.dumps(out)); sys.exit(0)
s.sendall(b"\x01")
w, h = struct.unpack(">HH", recvn(s, 4))
pf = recvn(s, 16)
name = recvn(s, struct.unpack(">I", recvn(s, 4))[0]).decode(errors="replace")
out.update(result="ok", width=w, height=h, name=name, bpp=pf[0])
bpp = pf[0] // 8
if args.get("hostile"):
    # A hostile viewer: send these bytes, then wait for the other side to close.
    s.sendall(bytes.fromhex(args["hostile"]))
    try:
        while s.recv(65536):
            pass
        out["closed"] = "eof"
    except OSError as e:
        out["closed"] = str(e)
    out["closed_at"] = time.time()
    print(json.dumps(out)); sys.exit(0)
# Raw, DesktopSize, Cursor, plus QEMU extended key event (-258), ExtendedDesktopSize (-308),
# QEMU audio (-259) and LED state (-261): Sekisho must remove the last four.
encs = [0, -223, -239, -258, -308, -259, -261]
s.sendall(struct.pack(">BBH", 2, 0, len(encs)) + b"".join(struct.pack(">i", e) for e in encs))
if args.get("cut"):
    t = args["cut"].encode("latin-1")
    s.sendall(struct.pack(">BxxxI", 6, len(t)) + t)
s.sendall(struct.pack(">BBHHHH", 3, 0, 0, 0, w, h))
fb = bytearray(w * h * 3)
hold = args.get("hold", 0)
deadline = time.time() + max(hold, 0)
sent_input = False
try:
    while True:
        t = recvn(s, 1)[0]
        if t == 0:
            nrects = struct.unpack(">xH", recvn(s, 3))[0]
            for _ in range(nrects):
                x, y, rw, rh, enc = struct.unpack(">HHHHi", recvn(s, 12))
                if enc not in out["encodings_seen"]:
                    out["encodings_seen"].append(enc)
                if enc == 0:
                    data = recvn(s, rw * rh * bpp)
                    for j in range(rh):
                        row = data[j * rw * bpp:(j + 1) * rw * bpp]
                        for i in range(rw):
                            v = int.from_bytes(row[i * bpp:(i + 1) * bpp], "big" if pf[2] else "little")
                            d = ((y + j) * w + (x + i)) * 3
                            if d + 2 < len(fb):
                                fb[d] = (v >> pf[10]) & 255; fb[d + 1] = (v >> pf[11]) & 255; fb[d + 2] = (v >> pf[12]) & 255
                elif enc == -223:
                    w, h = rw, rh
                    fb = bytearray(w * h * 3)
                elif enc == -239:
                    recvn(s, rw * rh * bpp + ((rw + 7) // 8) * rh)
                else:
                    raise SystemExit("undecodable encoding %d" % enc)
            out["updates"] += 1
            if not sent_input:
                # A key (the letter a) and a pointer move: recorded by Sekisho.
                s.sendall(struct.pack(">BBxxI", 4, 1, 0x61) + struct.pack(">BBxxI", 4, 0, 0x61))
                s.sendall(struct.pack(">BBHH", 5, 0, 10, 10))
                sent_input = True
                if args.get("keys"):
                    # Typed by a thread, a key every 150 ms as a person types, while this loop
                    # keeps reading the screen (0 in the list: a pause of a second).
                    import threading
                    def typer():
                        time.sleep(1.0)
                        for k in args["keys"]:
                            if k == 0:
                                time.sleep(1.0)
                                continue
                            s.sendall(struct.pack(">BBxxI", 4, 1, k) + struct.pack(">BBxxI", 4, 0, k))
                            time.sleep(0.15)
                    threading.Thread(target=typer, daemon=True).start()
            if time.time() >= deadline:
                break
            s.sendall(struct.pack(">BBHHHH", 3, 1, 0, 0, w, h))
        elif t == 1:
            _, n = struct.unpack(">xHH", recvn(s, 5))
            recvn(s, n * 6)
        elif t == 2:
            pass
        elif t == 3:
            out["server_cut"] += 1
            recvn(s, struct.unpack(">xxxI", recvn(s, 7))[0])
        else:
            raise SystemExit("unknown server message %d" % t)
except (EOFError, OSError) as e:
    out["closed"] = str(e)
    out["closed_at"] = time.time()
out["elapsed"] = time.time() - t0
if args.get("snapshot"):
    with open(args["snapshot"], "wb") as f:
        f.write(b"P6 %d %d 255\n" % (w, h) + bytes(fb))
nonblack = sum(1 for i in range(0, len(fb), 3) if fb[i] or fb[i + 1] or fb[i + 2])
out["nonblack_pixels"] = nonblack
print(json.dumps(out))
"#;

/// What the viewer should do.
#[derive(Debug, Clone, Default)]
pub struct ViewerArgs {
    pub host: String,
    pub port: u16,
    pub source: String,
    pub password: String,
    /// Send this as ClientCutText before asking for updates.
    pub cut: Option<String>,
    /// Keep reading updates for this many seconds (0: stop after the first update).
    pub hold: f64,
    /// Write the screen as PPM here.
    pub snapshot: Option<PathBuf>,
    /// After ServerInit send these bytes (hex) and wait for the close.
    pub hostile: Option<String>,
    /// After the first update, type these X keysyms (0: pause a second), a key every 150 ms.
    pub keys: Vec<u32>,
}

/// Writes the viewer script into `dir` and returns its path.
pub fn viewer_script(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("vnc_viewer.py");
    std::fs::write(&path, VIEWER_PY)?;
    Ok(path)
}

/// Starts the viewer; `wait_viewer` collects its report.
pub fn spawn_viewer(script: &Path, args: &ViewerArgs) -> Result<Child> {
    let json = serde_json::json!({
        "host": args.host,
        "port": args.port,
        "source": args.source,
        "password": args.password,
        "cut": args.cut,
        "hold": args.hold,
        "snapshot": args.snapshot.as_ref().map(|p| p.display().to_string()),
        "hostile": args.hostile,
        "keys": args.keys,
        "timeout": 10,
    });
    Command::new("python3")
        .arg(script)
        .arg(json.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn python3 viewer")
}

/// Waits for the viewer and parses its JSON report.
pub fn wait_viewer(child: Child) -> Result<serde_json::Value> {
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).with_context(|| {
        format!(
            "viewer output is not JSON (status {}): {stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Runs the viewer to its end.
pub fn run_viewer(script: &Path, args: &ViewerArgs) -> Result<serde_json::Value> {
    wait_viewer(spawn_viewer(script, args)?)
}

/// The demo users' password and the SSH front door's client options (for `console TARGET`):
/// one definition, in the SSH tests' peers.
pub use crate::ssh::ssh_peers::{DEMO_PASSWORD, ssh_options};

/// Writes an `SSH_ASKPASS` program answering the password prompt with `password`.
pub fn askpass(dir: &Path, password: &str) -> Result<PathBuf> {
    crate::ssh::ssh_peers::askpass(dir, password, None)
}

/// `ssh` with the askpass program answering the password prompt.
pub fn ssh_client(askpass: &Path) -> Command {
    crate::ssh::ssh_peers::client("ssh", askpass)
}

// ----- TigerVNC: the real viewer, and Xvnc as a console that originates clipboard -----

/// A process killed (and reaped) on drop.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An X server started with `-displayfd 1`: the server picks a free display number and writes
/// it on stdout, so parallel tests never race for a display.
pub struct XServer {
    _child: Reaped,
    /// `:N`
    pub display: String,
    /// Held so the server never sees a closed stdout.
    _stdout: std::process::ChildStdout,
}

fn start_x(program: &str, args: &[&str]) -> Result<XServer> {
    use std::io::BufRead;
    let mut child = Command::new(program)
        .args(["-displayfd", "1"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawn {program}"))?;
    let mut stdout = child.stdout.take().context("X server stdout")?;
    let child = Reaped(child);
    // The display number is the first line; read it byte by byte so nothing stays buffered.
    let mut line = Vec::new();
    let mut reader = std::io::BufReader::with_capacity(1, &mut stdout);
    reader.read_until(b'\n', &mut line)?;
    let n: u32 = String::from_utf8_lossy(&line)
        .trim()
        .parse()
        .with_context(|| format!("{program} did not print its display number"))?;
    Ok(XServer {
        _child: child,
        display: format!(":{n}"),
        _stdout: stdout,
    })
}

/// Xvfb for the contractor's desktop (black background, so a blank screen is all black).
pub fn start_xvfb() -> Result<XServer> {
    start_x(
        "Xvfb",
        &["-screen", "0", "1024x768x24", "-nolisten", "tcp", "-br"],
    )
}

/// TigerVNC's Xvnc as a VM console: an X desktop whose clipboard changes it announces to its
/// VNC viewers as ServerCutText (QEMU cannot originate clipboard without a guest agent).
pub struct XvncConsole {
    pub x: XServer,
    pub port: u16,
}

pub fn start_xvnc() -> Result<XvncConsole> {
    let port = free_port("127.0.0.1")?;
    let x = start_x(
        "Xvnc",
        &[
            "-rfbport",
            &port.to_string(),
            "-localhost",
            "-SecurityTypes",
            "None",
            "-nolisten",
            "tcp",
            "-geometry",
            "800x600",
            "-depth",
            "24",
            "-AlwaysShared",
        ],
    )?;
    crate::support::wait_for_port(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    )?;
    Ok(XvncConsole { x, port })
}

/// TigerVNC's `vncviewer` on `display`, with the ticket in a `vncpasswd -f` password file.
pub struct TigerViewer {
    _child: Reaped,
    pub log: PathBuf,
    pub display: String,
}

impl TigerViewer {
    /// Connects to `addr` (Sekisho's VNC listener) giving `password`.
    pub fn start(
        display: &str,
        dir: &Path,
        addr: std::net::SocketAddr,
        password: &str,
    ) -> Result<Self> {
        use std::io::Write;
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let passwd = dir.join(format!("viewer-{n}.passwd"));
        let mut vncpasswd = Command::new("vncpasswd")
            .arg("-f")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn vncpasswd")?;
        vncpasswd
            .stdin
            .take()
            .context("vncpasswd stdin")?
            .write_all(format!("{password}\n").as_bytes())?;
        let out = vncpasswd.wait_with_output()?;
        if !out.status.success() || out.stdout.is_empty() {
            bail!(
                "vncpasswd -f failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::write(&passwd, &out.stdout)?;
        let log = dir.join(format!("vncviewer-{n}.log"));
        let file = std::fs::File::create(&log)?;
        let child = Command::new("vncviewer")
            .args(["-display", display, "-passwd"])
            .arg(&passwd)
            // Debug level for the clipboard lines; RemoteResize off so the window follows the
            // console instead of asking it to resize.
            .args(["-Log", "*:stderr:100", "-RemoteResize=0"])
            .arg(format!("{}::{}", addr.ip(), addr.port()))
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .context("spawn vncviewer")?;
        Ok(TigerViewer {
            _child: Reaped(child),
            log,
            display: display.to_owned(),
        })
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the viewer's log contains `needle`; returns the log.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.log_text();
            if text.contains(needle) {
                return Ok(text);
            }
            if Instant::now() > deadline {
                bail!("vncviewer never logged {needle:?}:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Gives the viewer's window the X input focus: TigerVNC sends its clipboard only while
    /// focused (and there is no window manager under Xvfb to give it focus).
    pub fn focus(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("xdotool")
                .env("DISPLAY", &self.display)
                .args(["search", "--name", "TigerVNC"])
                .output()?;
            let ids = String::from_utf8_lossy(&out.stdout).to_string();
            if let Some(id) = ids.lines().next() {
                let status = Command::new("xdotool")
                    .env("DISPLAY", &self.display)
                    .args(["windowfocus", "--sync", id])
                    .status()?;
                if status.success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                bail!("no TigerVNC window to focus on {}", self.display);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The mean brightness (0..1) of `display`'s root window: a screenshot with `xwd`, measured by
/// ImageMagick. 0 is an all-black (blank) screen.
pub fn screen_mean(display: &str) -> Result<f64> {
    let xwd = Command::new("xwd")
        .args(["-root", "-silent", "-display", display])
        .output()
        .context("run xwd")?;
    if !xwd.status.success() {
        bail!("xwd failed: {}", String::from_utf8_lossy(&xwd.stderr));
    }
    use std::io::Write;
    let mut convert = Command::new("convert")
        .args(["xwd:-", "-format", "%[fx:mean]", "info:"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn convert")?;
    convert
        .stdin
        .take()
        .context("convert stdin")?
        .write_all(&xwd.stdout)?;
    let out = convert.wait_with_output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .with_context(|| {
            format!(
                "convert printed no mean: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Sets `selection` (clipboard or primary) on `display` to `text` with `xclip`, which stays
/// as the selection owner in the background until another client takes the selection or the
/// X server ends.
pub fn set_selection(display: &str, selection: &str, text: &str) -> Result<()> {
    use std::io::Write;
    let mut xclip = Command::new("xclip")
        .args(["-display", display, "-selection", selection, "-i"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn xclip")?;
    xclip
        .stdin
        .take()
        .context("xclip stdin")?
        .write_all(text.as_bytes())?;
    let status = xclip.wait()?;
    anyhow::ensure!(status.success(), "xclip -i failed on {display}");
    Ok(())
}

/// The text of `selection` on `display`, or "" when nobody owns it.
pub fn get_selection(display: &str, selection: &str) -> Result<String> {
    let out = Command::new("timeout")
        .args([
            "5",
            "xclip",
            "-display",
            display,
            "-selection",
            selection,
            "-o",
        ])
        .output()
        .context("run xclip -o")?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// An iptables SNAT rule on loopback for one destination port, removed on drop: TigerVNC's
/// viewer cannot choose its source address, and tickets are bound to the VDI desktop's.
pub struct Snat {
    port: u16,
    source: String,
}

fn snat_rule(op: &str, port: u16, source: &str) -> Result<()> {
    let status = Command::new("iptables")
        .args(["-w", "-t", "nat", op, "POSTROUTING", "-p", "tcp", "-d"])
        .args(["127.0.0.1", "--dport", &port.to_string()])
        .args(["-j", "SNAT", "--to-source", source])
        .status()
        .context("run iptables")?;
    anyhow::ensure!(
        status.success(),
        "iptables {op} SNAT for port {port} failed"
    );
    Ok(())
}

impl Snat {
    pub fn add(port: u16, source: &str) -> Result<Self> {
        snat_rule("-A", port, source)?;
        Ok(Snat {
            port,
            source: source.to_owned(),
        })
    }
}

impl Drop for Snat {
    fn drop(&mut self) {
        let _ = snat_rule("-D", self.port, &self.source);
    }
}

/// `sekisho serve` for an instance started with `no_serve`, with extra environment (e.g. a
/// short `SEKISHO_VNC_TICKET_SECONDS`, or a `RUST_LOG` of its own); logs to the instance's
/// `serve.log`, and returns once the SSH and VNC listeners accept connections.
pub fn spawn_serve_with_env(
    sekisho: &crate::support::SekishoInstance,
    env: &[(&str, &str)],
) -> Result<Reaped> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(sekisho.path("serve.log"))?;
    let child = Command::new(crate::support::sekisho_bin()?)
        .arg("serve")
        .arg("--config")
        .arg(&sekisho.config)
        .current_dir(sekisho.dir.path())
        .env("RUST_LOG", "info,proxy=debug")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("spawn sekisho serve")?;
    let child = Reaped(child);
    crate::support::wait_for_port(sekisho.listen.ssh, Duration::from_secs(20))
        .with_context(|| sekisho.serve_log())?;
    crate::support::wait_for_port(sekisho.listen.vnc, Duration::from_secs(5))?;
    Ok(child)
}

/// A hostile VNC "console": completes the RFB handshake (no authentication, a 64x48 screen),
/// then answers the first client message with `payload` (hex) and reports on stdout whether
/// the other side closed the connection. A crafted peer on purpose: no real server sends
/// malformed updates.
pub const HOSTILE_SERVER_PY: &str = r#"
import json, socket, struct, sys, time
port_file, payload = sys.argv[1], bytes.fromhex(sys.argv[2])
l = socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
l.bind(("127.0.0.1", 0)); l.listen(1)
open(port_file + ".tmp", "w").write(str(l.getsockname()[1]))
import os; os.rename(port_file + ".tmp", port_file)
# No accept timeout: the test kills this process when it ends.
c, _ = l.accept(); c.settimeout(10)
c.sendall(b"RFB 003.008\n"); c.recv(12)
c.sendall(b"\x01\x01"); c.recv(1)
c.sendall(struct.pack(">I", 0)); c.recv(1)
pf = struct.pack(">BBBBHHHBBBxxx", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
c.sendall(struct.pack(">HH", 64, 48) + pf + struct.pack(">I", 4) + b"evil")
out = {}
try:
    c.recv(4096)
    c.sendall(payload)
    t0 = time.time()
    while c.recv(65536):
        pass
    out["closed"] = "eof"; out["after"] = time.time() - t0
except OSError as e:
    out["closed"] = str(e)
print(json.dumps(out))
"#;

/// tanaka's one-time VNC ticket for web01, asked over SSH (`console web01`) from `source`.
pub fn tanaka_web01_ticket(
    instance: &crate::support::SekishoInstance,
    source: &str,
) -> Result<String> {
    let askpass = askpass(instance.dir.path(), DEMO_PASSWORD)?;
    let out = ssh_client(&askpass)
        .args(ssh_options(instance.listen.ssh.port(), source))
        .arg("tanaka@127.0.0.1")
        .arg("console web01")
        .stdin(Stdio::null())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "console refused: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("password:")
                .map(|v| v.trim().to_owned())
        })
        .context("no ticket")
}

/// A real VNC console session of tanaka on web01 from `source` through Sekisho, the scripted
/// viewer holding it `hold` seconds; returns the ended session's (id, recording path).
pub fn recorded_console_session(
    instance: &crate::support::SekishoInstance,
    source: &str,
    hold: f64,
) -> Result<(String, PathBuf)> {
    recorded_console_session_with_clipboard(instance, source, hold, None)
}

/// [`recorded_console_session`], the viewer sending `cut` as its clipboard (ClientCutText)
/// when given.
pub fn recorded_console_session_with_clipboard(
    instance: &crate::support::SekishoInstance,
    source: &str,
    hold: f64,
    cut: Option<&str>,
) -> Result<(String, PathBuf)> {
    let script = viewer_script(instance.dir.path())?;
    let report = run_viewer(
        &script,
        &ViewerArgs {
            host: instance.listen.vnc.ip().to_string(),
            port: instance.listen.vnc.port(),
            source: source.to_owned(),
            password: tanaka_web01_ticket(instance, source)?,
            hold,
            cut: cut.map(str::to_owned),
            ..ViewerArgs::default()
        },
    )?;
    anyhow::ensure!(
        report.get("result").and_then(|r| r.as_str()) == Some("ok"),
        "{report}\n{}",
        instance.serve_log()
    );
    let session = instance.wait_until(Duration::from_secs(10), "the VNC session to end", || {
        Ok(instance.sessions()?.into_iter().find(|s| {
            s.get("protocol").and_then(|p| p.as_str()) == Some("console-vnc")
                && s.get("ended_at").is_some_and(|e| !e.is_null())
        }))
    })?;
    let field = |name: &str| {
        session
            .get(name)
            .and_then(|v| v.as_str())
            .with_context(|| format!("no {name} in {session}"))
    };
    Ok((
        field("id")?.to_owned(),
        instance.dir.path().join(field("recording")?),
    ))
}
