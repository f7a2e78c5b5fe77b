//! The RDP front door against real peers: xfreerdp 2 (asking for clipboard, drives, printers,
//! smart cards and USB) → `sekisho serve` → xrdp 0.9 (TLS, Xvnc session).
//!
//! xfreerdp cannot choose its source address: an iptables SNAT rule on loopback (for the
//! instance's RDP port only, removed at the end) makes its connections come from the VDI
//! desktop 127.0.10.11, so Sekisho sees the source exactly as in production.

#[path = "support/rdp_peers.rs"]
mod rdp_peers;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdp_peers::{LAB_PASS, LAB_USER, XRDP_PORT};

use crate::support::{InstanceOptions, SekishoInstance, require_peers};

const PEERS: &[&str] = &[
    "xrdp",
    "xrdp-sesman",
    "xfreerdp",
    "Xvfb",
    "Xvnc",
    "timeout",
    "iptables",
];

/// tanaka's Sekisho password (the hash below).
const TANAKA_PASS: &str = "change-me-now";

/// An inventory with tanaka on desktop 127.0.0.1 (access path `path`) and one target at xrdp.
fn inventory(path: &str, kind: &str, zone: &str, valid_until: &str) -> String {
    let other = if path == "ip-vpn" {
        "internet-vpn"
    } else {
        "ip-vpn"
    };
    let hypervisor = if kind == "vm" {
        "hypervisor = \"kvm01\"\nvnc_console = \"127.0.0.1:15901\"\n"
    } else {
        ""
    };
    format!(
        r#"timezone = "Asia/Tokyo"

[recording]
required = true

[[vdi_pool]]
name = "vdi-test"
path = "{path}"
networks = ["127.0.10.0/24"]

[[vdi_pool]]
name = "vdi-other"
path = "{other}"
networks = ["127.0.11.0/24"]

[zones]
business = ["internet-vpn", "ip-vpn"]
mynumber = ["ip-vpn"]

[[contractor]]
id = "acme"
name = "ACME Systems K.K."

[[user]]
name = "tanaka"
contractor = "acme"
role = "contractor"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$IvBzMLDZyFbDrkZ3n1bk7w$8NW46C5ZNmNfiHNU+fwLLsnh9hyP7iNV8iEC4MEm5fU"
desktops = ["127.0.10.11"]

[[hypervisor]]
name = "kvm01"
address = "127.0.0.1"

[[target]]
name = "srv01"
address = "127.0.0.1"
kind = "{kind}"
zone = "{zone}"
{hypervisor}rdp_port = {XRDP_PORT}
credential = "srv01-maint"

[[contract]]
contractor = "acme"
targets = ["srv01"]
valid_from = "2026-01-01"
valid_until = "{valid_until}"

[rdp]
allow_static_channels = ["rdpsnd", "drdynvc"]
deny_dynamic_channels = ["URBDRC", "RDCamera_Device_Enumerator", "FileRedirectorChannel", "Microsoft::Windows::RDS::Graphics"]
"#
    )
}

fn secrets() -> String {
    format!("[credential.srv01-maint]\nusername = \"{LAB_USER}\"\npassword = \"{LAB_PASS}\"\n")
}

/// A Sekisho instance whose RDP clients appear to come from the VDI desktop.
struct Vdi {
    instance: SekishoInstance,
    port: u16,
}

impl std::ops::Deref for Vdi {
    type Target = SekishoInstance;
    fn deref(&self) -> &SekishoInstance {
        &self.instance
    }
}

fn snat(op: &str, port: u16) -> Result<()> {
    let status = std::process::Command::new("iptables")
        .args([
            "-t",
            "nat",
            op,
            "POSTROUTING",
            "-p",
            "tcp",
            "-d",
            "127.0.0.1",
            "--dport",
        ])
        .arg(port.to_string())
        .args(["-j", "SNAT", "--to-source", DESKTOP])
        .status()?;
    anyhow::ensure!(status.success(), "iptables {op} failed");
    Ok(())
}

impl Drop for Vdi {
    fn drop(&mut self) {
        let _ = snat("-D", self.port);
    }
}

/// The VDI desktop address the tests connect from.
const DESKTOP: &str = "127.0.10.11";

fn start(path: &str, kind: &str, zone: &str, valid_until: &str) -> Result<Vdi> {
    let instance = SekishoInstance::start_with(
        &inventory(path, kind, zone, valid_until),
        InstanceOptions {
            secrets: Some(secrets()),
            ..InstanceOptions::default()
        },
    )?;
    let port = instance.listen.rdp.port();
    snat("-A", port)?;
    Ok(Vdi { instance, port })
}

fn peers() -> Result<bool> {
    if !require_peers(PEERS)? {
        return Ok(false);
    }
    rdp_peers::ensure_xrdp()?;
    Ok(true)
}

fn channels_added(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split("Adding channel: name ").nth(1))
        .filter_map(|rest| rest.split(',').next())
        .map(str::to_owned)
        .collect()
}

/// Asks the policy for a denied target: the client must fail fast, and the denial is listed.
fn assert_denied(instance: &SekishoInstance, rule: &str) -> Result<()> {
    let run = rdp_peers::xfreerdp(
        "127.0.0.1",
        instance.listen.rdp.port(),
        "tanaka",
        TANAKA_PASS,
        20,
        &["/pcb:srv01"],
    )?;
    assert!(!run.active(), "denied session became active");
    assert_ne!(run.code, Some(124), "client hung until the timeout");
    assert!(
        run.elapsed < Duration::from_secs(5),
        "denial took {:?}",
        run.elapsed
    );
    let denials = instance.denials()?;
    assert!(
        denials
            .iter()
            .any(|d| d["rule"] == rule && d["protocol"] == "rdp"),
        "no {rule} denial in {denials:?}"
    );
    Ok(())
}

#[test]
fn rdp_vdi_to_physical_is_relayed_without_clipboard_or_devices() -> Result<()> {
    if !peers()? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let instance = start("ip-vpn", "physical", "business", "2099-12-31")?;

    // Control: directly, xrdp is asked for cliprdr and rdpdr.
    let before = rdp_peers::xrdp_log_offset();
    let direct = rdp_peers::xfreerdp("127.0.0.1", XRDP_PORT, LAB_USER, LAB_PASS, 6, &[])?;
    assert!(
        direct.active(),
        "direct session did not come up:\n{}",
        direct.log
    );
    let direct_channels = channels_added(&rdp_peers::xrdp_log_since(before));
    assert!(
        direct_channels.iter().any(|c| c == "cliprdr"),
        "{direct_channels:?}"
    );
    assert!(
        direct_channels.iter().any(|c| c == "rdpdr"),
        "{direct_channels:?}"
    );

    // Through Sekisho, with the same requests.
    let before = rdp_peers::xrdp_log_offset();
    let run = rdp_peers::xfreerdp(
        "127.0.0.1",
        instance.listen.rdp.port(),
        "tanaka",
        TANAKA_PASS,
        8,
        &["/pcb:srv01"],
    )?;
    assert!(
        run.active(),
        "session through Sekisho did not come up:\n{}\n{}",
        run.log,
        instance.serve_log()
    );
    assert_eq!(
        run.code,
        Some(124),
        "client should still be connected at the timeout"
    );
    let xrdp_log = rdp_peers::xrdp_log_since(before);
    let channels = channels_added(&xrdp_log);
    assert_eq!(channels, ["rdpsnd", "drdynvc"], "xrdp log:\n{xrdp_log}");
    assert!(
        xrdp_log.contains(&format!("login successful for user {LAB_USER}")),
        "{xrdp_log}"
    );
    // The client asked for everything.
    for c in ["cliprdr", "rdpdr"] {
        assert!(
            run.log.contains(&format!("loading channelEx {c}")),
            "client did not ask for {c}"
        );
    }

    let sessions =
        instance.wait_until(Duration::from_secs(10), "the RDP session to end", || {
            Ok(instance
                .sessions()?
                .iter()
                .find(|s| s["protocol"] == "rdp" && !s["ended_at"].is_null())
                .cloned())
        })?;
    assert_eq!(sessions["target"], "srv01");
    assert_eq!(sessions["user"], "tanaka");
    assert!(
        sessions["recording"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    Ok(())
}

#[test]
fn rdp_sessions_kill_ends_the_session_promptly() -> Result<()> {
    if !peers()? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let vdi = start("ip-vpn", "physical", "business", "2099-12-31")?;
    let port = vdi.instance.listen.rdp.port();
    let client = std::thread::spawn(move || {
        rdp_peers::xfreerdp(
            "127.0.0.1",
            port,
            "tanaka",
            TANAKA_PASS,
            40,
            &["/pcb:srv01"],
        )
    });
    let live = vdi
        .instance
        .wait_until(Duration::from_secs(20), "a live RDP session", || {
            Ok(vdi
                .instance
                .sessions()?
                .into_iter()
                .find(|s| s["protocol"] == "rdp" && s["ended_at"].is_null()))
        })?;
    // Let the client reach the active state before the stop.
    std::thread::sleep(Duration::from_secs(4));
    let id = live["id"].as_str().context("session id")?.to_owned();
    let killed = Instant::now();
    let out = vdi.instance.cli(&["sessions", "kill", &id])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = client
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    let after_kill = killed.elapsed();
    assert!(run.active(), "the session never came up:\n{}", run.log);
    assert_ne!(
        run.code,
        Some(124),
        "the client stayed connected after the kill"
    );
    assert!(
        after_kill < Duration::from_secs(5),
        "the client ended {after_kill:?} after the kill"
    );
    let row = vdi
        .instance
        .sessions()?
        .into_iter()
        .find(|s| s["id"] == id.as_str());
    assert_eq!(row.context("session row")?["outcome"], "killed");
    Ok(())
}

#[test]
fn rdp_vdi_to_vm_is_denied_promptly() -> Result<()> {
    if !peers()? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let instance = start("ip-vpn", "vm", "business", "2099-12-31")?;
    assert_denied(&instance, "rdp.vdi-to-vm")
}

#[test]
fn rdp_internet_vpn_to_mynumber_is_denied() -> Result<()> {
    if !peers()? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let instance = start("internet-vpn", "physical", "mynumber", "2099-12-31")?;
    assert_denied(&instance, "zone.path")
}

#[test]
fn rdp_expired_contract_is_denied() -> Result<()> {
    if !peers()? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let instance = start("ip-vpn", "physical", "business", "2026-02-01")?;
    assert_denied(&instance, "contract.expired")
}

/// Sends `bytes` and expects the connection to be closed (EOF or reset) within 12 s (the
/// handshake timeout is 10 s), whatever Sekisho answered first.
fn closes_cleanly(addr: std::net::SocketAddr, bytes: &[u8], half_close: bool) -> Result<Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(12)))?;
    s.write_all(bytes)?;
    if half_close {
        s.shutdown(std::net::Shutdown::Write)?;
    }
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Ok(started.elapsed()),
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok(started.elapsed());
            }
            Err(e) => anyhow::bail!("connection not closed after {:?}: {e}", started.elapsed()),
        }
    }
}

#[test]
fn rdp_garbage_at_handshake_stages_closes_cleanly_and_others_are_unaffected() -> Result<()> {
    if !peers()? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let instance = start("ip-vpn", "physical", "business", "2099-12-31")?;
    let addr = instance.listen.rdp;
    // An X.224 Connection Request with a cookie, offering TLS (as FreeRDP sends it).
    let cookie = b"Cookie: mstshash=tanaka\r\n";
    let mut cr = vec![
        0x03, 0x00, 0x00, 0x00, 0x00, 0xe0, 0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    cr.extend_from_slice(cookie);
    cr.extend_from_slice(&[0x01, 0x00, 0x08, 0x00, 0x01, 0x00, 0x00, 0x00]);
    let len = u16::try_from(cr.len())?;
    cr[2..4].copy_from_slice(&len.to_be_bytes());
    cr[4] = u8::try_from(cr.len() - 5)?;

    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "random bytes",
            (0..200u8).map(|i| i.wrapping_mul(37)).collect(),
            true,
        ),
        ("truncated TPKT", cr[..7].to_vec(), true),
        (
            "huge preconnection PDU",
            vec![0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0],
            false,
        ),
        (
            "fast-path instead of X.224",
            vec![0x00, 0x05, 1, 2, 3],
            true,
        ),
        (
            "X.224 then garbage instead of TLS",
            [cr.clone(), vec![0x16, 0x03, 0x01, 0xff, 0xff, 0xde, 0xad]].concat(),
            true,
        ),
    ];
    // Meanwhile a real session runs and must be unaffected.
    let port = addr.port();
    let session = std::thread::spawn(move || {
        rdp_peers::xfreerdp("127.0.0.1", port, "tanaka", TANAKA_PASS, 8, &["/pcb:srv01"])
    });
    for (name, bytes, half_close) in cases {
        let took =
            closes_cleanly(addr, &bytes, half_close).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        assert!(took < Duration::from_secs(12), "{name}: took {took:?}");
    }
    let run = session
        .join()
        .map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    assert!(run.active(), "concurrent session broke:\n{}", run.log);
    assert_eq!(run.code, Some(124));
    Ok(())
}
