//! The RDP front door against real peers: xfreerdp 2 (asking for clipboard, drives, printers,
//! smart cards and USB) → `sekisho serve` → xrdp 0.9 (TLS, Xvnc session).
//!
//! xfreerdp cannot choose its source address: an iptables SNAT rule on loopback (for the
//! instance's RDP port only, removed at the end) makes its connections come from the VDI
//! desktop 127.0.10.11, so Sekisho sees the source exactly as in production.

#[path = "support/rdp_peers.rs"]
pub(crate) mod rdp_peers;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdp_peers::{Background, ClientRun, LAB_PASS, LAB_USER, XRDP_PORT};

use crate::ssh::ssh_peers;
use crate::support::inventory::{
    Inventory, NT_HASH as TANAKA_NT_HASH, PASSWORD as TANAKA_PASS, Target,
};
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

/// tanaka (with an NT hash for NLA if told) on the VDI desktop, in the pool on access path
/// `path` (a second pool is on the other path), hypervisor kvm01, and the seed's channel lists;
/// the targets are the caller's.
fn lab(path: &str, tanaka_nt_hash: Option<&str>) -> Inventory {
    let other = if path == "ip-vpn" {
        "internet-vpn"
    } else {
        "ip-vpn"
    };
    let inventory = Inventory::new()
        .pool("vdi-test", path, "127.0.10.0/24")
        .pool("vdi-other", other, "127.0.11.0/24")
        .zone("business", &["internet-vpn", "ip-vpn"])
        .zone("mynumber", &["ip-vpn"]);
    match tanaka_nt_hash {
        Some(h) => inventory.user_with_nt_hash("tanaka", DESKTOP, h),
        None => inventory.user("tanaka", DESKTOP),
    }
    .hypervisor()
    .deny_dynamic(&[
        "URBDRC",
        "RDCamera_Device_Enumerator",
        "FileRedirectorChannel",
        "Microsoft::Windows::RDS::Graphics",
    ])
}

/// srv01 of `kind` in `zone` at 127.0.0.1:`port`, logged on to with srv01-maint.
fn srv01(kind: &'static str, zone: &str, port: u16) -> Target {
    let srv01 = Target::new("srv01", "127.0.0.1", kind, zone);
    let srv01 = if kind == "vm" {
        srv01.vnc_console("127.0.0.1:15901")
    } else {
        srv01
    };
    srv01.rdp_port(port).credential()
}

/// tanaka's inventory with srv01 at xrdp under a contract valid until `valid_until`.
fn inventory(path: &str, kind: &'static str, zone: &str, valid_until: &str) -> String {
    lab(path, None)
        .target(srv01(kind, zone, XRDP_PORT))
        .valid_until(valid_until)
        .render()
}

fn secrets() -> String {
    rdp_peers::lab_secrets(&["srv01"])
}

/// A Sekisho instance whose RDP clients appear to come from the VDI desktop.
struct Vdi {
    // Before the instance: the rule goes first.
    _snat: rdp_peers::Snat,
    instance: SekishoInstance,
    port: u16,
}

impl std::ops::Deref for Vdi {
    type Target = SekishoInstance;
    fn deref(&self) -> &SekishoInstance {
        &self.instance
    }
}

/// The VDI desktop address the tests connect from.
const DESKTOP: &str = "127.0.10.11";

fn start(path: &str, kind: &'static str, zone: &str, valid_until: &str) -> Result<Vdi> {
    start_from(&inventory(path, kind, zone, valid_until), DESKTOP)
}

/// Starts Sekisho with `inventory`; its RDP clients appear to come from `source`.
fn start_from(inventory: &str, source: &'static str) -> Result<Vdi> {
    start_with_secrets(inventory, &secrets(), source)
}

/// Starts Sekisho with `inventory` and the secrets file `secrets`; its RDP clients appear to
/// come from `source`.
fn start_with_secrets(inventory: &str, secrets: &str, source: &'static str) -> Result<Vdi> {
    let instance = SekishoInstance::start_with(
        inventory,
        InstanceOptions {
            secrets: Some(secrets.to_owned()),
            ..InstanceOptions::default()
        },
    )?;
    let port = instance.listen.rdp.port();
    Ok(Vdi {
        _snat: rdp_peers::Snat::add(port, source)?,
        instance,
        port,
    })
}

/// tanaka's xfreerdp to srv01 through Sekisho's RDP `port`, for at most `seconds`.
fn tanaka(port: u16, seconds: u32, extra: &[&str]) -> Result<ClientRun> {
    let args = [&["/pcb:srv01"][..], extra].concat();
    rdp_peers::xfreerdp("127.0.0.1", port, "tanaka", TANAKA_PASS, seconds, &args)
}

/// [`tanaka`] on a thread of its own.
fn tanaka_background(port: u16, seconds: u32) -> Background {
    Background::spawn(port, "tanaka", TANAKA_PASS, seconds, &["/pcb:srv01"])
}

/// `sessions kill ID`, which must succeed.
fn kill_session(instance: &SekishoInstance, id: &str) -> Result<()> {
    let out = instance.cli(&["sessions", "kill", id])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
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

/// Asks the policy for a denied target: the client is refused (not left to time out), and the
/// denial is listed.
fn assert_denied(instance: &SekishoInstance, rule: &str) -> Result<()> {
    let run = tanaka(instance.listen.rdp.port(), 20, &[])?;
    run.assert_refused("denied session became active");
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
    let run = tanaka(instance.listen.rdp.port(), 8, &[])?;
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

    let sessions = rdp_peers::ended_session(&instance, "the RDP session to end")?;
    assert_eq!(sessions["target"], "srv01");
    assert_eq!(sessions["user"], "tanaka");
    assert!(
        sessions["recording"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    Ok(())
}

/// tanaka's xfreerdp (at most 40 s) through `vdi`, once its session is live and the client has
/// had time to reach the active state; returns the client and the session id.
fn active_tanaka_session(vdi: &Vdi) -> Result<(Background, String)> {
    let client = tanaka_background(vdi.instance.listen.rdp.port(), 40);
    let live = rdp_peers::live_session(vdi, "a live RDP session")?;
    std::thread::sleep(Duration::from_secs(4));
    let id = live
        .get("id")
        .and_then(|v| v.as_str())
        .context("session id")?
        .to_owned();
    Ok((client, id))
}

/// How soon an RDP client must be gone after an emergency stop (or a reload that revokes its
/// session): the stop itself ([`crate::support::EMERGENCY_STOP`]), then the Disconnect Provider
/// Ultimatum and up to 1 s per leg that Sekisho waits for each leg to close.
const RDP_STOPPED_WITHIN: Duration =
    Duration::from_secs(crate::support::EMERGENCY_STOP.as_secs() + 2);

#[test]
fn rdp_sessions_kill_ends_the_session_promptly() -> Result<()> {
    if !peers()? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let vdi = start("ip-vpn", "physical", "business", "2099-12-31")?;
    let (client, id) = active_tanaka_session(&vdi)?;
    let killed = Instant::now();
    kill_session(&vdi, &id)?;
    let run = client.join()?;
    let after_kill = killed.elapsed();
    assert!(run.active(), "the session never came up:\n{}", run.log);
    assert_ne!(
        run.code,
        Some(124),
        "the client stayed connected after the kill"
    );
    assert!(
        after_kill < RDP_STOPPED_WITHIN,
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
fn rdp_sighup_revokes_the_live_session_of_a_removed_user() -> Result<()> {
    if !peers()? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let vdi = start("ip-vpn", "physical", "business", "2099-12-31")?;
    let (client, id) = active_tanaka_session(&vdi)?;
    // tanaka is no longer in the inventory (renamed away, desktop and all).
    let text = std::fs::read_to_string(&vdi.config)?;
    let without = text.replacen("name = \"tanaka\"", "name = \"tanaka-left\"", 1);
    assert_ne!(text, without);
    std::fs::write(&vdi.config, without)?;
    let hup = chrono::Utc::now();
    let reloaded = Instant::now();
    vdi.reload()?;
    let run = client.join()?;
    let after = reloaded.elapsed();
    assert!(run.active(), "the session never came up:\n{}", run.log);
    assert_ne!(
        run.code,
        Some(124),
        "the client stayed connected after the reload"
    );
    assert!(
        after < RDP_STOPPED_WITHIN,
        "the client ended {after:?} after the reload"
    );
    let row = rdp_peers::ended_session(&vdi, "the revoked RDP session")?;
    assert_eq!(row["id"], id.as_str());
    assert_eq!(row["outcome"], "revoked", "{row}");
    let ended: chrono::DateTime<chrono::Utc> =
        row["ended_at"].as_str().context("ended_at")?.parse()?;
    let delay = ended - hup;
    assert!(
        delay < chrono::Duration::seconds(1),
        "the session ended {delay} after the SIGHUP"
    );
    let events = crate::support::faults::session_events(&vdi, &id)?;
    assert!(
        events.iter().any(|(kind, detail)| kind == "revoked"
            && (detail.starts_with("source.desktop-mismatch: ")
                || detail.starts_with("user.unknown: "))),
        "{events:?}"
    );
    Ok(())
}

/// [`start`] with these arguments, then [`assert_denied`] with `rule`.
fn start_and_assert_denied(
    path: &str,
    kind: &'static str,
    zone: &str,
    valid_until: &str,
    rule: &str,
) -> Result<()> {
    if !peers()? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let instance = start(path, kind, zone, valid_until)?;
    assert_denied(&instance, rule)
}

#[test]
fn rdp_vdi_to_vm_is_denied_promptly() -> Result<()> {
    start_and_assert_denied("ip-vpn", "vm", "business", "2099-12-31", "rdp.vdi-to-vm")
}

#[test]
fn rdp_internet_vpn_to_mynumber_is_denied() -> Result<()> {
    start_and_assert_denied(
        "internet-vpn",
        "physical",
        "mynumber",
        "2099-12-31",
        "zone.path",
    )
}

#[test]
fn rdp_expired_contract_is_denied() -> Result<()> {
    start_and_assert_denied(
        "ip-vpn",
        "physical",
        "business",
        "2026-02-01",
        "contract.expired",
    )
}

/// How long a client waits for Sekisho to close a connection it sent garbage: a third of the
/// pre-authentication deadline (`auth.preauth_timeout`, 30 s in these labs). A connection that
/// is only closed when the deadline runs out fails, so the refusal must come from Sekisho
/// reading the garbage, not from the timer.
const GARBAGE_CLOSE_WITHIN: Duration = Duration::from_secs(10);

/// Sends `bytes` (then half-closes, if `half_close`) and expects Sekisho to close the
/// connection (EOF or reset) within [`GARBAGE_CLOSE_WITHIN`], whatever it answered first.
fn closes_cleanly(addr: std::net::SocketAddr, bytes: &[u8], half_close: bool) -> Result<Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(GARBAGE_CLOSE_WITHIN))?;
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
            Err(e) => anyhow::bail!(
                "connection not closed after {:?} (the pre-authentication deadline is 30 s): {e}",
                started.elapsed()
            ),
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

    // (name, bytes, half-close): only the truncated frame is followed by the client's EOF
    // (Sekisho must not wait for the rest of a frame that cannot come); every other case is
    // left open, so only Sekisho's own refusal of the bytes closes it in time.
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "random bytes",
            (0..200u8).map(|i| i.wrapping_mul(37)).collect(),
            false,
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
            false,
        ),
        (
            "X.224 then garbage instead of TLS",
            [cr.clone(), vec![0x16, 0x03, 0x01, 0xff, 0xff, 0xde, 0xad]].concat(),
            false,
        ),
    ];
    // Meanwhile a real session runs and must be unaffected.
    let port = addr.port();
    let session = tanaka_background(port, 8);
    for (name, bytes, half_close) in cases {
        let took =
            closes_cleanly(addr, &bytes, half_close).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        println!("{name}: closed after {took:?}");
    }
    let run = session.join()?;
    assert!(run.active(), "concurrent session broke:\n{}", run.log);
    assert_eq!(run.code, Some(124));
    Ok(())
}

/// The address of jump01, a VM whose serial console tanaka opens through Sekisho and from
/// which the hop RDP connections come.
const JUMP01: &str = "127.0.20.5";

/// The standard inventory plus jump01 (a VM reached by its serial console on QEMU at
/// `serial`), covered by tanaka's contract.
fn hop_inventory(serial: u16) -> String {
    lab("ip-vpn", None)
        .target(srv01("physical", "business", XRDP_PORT))
        .target(
            Target::new("jump01", JUMP01, "vm", "business")
                .serial_console(&format!("127.0.0.1:{serial}")),
        )
        .render()
}

/// The recording file of session `row` (a relative path is under the instance).
fn recording_file(instance: &SekishoInstance, row: &serde_json::Value) -> Result<Vec<u8>> {
    let path = ssh_peers::recording_path(instance, row)?;
    std::fs::read(&path).with_context(|| format!("read {}", path.display()))
}

/// Records of kind Event in the recording of session `row`: their details.
fn recording_events(instance: &SekishoInstance, row: &serde_json::Value) -> Result<Vec<String>> {
    use recorder::format::RecordKind;
    let bytes = recording_file(instance, row)?;
    let parsed = recorder::reader::Recording::parse(&bytes)?;
    let mut events = Vec::new();
    for r in parsed.records() {
        if let RecordKind::Event(e) = r?.kind {
            events.push(e.detail);
        }
    }
    Ok(events)
}

/// The header metadata of the recording of session `row`.
pub(crate) fn recording_metadata(
    instance: &SekishoInstance,
    row: &serde_json::Value,
) -> Result<std::collections::BTreeMap<String, String>> {
    let bytes = recording_file(instance, row)?;
    let parsed = recorder::reader::Recording::parse(&bytes)?;
    Ok(parsed.header().header.metadata.clone())
}

/// The catalogue's decisions with `rule` (allowed ones too, which `denials list` leaves out).
fn decisions_with_rule(
    instance: &SekishoInstance,
    rule: &str,
) -> Result<Vec<recorder::catalogue::DecisionRow>> {
    let url = format!("sqlite://{}", instance.path("data/sekisho.db").display());
    let filter = recorder::catalogue::DecisionFilter {
        rule: Some(rule.to_owned()),
        ..Default::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let catalogue = recorder::catalogue::Catalogue::connect(&url).await?;
        let rows = catalogue.list_decisions(&filter).await?;
        catalogue.close().await;
        Ok(rows)
    })
}

#[test]
fn rdp_hop_from_a_live_console_is_allowed_linked_and_ends_with_the_console() -> Result<()> {
    if !peers()? || !require_peers(&["ssh", "qemu-system-x86_64"])? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let qemu = ssh_peers::start_qemu_serial()?;
    let vdi = start_from(&hop_inventory(qemu.port), JUMP01)?;
    let port = vdi.instance.listen.rdp.port();

    // No console on jump01 yet: an RDP connection from its address is a hop without console.
    assert_denied(&vdi, "rdp.hop-no-console")?;

    // tanaka opens jump01's serial console from the VDI desktop.
    let askpass = ssh_peers::askpass(vdi.instance.dir.path(), TANAKA_PASS, None)?;
    let console_client = ssh_peers::ssh_tt(
        &askpass,
        vdi.instance.listen.ssh.port(),
        DESKTOP,
        "tanaka+jump01",
    )?;
    console_client.wait_for("SeaBIOS", Duration::from_secs(20))?;
    let console = rdp_peers::wait_session(&vdi, 10, "a live console on jump01", |s| {
        s["target"] == "jump01" && s["ended_at"].is_null()
    })?;
    assert_eq!(console["protocol"], "console-serial");
    let console_id = console["id"].as_str().context("console id")?.to_owned();

    // Now the same RDP connection from jump01 is a hop, linked to the console.
    let client = tanaka_background(port, 40);
    let hop = rdp_peers::live_session(&vdi, "a live hop RDP session")?;
    assert_eq!(hop["source"], JUMP01, "{hop}");
    assert_eq!(hop["target"], "srv01", "{hop}");
    assert_eq!(hop["console_session"], console_id.as_str(), "{hop}");
    let hop_id = hop["id"].as_str().context("hop id")?.to_owned();
    let allowed = decisions_with_rule(&vdi.instance, "rdp.hop-from-console")?;
    assert!(
        allowed
            .iter()
            .any(|d| d.source.to_string() == JUMP01 && d.target.as_deref() == Some("srv01")),
        "no rdp.hop-from-console decision: {allowed:?}"
    );
    // Let the client reach the active state before the console goes.
    std::thread::sleep(Duration::from_secs(4));

    // Security staff end the console: the hop ends with it.
    kill_session(&vdi, &console_id)?;
    let killed = Instant::now();
    let run = client.join()?;
    let after_kill = killed.elapsed();
    assert!(
        run.active(),
        "the hop never came up:\n{}\n{}",
        run.log,
        vdi.instance.serve_log()
    );
    assert_ne!(
        run.code,
        Some(124),
        "the hop stayed connected after its console ended"
    );
    assert!(
        after_kill < RDP_STOPPED_WITHIN,
        "the hop ended {after_kill:?} after the console was killed"
    );
    let rows = vdi.instance.sessions()?;
    let console_row = rows
        .iter()
        .find(|s| s["id"] == console_id.as_str())
        .context("console row")?;
    assert_eq!(console_row["outcome"], "killed", "{console_row}");
    let hop_row = rdp_peers::wait_session(&vdi, 10, "the hop row to close", |s| {
        s["id"] == hop_id.as_str() && !s["ended_at"].is_null()
    })?;
    assert_eq!(hop_row["console_session"], console_id.as_str());
    // The recording says which console the hop rode on and why it ended.
    let meta = recording_metadata(&vdi.instance, &hop_row)?;
    assert_eq!(
        meta.get("console_session").map(String::as_str),
        Some(console_id.as_str())
    );
    let events = recording_events(&vdi.instance, &hop_row)?;
    assert!(
        events
            .iter()
            .any(|e| e.contains("console session it came from has ended")),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("rdp.hop-console-ended")),
        "{events:?}"
    );
    drop(console_client);
    drop(qemu);
    Ok(())
}

#[test]
fn rdp_server_certificate_is_pinned_on_first_use_and_a_change_is_denied() -> Result<()> {
    if !require_peers(&[
        "freerdp-shadow-cli",
        "xfreerdp",
        "Xvfb",
        "timeout",
        "iptables",
    ])? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let work = tempfile::Builder::new()
        .prefix("sekisho-e2e-shadow-")
        .tempdir()?;
    let port = crate::support::free_port("127.0.0.1")?;
    let shadow = rdp_peers::start_shadow(&work.path().join("a"), port, &["/sec:tls", "-auth"])?;
    let inventory = lab("ip-vpn", None)
        .target(srv01("physical", "business", port))
        .render();
    let vdi = start_from(&inventory, DESKTOP)?;
    let rdp = vdi.instance.listen.rdp.port();

    // First use: the certificate is pinned, and that is recorded.
    let run = tanaka(rdp, 6, &[])?;
    let first = rdp_peers::ended_session(&vdi, "the first session to end")?;
    let events = recording_events(&vdi.instance, &first)?;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("rdp.server-cert-pinned") && e.contains("srv01")),
        "no pin event in {events:?}\nclient:\n{}\nserve:\n{}",
        run.log,
        vdi.instance.serve_log()
    );
    let pins = vdi.instance.pins()?;
    assert_eq!(pins.len(), 1, "{pins:?}");
    assert_eq!(pins[0]["kind"], "rdp-certificate");
    assert_eq!(pins[0]["target"], "srv01");
    let endpoint = format!("127.0.0.1:{port}");
    assert_eq!(pins[0]["endpoint"], endpoint.as_str());

    // The server comes back with another certificate: refused before any RDP byte.
    drop(shadow);
    let _shadow = rdp_peers::start_shadow(&work.path().join("b"), port, &["/sec:tls", "-auth"])?;
    let run = tanaka(rdp, 20, &[])?;
    assert!(!run.active(), "a session to the changed server came up");
    assert_ne!(run.code, Some(124), "client hung until the timeout");
    let denial = rdp_peers::wait_denial(&vdi, 10, "an rdp.server-cert-changed denial", |d| {
        d["rule"] == "rdp.server-cert-changed"
    })?;
    assert_eq!(denial["target"], "srv01", "{denial}");
    assert_eq!(denial["user"], "tanaka", "{denial}");
    // The pin is kept: a changed certificate never replaces it silently.
    assert_eq!(vdi.instance.pins()?, pins);

    // Forgotten by an administrator: the next session pins the new certificate and runs.
    let out = vdi
        .instance
        .cli(&["pins", "forget", "--kind", "rdp-certificate", &endpoint])?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = tanaka(rdp, 6, &[])?;
    assert!(
        run.active(),
        "no session after the pin was forgotten:\n{}",
        run.log
    );
    let repinned = vdi.instance.pins()?;
    assert_eq!(repinned.len(), 1, "{repinned:?}");
    assert_ne!(repinned[0]["fingerprint"], pins[0]["fingerprint"]);
    Ok(())
}

/// Every relayed byte of the recording of session `row`, both directions.
pub(crate) fn recorded_bytes(
    instance: &SekishoInstance,
    row: &serde_json::Value,
) -> Result<Vec<u8>> {
    use recorder::format::RecordKind;
    let bytes = recording_file(instance, row)?;
    let parsed = recorder::reader::Recording::parse(&bytes)?;
    let mut out = Vec::new();
    for r in parsed.records() {
        if let RecordKind::Data { bytes, .. } = r?.kind {
            out.extend_from_slice(&bytes);
        }
    }
    Ok(out)
}

#[test]
fn rdp_nla_on_the_contractor_leg_checks_the_nt_hash() -> Result<()> {
    if !peers()? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let inventory = lab("ip-vpn", Some(TANAKA_NT_HASH))
        .target(srv01("physical", "business", XRDP_PORT))
        .render();
    let vdi = start_from(&inventory, DESKTOP)?;
    let port = vdi.instance.listen.rdp.port();

    // The right password over NLA: the server leg (TLS, credentials injected) logs in.
    let before = rdp_peers::xrdp_log_offset();
    let run = tanaka(port, 8, &["/sec:nla"])?;
    assert!(
        run.active(),
        "NLA session did not come up:\n{}\n{}",
        run.log,
        vdi.instance.serve_log()
    );
    assert_eq!(run.code, Some(124), "client should still be connected");
    let xrdp_log = rdp_peers::xrdp_log_since(before);
    assert!(
        xrdp_log.contains(&format!("login successful for user {LAB_USER}")),
        "{xrdp_log}"
    );
    let row = rdp_peers::ended_session(&vdi, "the NLA session to end")?;
    // No CredSSP byte (NTLM messages start with "NTLMSSP\0") is in the recording.
    let recorded = recorded_bytes(&vdi.instance, &row)?;
    assert!(!recorded.is_empty());
    assert!(
        !recorded.windows(8).any(|w| w == b"NTLMSSP\0"),
        "CredSSP bytes in the recording"
    );
    assert!(
        !vdi.instance.serve_log().contains("NTLMSSP"),
        "CredSSP in the log"
    );

    // A wrong password: a clean, prompt failure, auth.failed in the catalogue, no session.
    let run = rdp_peers::xfreerdp(
        "127.0.0.1",
        port,
        "tanaka",
        "not-the-password",
        20,
        &["/pcb:srv01", "/sec:nla"],
    )?;
    run.assert_refused("a wrong password reached a session");
    let denial = rdp_peers::wait_denial(&vdi, 10, "an auth.failed denial", |d| {
        d["rule"] == "auth.failed" && d["protocol"] == "rdp"
    })?;
    assert_eq!(denial["user"], "tanaka", "{denial}");
    let rdp_sessions = vdi
        .instance
        .sessions()?
        .into_iter()
        .filter(|s| s["protocol"] == "rdp")
        .count();
    assert_eq!(rdp_sessions, 1, "the refused logon opened a session");
    Ok(())
}

/// Every PNG pixel of `path` (RGB or RGBA), to tell a picture from a blank screen.
fn png_distinct_colours(path: &std::path::Path) -> Result<usize> {
    let out = std::process::Command::new("convert")
        .arg(path)
        .args(["-format", "%k", "info:"])
        .output()
        .context("cannot run convert")?;
    anyhow::ensure!(
        out.status.success(),
        "convert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// NLA on the server leg: freerdp-shadow-cli with `/sec:nla` and a SAM file holding only the
/// injected account. xfreerdp logs on to Sekisho as tanaka (TLS, Client Info checked against
/// the Sekisho account); Sekisho logs on to the server over CredSSP with the credential from
/// the secrets file. A second target with a wrong password in the secrets is refused promptly
/// with a catalogue event naming it.
#[test]
fn rdp_server_leg_nla_injects_the_secret_credentials() -> Result<()> {
    if !require_peers(&[
        "freerdp-shadow-cli",
        "winpr-hash",
        "xfreerdp",
        "Xvfb",
        "timeout",
        "iptables",
        "convert",
    ])? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let work = tempfile::Builder::new()
        .prefix("sekisho-e2e-shadow-nla-")
        .tempdir()?;
    let (shadow, port) = rdp_peers::start_nla_shadow(&work.path().join("shadow"))?;
    const WRONG_PASS: &str = "Not-The-Server-Password-7";
    // tanaka has an nt_hash, so the contractor leg can be TLS (/sec:tls) or NLA (/sec:nla).
    let inventory = lab("ip-vpn", Some(TANAKA_NT_HASH))
        .target(srv01("physical", "business", port))
        .render();
    let vdi = start_from(&inventory, DESKTOP)?;
    let rdp = vdi.port;

    // The session comes up and stays up; the contractor never typed the server's password.
    let run = tanaka(rdp, 8, &["/sec:tls"])?;
    assert!(
        run.active(),
        "session over server-leg NLA did not come up:\n{}\nserver:\n{}\nserve:\n{}",
        run.log,
        shadow.log(),
        vdi.instance.serve_log()
    );
    assert_eq!(run.code, Some(124), "client should still be connected");

    // The server's side: an NLA logon of the injected account.
    shadow.assert_nla_logon(0);

    let row = rdp_peers::ended_session(&vdi, "the session to end")?;
    let meta = recording_metadata(&vdi.instance, &row)?;
    assert_eq!(
        meta.get("rdp.server_selected_protocol").map(String::as_str),
        Some("0x2"),
        "{meta:?}"
    );
    // Neither the server's password (UTF-8 or UTF-16, as the Client Info carries it) nor any
    // CredSSP byte is in the recording or the log.
    let recorded = recorded_bytes(&vdi.instance, &row)?;
    assert!(!recorded.is_empty());
    let utf16: Vec<u8> = LAB_PASS.encode_utf16().flat_map(u16::to_le_bytes).collect();
    for needle in [LAB_PASS.as_bytes(), &utf16, b"NTLMSSP\0"] {
        assert!(
            !recorded.windows(needle.len()).any(|w| w == needle),
            "{:?} in the recording",
            String::from_utf8_lossy(needle)
        );
    }
    let serve_log = vdi.instance.serve_log();
    assert!(!serve_log.contains(LAB_PASS), "the password is in the log");
    assert!(!serve_log.contains("NTLMSSP"), "CredSSP in the log");
    // The recording holds the server's graphics: the player's frame is a picture.
    let rec = vdi
        .instance
        .path(row["recording"].as_str().context("no recording")?);
    let png = work.path().join("frame.png");
    crate::player::export(&vdi, &rec, "png", None, &png)?;
    let colours = png_distinct_colours(&png)?;
    assert!(
        colours > 1,
        "the exported frame is blank ({colours} colour)"
    );

    // NLA on both legs: CredSSP as server toward xfreerdp, as client toward the target; still
    // no CredSSP byte or password in the recording.
    let run = tanaka(rdp, 8, &["/sec:nla"])?;
    assert!(
        run.active(),
        "NLA on both legs did not come up:\n{}\nserve:\n{}",
        run.log,
        vdi.instance.serve_log()
    );
    assert_eq!(run.code, Some(124), "client should still be connected");
    let second = rdp_peers::wait_session(&vdi, 10, "the second session to end", |s| {
        s["protocol"] == "rdp" && !s["ended_at"].is_null() && s["id"] != row["id"]
    })?;
    let recorded = recorded_bytes(&vdi.instance, &second)?;
    assert!(!recorded.is_empty());
    for needle in [LAB_PASS.as_bytes(), &utf16, b"NTLMSSP\0"] {
        assert!(
            !recorded.windows(needle.len()).any(|w| w == needle),
            "{:?} in the recording",
            String::from_utf8_lossy(needle)
        );
    }

    // A wrong server password in the secrets (a stale credential): a prompt, clean failure
    // and a catalogue event.
    drop(vdi);
    let vdi = start_with_secrets(
        &inventory,
        &format!(
            "[credential.srv01-maint]\nusername = \"{LAB_USER}\"\npassword = \"{WRONG_PASS}\"\n"
        ),
        DESKTOP,
    )?;
    let rdp = vdi.port;
    let run = tanaka(rdp, 20, &[])?;
    run.assert_refused("a refused server logon reached a session");
    let denial = rdp_peers::wait_denial(&vdi, 10, "a denial for the refused credentials", |d| {
        d["target"] == "srv01" && d["protocol"] == "rdp"
    })?;
    assert_eq!(denial["rule"], "credential.refused", "{denial}");
    assert_eq!(denial["user"], "tanaka", "{denial}");
    assert!(
        denial["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("the server refused the injected credentials"),
        "{denial}"
    );
    let serve_log = vdi.instance.serve_log();
    assert!(
        serve_log.lines().any(
            |l| l.contains("the server refused the injected credentials") && l.contains("srv01")
        ),
        "{serve_log}"
    );
    assert!(
        !serve_log.contains(WRONG_PASS),
        "the password is in the log"
    );
    let sessions = vdi
        .instance
        .sessions()?
        .into_iter()
        .filter(|s| s["protocol"] == "rdp")
        .count();
    assert_eq!(sessions, 0, "the refused server logon opened a session");
    drop(shadow);
    Ok(())
}

/// The catalogue's typed-text hits for `text` in `instance` (the index is written in the
/// background once a session has ended).
fn typed_hits(
    runtime: &tokio::runtime::Runtime,
    instance: &SekishoInstance,
    text: &str,
) -> Result<Vec<recorder::catalogue::TypedTextHit>> {
    let url = format!("sqlite://{}", instance.path("data/sekisho.db").display());
    runtime.block_on(async {
        let catalogue = recorder::catalogue::Catalogue::connect(&url).await?;
        let hits = catalogue
            .search_typed_text(&recorder::catalogue::TypedTextQuery {
                text: text.to_lowercase(),
                user: None,
                target: None,
                session: None,
                limit: 10,
            })
            .await?;
        catalogue.close().await;
        anyhow::Ok(hits)
    })
}

/// The headless client as tanaka from the VDI desktop through `instance` to srv01: types
/// `echo WORDx`, Backspace, Enter, and leaves.
fn type_on_srv01(
    runtime: &tokio::runtime::Runtime,
    instance: &SekishoInstance,
    word: &str,
) -> Result<()> {
    runtime.block_on(async {
        let mut o =
            e2e::rdp_client::ConnectOptions::new(instance.listen.rdp, "tanaka+srv01", TANAKA_PASS);
        o.source = Some(DESKTOP.parse()?);
        let mut client = e2e::rdp_client::connect(&o).await?;
        client.pump_for(Duration::from_secs(1)).await?;
        client
            .type_text(&format!("echo {word}x\u{8}\n"), Duration::from_millis(30))
            .await?;
        client.pump_for(Duration::from_secs(1)).await?;
        client.disconnect().await?;
        anyhow::Ok(())
    })
}

/// Typed-text search with real RDP servers: the headless client types a command through
/// Sekisho into freerdp-shadow-cli, whose leg is NLA (the server authenticated the user
/// before the session, and shares a desktop already logged on, so no logon screen can come
/// without a logon notification). The recording reads back as the line typed (Shift and
/// Backspace included), and the catalogue's index finds it once the session has ended. The
/// same typed into xrdp (TLS: its own login dialog may be on screen, and it never sends the
/// logon notification) is recorded but never indexed.
#[test]
fn rdp_typed_text_of_an_nla_session_is_indexed_and_found() -> Result<()> {
    if !require_peers(&["freerdp-shadow-cli", "Xvfb", "xrdp", "xrdp-sesman"])? {
        return Ok(());
    }
    const WORD: &str = "Nla-Audit-Word7";
    const XRDP_WORD: &str = "Xrdp-Unindexed-Word";
    rdp_peers::ensure_xrdp()?;
    let _serial = rdp_peers::serial();
    let work = tempfile::Builder::new()
        .prefix("sekisho-e2e-shadow-typed-")
        .tempdir()?;
    let (_shadow, port) = rdp_peers::start_nla_shadow(&work.path().join("shadow"))?;
    let inventory = lab("ip-vpn", None)
        .target(srv01("physical", "business", port))
        .render();
    let vdi = start_from(&inventory, DESKTOP)?;
    let runtime = tokio::runtime::Runtime::new()?;
    type_on_srv01(&runtime, &vdi.instance, WORD)?;
    let row = rdp_peers::ended_session(&vdi, "the session to end")?;
    let recording = recording_file(&vdi.instance, &row)?;
    let lines = player::typed::typed_text(&recording)?;
    assert_eq!(
        lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>(),
        [format!("echo {WORD}")],
        "{lines:?}"
    );
    let id: uuid::Uuid = row["id"].as_str().context("id")?.parse()?;
    let hits =
        vdi.instance
            .wait_until(Duration::from_secs(15), "the typed line indexed", || {
                let hits = typed_hits(&runtime, &vdi.instance, WORD)?;
                Ok((!hits.is_empty()).then_some(hits))
            })?;
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].session.0, id);
    assert_eq!(hits[0].text, format!("echo {WORD}"));
    drop(vdi);

    // xrdp: recorded, typed, and not indexed.
    let vdi = start("ip-vpn", "physical", "business", "2099-12-31")?;
    type_on_srv01(&runtime, &vdi.instance, XRDP_WORD)?;
    let row = rdp_peers::ended_session(&vdi, "the xrdp session to end")?;
    let recording = recording_file(&vdi.instance, &row)?;
    assert!(
        player::typed::typed_text(&recording)?.is_empty(),
        "a session without a logon notification or NLA was indexed"
    );
    // The index is written after the session ends: give it the time the NLA one took.
    std::thread::sleep(Duration::from_secs(3));
    assert!(typed_hits(&runtime, &vdi.instance, XRDP_WORD)?.is_empty());
    Ok(())
}
