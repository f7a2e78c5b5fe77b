//! Graphical replay figures: decode speed (× real time) of one-hour RDP and VNC recordings,
//! and seek time anywhere in them.
//!
//! Run: `cargo bench -p player --bench graphical`.
//! - RDP: the real xfreerdp→Sekisho→xrdp recording in `tests/data` (xclock ticking on an
//!   Xvnc desktop, bitmaps as xrdp sends them), its active phase repeated to fill an hour.
//! - VNC: a synthetic hour of raw 64x64 updates on a 1024x768 screen, one a second.
//!
//! Recordings are built with the recorder's own encoder, so the figures include zstd and
//! record decoding. Seek figures: both restore the nearest keyframe before the moment and
//! decode forward (RDP lays its keyframes when it opens; VNC as decoding first passes each
//! interval, here by the first decode to the end, so the seeks are the cached case).

// A benchmark is a test harness: a failure here is a bench failure.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use player::export::image::VncReplay;
use player::rdp::RdpReplay;
use player::rfb::{
    Encoding, PixelFormat, ServerInit, encode_rect_header, encode_server_init, encode_update_header,
};
use recorder::format::{ChannelId, Direction, Record, RecordKind, encode_recording};
use recorder::reader::Recording;
use recorder::signing::RecordingKey;

const S: u64 = 1_000_000;
const HOUR: u64 = 3600 * S;

fn rdp_hour() -> Vec<u8> {
    let fixture: &[u8] = include_bytes!("../tests/data/rdp-xrdp.skrec");
    let rec = Recording::parse(fixture).unwrap();
    let header = rec.header().header.clone();
    let records: Vec<Record> = rec.records().map(|r| r.unwrap()).collect();
    // The active phase starts at the first fast-path PDU from the server.
    let active = records
        .iter()
        .position(|r| {
            matches!(&r.kind, RecordKind::Data { direction: Direction::ServerToClient, bytes, .. }
                if bytes.first().is_some_and(|b| b & 3 == 0))
        })
        .unwrap();
    let t0 = records[active].at_us;
    let span = records.last().unwrap().at_us - t0 + 100_000;
    let mut out: Vec<Record> = records[..active].to_vec();
    let mut offset = 0;
    while t0 + offset < HOUR {
        for r in &records[active..] {
            if let RecordKind::Data {
                direction: Direction::ServerToClient,
                ..
            } = r.kind
            {
                let at = r.at_us + offset;
                if at >= HOUR {
                    break;
                }
                out.push(Record {
                    at_us: at,
                    kind: r.kind.clone(),
                });
            }
        }
        offset += span;
    }
    let key = RecordingKey::generate().unwrap();
    encode_recording(&header, &out, 1 << 20, HOUR, key.signing_key()).unwrap()
}

fn vnc_hour() -> Vec<u8> {
    let init = ServerInit {
        width: 1024,
        height: 768,
        pixel_format: PixelFormat::RGB888_LE,
        name: "QEMU (bench)".into(),
    };
    let mut raw = Vec::new();
    encode_server_init(&init, &mut raw).unwrap();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let header = serde_json::from_value(serde_json::json!({
        "session_id": "01936f5e-0000-7000-8000-000000000043",
        "protocol": "console-vnc",
        "user": "tanaka",
        "contractor": "acme",
        "source": "127.0.10.11",
        "target": "web01",
        "start_unix_us": 1_764_061_200_000_000i64,
        "metadata": { "rfb.server_init": hex },
    }))
    .unwrap();
    let mut records = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for s in 0..3600u64 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let (x, y) = ((seed % 960) as u16, ((seed >> 16) % 704) as u16);
        let mut m = Vec::new();
        encode_update_header(1, &mut m);
        encode_rect_header(x, y, 64, 64, Encoding::Raw, &mut m);
        let c = (seed >> 32) as u8;
        for i in 0..64 * 64u32 {
            m.extend_from_slice(&[c, (i % 256) as u8, c ^ 0x55, 0]);
        }
        records.push(Record {
            at_us: s * S,
            kind: RecordKind::Data {
                direction: Direction::ServerToClient,
                channel: ChannelId(0),
                bytes: Bytes::from(m),
            },
        });
    }
    let key = RecordingKey::generate().unwrap();
    encode_recording(&header, &records, 1 << 20, HOUR, key.signing_key()).unwrap()
}

fn seeks(mut seek: impl FnMut(u64)) -> (Duration, Duration) {
    let times: Vec<u64> = [0.73, 0.12, 0.99, 0.41, 0.05, 0.88, 0.5, 0.27]
        .iter()
        .map(|f| (HOUR as f64 * f) as u64)
        .collect();
    let mut total = Duration::ZERO;
    let mut worst = Duration::ZERO;
    for t in &times {
        let t0 = Instant::now();
        seek(*t);
        let d = t0.elapsed();
        total += d;
        worst = worst.max(d);
    }
    (total / times.len() as u32, worst)
}

fn main() {
    let rdp = rdp_hour();
    let t0 = Instant::now();
    let mut r = RdpReplay::open(&rdp).unwrap();
    let open = t0.elapsed();
    let st = r.stats().clone();
    assert_eq!(st.errors, 0, "{st:?}");
    println!(
        "rdp: one hour, {} server PDUs, {:.1} MiB of PDUs ({:.2} MiB file), {} keyframes",
        st.server_pdus,
        st.server_bytes as f64 / 1048576.0,
        rdp.len() as f64 / 1048576.0,
        st.keyframes
    );
    println!(
        "rdp: decode {:.2} s = {:.0}x real time",
        open.as_secs_f64(),
        3600.0 / open.as_secs_f64()
    );
    let (avg, worst) = seeks(|t| {
        r.frame_at(t).unwrap();
    });
    println!("rdp: seek in the hour: mean {avg:.2?}, worst {worst:.2?}");

    let vnc = vnc_hour();
    let t0 = Instant::now();
    let mut v = VncReplay::open(&vnc).unwrap();
    v.frame_at(HOUR).unwrap();
    let whole = t0.elapsed();
    println!(
        "vnc: one hour, 3600 raw 64x64 updates ({:.2} MiB file): decode {:.2} s = {:.0}x real time",
        vnc.len() as f64 / 1048576.0,
        whole.as_secs_f64(),
        3600.0 / whole.as_secs_f64()
    );
    assert_eq!(v.errors, 0);
    println!(
        "vnc: {} keyframes, {:.2} MiB of keyframes",
        v.keyframe_count(),
        v.keyframe_bytes() as f64 / 1048576.0
    );
    let (avg, worst) = seeks(|t| {
        v.frame_at(t).unwrap();
    });
    println!("vnc: seek in the hour (keyframes): mean {avg:.2?}, worst {worst:.2?}");
}
