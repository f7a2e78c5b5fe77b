//! Network namespaces with veth pairs, made and removed by the tests that need them.
//!
//! A [`Netns`] is one machine on its own point-to-point link to the host: a namespace named
//! `sekisho-e2e-<pid>-<n>`, a veth pair (`sk<pid hex><n>h` on the host, `…n` inside), a /30
//! in 10.200.0.0–10.215.255.255 chosen from the pid and a counter (skipping any /30 the host already
//! uses), the namespace's default route via the host side, and iptables rules that match only
//! the host-side interface. Everything is removed on drop: the rules one by one (never a flush),
//! then the veth pair, then the namespace. Every rule carries the comment
//! `sekisho-e2e-<pid>`, so [`Netns::create`] can also clear what a killed test run left.
//!
//! Needs root and `ip` (iproute2) and `iptables`.

use std::net::Ipv4Addr;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result, bail};

/// The programs a test using [`Netns`] needs (for [`super::require_peers`]).
pub const TOOLS: &[&str] = &["ip", "iptables"];

/// Prefix of every namespace name and rule comment this module makes.
const PREFIX: &str = "sekisho-e2e-";

/// Namespaces made by this process so far (part of the names and addresses).
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Number of /30 blocks in 10.200.0.0–10.215.255.255.
const BLOCKS: u32 = 16 * 256 * 64;

/// One iptables rule this namespace installed: table, chain, the rule itself.
struct Rule {
    table: String,
    chain: String,
    spec: Vec<String>,
}

/// A network namespace linked to the host by a veth pair; removed on drop.
pub struct Netns {
    /// the namespace's name (`ip netns exec NAME …`)
    pub name: String,
    /// the host side of the veth pair (what iptables rules match with `-i`)
    pub host_if: String,
    /// the host side's address (the namespace's default gateway)
    pub host_addr: Ipv4Addr,
    /// the namespace's address
    pub addr: Ipv4Addr,
    rules: Vec<Rule>,
}

fn run(program: &str, args: &[&str]) -> Result<Output> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    Ok(out)
}

fn must(program: &str, args: &[&str]) -> Result<()> {
    let out = run(program, args)?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn pid_alive(pid: &str) -> bool {
    std::path::Path::new("/proc").join(pid).exists()
}

/// Removes namespaces and rules left by test processes that no longer exist (a test killed
/// before its drops ran). Only names and comments with [`PREFIX`] and a dead pid are touched.
fn sweep_stale() {
    if let Ok(out) = run("ip", &["netns", "list"]) {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or_default();
            if !pid.is_empty() && !pid_alive(pid) {
                let _ = run("ip", &["netns", "del", name]);
            }
        }
    }
    for table in ["nat", "filter", "mangle"] {
        let Ok(out) = run("iptables", &["-t", table, "-S"]) else {
            continue;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(pos) = line.find(&format!("--comment {PREFIX}")) else {
                continue;
            };
            let after = line
                .get(pos + "--comment ".len() + PREFIX.len()..)
                .unwrap_or_default();
            let pid: String = after.chars().take_while(char::is_ascii_digit).collect();
            if pid.is_empty() || pid_alive(&pid) {
                continue;
            }
            let Some(rule) = line.strip_prefix("-A ") else {
                continue;
            };
            let mut args = vec!["-t", table, "-D"];
            args.extend(rule.split_whitespace());
            let _ = run("iptables", &args);
        }
    }
}

/// True when some host interface has an address inside `net`/30.
fn block_in_use(net: Ipv4Addr, host_addrs: &str) -> bool {
    let base = u32::from(net);
    host_addrs
        .split_whitespace()
        .filter_map(|w| w.split('/').next()?.parse::<Ipv4Addr>().ok())
        .any(|a| u32::from(a) & !3 == base)
}

impl Netns {
    /// Makes a namespace with a fresh /30 and its veth pair, links up, default route via the
    /// host side. `ip` missing fails (callers check [`TOOLS`] first to honour
    /// `SEKISHO_SKIP_PEERS`).
    pub fn create() -> Result<Netns> {
        sweep_stale();
        let pid = std::process::id();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{pid}-{n}");
        // Interface names have at most 15 bytes: "sk" + 6 hex digits + counter + side.
        let stem = format!("sk{:x}{:x}", pid & 0xff_ffff, n & 0xfff);
        let host_if = format!("{stem}h");
        let ns_if = format!("{stem}n");

        let addrs = run("ip", &["-4", "-o", "addr", "show"])?;
        let addrs = String::from_utf8_lossy(&addrs.stdout).into_owned();
        let start = pid.wrapping_mul(64).wrapping_add(n.wrapping_mul(7)) % BLOCKS;
        let net = (0..BLOCKS)
            .map(|i| {
                let b = (start + i) % BLOCKS;
                Ipv4Addr::from((10u32 << 24) | ((200 + (b >> 14)) << 16) | ((b & 0x3fff) << 2))
            })
            .find(|net| !block_in_use(*net, &addrs))
            .context("no free /30 in 10.200.0.0-10.215.255.255")?;
        let host_addr = Ipv4Addr::from(u32::from(net) + 1);
        let addr = Ipv4Addr::from(u32::from(net) + 2);

        must("ip", &["netns", "add", &name])?;
        // From here on, drop cleans up whatever was made.
        let ns = Netns {
            name,
            host_if,
            host_addr,
            addr,
            rules: Vec::new(),
        };
        let host_cidr = format!("{host_addr}/30");
        let ns_cidr = format!("{addr}/30");
        let gateway = host_addr.to_string();
        must(
            "ip",
            &[
                "link",
                "add",
                &ns.host_if,
                "type",
                "veth",
                "peer",
                "name",
                &ns_if,
            ],
        )?;
        must("ip", &["link", "set", &ns_if, "netns", &ns.name])?;
        must("ip", &["addr", "add", &host_cidr, "dev", &ns.host_if])?;
        must("ip", &["link", "set", &ns.host_if, "up"])?;
        must(
            "ip",
            &["-n", &ns.name, "addr", "add", &ns_cidr, "dev", &ns_if],
        )?;
        must("ip", &["-n", &ns.name, "link", "set", &ns_if, "up"])?;
        must("ip", &["-n", &ns.name, "link", "set", "lo", "up"])?;
        must(
            "ip",
            &["-n", &ns.name, "route", "add", "default", "via", &gateway],
        )?;
        Ok(ns)
    }

    /// The namespace's /30, as a VDI pool network (`"10.x.y.z/30"`).
    pub fn network(&self) -> String {
        format!("{}/30", Ipv4Addr::from(u32::from(self.addr) & !3))
    }

    /// `program` to be run inside the namespace (`ip netns exec NAME program`); add its
    /// arguments and environment as usual. `ip netns exec` execs the program, so the child's
    /// pid is the program's own.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]);
        cmd
    }

    /// Adds `-t table -A chain -i <host side> SPEC` (with this run's comment); deleted on drop.
    pub fn iptables(&mut self, table: &str, chain: &str, spec: &[&str]) -> Result<()> {
        let comment = format!("{PREFIX}{}", std::process::id());
        let mut full: Vec<String> = vec!["-i".into(), self.host_if.clone()];
        full.extend(spec.iter().map(|s| (*s).to_owned()));
        full.extend(["-m", "comment", "--comment", &comment].map(str::to_owned));
        let mut args = vec!["-t", table, "-A", chain];
        args.extend(full.iter().map(String::as_str));
        must("iptables", &args)?;
        self.rules.push(Rule {
            table: table.to_owned(),
            chain: chain.to_owned(),
            spec: full,
        });
        Ok(())
    }

    /// Transparent interception: TCP from this namespace to any address on `dport` goes to
    /// the host's `to_port` (on the host side's address), with the original destination kept
    /// for `SO_ORIGINAL_DST`.
    pub fn redirect(&mut self, dport: u16, to_port: u16) -> Result<()> {
        let dport = dport.to_string();
        let to_port = to_port.to_string();
        self.iptables(
            "nat",
            "PREROUTING",
            &[
                "-p",
                "tcp",
                "--dport",
                &dport,
                "-j",
                "REDIRECT",
                "--to-ports",
                &to_port,
            ],
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for rule in self.rules.drain(..).rev() {
            let mut args = vec!["-t", rule.table.as_str(), "-D", rule.chain.as_str()];
            args.extend(rule.spec.iter().map(String::as_str));
            let _ = run("iptables", &args);
        }
        // Deleting one end removes both; the namespace goes once its last process has exited.
        let _ = run("ip", &["link", "del", &self.host_if]);
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_in_use_are_recognised() {
        let addrs = "2: eth0 inet 10.200.0.5/30 brd 10.200.0.7 scope global eth0";
        assert!(block_in_use(Ipv4Addr::new(10, 200, 0, 4), addrs));
        assert!(!block_in_use(Ipv4Addr::new(10, 200, 0, 8), addrs));
    }
}
