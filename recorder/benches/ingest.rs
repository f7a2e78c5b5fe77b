//! Ingest benchmark: MB of input per second on one core, compression ratio, and bytes per hour
//! of a typical admin terminal session.
//!
//!   cargo bench -p recorder --bench ingest            (figures printed to stdout)
//!   SEKISHO_BENCH_MB=256 cargo bench -p recorder --bench ingest
//!
//! The synthetic streams are generated here (deterministic PRNG), so figures are comparable
//! between runs: a terminal stream of an admin session (shell prompts, `ls -l`, `top`
//! screens with ANSI escapes, syslog/nginx log tails, keystroke echo) and RDP-like bitmap
//! traffic (fast-path bitmap updates: flat UI areas, gradients, text-like tiles, a share of
//! noisy "photo" tiles).

use std::time::{Duration, Instant};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use recorder::format::{Compression, Encoder, FORMAT_VERSION, FORMAT_VERSION_1, Record};
use recorder::{ChannelId, Direction, Header, RecordKind};

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items
            .get(self.below(items.len() as u64) as usize)
            .copied()
            .unwrap_or("")
    }
}

fn header(protocol: &str) -> Header {
    Header {
        session_id: uuid::Uuid::from_u128(1),
        protocol: protocol.into(),
        user: Some("tanaka".into()),
        contractor: Some("acme".into()),
        source: "127.0.10.11".into(),
        target: "web01".into(),
        start_unix_us: 1_764_000_000_000_000,
        metadata: Default::default(),
    }
}

const USERS: &[&str] = &["root", "www-data", "postgres", "tanaka", "nginx", "syslog"];
const FILES: &[&str] = &[
    "nginx.conf",
    "access.log",
    "error.log",
    "backup.tar.gz",
    "app.service",
    "id_ed25519.pub",
    "README.md",
    "deploy.sh",
    "pg_hba.conf",
    "sekisho.toml",
];
const PROCS: &[&str] = &[
    "nginx", "postgres", "java", "sshd", "systemd", "rsyslogd", "cron", "node", "python3",
];
const PATHS: &[&str] = &[
    "/",
    "/api/v1/orders",
    "/login",
    "/static/app.js",
    "/healthz",
    "/api/v1/users/42",
];

/// One chunk of terminal output as an admin would produce it.
fn terminal_output(rng: &mut Rng, t: u64) -> String {
    let mut s = String::new();
    match rng.below(4) {
        0 => {
            // A directory listing: the same few directories are listed again and again, as
            // in a real session, so listings repeat (only a file or two changes).
            let dir = rng.below(6);
            let mut d = Rng(0xD1 + dir);
            s.push_str(&format!(
                "tanaka@web01:/srv/app{dir}$ ls -l\r\ntotal 48\r\n"
            ));
            for _ in 0..(5 + d.below(20)) {
                s.push_str(&format!(
                    "-rw-r--r-- 1 {} {} {:>8} Nov {:>2} {:02}:{:02} {}\r\n",
                    d.pick(USERS),
                    d.pick(USERS),
                    d.below(2_000_000),
                    1 + d.below(28),
                    d.below(24),
                    d.below(60),
                    d.pick(FILES)
                ));
            }
            if rng.below(3) == 0 {
                s.push_str(&format!(
                    "-rw-r--r-- 1 root root {:>8} Nov 24 {:02}:{:02} upload.tmp\r\n",
                    rng.below(2_000_000),
                    rng.below(24),
                    rng.below(60)
                ));
            }
        }
        1 => {
            s.push_str(&format!(
                "\x1b[H\x1b[2Jtop - {:02}:{:02}:{:02} up 41 days,  3:12,  2 users,  load average: 0.{:02}, 0.{:02}, 0.{:02}\r\n\
                 Tasks: 213 total,   1 running, 212 sleeping,   0 stopped,   0 zombie\r\n\
                 %Cpu(s):  {}.{} us,  1.1 sy,  0.0 ni, 9{}.2 id,  0.1 wa,  0.0 hi,  0.0 si,  0.0 st\r\n\
                 MiB Mem :  15972.1 total,   {}.4 free,   6120.3 used,   7421.0 buff/cache\r\n\r\n\
                 \x1b[7m    PID USER      PR  NI    VIRT    RES    SHR S  %CPU  %MEM     TIME+ COMMAND     \x1b[m\r\n",
                (t / 3_600_000_000) % 24,
                (t / 60_000_000) % 60,
                (t / 1_000_000) % 60,
                rng.below(100),
                rng.below(100),
                rng.below(100),
                rng.below(10),
                rng.below(10),
                rng.below(8),
                1000 + rng.below(2000)
            ));
            // A stable process table: PIDs, users, memory stay; CPU and time move.
            let mut p = Rng(0x70);
            for _ in 0..20 {
                s.push_str(&format!(
                    "{:>7} {:<8}  20   0 {:>7} {:>6} {:>6} S {:>5.1} {:>5.1} {:>3}:{:02}.{:02} {}\r\n",
                    100 + p.below(30000),
                    p.pick(USERS),
                    p.below(3_000_000),
                    p.below(500_000),
                    p.below(50_000),
                    rng.below(300) as f64 / 10.0,
                    p.below(200) as f64 / 10.0,
                    p.below(500),
                    rng.below(60),
                    rng.below(100),
                    p.pick(PROCS)
                ));
            }
        }
        2 => {
            for _ in 0..(3 + rng.below(30)) {
                s.push_str(&format!(
                    "10.20.{}.{} - - [24/Nov/2025:{:02}:{:02}:{:02} +0900] \"GET {} HTTP/1.1\" {} {} \"-\" \"Mozilla/5.0 (Windows NT 10.0; Win64; x64)\"\r\n",
                    rng.below(4),
                    10 + rng.below(30),
                    (t / 3_600_000_000) % 24,
                    (t / 60_000_000) % 60,
                    (t / 1_000_000) % 60,
                    rng.pick(PATHS),
                    [200, 200, 200, 304, 404, 500].get(rng.below(6) as usize).copied().unwrap_or(200),
                    rng.below(50_000)
                ));
            }
        }
        _ => {
            for _ in 0..(2 + rng.below(15)) {
                s.push_str(&format!(
                    "Nov 24 {:02}:{:02}:{:02} web01 {}[{}]: {}\r\n",
                    (t / 3_600_000_000) % 24,
                    (t / 60_000_000) % 60,
                    (t / 1_000_000) % 60,
                    rng.pick(PROCS),
                    1000 + rng.below(8) * 311,
                    rng.pick(&[
                        "Accepted publickey for tanaka from 10.20.0.5 port 52144 ssh2",
                        "Started Daily apt upgrade and clean activities.",
                        "connection reset by peer while reading response header from upstream",
                        "checkpoint complete: wrote 112 buffers (0.7%)",
                        "pam_unix(sudo:session): session opened for user root(uid=0)",
                    ])
                ));
            }
        }
    }
    s
}

/// Terminal records totalling about `total` bytes: keystrokes, echo and outputs.
fn terminal_stream(total: usize) -> Vec<Record> {
    let mut rng = Rng(0x05EC_15A0);
    let mut out = Vec::new();
    let (mut t, mut n) = (0u64, 0usize);
    while n < total {
        for c in b"ls -l\r" {
            t += 80_000 + rng.below(150_000);
            out.push(data(t, Direction::ClientToServer, vec![*c]));
            out.push(data(t + 300, Direction::ServerToClient, vec![*c]));
            n += 2;
        }
        let text = terminal_output(&mut rng, t).into_bytes();
        n += text.len();
        t += 20_000;
        out.push(data(t, Direction::ServerToClient, text));
    }
    out
}

/// RDP-like bitmap updates: 64×64 tiles at 16 bpp in fast-path-sized PDUs.
fn rdp_stream(total: usize) -> Vec<Record> {
    let mut rng = Rng(0xB17_3A9);
    let mut out = Vec::new();
    let (mut t, mut n) = (0u64, 0usize);
    while n < total {
        let mut pdu = Vec::with_capacity(16 * 1024);
        // Fast-path update header (action, length, update code, rectangle count).
        pdu.extend_from_slice(&[0x00, 0x80, 0x40, 0x01, 0x00, 0x04]);
        for _ in 0..2 {
            let (x, y) = (rng.below(30) * 64, rng.below(17) * 64);
            pdu.extend_from_slice(&(x as u16).to_le_bytes());
            pdu.extend_from_slice(&(y as u16).to_le_bytes());
            let kind = rng.below(10);
            let base = rng.next() as u16;
            for py in 0..64u16 {
                for px in 0..64u16 {
                    let v: u16 = match kind {
                        // Flat window backgrounds and title bars.
                        0..=3 => base,
                        // Gradients.
                        4 | 5 => base.wrapping_add(py * 3 + px / 8),
                        // Text on a background: mostly background, some glyph pixels.
                        6..=8 => {
                            if rng.below(6) == 0 {
                                0x0000
                            } else {
                                0xFFFF
                            }
                        }
                        // Photo/noise.
                        _ => rng.next() as u16,
                    };
                    pdu.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        n += pdu.len();
        t += 16_000;
        out.push(data(t, Direction::ServerToClient, pdu));
        if rng.below(4) == 0 {
            out.push(data(
                t,
                Direction::ClientToServer,
                vec![0x44, 0x09, 0x01, 0x20, 0x03],
            ));
        }
    }
    out
}

fn data(at_us: u64, direction: Direction, bytes: Vec<u8>) -> Record {
    Record {
        at_us,
        kind: RecordKind::Data {
            direction,
            channel: ChannelId(0),
            bytes: Bytes::from(bytes),
        },
    }
}

fn input_bytes(records: &[Record]) -> usize {
    records
        .iter()
        .map(|r| match &r.kind {
            RecordKind::Data { bytes, .. } => bytes.len(),
            _ => 0,
        })
        .sum()
}

/// Encodes `records` with the sans-IO encoder (records → chunks: encode, zstd, BLAKE3 chain,
/// trailer signature) on this thread; returns (elapsed, output size).
fn encode(records: &[Record], compression: Compression) -> (Duration, usize) {
    let key = SigningKey::from_bytes(&[1; 32]);
    let start = Instant::now();
    let (mut enc, head) =
        Encoder::new(&header("bench"), compression, 1024 * 1024).unwrap_or_else(|e| {
            eprintln!("encoder: {e}");
            std::process::exit(1)
        });
    let mut size = head.len();
    for r in records {
        if let Ok(Some(c)) = enc.push(r) {
            size += c.bytes.len();
        }
    }
    let end = records.last().map_or(0, |r| r.at_us);
    if let Ok((last, trailer, _)) = enc.finish(end, &key) {
        size += last.map_or(0, |c| c.bytes.len()) + trailer.len();
    }
    (start.elapsed(), size)
}

/// Baseline: zstd alone over the same bytes in 1 MiB blocks (what the format's own work —
/// framing, BLAKE3, signature — adds on top of).
fn zstd_alone(records: &[Record], level: i32) -> f64 {
    let mut all = Vec::with_capacity(input_bytes(records));
    for r in records {
        if let RecordKind::Data { bytes, .. } = &r.kind {
            all.extend_from_slice(bytes);
        }
    }
    let Ok(mut c) = zstd::bulk::Compressor::new(level) else {
        return 0.0;
    };
    let start = Instant::now();
    for block in all.chunks(1024 * 1024) {
        let _ = c.compress(block);
    }
    all.len() as f64 / 1e6 / start.elapsed().as_secs_f64()
}

fn report(name: &str, records: &[Record], compression: Compression) {
    let level = compression.level;
    let input = input_bytes(records);
    // Warm-up, then best of three.
    let _ = encode(records, compression);
    let (best, size) = (0..3)
        .map(|_| encode(records, compression))
        .min_by_key(|(d, _)| *d)
        .unwrap_or_default();
    let mbps = input as f64 / 1e6 / best.as_secs_f64();
    let baseline = zstd_alone(records, level);
    println!(
        "{name:<10} level {level:>2}: {:>6.1} MB in {:>6.3} s = {mbps:>6.1} MB/s per core (zstd alone {baseline:>6.1}), output {:>6.2} MB, ratio {:>5.2}x",
        input as f64 / 1e6,
        best.as_secs_f64(),
        size as f64 / 1e6,
        input as f64 / size as f64
    );
}

/// One hour of a typical admin terminal session, chunked by the 1 s timer as the writer does.
/// Version 1 is the baseline: every chunk compressed alone at level 3, as before.
fn admin_hour(version: u16) {
    let mut rng = Rng(0xAD_0170);
    let key = SigningKey::from_bytes(&[1; 32]);
    let compression = if version == FORMAT_VERSION_1 {
        Compression {
            level: 3,
            history_bytes: 0,
            ..Compression::TEXT
        }
    } else {
        Compression::TEXT
    };
    let Ok((mut enc, head)) =
        Encoder::with_version(&header("ssh"), compression, 1024 * 1024, version)
    else {
        return;
    };
    let mut size = head.len();
    let mut input = 0usize;
    let push = |enc: &mut Encoder, r: Record, input: &mut usize, size: &mut usize| {
        if let RecordKind::Data { bytes, .. } = &r.kind {
            *input += bytes.len();
        }
        if let Ok(Some(c)) = enc.push(&r) {
            *size += c.bytes.len();
        }
    };
    // Model: the admin types a command every ~20 s on average (2–40 keystrokes at ~6/s, each
    // echoed); each command prints 200 B–6 KB; ten minutes of `top` (refresh every 3 s);
    // twenty minutes of `tail -f` (two log lines a second); idle the rest.
    for sec in 0..3600u64 {
        let t0 = sec * 1_000_000;
        let in_top = (600..1200).contains(&sec);
        let in_tail = (1800..3000).contains(&sec);
        if in_top && sec % 3 == 0 {
            let s = terminal_output(&mut Rng(sec | 1), t0);
            push(
                &mut enc,
                data(t0, Direction::ServerToClient, s.into_bytes()),
                &mut input,
                &mut size,
            );
        } else if in_tail {
            for k in 0..2 {
                let mut line = terminal_output(&mut rng, t0);
                line.truncate(line.find('\n').map_or(line.len(), |i| i + 1));
                push(
                    &mut enc,
                    data(
                        t0 + k * 400_000,
                        Direction::ServerToClient,
                        line.into_bytes(),
                    ),
                    &mut input,
                    &mut size,
                );
            }
        } else if rng.below(20) == 0 {
            let keys = 2 + rng.below(38);
            for k in 0..keys.min(6) {
                let at = t0 + k * 160_000;
                push(
                    &mut enc,
                    data(at, Direction::ClientToServer, b"x".to_vec()),
                    &mut input,
                    &mut size,
                );
                push(
                    &mut enc,
                    data(at + 2_000, Direction::ServerToClient, b"x".to_vec()),
                    &mut input,
                    &mut size,
                );
            }
            let mut out = terminal_output(&mut rng, t0);
            out.truncate(200 + rng.below(6000) as usize);
            push(
                &mut enc,
                data(t0 + 990_000, Direction::ServerToClient, out.into_bytes()),
                &mut input,
                &mut size,
            );
        }
        if let Ok(Some(c)) = enc.flush() {
            size += c.bytes.len();
        }
    }
    if let Ok((last, trailer, summary)) = enc.finish(3_600_000_000, &key) {
        size += last.map_or(0, |c| c.bytes.len()) + trailer.len();
        println!(
            "admin hour (format v{version}): {:.2} MB of terminal traffic -> {:.1} KB recorded per hour ({} chunks, ratio {:.1}x)",
            input as f64 / 1e6,
            size as f64 / 1e3,
            summary.chunks,
            input as f64 / size as f64
        );
    }
}

/// The whole path: RecordingWriter → LocalDir with an fsync per chunk, on a current-thread
/// runtime (one core).
fn writer_end_to_end(records: &[Record]) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let Ok(dir) = tempfile::tempdir() else { return };
    let input = input_bytes(records);
    let res = rt.block_on(async {
        let storage = recorder::LocalDir::new(dir.path());
        let key = recorder::RecordingKey::new(SigningKey::from_bytes(&[1; 32]));
        let w = recorder::RecordingWriter::create(
            &storage,
            header("ssh"),
            key,
            recorder::WriterConfig::default(),
        )
        .await?;
        let start = Instant::now();
        for r in records {
            w.write_at(r.clone()).await?;
        }
        let s = w.finish().await?;
        Ok::<_, recorder::WriteError>((start.elapsed(), s))
    });
    match res {
        Ok((d, s)) => println!(
            "writer+LocalDir (fsync per chunk, tmpdir): {:.1} MB/s, {} chunks, {:.2} MB on disk",
            input as f64 / 1e6 / d.as_secs_f64(),
            s.chunks,
            s.size as f64 / 1e6
        ),
        Err(e) => println!("writer+LocalDir failed: {e}"),
    }
}

fn main() {
    // `cargo test --benches` runs this with --bench absent: keep that fast.
    let quick = !std::env::args().any(|a| a == "--bench");
    let mb: usize = std::env::var("SEKISHO_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 2 } else { 64 });
    let term = terminal_stream(mb * 1_000_000);
    let rdp = rdp_stream(mb * 1_000_000);
    for level in [1, 3, Compression::TEXT.level] {
        let text = Compression {
            level,
            ..Compression::TEXT
        };
        report("terminal", &term, text);
    }
    for level in [1, Compression::GRAPHICAL.level] {
        let graphical = Compression {
            level,
            ..Compression::GRAPHICAL
        };
        report("rdp-bitmap", &rdp, graphical);
    }
    admin_hour(FORMAT_VERSION_1);
    admin_hour(FORMAT_VERSION);
    writer_end_to_end(&term);
}
