//! The RDP front door against a hostile contractor: the headless client bends its Client Info
//! PDU (shapes ironrdp refuses, a PDU cut short), gives a wrong password, or stays silent,
//! through `sekisho serve` to xrdp (TLS) and to freerdp-shadow-cli `/sec:nla`.
//!
//! Each target is reached through a counting TCP forwarder of the test's own: "nothing
//! reached the target" is the count of connections it accepted, not a guess. Sekisho must
//! refuse before it dials: every refusal is an `auth.failed` denial and the count stays 0,
//! whatever the PDU's shape, while the same shapes with the right password open a session.

use std::io::Read;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use e2e::rdp_client::{self, ClientInfoShape, ConnectOptions};

use crate::rdp::rdp_peers::{self, XRDP_PORT};
use crate::rdp_load::{DESKTOP, inventory, runtime};
use crate::ssh::ssh_peers;
use crate::support::inventory::{
    NT_HASH as TANAKA_NT_HASH, PASSWORD as TANAKA_PASS, card, with_card,
};
use crate::support::{InstanceOptions, SekishoInstance, require_peers};

/// A TCP forwarder in front of a real server that counts the connections it accepted.
struct CountingForwarder {
    port: u16,
    accepted: Arc<AtomicUsize>,
}

impl CountingForwarder {
    /// Listens on a free port of 127.0.0.1 and forwards every connection to `upstream`.
    fn start(upstream: u16) -> Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone(), server.try_clone()),
                    (server.try_clone(), client.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        Ok(Self { port, accepted })
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// One logon attempt of tanaka through Sekisho with `password`, `shape` and `nla`: whether a
/// session came up (first graphics update).
fn attempt(
    rt: &tokio::runtime::Runtime,
    instance: &SekishoInstance,
    password: &str,
    shape: ClientInfoShape,
    nla: bool,
) -> bool {
    rt.block_on(async {
        let mut o = ConnectOptions::new(instance.listen.rdp, "tanaka+srv01", password);
        o.source = Some(IpAddr::V4(DESKTOP));
        o.client_info = shape;
        o.nla = nla;
        o.timeout = Duration::from_secs(20);
        match rdp_client::connect(&o).await {
            Ok(s) => {
                let _ = s.disconnect().await;
                true
            }
            Err(_) => false,
        }
    })
}

fn auth_failed_count(instance: &SekishoInstance) -> Result<usize> {
    Ok(instance
        .denials()?
        .iter()
        .filter(|d| d["rule"] == "auth.failed" && d["protocol"] == "rdp")
        .count())
}

/// Every shape with a wrong password is refused before the target is dialled, and written;
/// a Client Info cut short is refused even with the right password; the lenient shapes with
/// the right password open a session.
fn hostile_logons_never_reach(
    upstream: u16,
    nt_hash: Option<&str>,
    client_nla: bool,
    what: &str,
) -> Result<()> {
    let forwarder = CountingForwarder::start(upstream)?;
    let instance = SekishoInstance::start_with(
        &inventory(&[("srv01", forwarder.port)], nt_hash),
        InstanceOptions {
            secrets: Some(rdp_peers::lab_secrets(&["srv01"])),
            ..InstanceOptions::default()
        },
    )?;
    let rt = runtime()?;
    let shapes = ClientInfoShape::ALL;
    for (i, (name, shape)) in shapes.iter().enumerate() {
        let opened = attempt(&rt, &instance, "not-the-password", *shape, client_nla);
        assert!(
            !opened,
            "{what}: a wrong password with shape {name} opened a session"
        );
        instance.wait_until(Duration::from_secs(10), "an auth.failed denial", || {
            Ok((auth_failed_count(&instance)? > i).then_some(()))
        })?;
        assert_eq!(
            forwarder.accepted(),
            0,
            "{what}: shape {name} with a wrong password reached the target:\n{}",
            instance.serve_log()
        );
    }
    if !client_nla {
        // Without NLA the Client Info is the logon: one cut short is refused whatever it
        // holds, and nothing reaches the target.
        let opened = attempt(
            &rt,
            &instance,
            TANAKA_PASS,
            ClientInfoShape::Truncated,
            false,
        );
        assert!(!opened, "{what}: a truncated Client Info opened a session");
        assert_eq!(
            forwarder.accepted(),
            0,
            "{what}: a truncated Client Info reached the target"
        );
        let denials = instance.denials()?;
        assert!(
            denials.iter().any(|d| d["rule"] == "auth.failed"
                && d["reason"]
                    .as_str()
                    .is_some_and(|r| r.contains("could not be read and checked"))),
            "{what}: no denial for the truncated Client Info in {denials:?}"
        );
    }
    // The right password with the shapes real clients may send: a session, through the
    // forwarder this time.
    for shape in [
        ClientInfoShape::Plain,
        ClientInfoShape::CompressionBits,
        ClientInfoShape::UnknownPerformanceFlag,
    ] {
        let before = forwarder.accepted();
        assert!(
            attempt(&rt, &instance, TANAKA_PASS, shape, client_nla),
            "{what}: the right password with {shape:?} was refused:\n{}",
            instance.serve_log()
        );
        assert_eq!(forwarder.accepted(), before + 1, "{what}: {shape:?}");
    }
    let log = instance.serve_log();
    for secret in [TANAKA_PASS, "not-the-password", rdp_peers::LAB_PASS] {
        assert!(!log.contains(secret), "{what}: a password in the log");
    }
    Ok(())
}

#[test]
fn rdp_hostile_client_info_to_xrdp_never_reaches_it() -> Result<()> {
    if !require_peers(&["xrdp", "xrdp-sesman", "Xvnc"])? {
        return Ok(());
    }
    rdp_peers::ensure_xrdp()?;
    let _serial = rdp_peers::serial();
    hostile_logons_never_reach(XRDP_PORT, None, false, "xrdp (TLS)")
}

#[test]
fn rdp_hostile_client_info_to_an_nla_server_never_reaches_it() -> Result<()> {
    if !require_peers(&["freerdp-shadow-cli", "winpr-hash", "Xvfb"])? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let work = tempfile::Builder::new()
        .prefix("sekisho-e2e-hostile-nla-")
        .tempdir()?;
    let (shadow, port) = rdp_peers::start_nla_shadow(&work.path().join("shadow"))?;
    // TLS on the contractor leg (tanaka has no NT hash): the password is in the Client Info,
    // and the server takes NLA, so Sekisho's CredSSP would log the session on if it dialled
    // before checking.
    hostile_logons_never_reach(port, None, false, "shadow /sec:nla, contractor TLS")
        .with_context(|| format!("server:\n{}", shadow.log()))?;
    // NLA on both legs: a wrong password fails in CredSSP, before the Client Info.
    hostile_logons_never_reach(
        port,
        Some(TANAKA_NT_HASH),
        true,
        "shadow /sec:nla, contractor NLA",
    )
    .with_context(|| format!("server:\n{}", shadow.log()))
}

/// A connection that says nothing, or stops after TLS, is closed at the pre-authentication
/// deadline without the target being dialled; a desktop holding its quota of silent
/// connections is refused more, while another desktop is still served.
#[test]
fn rdp_silent_connections_are_dropped_at_the_deadline_and_capped() -> Result<()> {
    if !require_peers(&["xrdp", "xrdp-sesman", "Xvnc"])? {
        return Ok(());
    }
    rdp_peers::ensure_xrdp()?;
    let _serial = rdp_peers::serial();
    let forwarder = CountingForwarder::start(XRDP_PORT)?;
    let deadline = Duration::from_secs(3);
    let instance = SekishoInstance::start_with(
        &format!(
            "{}\n[auth]\npreauth_timeout = \"{}s\"\n",
            inventory(&[("srv01", forwarder.port)], None),
            deadline.as_secs()
        ),
        InstanceOptions {
            secrets: Some(rdp_peers::lab_secrets(&["srv01"])),
            ..InstanceOptions::default()
        },
    )?;
    let addr = instance.listen.rdp;
    let from = |source: &str| -> Result<TcpStream> {
        let s = connect_from(source, addr)?;
        s.set_read_timeout(Some(deadline * 4))?;
        Ok(s)
    };

    // Silent from the first byte.
    let mut silent = from(&DESKTOP.to_string())?;
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = silent
        .read(&mut buf)
        .context("reading the silent connection")?;
    let waited = started.elapsed();
    assert_eq!(n, 0, "Sekisho answered a silent client");
    assert!(
        waited >= deadline - Duration::from_millis(200) && waited < deadline * 3,
        "a silent connection was closed after {waited:?}, the deadline is {deadline:?}"
    );
    rdp_peers::wait_denial(&instance, 10, "the silent connection's denial", |d| {
        d["rule"] == "auth.failed"
            && d["reason"]
                .as_str()
                .is_some_and(|r| r.contains("no logon within"))
    })?;
    assert_eq!(
        forwarder.accepted(),
        0,
        "a silent connection reached the target"
    );

    // Up to the quota of silent connections from one desktop; the next is closed at once.
    let held: Vec<TcpStream> = (0..proxy::preauth::MAX_PREAUTH_PER_SOURCE)
        .map(|_| from(&DESKTOP.to_string()))
        .collect::<Result<_>>()?;
    std::thread::sleep(Duration::from_millis(300));
    let mut over = from(&DESKTOP.to_string())?;
    over.set_read_timeout(Some(Duration::from_secs(2)))?;
    let started = Instant::now();
    let n = over
        .read(&mut buf)
        .context("reading the connection over quota")?;
    assert_eq!(
        n, 0,
        "a connection over the per-source quota was not closed"
    );
    assert!(
        started.elapsed() < deadline,
        "the connection over quota waited for the deadline"
    );
    assert_eq!(
        forwarder.accepted(),
        0,
        "a silent connection reached the target"
    );
    // Another desktop is still served.
    let rt = runtime()?;
    let other = std::net::Ipv4Addr::new(127, 0, 10, 12);
    let served = rt.block_on(async {
        let mut o = ConnectOptions::new(addr, "tanaka+srv01", TANAKA_PASS);
        o.source = Some(IpAddr::V4(other));
        rdp_client::connect(&o).await.map(|_| ())
    });
    // From .12 (in the pool, not tanaka's own desktop) the policy decides either way; what
    // matters is that it was decided, which needs a place at the door.
    let denials = instance.denials()?;
    assert!(
        served.is_ok()
            || denials
                .iter()
                .any(|d| d["source"] == other.to_string() && d["rule"] != "auth.failed"),
        "the second desktop was not served: {served:?} {denials:?}"
    );
    drop(held);
    Ok(())
}

/// A blocking TCP connection to `addr` from the loopback alias `source`.
fn connect_from(source: &str, addr: SocketAddr) -> Result<TcpStream> {
    let rt = runtime()?;
    let source: IpAddr = source.parse()?;
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(source, 0))?;
        socket.connect(addr).await
    })?;
    let stream = stream.into_std()?;
    // Tokio's sockets are non-blocking; the reads here wait.
    stream.set_nonblocking(false)?;
    Ok(stream)
}

/// A card user needs a fresh pass of the card (here at the SSH login, from the same desktop)
/// before RDP admits them; failed RDP logons count in the throttle every door shares, and
/// once it locks, the right password is refused like a wrong one, over RDP and over SSH.
#[test]
fn rdp_needs_a_fresh_card_pass_and_guessing_is_stopped() -> Result<()> {
    if !require_peers(&["xrdp", "xrdp-sesman", "Xvnc", "ssh"])? {
        return Ok(());
    }
    rdp_peers::ensure_xrdp()?;
    let _serial = rdp_peers::serial();
    let forwarder = CountingForwarder::start(XRDP_PORT)?;
    let card = card();
    let desktop = DESKTOP.to_string();
    let inventory = with_card(&inventory(&[("srv01", forwarder.port)], None), &desktop);
    assert!(inventory.contains("matrix_card"), "{inventory}");
    let instance = SekishoInstance::start_with(
        &format!("{inventory}\n[auth]\nmax_failures = 3\n"),
        InstanceOptions {
            secrets: Some(rdp_peers::lab_secrets(&["srv01"])),
            ..InstanceOptions::default()
        },
    )?;
    let rt = runtime()?;

    // The right password, but no card passed yet: refused before the target, and the reason
    // says where to pass the card.
    assert!(
        !attempt(&rt, &instance, TANAKA_PASS, ClientInfoShape::Plain, false),
        "RDP admitted a card user who had not passed the card"
    );
    let denial = rdp_peers::wait_denial(&instance, 10, "an auth.second-factor denial", |d| {
        d["rule"] == "auth.second-factor" && d["protocol"] == "rdp"
    })?;
    assert!(
        denial["reason"]
            .as_str()
            .is_some_and(|r| r.contains("web UI") && r.contains("ssh tanaka@bastion")),
        "{denial}"
    );
    assert_eq!(
        forwarder.accepted(),
        0,
        "the target was dialled without the card"
    );

    // The card passed at the SSH login from the same desktop: RDP is admitted.
    let dir = instance.path("card-pass");
    std::fs::create_dir_all(&dir)?;
    let askpass = ssh_peers::askpass(&dir, TANAKA_PASS, Some(&card))?;
    let mut ssh = ssh_peers::ssh_tt(&askpass, instance.listen.ssh.port(), &desktop, "tanaka")?;
    ssh.wait_for("Choose a target", Duration::from_secs(20))?;
    ssh.send(b"q\r")?;
    ssh.wait_exit(Duration::from_secs(10))?;
    assert!(
        attempt(&rt, &instance, TANAKA_PASS, ClientInfoShape::Plain, false),
        "RDP refused a card user who had just passed the card:\n{}",
        instance.serve_log()
    );
    assert_eq!(forwarder.accepted(), 1);

    // Guessing: three wrong passwords lock tanaka out of every door.
    for i in 0..3 {
        assert!(!attempt(
            &rt,
            &instance,
            "guess",
            ClientInfoShape::Plain,
            false
        ));
        instance.wait_until(Duration::from_secs(10), "an auth.failed denial", || {
            Ok((auth_failed_count(&instance)? > i).then_some(()))
        })?;
    }
    instance.wait_until(Duration::from_secs(10), "the lockout", || {
        Ok(instance
            .serve_log()
            .contains("Logons locked out after repeated failures")
            .then_some(()))
    })?;
    assert!(
        !attempt(&rt, &instance, TANAKA_PASS, ClientInfoShape::Plain, false),
        "the right password was admitted during the lockout"
    );
    assert_eq!(
        forwarder.accepted(),
        1,
        "a locked-out logon reached the target"
    );
    // The same lockout holds at the SSH door.
    let dir = instance.path("locked-ssh");
    std::fs::create_dir_all(&dir)?;
    let askpass = ssh_peers::askpass(&dir, TANAKA_PASS, Some(&card))?;
    let mut ssh = ssh_peers::ssh_tt(&askpass, instance.listen.ssh.port(), &desktop, "tanaka")?;
    let status = ssh.wait_exit(Duration::from_secs(20))?;
    assert_eq!(status.code(), Some(255), "{}", ssh.output());
    Ok(())
}
