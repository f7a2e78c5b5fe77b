//! Player tests against recordings made through Sekisho with real peers: decoders, exports and
//! fidelity against the peers' own screens.
//!
//! Fidelity: the player's last frame (`sekisho export --format png`) is compared with the
//! server's own picture of its screen (`xwd -root` of xrdp's Xvnc session; QEMU's
//! `screendump`). Both images are turned into raw RGB by ffmpeg, so the comparison does not
//! depend on Sekisho's own image code.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use rdp_peers::{LAB_USER, XRDP_PORT};

use crate::rdp::rdp_peers;
use crate::support::images::raw_rgb;
use crate::support::inventory::{Inventory, PASSWORD as TANAKA_PASS, Target};
use crate::support::{InstanceOptions, SekishoInstance, require_peers};
use crate::vnc::vnc_peers;

/// The VDI desktop address RDP clients appear to come from (SNAT, as in `rdp.rs`).
const DESKTOP: &str = "127.0.10.11";
/// tanaka's VDI desktop in the demo inventory (VNC consoles).
const VNC_DESKTOP: &str = "127.0.10.11";

/// At most this fraction of pixels may differ between the player's frame and the server's
/// screen. The cursor is not part of either picture (xwd and screendump leave it out; the
/// player draws pointer updates separately), so any difference is a decoding error; the
/// margin only covers a screen change racing the end of the session.
const MAX_DIFFERING: f64 = 0.001;

/// tanaka on [`DESKTOP`] and srv01 at xrdp.
fn rdp_inventory() -> String {
    Inventory::new()
        .pool("vdi-test", "ip-vpn", "127.0.10.0/24")
        .zone("business", &["ip-vpn"])
        .user("tanaka", DESKTOP)
        .target(Target::rdp_server("srv01", XRDP_PORT))
        .render()
}

/// The fraction of pixels that differ between two images of the same size.
pub(crate) fn differing(a: &Path, b: &Path) -> Result<f64> {
    let (aw, ah, ap) = raw_rgb(a)?;
    let (bw, bh, bp) = raw_rgb(b)?;
    ensure!(
        (aw, ah) == (bw, bh),
        "sizes differ: {} is {aw}x{ah}, {} is {bw}x{bh}",
        a.display(),
        b.display()
    );
    // A uniform screen would make the comparison meaningless.
    let first = bp.get(..3).context("empty image")?;
    ensure!(
        bp.chunks_exact(3).any(|p| p != first),
        "{} is a single colour",
        b.display()
    );
    let diff = ap
        .chunks_exact(3)
        .zip(bp.chunks_exact(3))
        .filter(|(x, y)| x != y)
        .count();
    Ok(diff as f64 / f64::from(aw * ah))
}

/// Fails if more than [`MAX_DIFFERING`] of the pixels of the player's `frame` and the server's
/// `screen` differ; prints the figure, `pictures` saying which two they are.
fn assert_same_picture(protocol: &str, frame: &Path, screen: &Path, pictures: &str) -> Result<()> {
    let fraction = differing(frame, screen)?;
    eprintln!(
        "{protocol} fidelity: {:.4}% of pixels differ between {pictures}",
        fraction * 100.0
    );
    assert!(
        fraction <= MAX_DIFFERING,
        "{:.4}% of pixels differ (at most {:.4}%)",
        fraction * 100.0,
        MAX_DIFFERING * 100.0
    );
    Ok(())
}

/// `sekisho export RECORDING --format FORMAT [--at AT] -o OUT`, which must succeed.
pub(crate) fn export(
    instance: &SekishoInstance,
    recording: &Path,
    format: &str,
    at: Option<f64>,
    out: &Path,
) -> Result<()> {
    let at = at.map(|at| format!("{at:.3}"));
    let mut args = vec![
        "export",
        recording.to_str().context("path")?,
        "--format",
        format,
    ];
    if let Some(at) = &at {
        args.extend(["--at", at]);
    }
    args.extend(["-o", out.to_str().context("path")?]);
    let run = instance.cli_raw(&args)?;
    ensure!(
        run.status.success(),
        "{format} export failed: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    Ok(())
}

/// The X display of the xrdp session from xrdp's log ("login successful for user labuser on
/// display 4112").
fn xrdp_display(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .filter_map(|l| l.split(" on display ").nth(1))
        .map(|d| d.trim().to_owned())
        .next()
}

/// Replaying an RDP recording made through Sekisho by xfreerdp against xrdp reproduces the
/// server's screen: `xwd -root` of the session's X display, taken during the session, against
/// the player's frame at that moment. The lab's session runs xclock with a second hand, so
/// the picture is taken a quarter second after a tick and the frame exported before the next
/// one. Set `SEKISHO_KEEP_RDP_RECORDING=PATH` to keep the recording.
#[test]
fn player_rdp_frame_matches_the_server_screen() -> Result<()> {
    if !require_peers(&[
        "xrdp", "xfreerdp", "Xvfb", "Xvnc", "timeout", "iptables", "xwd", "convert", "ffmpeg",
        "ffprobe",
    ])? {
        return Ok(());
    }
    rdp_peers::ensure_xrdp()?;
    let _serial = rdp_peers::serial();
    let instance = SekishoInstance::start_with(
        &rdp_inventory(),
        InstanceOptions {
            secrets: Some(rdp_peers::lab_secrets(&["srv01"])),
            ..InstanceOptions::default()
        },
    )?;
    let _snat = rdp_peers::Snat::add(instance.listen.rdp.port(), DESKTOP)?;
    let before = rdp_peers::xrdp_log_offset();
    let port = instance.listen.rdp.port();
    let client = rdp_peers::Background::spawn(
        port,
        "tanaka",
        TANAKA_PASS,
        12,
        &["/pcb:srv01", "/size:1024x768", "/bpp:32"],
    );
    let display = instance.wait_until(Duration::from_secs(8), "xrdp's session display", || {
        Ok(xrdp_display(&rdp_peers::xrdp_log_since(before)))
    })?;
    // Let the first screen arrive, then take the picture 250 ms after a clock tick.
    std::thread::sleep(Duration::from_secs(4));
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    std::thread::sleep(Duration::from_millis(
        (1250 - u64::from(now.subsec_millis())) % 1000,
    ));
    let shot_at = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let shot = instance.dir.path().join("server.xwd");
    let xauth = rdp_peers::lab_dir().join(format!("home/{LAB_USER}/.Xauthority"));
    let xwd = Command::new("xwd")
        .args(["-root", "-silent", "-display", &format!(":{display}")])
        .arg("-out")
        .arg(&shot)
        .env("XAUTHORITY", &xauth)
        .output()?;
    let run = client.join()?;
    ensure!(
        run.active(),
        "session through Sekisho did not come up:\n{}\n{}",
        run.log,
        instance.serve_log()
    );
    if !xwd.status.success() {
        bail!("xwd :{display}: {}", String::from_utf8_lossy(&xwd.stderr));
    }
    // ffmpeg does not read xwd dumps of a 32-bit visual (it wants a colormap): ImageMagick does.
    let shot_png = instance.dir.path().join("server.png");
    let conv = Command::new("convert")
        .arg(format!("xwd:{}", shot.display()))
        .arg(format!("png:{}", shot_png.display()))
        .output()?;
    ensure!(
        conv.status.success(),
        "convert: {}",
        String::from_utf8_lossy(&conv.stderr)
    );
    let session = rdp_peers::ended_session(&instance, "the RDP session to end")?;
    let recording = session
        .get("recording")
        .and_then(|r| r.as_str())
        .context("session has no recording")?;
    let recording = instance.dir.path().join(recording);
    if let Some(keep) = std::env::var_os("SEKISHO_KEEP_RDP_RECORDING") {
        std::fs::copy(&recording, &keep)?;
    }

    // The recording's start (header: magic 8, version 2, length 4, session id 16, start i64).
    let bytes = std::fs::read(&recording)?;
    let start_us = i64::from_le_bytes(bytes.get(30..38).context("header")?.try_into()?);
    let shot_us = i64::try_from(shot_at.as_micros())?;
    // Updates reach the recording a little after the screen changed: take the frame 450 ms
    // after the picture, still 300 ms before the next tick.
    let at = (shot_us - start_us + 450_000) as f64 / 1e6;
    let frame = instance.dir.path().join("player.png");
    export(&instance, &recording, "png", Some(at), &frame)?;
    assert_same_picture(
        "RDP",
        &frame,
        &shot_png,
        &format!("the player's frame at {at:.3} s and xwd of :{display}"),
    )
}

/// One QMP command on a fresh connection to QEMU's monitor (greeting, capabilities, command).
fn qmp(port: u16, command: &str) -> Result<String> {
    use std::io::{BufRead, BufReader, Write};
    let stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?; // greeting
    for cmd in [r#"{"execute":"qmp_capabilities"}"#, command] {
        writer.write_all(cmd.as_bytes())?;
        writer.write_all(b"\n")?;
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                bail!("QMP closed");
            }
            // Asynchronous events come interleaved; the answer has "return" or "error".
            if line.contains("\"return\"") || line.contains("\"error\"") {
                break;
            }
        }
        ensure!(!line.contains("\"error\""), "QMP {cmd}: {line}");
    }
    Ok(line)
}

/// Replaying a VNC console recording (QEMU through Sekisho) reproduces QEMU's own screen
/// (`screendump` through QMP).
#[test]
fn player_vnc_last_frame_matches_qemu_screendump() -> Result<()> {
    if !require_peers(&["qemu-system-x86_64", "python3", "ssh", "ffmpeg", "ffprobe"])? {
        return Ok(());
    }
    let qemu = vnc_peers::start_qemu_vnc_qmp()?;
    let qmp_port = qemu.qmp_port.context("qmp port")?;
    crate::support::wait_for_port(
        std::net::SocketAddr::from(([127, 0, 0, 1], qmp_port)),
        Duration::from_secs(10),
    )?;
    let inventory = crate::support::demo_inventory().replacen(
        "vnc_console = \"127.0.0.1:15901\"",
        &format!(
            "vnc_console = \"127.0.0.1:{}\"\nvnc_qmp = \"127.0.0.1:{qmp_port}\"",
            qemu.port
        ),
        1,
    );
    let instance = SekishoInstance::start_with(&inventory, InstanceOptions::default())?;
    // Let SeaBIOS reach its final screen ("No bootable device") before the session.
    std::thread::sleep(Duration::from_secs(3));
    let (_, recording) = vnc_peers::recorded_console_session(&instance, VNC_DESKTOP, 3.0)?;

    let shot = instance.dir.path().join("qemu.ppm");
    qmp(
        qmp_port,
        &format!(
            r#"{{"execute":"screendump","arguments":{{"filename":"{}"}}}}"#,
            shot.display()
        ),
    )?;
    let frame = instance.dir.path().join("player.png");
    export(&instance, &recording, "png", None, &frame)?;
    assert_same_picture(
        "VNC",
        &frame,
        &shot,
        "the player's last frame and QEMU's screendump",
    )?;

    // The same recording as video: ffmpeg makes an MP4 of the right size.
    let mp4 = instance.dir.path().join("session.mp4");
    export(&instance, &recording, "mp4", None, &mp4)?;
    let (w, h, _) = raw_rgb_first_frame(&mp4)?;
    let (fw, fh, _) = raw_rgb(&frame)?;
    assert_eq!((w, h), (fw + fw % 2, fh + fh % 2), "video size");
    Ok(())
}

/// Without ffmpeg, an mp4 export says so plainly and writes nothing.
#[test]
fn player_mp4_export_without_ffmpeg_says_so() -> Result<()> {
    let instance = SekishoInstance::start_with(
        &crate::support::demo_inventory(),
        InstanceOptions {
            no_serve: true,
            ..InstanceOptions::default()
        },
    )?;
    let bin = crate::support::sekisho_bin()?;
    // Any file: ffmpeg is looked for before the recording is decoded.
    let run = Command::new(bin)
        .args(["export"])
        .arg(&instance.config)
        .args(["--format", "mp4", "-o"])
        .arg(instance.dir.path().join("x.mp4"))
        .env("PATH", "/nonexistent")
        .env_remove("SEKISHO_FFMPEG")
        .output()?;
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("needs ffmpeg"), "{stderr}");
    assert!(!instance.dir.path().join("x.mp4").exists());
    Ok(())
}

/// The first frame of a video as raw RGB.
fn raw_rgb_first_frame(path: &Path) -> Result<(u32, u32, Vec<u8>)> {
    let png = path.with_extension("first.png");
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(path)
        .args(["-frames:v", "1"])
        .arg(&png)
        .output()?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    raw_rgb(&png)
}

/// tanaka's VDI desktop (internet-vpn path), for SSH.
const SSH_DESKTOP: &str = "127.0.10.11";

/// The times (s) of the asciicast output events of `recording` that contain `needle`.
fn asciicast_times(instance: &SekishoInstance, recording: &Path, needle: &str) -> Result<Vec<f64>> {
    let cast = instance.dir.path().join("session.cast");
    export(instance, recording, "asciicast", None, &cast)?;
    let text = std::fs::read_to_string(&cast)?;
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let ev: serde_json::Value = serde_json::from_str(line)?;
        let field = |i: usize| ev.get(i).cloned().unwrap_or_default();
        if field(1) == "o" && field(2).as_str().is_some_and(|s| s.contains(needle)) {
            out.push(field(0).as_f64().context("event time")?);
        }
    }
    Ok(out)
}

/// A PNG as (width, height, RGB).
fn png_rgb(path: &Path) -> Result<(u32, u32, Vec<u8>)> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path)?));
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size().context("png size")?];
    let info = reader.next_frame(&mut buf)?;
    ensure!(
        info.color_type == png::ColorType::Rgb && info.bit_depth == png::BitDepth::Eight,
        "{}: {:?} {:?}",
        path.display(),
        info.color_type,
        info.bit_depth
    );
    buf.truncate(info.buffer_size());
    Ok((info.width, info.height, buf))
}

/// The columns (x) of pixels of colour `c`, and the rows (y).
fn extent(w: u32, rgb: &[u8], c: [u8; 3]) -> Option<((u32, u32), (u32, u32))> {
    let mut xs = (u32::MAX, 0);
    let mut ys = (u32::MAX, 0);
    for (i, p) in rgb.chunks_exact(3).enumerate() {
        if p == c {
            let (x, y) = (i as u32 % w, i as u32 / w);
            xs = (xs.0.min(x), xs.1.max(x));
            ys = (ys.0.min(y), ys.1.max(y));
        }
    }
    (xs.0 != u32::MAX).then_some((xs, ys))
}

/// A real SSH console session through Sekisho (OpenSSH client → Sekisho → OpenSSH sshd as a
/// hypervisor's SSH console) prints coloured Latin and Japanese text; `sekisho export
/// --format png --at S` draws the screen at that moment: a red-background word over exactly
/// its three cells, two kanji on blue over four cells (wide characters), glyphs inside them,
/// nothing of it before it was printed; `--format mp4` makes a video ffprobe accepts, as
/// long as the recording.
#[test]
fn player_terminal_png_and_mp4_export_of_a_real_ssh_session() -> Result<()> {
    use crate::ssh::ssh_peers;
    if !require_peers(&["ssh", "sshd", "ffmpeg", "ffprobe"])? {
        return Ok(());
    }
    let sshd = ssh_peers::start_sshd(&[])?;
    // web01's serial console stays where the demo inventory has it; only app02's is used.
    let inventory = ssh_peers::console_inventory(14501, sshd.port);
    let instance = SekishoInstance::start_with(
        &inventory,
        InstanceOptions {
            secrets: Some(ssh_peers::console_secrets()),
            ..InstanceOptions::default()
        },
    )?;
    let askpass = ssh_peers::askpass(instance.dir.path(), ssh_peers::DEMO_PASSWORD, None)?;
    let mut s = ssh_peers::ssh_tt(
        &askpass,
        instance.listen.ssh.port(),
        SSH_DESKTOP,
        "tanaka+app02",
    )?;
    s.wait_for("this session is recorded", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(1500));
    // The shell computes the marker, so the typed command's echo never matches it.
    s.send("printf '\\033[41mRED\\033[0m \\033[44m日本\\033[0m MARK-%s\\n' $((6*7))\n".as_bytes())?;
    s.wait_for("MARK-42", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(1500));
    s.send(b"exit\n")?;
    s.wait_exit(Duration::from_secs(15))?;
    let row = instance.wait_until(Duration::from_secs(10), "the ended session", || {
        Ok(instance
            .sessions()?
            .into_iter()
            .find(|r| r["target"] == "app02" && !r["ended_at"].is_null()))
    })?;
    let recording = Path::new(row["recording"].as_str().context("recording")?).to_owned();

    let marks = asciicast_times(&instance, &recording, "MARK-42")?;
    let printed = *marks.first().context("MARK-42 not in the recording")?;
    let png_at = |at: f64, name: &str| -> Result<(u32, u32, Vec<u8>)> {
        let out = instance.dir.path().join(name);
        export(&instance, &recording, "png", Some(at), &out)?;
        png_rgb(&out)
    };
    let (w, h, after) = png_at(printed + 0.5, "after.png")?;
    // 80x24 cells (the client had no terminal to take a size from).
    ensure!(
        w.is_multiple_of(80) && h.is_multiple_of(24),
        "{w}x{h} is not a grid of 80x24 cells"
    );
    let (cw, ch) = (w / 80, h / 24);
    assert!(
        (6..=32).contains(&cw) && (8..=64).contains(&ch),
        "cell {cw}x{ch}"
    );
    let red = extent(w, &after, [205, 0, 0]).context("no red background drawn")?;
    let blue = extent(w, &after, [0, 0, 238]).context("no blue background drawn")?;
    // Whole cells: "RED" is three, "日本" four (two wide characters), one blank between.
    assert_eq!(red.0.0 % cw, 0, "red starts mid-cell: {red:?}");
    assert_eq!(red.0.1 + 1 - red.0.0, 3 * cw, "red: {red:?}, cell {cw}");
    assert_eq!(blue.0.0, red.0.1 + 1 + cw, "blue: {blue:?}, red {red:?}");
    assert_eq!(blue.0.1 + 1 - blue.0.0, 4 * cw, "blue: {blue:?}, cell {cw}");
    assert_eq!((red.1.1 + 1 - red.1.0, blue.1), (ch, red.1), "one row");
    // Glyphs inside each of the four cells of the kanji (not just a coloured block).
    for cell in 0..4 {
        let x0 = blue.0.0 + cell * cw;
        let glyph = (blue.1.0..=blue.1.1)
            .flat_map(|y| (x0..x0 + cw).map(move |x| (x, y)))
            .filter(|(x, y)| {
                let i = ((y * w + x) * 3) as usize;
                after.get(i..i + 3) != Some(&[0, 0, 238][..])
            })
            .count();
        assert!(glyph > 0, "kanji cell {cell} is empty");
    }
    // The marker's row has text: pixels other than the background right of the blue.
    let row_text = (blue.1.0..=blue.1.1)
        .flat_map(|y| (blue.0.1 + 1..w).map(move |x| (x, y)))
        .filter(|(x, y)| {
            let i = ((y * w + x) * 3) as usize;
            after.get(i..i + 3) != Some(&[0, 0, 0][..])
        })
        .count();
    assert!(row_text > 20, "MARK-42 not drawn: {row_text} pixels");
    // Before the command ran, none of it is on screen.
    let (bw, bh, before) = png_at((printed - 1.2).max(0.0), "before.png")?;
    assert_eq!((bw, bh), (w, h));
    assert!(
        extent(w, &before, [205, 0, 0]).is_none(),
        "red before the printf"
    );

    // Video: ffprobe reads it, at the picture's size (even sides), as long as the recording.
    let mp4 = instance.dir.path().join("session.mp4");
    export(&instance, &recording, "mp4", None, &mp4)?;
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=width,height,codec_name:format=duration",
        ])
        .args(["-of", "json"])
        .arg(&mp4)
        .output()?;
    ensure!(
        probe.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let info: serde_json::Value = serde_json::from_slice(&probe.stdout)?;
    let stream = &info["streams"][0];
    assert_eq!(stream["codec_name"], "h264", "{info}");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(u64::from(w + w % 2)), Some(u64::from(h + h % 2))),
        "{info}"
    );
    let duration: f64 = info["format"]["duration"]
        .as_str()
        .context("duration")?
        .parse()?;
    // The session ends a moment after the marker and the exit (sleeps above: 1.5 s).
    assert!(
        duration >= printed + 1.0 && duration <= printed + 10.0,
        "video {duration} s, marker at {printed} s"
    );

    // A terminal has no pointer to draw, and a text export no picture: `--pointer` is refused
    // with a message, and nothing is written.
    for format in ["png", "txt"] {
        let out = instance.dir.path().join(format!("pointer.{format}"));
        let run = instance.cli_raw(&[
            "export",
            recording.to_str().context("path")?,
            "--format",
            format,
            "--pointer",
            "-o",
            out.to_str().context("path")?,
        ])?;
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!run.status.success(), "{format} --pointer succeeded");
        assert!(stderr.contains("--pointer applies to"), "{stderr}");
        assert!(!out.exists(), "{format} --pointer wrote a file");
    }
    let _ = &sshd;
    Ok(())
}
