//! VNC relay figures, same run, direct versus through Sekisho's relay (in-process, with the
//! real policy, catalogue (SQLite) and recording writer):
//!
//! - input round trip: a KeyEvent from the viewer until the console's answer arrives;
//! - update throughput: full-screen raw 32-bit 1024x768 updates, MiB/s;
//! - recording bytes per hour: an idle console (incremental requests, no change) and a busy
//!   one (a 128x128 region changing at 20 updates/s, like typing with a blinking cursor).
//!
//! The console is a small RFB server in this file that answers each KeyEvent with a Bell and
//! each update request with a raw update, because QEMU cannot be made to echo input or change
//! its screen on demand; the e2e tests use QEMU itself. Run:
//! `cargo bench -p proxy --bench vnc_relay` (add `-- --quick` for a short run).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use player::rfb::{self, ClientMsg, Encoding, PixelFormat, ServerInit};
use proxy::services::{Services, ServicesConfig};
use proxy::vnc::tickets::{TicketStore, vnc_auth_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const W: u16 = 1024;
const H: u16 = 768;
const DESKTOP: &str = "127.0.10.11";

/// The fake console: None security, 1024x768 RGB888; KeyEvent -> Bell; non-incremental
/// request -> full raw update; incremental request -> a 128x128 raw update if `busy`.
async fn console(listener: TcpListener, busy: bool) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            return;
        };
        s.set_nodelay(true).ok();
        tokio::spawn(async move {
            s.write_all(b"RFB 003.008\n").await?;
            let mut v = [0u8; 12];
            s.read_exact(&mut v).await?;
            s.write_all(&[1, 1]).await?;
            let mut b = [0u8; 1];
            s.read_exact(&mut b).await?;
            s.write_all(&0u32.to_be_bytes()).await?;
            s.read_exact(&mut b).await?;
            let mut init = Vec::new();
            rfb::encode_server_init(
                &ServerInit {
                    width: W,
                    height: H,
                    pixel_format: PixelFormat::RGB888_LE,
                    name: "bench".into(),
                },
                &mut init,
            )
            .unwrap();
            s.write_all(&init).await?;
            let full = {
                let mut u = Vec::new();
                rfb::encode_update_header(1, &mut u);
                rfb::encode_rect_header(0, 0, W, H, Encoding::Raw, &mut u);
                u.resize(u.len() + usize::from(W) * usize::from(H) * 4, 0x5a);
                u
            };
            let mut frame = 0u8;
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 65536];
            loop {
                let n = s.read(&mut chunk).await?;
                if n == 0 {
                    return Ok::<(), std::io::Error>(());
                }
                buf.extend_from_slice(&chunk[..n]);
                let mut pos = 0;
                while let Some((msg, used)) = rfb::decode_client(&buf[pos..]).unwrap() {
                    pos += used;
                    match msg {
                        ClientMsg::KeyEvent { .. } => s.write_all(&[2]).await?,
                        ClientMsg::FramebufferUpdateRequest {
                            incremental: false, ..
                        } => s.write_all(&full).await?,
                        ClientMsg::FramebufferUpdateRequest {
                            incremental: true, ..
                        } if busy => {
                            frame = frame.wrapping_add(1);
                            let mut u = Vec::new();
                            rfb::encode_update_header(1, &mut u);
                            rfb::encode_rect_header(64, 64, 128, 128, Encoding::Raw, &mut u);
                            // A moving pattern, so the recording's compression sees changes.
                            u.extend((0..128u32 * 128).flat_map(|i| {
                                let v = (i.wrapping_mul(2_654_435_761) >> 24) as u8 ^ frame;
                                [v, v.wrapping_add(frame), frame, 0]
                            }));
                            s.write_all(&u).await?;
                        }
                        _ => {}
                    }
                }
                buf.drain(..pos);
            }
        });
    }
}

struct Viewer {
    s: TcpStream,
}

impl Viewer {
    /// Connects from the contractor's desktop; `ticket` = through Sekisho (VNC auth).
    async fn connect(addr: SocketAddr, ticket: Option<&str>) -> Viewer {
        let sock = TcpSocket::new_v4().unwrap();
        sock.bind(format!("{DESKTOP}:0").parse().unwrap()).unwrap();
        let mut s = sock.connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut v = [0u8; 12];
        s.read_exact(&mut v).await.unwrap();
        s.write_all(b"RFB 003.008\n").await.unwrap();
        let mut n = [0u8; 1];
        s.read_exact(&mut n).await.unwrap();
        let mut types = vec![0u8; usize::from(n[0])];
        s.read_exact(&mut types).await.unwrap();
        match ticket {
            Some(t) => {
                s.write_all(&[2]).await.unwrap();
                let mut ch = [0u8; 16];
                s.read_exact(&mut ch).await.unwrap();
                s.write_all(&vnc_auth_response(t.as_bytes(), &ch))
                    .await
                    .unwrap();
            }
            None => s.write_all(&[1]).await.unwrap(),
        }
        let mut r = [0u8; 4];
        s.read_exact(&mut r).await.unwrap();
        assert_eq!(r, [0; 4], "security result");
        s.write_all(&[1]).await.unwrap();
        let mut si = [0u8; 24];
        s.read_exact(&mut si).await.unwrap();
        let nl = u32::from_be_bytes(si[20..24].try_into().unwrap());
        let mut name = vec![0u8; nl as usize];
        s.read_exact(&mut name).await.unwrap();
        let mut enc = Vec::new();
        rfb::encode_client(&ClientMsg::SetEncodings(vec![0]), &mut enc).unwrap();
        s.write_all(&enc).await.unwrap();
        Viewer { s }
    }

    async fn send(&mut self, m: &ClientMsg) {
        let mut out = Vec::new();
        rfb::encode_client(m, &mut out).unwrap();
        self.s.write_all(&out).await.unwrap();
    }

    /// Reads one update of one raw rectangle (the only kind the fake console sends).
    async fn read_update(&mut self) -> usize {
        let mut h = [0u8; 16];
        self.s.read_exact(&mut h).await.unwrap();
        assert_eq!(h[0], 0);
        let w = u16::from_be_bytes([h[8], h[9]]) as usize;
        let hh = u16::from_be_bytes([h[10], h[11]]) as usize;
        let mut px = vec![0u8; w * hh * 4];
        self.s.read_exact(&mut px).await.unwrap();
        16 + px.len()
    }
}

struct Bench {
    services: Arc<Services>,
    tickets: Arc<TicketStore>,
    sekisho: SocketAddr,
    console: SocketAddr,
    dir: tempfile::TempDir,
}

async fn setup(busy: bool) -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let console_l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let console_addr = console_l.local_addr().unwrap();
    tokio::spawn(console(console_l, busy));
    let inv = format!(
        r#"timezone = "Asia/Tokyo"
[[vdi_pool]]
name = "vdi"
path = "internet-vpn"
networks = ["127.0.10.0/24"]
[zones]
business = ["internet-vpn"]
[[contractor]]
id = "acme"
name = "ACME"
[[user]]
name = "tanaka"
contractor = "acme"
role = "contractor"
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$IvBzMLDZyFbDrkZ3n1bk7w$8NW46C5ZNmNfiHNU+fwLLsnh9hyP7iNV8iEC4MEm5fU"
desktops = ["{DESKTOP}"]
[[hypervisor]]
name = "kvm01"
address = "127.0.0.1"
[[target]]
name = "web01"
address = "127.0.20.11"
kind = "vm"
zone = "business"
hypervisor = "kvm01"
vnc_console = "{console_addr}"
[[contract]]
contractor = "acme"
targets = ["web01"]
valid_from = "2020-01-01"
valid_until = "2099-12-31"
"#
    );
    let inventory = policy::Inventory::from_toml(&inv, "bench.toml").unwrap();
    let db = format!("sqlite://{}/cat.db", dir.path().display());
    let catalogue = recorder::catalogue::Catalogue::connect(&db).await.unwrap();
    let instance = recorder::catalogue::InstanceId::new("bench").unwrap();
    catalogue
        .heartbeat(&instance, chrono::Utc::now())
        .await
        .unwrap();
    std::fs::create_dir_all(dir.path().join("rec")).unwrap();
    let shutdown = CancellationToken::new();
    let services = Services::new(ServicesConfig {
        inventory,
        secrets: None,
        catalogue,
        recordings: recorder::LocalDir::new(dir.path().join("rec")).into(),
        signing_key: recorder::RecordingKey::generate().unwrap(),
        instance,
        data_dir: dir.path().to_path_buf(),
        tls: None,
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
    });
    let tickets = Arc::new(TicketStore::default());
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sekisho = l.local_addr().unwrap();
    tokio::spawn(proxy::vnc::serve_with(
        l,
        Arc::clone(&services),
        Arc::clone(&tickets),
        shutdown,
    ));
    Bench {
        services,
        tickets,
        sekisho,
        console: console_addr,
        dir,
    }
}

impl Bench {
    async fn viewer(&self, through: bool) -> Viewer {
        if through {
            let t = self
                .tickets
                .issue(
                    "tanaka",
                    "web01",
                    DESKTOP.parse().unwrap(),
                    chrono::Utc::now(),
                )
                .unwrap();
            Viewer::connect(self.sekisho, Some(t.expose())).await
        } else {
            Viewer::connect(self.console, None).await
        }
    }

    fn recordings_size(&self) -> u64 {
        fn walk(p: &std::path::Path) -> u64 {
            std::fs::read_dir(p)
                .map(|d| {
                    d.flatten()
                        .map(|e| {
                            if e.path().is_dir() {
                                walk(&e.path())
                            } else {
                                e.metadata().map_or(0, |m| m.len())
                            }
                        })
                        .sum()
                })
                .unwrap_or(0)
        }
        walk(&self.dir.path().join("rec"))
    }
}

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * p) as usize]
}

async fn rtt(b: &Bench, through: bool, n: usize) -> (Duration, Duration) {
    let mut v = b.viewer(through).await;
    let mut samples = Vec::with_capacity(n);
    let mut bell = [0u8; 1];
    for i in 0..n {
        let t = Instant::now();
        v.send(&ClientMsg::KeyEvent {
            down: i % 2 == 0,
            key: 0x61,
        })
        .await;
        v.s.read_exact(&mut bell).await.unwrap();
        samples.push(t.elapsed());
    }
    (pct(&mut samples, 0.5), pct(&mut samples, 0.99))
}

async fn throughput(b: &Bench, through: bool, n: usize) -> f64 {
    let mut v = b.viewer(through).await;
    let t = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        v.send(&ClientMsg::FramebufferUpdateRequest {
            incremental: false,
            x: 0,
            y: 0,
            width: W,
            height: H,
        })
        .await;
        bytes += v.read_update().await;
    }
    bytes as f64 / 1_048_576.0 / t.elapsed().as_secs_f64()
}

/// Recording growth per hour for a viewer polling at 20 requests/s for `secs`.
async fn recording_per_hour(busy: bool, secs: f64) -> f64 {
    let b = setup(busy).await;
    let mut v = b.viewer(true).await;
    // Let the session open and the first keyframe land, then measure only the steady state:
    // the difference between two sessions of different lengths cancels fixed costs.
    let mut per_session = Vec::new();
    for length in [secs / 4.0, secs] {
        let before = b.recordings_size();
        let start = Instant::now();
        while start.elapsed().as_secs_f64() < length {
            v.send(&ClientMsg::FramebufferUpdateRequest {
                incremental: true,
                x: 0,
                y: 0,
                width: W,
                height: H,
            })
            .await;
            if busy {
                v.read_update().await;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        drop(v);
        // Wait for the session to be sealed.
        tokio::time::sleep(Duration::from_millis(800)).await;
        per_session.push((length, b.recordings_size() - before));
        v = b.viewer(true).await;
    }
    drop(v);
    let (l1, s1) = per_session[0];
    let (l2, s2) = per_session[1];
    let _ = &b.services;
    (s2 as f64 - s1 as f64) / (l2 - l1) * 3600.0
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = setup(false).await;
        let n_rtt = if quick { 300 } else { 2000 };
        let n_fb = if quick { 20 } else { 100 };
        let (d50, d99) = rtt(&b, false, n_rtt).await;
        let (s50, s99) = rtt(&b, true, n_rtt).await;
        println!("input round trip (KeyEvent -> reply), {n_rtt} samples:");
        println!(
            "  direct   p50 {:>7.1} us  p99 {:>7.1} us",
            d50.as_secs_f64() * 1e6,
            d99.as_secs_f64() * 1e6
        );
        println!(
            "  sekisho  p50 {:>7.1} us  p99 {:>7.1} us",
            s50.as_secs_f64() * 1e6,
            s99.as_secs_f64() * 1e6
        );
        let dt = throughput(&b, false, n_fb).await;
        let st = throughput(&b, true, n_fb).await;
        println!("update throughput (raw 1024x768x32 full-screen updates, {n_fb}):");
        println!("  direct   {dt:>8.1} MiB/s");
        println!(
            "  sekisho  {st:>8.1} MiB/s ({:.0} % of direct)",
            st / dt * 100.0
        );
        let secs = if quick { 4.0 } else { 20.0 };
        let idle = recording_per_hour(false, secs).await;
        let busy = recording_per_hour(true, secs).await;
        println!("recording growth (20 requests/s, measured over {secs} s):");
        println!("  idle console  {:>10.1} KiB/hour", idle / 1024.0);
        println!(
            "  busy console  {:>10.1} MiB/hour (128x128 region changing 20x/s)",
            busy / 1_048_576.0
        );
    });
}
