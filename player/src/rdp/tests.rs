// Test helpers unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use bytes::Bytes;
use ironrdp_core::encode_vec;
use ironrdp_pdu::fast_path::{
    EncryptionFlags, FastPathHeader, FastPathUpdatePdu, Fragmentation, UpdateCode,
};
use recorder::format::{ChannelId, Header, Record, encode_recording};
use recorder::signing::RecordingKey;

use super::*;

const S: u64 = 1_000_000;

fn header(meta: &[(&str, &str)]) -> Header {
    let metadata: serde_json::Map<String, serde_json::Value> = meta
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String((*v).to_owned())))
        .collect();
    serde_json::from_value(serde_json::json!({
        "session_id": "01936f5e-0000-7000-8000-000000000042",
        "protocol": "rdp",
        "user": "tanaka",
        "contractor": "acme",
        "source": "127.0.10.11",
        "target": "srv01",
        "start_unix_us": 1_764_061_200_000_000i64,
        "metadata": metadata,
    }))
    .unwrap()
}

/// A fast-path frame with one uncompressed 32 bpp bitmap of a single colour (BGRX).
pub(crate) fn fill(x: u16, y: u16, w: u16, h: u16, bgrx: [u8; 4]) -> Vec<u8> {
    let data: Vec<u8> = (0..usize::from(w) * usize::from(h))
        .flat_map(|_| bgrx)
        .collect();
    let body = encode_vec(&BitmapUpdateData {
        rectangles: vec![BitmapData {
            rectangle: InclusiveRectangle {
                left: x,
                top: y,
                right: x + w - 1,
                bottom: y + h - 1,
            },
            width: w,
            height: h,
            bits_per_pixel: 32,
            compression_flags: BitmapCompression::empty(),
            compressed_data_header: None,
            bitmap_data: &data,
        }],
    })
    .unwrap();
    let update = encode_vec(&FastPathUpdatePdu {
        fragmentation: Fragmentation::Single,
        update_code: UpdateCode::Bitmap,
        compression_flags: None,
        compression_type: None,
        data: &body,
    })
    .unwrap();
    let mut frame =
        encode_vec(&FastPathHeader::new(EncryptionFlags::empty(), update.len())).unwrap();
    frame.extend_from_slice(&update);
    frame
}

pub(crate) fn recording(w: u16, h: u16, frames: &[(u64, Vec<u8>)], end_us: u64) -> Vec<u8> {
    let (ws, hs) = (w.to_string(), h.to_string());
    let hdr = header(&[("rdp.desktop-width", &ws), ("rdp.desktop-height", &hs)]);
    let records: Vec<Record> = frames
        .iter()
        .map(|(at, b)| Record {
            at_us: *at,
            kind: RecordKind::Data {
                direction: Direction::ServerToClient,
                channel: ChannelId(0),
                bytes: Bytes::copy_from_slice(b),
            },
        })
        .collect();
    let key = RecordingKey::generate().unwrap();
    encode_recording(&hdr, &records, 64 * 1024, end_us, key.signing_key()).unwrap()
}

fn px(f: &RgbaFrame, x: usize, y: usize) -> [u8; 4] {
    let i = (y * usize::from(f.width) + x) * 4;
    f.rgba[i..i + 4].try_into().unwrap()
}

#[test]
fn fast_path_bitmaps_paint_the_screen_in_time_order() {
    let rec = recording(
        64,
        48,
        &[
            (S, fill(0, 0, 64, 48, [255, 0, 0, 0])),     // blue screen
            (2 * S, fill(10, 10, 4, 4, [0, 0, 255, 0])), // red square
        ],
        3 * S,
    );
    let mut r = RdpReplay::open(&rec).unwrap();
    assert_eq!(r.stats().errors, 0, "{:?}", r.stats());
    let f0 = r.frame_at(0).unwrap();
    assert_eq!((f0.width, f0.height), (64, 48));
    assert_eq!(px(&f0, 0, 0), [0, 0, 0, 255]);
    let f1 = r.frame_at(S).unwrap();
    assert_eq!(px(&f1, 11, 11), [0, 0, 255, 255]);
    let f2 = r.frame_at(3 * S).unwrap();
    assert_eq!(px(&f2, 11, 11), [255, 0, 0, 255]);
    assert_eq!(px(&f2, 9, 9), [0, 0, 255, 255]);
    // Back again.
    assert_eq!(r.frame_at(S).unwrap(), f1);
}

#[test]
fn seeking_through_keyframes_gives_the_same_frames_as_decoding_in_order() {
    let mut frames = Vec::new();
    for i in 0..200u16 {
        let c = (i % 251) as u8;
        frames.push((
            u64::from(i) * S / 10,
            fill(
                (i * 7) % 100,
                (i * 3) % 60,
                20,
                16,
                [c, c.wrapping_mul(3), 255 - c, 0],
            ),
        ));
    }
    let rec = recording(120, 80, &frames, 21 * S);
    let mut plain = RdpReplay::open_with_keyframe_interval(&rec, usize::MAX).unwrap();
    let mut keyed = RdpReplay::open_with_keyframe_interval(&rec, 4096).unwrap();
    assert_eq!(plain.stats().keyframes, 0);
    assert!(keyed.stats().keyframes > 10, "{:?}", keyed.stats());
    for t in [15 * S, 2 * S, 19 * S + S / 2, 0, 7 * S, 21 * S] {
        assert_eq!(
            keyed.frame_at(t).unwrap(),
            plain.frame_at(t).unwrap(),
            "at {t}"
        );
    }
}

#[test]
fn other_protocols_and_hostile_sizes_are_refused() {
    let rec = recording(9000, 10, &[], S);
    assert!(matches!(
        RdpReplay::open(&rec),
        Err(RdpError::TooLarge(9000, 10))
    ));
    let hdr = header(&[]);
    let key = RecordingKey::generate().unwrap();
    let empty = encode_recording(&hdr, &[], 1024, 0, key.signing_key()).unwrap();
    assert!(matches!(RdpReplay::open(&empty), Err(RdpError::NoDesktop)));
}

#[test]
fn garbage_pdus_are_skipped_and_counted() {
    let rec = recording(
        32,
        32,
        &[
            (0, vec![0x00, 0x05, 0xff, 0xff, 0xff]),
            (1, fill(0, 0, 32, 32, [0, 255, 0, 0])),
            (
                2,
                vec![0x03, 0x00, 0x00, 0x09, 0x02, 0xf0, 0x80, 0x68, 0x00],
            ),
        ],
        S,
    );
    let mut r = RdpReplay::open(&rec).unwrap();
    assert!(r.stats().errors >= 1);
    assert_eq!(px(&r.frame_at(S).unwrap(), 5, 5), [0, 255, 0, 255]);
}

/// A fast-path pointer update (`code`, body already encoded).
fn pointer_frame(code: UpdateCode, body: &[u8]) -> Vec<u8> {
    let update = encode_vec(&FastPathUpdatePdu {
        fragmentation: Fragmentation::Single,
        update_code: code,
        compression_flags: None,
        compression_type: None,
        data: body,
    })
    .unwrap();
    let mut frame =
        encode_vec(&FastPathHeader::new(EncryptionFlags::empty(), update.len())).unwrap();
    frame.extend_from_slice(&update);
    frame
}

/// A client fast-path input PDU moving the mouse to (x, y).
fn mouse_to(x: u16, y: u16) -> Vec<u8> {
    use ironrdp_pdu::input::MousePdu;
    use ironrdp_pdu::input::fast_path::{FastPathInput, FastPathInputEvent};
    use ironrdp_pdu::input::mouse::PointerFlags;
    encode_vec(&FastPathInput::single(FastPathInputEvent::MouseEvent(
        MousePdu {
            flags: PointerFlags::MOVE,
            number_of_wheel_rotation_units: 0,
            x_position: x,
            y_position: y,
        },
    )))
    .unwrap()
}

#[test]
fn pointer_is_drawn_when_asked_through_keyframes_too() {
    use ironrdp_pdu::pointer::{CachedPointerAttribute, ColorPointerAttribute, Point16};
    // A 2x2 opaque red pointer (24 bpp XOR mask, BGR, rows padded to 2 bytes; AND mask 0).
    let xor = [0u8, 0, 255, 0, 0, 255, 0, 0, 255, 0, 0, 255];
    let and = [0u8; 4];
    let shape = encode_vec(&ColorPointerAttribute {
        cache_index: 3,
        hot_spot: Point16 { x: 0, y: 0 },
        width: 2,
        height: 2,
        xor_mask: &xor,
        and_mask: &and,
    })
    .unwrap();
    let cached = encode_vec(&CachedPointerAttribute { cache_index: 3 }).unwrap();
    let mut records: Vec<(u64, bool, Vec<u8>)> = vec![
        (S, true, fill(0, 0, 64, 48, [255, 0, 0, 0])), // blue screen
        (2 * S, true, pointer_frame(UpdateCode::ColorPointer, &shape)),
        (2 * S + S / 2, false, mouse_to(20, 20)),
        (4 * S, true, pointer_frame(UpdateCode::DefaultPointer, &[])),
    ];
    // Enough drawing for keyframes between the shape and its reuse from the cache.
    for i in 0..40u64 {
        records.push((
            4 * S + i * 10_000,
            true,
            fill(40, 0, 20, 20, [255, 0, 0, 0]),
        ));
    }
    records.push((
        8 * S,
        true,
        pointer_frame(UpdateCode::CachedPointer, &cached),
    ));
    records.push((8 * S + S / 2, false, mouse_to(30, 30)));
    let hdr = header(&[("rdp.desktop-width", "64"), ("rdp.desktop-height", "48")]);
    let recs: Vec<Record> = records
        .iter()
        .map(|(at, server, b)| Record {
            at_us: *at,
            kind: RecordKind::Data {
                direction: if *server {
                    Direction::ServerToClient
                } else {
                    Direction::ClientToServer
                },
                channel: ChannelId(0),
                bytes: Bytes::copy_from_slice(b),
            },
        })
        .collect();
    let key = RecordingKey::generate().unwrap();
    let rec = encode_recording(&hdr, &recs, 64 * 1024, 10 * S, key.signing_key()).unwrap();

    let mut plain = RdpReplay::open_with_keyframe_interval(&rec, usize::MAX).unwrap();
    let mut keyed = RdpReplay::open_with_keyframe_interval(&rec, 4096).unwrap();
    assert_eq!(plain.stats().errors, 0, "{:?}", plain.stats());
    assert!(keyed.stats().keyframes > 3, "{:?}", keyed.stats());
    let red = [255, 0, 0, 255];
    let blue = [0, 0, 255, 255];
    // Off by default: the screen only.
    assert_eq!(px(&plain.frame_at(3 * S).unwrap(), 20, 20), blue);
    for r in [&mut plain, &mut keyed] {
        r.set_draw_pointer(true);
    }
    for r in [&mut keyed, &mut plain] {
        let f = r.frame_at(3 * S).unwrap();
        assert_eq!(r.pointer_position(), Some((20, 20)));
        assert_eq!(
            (px(&f, 20, 20), px(&f, 21, 21), px(&f, 22, 22)),
            (red, red, blue)
        );
        // The default (system) pointer is not in the recording: nothing drawn.
        assert_eq!(px(&r.frame_at(5 * S).unwrap(), 20, 20), blue);
        // Back from the cache after keyframes, at the new position.
        let f = r.frame_at(9 * S).unwrap();
        assert_eq!((px(&f, 30, 30), px(&f, 20, 20)), (red, blue));
    }
    for t in [9 * S, 3 * S, 6 * S, 10 * S] {
        assert_eq!(
            keyed.frame_at(t).unwrap(),
            plain.frame_at(t).unwrap(),
            "at {t}"
        );
    }
}

#[test]
fn a_followed_live_recording_shows_what_a_fresh_replay_shows() {
    let mut frames = Vec::new();
    for i in 0..120u16 {
        let c = (i % 251) as u8;
        frames.push((
            u64::from(i) * S / 10,
            fill((i * 7) % 100, (i * 3) % 60, 20, 16, [c, 255 - c, c, 0]),
        ));
    }
    let hdr = header(&[("rdp.desktop-width", "120"), ("rdp.desktop-height", "80")]);
    let records: Vec<Record> = frames
        .iter()
        .map(|(at, b)| Record {
            at_us: *at,
            kind: RecordKind::Data {
                direction: Direction::ServerToClient,
                channel: ChannelId(0),
                bytes: Bytes::copy_from_slice(b),
            },
        })
        .collect();
    let key = RecordingKey::generate().unwrap();
    // Small chunks, as a live recording closes one every second.
    let rec = encode_recording(&hdr, &records, 2048, 13 * S, key.signing_key()).unwrap();
    let boundary = |from: usize| {
        from + rec[from..]
            .windows(4)
            .position(|w| w == recorder::format::CHUNK_MAGIC)
            .unwrap()
    };
    let mut live = RdpReplay::open(&rec[..boundary(rec.len() / 4)]).unwrap();
    let early = live.end_us();
    live.frame_at(early).unwrap();
    // Half a chunk at the end is left for later.
    assert!(live.follow(&rec[..rec.len() / 2 + 7]).unwrap() > 0);
    assert!(live.end_us() > early);
    assert!(live.follow(&rec).unwrap() > 0);
    assert_eq!(live.follow(&rec).unwrap(), 0);
    let mut fresh = RdpReplay::open(&rec).unwrap();
    assert_eq!(live.end_us(), fresh.end_us());
    for t in [live.end_us(), 6 * S, early] {
        assert_eq!(
            live.frame_at(t).unwrap(),
            fresh.frame_at(t).unwrap(),
            "at {t}"
        );
    }
}
