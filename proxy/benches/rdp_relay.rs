//! RDP relay cost, in process, one core: what Sekisho's sans-IO MCS-phase machine
//! ([`proxy::rdp::mitm::Mitm`]) adds per PDU on a synthetic session stream, against a plain
//! relay that only splits frames and copies them (what any TCP relay must do at least).
//!
//! It does NOT measure TLS, CredSSP, the sockets or the recording writer: a through-Sekisho vs
//! direct run against a real xrdp with xfreerdp is the e2e suite's job and too heavy for a
//! benchmark here. Figures:
//!
//! - `rdp.setup_us`: the connection sequence through the machines (the acceptor answering the
//!   client up to its Client Info, the connector replaying it to the server with the injected
//!   credential), per session;
//! - `rdp.relay_*`: MB/s and PDUs/s over a stream of fast-path bitmap updates (server), slow-
//!   path I/O PDUs (server), fast-path input (client) and drdynvc data, through the machine
//!   versus split-and-copy, and their ratio.
//!
//! Run `cargo bench -p proxy --bench rdp_relay` (`-- --quick` for a short run). Every figure is
//! also printed as a `BENCH name=value unit` line for `scripts/bench`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::borrow::Cow;
use std::hint::black_box;
use std::time::{Duration, Instant};

use ironrdp_core::encode_vec;
use ironrdp_pdu::mcs::{McsMessage, SendDataIndication, SendDataRequest};
use ironrdp_pdu::x224::X224;
use proxy::rdp::framing;
use proxy::rdp::mitm::{Action, Mitm};

#[allow(dead_code)]
#[path = "../../fuzz/src/bodies.rs"]
mod bodies;

/// A relay machine after the whole connection sequence (acceptor toward the client, connector
/// toward the server, the credential injected).
fn active(sequence: &[(bool, Vec<u8>)]) -> Mitm {
    let mut stage = bodies::Stage::new();
    for (client, frame) in sequence {
        assert!(stage.feed(2, *client, frame), "the sequence was refused");
    }
    match stage {
        bodies::Stage::Relay(m) => *m,
        _ => panic!("the sequence did not reach the relay phase"),
    }
}

/// A fast-path frame of `len` bytes in all (header included), payload filled with `fill`.
fn fast_path(len: usize, fill: u8) -> Vec<u8> {
    assert!((4..0x8000).contains(&len));
    let mut v = vec![0x00, 0x80 | (len >> 8) as u8, len as u8];
    v.resize(len, fill);
    v
}

fn indication(channel: u16, data: Vec<u8>) -> Vec<u8> {
    encode_vec(&X224(McsMessage::SendDataIndication(SendDataIndication {
        initiator_id: 1002,
        channel_id: channel,
        user_data: Cow::Owned(data),
    })))
    .unwrap()
}

fn request(channel: u16, data: Vec<u8>) -> Vec<u8> {
    encode_vec(&X224(McsMessage::SendDataRequest(SendDataRequest {
        initiator_id: bodies::USER_CHANNEL,
        channel_id: channel,
        user_data: Cow::Owned(data),
    })))
    .unwrap()
}

/// A busy desktop: per round, 8 bitmap updates of 8–16 KB, 2 slow-path I/O PDUs from the
/// server, 6 input events and one drdynvc data PDU from the client. (client?, bytes) in order.
fn stream(rounds: usize) -> Vec<(bool, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dvc = vec![3, 0, 0, 0, 3, 0, 0, 0];
    dvc.extend_from_slice(&[0x30, 8, 1, 2, 3, 4]);
    dvc[0] = (dvc.len() - 8) as u8;
    for r in 0..rounds {
        for k in 0..8 {
            out.push((false, fast_path(8192 + ((r * 8 + k) * 997) % 8192, k as u8)));
        }
        for _ in 0..2 {
            out.push((false, indication(bodies::IO_CHANNEL, vec![0x17; 180])));
        }
        for _ in 0..6 {
            out.push((true, fast_path(12, 0x01)));
        }
        out.push((true, request(1005, dvc.clone())));
    }
    out
}

/// Split each frame out of its own buffer as the relay does, and hand it on (copy).
fn plain(stream: &[(bool, Vec<u8>)]) -> usize {
    let mut n = 0;
    for (_, bytes) in stream {
        if let Ok(Some((_, len))) = framing::decode(bytes) {
            let out = bytes[..len].to_vec();
            n += black_box(out).len();
        }
    }
    n
}

/// The same through the machine, with every action built as the relay would carry it out.
fn through(m: &mut Mitm, stream: &[(bool, Vec<u8>)]) -> usize {
    let mut n = 0;
    for (client, bytes) in stream {
        if let Ok(Some((_, len))) = framing::decode(bytes) {
            let frame = &bytes[..len];
            let actions = if *client {
                m.client_frame(frame)
            } else {
                m.server_frame(frame)
            }
            .unwrap();
            for a in black_box(actions) {
                if let Action::ToServer(b) | Action::ToClient(b) = a {
                    n += b.len();
                }
            }
        }
    }
    n
}

fn best<F: FnMut() -> usize>(reps: usize, mut f: F) -> Duration {
    (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            black_box(f());
            t0.elapsed()
        })
        .min()
        .unwrap()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let prefix = bodies::sequence().unwrap();

    // Set-up: the connection sequence through a new machine, many times.
    let sessions = if quick { 2_000 } else { 20_000 };
    let t0 = Instant::now();
    for _ in 0..sessions {
        black_box(active(&prefix));
    }
    let setup_us = t0.elapsed().as_secs_f64() * 1e6 / sessions as f64;

    let rounds = if quick { 200 } else { 2_000 };
    let s = stream(rounds);
    let bytes: usize = s.iter().map(|(_, b)| b.len()).sum();
    let pdus = s.len();
    let reps = if quick { 3 } else { 7 };
    let direct = best(reps, || plain(&s));
    let mut m = active(&prefix);
    let via = best(reps, || through(&mut m, &s));
    let mb = bytes as f64 / 1e6;
    let (d_mbs, v_mbs) = (mb / direct.as_secs_f64(), mb / via.as_secs_f64());
    let per_pdu_ns = (via.as_secs_f64() - direct.as_secs_f64()) * 1e9 / pdus as f64;

    println!("RDP MITM machine, in process, one core (no TLS, sockets or recording writer):");
    println!("  connection sequence through the machine: {setup_us:.1} us per session");
    println!(
        "  relay stream: {pdus} PDUs, {mb:.1} MB (fast-path bitmaps, slow-path I/O, input, drdynvc)"
    );
    println!(
        "    split and copy only : {d_mbs:>9.1} MB/s  {:>10.0} PDU/s",
        pdus as f64 / direct.as_secs_f64()
    );
    println!(
        "    through the machine : {v_mbs:>9.1} MB/s  {:>10.0} PDU/s  ({:.2}x the copy's time, +{per_pdu_ns:.0} ns per PDU)",
        pdus as f64 / via.as_secs_f64(),
        via.as_secs_f64() / direct.as_secs_f64()
    );
    println!("BENCH rdp.setup_us={setup_us:.1} us");
    println!("BENCH rdp.relay_copy_mb_s={d_mbs:.1} MB/s");
    println!("BENCH rdp.relay_mitm_mb_s={v_mbs:.1} MB/s");
    println!(
        "BENCH rdp.relay_mitm_pdu_s={:.0} PDU/s",
        pdus as f64 / via.as_secs_f64()
    );
    println!(
        "BENCH rdp.relay_time_ratio={:.2} x",
        via.as_secs_f64() / direct.as_secs_f64()
    );
    println!("BENCH rdp.relay_extra_ns_per_pdu={per_pdu_ns:.0} ns");
}
