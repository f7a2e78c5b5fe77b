//! Unit tests of the contractor-side acceptor and the server-side connector: the whole MCS
//! sequence in memory, with PDUs shaped like FreeRDP's and xrdp's.

use super::*;
use crate::rdp::connect::{ConnectStep, McsConnector};
use crate::rdp::framing::send_data_request;
use crate::rdp::test_pdus::*;
use ironrdp_core::encode_vec;
use ironrdp_pdu::mcs::SendDataRequest;
use ironrdp_pdu::rdp::client_info::ClientInfoFlags;
use proptest::prelude::*;

fn acceptor() -> McsAcceptor {
    McsAcceptor::new(rules(), SecurityProtocol::SSL | SecurityProtocol::HYBRID)
}

fn replies(step: AcceptStep) -> Vec<Vec<u8>> {
    match step {
        AcceptStep::Reply(r) => r,
        AcceptStep::Logon(_) => panic!("logon too early"),
    }
}

fn decode_request(frame: &[u8]) -> SendDataRequest<'_> {
    let McsMessage::SendDataRequest(req) = decode::<X224<McsMessage<'_>>>(frame).unwrap().0 else {
        panic!("not a Send Data Request")
    };
    req
}

#[test]
fn connect_response_comes_from_sekisho_with_the_client_ids() {
    let mut a = acceptor();
    let out = replies(a.client_frame(&connect_initial()).unwrap());
    let cr = decode_cr(&out[0]);
    // rdpdr, rdpsnd, cliprdr, drdynvc: kept ones numbered as a server numbers them.
    assert_eq!(cr.channel_ids(), vec![0x0F00, 1004, 0x0F01, 1005]);
    assert_eq!(cr.global_channel_id(), IO);
    assert_eq!(
        cr.conference_create_response
            .gcc_blocks()
            .core
            .optional_data
            .client_requested_protocols,
        Some(SecurityProtocol::SSL | SecurityProtocol::HYBRID),
        "the client checks its own request echoed"
    );
    assert!(
        cr.conference_create_response
            .gcc_blocks()
            .multi_transport_channel
            .is_none()
    );
    let out = replies(a.client_frame(&erect_domain()).unwrap());
    assert!(out.is_empty());
    let out = replies(a.client_frame(&attach_user_request()).unwrap());
    assert_eq!(out, vec![attach_user_confirm(CLIENT_USER)]);
    for id in [CLIENT_USER, IO, 0x0F00, 1004, 0x0F01, 1005] {
        let out = replies(a.client_frame(&join_request(CLIENT_USER, id)).unwrap());
        assert_eq!(out, vec![join_confirm(CLIENT_USER, id)]);
    }
}

#[test]
fn the_logon_carries_the_password_and_the_filtered_request() {
    let (logon, _) = accept(client_info_frame());
    assert_eq!(logon.username, "tanaka");
    assert_eq!(logon.password.expose(), "change-me-now");
    assert!(
        !format!("{logon:?}").contains("change-me-now"),
        "Debug shows no password"
    );
    let h = &logon.handshake;
    let events: Vec<&str> = h.events.iter().map(|(_, d)| d.as_str()).collect();
    assert!(events.contains(&"clipboard redirection requested by the client (cliprdr): stripped"));
    assert!(
        events
            .iter()
            .any(|e| e.contains("drives, printers, smart cards, ports"))
    );
    assert!(events.iter().any(|e| e.contains("multitransport")));
    assert_eq!(h.plan.user_channel, CLIENT_USER);
    // Everything the client saw before the logon is in the transcript, for the recording.
    assert_eq!(h.transcript.len(), 1 + 2 + 1 + 2 * 6);
}

#[test]
fn duplicate_channel_names_are_refused() {
    let mut a = acceptor();
    let ci = connect_initial_with(&["rdpsnd", "drdynvc", "DRDYNVC"]);
    assert!(a.client_frame(&ci).is_err());
    assert!(
        a.client_frame(&connect_initial()).is_err(),
        "the error sticks"
    );
}

#[test]
fn nothing_but_the_sequence_is_accepted_before_the_logon() {
    // Fast-path input before the logon.
    let mut a = acceptor();
    a.client_frame(&connect_initial()).unwrap();
    assert!(a.client_frame(&[0x00, 0x04, 0x01, 0x02]).is_err());

    // The Client Info before the I/O channel was joined.
    let mut a = acceptor();
    a.client_frame(&connect_initial()).unwrap();
    a.client_frame(&attach_user_request()).unwrap();
    assert!(a.client_frame(&client_info_frame()).is_err());

    // Data on a static channel before the logon.
    let mut a = acceptor();
    a.client_frame(&connect_initial()).unwrap();
    a.client_frame(&attach_user_request()).unwrap();
    a.client_frame(&join_request(CLIENT_USER, 1004)).unwrap();
    let data = send_data_request(CLIENT_USER, 1004, vec![0; 8]).unwrap();
    assert!(a.client_frame(&data).is_err());

    // A join of a channel nobody was given.
    let mut a = acceptor();
    a.client_frame(&connect_initial()).unwrap();
    a.client_frame(&attach_user_request()).unwrap();
    assert!(a.client_frame(&join_request(CLIENT_USER, 1010)).is_err());

    // I/O channel data that is not a Client Info (no INFO_PKT).
    let mut a = acceptor();
    a.client_frame(&connect_initial()).unwrap();
    a.client_frame(&attach_user_request()).unwrap();
    a.client_frame(&join_request(CLIENT_USER, IO)).unwrap();
    assert!(
        a.client_frame(&client_info_frame_bytes(vec![0, 0, 0, 0, 1, 2, 3]))
            .is_err()
    );
}

#[test]
fn an_undecodable_client_info_is_refused_and_lenient_shapes_are_read() {
    let good = encode_vec(&client_info("tanaka", "change-me-now")).unwrap();
    // Truncated inside the credentials: refused, never passed on.
    let mut a = acceptor();
    let ids = decode_cr(&replies(a.client_frame(&connect_initial()).unwrap())[0]).channel_ids();
    let frames = client_mcs_frames(&ids, client_info_frame_bytes(good[..30].to_vec()));
    let mut result = None;
    for f in &frames {
        result = Some(a.client_frame(f));
    }
    assert!(result.unwrap().is_err());

    // Compression-type bits without INFO_COMPRESSION: read, password and all.
    let mut odd = good.clone();
    let flags = u32::from_le_bytes(odd[8..12].try_into().unwrap());
    let flags = (flags & !0x80) | 0x1E00;
    odd[8..12].copy_from_slice(&flags.to_le_bytes());
    let (logon, _) = accept(client_info_frame_bytes(odd));
    assert_eq!(logon.password.expose(), "change-me-now");
}

#[test]
fn the_connector_replays_the_sequence_with_the_injected_credential() {
    let (logon, _) = accept(client_info_frame());
    let (connected, sent) = connect(logon, vec![1004, 1005], SERVER_USER);
    let ci = decode_ci(&sent[0]);
    let names: Vec<String> = ci
        .channel_names()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["rdpsnd", "drdynvc"]);
    let blocks = ci.conference_create_request.gcc_blocks();
    assert!(blocks.multi_transport_channel.is_none(), "no UDP offered");
    let flags = blocks.core.optional_data.early_capability_flags.unwrap();
    assert!(!flags.contains(ClientEarlyCapabilityFlags::SUPPORT_DYN_VC_GFX_PROTOCOL));
    assert!(!flags.contains(ClientEarlyCapabilityFlags::SUPPORT_SKIP_CHANNELJOIN));
    assert_eq!(
        blocks.core.optional_data.server_selected_protocol,
        Some(SecurityProtocol::SSL)
    );
    // Erect Domain, Attach User, then joins in order: user, I/O, the granted channels.
    assert_eq!(sent[1], erect_domain());
    assert_eq!(sent[2], attach_user_request());
    let joins: Vec<Vec<u8>> = [SERVER_USER, IO, 1004, 1005]
        .iter()
        .map(|c| join_request(SERVER_USER, *c))
        .collect();
    assert_eq!(&sent[3..7], joins.as_slice());
    let info = decode_request(sent.last().unwrap());
    assert_eq!((info.initiator_id, info.channel_id), (SERVER_USER, IO));
    let info = crate::rdp::client_info::decode_client_info(&info.user_data).unwrap();
    assert_eq!(info.client_info.credentials.username, "labuser");
    assert_eq!(info.client_info.credentials.password, "LabPass123!");
    assert!(info.client_info.flags.contains(ClientInfoFlags::AUTOLOGON));
    assert!(
        !info
            .client_info
            .flags
            .contains(ClientInfoFlags::COMPRESSION)
    );

    // The recorded copy: the client's ids, no password of anyone.
    let redacted = decode_request(&connected.client_info_redacted);
    assert_eq!(
        (redacted.initiator_id, redacted.channel_id),
        (CLIENT_USER, IO)
    );
    let rec = crate::rdp::client_info::decode_client_info(&redacted.user_data).unwrap();
    assert_eq!(rec.client_info.credentials.password, "");
    assert!(
        !connected
            .client_info_redacted
            .windows(4)
            .any(|w| w == b"L\0a\0")
    );
    assert!(
        !connected
            .client_info_redacted
            .windows(4)
            .any(|w| w == b"c\0h\0")
    );

    let link = &connected.link;
    assert_eq!(link.to_server(CLIENT_USER), Some(SERVER_USER));
    assert_eq!(link.to_client(SERVER_USER), Some(CLIENT_USER));
    assert_eq!(link.to_server(1005), Some(1005));
    assert_eq!(
        link.to_server(0x0F00),
        None,
        "a stripped channel leads nowhere"
    );
    assert!(!link.is_identity());
}

#[test]
fn a_server_granting_fewer_channels_leaves_the_rest_dead_ends() {
    let (logon, _) = accept(client_info_frame());
    let (connected, _) = connect(logon, vec![2004], SERVER_USER);
    let link = &connected.link;
    assert_eq!(link.to_server(1004), Some(2004));
    assert_eq!(link.to_client(2004), Some(1004));
    assert_eq!(link.to_server(1005), None);
    let drdynvc = link
        .negotiated
        .channels
        .iter()
        .find(|c| c.name == "drdynvc")
        .unwrap();
    assert!(!drdynvc.kept);
}

#[test]
fn a_server_granting_more_channels_than_asked_is_refused() {
    let (logon, _) = accept(client_info_frame());
    let (mut c, _) =
        McsConnector::start(logon.handshake, SecurityProtocol::SSL, Some(inject())).unwrap();
    assert!(
        c.server_frame(&connect_response(vec![1004, 1005, 1006]))
            .is_err()
    );
}

#[test]
fn a_server_out_of_sequence_is_refused() {
    let (logon, _) = accept(client_info_frame());
    let (mut c, _) =
        McsConnector::start(logon.handshake, SecurityProtocol::SSL, Some(inject())).unwrap();
    let ConnectStep::Send(_) = c.server_frame(&connect_response(vec![1004, 1005])).unwrap() else {
        panic!()
    };
    // A join confirm before the attach user confirm.
    assert!(c.server_frame(&join_confirm(SERVER_USER, IO)).is_err());
}

proptest! {
    #[test]
    fn garbage_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut a = acceptor();
        let _ = a.client_frame(&bytes);
        let mut a = acceptor();
        let _ = a.client_frame(&connect_initial());
        let _ = a.client_frame(&bytes);
    }

    #[test]
    fn truncated_or_flipped_connect_initial_never_panics(cut in 0usize..400, flip in 0usize..400, bit in 0u8..8) {
        let mut ci = connect_initial();
        if let Some(b) = ci.get_mut(flip) { *b ^= 1 << bit; }
        let cut = cut.min(ci.len());
        let _ = acceptor().client_frame(&ci[..cut]);
    }

    #[test]
    fn flipped_client_info_never_panics(flip in 0usize..200, bit in 0u8..8) {
        let mut info = encode_vec(&client_info("tanaka", "change-me-now")).unwrap();
        if let Some(b) = info.get_mut(flip) { *b ^= 1 << bit; }
        let mut a = acceptor();
        let ids = decode_cr(&replies(a.client_frame(&connect_initial()).unwrap())[0]).channel_ids();
        for f in client_mcs_frames(&ids, client_info_frame_bytes(info)) {
            let _ = a.client_frame(&f);
        }
    }

    #[test]
    fn flipped_connect_response_never_panics(flip in 0usize..200, bit in 0u8..8) {
        let mut cr = connect_response(vec![1004, 1005]);
        if let Some(b) = cr.get_mut(flip) { *b ^= 1 << bit; }
        let (logon, _) = accept(client_info_frame());
        let (mut c, _) = McsConnector::start(logon.handshake, SecurityProtocol::SSL, Some(inject())).unwrap();
        let _ = c.server_frame(&cr);
    }
}
