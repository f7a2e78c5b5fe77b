//! PDUs shaped like FreeRDP's and xrdp's, built with ironrdp-pdu's encoders, and a driver that
//! runs the whole connection sequence (acceptor, connector) in memory; shared by the unit
//! tests of [`super::accept`], [`super::connect`] and [`super::mitm`].

use std::borrow::Cow;

use ironrdp_core::{decode, encode_vec};
use ironrdp_pdu::gcc::{
    ChannelDef, ChannelName, ChannelOptions, ClientCoreData, ClientCoreOptionalData,
    ClientEarlyCapabilityFlags, ClientGccBlocks, ClientNetworkData, ClientSecurityData, ColorDepth,
    ConferenceCreateResponse, KeyboardType, MultiTransportChannelData, MultiTransportFlags,
    RdpVersion, SecureAccessSequence, ServerCoreData, ServerCoreOptionalData, ServerGccBlocks,
    ServerNetworkData, ServerSecurityData,
};
use ironrdp_pdu::mcs::{
    AttachUserConfirm, AttachUserRequest, ChannelJoinConfirm, ChannelJoinRequest, ConnectInitial,
    ConnectResponse, DomainParameters, ErectDomainPdu, McsMessage,
};
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::rdp::ClientInfoPdu;
use ironrdp_pdu::rdp::client_info::{
    AddressFamily, ClientInfo, ClientInfoFlags, CompressionType, Credentials, ExtendedClientInfo,
};
use ironrdp_pdu::rdp::headers::{BasicSecurityHeader, BasicSecurityHeaderFlags};
use ironrdp_pdu::x224::{X224, X224Data};

use super::accept::{AcceptStep, ClientLogon, McsAcceptor};
use super::channels::ChannelRules;
use super::connect::{ConnectStep, Connected, McsConnector};
use super::framing::send_data_request;
use super::mitm::{Mitm, MitmConfig};
use super::types::{Secret, TargetCredentials};

/// Static channels the test client asks for.
pub const CLIENT_CHANNELS: [&str; 4] = ["rdpdr", "rdpsnd", "cliprdr", "drdynvc"];
/// The I/O channel (the same on both sides).
pub const IO: u16 = 1003;
/// The user channel the acceptor gives the client: after the two kept channels.
pub const CLIENT_USER: u16 = 1006;
/// The user channel the test server gives Sekisho (xrdp's numbering).
pub const SERVER_USER: u16 = 1002;

pub fn rules() -> ChannelRules {
    ChannelRules {
        allow_static_channels: vec!["rdpsnd".into(), "drdynvc".into()],
        allow_dynamic_channels: vec![
            "Microsoft::Windows::RDS::DisplayControl".into(),
            "Microsoft::Windows::RDS::Graphics".into(),
        ],
        deny_dynamic_channels: vec!["URBDRC".into(), "Microsoft::Windows::RDS::Graphics".into()],
    }
}

pub fn inject() -> TargetCredentials {
    TargetCredentials {
        username: "labuser".into(),
        password: Secret::new("LabPass123!"),
        domain: None,
    }
}

pub fn x224_data(payload: Vec<u8>) -> Vec<u8> {
    encode_vec(&X224(X224Data {
        data: Cow::Owned(payload),
    }))
    .unwrap()
}

pub fn client_blocks(names: &[&str]) -> ClientGccBlocks {
    let channels = names
        .iter()
        .map(|n| ChannelDef {
            name: ChannelName::from_utf8(n).unwrap(),
            options: ChannelOptions::INITIALIZED,
        })
        .collect();
    ClientGccBlocks {
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
                        | ClientEarlyCapabilityFlags::SUPPORT_DYN_VC_GFX_PROTOCOL
                        | ClientEarlyCapabilityFlags::SUPPORT_SKIP_CHANNELJOIN,
                ),
                dig_product_id: Some(String::new()),
                connection_type: Some(ironrdp_pdu::gcc::ConnectionType::Lan),
                server_selected_protocol: Some(SecurityProtocol::SSL),
                ..ClientCoreOptionalData::default()
            },
        },
        security: ClientSecurityData::no_security(),
        network: Some(ClientNetworkData { channels }),
        cluster: None,
        monitor: None,
        message_channel: None,
        multi_transport_channel: Some(MultiTransportChannelData {
            flags: MultiTransportFlags::TRANSPORT_TYPE_UDP_FECR,
        }),
        monitor_extended: None,
    }
}

pub fn connect_initial_with(names: &[&str]) -> Vec<u8> {
    let ci = ConnectInitial::with_gcc_blocks(client_blocks(names)).unwrap();
    x224_data(encode_vec(&ci).unwrap())
}

pub fn connect_initial() -> Vec<u8> {
    connect_initial_with(&CLIENT_CHANNELS)
}

pub fn decode_ci(frame: &[u8]) -> ConnectInitial {
    let data = decode::<X224<X224Data<'_>>>(frame).unwrap().0;
    decode::<ConnectInitial>(data.data.as_ref()).unwrap()
}

pub fn decode_cr(frame: &[u8]) -> ConnectResponse {
    let data = decode::<X224<X224Data<'_>>>(frame).unwrap().0;
    decode::<ConnectResponse>(data.data.as_ref()).unwrap()
}

pub fn connect_response(server_ids: Vec<u16>) -> Vec<u8> {
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
    x224_data(encode_vec(&resp).unwrap())
}

pub fn mcs(msg: McsMessage<'_>) -> Vec<u8> {
    encode_vec(&X224(msg)).unwrap()
}

pub fn erect_domain() -> Vec<u8> {
    mcs(McsMessage::ErectDomainRequest(ErectDomainPdu {
        sub_height: 0,
        sub_interval: 0,
    }))
}

pub fn attach_user_request() -> Vec<u8> {
    mcs(McsMessage::AttachUserRequest(AttachUserRequest))
}

pub fn attach_user_confirm(user: u16) -> Vec<u8> {
    mcs(McsMessage::AttachUserConfirm(AttachUserConfirm {
        result: 0,
        initiator_id: user,
    }))
}

pub fn join_request(user: u16, channel: u16) -> Vec<u8> {
    mcs(McsMessage::ChannelJoinRequest(ChannelJoinRequest {
        initiator_id: user,
        channel_id: channel,
    }))
}

pub fn join_confirm(user: u16, channel: u16) -> Vec<u8> {
    mcs(McsMessage::ChannelJoinConfirm(ChannelJoinConfirm {
        result: 0,
        initiator_id: user,
        requested_channel_id: channel,
        channel_id: channel,
    }))
}

pub fn client_info(username: &str, password: &str) -> ClientInfoPdu {
    ClientInfoPdu {
        security_header: BasicSecurityHeader {
            flags: BasicSecurityHeaderFlags::INFO_PKT,
        },
        client_info: ClientInfo {
            credentials: Credentials {
                username: username.into(),
                password: password.into(),
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
    }
}

pub fn client_info_frame_bytes(user_data: Vec<u8>) -> Vec<u8> {
    send_data_request(CLIENT_USER, IO, user_data).unwrap()
}

pub fn client_info_frame() -> Vec<u8> {
    client_info_frame_bytes(encode_vec(&client_info("tanaka", "change-me-now")).unwrap())
}

/// The client's side of the sequence after the Connect Initial, as FreeRDP sends it (every
/// channel joined, then the Client Info).
pub fn client_mcs_frames(channel_ids: &[u16], info: Vec<u8>) -> Vec<Vec<u8>> {
    let mut frames = vec![erect_domain(), attach_user_request()];
    frames.push(join_request(CLIENT_USER, CLIENT_USER));
    frames.push(join_request(CLIENT_USER, IO));
    for id in channel_ids {
        frames.push(join_request(CLIENT_USER, *id));
    }
    frames.push(info);
    frames
}

/// Runs the acceptor over a well-formed client sequence; returns the logon and every frame the
/// acceptor wrote to the client.
pub fn accept(client_info: Vec<u8>) -> (Box<ClientLogon>, Vec<Vec<u8>>) {
    let mut acceptor = McsAcceptor::new(rules(), SecurityProtocol::SSL | SecurityProtocol::HYBRID);
    let mut replies = Vec::new();
    let AcceptStep::Reply(r) = acceptor.client_frame(&connect_initial()).unwrap() else {
        panic!("no Connect Response")
    };
    replies.extend(r);
    let ids = decode_cr(replies.first().unwrap()).channel_ids();
    for frame in client_mcs_frames(&ids, client_info) {
        match acceptor.client_frame(&frame).unwrap() {
            AcceptStep::Reply(r) => replies.extend(r),
            AcceptStep::Logon(logon) => return (logon, replies),
        }
    }
    panic!("no logon")
}

/// Runs the connector against a server that grants `server_ids` and gives `server_user`;
/// returns the end of the sequence and every frame sent to the server (the Connect Initial
/// first, the Client Info last).
pub fn connect(
    logon: Box<ClientLogon>,
    server_ids: Vec<u16>,
    server_user: u16,
) -> (Box<Connected>, Vec<Vec<u8>>) {
    let (mut c, ci) =
        McsConnector::start(logon.handshake, SecurityProtocol::SSL, Some(inject())).unwrap();
    let mut sent = vec![ci];
    let mut step = c.server_frame(&connect_response(server_ids)).unwrap();
    let mut answered_attach = false;
    loop {
        match step {
            ConnectStep::Send(frames) => {
                let last = frames.last().cloned().unwrap();
                sent.extend(frames);
                let msg = decode::<X224<McsMessage<'_>>>(&last).unwrap().0;
                let reply = match msg {
                    McsMessage::AttachUserRequest(_) if !answered_attach => {
                        answered_attach = true;
                        attach_user_confirm(server_user)
                    }
                    McsMessage::ChannelJoinRequest(j) => join_confirm(j.initiator_id, j.channel_id),
                    other => panic!("unexpected {other:?}"),
                };
                step = c.server_frame(&reply).unwrap();
            }
            ConnectStep::Done(connected) => {
                sent.push(connected.client_info.clone());
                return (connected, sent);
            }
        }
    }
}

/// A relay machine after the whole sequence: the server grants 1004 (rdpsnd) and 1005
/// (drdynvc) and gives the user channel [`SERVER_USER`].
pub fn active() -> Mitm {
    let (logon, _) = accept(client_info_frame());
    let (connected, _) = connect(logon, vec![1004, 1005], SERVER_USER);
    Mitm::new(MitmConfig { rules: rules() }, connected.link)
}
