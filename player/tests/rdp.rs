//! The RDP decoder over a real recording: `data/rdp-xrdp.skrec` was made by
//! `player_rdp_frame_matches_the_server_screen` (tests/tests/e2e/player.rs): xfreerdp 2 →
//! Sekisho → xrdp 0.9 (Xvnc session showing xclock), 1024x768 at 32 bpp, about 12 s.

// Test code unwraps: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use player::export::{Graphical, export_png};
use player::rdp::RdpReplay;

const FIXTURE: &[u8] = include_bytes!("data/rdp-xrdp.skrec");

#[test]
fn negotiated_state_is_recovered_from_the_recording() {
    let r = RdpReplay::open(FIXTURE).unwrap();
    let n = r.negotiated();
    assert_eq!(n.client_desktop, Some((1024, 768)));
    assert_eq!(n.client_color_depth, Some(32));
    assert_eq!(n.server_desktop, Some((1024, 768)));
    assert!(n.io_channel.is_some(), "{n:?}");
    assert!(n.user_channel.is_some(), "{n:?}");
    assert!(n.share_id.is_some(), "{n:?}");
    // Sekisho cleared the Client Info compression flag; stripped channels are not requested.
    assert_eq!(n.bulk_compression, Some(false));
    let names: Vec<&str> = n.channels.iter().map(|c| c.0.as_str()).collect();
    assert!(
        !names.contains(&"cliprdr") && !names.contains(&"rdpdr"),
        "{names:?}"
    );
    assert!(n.channels.iter().all(|c| c.1.is_some()), "{n:?}");
}

#[test]
fn every_server_pdu_decodes_and_the_screen_is_drawn() {
    let mut r = RdpReplay::open(FIXTURE).unwrap();
    let stats = r.stats().clone();
    assert_eq!(stats.errors, 0, "{stats:?}");
    assert!(stats.server_pdus > 10, "{stats:?}");
    let end = r.end_us();
    let f = r.frame_at(end).unwrap();
    assert_eq!((f.width, f.height), (1024, 768));
    let distinct: std::collections::BTreeSet<[u8; 4]> = f
        .rgba
        .chunks_exact(4)
        .map(|p| p.try_into().unwrap())
        .collect();
    assert!(
        distinct.len() > 2,
        "a screen with xclock has more than two colours"
    );
    // Before the connection is active the screen is still black.
    let start = r.frame_at(0).unwrap();
    assert!(start.rgba.chunks_exact(4).all(|p| p == [0, 0, 0, 255]));
}

#[test]
fn the_clock_moves_and_seeking_back_and_forth_agrees_with_decoding_in_order() {
    let mut keyed = RdpReplay::open_with_keyframe_interval(FIXTURE, 2048).unwrap();
    let mut plain = RdpReplay::open_with_keyframe_interval(FIXTURE, usize::MAX).unwrap();
    assert!(keyed.stats().keyframes > 3, "{:?}", keyed.stats());
    let end = keyed.end_us();
    let times: Vec<u64> = [0.9, 0.3, 0.6, 0.95, 0.5, 1.0]
        .iter()
        .map(|f| (end as f64 * f) as u64)
        .collect();
    let mut in_order = Vec::new();
    let mut sorted = times.clone();
    sorted.sort_unstable();
    for t in &sorted {
        in_order.push((*t, plain.frame_at(*t).unwrap()));
    }
    for t in &times {
        let expected = &in_order.iter().find(|(u, _)| u == t).unwrap().1;
        assert!(
            keyed.frame_at(*t).unwrap() == *expected,
            "frame at {t} differs"
        );
    }
    // xclock's second hand: the screen two seconds apart is not the same.
    let a = plain.frame_at(end - 4_000_000).unwrap();
    let b = plain.frame_at(end - 1_000_000).unwrap();
    assert_ne!(a, b);
}

#[test]
fn png_export_of_the_recording() {
    let mut png = Vec::new();
    export_png(FIXTURE, None, &mut png).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let mut g = Graphical::open(FIXTURE).unwrap();
    assert!(matches!(g, Graphical::Rdp(_)));
    assert_eq!(g.frame_at(0).unwrap().width, 1024);
}

/// xrdp sends pointer shapes and the client its mouse: drawn when asked, only around the
/// pointer's position; the screen itself is unchanged.
#[test]
fn the_pointer_is_drawn_only_when_asked_and_only_where_it_is() {
    let mut r = RdpReplay::open(FIXTURE).unwrap();
    let end = r.end_us();
    let plain = r.frame_at(end).unwrap();
    r.set_draw_pointer(true);
    let drawn = r.frame_at(end).unwrap();
    let (px, py) = r
        .pointer_position()
        .expect("pointer position in the recording");
    let w = usize::from(drawn.width);
    let mut differing = 0;
    for (i, (a, b)) in plain.rgba.chunks(4).zip(drawn.rgba.chunks(4)).enumerate() {
        if a != b {
            differing += 1;
            let (x, y) = (i % w, i / w);
            // Within a pointer's size (at most 384 px, the large pointer) from its hotspot.
            assert!(
                x.abs_diff(usize::from(px)) < 384 && y.abs_diff(usize::from(py)) < 384,
                "pixel ({x}, {y}) changed, pointer at ({px}, {py})"
            );
        }
    }
    assert!(differing > 0, "no pointer drawn at ({px}, {py})");
    r.set_draw_pointer(false);
    assert_eq!(r.frame_at(end).unwrap(), plain);
}
