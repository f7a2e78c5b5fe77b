//! Benchmark (run by hand; prints figures, asserts none): how large the recording of an hour
//! of a busy graphical console is when a real VNC server sends what it really sends.
//!
//! The console is TigerVNC's `Xvnc` (1024x768, depth 24, security type None) standing in for
//! a VM's graphical console, made busy as an administrator's would be: `top` refreshing every
//! second in one xterm, file listings and package licences scrolling at three lines every
//! 100 ms in another, and a clock ticking every second. No window manager: windows are placed
//! with `-geometry`. The viewer is TigerVNC's `vncviewer` under an Xvfb of its own, given
//! tanaka's one-time ticket, connecting through Sekisho's VNC door (an iptables SNAT rule makes
//! it come from tanaka's desktop, as in `vnc.rs`); Sekisho removes the encodings the player
//! cannot decode and offers the console ZRLE first. The viewer keeps requesting updates for
//! the whole window, then disconnects.
//!
//! The figure is the size of the recording a one-hour session would leave: the file as it
//! is (header, first screen, trailer) plus its steady growth (the chunks written after a
//! warm-up, the recorder flushing one a second) for the rest of the hour. The same console is
//! then measured idle (the xterms closed, only the clock ticking). The console's own traffic,
//! decoded from the recording by the player's RFB decoder, says which encoding it used and
//! what dominates.
//!
//! `cargo test -p e2e --test e2e vnc_busy_hour -- --ignored --nocapture --test-threads=1`;
//! `VNC_BUSY_SECONDS` (default 60) and `VNC_IDLE_SECONDS` (default 30) set the windows.
//! Sekisho is the release build (`SEKISHO_BIN` to measure another).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::ssh::ssh_peers;
use crate::support::bench::Proc;
use crate::support::faults::session_events;
use crate::support::inventory::{Inventory, Target};
use crate::support::{InstanceOptions, SekishoInstance, bench, require_peers, wait_for_port};
use crate::vnc::vnc_peers::{Snat, TigerViewer, start_xvfb, tanaka_web01_ticket};

/// tanaka's VDI desktop (the pool and zone of the inventory below).
const TANAKA_DESKTOP: &str = "127.0.10.11";
/// The console's screen: a common VM console size.
const WIDTH: u16 = 1024;
const HEIGHT: u16 = 768;
/// What the recording holds before this point (the first full screen, the viewer settling) is
/// counted once, not scaled to the hour.
const WARM_UP_US: u64 = 5_000_000;

const PEERS: &[&str] = &[
    "Xvnc",
    "Xvfb",
    "vncviewer",
    "vncpasswd",
    "xterm",
    "xclock",
    "top",
    "ssh",
    "iptables",
];

/// The scrolling terminal: listings and licence texts, three lines every 100 ms, for ever.
const SCROLL: &str = r#"set -u
pace() {
  n=0
  while IFS= read -r line; do
    printf '%s\n' "$line"
    n=$((n + 1))
    if [ $((n % 3)) -eq 0 ]; then sleep 0.1; fi
  done
}
while :; do
  ls -l /usr/bin /usr/lib/x86_64-linux-gnu | pace
  for f in /usr/share/doc/*/copyright; do pace < "$f"; done
done
"#;

/// An X display number nobody uses, in a range of this bench's own.
fn free_display() -> Result<u32> {
    (230..260)
        .find(|n| {
            !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
        })
        .context("no free X display number in 230..260")
}

/// Xvnc as web01's graphical console: its X display and its RFB port (loopback only).
struct Console {
    xvnc: Proc,
    number: u32,
    display: String,
    port: u16,
}

impl Drop for Console {
    /// SIGTERM first, so that Xvnc removes its lock file and socket (killed, it leaves them,
    /// and [`free_display`] would skip that number from then on); then what is left, if any.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.xvnc.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && matches!(self.xvnc.child.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let n = self.number;
        if matches!(self.xvnc.child.try_wait(), Ok(Some(_))) {
            let _ = std::fs::remove_file(format!("/tmp/.X{n}-lock"));
            let _ = std::fs::remove_file(format!("/tmp/.X11-unix/X{n}"));
        }
    }
}

fn start_console(dir: &Path) -> Result<Console> {
    let n = free_display()?;
    let port = crate::support::free_port("127.0.0.1")?;
    let log = std::fs::File::create(dir.join("xvnc.log"))?;
    let xvnc = Proc::spawn(
        "Xvnc",
        Command::new("Xvnc")
            .arg(format!(":{n}"))
            .args(["-geometry", &format!("{WIDTH}x{HEIGHT}"), "-depth", "24"])
            .args(["-SecurityTypes", "None", "-localhost", "-nolisten", "tcp"])
            .args(["-rfbport", &port.to_string(), "-desktop", "web01"])
            .stdout(log.try_clone()?)
            .stderr(log),
    )?;
    wait_for_port(
        std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(10),
    )
    .context("Xvnc did not listen")?;
    let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() {
        if Instant::now() > deadline {
            bail!("Xvnc did not open {}", socket.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Console {
        xvnc,
        number: n,
        display: format!(":{n}"),
        port,
    })
}

/// The administrator's windows on `display`: `top` and the scrolling terminal.
fn busy_windows(display: &str, dir: &Path) -> Result<Vec<Proc>> {
    let script = dir.join("scroll.sh");
    std::fs::write(&script, SCROLL)?;
    let top = Proc::spawn(
        "xterm (top)",
        Command::new("xterm")
            .env("DISPLAY", display)
            .args(["-geometry", "100x24+0+0", "-title", "top"])
            .args(["-e", "top", "-d", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let scroll = Proc::spawn(
        "xterm (scrolling)",
        Command::new("xterm")
            .env("DISPLAY", display)
            .args(["-geometry", "132x28+0+360", "-title", "shell"])
            .arg("-e")
            .arg("bash")
            .arg(&script)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    Ok(vec![top, scroll])
}

/// A clock ticking every second, top right.
fn clock(display: &str) -> Result<Proc> {
    Proc::spawn(
        "xclock",
        Command::new("xclock")
            .env("DISPLAY", display)
            .args(["-geometry", "140x140+860+20", "-update", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
}

/// tanaka (acme) on his VDI desktop, and web01, a VM on kvm01 whose graphical console is the
/// Xvnc on `console_port`.
fn inventory(console_port: u16) -> String {
    Inventory::new()
        .pool("vdi-internet", "internet-vpn", "127.0.10.0/24")
        .zone("business", &["internet-vpn"])
        .user("tanaka", TANAKA_DESKTOP)
        .hypervisor()
        .target(
            Target::new("web01", "127.0.20.11", "vm", "business")
                .vnc_console(&format!("127.0.0.1:{console_port}")),
        )
        .render()
}

/// `row[name]`, or null.
fn field<'a>(row: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    row.get(name).unwrap_or(&serde_json::Value::Null)
}

/// tanaka watches web01's console in TigerVNC's viewer on `desktop` for `seconds`, then
/// closes it: the ended session's row.
fn watch(instance: &SekishoInstance, desktop: &str, seconds: u64) -> Result<serde_json::Value> {
    let ticket = tanaka_web01_ticket(instance, TANAKA_DESKTOP)?;
    let viewer = TigerViewer::start(desktop, instance.dir.path(), instance.listen.vnc, &ticket)?;
    viewer.wait_log("Using pixel format", Duration::from_secs(15))?;
    let live = instance.wait_until(Duration::from_secs(10), "the live VNC session", || {
        Ok(instance
            .sessions()?
            .into_iter()
            .find(|s| field(s, "protocol") == "console-vnc" && field(s, "ended_at").is_null()))
    })?;
    let id = field(&live, "id")
        .as_str()
        .context("session id")?
        .to_owned();
    std::thread::sleep(Duration::from_secs(seconds));
    let still = instance
        .sessions()?
        .into_iter()
        .any(|s| field(&s, "id") == id.as_str() && field(&s, "ended_at").is_null());
    anyhow::ensure!(
        still,
        "the session ended before the window did:\n{}\n{}",
        viewer.log_text(),
        instance.serve_log()
    );
    drop(viewer);
    instance.wait_until(Duration::from_secs(15), "the VNC session to end", || {
        Ok(instance
            .sessions()?
            .into_iter()
            .find(|s| field(s, "id") == id.as_str() && !field(s, "ended_at").is_null()))
    })
}

/// Rectangles and bytes (header included) of one encoding in the console's updates.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    rects: u64,
    bytes: u64,
}

/// What one recording holds.
#[derive(Debug, Default)]
struct Measured {
    /// The file.
    size: u64,
    /// The session's length (the recording's end, µs since its start).
    end_us: u64,
    /// Bytes of the chunks begun after [`WARM_UP_US`], and the time they cover.
    steady_bytes: u64,
    steady_us: u64,
    /// What the console and the viewer sent, as relayed.
    server_bytes: u64,
    client_bytes: u64,
    updates: u64,
    /// By encoding name, from the player's RFB decoder.
    encodings: BTreeMap<String, Tally>,
    /// By the window the rectangle falls in ([`area`]).
    areas: BTreeMap<&'static str, Tally>,
    /// Where the decoder stopped, if it could not follow the console.
    undecodable: Option<String>,
}

impl Measured {
    fn seconds(&self) -> f64 {
        self.end_us as f64 / 1e6
    }

    /// Steady growth in bytes per second.
    fn steady_rate(&self) -> f64 {
        if self.steady_us == 0 {
            return 0.0;
        }
        self.steady_bytes as f64 / (self.steady_us as f64 / 1e6)
    }

    /// The recording of a one-hour session in MB: this one, then its steady growth until the
    /// hour is up.
    fn hour_mb(&self) -> f64 {
        let rest = (3600.0 - self.seconds()).max(0.0);
        (self.size as f64 + self.steady_rate() * rest) / 1e6
    }

    /// The encoding that carried most of the console's update bytes, and its share.
    fn main_encoding(&self) -> Option<(&str, f64)> {
        let total: u64 = self.encodings.values().map(|t| t.bytes).sum();
        self.encodings
            .iter()
            .max_by_key(|(_, t)| t.bytes)
            .map(|(name, t)| (name.as_str(), t.bytes as f64 / total.max(1) as f64))
    }
}

/// Which of the console's windows a rectangle (its centre) falls in. The bounds follow the
/// `-geometry` of [`busy_windows`] and [`clock`] in pixels (xterm's default font is 6x13):
/// `top` above y 340, the scrolling terminal below, the clock right of x 860 at the top.
fn area(rect: &player::rfb::Rectangle) -> &'static str {
    use player::rfb::Encoding;
    if matches!(rect.encoding, Encoding::Cursor | Encoding::DesktopSize) {
        return "pseudo-encodings";
    }
    let x = u32::from(rect.x) + u32::from(rect.width) / 2;
    let y = u32::from(rect.y) + u32::from(rect.height) / 2;
    if x >= 860 && y < 200 {
        "xclock"
    } else if y < 340 {
        "xterm (top)"
    } else {
        "xterm (scrolling)"
    }
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

fn encoding_name(e: player::rfb::Encoding) -> String {
    use player::rfb::Encoding;
    match e {
        Encoding::Raw => "Raw".to_owned(),
        Encoding::CopyRect => "CopyRect".to_owned(),
        Encoding::Rre => "RRE".to_owned(),
        Encoding::Hextile => "Hextile".to_owned(),
        Encoding::Zrle => "ZRLE".to_owned(),
        Encoding::DesktopSize => "DesktopSize".to_owned(),
        Encoding::Cursor => "Cursor".to_owned(),
        Encoding::Other(n) => format!("encoding {n}"),
    }
}

/// Reads the recording at `path`: its size, steady growth, and the console's traffic by
/// encoding.
fn measure(path: &Path) -> Result<Measured> {
    use player::rfb::{self, ClientMsg, ServerDecoder, ServerMsg};
    use recorder::format::{Direction, RecordKind};
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let rec = recorder::reader::Recording::parse(&bytes)?;
    let mut m = Measured {
        size: bytes.len() as u64,
        end_us: rec.end_us(),
        ..Measured::default()
    };
    // Chunks are flushed once a second: those begun after the warm-up are the steady state,
    // from the end of the last one begun before it.
    let since = rec
        .chunks()
        .iter()
        .filter(|c| c.first_us < WARM_UP_US)
        .map(|c| c.last_us)
        .max()
        .unwrap_or(0);
    m.steady_bytes = rec
        .chunks()
        .iter()
        .filter(|c| c.first_us >= WARM_UP_US)
        .map(|c| c.len)
        .sum();
    m.steady_us = m.end_us.saturating_sub(since);

    let mut init = rec
        .header()
        .header
        .metadata
        .get("rfb.server_init")
        .and_then(|h| unhex(h))
        .and_then(|raw| rfb::decode_server_init(&raw).ok().flatten())
        .map(|(si, _)| si);
    let mut decoder: Option<ServerDecoder> = None;
    let (mut server_buf, mut client_buf) = (Vec::new(), Vec::new());
    for r in rec.records() {
        let (direction, data) = match r?.kind {
            RecordKind::Keyframe { bytes, .. } if init.is_none() => {
                init = rfb::decode_server_init(&bytes)
                    .ok()
                    .flatten()
                    .map(|(si, _)| si);
                continue;
            }
            RecordKind::Data {
                direction, bytes, ..
            } => (direction, bytes),
            _ => continue,
        };
        if decoder.is_none() && m.undecodable.is_none() {
            match &init {
                Some(si) => {
                    decoder = Some(ServerDecoder::new(si.width, si.height, si.pixel_format))
                }
                None => m.undecodable = Some("no ServerInit in the recording".to_owned()),
            }
        }
        match direction {
            Direction::ClientToServer => {
                m.client_bytes += data.len() as u64;
                client_buf.extend_from_slice(&data);
                let mut pos = 0;
                while let Ok(Some((msg, n))) =
                    rfb::decode_client(client_buf.get(pos..).unwrap_or_default())
                {
                    pos += n;
                    if let (ClientMsg::SetPixelFormat(pf), Some(d)) = (msg, decoder.as_mut()) {
                        d.set_pixel_format(pf);
                    }
                }
                client_buf.drain(..pos);
            }
            Direction::ServerToClient => {
                m.server_bytes += data.len() as u64;
                let Some(d) = decoder.as_mut() else {
                    continue;
                };
                server_buf.extend_from_slice(&data);
                let mut pos = 0;
                loop {
                    match d.decode(server_buf.get(pos..).unwrap_or_default()) {
                        Ok(Some((msg, n))) => {
                            pos += n;
                            match msg {
                                ServerMsg::FramebufferUpdate { .. } => m.updates += 1,
                                ServerMsg::Rect(rect) => {
                                    let t = m
                                        .encodings
                                        .entry(encoding_name(rect.encoding))
                                        .or_default();
                                    t.rects += 1;
                                    t.bytes += n as u64;
                                    let a = m.areas.entry(area(&rect)).or_default();
                                    a.rects += 1;
                                    a.bytes += n as u64;
                                }
                                _ => {}
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            m.undecodable = Some(format!(
                                "the console's bytes stop decoding after {} bytes: {e}",
                                m.server_bytes
                            ));
                            decoder = None;
                            break;
                        }
                    }
                }
                server_buf.drain(..pos.min(server_buf.len()));
            }
        }
    }
    Ok(m)
}

/// `recording verify` (with the instance's key) accepts the recording at `path`.
fn verify(instance: &SekishoInstance, path: &Path) -> Result<()> {
    let out = instance.cli(&["recording", "verify", &path.display().to_string()])?;
    anyhow::ensure!(
        out.status.success(),
        "recording verify {}: {}",
        path.display(),
        ssh_peers::output_text(&out)
    );
    Ok(())
}

/// Prints one case's figures and its `BENCH` line.
fn report(what: &str, bench_name: &str, m: &Measured) {
    let secs = m.seconds();
    println!(
        "  {what}: {secs:.1} s, recording {} bytes ({:.1} KB/s as a whole, {:.1} KB/s steady after {} s)",
        m.size,
        m.size as f64 / secs.max(0.001) / 1e3,
        m.steady_rate() / 1e3,
        WARM_UP_US / 1_000_000
    );
    println!(
        "    console sent {} bytes in {} updates ({:.1} updates/s, {:.1} MB/h), viewer {} bytes; recorded {:.1}x smaller than the console's traffic",
        m.server_bytes,
        m.updates,
        m.updates as f64 / secs.max(0.001),
        m.server_bytes as f64 / secs.max(0.001) * 3600.0 / 1e6,
        m.client_bytes,
        m.server_bytes as f64 / (m.size as f64).max(1.0)
    );
    for (name, t) in &m.encodings {
        println!("    {name:<12} {:>7} rects {:>11} bytes", t.rects, t.bytes);
    }
    for (name, t) in &m.areas {
        println!(
            "    in {name:<18} {:>7} rects {:>11} bytes ({:.1} MB/h)",
            t.rects,
            t.bytes,
            t.bytes as f64 / secs.max(0.001) * 3600.0 / 1e6
        );
    }
    if let Some(why) = &m.undecodable {
        println!("    (not followed to the end: {why})");
    }
    println!(
        "    one-hour session: {:.2} MB/h (this recording scaled to an hour: {:.2} MB/h)",
        m.hour_mb(),
        m.size as f64 / secs.max(0.001) * 3600.0 / 1e6
    );
    println!("BENCH vnc.{bench_name}_hour_mb={:.2} MB/h", m.hour_mb());
    if let Some((name, share)) = m.main_encoding() {
        println!(
            "  {what}: the console used {name} ({:.1} % of its update bytes)",
            share * 100.0
        );
    }
}

#[test]
#[ignore = "benchmark: run by hand"]
fn vnc_busy_console_hour_bench() -> Result<()> {
    if !require_peers(PEERS)? {
        return Ok(());
    }
    let seconds = |var: &str, default: u64| {
        std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let busy_secs = seconds("VNC_BUSY_SECONDS", 60);
    let idle_secs = seconds("VNC_IDLE_SECONDS", 30);
    // Built (or found) once: a second `cargo build --release` may rebuild after another
    // package's release build changed the features.
    let sekisho = bench::sekisho_binary()?;
    let work = tempfile::Builder::new()
        .prefix("sekisho-vnc-busy-")
        .tempdir()?;
    let console = start_console(work.path())?;
    let _clock = clock(&console.display)?;
    let windows = busy_windows(&console.display, work.path())?;
    let mut instance = SekishoInstance::start_with(
        &inventory(console.port),
        InstanceOptions {
            no_serve: true,
            ..InstanceOptions::default()
        },
    )?;
    instance.serve_with(sekisho.clone())?;
    wait_for_port(instance.listen.vnc, Duration::from_secs(5))?;
    // Dropped before the instance (and its serve): the SNAT rule.
    let _snat = Snat::add(instance.listen.vnc.port(), TANAKA_DESKTOP)?;
    let desktop = start_xvfb()?;

    let busy_row = watch(&instance, &desktop.display, busy_secs)?;
    drop(windows);
    // The screen settles (the xterms' windows gone) before the idle session starts.
    std::thread::sleep(Duration::from_secs(2));
    let idle_row = watch(&instance, &desktop.display, idle_secs)?;

    let mut results = Vec::new();
    for row in [&busy_row, &idle_row] {
        let path = ssh_peers::recording_path(&instance, row)?;
        verify(&instance, &path)?;
        results.push(measure(&path)?);
    }
    let busy_id = field(&busy_row, "id").as_str().context("session id")?;
    // The encoding events of the busy session, each text once with how often it came (the
    // viewer sends SetEncodings again whenever its automatic quality selection changes).
    let mut encoding_events: BTreeMap<String, usize> = BTreeMap::new();
    for (_, detail) in session_events(&instance, busy_id)? {
        if detail.contains("SetEncodings") || detail.contains("ZRLE") {
            *encoding_events.entry(detail).or_default() += 1;
        }
    }

    println!();
    println!(
        "VNC busy console hour: Xvnc {WIDTH}x{HEIGHT} depth 24 (display {}) through Sekisho ({}) to TigerVNC's vncviewer",
        console.display,
        sekisho.display()
    );
    println!(
        "  busy: top -d 1, a terminal scrolling 30 lines/s, xclock -update 1; idle: the clock only"
    );
    for (detail, times) in &encoding_events {
        println!("  session event ({times}x): {detail}");
    }
    if let [busy, idle] = results.as_slice() {
        report("busy", "busy_console", busy);
        report("idle", "idle_console", idle);
    }
    Ok(())
}
