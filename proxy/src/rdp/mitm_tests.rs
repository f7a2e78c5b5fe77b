//! Unit tests of the relay-phase machine with PDUs shaped like FreeRDP's and xrdp's, built
//! with ironrdp-pdu's encoders, after the whole connection sequence ran in memory.

use super::*;
use crate::rdp::test_pdus::{CLIENT_USER, IO, SERVER_USER, active};
use ironrdp_dvc::pdu::CreateRequestPdu;
use ironrdp_pdu::mcs::ChannelJoinRequest;
use ironrdp_pdu::rdp::capability_sets::{ClientConfirmActive, DemandActive, OrderSupportIndex};
use proptest::prelude::*;

fn to_server(actions: &[Action]) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ToServer(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn to_client(actions: &[Action]) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ToClient(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn recorded(actions: &[Action]) -> Vec<Vec<u8>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Record { bytes, .. } => Some(bytes.clone()),
            _ => None,
        })
        .collect()
}

fn events(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event { detail, .. } => Some(detail.clone()),
            _ => None,
        })
        .collect()
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
    send_data_request(CLIENT_USER, channel, data).unwrap()
}

fn decode_request(frame: &[u8]) -> SendDataRequest<'static> {
    let McsMessage::SendDataRequest(req) = decode::<X224<McsMessage<'_>>>(frame).unwrap().0 else {
        panic!("not a Send Data Request")
    };
    SendDataRequest {
        initiator_id: req.initiator_id,
        channel_id: req.channel_id,
        user_data: Cow::Owned(req.user_data.into_owned()),
    }
}

#[test]
fn stripped_channel_join_is_answered_locally() {
    let mut m = active();
    let join = encode_vec(&X224(McsMessage::ChannelJoinRequest(ChannelJoinRequest {
        initiator_id: CLIENT_USER,
        channel_id: 0x0F01,
    })))
    .unwrap();
    let actions = m.client_frame(&join).unwrap();
    assert!(to_server(&actions).is_empty());
    let replies = to_client(&actions);
    let reply = decode::<X224<McsMessage<'_>>>(&replies[0]).unwrap().0;
    assert_eq!(
        reply,
        McsMessage::ChannelJoinConfirm(ChannelJoinConfirm {
            result: 0,
            initiator_id: CLIENT_USER,
            requested_channel_id: 0x0F01,
            channel_id: 0x0F01,
        })
    );
    // A late join of a kept channel is answered too: the server joined it before the logon.
    let join = encode_vec(&X224(McsMessage::ChannelJoinRequest(ChannelJoinRequest {
        initiator_id: CLIENT_USER,
        channel_id: 1004,
    })))
    .unwrap();
    let actions = m.client_frame(&join).unwrap();
    assert!(to_server(&actions).is_empty());
    assert_eq!(to_client(&actions).len(), 1);
}

#[test]
fn data_on_ungranted_channels_never_passes() {
    let mut m = active();
    let a = m.client_frame(&request(0x0F01, vec![0; 16])).unwrap();
    assert!(to_server(&a).is_empty());
    assert_eq!(events(&a).len(), 1);
    // Reported once per channel.
    let a = m.client_frame(&request(0x0F01, vec![0; 16])).unwrap();
    assert!(a.is_empty());
    // Unknown channel from the server.
    let a = m.server_frame(&indication(1006, vec![0; 16])).unwrap();
    assert!(to_client(&a).is_empty());
    // Granted channel passes.
    let a = m.server_frame(&indication(1004, vec![0; 16])).unwrap();
    assert_eq!(to_client(&a).len(), 1);
}

fn dvc_chunk(pdu: &DrdynvcServerPdu) -> Vec<u8> {
    let body = encode_vec(pdu).unwrap();
    let mut out = encode_vec(&ChannelPduHeader {
        length: u32::try_from(body.len()).unwrap(),
        flags: ChannelControlFlags::FLAG_FIRST | ChannelControlFlags::FLAG_LAST,
    })
    .unwrap();
    out.extend(body);
    out
}

#[test]
fn denied_dynamic_channel_is_refused_at_creation() {
    let mut m = active();
    let create = DrdynvcServerPdu::Create(CreateRequestPdu::new(7, "URBDRC".into()));
    let a = m
        .server_frame(&indication(1005, dvc_chunk(&create)))
        .unwrap();
    assert!(to_client(&a).is_empty());
    let answer = to_server(&a);
    assert_eq!(answer.len(), 1);
    let req = decode::<X224<McsMessage<'_>>>(&answer[0]).unwrap().0;
    let McsMessage::SendDataRequest(req) = req else {
        panic!()
    };
    assert_eq!((req.initiator_id, req.channel_id), (SERVER_USER, 1005));
    let pdu = decode::<DrdynvcClientPdu>(&req.user_data[8..]).unwrap();
    assert_eq!(
        pdu,
        DrdynvcClientPdu::Create(CreateResponsePdu::new(7, CreationStatus::NO_LISTENER))
    );
    assert_eq!(
        events(&a),
        ["USB device redirection (URBDRC) offered by the server: refused"]
    );

    // Data the server sends on it anyway is dropped.
    let data = DrdynvcServerPdu::Data(ironrdp_dvc::pdu::DrdynvcDataPdu::Data(
        ironrdp_dvc::pdu::DataPdu::new(7, vec![1, 2, 3]),
    ));
    assert!(
        m.server_frame(&indication(1005, dvc_chunk(&data)))
            .unwrap()
            .is_empty()
    );

    // An allowed one passes.
    let create = DrdynvcServerPdu::Create(CreateRequestPdu::new(
        8,
        "Microsoft::Windows::RDS::DisplayControl".into(),
    ));
    let a = m
        .server_frame(&indication(1005, dvc_chunk(&create)))
        .unwrap();
    assert_eq!(to_client(&a).len(), 1);
}

/// One chunk of a drdynvc message: channel PDU header (`flags`, `total` length) and `bytes`.
fn dvc_raw_chunk(flags: ChannelControlFlags, total: usize, bytes: &[u8]) -> Vec<u8> {
    let mut out = encode_vec(&ChannelPduHeader {
        length: u32::try_from(total).unwrap(),
        flags,
    })
    .unwrap();
    out.extend_from_slice(bytes);
    out
}

/// A DVC Data PDU for channel `id` with `len` bytes of payload, cut in three chunks.
fn dvc_data_in_three_chunks(id: u32, len: usize) -> [Vec<u8>; 3] {
    let whole = encode_vec(&DrdynvcServerPdu::Data(
        ironrdp_dvc::pdu::DrdynvcDataPdu::Data(ironrdp_dvc::pdu::DataPdu::new(id, vec![0x5a; len])),
    ))
    .unwrap();
    let (a, rest) = whole.split_at(whole.len() / 3);
    let (b, c) = rest.split_at(rest.len() / 2);
    [
        dvc_raw_chunk(ChannelControlFlags::FLAG_FIRST, whole.len(), a),
        dvc_raw_chunk(ChannelControlFlags::empty(), whole.len(), b),
        dvc_raw_chunk(ChannelControlFlags::FLAG_LAST, whole.len(), c),
    ]
}

#[test]
fn chunked_data_of_a_refused_dynamic_channel_is_dropped_both_ways() {
    let mut m = active();
    let refused = DrdynvcServerPdu::Create(CreateRequestPdu::new(7, "URBDRC".into()));
    m.server_frame(&indication(1005, dvc_chunk(&refused)))
        .unwrap();
    let allowed = DrdynvcServerPdu::Create(CreateRequestPdu::new(
        8,
        "Microsoft::Windows::RDS::DisplayControl".into(),
    ));
    m.server_frame(&indication(1005, dvc_chunk(&allowed)))
        .unwrap();

    // Every chunk of a message on the refused channel is dropped, whichever side sends it;
    // the chunks of a message on the allowed channel that follows all pass.
    for (refused, allowed) in [
        (
            dvc_data_in_three_chunks(7, 600),
            dvc_data_in_three_chunks(8, 600),
        ),
        (
            dvc_data_in_three_chunks(7, 90),
            dvc_data_in_three_chunks(8, 90),
        ),
    ] {
        for chunk in &refused {
            let a = m.server_frame(&indication(1005, chunk.clone())).unwrap();
            assert!(to_client(&a).is_empty(), "server chunk of channel 7 passed");
            let a = m.client_frame(&request(1005, chunk.clone())).unwrap();
            assert!(to_server(&a).is_empty(), "client chunk of channel 7 passed");
        }
        for chunk in &allowed {
            let a = m.server_frame(&indication(1005, chunk.clone())).unwrap();
            assert_eq!(to_client(&a).len(), 1, "server chunk of channel 8 dropped");
            let a = m.client_frame(&request(1005, chunk.clone())).unwrap();
            assert_eq!(to_server(&a).len(), 1, "client chunk of channel 8 dropped");
        }
    }

    // A compressed first chunk could hide a create request: refused outright.
    let compressed = dvc_raw_chunk(
        ChannelControlFlags::FLAG_FIRST
            | ChannelControlFlags::FLAG_LAST
            | ChannelControlFlags::PACKET_COMPRESSED,
        4,
        &[0x10, 0x07, 0, 0],
    );
    assert!(m.server_frame(&indication(1005, compressed)).is_err());
}

#[test]
fn confirm_active_loses_drawing_orders() {
    let mut m = active();
    let mut order = Order::new(
        OrderFlags::NEGOTIATE_ORDER_SUPPORT,
        OrderSupportExFlags::empty(),
        0,
        0,
    );
    order.set_support_flag(OrderSupportIndex::PatBlt, true);
    order.set_support_flag(OrderSupportIndex::ScrBlt, true);
    let cca = ShareControlHeader {
        share_control_pdu: ShareControlPdu::ClientConfirmActive(ClientConfirmActive {
            originator_id: 0x03EA,
            pdu: DemandActive {
                source_descriptor: "MSTSC".into(),
                capability_sets: vec![CapabilitySet::Order(order)],
            },
        }),
        pdu_source: CLIENT_USER,
        share_id: 0x1_03EA,
    };
    let a = m
        .client_frame(&request(IO, encode_vec(&cca).unwrap()))
        .unwrap();
    let sent = to_server(&a);
    let McsMessage::SendDataRequest(req) = decode::<X224<McsMessage<'_>>>(&sent[0]).unwrap().0
    else {
        panic!()
    };
    let h = decode::<ShareControlHeader>(req.user_data.as_ref()).unwrap();
    let ShareControlPdu::ClientConfirmActive(cca) = h.share_control_pdu else {
        panic!()
    };
    let CapabilitySet::Order(mut order) = cca.pdu.capability_sets[0].clone() else {
        panic!()
    };
    assert!(!order.get_support_flag(OrderSupportIndex::PatBlt));
    assert!(!order.get_support_flag(OrderSupportIndex::ScrBlt));
    assert_eq!(h.share_id, 0x1_03EA);
    // The server knows the contractor by its own user channel.
    assert_eq!((req.initiator_id, h.pdu_source), (SERVER_USER, SERVER_USER));
    // The recording keeps the client's ids, as its Connect Response gave them.
    let rec = decode_request(&recorded(&a)[0]);
    let h = decode::<ShareControlHeader>(rec.user_data.as_ref()).unwrap();
    assert_eq!((rec.initiator_id, h.pdu_source), (CLIENT_USER, CLIENT_USER));
}

#[test]
fn ids_are_translated_between_the_legs_and_recorded_in_the_clients() {
    let mut m = active();
    let a = m.client_frame(&request(1004, vec![7; 12])).unwrap();
    let sent = decode_request(&to_server(&a)[0]);
    assert_eq!((sent.initiator_id, sent.channel_id), (SERVER_USER, 1004));
    assert_eq!(sent.user_data.as_ref(), &[7; 12]);
    let rec = decode_request(&recorded(&a)[0]);
    assert_eq!((rec.initiator_id, rec.channel_id), (CLIENT_USER, 1004));

    // I/O channel data that is not a Share Control PDU is not touched.
    let a = m.client_frame(&request(IO, vec![1, 2, 3])).unwrap();
    assert_eq!(
        decode_request(&to_server(&a)[0]).user_data.as_ref(),
        &[1, 2, 3]
    );

    // The server's data reaches the client on the client's id, as recorded.
    let a = m.server_frame(&indication(1004, vec![0; 4])).unwrap();
    assert_eq!(to_client(&a), recorded(&a));
    assert_eq!(to_client(&a).len(), 1);
    // The server's id of the user channel is no channel of the client's.
    let a = m
        .server_frame(&indication(SERVER_USER + 100, vec![0; 4]))
        .unwrap();
    assert!(to_client(&a).is_empty());
}

proptest! {
    #[test]
    fn garbage_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut m = active();
        let _ = m.client_frame(&bytes);
        let _ = m.server_frame(&bytes);
    }

    #[test]
    fn dvc_garbage_never_panics(body in proptest::collection::vec(any::<u8>(), 0..64), flags in any::<u32>()) {
        let mut m = active();
        let mut data = encode_vec(&ChannelPduHeader {
            length: 64,
            flags: ChannelControlFlags::from_bits_retain(flags),
        }).unwrap();
        data.extend(body);
        let _ = m.server_frame(&indication(1005, data.clone()));
        let _ = m.client_frame(&request(1005, data));
    }
}
