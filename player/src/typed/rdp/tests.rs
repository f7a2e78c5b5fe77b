// Test helpers unwrap: a failure there is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::borrow::Cow;

use ironrdp_core::encode_vec;
use ironrdp_pdu::input::fast_path::SynchronizeFlags;
use ironrdp_pdu::input::scan_code::ScanCodePdu;
use ironrdp_pdu::input::{InputEvent, InputEventPdu};
use ironrdp_pdu::mcs::{SendDataIndication, SendDataRequest};
use ironrdp_pdu::rdp::client_info::CompressionType;
use ironrdp_pdu::rdp::headers::{CompressionFlags, ShareDataHeader, StreamPriority};
use recorder::format::Header;

use super::*;

const IO: u16 = 1003;

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

use super::super::test_recording::{Frame, of_frames};

fn lines_of(meta: &[(&str, &str)], frames: &[Frame]) -> Vec<(u64, String)> {
    let bytes = of_frames(&header(meta), frames);
    super::super::typed_text(&bytes)
        .unwrap()
        .into_iter()
        .map(|l| (l.at_us, l.text))
        .collect()
}

/// The server's Save Session Info PDU of `info_type` on the I/O channel, built by hand.
fn save_session_info(info_type: u32, fields_present: u32) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&0u16.to_le_bytes()); // totalLength (not checked)
    d.extend_from_slice(&0x17u16.to_le_bytes()); // PDUTYPE_DATAPDU | version
    d.extend_from_slice(&1002u16.to_le_bytes()); // pduSource
    d.extend_from_slice(&0x1_03EAu32.to_le_bytes()); // shareId
    d.extend_from_slice(&[0, 1]); // pad, streamId
    d.extend_from_slice(&0u16.to_le_bytes()); // uncompressedLength
    d.extend_from_slice(&[0x26, 0]); // pduType2, compressedType
    d.extend_from_slice(&0u16.to_le_bytes()); // compressedLength
    d.extend_from_slice(&info_type.to_le_bytes());
    d.extend_from_slice(&0u16.to_le_bytes()); // Length (extended info)
    d.extend_from_slice(&fields_present.to_le_bytes());
    d.extend_from_slice(&[0; 16]);
    encode_vec(&X224(McsMessage::SendDataIndication(SendDataIndication {
        initiator_id: 1002,
        channel_id: IO,
        user_data: Cow::Owned(d),
    })))
    .unwrap()
}

fn logon() -> Vec<u8> {
    save_session_info(1, 0)
}

fn fast(events: Vec<FastPathInputEvent>) -> Vec<u8> {
    encode_vec(&FastPathInput::new(events).unwrap()).unwrap()
}

fn down(code: u8) -> FastPathInputEvent {
    FastPathInputEvent::KeyboardEvent(KeyboardFlags::empty(), code)
}

fn up(code: u8) -> FastPathInputEvent {
    FastPathInputEvent::KeyboardEvent(KeyboardFlags::RELEASE, code)
}

/// Presses and releases each scan code.
fn tap(codes: &[u8]) -> Vec<u8> {
    fast(codes.iter().flat_map(|c| [down(*c), up(*c)]).collect())
}

const ENTER: u8 = 0x1C;
const SHIFT: u8 = 0x2A;

#[test]
fn nothing_before_the_logon_notification_is_indexed() {
    let lines = lines_of(
        &[],
        &[
            // The password on the logon screen, and a line begun there.
            (10, false, tap(&[0x19, 0x1E, 0x1F, 0x1F, ENTER])), // "pass"
            (20, false, tap(&[0x14, 0x1E])),                    // "ta" (pending)
            (30, true, logon()),
            (40, false, tap(&[0x26, 0x1F, ENTER])), // "ls"
        ],
    );
    assert_eq!(lines, vec![(40, "ls".to_owned())]);
}

#[test]
fn a_server_that_never_says_logged_on_has_nothing_indexed() {
    let lines = lines_of(&[], &[(10, false, tap(&[0x26, 0x1F, ENTER]))]);
    assert!(lines.is_empty());
    // Logon errors (extended info with LOGON_EX_LOGONERRORS) are not a logon.
    let lines = lines_of(
        &[],
        &[
            (5, true, save_session_info(3, 0x2)),
            (10, false, tap(&[0x26, 0x1F, ENTER])),
        ],
    );
    assert!(lines.is_empty());
}

#[test]
fn shift_caps_lock_and_backspace_edit_the_line() {
    let lines = lines_of(
        &[],
        &[
            (1, true, logon()),
            // Shift+e c h o, space, CapsLock, h i, CapsLock, Shift+1, x, Backspace, Enter
            (
                10,
                false,
                fast(vec![
                    down(SHIFT),
                    down(0x12),
                    up(0x12),
                    up(SHIFT),
                    down(0x2E),
                    up(0x2E),
                ]),
            ),
            (11, false, tap(&[0x23, 0x18, 0x39, 0x3A, 0x23, 0x17, 0x3A])),
            (
                12,
                false,
                fast(vec![down(SHIFT), down(0x02), up(0x02), up(SHIFT)]),
            ),
            (13, false, tap(&[0x2D, 0x0E, ENTER])),
        ],
    );
    assert_eq!(lines, vec![(10, "Echo HI!".to_owned())]);
}

#[test]
fn held_keys_and_shortcuts_do_not_type() {
    let lines = lines_of(
        &[],
        &[
            (1, true, logon()),
            // Ctrl+C, then CapsLock held (auto-repeat downs toggle once), then a.
            (
                10,
                false,
                fast(vec![down(0x1D), down(0x2E), up(0x2E), up(0x1D)]),
            ),
            (
                11,
                false,
                fast(vec![down(0x3A), down(0x3A), down(0x3A), up(0x3A)]),
            ),
            (12, false, tap(&[0x1E, ENTER])),
        ],
    );
    assert_eq!(lines, vec![(12, "A".to_owned())]);
}

#[test]
fn the_japanese_layout_comes_from_the_header() {
    let frames = [
        (1, true, logon()),
        (
            10,
            false,
            fast(vec![
                down(SHIFT),
                down(0x03),
                up(0x03),
                down(0x28),
                up(0x28),
                up(SHIFT),
            ]),
        ),
        (11, false, tap(&[0x1A, 0x7D, ENTER])),
    ];
    let ja = lines_of(&[("rdp.keyboard-layout", "0x411")], &frames);
    assert_eq!(ja, vec![(10, "\"*@\\".to_owned())]);
    // Absent: US.
    let us = lines_of(&[], &frames);
    assert_eq!(us, vec![(10, "@\"[".to_owned())]);
}

#[test]
fn caps_lock_needs_shift_on_the_japanese_keyboard_and_sync_sets_it() {
    let frames = [
        (1, true, logon()),
        // 英数 alone: no CapsLock on the Japanese keyboard.
        (10, false, tap(&[0x3A, 0x1E])),
        (
            11,
            false,
            fast(vec![FastPathInputEvent::SyncEvent(
                SynchronizeFlags::CAPS_LOCK,
            )]),
        ),
        (12, false, tap(&[0x1E, ENTER])),
    ];
    let ja = lines_of(&[("rdp.keyboard-layout", "0x411")], &frames);
    assert_eq!(ja, vec![(10, "aA".to_owned())]);
}

#[test]
fn unicode_events_and_slow_path_input_are_typed() {
    let unicode = |c: u16| FastPathInputEvent::UnicodeKeyboardEvent(KeyboardFlags::empty(), c);
    let slow = {
        let pdu = ShareControlHeader {
            share_control_pdu: ShareControlPdu::Data(ShareDataHeader {
                share_data_pdu: ShareDataPdu::Input(InputEventPdu(vec![
                    InputEvent::ScanCode(ScanCodePdu {
                        flags: ironrdp_pdu::input::scan_code::KeyboardFlags::DOWN,
                        key_code: 0x2D,
                    }),
                    InputEvent::ScanCode(ScanCodePdu {
                        flags: ironrdp_pdu::input::scan_code::KeyboardFlags::DOWN,
                        key_code: u16::from(ENTER),
                    }),
                ])),
                stream_priority: StreamPriority::Medium,
                compression_flags: CompressionFlags::empty(),
                compression_type: CompressionType::K8,
            }),
            pdu_source: 1007,
            share_id: 0x1_03EA,
        };
        let data = encode_vec(&pdu).unwrap();
        encode_vec(&X224(McsMessage::SendDataRequest(SendDataRequest {
            initiator_id: 1007,
            channel_id: IO,
            user_data: Cow::Owned(data),
        })))
        .unwrap()
    };
    let lines = lines_of(
        &[],
        &[
            (1, true, logon()),
            // 日本, a surrogate pair (U+1F600), Backspace over it, then Enter.
            (
                10,
                false,
                fast(vec![
                    unicode(0x65E5),
                    unicode(0x672C),
                    unicode(0xD83D),
                    unicode(0xDE00),
                    unicode(0x08),
                    unicode(0x0D),
                ]),
            ),
            (20, false, slow),
        ],
    );
    assert_eq!(lines, vec![(10, "日本".to_owned()), (20, "x".to_owned())]);
}

#[test]
fn garbage_frames_are_ignored() {
    let lines = lines_of(
        &[],
        &[
            (1, true, logon()),
            (2, false, vec![0x00]),
            (
                3,
                false,
                vec![0x03, 0x00, 0x00, 0x09, 0x02, 0xF0, 0x80, 0x64, 0x00],
            ),
            (4, true, vec![0x03, 0x00, 0xFF, 0xFF]),
            (5, false, tap(&[0x1E, ENTER])),
        ],
    );
    assert_eq!(lines, vec![(5, "a".to_owned())]);
}

#[test]
fn after_nla_lines_are_indexed_without_a_notification_and_dropped_by_a_late_one() {
    let nla = [(SERVER_PROTOCOL_KEY, "0x2")];
    // freerdp-shadow-cli: NLA, never a logon notification.
    let lines = lines_of(&nla, &[(10, false, tap(&[0x23, 0x17, ENTER]))]); // h i
    assert_eq!(lines, vec![(10, "hi".to_owned())]);
    // "Always prompt for password": a logon screen after NLA, then the notification.
    let lines = lines_of(
        &nla,
        &[
            (10, false, tap(&[0x19, 0x1E, 0x1F, ENTER])), // p a s: the password
            (20, true, logon()),
            (30, false, tap(&[0x23, 0x17, ENTER])),
        ],
    );
    assert_eq!(lines, vec![(30, "hi".to_owned())]);
    // TLS or RDP security: nothing without the notification.
    assert!(
        lines_of(
            &[(SERVER_PROTOCOL_KEY, "0x1")],
            &[(10, false, tap(&[0x23, 0x17, ENTER]))]
        )
        .is_empty()
    );
}
