//! Several `sekisho serve` instances on one catalogue (a PostgreSQL cluster of the test's own),
//! as operators run them behind a load balancer: they look after each other.
//!
//! Real peers: PostgreSQL, Garage (the shared object store), OpenSSH `sshd` as app02's SSH
//! console, QEMU's VNC display, xrdp, and as contractors the OpenSSH client, the VNC client
//! and the headless RDP client. The instances are real processes, crashed with SIGKILL or
//! frozen with SIGSTOP.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::ssh::ssh_peers::{
    self, DEMO_PASSWORD, Peer, Session, askpass, console_inventory, console_secrets, recording_path,
};
use crate::support::faults::{PgCluster, serve_pid};
use crate::support::{InstanceOptions, SekishoInstance, require_peers};

/// tanaka's VDI desktop.
const TANAKA_DESKTOP: &str = "127.0.10.11";
/// How long another instance may take to close a dead instance's sessions: the heartbeat is
/// stale after 20 s, and the survivors look every 5 s.
const TAKEOVER_WITHIN: Duration = Duration::from_secs(30);

struct Cluster {
    _pg: PgCluster,
    _sshd: Peer,
    a: SekishoInstance,
    b: SekishoInstance,
    askpass: std::path::PathBuf,
}

/// PostgreSQL, sshd, and two instances sharing the catalogue.
fn cluster() -> Result<Cluster> {
    cluster_with(|i| i)
}

/// [`cluster`] with the inventory edited by `edit`.
fn cluster_with(edit: impl Fn(String) -> String) -> Result<Cluster> {
    let pg = PgCluster::start()?;
    let sshd = ssh_peers::start_sshd(&[])?;
    let inventory = edit(console_inventory(14501, sshd.port));
    let options = || InstanceOptions {
        database: Some(pg.url.clone()),
        secrets: Some(console_secrets()),
        ..InstanceOptions::default()
    };
    let a = SekishoInstance::start_with(&inventory, options())?;
    let b = SekishoInstance::start_with(&inventory, options())?;
    let askpass = askpass(a.dir.path(), DEMO_PASSWORD, None)?;
    Ok(Cluster {
        _pg: pg,
        _sshd: sshd,
        a,
        b,
        askpass,
    })
}

/// tanaka's console session on app02 through `via`, proven to work by a command whose
/// output (`TAG-42`) only the shell can produce.
fn working_console(askpass: &std::path::Path, via: &SekishoInstance, tag: &str) -> Result<Session> {
    let mut s = ssh_peers::ssh_tt(
        askpass,
        via.listen.ssh.port(),
        TANAKA_DESKTOP,
        "tanaka+app02",
    )?;
    s.wait_for("this session is recorded", Duration::from_secs(30))?;
    s.send(format!("echo {tag}-$((6*7))\n").as_bytes())?;
    s.wait_for(&format!("{tag}-42"), Duration::from_secs(30))?;
    Ok(s)
}

impl Cluster {
    fn console_via(&self, via: &SekishoInstance) -> Result<Session> {
        working_console(&self.askpass, via, "ALIVE")
    }
}

/// The row of session `id`, as instance `seen_from` lists it.
fn row(seen_from: &SekishoInstance, id: &str) -> Result<Option<serde_json::Value>> {
    Ok(seen_from
        .sessions()?
        .into_iter()
        .find(|r| r.get("id").and_then(|v| v.as_str()) == Some(id)))
}

/// The id of the one live session, as `seen_from` lists it.
fn live_id(seen_from: &SekishoInstance) -> Result<String> {
    seen_from.wait_until(Duration::from_secs(10), "a live session", || {
        Ok(seen_from
            .sessions()?
            .into_iter()
            .find(|r| r.get("ended_at").is_some_and(serde_json::Value::is_null))
            .and_then(|r| r.get("id")?.as_str().map(str::to_owned)))
    })
}

/// `kill -SIG pid`.
fn signal(pid: u32, sig: &str) -> Result<()> {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()?
        .success();
    ensure!(ok, "kill -{sig} {pid} failed");
    Ok(())
}

#[test]
fn cluster_a_crashed_instance_s_session_is_interrupted_by_another_and_sealed_when_it_returns()
-> Result<()> {
    if !require_peers(&["ssh", "sshd", "runuser"])? {
        return Ok(());
    }
    let mut c = cluster()?;
    let session = c.console_via(&c.a)?;
    // The other instance lists it: one catalogue.
    let id = live_id(&c.b)?;

    c.a.crash()?;
    let crashed = Instant::now();
    let closed =
        c.b.wait_until(TAKEOVER_WITHIN, "B to close A's session", || {
            Ok(row(&c.b, &id)?.filter(|r| !r["ended_at"].is_null()))
        })?;
    println!(
        "B closed the crashed instance's session {:.1} s after the crash",
        crashed.elapsed().as_secs_f64()
    );
    assert_eq!(closed["outcome"], "interrupted", "{closed}");
    let events = c.b.audit_events("orphan interrupted")?;
    assert_eq!(
        events.len(),
        1,
        "one audit event, by one instance: {events:?}"
    );
    assert!(
        events[0].contains("stopped beating") && events[0].contains("tanaka"),
        "{events:?}"
    );
    drop(session);

    // A starts again: the recording only it can reach is sealed, and verifies as interrupted.
    c.a.restart()?;
    let sealed =
        c.a.wait_until(Duration::from_secs(20), "A to seal the recording", || {
            Ok(row(&c.a, &id)?.filter(|r| r["recording_state"] == "sealed"))
        })?;
    assert_eq!(
        sealed["outcome"], "interrupted",
        "the row keeps its outcome"
    );
    let file = recording_path(&c.a, &sealed)?;
    let out =
        c.a.cli_raw(&["recording", "verify", &file.display().to_string()])?;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("interrupted"), "{text}");
    Ok(())
}

#[test]
fn cluster_an_instance_cut_off_ends_the_sessions_another_closed_meanwhile() -> Result<()> {
    if !require_peers(&["ssh", "sshd", "runuser"])? {
        return Ok(());
    }
    let c = cluster()?;
    let mut session = c.console_via(&c.a)?;
    let id = live_id(&c.b)?;

    // A freezes (as if cut off): it neither beats nor relays. B presumes it dead.
    let pid = serve_pid(&c.a).context("A's serve process")?;
    signal(pid, "STOP")?;
    let result =
        c.b.wait_until(TAKEOVER_WITHIN, "B to close A's session", || {
            Ok(row(&c.b, &id)?.filter(|r| !r["ended_at"].is_null()))
        });
    signal(pid, "CONT")?;
    let closed = result?;
    assert_eq!(closed["outcome"], "interrupted", "{closed}");

    // Back, A finds the row closed and ends the session: the catalogue is the record.
    session.wait_for("closed as interrupted", Duration::from_secs(20))?;
    session.wait_exit(Duration::from_secs(20))?;
    let log = c.a.serve_log();
    assert!(
        log.contains("Session closed in the catalogue by another instance"),
        "{log}"
    );
    // Nothing reopened it.
    let after = row(&c.b, &id)?.context("the row")?;
    assert_eq!(after["outcome"], "interrupted", "{after}");
    Ok(())
}

/// `ssh tanaka@VIA console web01` with one password prompt answered by `askpass`: the exit
/// code and output.
fn one_login(via: &SekishoInstance, askpass: &std::path::Path) -> Result<(Option<i32>, String)> {
    let mut s = ssh_peers::ssh(
        askpass,
        via.listen.ssh.port(),
        TANAKA_DESKTOP,
        &[
            "-o",
            "NumberOfPasswordPrompts=1",
            "tanaka@127.0.0.1",
            "console",
            "web01",
        ],
    )?;
    let status = s.wait_exit(Duration::from_secs(30))?;
    Ok((status.code(), s.output()))
}

#[test]
fn cluster_guessing_is_counted_across_instances() -> Result<()> {
    if !require_peers(&["ssh", "sshd", "runuser"])? {
        return Ok(());
    }
    let c = cluster_with(|i| {
        format!("{i}\n[auth]\nmax_failures = 3\nfailure_window = \"15m\"\nlockout = \"15m\"\n")
    })?;
    let wrong = askpass(&c.a.path("data"), "not-the-password", None)?;
    // Two wrong passwords on A, one on B: three in all, the limit.
    for via in [&c.a, &c.a, &c.b] {
        let (code, out) = one_login(via, &wrong)?;
        assert_eq!(code, Some(255), "{out}");
        // Each instance sees the other's failures within a quarter of a second.
        std::thread::sleep(Duration::from_millis(800));
    }
    // The right password is now refused on both, like a wrong one.
    for via in [&c.a, &c.b] {
        let (code, out) = one_login(via, &c.askpass)?;
        assert_eq!(
            code,
            Some(255),
            "the right password got in during the lockout: {out}"
        );
        assert!(out.contains("Permission denied"), "{out}");
    }
    for via in [&c.a, &c.b] {
        assert!(
            !via.serve_log().contains("SSH login accepted"),
            "an instance accepted tanaka during the lockout"
        );
    }
    let lockouts = c.a.audit_events("auth lockout")?;
    assert!(
        lockouts
            .iter()
            .any(|e| e.contains("user tanaka locked out")),
        "{lockouts:?}"
    );
    Ok(())
}

/// Three instances on one PostgreSQL and one Garage, each with its own data directory and
/// spool, recording app02's console (sshd).
struct SharedCluster {
    _pg: PgCluster,
    _sshd: Peer,
    _qemu: crate::vnc::vnc_peers::Qemu,
    a: SekishoInstance,
    b: SekishoInstance,
    c: SekishoInstance,
    askpass: std::path::PathBuf,
}

fn shared_cluster() -> Result<Option<SharedCluster>> {
    if !require_peers(&[
        "ssh",
        "sshd",
        "runuser",
        "chromium",
        "chromedriver",
        "qemu-system-x86_64",
        "python3",
    ])? {
        return Ok(None);
    }
    let Some(g) = crate::object_storage::garage()? else {
        return Ok(None);
    };
    let pg = PgCluster::start()?;
    let sshd = ssh_peers::start_sshd(&[])?;
    // web01's graphical console: QEMU's VNC display.
    let qemu = crate::vnc::vnc_peers::start_qemu_vnc(None)?;
    // suzuki is the demo inventory's auditor.
    let inventory = console_inventory(14501, sshd.port).replacen(
        "vnc_console = \"127.0.0.1:15901\"",
        &format!("vnc_console = \"127.0.0.1:{}\"", qemu.port),
        1,
    );
    let url = format!("s3://{}/cluster/{}", g.bucket, uuid::Uuid::now_v7());
    let options = || InstanceOptions {
        database: Some(pg.url.clone()),
        ..g.options(&url, "ship_interval = \"1s\"\n", &console_secrets())
    };
    let a = SekishoInstance::start_with(&inventory, options())?;
    let b = SekishoInstance::start_with(&inventory, options())?;
    let c = SekishoInstance::start_with(&inventory, options())?;
    let askpass = askpass(a.dir.path(), DEMO_PASSWORD, None)?;
    Ok(Some(SharedCluster {
        _pg: pg,
        _sshd: sshd,
        _qemu: qemu,
        a,
        b,
        c,
        askpass,
    }))
}

impl SharedCluster {
    fn console_via(&self, via: &SekishoInstance) -> Result<Session> {
        working_console(&self.askpass, via, "SHARED")
    }
}

/// `sekisho recording verify URL` on `on`: (exit code, output).
fn verify_on(on: &SekishoInstance, url: &str) -> Result<(Option<i32>, String)> {
    let out = on.cli(&["recording", "verify", url])?;
    Ok((
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    ))
}

/// The verification state `on`'s web UI shows for session `id`, in Chromium, as an auditor,
/// and the terminal screen its player decodes at the end of the recording.
fn web_verification(on: &SekishoInstance, id: &str) -> Result<(String, String)> {
    use crate::web::web_browser::Browser;
    crate::support::wait_for_port(on.listen.web, Duration::from_secs(20))?;
    let base = format!("https://{}", on.listen.web);
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let b = Browser::start().await?;
        let result = async {
            b.goto(&format!("{base}/login")).await?;
            b.type_into("user", "suzuki").await?;
            b.type_into("password", crate::support::inventory::PASSWORD)
                .await?;
            b.click("login").await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            b.goto(&format!("{base}/sessions/{id}")).await?;
            let e = b
                .client
                .find(fantoccini::Locator::Id("verification"))
                .await?;
            let class = e.attr("class").await?.unwrap_or_default();
            let screen = b
                .client
                .execute_async(
                    &format!(
                        "const done = arguments[arguments.length - 1];\
                         fetch('/sessions/{id}/screen?ms=999999999').then(r => r.text()).then(done, e => done('ERROR ' + e));"
                    ),
                    vec![],
                )
                .await?;
            anyhow::Ok((class, screen.as_str().unwrap_or_default().to_owned()))
        }
        .await;
        b.close().await?;
        result
    })
}

#[test]
fn cluster_three_instances_share_one_catalogue_and_one_object_store() -> Result<()> {
    let Some(mut c) = shared_cluster()? else {
        return Ok(());
    };
    // A session through A is listed from B and killed from B.
    let session = c.console_via(&c.a)?;
    let id = live_id(&c.b)?;
    let asked = Instant::now();
    let out = c.b.cli(&["sessions", "kill", &id])?;
    ensure!(
        out.status.success(),
        "kill from B: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A applies a kill asked on B: the contractor is told and cut off.
    let told = session.wait_for("session ended by security staff", Duration::from_secs(10))?;
    let took = told.duration_since(asked);
    println!(
        "killed from B, ended by A in {:.0} ms (the kill command included)",
        took.as_secs_f64() * 1000.0
    );
    assert!(
        took < crate::support::EMERGENCY_STOP,
        "a kill from B took {took:?} to end A's session"
    );
    drop(session);
    // Its recording, shipped by A, is verified and shown by C.
    let killed = c.c.wait_until(
        Duration::from_secs(30),
        "the recording sealed in the store",
        || Ok(row(&c.c, &id)?.filter(|r| r["recording_state"] == "complete")),
    )?;
    assert_eq!(killed["outcome"], "killed", "{killed}");
    let url = killed["recording"]
        .as_str()
        .context("recording URL")?
        .to_owned();
    assert!(url.starts_with("s3://"), "{url}");
    let (code, text) = verify_on(&c.c, &url)?;
    assert_eq!(code, Some(0), "C cannot verify A's recording: {text}");
    let (verification, screen) = web_verification(&c.c, &id)?;
    assert_eq!(verification, "verify-intact");
    assert!(
        screen.contains("SHARED-42"),
        "C's player does not show what was typed through A: {screen}"
    );
    let out = c.c.cli(&["ledger", "verify"])?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 recordings checked"), "{text}");

    // A VNC console session through B (its ticket issued by B's SSH door) is replayed on A.
    let (vnc_id, _) = crate::vnc::vnc_peers::recorded_console_session(&c.b, TANAKA_DESKTOP, 3.0)?;
    let png = c.a.path("vnc-from-b.png");
    let out = c.a.cli(&[
        "export",
        &vnc_id,
        "--format",
        "png",
        "-o",
        &png.display().to_string(),
    ])?;
    ensure!(
        out.status.success(),
        "A cannot export B's VNC recording: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        std::fs::read(&png)?.starts_with(b"\x89PNG"),
        "A's export of B's VNC recording is not a PNG"
    );

    // A dies mid-session: another instance closes the session and seals its recording from
    // what reached the store.
    let mut session = c.console_via(&c.a)?;
    let id = live_id(&c.c)?;
    session.send(b"echo LAST-$((6*7))\n")?;
    session.wait_for("LAST-42", Duration::from_secs(30))?;
    // Twice the ship interval: what was shown by now is in the store, whatever A does next.
    std::thread::sleep(Duration::from_secs(2));
    c.a.crash()?;
    let crashed = Instant::now();
    let sealed = c.c.wait_until(
        TAKEOVER_WITHIN,
        "the crashed instance's session sealed",
        || Ok(row(&c.c, &id)?.filter(|r| r["recording_state"] == "sealed")),
    )?;
    println!(
        "A's session closed and its recording sealed from the store {:.1} s after the crash",
        crashed.elapsed().as_secs_f64()
    );
    assert_eq!(sealed["outcome"], "interrupted", "{sealed}");
    let url = sealed["recording"]
        .as_str()
        .context("recording URL")?
        .to_owned();
    let (code, text) = verify_on(&c.c, &url)?;
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("interrupted"), "{text}");
    // At most the spool window is missing: the output of two ship intervals before the crash
    // is in the sealed recording.
    let out =
        c.c.cli(&["export", &id, "--format", "txt", "-o", "crashed.txt"])?;
    ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = std::fs::read_to_string(c.c.path("crashed.txt"))?;
    assert!(
        shown.contains("LAST-42"),
        "the crashed session's recording lacks LAST-42:\n{shown}"
    );
    let events = c.b.audit_events("orphan interrupted")?;
    assert!(
        events
            .iter()
            .any(|e| e.contains("sealed from what reached the object store")),
        "{events:?}"
    );
    drop(session);
    Ok(())
}

/// `sekisho serve` of `instance`'s configuration, run from `bin` (a release build for the
/// benchmark); killed on drop.
struct BenchServe(std::process::Child);

impl BenchServe {
    fn start(bin: &std::path::Path, instance: &SekishoInstance) -> Result<BenchServe> {
        let log = std::fs::File::create(instance.path("serve-bench.log"))?;
        let child = std::process::Command::new(bin)
            .arg("serve")
            .arg("--config")
            .arg(&instance.config)
            .current_dir(instance.dir.path())
            .env("RUST_LOG", "warn")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        crate::support::wait_for_port(instance.listen.ssh, Duration::from_secs(30))?;
        Ok(BenchServe(child))
    }
}

impl Drop for BenchServe {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

/// Benchmark (run by hand or by scripts/bench; prints figures, asserts nothing): three
/// release instances on one PostgreSQL and one Garage hold `CLUSTER_BENCH_SESSIONS` (default
/// 1,000) recorded console sessions between them, opened round robin as a load balancer
/// would; then every session is closed and the rows, the recordings in the store and the
/// ledger are counted. Idle TCP listeners stand in for the serial consoles (QEMU takes one
/// client per port; what is measured is Sekisho).
/// `cargo test -p e2e --test e2e cluster::cluster_bench -- --ignored --nocapture`
#[test]
#[ignore = "benchmark: run by hand or by scripts/bench"]
fn cluster_bench() -> Result<()> {
    if !require_peers(&["ssh", "runuser"])? {
        return Ok(());
    }
    let Some(g) = crate::object_storage::garage()? else {
        return Ok(());
    };
    let n: usize = std::env::var("CLUSTER_BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let bin = crate::support::bench::sekisho_binary()?;
    let consoles = std::net::TcpListener::bind("127.0.0.1:0")?;
    let console_port = consoles.local_addr()?.port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in consoles.incoming().flatten() {
            held.push(c);
        }
    });
    let pg = PgCluster::start()?;
    let inventory = console_inventory(console_port, 10022);
    let url = format!("s3://{}/bench/{}", g.bucket, uuid::Uuid::now_v7());
    let options = || InstanceOptions {
        database: Some(pg.url.clone()),
        no_serve: true,
        ..g.options(&url, "", &console_secrets())
    };
    let instances = [
        SekishoInstance::start_with(&inventory, options())?,
        SekishoInstance::start_with(&inventory, options())?,
        SekishoInstance::start_with(&inventory, options())?,
    ];
    let serves = instances
        .iter()
        .map(|i| BenchServe::start(&bin, i))
        .collect::<Result<Vec<_>>>()?;
    let askpass = askpass(instances[0].dir.path(), DEMO_PASSWORD, None)?;
    let rss = |s: &BenchServe| crate::support::bench::rss_kib(s.0.id()).unwrap_or(0);
    let before: Vec<u64> = serves.iter().map(rss).collect();

    let started = Instant::now();
    let mut sessions = Vec::with_capacity(n);
    let mut failed = 0usize;
    for i in 0..n {
        let via = &instances[i % 3];
        let s = ssh_peers::ssh_tt(
            &askpass,
            via.listen.ssh.port(),
            TANAKA_DESKTOP,
            "tanaka+web01",
        )?;
        match s.wait_for("this session is recorded", Duration::from_secs(60)) {
            Ok(_) => sessions.push(s),
            Err(_) => failed += 1,
        }
    }
    let opened_in = started.elapsed();
    std::thread::sleep(Duration::from_secs(3)); // past the first chunk of every recording
    let live = instances[1]
        .sessions()?
        .into_iter()
        .filter(|s| s["ended_at"].is_null())
        .count();
    let after: Vec<u64> = serves.iter().map(rss).collect();
    let per_session = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.saturating_sub(*b))
        .sum::<u64>() as f64
        / sessions.len().max(1) as f64;

    // Close everything; every row must end and every recording reach the store.
    let held = sessions.len();
    drop(sessions);
    let closed = Instant::now();
    let sealed = instances[2].wait_until(
        Duration::from_secs(600),
        "every recording in the store",
        || {
            let rows = instances[2].sessions()?;
            let done = rows
                .iter()
                .filter(|r| r["recording_state"] == "complete")
                .count();
            Ok((rows.iter().all(|r| !r["ended_at"].is_null()) && done >= held).then_some(done))
        },
    );
    let sealed_in = closed.elapsed();
    let rows = instances[2].sessions()?;
    let ledger = instances[0].cli(&["ledger", "verify"])?;
    let ledger_text = String::from_utf8_lossy(&ledger.stdout).into_owned();
    drop(serves);

    println!();
    println!(
        "cluster: 3 instances (release {}), one PostgreSQL, one Garage; {n} recorded console sessions asked, round robin",
        bin.display()
    );
    println!(
        "  held {held} at once ({failed} not opened), {live} listed live in the catalogue; opened in {:.1} s",
        opened_in.as_secs_f64()
    );
    println!(
        "  memory per held session (sum of the three instances' RSS growth): {per_session:.1} KiB"
    );
    println!(
        "  after closing: {} rows, {} recordings complete in the store after {:.1} s; ledger: {}",
        rows.len(),
        sealed.as_ref().copied().unwrap_or(0),
        sealed_in.as_secs_f64(),
        ledger_text.lines().last().unwrap_or_default()
    );
    println!("BENCH cluster.sessions_held={held} sessions");
    println!("BENCH cluster.sessions_listed_live={live} sessions");
    println!(
        "BENCH cluster.rows_lost={} rows",
        n.saturating_sub(rows.len())
    );
    println!(
        "BENCH cluster.recordings_lost={} recordings",
        held.saturating_sub(sealed.as_ref().copied().unwrap_or(0))
    );
    println!("BENCH cluster.memory_per_session={per_session:.1} KiB");
    println!(
        "BENCH cluster.open_seconds={:.1} s",
        opened_in.as_secs_f64()
    );
    Ok(())
}

/// An RDP session (the headless ironrdp client, to xrdp) through instance B is replayed by
/// instance A from the shared object store: A's exported last frame is the picture the client
/// saw, and A verifies the recording B signed.
#[test]
fn cluster_an_rdp_session_through_one_instance_is_replayed_on_another() -> Result<()> {
    use std::net::IpAddr;

    use crate::rdp::rdp_peers::{self, XRDP_PORT};
    use crate::rdp_load::{DESKTOP, inventory, runtime};
    use e2e::rdp_client::{self, ConnectOptions};

    if !require_peers(&["xrdp", "xrdp-sesman", "Xvnc", "ffmpeg", "ffprobe"])? {
        return Ok(());
    }
    let Some(g) = crate::object_storage::garage()? else {
        return Ok(());
    };
    rdp_peers::ensure_xrdp()?;
    let _serial = rdp_peers::serial();
    let pg = PgCluster::start()?;
    let inventory = inventory(&[("srv01", XRDP_PORT)], None);
    let url = format!("s3://{}/cluster-rdp/{}", g.bucket, uuid::Uuid::now_v7());
    let options = || InstanceOptions {
        database: Some(pg.url.clone()),
        ..g.options(
            &url,
            "ship_interval = \"1s\"\n",
            &rdp_peers::lab_secrets(&["srv01"]),
        )
    };
    let a = SekishoInstance::start_with(&inventory, options())?;
    let b = SekishoInstance::start_with(&inventory, options())?;

    let seen = b.path("client-last.png");
    runtime()?
        .block_on(async {
            let mut o = ConnectOptions::new(
                b.listen.rdp,
                "tanaka+srv01",
                crate::support::inventory::PASSWORD,
            );
            o.source = Some(IpAddr::V4(DESKTOP));
            let mut s = rdp_client::connect(&o).await?;
            s.mouse_move(500, 400).await?;
            s.pump_for(Duration::from_secs(3)).await?;
            s.save_png(&seen)?;
            s.disconnect().await?;
            anyhow::Ok(())
        })
        .with_context(|| format!("through B:\n{}", b.serve_log()))?;

    // A sees B's session, and replays it once B has sealed the recording into the store.
    let ended = a.wait_until(
        Duration::from_secs(30),
        "B's RDP recording complete in the store",
        || {
            Ok(a.sessions()?
                .into_iter()
                .find(|s| s["protocol"] == "rdp" && s["recording_state"] == "complete"))
        },
    )?;
    let id = ended["id"].as_str().context("id")?.to_owned();
    let location = ended["recording"].as_str().context("recording URL")?;
    assert!(location.starts_with(&url), "{location}");
    let (code, text) = verify_on(&a, location)?;
    assert_eq!(code, Some(0), "A cannot verify B's RDP recording: {text}");
    assert!(text.contains("intact"), "{text}");
    let replayed = a.path("rdp-from-b.png");
    let out = a.cli(&[
        "export",
        &id,
        "--format",
        "png",
        "-o",
        &replayed.display().to_string(),
    ])?;
    ensure!(
        out.status.success(),
        "A cannot export B's RDP recording: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The desktop has a ticking clock, and updates may arrive between the client's last
    // picture and the end of the session: allow a clock's worth of pixels.
    let differing = crate::player::differing(&replayed, &seen)?;
    println!(
        "A's replay of B's RDP session: {:.3}% of pixels differ from what the client saw",
        differing * 100.0
    );
    assert!(
        differing < 0.01,
        "A's replay differs from the client's screen in {:.2}% of pixels",
        differing * 100.0
    );
    Ok(())
}
