//! The headless RDP client (`e2e::rdp_client`, ironrdp-connector + ironrdp-session) through
//! `sekisho serve`: a normal test against xrdp (TLS, Sekisho injects the server's
//! credentials, the client logs on with its Sekisho account as `user+target`), and the RDP
//! benchmark (`rdp_bench`, ignored: run by hand or by `scripts/bench`) against
//! freerdp-shadow-cli sharing an Xvfb display the bench draws on.
//!
//! The client binds its source address itself (the VDI desktop's loopback alias), so no SNAT
//! rule is needed, unlike xfreerdp in `rdp.rs`.

use std::io::BufRead;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use e2e::rdp_client::{self, ConnectOptions};

use crate::rdp::rdp_peers::{self, LAB_PASS, LAB_USER, XRDP_PORT};
use crate::ssh::ssh_peers;
use crate::support::bench::Proc;
use crate::support::inventory::{
    Inventory, NT_HASH as TANAKA_NT_HASH, PASSWORD as TANAKA_PASS, Target,
};
use crate::support::{InstanceOptions, SekishoInstance, bench, free_port, require_peers};

/// The VDI desktop the client connects from.
pub(crate) const DESKTOP: Ipv4Addr = Ipv4Addr::new(127, 0, 10, 11);

/// One VDI pool, tanaka (with an NT hash for NLA when `nt_hash` is given), and the RDP
/// servers `targets` (name, port) under one contract.
pub(crate) fn inventory(targets: &[(&str, u16)], nt_hash: Option<&str>) -> String {
    let desktop = DESKTOP.to_string();
    let inventory = Inventory::new()
        .pool("vdi-test", "ip-vpn", "127.0.10.0/24")
        .zone("business", &["ip-vpn"]);
    let inventory = match nt_hash {
        Some(hash) => inventory.user_with_nt_hash("tanaka", &desktop, hash),
        None => inventory.user("tanaka", &desktop),
    };
    targets
        .iter()
        .fold(inventory, |inventory, (name, port)| {
            inventory.target(Target::rdp_server(name, *port))
        })
        .render()
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

#[test]
fn rdp_load_headless_client_through_sekisho_to_xrdp_is_recorded() -> Result<()> {
    if !require_peers(&["xrdp", "xrdp-sesman", "Xvnc"])? {
        return Ok(());
    }
    rdp_peers::ensure_xrdp()?;
    let _serial = rdp_peers::serial();
    let instance = SekishoInstance::start_with(
        &inventory(&[("srv01", XRDP_PORT)], None),
        InstanceOptions {
            secrets: Some(rdp_peers::lab_secrets(&["srv01"])),
            ..InstanceOptions::default()
        },
    )?;
    let rt = runtime()?;

    // Control: the same client straight to xrdp with the server account.
    let direct = rt.block_on(async {
        let o = ConnectOptions::new(
            SocketAddr::from(([127, 0, 0, 1], XRDP_PORT)),
            LAB_USER,
            LAB_PASS,
        );
        let mut s = rdp_client::connect(&o).await?;
        s.pump_for(Duration::from_millis(1500)).await?;
        let lit = rdp_client::non_black_fraction(s.image());
        let size = s.desktop_size();
        s.disconnect().await?;
        anyhow::Ok((lit, size))
    })?;
    assert!(direct.0 > 0.01, "direct: blank desktop ({:.4})", direct.0);

    // Through Sekisho: tanaka's own password; Sekisho logs on to xrdp with srv01's account.
    let before = rdp_peers::xrdp_log_offset();
    let frame = instance.path("client-last.png");
    let (stats, lit, setup) = rt
        .block_on(async {
            let mut o = ConnectOptions::new(instance.listen.rdp, "tanaka+srv01", TANAKA_PASS);
            o.source = Some(IpAddr::V4(DESKTOP));
            let mut s = rdp_client::connect(&o).await?;
            assert_eq!(s.desktop_size(), direct.1);
            // Input goes through (a key and a pointer move), and the session keeps running.
            s.mouse_move(500, 400).await?;
            s.key(0x2a).await?; // left shift: types nothing into the session
            s.pump_for(Duration::from_secs(3)).await?;
            s.save_png(&frame)?;
            let lit = rdp_client::non_black_fraction(s.image());
            let setup = s.setup_time();
            let stats = s.disconnect().await?;
            anyhow::Ok((stats, lit, setup))
        })
        .with_context(|| format!("through Sekisho:\n{}", instance.serve_log()))?;
    assert!(stats.updates > 0 && stats.bytes > 0, "{stats:?}");
    // xrdp's startwm.sh shows a ticking xclock on black: the decoded desktop has it.
    assert!(lit > 0.01, "through Sekisho: blank desktop ({lit:.4})");
    assert!(
        (lit - direct.0).abs() < 0.05,
        "the desktop through Sekisho ({lit:.4} lit) differs from the direct one ({:.4})",
        direct.0
    );
    let xrdp_log = rdp_peers::xrdp_log_since(before);
    assert!(
        xrdp_log.contains(&format!("login successful for user {LAB_USER}")),
        "xrdp did not log the injected account on:\n{xrdp_log}"
    );
    eprintln!(
        "headless client through Sekisho: set-up {:.0} ms, {stats:?}",
        setup.as_secs_f64() * 1e3
    );

    // The session is in the catalogue, ended, with a recording that verifies.
    let row = rdp_peers::ended_session(&instance, "the RDP session to end")?;
    assert_eq!(row["user"], "tanaka");
    assert_eq!(row["target"], "srv01");
    assert_eq!(row["source"], DESKTOP.to_string(), "{row}");
    let file = ssh_peers::recording_path(&instance, &row)?;
    let f = file.display().to_string();
    let out = instance.cli(&["recording", "verify", &f])?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "verify {f}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // A wrong Sekisho password: no session comes up (a TLS-only logon is checked by Sekisho
    // on the Client Info PDU, so the client fails after the TLS handshake).
    let wrong = rt.block_on(async {
        let mut o = ConnectOptions::new(instance.listen.rdp, "tanaka+srv01", "not-the-password");
        o.source = Some(IpAddr::V4(DESKTOP));
        o.timeout = Duration::from_secs(15);
        rdp_client::connect(&o).await
    });
    assert!(wrong.is_err(), "a wrong password gave a session");
    Ok(())
}

/// NLA on both legs with the headless client: it logs on to Sekisho with CredSSP as
/// `tanaka+srv01` (checked against tanaka's NT hash), and Sekisho logs on to
/// freerdp-shadow-cli `/sec:nla` with the secret credentials. The same client straight to the
/// shadow server is the control. A wrong Sekisho password is refused during CredSSP, promptly
/// and as an `auth.failed` denial.
#[test]
fn rdp_load_headless_client_with_nla_on_both_legs() -> Result<()> {
    if !require_peers(&["freerdp-shadow-cli", "winpr-hash", "Xvfb"])? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let work = tempfile::Builder::new()
        .prefix("sekisho-e2e-headless-nla-")
        .tempdir()?;
    let (shadow, port) = rdp_peers::start_nla_shadow(&work.path().join("shadow"))?;
    let instance = SekishoInstance::start_with(
        &inventory(&[("srv01", port)], Some(TANAKA_NT_HASH)),
        InstanceOptions {
            secrets: Some(rdp_peers::lab_secrets(&["srv01"])),
            ..InstanceOptions::default()
        },
    )?;
    let rt = runtime()?;

    // Control: straight to the shadow server, which takes NLA and nothing else.
    rt.block_on(async {
        let mut o =
            ConnectOptions::new(SocketAddr::from(([127, 0, 0, 1], port)), LAB_USER, LAB_PASS);
        o.nla = true;
        let s = rdp_client::connect(&o).await?;
        s.disconnect().await?;
        o.nla = false;
        anyhow::ensure!(
            rdp_client::connect(&o).await.is_err(),
            "the /sec:nla shadow server took a TLS-only client"
        );
        anyhow::Ok(())
    })
    .with_context(|| format!("direct:\n{}", shadow.log()))?;

    // Through Sekisho, NLA on the contractor leg with tanaka's own password.
    let server_log_before = shadow.log().len();
    let stats = rt
        .block_on(async {
            let mut o = ConnectOptions::new(instance.listen.rdp, "tanaka+srv01", TANAKA_PASS);
            o.source = Some(IpAddr::V4(DESKTOP));
            o.nla = true;
            let mut s = rdp_client::connect(&o).await?;
            assert_eq!(s.desktop_size(), (1024, 768));
            s.pump_for(Duration::from_secs(2)).await?;
            s.disconnect().await
        })
        .with_context(|| {
            format!(
                "through Sekisho:\n{}\nserver:\n{}",
                instance.serve_log(),
                shadow.log()
            )
        })?;
    assert!(stats.updates > 0 && stats.bytes > 0, "{stats:?}");
    // The server leg: an NLA logon of the injected account.
    shadow.assert_nla_logon(server_log_before);
    // Both legs chose CredSSP: HYBRID_EX toward the client (which offers it, as mstsc does;
    // it then waited for Sekisho's Early User Authorization Result), HYBRID toward the server
    // (Sekisho offers no more). No CredSSP byte was recorded.
    let row = rdp_peers::ended_session(&instance, "the NLA session to end")?;
    assert_eq!(row["user"], "tanaka", "{row}");
    assert_eq!(row["target"], "srv01", "{row}");
    assert_eq!(row["source"], DESKTOP.to_string(), "{row}");
    let meta = crate::rdp::recording_metadata(&instance, &row)?;
    for (key, protocol) in [
        ("rdp.client_selected_protocol", "0x8"),
        ("rdp.server_selected_protocol", "0x2"),
    ] {
        assert_eq!(
            meta.get(key).map(String::as_str),
            Some(protocol),
            "{key}: {meta:?}"
        );
    }
    let recorded = crate::rdp::recorded_bytes(&instance, &row)?;
    assert!(!recorded.is_empty());
    assert!(
        !recorded.windows(8).any(|w| w == b"NTLMSSP\0"),
        "CredSSP bytes in the recording"
    );

    // A wrong Sekisho password: CredSSP fails, and the denial is in the catalogue.
    let started = Instant::now();
    let wrong = rt.block_on(async {
        let mut o = ConnectOptions::new(instance.listen.rdp, "tanaka+srv01", "not-the-password");
        o.source = Some(IpAddr::V4(DESKTOP));
        o.nla = true;
        o.timeout = Duration::from_secs(15);
        rdp_client::connect(&o).await
    });
    // Refused by Sekisho, not left to the client's own timeout; how fast is printed.
    match wrong {
        Ok(_) => bail!("a wrong password gave a session"),
        Err(e @ rdp_client::RdpClientError::Timeout(_)) => {
            bail!("the wrong password was not refused, the client timed out: {e}")
        }
        Err(e) => println!("refused after {:?}: {e}", started.elapsed()),
    }
    let denial = rdp_peers::wait_denial(&instance, 10, "an auth.failed denial", |d| {
        d["rule"] == "auth.failed" && d["protocol"] == "rdp"
    })?;
    assert_eq!(denial["user"], "tanaka", "{denial}");
    let sessions = instance
        .sessions()?
        .into_iter()
        .filter(|s| s["protocol"] == "rdp")
        .count();
    assert_eq!(sessions, 1, "the refused logon opened a session");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Benchmark

/// Repaints the whole display with `images` in turn, one `display -window root` at a time,
/// until dropped.
struct Painter {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Painter {
    fn start(display: &str, images: Vec<PathBuf>) -> Painter {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = std::sync::Arc::clone(&stop);
        let display = display.to_owned();
        let thread = std::thread::spawn(move || {
            for image in images.iter().cycle() {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                // `display -window root` exits 1 even when it painted the root window (IM6):
                // only a failure to run it stops the painter.
                let ran = Command::new("display")
                    .args(["-window", "root"])
                    .arg(image)
                    .env("DISPLAY", &display)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok();
                if !ran {
                    eprintln!("cannot run display; the painter stops");
                    break;
                }
            }
        });
        Painter {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Painter {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sessions the ramp puts on one freerdp-shadow-cli server: the bench starts as many servers
/// as `RDP_BENCH_SESSIONS` needs.
const SESSIONS_PER_SHADOW: u32 = 250;

/// The headless client measured: `SEKISHO_RDP_CLIENT_BIN`, else a release build (a debug
/// build decodes bitmaps several times slower and would measure itself).
fn bench_client() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SEKISHO_RDP_CLIENT_BIN") {
        return Ok(PathBuf::from(bin));
    }
    bench::release_binary("e2e", "sekisho-rdp-client")
}

/// An X display number nobody uses (from 160 on; the lab and rdp.rs use 91-94).
fn free_display() -> Result<u32> {
    (160..220)
        .find(|n| {
            !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
                && !Path::new(&format!("/tmp/.X{n}-lock")).exists()
        })
        .context("no free X display number")
}

/// A PPM of random pixels: the worst case for bitmap compression.
fn write_noise(path: &Path, w: usize, h: usize, seed: u64) -> Result<()> {
    let mut x = seed | 1;
    let mut data = format!("P6\n{w} {h}\n255\n").into_bytes();
    data.reserve(w * h * 3);
    for _ in 0..(w * h * 3 / 8) {
        // xorshift64: enough randomness to defeat RLE, with no dependency.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, data)?;
    Ok(())
}

/// Runs the client binary and returns its stdout (it fails the bench if the client fails).
fn client_run(client: &Path, args: &[String], password: &str) -> Result<String> {
    let out = Command::new(client)
        .args(args)
        .env("SEKISHO_RDP_PASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .context("run sekisho-rdp-client")?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "sekisho-rdp-client {} failed: {}\n{stdout}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(stdout)
}

/// The value of `key=` in the first line of `text` starting with `prefix`.
fn field(text: &str, prefix: &str, key: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))?
        .parse()
        .ok()
}

/// What one concurrency ramp showed.
#[derive(Debug, Default)]
struct Ramp {
    asked: u32,
    up: u32,
    alive: u32,
    setup_median_ms: f64,
    ramp_s: f64,
    /// Sekisho's RSS before the ramp, after it, and at each 50 sessions (KiB).
    rss_before: u64,
    rss_after: u64,
    rss_marks: Vec<(u32, u64)>,
    /// Sekisho's CPU seconds while the sessions were held, and the hold's length.
    hold_cpu_s: f64,
    hold_s: f64,
    listed_live: usize,
    error: String,
}

/// Ramps the client to `n` concurrent sessions (through `serve` when given, whose targets'
/// names start with its third member), holds them `hold` seconds, and measures Sekisho
/// meanwhile.
fn ramp(
    client: &Path,
    args: &[String],
    password: &str,
    serve: Option<(u32, &SekishoInstance, &str)>,
) -> Result<Ramp> {
    let mut child = Command::new(client)
        .args(args)
        .env("SEKISHO_RDP_PASSWORD", password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("run sekisho-rdp-client --sessions")?;
    let stdout = child.stdout.take().context("client stdout")?;
    let stderr = child.stderr.take().context("client stderr")?;
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        for l in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            s.push_str(&l);
            s.push('\n');
        }
        s
    });
    let pid = serve.map(|(p, _, _)| p);
    let mut r = Ramp {
        rss_before: pid.and_then(bench::rss_kib).unwrap_or(0),
        ..Ramp::default()
    };
    let mut hold_start: Option<(Instant, f64)> = None;
    for line in std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
    {
        if line.starts_with("up ") {
            let n = field(&line, "up ", "n").unwrap_or(0.0) as u32;
            if n.is_multiple_of(50)
                && let Some(rss) = pid.and_then(bench::rss_kib)
            {
                r.rss_marks.push((n, rss));
            }
        } else if line.starts_with("ramped ") {
            r.up = field(&line, "ramped ", "up").unwrap_or(0.0) as u32;
            r.ramp_s = field(&line, "ramped ", "t_s").unwrap_or(0.0);
            // Past the recorders' first flush, so every session has written a chunk.
            std::thread::sleep(Duration::from_secs(2));
            if let Some((p, instance, target)) = serve {
                r.rss_after = bench::rss_kib(p).unwrap_or(0);
                r.listed_live = instance
                    .all_sessions()
                    .map(|rows| {
                        rows.iter()
                            .filter(|s| {
                                s["target"].as_str().is_some_and(|t| t.starts_with(target))
                                    && s["ended_at"].is_null()
                            })
                            .count()
                    })
                    .unwrap_or(0);
                hold_start = bench::cpu_seconds(p).map(|c| (Instant::now(), c));
            }
        } else if line.starts_with("held ") {
            r.alive = field(&line, "held ", "alive").unwrap_or(0.0) as u32;
            if let (Some((t0, c0)), Some(p)) = (hold_start, pid) {
                r.hold_s = t0.elapsed().as_secs_f64();
                r.hold_cpu_s = bench::cpu_seconds(p).unwrap_or(c0) - c0;
            }
        } else if line.starts_with("summary ") {
            r.asked = field(&line, "summary ", "asked").unwrap_or(0.0) as u32;
            r.setup_median_ms = field(&line, "summary ", "setup_median_ms").unwrap_or(0.0);
        }
    }
    let status = child.wait()?;
    let err = err_thread.join().unwrap_or_default();
    if !status.success() {
        r.error = err.lines().last().unwrap_or("").to_owned();
    }
    Ok(r)
}

/// Benchmark (run by hand or by `scripts/bench`; prints figures, asserts none): the headless
/// client straight to freerdp-shadow-cli and through `sekisho serve` to the same server, in
/// the same run: connection set-up time (median), throughput of a screen-heavy session (the
/// bench redraws the whole shared display with random pixels continuously), Sekisho's CPU per
/// session, and how many concurrent recorded sessions the client holds (ramp to
/// `RDP_BENCH_SESSIONS`, default 1,000, spread over several shadow servers), with Sekisho's
/// RSS and CPU per session.
/// `cargo test -p e2e --test e2e rdp_load::rdp_bench -- --ignored --nocapture`
/// measures release builds of `sekisho` and `sekisho-rdp-client` (or `SEKISHO_BIN`,
/// `SEKISHO_RDP_CLIENT_BIN`). `RDP_BENCH_SECONDS` sets the throughput window (default 10).
#[test]
#[ignore = "benchmark: run by hand"]
fn rdp_bench_through_sekisho_vs_direct() -> Result<()> {
    if !require_peers(&[
        "freerdp-shadow-cli",
        "Xvfb",
        "display",
        "xsetroot",
        "xclock",
    ])? {
        return Ok(());
    }
    let sessions: u32 = std::env::var("RDP_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let window: f64 = std::env::var("RDP_BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10.0);
    let sekisho = bench::sekisho_binary()?;
    let client = bench_client()?;
    let work = tempfile::Builder::new()
        .prefix("sekisho-rdp-bench-")
        .tempdir()?;

    // Our own display and shadow server: the drawing must reach no other test's server.
    let display = format!(":{}", free_display()?);
    let _xvfb = Proc::spawn(
        "Xvfb",
        Command::new("Xvfb")
            .args([&display, "-screen", "0", "1024x768x24", "-nolisten", "tcp"])
            .args(["-noreset"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    let sock = format!("/tmp/.X11-unix/X{}", display.trim_start_matches(':'));
    let t0 = Instant::now();
    while !Path::new(&sock).exists() {
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(10), "Xvfb did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let x = |program: &str, args: &[&str]| -> Result<()> {
        let ok = Command::new(program)
            .args(args)
            .env("DISPLAY", &display)
            .status()?
            .success();
        anyhow::ensure!(ok, "{program} failed");
        Ok(())
    };
    x("xsetroot", &["-solid", "#204060"])?;
    let shadow_port = free_port("127.0.0.1")?;
    let shadow_home = work.path().join("shadow");
    std::fs::create_dir_all(shadow_home.join("config"))?;
    let shadow_log = std::fs::File::create(work.path().join("shadow.log"))?;
    let shadow = Proc::spawn(
        "freerdp-shadow-cli",
        Command::new("freerdp-shadow-cli")
            .arg("/bind-address:127.0.0.1")
            .arg(format!("/port:{shadow_port}"))
            .args(["/sec:tls", "-auth"])
            .env("DISPLAY", &display)
            .env("HOME", &shadow_home)
            .env("XDG_CONFIG_HOME", shadow_home.join("config"))
            .stdout(shadow_log.try_clone()?)
            .stderr(shadow_log),
    )?;
    crate::support::wait_for_port(
        SocketAddr::from(([127, 0, 0, 1], shadow_port)),
        Duration::from_secs(10),
    )?;
    let shadow_pid = shadow.child.id();
    // A second shadow server on the same display that takes NLA only, for the NLA set-up. It
    // has an address of its own: Sekisho finds a target by address.
    const NLA_ADDRESS: &str = "127.0.0.2";
    let nla_port = free_port(NLA_ADDRESS)?;
    let nla_home = work.path().join("shadow-nla");
    let sam = rdp_peers::write_sam(&nla_home, LAB_USER, LAB_PASS)?;
    std::fs::create_dir_all(nla_home.join("config"))?;
    let nla_log = std::fs::File::create(work.path().join("shadow-nla.log"))?;
    let _shadow_nla = Proc::spawn(
        "freerdp-shadow-cli (NLA)",
        Command::new("freerdp-shadow-cli")
            .arg(format!("/bind-address:{NLA_ADDRESS}"))
            .arg(format!("/port:{nla_port}"))
            .arg("/sec:nla")
            .arg(format!("/sam-file:{}", sam.display()))
            .env("DISPLAY", &display)
            .env("HOME", &nla_home)
            .env("XDG_CONFIG_HOME", nla_home.join("config"))
            .stdout(nla_log.try_clone()?)
            .stderr(nla_log),
    )?;
    let nla_addr = format!("{NLA_ADDRESS}:{nla_port}");
    crate::support::wait_for_port(nla_addr.parse()?, Duration::from_secs(10))?;
    // The ramp spreads its sessions over shadow01 and as many more shadow servers on the same
    // display as it takes to hold `sessions` (one server holds a few hundred), each at an
    // address of its own: "shadow03", "shadow04", ...
    let ramp_servers = sessions.div_ceil(SESSIONS_PER_SHADOW).max(1);
    let mut more_shadows = Vec::new();
    for k in 1..ramp_servers {
        let name = format!("shadow{:02}", k + 2);
        let address = format!("127.0.0.{}", 20 + k);
        let port = free_port(&address)?;
        let home = work.path().join(&name);
        std::fs::create_dir_all(home.join("config"))?;
        let log = std::fs::File::create(work.path().join(format!("{name}.log")))?;
        let proc = Proc::spawn(
            "freerdp-shadow-cli (ramp)",
            Command::new("freerdp-shadow-cli")
                .arg(format!("/bind-address:{address}"))
                .arg(format!("/port:{port}"))
                .args(["/sec:tls", "-auth"])
                .env("DISPLAY", &display)
                .env("HOME", &home)
                .env("XDG_CONFIG_HOME", home.join("config"))
                .stdout(log.try_clone()?)
                .stderr(log),
        )?;
        let addr: SocketAddr = format!("{address}:{port}").parse()?;
        crate::support::wait_for_port(addr, Duration::from_secs(10))?;
        more_shadows.push((name, address, addr, proc));
    }

    // Sekisho (the release binary) with the shadow servers as targets "shadow01" (TLS) and
    // "shadow02" (NLA); tanaka has an NT hash, so the contractor leg may be either.
    let mut target_names = vec!["shadow01", "shadow02"];
    target_names.extend(more_shadows.iter().map(|(name, ..)| name.as_str()));
    let instance = SekishoInstance::start_with(
        &more_shadows
            .iter()
            .fold(
                Inventory::new()
                    .pool("vdi-test", "ip-vpn", "127.0.10.0/24")
                    .zone("business", &["ip-vpn"])
                    .user_with_nt_hash("tanaka", &DESKTOP.to_string(), TANAKA_NT_HASH)
                    .target(Target::rdp_server("shadow01", shadow_port))
                    .target(
                        Target::new("shadow02", NLA_ADDRESS, "physical", "business")
                            .rdp_port(nla_port)
                            .credential(),
                    ),
                |inventory, (name, address, addr, _)| {
                    inventory.target(
                        Target::new(name, address, "physical", "business")
                            .rdp_port(addr.port())
                            .credential(),
                    )
                },
            )
            .render(),
        InstanceOptions {
            secrets: Some(rdp_peers::lab_secrets(&target_names)),
            no_serve: true,
            ..InstanceOptions::default()
        },
    )?;
    let serve_log = std::fs::File::create(instance.path("serve.log"))?;
    let serve = Proc::spawn(
        "sekisho serve",
        Command::new(&sekisho)
            .arg("serve")
            .arg("--config")
            .arg(&instance.config)
            .current_dir(instance.dir.path())
            .env("RUST_LOG", "warn")
            .stdout(serve_log.try_clone()?)
            .stderr(serve_log),
    )?;
    crate::support::wait_for_port(instance.listen.rdp, Duration::from_secs(30))
        .with_context(|| std::fs::read_to_string(instance.path("serve.log")).unwrap_or_default())?;
    let pid = serve.child.id();

    let direct_addr = format!("127.0.0.1:{shadow_port}");
    let via_addr = instance.listen.rdp.to_string();
    let args = |addr: &str, user: &str, via: bool, extra: &[&str]| -> Vec<String> {
        let mut a = vec![addr.to_owned(), user.to_owned()];
        if via {
            a.push("--source".to_owned());
            a.push(DESKTOP.to_string());
        }
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a
    };
    let direct_pass = LAB_PASS;

    eprintln!("rdp_bench: shadow on {shadow_port}, display {display}; set-up times");
    // 1. Set-up time: TCP connect to the first graphics update, one connection at a time.
    let repeat = ["--repeat", "10"];
    let setup_direct = client_run(
        &client,
        &args(&direct_addr, LAB_USER, false, &repeat),
        direct_pass,
    )?;
    let setup_via = client_run(
        &client,
        &args(&via_addr, "tanaka+shadow01", true, &repeat),
        TANAKA_PASS,
    )
    .with_context(|| std::fs::read_to_string(instance.path("serve.log")).unwrap_or_default())?;
    let sd = field(&setup_direct, "summary", "median_ms");
    let sv = field(&setup_via, "summary", "median_ms");
    // The same with NLA: CredSSP on the client's leg (and, through Sekisho, on both legs).
    let nla_repeat = ["--repeat", "10", "--nla"];
    let setup_direct_nla = client_run(
        &client,
        &args(&nla_addr, LAB_USER, false, &nla_repeat),
        direct_pass,
    )?;
    let setup_via_nla = client_run(
        &client,
        &args(&via_addr, "tanaka+shadow02", true, &nla_repeat),
        TANAKA_PASS,
    )
    .with_context(|| std::fs::read_to_string(instance.path("serve.log")).unwrap_or_default())?;
    let sd_nla = field(&setup_direct_nla, "summary", "median_ms");
    let sv_nla = field(&setup_via_nla, "summary", "median_ms");

    eprintln!("rdp_bench: screen-heavy throughput, {window} s each");
    // 2. Screen-heavy throughput: the whole display redrawn with random pixels, continuously.
    let (a, b) = (
        work.path().join("noise-a.ppm"),
        work.path().join("noise-b.ppm"),
    );
    write_noise(&a, 1024, 768, 0x5eed_1234_5678_9abc)?;
    write_noise(&b, 1024, 768, 0x0dd5_eed0_f00d_cafe)?;
    let draw = Painter::start(&display, vec![a, b]);
    std::thread::sleep(Duration::from_secs(1));
    let hold = format!("{window}");
    let heavy = ["--hold", hold.as_str()];
    let measure = |a: Vec<String>, pass: &str| -> Result<(String, f64, f64)> {
        let (c0, s0) = (
            bench::cpu_seconds(pid).unwrap_or(0.0),
            bench::cpu_seconds(shadow_pid).unwrap_or(0.0),
        );
        let out = client_run(&client, &a, pass)?;
        let (c1, s1) = (
            bench::cpu_seconds(pid).unwrap_or(0.0),
            bench::cpu_seconds(shadow_pid).unwrap_or(0.0),
        );
        Ok((out, c1 - c0, s1 - s0))
    };
    let (heavy_direct, cpu_direct, shadow_cpu_direct) =
        measure(args(&direct_addr, LAB_USER, false, &heavy), direct_pass)?;
    // With SEKISHO_BENCH_PERF=DIR, Linux perf samples Sekisho (call graphs) during the
    // screen-heavy session through it: where its CPU goes.
    let profile = match std::env::var_os("SEKISHO_BENCH_PERF") {
        Some(dir) => Some(bench::Profiler::start(
            pid,
            &PathBuf::from(dir).join("rdp-heavy-sekisho.perf.data"),
        )?),
        None => None,
    };
    let (heavy_via, cpu_via, shadow_cpu_via) = measure(
        args(&via_addr, "tanaka+shadow01", true, &heavy),
        TANAKA_PASS,
    )?;
    if let Some(p) = profile {
        println!("perf profile of the screen-heavy session: {}", p.finish()?);
    }
    drop(draw);
    let g = |t: &str, k: &str| field(t, "session", k);
    let (held_d, held_v) = (g(&heavy_direct, "held_s"), g(&heavy_via, "held_s"));

    eprintln!("rdp_bench: ramp to {sessions} sessions, direct then through Sekisho");
    // 3. Concurrent recorded sessions: a quiet desktop with a ticking clock, as an admin's.
    x("xsetroot", &["-solid", "#204060"])?;
    let _clock = Proc::spawn(
        "xclock",
        Command::new("xclock")
            .args(["-geometry", "200x200+40+40", "-update", "1"])
            .env("DISPLAY", &display)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )?;
    std::thread::sleep(Duration::from_millis(500));
    let n = sessions.to_string();
    let conc = ["--sessions", n.as_str(), "--parallel", "4", "--hold", "15"];
    let (mut direct_ramp, mut via_ramp) = (
        args(&direct_addr, LAB_USER, false, &conc),
        args(&via_addr, "tanaka+shadow01", true, &conc),
    );
    if !more_shadows.is_empty() {
        direct_ramp.extend(["--spread".to_owned(), format!("{direct_addr}={LAB_USER}")]);
        via_ramp.extend(["--spread".to_owned(), format!("{via_addr}=tanaka+shadow01")]);
        for (name, _, addr, _) in &more_shadows {
            direct_ramp.extend(["--spread".to_owned(), format!("{addr}={LAB_USER}")]);
            via_ramp.extend(["--spread".to_owned(), format!("{via_addr}=tanaka+{name}")]);
        }
    }
    let ramp_direct = ramp(&client, &direct_ramp, direct_pass, None)?;
    std::thread::sleep(Duration::from_secs(3));
    let ramp_via = ramp(
        &client,
        &via_ramp,
        TANAKA_PASS,
        Some((pid, &instance, "shadow")),
    )?;
    let shadow_rss = bench::rss_kib(shadow_pid).unwrap_or(0);

    // Report.
    println!();
    println!("sekisho binary: {}", sekisho.display());
    println!("client binary:  {}", client.display());
    println!(
        "{:<46} {:>12} {:>12} {:>9}",
        "", "direct", "via Sekisho", "ratio"
    );
    let row = |name: &str, d: Option<f64>, v: Option<f64>| {
        let r = match (d, v) {
            (Some(d), Some(v)) if d > 0.0 => format!("{:.2}x", v / d),
            _ => "-".to_owned(),
        };
        let f = |x: Option<f64>| x.map_or("-".to_owned(), |x| format!("{x:.2}"));
        println!("{name:<46} {:>12} {:>12} {r:>9}", f(d), f(v));
    };
    row("connection set-up, median of 10 (ms)", sd, sv);
    row(
        "connection set-up with NLA, median of 10 (ms)",
        sd_nla,
        sv_nla,
    );
    row(
        "screen-heavy throughput (MB/s)",
        g(&heavy_direct, "mb_per_s"),
        g(&heavy_via, "mb_per_s"),
    );
    row(
        "screen-heavy full screens per second",
        g(&heavy_direct, "screens_per_s"),
        g(&heavy_via, "screens_per_s"),
    );
    let per_core = |c: f64, h: Option<f64>| h.map(|h| c / h.max(1e-9) * 100.0);
    row(
        "Sekisho CPU, one screen-heavy session (% core)",
        per_core(cpu_direct, held_d),
        per_core(cpu_via, held_v),
    );
    row(
        "shadow server CPU, same session (% core)",
        per_core(shadow_cpu_direct, held_d),
        per_core(shadow_cpu_via, held_v),
    );
    row(
        "client CPU, same session (s)",
        g(&heavy_direct, "client_cpu_s"),
        g(&heavy_via, "client_cpu_s"),
    );
    row(
        &format!("concurrent sessions held (asked {sessions})"),
        Some(f64::from(ramp_direct.alive)),
        Some(f64::from(ramp_via.alive)),
    );
    row(
        "  set-up median during the ramp (ms)",
        Some(ramp_direct.setup_median_ms),
        Some(ramp_via.setup_median_ms),
    );
    row(
        "  ramp time (s)",
        Some(ramp_direct.ramp_s),
        Some(ramp_via.ramp_s),
    );
    let held = f64::from(ramp_via.up.max(1));
    let rss_per = ramp_via.rss_after.saturating_sub(ramp_via.rss_before) as f64 / held;
    let idle_cpu = ramp_via.hold_cpu_s / ramp_via.hold_s.max(1e-9) * 100.0;
    println!(
        "{:<46} {:>12} {rss_per:>12.1}",
        "Sekisho RSS per held session (KiB)", "-"
    );
    println!(
        "{:<46} {:>12} {:>12.3}",
        "Sekisho CPU per held session (% core)",
        "-",
        idle_cpu / held
    );
    println!(
        "  (Sekisho RSS {} KiB -> {} KiB with {} sessions, marks {:?}; {} listed live in the \
         catalogue; shadow server RSS {shadow_rss} KiB at the end)",
        ramp_via.rss_before,
        ramp_via.rss_after,
        ramp_via.up,
        ramp_via.rss_marks,
        ramp_via.listed_live
    );
    for (name, r) in [("direct", &ramp_direct), ("via Sekisho", &ramp_via)] {
        if !r.error.is_empty() {
            println!("  {name} ramp stopped: {}", r.error);
        }
    }
    let bench = |k: &str, v: Option<f64>, unit: &str| {
        if let Some(v) = v {
            println!("BENCH rdp.{k}={v:.3} {unit}");
        }
    };
    bench("setup_direct_ms", sd, "ms");
    bench("setup_via_ms", sv, "ms");
    bench("setup_nla_direct_ms", sd_nla, "ms");
    bench("setup_nla_via_ms", sv_nla, "ms");
    bench("heavy_direct_mb_s", g(&heavy_direct, "mb_per_s"), "MB/s");
    bench("heavy_via_mb_s", g(&heavy_via, "mb_per_s"), "MB/s");
    bench(
        "heavy_direct_screens_s",
        g(&heavy_direct, "screens_per_s"),
        "screens/s",
    );
    bench(
        "heavy_via_screens_s",
        g(&heavy_via, "screens_per_s"),
        "screens/s",
    );
    bench("heavy_sekisho_cpu_pct", per_core(cpu_via, held_v), "% core");
    bench(
        "sessions_direct",
        Some(f64::from(ramp_direct.alive)),
        "sessions",
    );
    bench("sessions_via", Some(f64::from(ramp_via.alive)), "sessions");
    bench("sessions_asked", Some(f64::from(sessions)), "sessions");
    bench("rss_per_session_kib", Some(rss_per), "KiB");
    bench("idle_cpu_per_session_pct", Some(idle_cpu / held), "% core");
    Ok(())
}
