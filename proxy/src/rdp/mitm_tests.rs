//! Unit tests of the MCS-phase machine with PDUs shaped like FreeRDP's and xrdp's, built with
//! ironrdp-pdu's encoders.

use super::*;
use ironrdp_dvc::pdu::CreateRequestPdu;
use ironrdp_pdu::gcc::{
    ChannelName, ChannelOptions, ClientCoreData, ClientCoreOptionalData, ClientGccBlocks,
    ClientNetworkData, ClientSecurityData, ColorDepth, KeyboardType, RdpVersion,
    SecureAccessSequence, ServerCoreData, ServerCoreOptionalData, ServerGccBlocks,
    ServerNetworkData, ServerSecurityData,
};
use ironrdp_pdu::mcs::{
    AttachUserConfirm, ChannelJoinRequest, DomainParameters, SendDataIndication,
};
use ironrdp_pdu::rdp::capability_sets::{ClientConfirmActive, DemandActive, OrderSupportIndex};
use ironrdp_pdu::rdp::client_info::{
    AddressFamily, ClientInfo, CompressionType, ExtendedClientInfo,
};
use ironrdp_pdu::rdp::headers::{BasicSecurityHeader, BasicSecurityHeaderFlags};
use proptest::prelude::*;

const CLIENT_CHANNELS: [&str; 4] = ["rdpdr", "rdpsnd", "cliprdr", "drdynvc"];
const IO: u16 = 1003;
const USER: u16 = 1007;

fn rules() -> ChannelRules {
    ChannelRules {
        allow_static_channels: vec!["rdpsnd".into(), "drdynvc".into()],
        deny_dynamic_channels: vec!["URBDRC".into(), "Microsoft::Windows::RDS::Graphics".into()],
    }
}

fn machine() -> Mitm {
    Mitm::new(MitmConfig {
        rules: rules(),
        client_requested: SecurityProtocol::SSL | SecurityProtocol::HYBRID,
        server_selected: SecurityProtocol::SSL,
        inject: Some(TargetCredentials {
            username: "labuser".into(),
            password: Secret::new("LabPass123!"),
            domain: None,
        }),
    })
}

fn connect_initial() -> Vec<u8> {
    let channels = CLIENT_CHANNELS
        .iter()
        .map(|n| ChannelDef {
            name: ChannelName::from_utf8(n).unwrap(),
            options: ChannelOptions::INITIALIZED,
        })
        .collect();
    let blocks = ClientGccBlocks {
        core: ClientCoreData {
            version: RdpVersion::V5_PLUS,
            desktop_width: 1024,
            desktop_height: 768,
            color_depth: ColorDepth::Bpp8,
            sec_access_sequence: SecureAccessSequence::Del,
            keyboard_layout: 0x409,
            client_build: 2600,
            client_name: "vdi".into(),
            keyboard_type: KeyboardType::IBM_ENHANCED,
            keyboard_subtype: 0,
            keyboard_functional_keys_count: 12,
            ime_file_name: String::new(),
            optional_data: ClientCoreOptionalData {
                post_beta2_color_depth: Some(ColorDepth::Bpp8),
                client_product_id: Some(1),
                serial_number: Some(0),
                high_color_depth: Some(ironrdp_pdu::gcc::HighColorDepth::Bpp24),
                supported_color_depths: Some(ironrdp_pdu::gcc::SupportedColorDepths::all()),
                early_capability_flags: Some(
                    ClientEarlyCapabilityFlags::SUPPORT_ERR_INFO_PDU
                        | ClientEarlyCapabilityFlags::SUPPORT_DYN_VC_GFX_PROTOCOL,
                ),
                dig_product_id: Some(String::new()),
                connection_type: Some(ironrdp_pdu::gcc::ConnectionType::Lan),
                server_selected_protocol: Some(SecurityProtocol::HYBRID),
                ..ClientCoreOptionalData::default()
            },
        },
        security: ClientSecurityData::no_security(),
        network: Some(ClientNetworkData { channels }),
        cluster: None,
        monitor: None,
        message_channel: None,
        multi_transport_channel: None,
        monitor_extended: None,
    };
    let ci = ConnectInitial::with_gcc_blocks(blocks).unwrap();
    encode_vec(&X224(X224Data {
        data: Cow::Owned(encode_vec(&ci).unwrap()),
    }))
    .unwrap()
}

fn connect_response(server_ids: Vec<u16>) -> Vec<u8> {
    let gcc = ServerGccBlocks {
        core: ServerCoreData {
            version: RdpVersion::V5_PLUS,
            optional_data: ServerCoreOptionalData {
                client_requested_protocols: Some(SecurityProtocol::SSL),
                early_capability_flags: None,
            },
        },
        network: ServerNetworkData {
            channel_ids: server_ids,
            io_channel: IO,
        },
        security: ServerSecurityData::no_security(),
        message_channel: None,
        multi_transport_channel: None,
    };
    let resp = ConnectResponse {
        conference_create_response: ConferenceCreateResponse::new(31219, gcc).unwrap(),
        called_connect_id: 0,
        domain_parameters: DomainParameters::target(),
    };
    encode_vec(&X224(X224Data {
        data: Cow::Owned(encode_vec(&resp).unwrap()),
    }))
    .unwrap()
}

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

fn events(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Event { detail, .. } => Some(detail.clone()),
            _ => None,
        })
        .collect()
}

fn decode_ci(frame: &[u8]) -> ConnectInitial {
    let data = decode::<X224<X224Data<'_>>>(frame).unwrap().0;
    decode::<ConnectInitial>(data.data.as_ref()).unwrap()
}

fn decode_cr(frame: &[u8]) -> ConnectResponse {
    let data = decode::<X224<X224Data<'_>>>(frame).unwrap().0;
    decode::<ConnectResponse>(data.data.as_ref()).unwrap()
}

/// Runs the machine to the active phase; the server grants 1004 (rdpsnd) and 1005 (drdynvc).
fn active() -> Mitm {
    let mut m = machine();
    m.client_frame(&connect_initial()).unwrap();
    m.server_frame(&connect_response(vec![1004, 1005])).unwrap();
    let attach = encode_vec(&X224(McsMessage::AttachUserConfirm(AttachUserConfirm {
        result: 0,
        initiator_id: USER,
    })))
    .unwrap();
    m.server_frame(&attach).unwrap();
    m
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
    send_data_request(USER, channel, data).unwrap()
}

#[test]
fn connect_initial_strips_clipboard_and_devices() {
    let mut m = machine();
    let actions = m.client_frame(&connect_initial()).unwrap();
    let out = to_server(&actions);
    assert_eq!(out.len(), 1);
    let ci = decode_ci(&out[0]);
    let names: Vec<String> = ci
        .channel_names()
        .unwrap()
        .iter()
        .map(|c| c.name.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["rdpsnd", "drdynvc"]);
    let core = &ci.conference_create_request.gcc_blocks().core;
    assert_eq!(
        core.optional_data.server_selected_protocol,
        Some(SecurityProtocol::SSL)
    );
    assert!(
        !core
            .optional_data
            .early_capability_flags
            .unwrap()
            .contains(ClientEarlyCapabilityFlags::SUPPORT_DYN_VC_GFX_PROTOCOL)
    );
    let ev = events(&actions);
    assert!(
        ev.contains(
            &"clipboard redirection requested by the client (cliprdr): stripped".to_owned()
        )
    );
    assert!(
        ev.iter()
            .any(|e| e.contains("drives, printers, smart cards, ports"))
    );
    assert_eq!(ev.len(), 2);
}

#[test]
fn connect_response_is_padded_back_to_client_order() {
    let mut m = machine();
    m.client_frame(&connect_initial()).unwrap();
    let actions = m.server_frame(&connect_response(vec![1004, 1005])).unwrap();
    let out = to_client(&actions);
    let cr = decode_cr(&out[0]);
    // rdpdr, rdpsnd, cliprdr, drdynvc
    assert_eq!(cr.channel_ids(), vec![0x0F00, 1004, 0x0F01, 1005]);
    assert_eq!(cr.global_channel_id(), IO);
    assert_eq!(
        cr.conference_create_response
            .gcc_blocks()
            .core
            .optional_data
            .client_requested_protocols,
        Some(SecurityProtocol::SSL | SecurityProtocol::HYBRID)
    );
    // The node id survives the rewrite.
    assert_eq!(
        conference_user_id(&cr.conference_create_response).unwrap(),
        31219
    );
    assert!(events(&actions)[0].contains("rdpdr=3840(stripped)"));
}

#[test]
fn stripped_channel_join_is_answered_locally() {
    let mut m = active();
    let join = encode_vec(&X224(McsMessage::ChannelJoinRequest(ChannelJoinRequest {
        initiator_id: USER,
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
            initiator_id: USER,
            requested_channel_id: 0x0F01,
            channel_id: 0x0F01,
        })
    );
    // A kept channel's join goes to the server.
    let join = encode_vec(&X224(McsMessage::ChannelJoinRequest(ChannelJoinRequest {
        initiator_id: USER,
        channel_id: 1004,
    })))
    .unwrap();
    assert_eq!(to_server(&m.client_frame(&join).unwrap()).len(), 1);
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
    assert_eq!((req.initiator_id, req.channel_id), (USER, 1005));
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

fn client_info_frame() -> Vec<u8> {
    let info = ClientInfoPdu {
        security_header: BasicSecurityHeader {
            flags: BasicSecurityHeaderFlags::INFO_PKT,
        },
        client_info: ClientInfo {
            credentials: Credentials {
                username: "tanaka".into(),
                password: "change-me-now".into(),
                domain: None,
            },
            password_cookie: None,
            code_page: 0,
            flags: ClientInfoFlags::MOUSE | ClientInfoFlags::UNICODE | ClientInfoFlags::COMPRESSION,
            compression_type: CompressionType::Rdp61,
            alternate_shell: String::new(),
            work_dir: String::new(),
            extra_info: ExtendedClientInfo {
                address_family: AddressFamily::INET,
                address: "127.0.10.11".into(),
                dir: "C:\\".into(),
                optional_data: Default::default(),
            },
        },
    };
    request(IO, encode_vec(&info).unwrap())
}

fn decode_info(frame: &[u8]) -> ClientInfoPdu {
    let McsMessage::SendDataRequest(req) = decode::<X224<McsMessage<'_>>>(frame).unwrap().0 else {
        panic!()
    };
    decode::<ClientInfoPdu>(req.user_data.as_ref()).unwrap()
}

#[test]
fn client_info_gets_target_credentials_and_a_redacted_recording() {
    let mut m = active();
    let a = m.client_frame(&client_info_frame()).unwrap();
    let Action::ClientLogon {
        username, password, ..
    } = &a[0]
    else {
        panic!("logon first")
    };
    assert_eq!(
        (username.as_str(), password.expose()),
        ("tanaka", "change-me-now")
    );
    assert_eq!(format!("{password:?}"), "<secret>");
    let sent = decode_info(&to_server(&a)[0]);
    assert_eq!(sent.client_info.credentials.username, "labuser");
    assert_eq!(sent.client_info.credentials.password, "LabPass123!");
    assert!(sent.client_info.flags.contains(ClientInfoFlags::AUTOLOGON));
    assert!(
        !sent
            .client_info
            .flags
            .contains(ClientInfoFlags::COMPRESSION)
    );
    let recorded: Vec<&Vec<u8>> = a
        .iter()
        .filter_map(|x| match x {
            Action::Record { bytes, .. } => Some(bytes),
            _ => None,
        })
        .collect();
    assert_eq!(recorded.len(), 1);
    let rec = decode_info(recorded[0]);
    assert_eq!(rec.client_info.credentials.password, "");
    assert!(!recorded[0].windows(4).any(|w| w == b"L\0a\0"));
    assert!(m.client_info_seen());
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
        pdu_source: USER,
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
}

#[test]
fn out_of_order_pdus_are_errors_and_errors_stick() {
    let mut m = machine();
    assert!(m.server_frame(&connect_response(vec![1004])).is_err());
    let mut m = machine();
    let fast_path = [0x00, 0x04, 0x01, 0x02];
    assert!(m.client_frame(&fast_path).is_err());
    assert!(
        m.client_frame(&connect_initial()).is_err(),
        "the first error sticks"
    );
}

#[test]
fn server_granting_more_channels_than_kept_is_refused() {
    let mut m = machine();
    m.client_frame(&connect_initial()).unwrap();
    assert!(
        m.server_frame(&connect_response(vec![1004, 1005, 1006]))
            .is_err()
    );
}

proptest! {
    #[test]
    fn garbage_frames_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut m = machine();
        let _ = m.client_frame(&bytes);
        let mut m = active();
        let _ = m.client_frame(&bytes);
        let _ = m.server_frame(&bytes);
    }

    #[test]
    fn truncated_or_flipped_connect_initial_never_panics(cut in 0usize..400, flip in 0usize..400, bit in 0u8..8) {
        let mut ci = connect_initial();
        if let Some(b) = ci.get_mut(flip) { *b ^= 1 << bit; }
        let cut = cut.min(ci.len());
        let mut m = machine();
        let _ = m.client_frame(&ci[..cut]);
    }

    #[test]
    fn flipped_connect_response_never_panics(flip in 0usize..200, bit in 0u8..8) {
        let mut cr = connect_response(vec![1004, 1005]);
        if let Some(b) = cr.get_mut(flip) { *b ^= 1 << bit; }
        let mut m = machine();
        m.client_frame(&connect_initial()).unwrap();
        let _ = m.server_frame(&cr);
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
