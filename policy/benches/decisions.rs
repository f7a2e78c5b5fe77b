//! Policy decisions per second on a generated inventory of 1,000 targets, 500 users and
//! 2,000 contracts (issue 2 aims at ≥100,000 per second on one core).
//!
//! Run: `cargo bench -p policy --bench decisions`. Besides criterion's own report it prints
//! one line `decisions per second: N` from a plain timed loop.

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use policy::{Inventory, LiveConsole, Protocol, Request, SessionId, TargetRef, evaluate};

const TARGETS: usize = 1_000;
const USERS: usize = 500;
const CONTRACTS: usize = 2_000;
const CONTRACTORS: usize = 50;
const REQUESTS: usize = 10_000;

/// Small deterministic xorshift generator, so every run benches the same inventory.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn target_ip(i: usize) -> String {
    format!("10.20.{}.{}", i / 250, i % 250 + 1)
}

fn desktop_ip(u: usize) -> String {
    // Even users on the internet-vpn pool, odd ones on ip-vpn.
    format!("10.{}.{}.{}", 10 + u % 2, u / 250, u % 250 + 1)
}

fn generate(rng: &mut Rng) -> String {
    let mut t = String::from(
        "timezone = \"Asia/Tokyo\"\n\
         [[vdi_pool]]\nname = \"vdi-internet\"\npath = \"internet-vpn\"\nnetworks = [\"10.10.0.0/16\"]\n\
         [[vdi_pool]]\nname = \"vdi-ipvpn\"\npath = \"ip-vpn\"\nnetworks = [\"10.11.0.0/16\"]\n\
         [zones]\nbusiness = [\"internet-vpn\", \"ip-vpn\"]\ndmz = [\"internet-vpn\", \"ip-vpn\"]\nmynumber = [\"ip-vpn\"]\n",
    );
    for c in 0..CONTRACTORS {
        let _ = writeln!(
            t,
            "[[contractor]]\nid = \"c{c}\"\nname = \"Contractor {c}\""
        );
    }
    for u in 0..USERS {
        let _ = writeln!(
            t,
            "[[user]]\nname = \"u{u}\"\ncontractor = \"c{}\"\nrole = \"contractor\"\ndesktops = [\"{}\"]",
            u % CONTRACTORS,
            desktop_ip(u)
        );
    }
    for h in 0..10 {
        let _ = writeln!(
            t,
            "[[hypervisor]]\nname = \"h{h}\"\naddress = \"10.30.0.{}\"",
            h + 1
        );
    }
    let zones = ["business", "dmz", "mynumber"];
    for i in 0..TARGETS {
        let zone = zones.get(rng.below(3)).copied().unwrap_or("business");
        if i % 2 == 0 {
            let _ = writeln!(
                t,
                "[[target]]\nname = \"t{i}\"\naddress = \"{}\"\nkind = \"vm\"\nzone = \"{zone}\"\nhypervisor = \"h{}\"\nvnc_console = \"10.30.0.{}:{}\"\nserial_console = \"10.30.0.{}:{}\"",
                target_ip(i),
                i % 10,
                i % 10 + 1,
                5900 + i,
                i % 10 + 1,
                14000 + i
            );
        } else {
            let _ = writeln!(
                t,
                "[[target]]\nname = \"t{i}\"\naddress = \"{}\"\nkind = \"physical\"\nzone = \"{zone}\"",
                target_ip(i)
            );
        }
    }
    for k in 0..CONTRACTS {
        let targets: Vec<String> = (0..5)
            .map(|_| format!("\"t{}\"", rng.below(TARGETS)))
            .collect();
        let windows = if k % 2 == 0 {
            "windows = [\"mon-fri 08:30-20:00\", \"sat 09:00-12:00\"]\n"
        } else {
            ""
        };
        let _ = writeln!(
            t,
            "[[contract]]\ncontractor = \"c{}\"\ntargets = [{}]\nvalid_from = \"2026-04-01\"\nvalid_until = \"2027-03-31\"\n{windows}",
            k % CONTRACTORS,
            targets.join(", ")
        );
    }
    t
}

struct Setup {
    inv: Inventory,
    live: Vec<LiveConsole>,
    requests: Vec<Request>,
    now: DateTime<Utc>,
}

fn setup() -> Setup {
    let mut rng = Rng(0x5eb1_5e0d_cafe_f00d);
    let text = generate(&mut rng);
    let inv = match Inventory::from_toml(&text, "bench.toml") {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    // 100 live consoles on random VMs, as the hop sources.
    let live: Vec<LiveConsole> = (0..100u128)
        .map(|n| {
            let u = rng.below(USERS);
            LiveConsole {
                session_id: SessionId::from_uuid(uuid::Uuid::from_u128(n + 1)),
                target: format!("t{}", rng.below(TARGETS / 2) * 2),
                user: format!("u{u}"),
                contractor: format!("c{}", u % CONTRACTORS),
                path: if u.is_multiple_of(2) {
                    "internet-vpn"
                } else {
                    "ip-vpn"
                }
                .to_owned(),
            }
        })
        .collect();
    let requests = (0..REQUESTS)
        .map(|_| {
            let protocol = Protocol::ALL
                .get(rng.below(4))
                .copied()
                .unwrap_or(Protocol::Rdp);
            let user = rng.below(USERS);
            // Half the requests go to a target the user's contractor has a contract for, so
            // the allow path (and its longer reason) is well represented.
            let covered: Vec<&str> = inv
                .contracts()
                .iter()
                .filter(|k| k.contractor == format!("c{}", user % CONTRACTORS))
                .flat_map(|k| k.targets.iter().map(String::as_str))
                .collect();
            let target_name = match covered.get(rng.below(covered.len().max(1))) {
                Some(t) if rng.below(2) == 0 => (*t).to_owned(),
                _ => format!("t{}", rng.below(TARGETS)),
            };
            let desktop: IpAddr = desktop_ip(user)
                .parse()
                .unwrap_or(IpAddr::from([0, 0, 0, 0]));
            let (source, target): (IpAddr, TargetRef) = match rng.below(10) {
                // Hops from a server with a live console.
                0 => {
                    let c = live.get(rng.below(live.len()));
                    let s = c.and_then(|c| inv.target(&c.target)).map(|t| t.address);
                    (
                        s.unwrap_or(IpAddr::from([10, 99, 0, 1])),
                        TargetRef::Name(target_name),
                    )
                }
                // Transparent RDP by address.
                1 => (
                    desktop,
                    TargetRef::Address(
                        inv.target(&target_name)
                            .map_or(IpAddr::from([0, 0, 0, 0]), |t| t.address),
                    ),
                ),
                _ => (desktop, TargetRef::Name(target_name)),
            };
            Request {
                protocol,
                source,
                target,
                user: None,
            }
        })
        .collect();
    // Wednesday 2026-11-25 10:00 in Tokyo: inside the windows, so all checks run.
    let now = DateTime::parse_from_rfc3339("2026-11-25T01:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_default();
    Setup {
        inv,
        live,
        requests,
        now,
    }
}

fn decisions(c: &mut Criterion) {
    let s = setup();

    // A plain timed loop first, for the one-line figure the issue asks for.
    let start = Instant::now();
    let mut n = 0u64;
    let mut allowed = 0u64;
    while start.elapsed() < Duration::from_secs(3) {
        for r in &s.requests {
            if evaluate(&s.inv, &s.live, r, s.now).is_allow() {
                allowed += 1;
            }
            n += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "decisions per second: {:.0} ({n} decisions in {secs:.2} s, {:.1}% allowed; {TARGETS} targets, {USERS} users, {CONTRACTS} contracts)",
        n as f64 / secs,
        allowed as f64 * 100.0 / n as f64
    );

    let mut g = c.benchmark_group("policy");
    g.throughput(Throughput::Elements(s.requests.len() as u64));
    g.bench_function("evaluate_10k_requests", |b| {
        b.iter(|| {
            for r in &s.requests {
                black_box(evaluate(&s.inv, &s.live, black_box(r), s.now));
            }
        });
    });
    g.finish();
}

criterion_group!(benches, decisions);
criterion_main!(benches);
