//! RDP transparent mode and distinct VDI desktops, in network namespaces the tests create.
//!
//! Topology (each box a namespace made by [`Netns`], linked to the host by a veth pair; the
//! host plays the router that Sekisho is in production):
//!
//! ```text
//!  VDI desktop netns ──veth── host: sekisho serve (RDP on 0.0.0.0:P) ──veth── server netns
//!  10.2xx.a.2                 nat PREROUTING -i <desktop veth>            10.2xx.b.2
//!  xfreerdp /v:10.2xx.b.2     -p tcp --dport 3389 -j REDIRECT --to P      freerdp-shadow-cli
//!                                                                         0.0.0.0:3389 (TLS)
//! ```
//!
//! The contractor's xfreerdp dials the server's own address on the standard port, with a plain
//! user name and no `/pcb`. The host never forwards (the REDIRECT rule is the only way on):
//! Sekisho accepts the redirected connection, reads the original destination
//! (`SO_ORIGINAL_DST`), finds the target whose address it is, decides from the real source
//! address of the desktop (no SNAT here, unlike `rdp.rs`), and relays to the server netns.
//!
//! Why freerdp-shadow-cli and not xrdp: the lab's xrdp listens on 127.0.0.1 only, which no
//! client in another namespace can dial as "the server's own address". A shadow server in its
//! own namespace listens on the real RDP port 3389 at an address of its own, exactly what a
//! transparent client sees. It shares the Xvfb of the other shadow tests through the X unix
//! socket path (a path socket, unlike an abstract one, is reachable from any network
//! namespace); xfreerdp draws on the client Xvfb the same way.
//!
//! Sekisho's RDP listener binds 0.0.0.0 here: REDIRECT delivers to the address of the
//! interface the packet came in on (the desktop veth's host side), not to loopback.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::rdp::rdp_peers::{self, ClientRun};
use crate::support::inventory::{Inventory, PASSWORD as PASS, Target};
use crate::support::netns::{self, Netns};
use crate::support::{InstanceOptions, SekishoInstance, require_peers};

const PEERS: &[&str] = &["freerdp-shadow-cli", "xfreerdp", "Xvfb", "timeout"];

/// The RDP port clients dial; what the REDIRECT rule matches.
const RDP: u16 = 3389;

/// A VM's address (TEST-NET-2): a transparent connection to it must be refused before any
/// byte leaves Sekisho, so nothing needs to answer there.
const VM_ADDR: &str = "198.51.100.7";

/// An address no target has (TEST-NET-2 as well).
const UNKNOWN_ADDR: &str = "198.51.100.99";

fn peers() -> Result<bool> {
    Ok(require_peers(netns::TOOLS)? && require_peers(PEERS)?)
}

/// freerdp-shadow-cli in its own namespace on 0.0.0.0:3389, TLS, any logon accepted.
struct ShadowServer {
    ns: Netns,
    child: std::process::Child,
    home: tempfile::TempDir,
}

impl ShadowServer {
    fn start() -> Result<ShadowServer> {
        rdp_peers::ensure_server_display()?;
        let ns = Netns::create()?;
        let home = tempfile::Builder::new()
            .prefix("sekisho-e2e-nsshadow-")
            .tempdir()?;
        std::fs::create_dir_all(home.path().join("config"))?;
        let log = std::fs::File::create(home.path().join("shadow.log"))?;
        let child = ns
            .command("freerdp-shadow-cli")
            .args(["/bind-address:0.0.0.0", "/port:3389", "/sec:tls", "-auth"])
            .env("DISPLAY", rdp_peers::SHADOW_DISPLAY)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start freerdp-shadow-cli in its namespace")?;
        let server = ShadowServer { ns, child, home };
        let addr = std::net::SocketAddr::from((server.ns.addr, RDP));
        crate::support::wait_for_port(addr, Duration::from_secs(10))
            .with_context(|| format!("shadow server:\n{}", server.log()))?;
        Ok(server)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("shadow.log")).unwrap_or_default()
    }
}

impl Drop for ShadowServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sekisho serve` with `inventory`, its RDP listener on 0.0.0.0 (see the module doc).
fn start_sekisho(inventory: &str) -> Result<SekishoInstance> {
    let mut instance = SekishoInstance::start_with(
        inventory,
        InstanceOptions {
            secrets: Some(
                "[credential.srv01-maint]\nusername = \"maint\"\npassword = \"Maint-Pass-1\"\n"
                    .to_owned(),
            ),
            no_serve: true,
            ..InstanceOptions::default()
        },
    )?;
    let loopback = format!("rdp = \"{}\"", instance.listen.rdp);
    // Free on every address, not only on loopback.
    let port = crate::support::free_port("0.0.0.0")?;
    let config = std::fs::read_to_string(&instance.config)?;
    if !config.contains(&loopback) {
        bail!("no {loopback} in the generated configuration");
    }
    std::fs::write(
        &instance.config,
        config.replace(&loopback, &format!("rdp = \"0.0.0.0:{port}\"")),
    )?;
    instance.restart()?;
    instance.listen.rdp = std::net::SocketAddr::from(([0, 0, 0, 0], port));
    Ok(instance)
}

/// xfreerdp inside `desktop`, dialling `host` on the standard RDP port as `user` for at most
/// `seconds`: a client that cannot choose its source address, and names no target.
fn xfreerdp_in(desktop: &Netns, host: &str, user: &str, seconds: u32) -> Result<ClientRun> {
    let mut cmd = desktop.command("timeout");
    cmd.arg(seconds.to_string())
        .arg("xfreerdp")
        .arg(format!("/v:{host}"))
        .arg(format!("/u:{user}"))
        .arg(format!("/p:{PASS}"))
        .args(["/cert:ignore", "+clipboard", "/log-level:DEBUG"]);
    rdp_peers::run_client(&mut cmd).context("cannot run xfreerdp in its namespace")
}

/// The inventory: pools `(path, network)`, users `(name, desktop)`, srv01 (physical, `zone`)
/// at the server namespace, vm01 at [`VM_ADDR`]; acme's contract covers both.
fn inventory(
    pools: &[(&str, String)],
    users: &[(&str, String)],
    server: &str,
    zone: &str,
) -> String {
    let paths: Vec<&str> = pools.iter().map(|(p, _)| *p).collect();
    let mut inv = Inventory::new();
    for (i, (path, network)) in pools.iter().enumerate() {
        inv = inv.pool(&format!("vdi-{i}"), path, network);
    }
    // Zones may only name the paths of the pools above.
    inv = inv.zone("business", &paths).zone("mynumber", &["ip-vpn"]);
    for (name, desktop) in users {
        inv = inv.user(name, desktop);
    }
    inv.hypervisor()
        .target(
            Target::new("srv01", server, "physical", zone)
                .rdp_port(RDP)
                .credential(),
        )
        .target(
            Target::new("vm01", VM_ADDR, "vm", "business")
                .vnc_console("127.0.0.1:15901")
                .rdp_port(RDP),
        )
        .deny_dynamic(&["URBDRC", "Microsoft::Windows::RDS::Graphics"])
        .render()
}

/// The ended RDP session row from `source`.
fn ended_session_from(instance: &SekishoInstance, source: &str) -> Result<serde_json::Value> {
    rdp_peers::wait_session(instance, 10, "the RDP session to end", |s| {
        s["protocol"] == "rdp" && s["source"] == source && !s["ended_at"].is_null()
    })
}

/// A refused client: no active state, no hang, and a denial `rule` for `source` → `target`.
fn assert_refused(
    instance: &SekishoInstance,
    run: &ClientRun,
    rule: &str,
    source: &str,
    target: &str,
) -> Result<()> {
    run.assert_refused("denied session became active");
    let denial = rdp_peers::wait_denial(instance, 5, "the denial", |d| {
        d["rule"] == rule && d["protocol"] == "rdp" && d["source"] == source
    })?;
    assert_eq!(
        denial.get("target").and_then(serde_json::Value::as_str),
        Some(target),
        "{denial}"
    );
    Ok(())
}

#[test]
fn rdp_transparent_client_dials_the_server_and_sekisho_relays_by_original_destination() -> Result<()>
{
    if !peers()? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let server = ShadowServer::start()?;
    let mut desktop = Netns::create()?;
    let desktop_addr = desktop.addr.to_string();
    let server_addr = server.ns.addr.to_string();
    let instance = start_sekisho(&inventory(
        &[("ip-vpn", desktop.network())],
        &[("tanaka", desktop_addr.clone())],
        &server_addr,
        "business",
    ))?;
    desktop.redirect(RDP, instance.listen.rdp.port())?;

    // The contractor dials the server itself; only the REDIRECT rule brings it to Sekisho.
    let run = xfreerdp_in(&desktop, &server_addr, "tanaka", 8)?;
    assert!(
        run.active(),
        "transparent session did not come up:\n{}\n{}\n{}",
        run.log,
        instance.serve_log(),
        server.log()
    );
    assert_eq!(run.code, Some(124), "client should still be connected");
    let row = ended_session_from(&instance, &desktop_addr)?;
    assert_eq!(row["target"], "srv01", "{row}");
    assert_eq!(row["user"], "tanaka", "{row}");
    assert!(
        row["recording"].as_str().is_some_and(|r| !r.is_empty()),
        "{row}"
    );
    // Sekisho's own leg reached the server in its namespace: its certificate is pinned.
    let pins = instance.pins()?;
    assert!(pins.iter().any(|p| p["target"] == "srv01"), "{pins:?}");

    // The same desktop dialling a VM's address: the seed's RDP rule, decided by address.
    let run = xfreerdp_in(&desktop, VM_ADDR, "tanaka", 20)?;
    assert_refused(&instance, &run, "rdp.vdi-to-vm", &desktop_addr, "vm01")?;

    // An address that is no target's: refused, and the catalogue keeps the address dialled.
    let run = xfreerdp_in(&desktop, UNKNOWN_ADDR, "tanaka", 20)?;
    assert_refused(
        &instance,
        &run,
        "target.unknown",
        &desktop_addr,
        UNKNOWN_ADDR,
    )?;
    Ok(())
}

#[test]
fn rdp_transparent_distinct_vdi_desktops_are_decided_by_their_real_source() -> Result<()> {
    if !peers()? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let server = ShadowServer::start()?;
    let mut internet = Netns::create()?;
    let mut ipvpn = Netns::create()?;
    let internet_addr = internet.addr.to_string();
    let ipvpn_addr = ipvpn.addr.to_string();
    let server_addr = server.ns.addr.to_string();
    // srv01 is in the mynumber zone: reachable over the IP-VPN only.
    let instance = start_sekisho(&inventory(
        &[
            ("internet-vpn", internet.network()),
            ("ip-vpn", ipvpn.network()),
        ],
        &[
            ("tanaka", internet_addr.clone()),
            ("sato", ipvpn_addr.clone()),
        ],
        &server_addr,
        "mynumber",
    ))?;
    let port = instance.listen.rdp.port();
    internet.redirect(RDP, port)?;
    ipvpn.redirect(RDP, port)?;

    let run = xfreerdp_in(&internet, &server_addr, "tanaka", 20)?;
    assert_refused(&instance, &run, "zone.path", &internet_addr, "srv01")?;

    let run = xfreerdp_in(&ipvpn, &server_addr, "sato", 8)?;
    assert!(
        run.active(),
        "IP-VPN session did not come up:\n{}\n{}",
        run.log,
        instance.serve_log()
    );
    let row = ended_session_from(&instance, &ipvpn_addr)?;
    assert_eq!(row["target"], "srv01", "{row}");
    assert_eq!(row["user"], "sato", "{row}");
    // Only the IP-VPN desktop got a session.
    let rdp_sources: Vec<_> = instance
        .sessions()?
        .into_iter()
        .filter(|s| s["protocol"] == "rdp")
        .map(|s| s["source"].clone())
        .collect();
    assert_eq!(rdp_sources, [serde_json::Value::from(ipvpn_addr)]);
    Ok(())
}

/// `ip -o link`, `ip netns list` and the nat rules, as one text.
fn host_network_state() -> Result<String> {
    let mut text = String::new();
    for (program, args) in [
        ("ip", &["-o", "link"][..]),
        ("ip", &["netns", "list"][..]),
        ("iptables", &["-t", "nat", "-S"][..]),
    ] {
        let out = std::process::Command::new(program).args(args).output()?;
        text.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    Ok(text)
}

#[test]
fn rdp_netns_helper_removes_its_namespace_link_and_rules() -> Result<()> {
    if !require_peers(netns::TOOLS)? {
        return Ok(());
    }
    let (name, host_if) = {
        let mut ns = Netns::create()?;
        ns.redirect(RDP, 40000)?;
        let inside = ns.command("ip").args(["-4", "-o", "addr"]).output()?;
        let inside = String::from_utf8_lossy(&inside.stdout);
        assert!(inside.contains(&format!("{}/30", ns.addr)), "{inside}");
        let route = ns.command("ip").args(["route"]).output()?;
        let route = String::from_utf8_lossy(&route.stdout);
        assert!(
            route.contains(&format!("default via {}", ns.host_addr)),
            "{route}"
        );
        let state = host_network_state()?;
        assert!(state.contains(&ns.name), "{state}");
        assert!(
            state.contains(&format!("-A PREROUTING -i {} -p tcp", ns.host_if)),
            "{state}"
        );
        (ns.name.clone(), ns.host_if.clone())
    };
    let state = host_network_state()?;
    assert!(!state.contains(&name), "namespace left behind:\n{state}");
    assert!(
        !state.contains(&host_if),
        "link or rule left behind:\n{state}"
    );
    Ok(())
}

#[test]
fn rdp_netns_helper_clears_what_a_killed_run_left() -> Result<()> {
    if !require_peers(netns::TOOLS)? {
        return Ok(());
    }
    // A pid above the kernel's maximum (2^22) never runs: its leftovers are stale.
    let stale = "sekisho-e2e-4194399";
    let name = format!("{stale}-0");
    let rule = [
        "PREROUTING",
        "-i",
        "skdeadh",
        "-p",
        "tcp",
        "--dport",
        "3389",
        "-m",
        "comment",
        "--comment",
        stale,
        "-j",
        "REDIRECT",
        "--to-ports",
        "40000",
    ];
    let ok = |program: &str, args: &[&str]| -> Result<()> {
        let out = std::process::Command::new(program).args(args).output()?;
        anyhow::ensure!(
            out.status.success(),
            "{program} {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    };
    ok("ip", &["netns", "add", &name])?;
    ok("iptables", &[&["-t", "nat", "-A"][..], &rule[..]].concat())?;
    let before = host_network_state()?;
    let made = Netns::create();
    let after = host_network_state()?;
    // Clean up by hand whatever the sweep missed, before judging it.
    let _ = ok("iptables", &[&["-t", "nat", "-D"][..], &rule[..]].concat());
    let _ = ok("ip", &["netns", "del", &name]);
    drop(made?);
    assert!(before.contains(&name) && before.contains(stale), "{before}");
    assert!(!after.contains(&name), "stale namespace kept:\n{after}");
    assert!(!after.contains(stale), "stale rule kept:\n{after}");
    Ok(())
}
