//! Fault tests: Sekisho under real faults (full disk, stopped PostgreSQL, vanishing targets,
//! slow and half-open connections, floods of garbage) keeps failing closed and keeps serving.
//!
//! Every test runs the real `sekisho serve` with real peers: OpenSSH `sshd` as app02's SSH
//! console (its shell makes output on demand), QEMU's serial port as web01's console, the
//! OpenSSH client as the contractor, PostgreSQL as the catalogue. `kill -9` of Sekisho itself
//! is in `recording.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::ssh::ssh_peers::{
    self, DEMO_PASSWORD, Peer, Session, askpass, console_inventory, console_secrets, output_text,
    recording_path,
};
use crate::support::faults::{self, Garbage, PgCluster, Stall, TmpfsMount};
use crate::support::{InstanceOptions, SekishoInstance, require_peers};

/// tanaka's VDI desktop (acme, contract open at every hour in the demo inventory).
const TANAKA_DESKTOP: &str = "127.0.10.11";

struct Lab {
    sekisho: SekishoInstance,
    sshd: Peer,
    askpass: PathBuf,
}

/// sshd (app02's console) and a Sekisho instance in front of it, not yet serving when
/// `serve` is false (so the test can prepare the instance directory first).
fn lab(options: InstanceOptions, serve: bool) -> Result<Lab> {
    lab_on_serial(14501, options, serve)
}

/// [`lab`] with web01's serial console on `serial`.
fn lab_on_serial(serial: u16, options: InstanceOptions, serve: bool) -> Result<Lab> {
    let sshd = ssh_peers::start_sshd(&[])?;
    let sekisho = SekishoInstance::start_with(
        &console_inventory(serial, sshd.port),
        InstanceOptions {
            secrets: Some(console_secrets()),
            no_serve: !serve,
            ..options
        },
    )?;
    let askpass = askpass(sekisho.dir.path(), DEMO_PASSWORD, None)?;
    Ok(Lab {
        sekisho,
        sshd,
        askpass,
    })
}

impl Lab {
    /// `ssh -tt tanaka+TARGET@sekisho` from tanaka's desktop.
    fn console(&self, target: &str) -> Result<Session> {
        ssh_peers::ssh_tt(
            &self.askpass,
            self.sekisho.listen.ssh.port(),
            TANAKA_DESKTOP,
            &format!("tanaka+{target}"),
        )
    }

    /// A console on app02 that has run a command through the shell: proof the session works.
    fn working_console(&self) -> Result<Session> {
        let mut s = self.console("app02")?;
        s.wait_for("this session is recorded", Duration::from_secs(30))?;
        prove_alive(&mut s, "START")?;
        Ok(s)
    }

    fn rows_on(&self, target: &str) -> Result<Vec<serde_json::Value>> {
        ssh_peers::sessions_on(&self.sekisho, target)
    }

    fn session_row(&self, id: &str, ended: bool) -> Result<serde_json::Value> {
        self.sekisho.wait_until(
            Duration::from_secs(20),
            &format!("session {id} (ended: {ended})"),
            || {
                Ok(self
                    .sekisho
                    .sessions()?
                    .into_iter()
                    .find(|s| s["id"] == id && s["ended_at"].is_null() != ended))
            },
        )
    }

    /// The id of the only live session on `target`.
    fn live_id(&self, target: &str) -> Result<String> {
        let row = &self.live_on(target)?;
        Ok(row["id"].as_str().context("id")?.to_owned())
    }

    /// The session `id` that lost its console is ended, not live, and its recording is
    /// complete and intact; `serve` goes on.
    fn assert_ended_cleanly(&self, id: &str, console: &str) -> Result<()> {
        let row = &self.session_row(id, true)?;
        println!("outcome after the {console} vanished: {}", row["outcome"]);
        assert_ne!(row["outcome"], "live", "{row}");
        assert_eq!(row["recording_state"], "complete", "{row}");
        let (code, out) = self.verify(&self.recording_path(row)?)?;
        assert_eq!(code, Some(0), "{out}");
        assert!(out.contains("intact"), "{out}");
        faults::assert_serving(&self.sekisho)
    }

    /// The only live session on `target`.
    fn live_on(&self, target: &str) -> Result<serde_json::Value> {
        self.sekisho.wait_until(
            Duration::from_secs(20),
            &format!("a live session on {target}"),
            || {
                Ok(self
                    .rows_on(target)?
                    .into_iter()
                    .find(|s| s["ended_at"].is_null()))
            },
        )
    }

    fn recording_path(&self, row: &serde_json::Value) -> Result<PathBuf> {
        recording_path(&self.sekisho, row)
    }

    /// `sekisho recording verify FILE` with the instance's key: exit code and text.
    fn verify(&self, file: &std::path::Path) -> Result<(Option<i32>, String)> {
        let out = self
            .sekisho
            .cli(&["recording", "verify", &file.display().to_string()])?;
        Ok((out.status.code(), output_text(&out)))
    }
}

/// Leaves the shell with `exit` and waits for the client to end.
fn exit_shell(s: &mut Session) -> Result<()> {
    s.send(b"exit\n")?;
    s.wait_exit(Duration::from_secs(15))?;
    Ok(())
}

/// The contractor is told the console went away (`what` died) and disconnected.
fn told_the_console_closed(s: &mut Session, what: &str) -> Result<()> {
    let t0 = Instant::now();
    s.wait_for(
        "sekisho: the console closed the connection",
        Duration::from_secs(30),
    )?;
    let status = s.wait_exit(Duration::from_secs(15))?;
    println!(
        "told and disconnected {:.2} s after {what} died; exit {:?}",
        t0.elapsed().as_secs_f64(),
        status.code()
    );
    Ok(())
}

/// A lab whose catalogue is on a PostgreSQL cluster of its own, which the test can stop.
fn pg_lab() -> Result<(PgCluster, Lab)> {
    let pg = PgCluster::start()?;
    let lab = lab(
        InstanceOptions {
            database: Some(pg.url.clone()),
            ..InstanceOptions::default()
        },
        true,
    )?;
    Ok((pg, lab))
}

/// Runs `echo TAG-$((6*7))` in the shell and waits for its result.
fn prove_alive(s: &mut Session, tag: &str) -> Result<()> {
    s.send(format!("echo {tag}-$((6*7))\n").as_bytes())?;
    s.wait_for(&format!("{tag}-42"), Duration::from_secs(30))?;
    Ok(())
}

fn peers(programs: &[&str]) -> Result<bool> {
    require_peers(programs)
}

// ----- 1. full disk -----

/// The recordings directory is a 4 MiB tmpfs, 3 MiB of it taken by another file. A live
/// console session that prints random data fills it: the session is ended (fail closed) and
/// recorded as failed with a storage-full event; new sessions are refused with a message;
/// `serve` keeps answering; once the other file is deleted, new sessions work again.
#[test]
fn full_disk_ends_the_live_session_refuses_new_ones_and_recovers() -> Result<()> {
    if !peers(&["ssh", "sshd", "curl"])? {
        return Ok(());
    }
    let mut lab = lab(InstanceOptions::default(), false)?;
    let recordings = lab.sekisho.path("data/recordings");
    let disk = TmpfsMount::mount(&recordings, "4m")?;
    let filler = recordings.join("other-data.bin");
    std::fs::write(&filler, vec![0x5au8; 3 * 1024 * 1024])?;
    lab.sekisho.restart()?; // first start of serve, now on the small disk
    println!("free on the recordings disk: {} bytes", disk.free_bytes()?);

    // A live session fills the disk.
    let mut s = lab.working_console()?;
    let id = lab.live_id("app02")?;
    let t0 = Instant::now();
    s.send(b"head -c 20000000 /dev/urandom | base64\n")?;
    s.wait_for("it can no longer be recorded", Duration::from_secs(60))?;
    let took = t0.elapsed();
    let status = s.wait_exit(Duration::from_secs(15))?;
    println!(
        "the live session was ended {:.2} s after the output began; client exit {:?}",
        took.as_secs_f64(),
        status.code()
    );
    assert_ne!(status.code(), Some(0), "{}", s.output());
    println!("free on the recordings disk: {} bytes", disk.free_bytes()?);

    let row = lab.session_row(&id, true)?;
    assert_eq!(row["outcome"], "failed", "{row}");
    assert_eq!(row["recording_state"], "incomplete", "{row}");
    let events = faults::session_events(&lab.sekisho, &id)?;
    assert!(
        events
            .iter()
            .any(|(k, d)| k == "recording failed" && d.contains("storage full")),
        "no 'recording failed … storage full' event: {events:?}"
    );
    assert!(
        lab.sekisho
            .serve_log()
            .contains("Recording failed; ending the session"),
        "{}",
        lab.sekisho.serve_log()
    );
    // What was written before the disk filled is readable: incomplete, not tampered.
    let (code, out) = lab.verify(&lab.recording_path(&row)?)?;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("incomplete"), "{out}");
    assert!(!out.contains("TAMPERED"), "{out}");

    // A new session is refused with a message, and no session row is written for it.
    let before = lab.rows_on("app02")?.len();
    let mut refused = lab.console("app02")?;
    let status = refused.wait_exit(Duration::from_secs(30))?;
    let out = refused.output();
    assert!(out.contains("cannot be recorded right now"), "{out}");
    assert!(!out.contains("this session is recorded"), "{out}");
    assert_eq!(status.code(), Some(1), "{out}");
    assert_eq!(
        lab.rows_on("app02")?.len(),
        before,
        "a refused session left a row"
    );

    // Sekisho itself keeps serving.
    faults::assert_serving(&lab.sekisho)?;
    let (code, body) = faults::metrics(&lab.sekisho)?;
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("sekisho_sessions_live"), "{body}");
    // Not on the web port: no `[metrics] token` in this lab's secrets file.
    let (code, body) = faults::metrics_on_web_port(&lab.sekisho)?;
    assert_eq!(code, 404, "{body}");
    lab.sekisho.sessions()?;

    // Space is freed: new sessions work again, without a restart.
    std::fs::remove_file(&filler)?;
    let mut s = lab.working_console()?;
    let id2 = lab.live_id("app02")?;
    exit_shell(&mut s)?;
    let row = lab.session_row(&id2, true)?;
    assert_eq!(row["outcome"], "completed", "{row}");
    let (code, out) = lab.verify(&lab.recording_path(&row)?)?;
    assert_eq!(code, Some(0), "{out}");
    faults::assert_serving(&lab.sekisho)?;
    drop(lab);
    drop(disk);
    Ok(())
}

/// The refusal of a session that cannot be recorded is written to the catalogue (a denial
/// row), not only told to the user.
#[test]
fn full_disk_refusal_is_in_the_catalogue() -> Result<()> {
    if !peers(&["ssh", "sshd"])? {
        return Ok(());
    }
    let mut lab = lab(InstanceOptions::default(), false)?;
    let recordings = lab.sekisho.path("data/recordings");
    let disk = TmpfsMount::mount(&recordings, "64k")?;
    // Fill it completely.
    let filler = recordings.join("other-data.bin");
    let _ = std::fs::write(&filler, vec![0u8; 1024 * 1024]);
    lab.sekisho.restart()?;
    let mut refused = lab.console("app02")?;
    let status = refused.wait_exit(Duration::from_secs(30))?;
    let out = refused.output();
    assert!(out.contains("cannot be recorded right now"), "{out}");
    assert_eq!(status.code(), Some(1), "{out}");
    let decisions = faults::decisions(&lab.sekisho)?;
    println!("decisions: {decisions:?}");
    for f in faults::recording_files(&recordings) {
        let size = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
        println!("left on the full disk: {} ({size} bytes)", f.display());
    }
    assert!(
        decisions
            .iter()
            .any(|(verdict, _, target, _)| verdict == "deny" && target == "app02"),
        "the refusal is not in the catalogue; decisions: {decisions:?}"
    );
    let empty: Vec<PathBuf> = faults::recording_files(&recordings)
        .into_iter()
        .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.len() == 0))
        .collect();
    assert!(empty.is_empty(), "empty recordings left behind: {empty:?}");
    drop(lab);
    drop(disk);
    Ok(())
}

// ----- 2. PostgreSQL stopped -----

/// With the catalogue on PostgreSQL, stopping PostgreSQL makes new sessions fail closed (told
/// to the user, no session, no recording, a log line); once it is back they work again
/// without restarting Sekisho.
#[test]
fn postgresql_stopped_refuses_new_sessions_and_recovers_when_back() -> Result<()> {
    if !peers(&["ssh", "sshd", "runuser"])? {
        return Ok(());
    }
    let (pg, lab) = pg_lab()?;
    exit_shell(&mut lab.working_console()?)?;
    lab.sekisho
        .wait_until(Duration::from_secs(10), "the first session ended", || {
            Ok(lab
                .rows_on("app02")?
                .first()
                .is_some_and(|r| !r["ended_at"].is_null())
                .then_some(()))
        })?;
    let recordings = lab.sekisho.path("data/recordings");
    let files_before = faults::recording_files(&recordings).len();

    pg.stop()?;
    let log_before = lab.sekisho.serve_log().len();
    let mut refused = lab.console("app02")?;
    let status = refused.wait_exit(Duration::from_secs(60))?;
    let out = refused.output();
    println!("while PostgreSQL is down the user sees: {out:?}");
    assert_eq!(status.code(), Some(1), "{out}");
    assert!(out.contains("sekisho.unavailable"), "{out}");
    assert!(!out.contains("this session is recorded"), "{out}");
    assert_eq!(
        faults::recording_files(&recordings).len(),
        files_before,
        "a recording was created while the catalogue was down"
    );
    let log = lab.sekisho.serve_log();
    let new_log = log.get(log_before..).unwrap_or_default();
    // services.rs: "Cannot read live sessions; denying" (or "Cannot write the decision;
    // denying"), with the catalogue error.
    assert!(
        new_log.contains("denying") && new_log.contains("catalogue"),
        "no clear log line:\n{new_log}"
    );
    faults::assert_serving(&lab.sekisho)?;

    pg.start_again()?;
    // The pool reconnects on its own: the next session works, no restart.
    let t0 = Instant::now();
    let s = lab.sekisho.wait_until(
        Duration::from_secs(60),
        "a session to work after PostgreSQL is back",
        || {
            let mut s = lab.console("app02")?;
            match s.wait_for("this session is recorded", Duration::from_secs(20)) {
                Ok(_) => Ok(Some(s)),
                Err(_) => {
                    let _ = s.wait_exit(Duration::from_secs(5));
                    Ok(None)
                }
            }
        },
    )?;
    let mut s = s;
    prove_alive(&mut s, "BACK")?;
    println!(
        "a new session worked {:.2} s after PostgreSQL was back",
        t0.elapsed().as_secs_f64()
    );
    exit_shell(&mut s)?;
    // Only the two sessions that ran are in the catalogue; the refused one left nothing.
    let rows = lab
        .sekisho
        .wait_until(Duration::from_secs(10), "two ended rows", || {
            let rows = lab.rows_on("app02")?;
            Ok((rows.len() == 2 && rows.iter().all(|r| !r["ended_at"].is_null())).then_some(rows))
        })?;
    for r in &rows {
        assert_eq!(r["outcome"], "completed", "{r}");
    }
    faults::assert_serving(&lab.sekisho)?;
    Ok(())
}

/// A session that runs while PostgreSQL is stopped, and ends before it is back, is closed in
/// the catalogue once PostgreSQL returns (its row must not stay `live` for ever).
#[test]
fn a_session_ended_while_postgresql_was_down_is_closed_when_it_is_back() -> Result<()> {
    if !peers(&["ssh", "sshd", "runuser"])? {
        return Ok(());
    }
    let (pg, lab) = pg_lab()?;
    let mut s = lab.working_console()?;
    let id = lab.live_id("app02")?;
    pg.stop()?;
    // The live session keeps its recording; what it does with the catalogue gone is printed.
    let alive = prove_alive(&mut s, "DOWN");
    println!("the live session while PostgreSQL is down: {alive:?}");
    s.send(b"exit\n")?;
    let _ = s.wait_exit(Duration::from_secs(15));
    std::thread::sleep(Duration::from_secs(2));
    pg.start_again()?;
    let row = lab.sekisho.wait_until(
        Duration::from_secs(60),
        "the session's row to be closed after PostgreSQL is back",
        || {
            Ok(lab
                .sekisho
                .sessions()?
                .into_iter()
                .find(|r| r["id"] == id.as_str() && !r["ended_at"].is_null()))
        },
    )?;
    println!("row: {row}");
    Ok(())
}

// ----- 3. a target that vanishes -----

/// Kills app02's sshd (the listener and every session process under it) under a live console
/// session; returns the session id once the contractor has been told and disconnected.
fn kill_the_ssh_console_under_a_session(lab: &mut Lab) -> Result<String> {
    let mut s = lab.working_console()?;
    let id = lab.live_id("app02")?;
    let master = lab.sshd.child.id();
    let mut pids = faults::descendants(master);
    pids.push(master);
    faults::kill9(&pids);
    let _ = lab.sshd.child.wait();
    told_the_console_closed(&mut s, "the console")?;
    Ok(id)
}

/// The SSH console's sshd dies (every sshd process, the session's included) under a live
/// session: the contractor is told and disconnected, the session is ended in the catalogue,
/// and its recording verifies.
#[test]
fn a_vanishing_ssh_console_ends_the_session_cleanly() -> Result<()> {
    if !peers(&["ssh", "sshd"])? {
        return Ok(());
    }
    let mut lab = lab(InstanceOptions::default(), true)?;
    let id = kill_the_ssh_console_under_a_session(&mut lab)?;
    lab.assert_ended_cleanly(&id, "console")
}

/// A console that dies (no exit status, the transport cut) is told apart from a normal logout
/// in the catalogue: the session ends `failed` (an upstream failure) with an event saying the
/// console went away, not `completed` with nothing to show why.
#[test]
fn a_vanishing_console_is_recorded_as_such() -> Result<()> {
    if !peers(&["ssh", "sshd"])? {
        return Ok(());
    }
    let mut lab = lab(InstanceOptions::default(), true)?;
    let id = kill_the_ssh_console_under_a_session(&mut lab)?;
    let row = lab.session_row(&id, true)?;
    let events = faults::session_events(&lab.sekisho, &id)?;
    println!("row: {row}\nevents: {events:?}");
    assert_eq!(row["outcome"], "failed", "{row}");
    assert!(
        events
            .iter()
            .any(|(_, d)| d.contains("console") && d.contains("closed")),
        "no event says the console went away: {events:?}"
    );
    Ok(())
}

/// The same with QEMU's serial console: QEMU is killed under a live session.
#[test]
fn a_vanishing_serial_console_ends_the_session_cleanly() -> Result<()> {
    if !peers(&["ssh", "sshd", "qemu-system-x86_64"])? {
        return Ok(());
    }
    let mut qemu = ssh_peers::start_qemu_serial()?;
    let lab = lab_on_serial(qemu.port, InstanceOptions::default(), true)?;
    let mut s = lab.console("web01")?;
    s.wait_for("No bootable device", Duration::from_secs(30))?;
    let id = lab.live_id("web01")?;
    qemu.child.kill()?;
    qemu.child.wait()?;
    told_the_console_closed(&mut s, "QEMU")?;
    lab.assert_ended_cleanly(&id, "serial console")
}

// ----- 4. half-open and slow connections -----

/// The pre-authentication deadline of each front door: `auth.preauth_timeout`, default 30 s.
const SSH_AUTH_TIMEOUT: Duration = Duration::from_secs(30);
const RDP_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const VNC_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections that send nothing, or one byte a second, to the SSH, RDP and VNC listeners are
/// closed by the handshake timeouts (asserted within twice the timeout: a correctness check,
/// not a performance figure), and a real console session opened and used meanwhile works.
#[test]
fn half_open_and_slow_connections_are_closed_and_do_not_stop_real_sessions() -> Result<()> {
    if !peers(&["ssh", "sshd"])? {
        return Ok(());
    }
    let lab = lab(InstanceOptions::default(), true)?;
    let l = lab.sekisho.listen.clone();
    // A TPKT header and the start of an X.224 Connection Request, never finished.
    // RFB 3.8, VNC authentication, then the 16-byte response one byte a second.
    const VNC_PREFIX: &[u8] = b"RFB 003.008\n\x02";
    const RDP_PREFIX: &[u8] = b"\x03\x00\x00\x2b\x26\xe0\x00\x00\x00\x00\x00Cookie: mstshash=";
    let cases: Vec<(&str, SocketAddr, Stall, Duration)> = vec![
        ("ssh silent", l.ssh, Stall::Silent, SSH_AUTH_TIMEOUT),
        (
            "ssh slowloris",
            l.ssh,
            Stall::Dribble(b"SSH-2.0-slowloris"),
            SSH_AUTH_TIMEOUT,
        ),
        ("rdp silent", l.rdp, Stall::Silent, RDP_HANDSHAKE_TIMEOUT),
        (
            "rdp slowloris",
            l.rdp,
            Stall::Dribble(RDP_PREFIX),
            RDP_HANDSHAKE_TIMEOUT,
        ),
        ("vnc silent", l.vnc, Stall::Silent, VNC_HANDSHAKE_TIMEOUT),
        (
            "vnc slowloris",
            l.vnc,
            Stall::Dribble(VNC_PREFIX),
            VNC_HANDSHAKE_TIMEOUT,
        ),
    ];
    // Many of each at once, so the stalled ones are more than a rounding error.
    const EACH: usize = 20;
    let mut handles = Vec::new();
    for (name, addr, how, timeout) in cases.iter().cloned() {
        for _ in 0..EACH {
            handles.push((
                name,
                timeout,
                std::thread::spawn(move || {
                    faults::stall(addr, how, timeout * 2 + Duration::from_secs(5))
                }),
            ));
        }
    }
    // Meanwhile a real session is opened and used.
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    let mut s = lab.working_console()?;
    println!(
        "a console session opened and answered in {:.2} s with {} stalled connections",
        t0.elapsed().as_secs_f64(),
        handles.len()
    );
    let mut results: std::collections::BTreeMap<&str, Vec<Option<Duration>>> =
        std::collections::BTreeMap::new();
    let mut timeouts = std::collections::BTreeMap::new();
    for (name, timeout, h) in handles {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("a stalling client thread panicked"))??;
        results.entry(name).or_default().push(r);
        timeouts.insert(name, timeout);
    }
    prove_alive(&mut s, "STILL")?;
    let mut failures = Vec::new();
    for (name, rs) in &results {
        let timeout = timeouts.get(name).copied().unwrap_or_default();
        let closed: Vec<f64> = rs.iter().flatten().map(Duration::as_secs_f64).collect();
        let min = closed.iter().copied().fold(f64::INFINITY, f64::min);
        let max = closed.iter().copied().fold(0.0, f64::max);
        println!(
            "{name:<14}: configured {:>3} s; {}/{} closed, after {min:.1}–{max:.1} s",
            timeout.as_secs(),
            closed.len(),
            rs.len()
        );
        if closed.len() != rs.len() || max > (timeout * 2).as_secs_f64() {
            failures.push(format!(
                "{name}: {}/{} closed within 2 × {} s (slowest {max:.1} s)",
                closed.len(),
                rs.len(),
                timeout.as_secs()
            ));
        }
    }
    faults::assert_serving(&lab.sekisho)?;
    if !failures.is_empty() {
        bail!("stalled connections not closed in time: {failures:?}");
    }
    Ok(())
}

/// An SSH client that sends its id line just before the first timeout and then nothing is
/// closed too: `auth.preauth_timeout` runs from the TCP accept to a successful login.
#[test]
fn an_ssh_client_that_stops_after_its_id_line_is_closed() -> Result<()> {
    if !peers(&["ssh", "sshd"])? {
        return Ok(());
    }
    let lab = lab(InstanceOptions::default(), true)?;
    let how = Stall::Late {
        after: SSH_AUTH_TIMEOUT - Duration::from_secs(10),
        line: b"SSH-2.0-late\r\n",
    };
    let closed = faults::stall(lab.sekisho.listen.ssh, how, Duration::from_secs(300))?;
    println!("closed after: {closed:?} (configured {SSH_AUTH_TIMEOUT:?}; gave up after 300 s)");
    let closed = closed.context("still open after 300 s")?;
    assert!(closed <= SSH_AUTH_TIMEOUT * 2, "closed after {closed:?}");
    faults::assert_serving(&lab.sekisho)?;
    Ok(())
}

// ----- 5. a flood of garbage -----

/// Sends one key at a time and waits for its echo; returns the round trips.
fn keystroke_rtts(s: &mut Session, n: usize) -> Result<Vec<Duration>> {
    let mut rtts = Vec::with_capacity(n);
    for i in 0..n {
        let before = s.output().len();
        let key = [b'a' + (i % 26) as u8];
        let t0 = Instant::now();
        s.send(&key)?;
        let deadline = t0 + Duration::from_secs(10);
        while s.output().len() <= before {
            if Instant::now() > deadline {
                bail!("no echo for keystroke {i}");
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        rtts.push(t0.elapsed());
    }
    s.send(b"\x15")?; // ^U: drop the typed line
    Ok(rtts)
}

/// 10,000 connections of random bytes, closed at once, across the SSH, RDP and VNC listeners
/// from four threads, while a real console session keeps working. Keystroke round trips of the
/// session before and during the flood are printed, not asserted.
#[test]
fn ten_thousand_garbage_connections_while_a_real_session_keeps_working() -> Result<()> {
    if !peers(&["ssh", "sshd", "curl"])? {
        return Ok(());
    }
    let lab = lab(InstanceOptions::default(), true)?;
    let mut s = lab.working_console()?;
    let keys = 200;
    let mut before = keystroke_rtts(&mut s, keys)?;
    before.sort();

    const TOTAL: usize = 10_000;
    const THREADS: usize = 4;
    let l = lab.sekisho.listen.clone();
    let targets = [l.ssh, l.rdp, l.vnc];
    let t0 = Instant::now();
    let flood: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                let mut rng = Garbage::new(0x5eed_0000 + t as u64);
                let mut errors = 0usize;
                for i in 0..TOTAL / THREADS {
                    let addr = targets[(i + t) % targets.len()];
                    let len = 1 + (rng.next_u64() % 512) as usize;
                    if faults::spray(addr, &rng.bytes(len)).is_err() {
                        errors += 1;
                    }
                }
                errors
            })
        })
        .collect();
    // Keystrokes while the flood runs.
    let mut during = Vec::new();
    while !flood.iter().all(|h| h.is_finished()) {
        during.extend(keystroke_rtts(&mut s, 20)?);
    }
    let flood_time = t0.elapsed();
    let mut errors = 0;
    for h in flood {
        errors += h
            .join()
            .map_err(|_| anyhow::anyhow!("a flood thread panicked"))?;
    }
    during.sort();
    prove_alive(&mut s, "AFTER")?;
    println!(
        "{TOTAL} garbage connections in {:.1} s ({:.0}/s), {errors} refused or reset at the client",
        flood_time.as_secs_f64(),
        TOTAL as f64 / flood_time.as_secs_f64()
    );
    println!(
        "keystroke round trip before the flood: p50 {:.3} ms  p99 {:.3} ms  ({} keys)",
        faults::percentile_ms(&before, 0.5),
        faults::percentile_ms(&before, 0.99),
        before.len()
    );
    println!(
        "keystroke round trip during the flood: p50 {:.3} ms  p99 {:.3} ms  ({} keys)",
        faults::percentile_ms(&during, 0.5),
        faults::percentile_ms(&during, 0.99),
        during.len()
    );
    assert!(!during.is_empty(), "no keystroke measured during the flood");
    faults::assert_serving(&lab.sekisho)?;
    let (code, body) = faults::metrics(&lab.sekisho)?;
    assert_eq!(code, 200, "{body}");
    // A new session works after the flood too.
    exit_shell(&mut lab.working_console()?)?;
    exit_shell(&mut s)
}
