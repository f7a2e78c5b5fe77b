//! The bodies of Sekisho's fuzz targets, one function per target, and the seed inputs that
//! reach deep states (an RDP session in its relay phase).
//!
//! This file is compiled twice: by the fuzz crate (`fuzz_targets/*.rs` call [`run`]) and by
//! `proxy/tests/fuzz_regressions.rs`, which replays `fuzz/seeds/` and `fuzz/regressions/`
//! through the same functions as ordinary tests. So it uses only crates `proxy` depends on,
//! and nothing here may unwrap or index: a panic must come from the code under test.

use std::borrow::Cow;

use ironrdp_core::encode_vec;
use ironrdp_pdu::gcc::{
    ChannelDef, ChannelName, ChannelOptions, ClientCoreData, ClientCoreOptionalData,
    ClientEarlyCapabilityFlags, ClientGccBlocks, ClientNetworkData, ClientSecurityData, ColorDepth,
    ConferenceCreateResponse, ConnectionType, HighColorDepth, KeyboardType, RdpVersion,
    SecureAccessSequence, ServerCoreData, ServerCoreOptionalData, ServerGccBlocks,
    ServerNetworkData, ServerSecurityData, SupportedColorDepths,
};
use ironrdp_pdu::mcs::{
    AttachUserConfirm, AttachUserRequest, ChannelJoinConfirm, ChannelJoinRequest, ConnectInitial,
    ConnectResponse, DomainParameters, ErectDomainPdu, McsMessage, SendDataIndication,
    SendDataRequest,
};
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::rdp::ClientInfoPdu;
use ironrdp_pdu::rdp::client_info::{
    AddressFamily, ClientInfo, ClientInfoFlags, CompressionType, Credentials, ExtendedClientInfo,
};
use ironrdp_pdu::rdp::headers::{BasicSecurityHeader, BasicSecurityHeaderFlags};
use ironrdp_pdu::rdp::vc::{ChannelControlFlags, ChannelPduHeader};
use ironrdp_pdu::x224::{X224, X224Data};
use proxy::rdp::accept::{AcceptStep, McsAcceptor};
use proxy::rdp::channels::ChannelRules;
use proxy::rdp::connect::{ConnectStep, McsConnector};
use proxy::rdp::framing;
use proxy::rdp::link::ChannelLink;
use proxy::rdp::mitm::{Mitm, MitmConfig};
use proxy::rdp::negotiation;
use proxy::rdp::types::{Secret, TargetCredentials};

/// Every target, by the name cargo-fuzz knows it.
pub const TARGETS: [&str; 10] = [
    "rdp_framing",
    "rdp_accept",
    "rdp_mitm",
    "rdp_channels",
    "rfb",
    "recording_reader",
    "config",
    "ssh_menu",
    "terminal_replay",
    "rdp_replay",
];

/// Runs target `name` on `data`; an unknown name does nothing.
pub fn run(name: &str, data: &[u8]) {
    match name {
        "rdp_framing" => rdp_framing(data),
        "rdp_accept" => rdp_accept(data),
        "rdp_mitm" => rdp_mitm(data),
        "rdp_channels" => rdp_channels(data),
        "rfb" => rfb(data),
        "recording_reader" => recording_reader(data),
        "config" => config(data),
        "ssh_menu" => ssh_menu(data),
        "terminal_replay" => terminal_replay(data),
        "rdp_replay" => rdp_replay(data),
        _ => {}
    }
}

/// Frame splitting and the first PDUs of a connection, as the RDP front door reads them from
/// the contractor and the server leg.
pub fn rdp_framing(data: &[u8]) {
    let mut pos = 0;
    while let Ok(Some((_, n))) = framing::decode(data.get(pos..).unwrap_or_default()) {
        if n == 0 {
            break;
        }
        pos += n;
    }
    if let Ok(Some(hello)) = negotiation::decode_client_hello(data) {
        let consumed = match hello {
            negotiation::ClientHello::Preconnection { consumed, .. }
            | negotiation::ClientHello::ConnectionRequest { consumed, .. } => consumed,
        };
        // A preconnection PDU is followed by the Connection Request in the same stream.
        let _ = negotiation::decode_client_hello(data.get(consumed..).unwrap_or_default());
    }
    if let Ok(Some((_, n))) = framing::decode(data) {
        let _ = negotiation::decode_connection_confirm(data.get(..n).unwrap_or_default());
    }
    let _ = negotiation::decode_connection_confirm(data);
    let _ = negotiation::split_user_target(&String::from_utf8_lossy(data));
}

// ---------------------------------------------------------------------------------------
// RDP MITM machine
// ---------------------------------------------------------------------------------------

/// The I/O channel id the seeded server grants.
pub const IO_CHANNEL: u16 = 1003;
/// The user channel id the seeded server gives Sekisho.
pub const SERVER_USER_CHANNEL: u16 = 1007;
/// The user channel id Sekisho gives the seeded client (after its two kept channels).
pub const USER_CHANNEL: u16 = 1006;
/// Static channels the seeded client asks for; rdpsnd (1004) and drdynvc (1005) are kept.
pub const CLIENT_CHANNELS: [&str; 4] = ["rdpdr", "rdpsnd", "cliprdr", "drdynvc"];

fn rules() -> ChannelRules {
    ChannelRules {
        allow_static_channels: vec!["rdpsnd".into(), "drdynvc".into()],
        allow_dynamic_channels: vec![
            "Microsoft::Windows::RDS::DisplayControl".into(),
            "Microsoft::Windows::RDS::Graphics".into(),
        ],
        deny_dynamic_channels: vec!["URBDRC".into(), "Microsoft::Windows::RDS::Graphics".into()],
    }
}

fn inject(mode: u8) -> Option<TargetCredentials> {
    (mode & 2 != 0).then(|| TargetCredentials {
        username: "labuser".into(),
        password: Secret::new("LabPass123!"),
        domain: (mode & 8 != 0).then(|| "LAB".to_owned()),
    })
}

fn server_selected(mode: u8) -> SecurityProtocol {
    if mode & 4 != 0 {
        SecurityProtocol::HYBRID
    } else {
        SecurityProtocol::SSL
    }
}

/// The RDP machines of one connection in the order the front door runs them: the acceptor
/// toward the contractor until the logon, the connector toward the target, then the relay.
pub enum Stage {
    /// before the logon
    Accept(Box<McsAcceptor>),
    /// dialling the target
    Connect(Box<McsConnector>),
    /// relaying
    Relay(Box<Mitm>),
    /// a machine refused a frame
    Failed,
}

impl Stage {
    /// A fresh connection.
    pub fn new() -> Self {
        Stage::Accept(Box::new(McsAcceptor::new(
            rules(),
            SecurityProtocol::SSL | SecurityProtocol::HYBRID,
        )))
    }

    /// Feeds one frame; false once a machine failed (it stays failed). Frames for a leg that
    /// does not take any yet (the server before the logon) are held back, as the front door
    /// holds them: here they are dropped.
    pub fn feed(&mut self, mode: u8, client: bool, frame: &[u8]) -> bool {
        let next = match (std::mem::replace(self, Stage::Failed), client) {
            (Stage::Accept(mut a), true) => match a.client_frame(frame) {
                Ok(AcceptStep::Reply(_)) => Stage::Accept(a),
                Ok(AcceptStep::Logon(logon)) => {
                    match McsConnector::start(logon.handshake, server_selected(mode), inject(mode))
                    {
                        Ok((c, _)) => Stage::Connect(Box::new(c)),
                        Err(_) => Stage::Failed,
                    }
                }
                Err(_) => Stage::Failed,
            },
            (Stage::Connect(mut c), false) => match c.server_frame(frame) {
                Ok(ConnectStep::Send(_)) => Stage::Connect(c),
                Ok(ConnectStep::Done(done)) => {
                    let _ = done.link.negotiated.describe();
                    Stage::Relay(Box::new(Mitm::new(
                        MitmConfig { rules: rules() },
                        done.link,
                    )))
                }
                Err(_) => Stage::Failed,
            },
            (Stage::Relay(mut m), client) => {
                let r = if client {
                    m.client_frame(frame)
                } else {
                    m.server_frame(frame)
                };
                match r {
                    Ok(_) => Stage::Relay(m),
                    Err(_) => Stage::Failed,
                }
            }
            (held @ (Stage::Accept(_) | Stage::Connect(_)), _) => held,
            (Stage::Failed, _) => Stage::Failed,
        };
        *self = next;
        !matches!(self, Stage::Failed)
    }
}

/// An MCS Connect Initial shaped like FreeRDP's, asking for [`CLIENT_CHANNELS`].
pub fn connect_initial() -> Option<Vec<u8>> {
    let mut channels = Vec::new();
    for n in CLIENT_CHANNELS {
        channels.push(ChannelDef {
            name: ChannelName::from_utf8(n)?,
            options: ChannelOptions::INITIALIZED,
        });
    }
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
                high_color_depth: Some(HighColorDepth::Bpp24),
                supported_color_depths: Some(SupportedColorDepths::all()),
                early_capability_flags: Some(
                    ClientEarlyCapabilityFlags::SUPPORT_ERR_INFO_PDU
                        | ClientEarlyCapabilityFlags::SUPPORT_DYN_VC_GFX_PROTOCOL,
                ),
                dig_product_id: Some(String::new()),
                connection_type: Some(ConnectionType::Lan),
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
    let ci = ConnectInitial::with_gcc_blocks(blocks).ok()?;
    encode_vec(&X224(X224Data {
        data: Cow::Owned(encode_vec(&ci).ok()?),
    }))
    .ok()
}

/// The server's MCS Connect Response granting `server_ids` for the kept channels.
pub fn connect_response(server_ids: Vec<u16>) -> Option<Vec<u8>> {
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
            io_channel: IO_CHANNEL,
        },
        security: ServerSecurityData::no_security(),
        message_channel: None,
        multi_transport_channel: None,
    };
    let resp = ConnectResponse {
        conference_create_response: ConferenceCreateResponse::new(31219, gcc).ok()?,
        called_connect_id: 0,
        domain_parameters: DomainParameters::target(),
    };
    encode_vec(&X224(X224Data {
        data: Cow::Owned(encode_vec(&resp).ok()?),
    }))
    .ok()
}

/// The server's Attach User Confirm giving [`SERVER_USER_CHANNEL`].
pub fn attach_user_confirm() -> Option<Vec<u8>> {
    encode_vec(&X224(McsMessage::AttachUserConfirm(AttachUserConfirm {
        result: 0,
        initiator_id: SERVER_USER_CHANNEL,
    })))
    .ok()
}

/// Frames in order, each with whether the client sent it.
pub type Frames = Vec<(bool, Vec<u8>)>;

/// An MCS PDU in an X.224 Data TPDU.
fn mcs(msg: McsMessage<'_>) -> Option<Vec<u8>> {
    encode_vec(&X224(msg)).ok()
}

/// The seeded client's Client Info PDU (TLS-only logon, so it carries a password).
pub fn client_info() -> Option<Vec<u8>> {
    client_info_with_flags(0)
}

/// [`client_info`] with `extra` set in its flags as sent (after encoding, so that shapes
/// ironrdp would not encode are possible).
pub fn client_info_with_flags(extra: u32) -> Option<Vec<u8>> {
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
            flags: ClientInfoFlags::MOUSE | ClientInfoFlags::UNICODE,
            compression_type: CompressionType::K8,
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
    let mut user_data = encode_vec(&info).ok()?;
    // Security header (4 bytes) and code page (4), then the flags.
    let flags = user_data.get_mut(8..12)?;
    let value = u32::from_le_bytes([
        flags.first()?.to_owned(),
        *flags.get(1)?,
        *flags.get(2)?,
        *flags.get(3)?,
    ]) | extra;
    flags.copy_from_slice(&value.to_le_bytes());
    mcs(McsMessage::SendDataRequest(SendDataRequest {
        initiator_id: USER_CHANNEL,
        channel_id: IO_CHANNEL,
        user_data: Cow::Owned(user_data),
    }))
}

/// The whole connection sequence as the two legs send it: the client's, up to its Client Info
/// (every channel joined, ids as Sekisho gives them), then the server's answers to Sekisho.
pub fn sequence() -> Option<Frames> {
    let join = |user: u16, channel: u16| {
        mcs(McsMessage::ChannelJoinRequest(ChannelJoinRequest {
            initiator_id: user,
            channel_id: channel,
        }))
    };
    let confirm = |channel: u16| {
        mcs(McsMessage::ChannelJoinConfirm(ChannelJoinConfirm {
            result: 0,
            initiator_id: SERVER_USER_CHANNEL,
            requested_channel_id: channel,
            channel_id: channel,
        }))
    };
    let mut frames = vec![
        (true, connect_initial()?),
        (
            true,
            mcs(McsMessage::ErectDomainRequest(ErectDomainPdu {
                sub_height: 0,
                sub_interval: 0,
            }))?,
        ),
        (true, mcs(McsMessage::AttachUserRequest(AttachUserRequest))?),
    ];
    for id in [USER_CHANNEL, IO_CHANNEL, 0x0F00, 1004, 0x0F01, 1005] {
        frames.push((true, join(USER_CHANNEL, id)?));
    }
    frames.push((true, client_info()?));
    frames.push((false, connect_response(vec![1004, 1005])?));
    frames.push((false, attach_user_confirm()?));
    for id in [SERVER_USER_CHANNEL, IO_CHANNEL, 1004, 1005] {
        frames.push((false, confirm(id)?));
    }
    Some(frames)
}

/// The link of a connection that went through [`sequence`], computed once per process: the
/// fuzzer calls this on every input.
fn relay_link() -> Option<ChannelLink> {
    static LINK: std::sync::OnceLock<Option<ChannelLink>> = std::sync::OnceLock::new();
    LINK.get_or_init(|| {
        let mut stage = Stage::new();
        for (client, frame) in sequence()? {
            if !stage.feed(0, client, &frame) {
                return None;
            }
        }
        match stage {
            Stage::Relay(m) => Some(m.link().clone()),
            _ => None,
        }
    })
    .clone()
}

/// The frames a recording of a connection starts with (Connect Initial, Connect Response,
/// Attach User Confirm), for the player.
pub fn relay_prefix() -> Option<Frames> {
    static PREFIX: std::sync::OnceLock<Option<Frames>> = std::sync::OnceLock::new();
    PREFIX
        .get_or_init(|| {
            Some(vec![
                (true, connect_initial()?),
                (false, connect_response(vec![1004, 1005])?),
                (false, attach_user_confirm()?),
            ])
        })
        .clone()
}

/// The channel a wrapped record goes to: the interesting ids first (I/O, kept, stripped,
/// user, never granted), then any.
fn channel_for(sel: u8) -> u16 {
    match sel {
        0 => IO_CHANNEL,
        1 => 1004,
        2 => 1005,
        3 => USER_CHANNEL,
        4 => 0x0F00,
        5 => 0x0F01,
        6 => 1006,
        7 => 1003 + 0x0F00,
        n => 1000 + u16::from(n),
    }
}

/// Wraps `body` the way the relay would see it on `channel`: an MCS Send Data Request from
/// the client or Send Data Indication from the server, optionally behind a virtual channel
/// PDU header (chunk flags from `flags`), or a Channel Join Request.
fn wrap(client: bool, kind: u8, channel: u16, flags: u8, body: &[u8]) -> Option<Vec<u8>> {
    let mut user_data = Vec::new();
    if kind & 1 != 0 {
        let mut f = ChannelControlFlags::empty();
        if flags & 1 != 0 {
            f |= ChannelControlFlags::FLAG_FIRST;
        }
        if flags & 2 != 0 {
            f |= ChannelControlFlags::FLAG_LAST;
        }
        if flags & 4 != 0 {
            f |= ChannelControlFlags::PACKET_COMPRESSED;
        }
        if flags & 8 != 0 {
            f |= ChannelControlFlags::FLAG_SHOW_PROTOCOL;
        }
        let length = if flags & 16 != 0 {
            u32::from(flags) << 8
        } else {
            u32::try_from(body.len()).ok()?
        };
        user_data = encode_vec(&ChannelPduHeader { length, flags: f }).ok()?;
    }
    user_data.extend_from_slice(body);
    let msg = if kind & 2 != 0 && client {
        McsMessage::ChannelJoinRequest(ChannelJoinRequest {
            initiator_id: USER_CHANNEL,
            channel_id: channel,
        })
    } else if client {
        McsMessage::SendDataRequest(SendDataRequest {
            initiator_id: USER_CHANNEL,
            channel_id: channel,
            user_data: Cow::Owned(user_data),
        })
    } else {
        McsMessage::SendDataIndication(SendDataIndication {
            initiator_id: 1002,
            channel_id: channel,
            user_data: Cow::Owned(user_data),
        })
    };
    encode_vec(&X224(msg)).ok()
}

/// One record of a MITM fuzz input.
struct Rec<'a> {
    tag: u8,
    payload: &'a [u8],
}

/// Splits `data` into records `[tag][len: u16 LE][payload]` (a short last one takes the rest).
fn records(mut data: &[u8]) -> Vec<Rec<'_>> {
    let mut out = Vec::new();
    while let [tag, rest @ ..] = data {
        let (len, rest) = match rest {
            [lo, hi, rest @ ..] => (usize::from(u16::from_le_bytes([*lo, *hi])), rest),
            _ => (rest.len(), &[][..]),
        };
        let len = len.min(rest.len());
        let (payload, tail) = rest.split_at(len);
        out.push(Rec { tag: *tag, payload });
        data = tail;
    }
    out
}

/// Feeds one frame; false once the machine has failed (it stays failed).
/// Drives the machines with records. Tag bit 0: from the client (else the server). Tag bits
/// 1-2: 0 = raw bytes, cut into frames by [`framing::decode`] as the front door does;
/// otherwise the payload is `[channel selector][chunk flags][body]` wrapped by [`wrap`] with
/// kind `bits 1-2 - 1`.
fn drive(stage: &mut Stage, mode: u8, data: &[u8]) {
    for rec in records(data) {
        let client = rec.tag & 1 != 0;
        let kind = (rec.tag >> 1) & 3;
        if kind == 0 {
            let mut pos = 0;
            while let Ok(Some((_, n))) = framing::decode(rec.payload.get(pos..).unwrap_or_default())
            {
                let frame = rec.payload.get(pos..pos + n).unwrap_or_default();
                if n == 0 || !stage.feed(mode, client, frame) {
                    return;
                }
                pos += n;
            }
        } else {
            let (sel, flags, body) = match rec.payload {
                [sel, flags, body @ ..] => (*sel, *flags, body),
                _ => continue,
            };
            let Some(frame) = wrap(client, kind - 1, channel_for(sel), flags, body) else {
                continue;
            };
            if !stage.feed(mode, client, &frame) {
                return;
            }
        }
    }
    if let Stage::Relay(m) = stage {
        let _ = m.negotiated().describe();
    }
}

/// A relay-phase machine of a connection that went through [`sequence`].
fn relay_stage() -> Option<Stage> {
    Some(Stage::Relay(Box::new(Mitm::new(
        MitmConfig { rules: rules() },
        relay_link()?,
    ))))
}

/// The RDP machines from the contractor's first MCS frame (mode bit 0 clear: the acceptor up
/// to the logon, the connector toward the target, then the relay) or from the relay phase
/// (bit 0 set); other mode bits vary the configuration.
pub fn rdp_mitm(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let stage = if mode & 1 != 0 {
        relay_stage()
    } else {
        Some(Stage::new())
    };
    if let Some(mut stage) = stage {
        drive(&mut stage, mode, rest);
    }
}

/// The contractor's side before the logon, which Sekisho answers itself: the Client Info
/// decoder on raw bytes (mode bit 0 set), or the acceptor on client records (clear) after a
/// well-formed Connect Initial when mode bit 1 is set.
pub fn rdp_accept(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 != 0 {
        if let Ok(info) = proxy::rdp::client_info::decode_client_info(rest) {
            let _ = info.client_info.credentials.username.len();
        }
        return;
    }
    let mut acceptor = McsAcceptor::new(rules(), SecurityProtocol::SSL | SecurityProtocol::HYBRID);
    if mode & 2 != 0 {
        let Some(ci) = connect_initial() else {
            return;
        };
        if acceptor.client_frame(&ci).is_err() {
            return;
        }
    }
    for rec in records(rest) {
        let mut pos = 0;
        while let Ok(Some((_, n))) = framing::decode(rec.payload.get(pos..).unwrap_or_default()) {
            let frame = rec.payload.get(pos..pos + n).unwrap_or_default();
            match acceptor.client_frame(frame) {
                Ok(AcceptStep::Reply(_)) if n > 0 => pos += n,
                _ => return,
            }
        }
    }
}

/// Static and dynamic virtual channel filtering in the relay phase: every record is channel
/// data (or a join), so the fuzzer spends its time on the drdynvc and SVC paths.
pub fn rdp_channels(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Some(mut stage) = relay_stage() else {
        return;
    };
    let mut forced = Vec::with_capacity(rest.len());
    for rec in records(rest) {
        // Keep bit 0 (direction), force a wrapped kind (1..=3).
        let kind = ((rec.tag >> 1) % 3) + 1;
        forced.push((rec.tag & 1) | (kind << 1));
        let len = u16::try_from(rec.payload.len()).unwrap_or(u16::MAX);
        forced.extend_from_slice(&len.to_le_bytes());
        forced.extend_from_slice(rec.payload);
    }
    drive(&mut stage, mode, &forced);
}

// ---------------------------------------------------------------------------------------
// Other parsers
// ---------------------------------------------------------------------------------------

/// The RFB codec (VNC consoles and their recordings).
pub fn rfb(data: &[u8]) {
    use player::rfb::{self, PixelFormat, Replay, ServerDecoder, ServerInit};
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    match selector % 4 {
        0 => {
            let mut pos = 0;
            while let Ok(Some((_, n))) = rfb::decode_client(data.get(pos..).unwrap_or_default()) {
                if n == 0 {
                    break;
                }
                pos += n;
            }
        }
        1 => {
            let mut d = ServerDecoder::new(64, 48, PixelFormat::RGB888_LE);
            let mut pos = 0;
            while let Ok(Some((_, n))) = d.decode(data.get(pos..).unwrap_or_default()) {
                if n == 0 {
                    break;
                }
                pos += n;
            }
        }
        2 => {
            let _ = rfb::decode_version(data);
            let _ = rfb::decode_security_types(data);
            let _ = rfb::decode_security_result(data, rfb::ProtocolVersion::V3_8);
            let _ = rfb::decode_server_init(data);
        }
        _ => {
            let init = ServerInit {
                width: 64,
                height: 48,
                pixel_format: PixelFormat::RGB888_LE,
                name: String::new(),
            };
            if let Ok(mut r) = Replay::new(&init) {
                let (client, server) = data.split_at(data.len() / 4);
                let _ = r.client_bytes(client);
                let _ = r.server_bytes(server);
            }
        }
    }
}

/// The recording reader, verifier, info and seal. Same body as `exercise` in
/// `recorder/tests/fuzz_regression.rs`.
pub fn recording_reader(data: &[u8]) {
    let _ = recorder::verify(data, None);
    let _ = recorder::info(data);
    if let Ok(rec) = recorder::Recording::parse(data) {
        let _ = rec.index();
        for r in rec.records().take(10_000) {
            if r.is_err() {
                break;
            }
        }
        let _ = rec.records_from(rec.end_us() / 2).count();
    }
    let key = recorder::RecordingKey::new(ed25519_dalek::SigningKey::from_bytes(&[1; 32]));
    if let Ok(plan) = recorder::seal(data, &key) {
        let keep = usize::try_from(plan.keep_len).unwrap_or(usize::MAX);
        let mut sealed = data.get(..keep).unwrap_or_default().to_vec();
        sealed.extend_from_slice(&plan.trailer);
        // The one property this target checks besides "no panic": a sealed file verifies.
        assert!(recorder::verify(&sealed, Some(&key.verifying_key())).is_authentic());
    }
}

/// `sekisho.toml`, the secrets file, contract windows, endpoints and matrix cards: text an
/// operator writes, but a mistake must be an error message, never a crash.
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = policy::Inventory::from_toml(&text, "fuzz.toml");
    let _ = policy::Secrets::from_toml(&text, "fuzz-secrets.toml");
    for line in text.lines().take(64) {
        let _ = policy::Window::parse(line);
        let _ = policy::Endpoint::parse(line);
    }
    let rows: Vec<String> = text.lines().take(64).map(str::to_owned).collect();
    let _ = proxy::auth::matrix_card::MatrixCard::from_config_rows(&rows);
}

/// The SSH front door's login name, exec command, menu choice and line editor.
pub fn ssh_menu(data: &[u8]) {
    use proxy::ssh::menu::{LineEditor, MenuEntry, parse_exec, parse_login, pick};
    let text = String::from_utf8_lossy(data);
    let _ = parse_login(&text);
    let _ = parse_exec(&text);
    let entries = [
        MenuEntry {
            name: "web01".into(),
            kind: "vm".into(),
            zone: "business".into(),
            denied: None,
        },
        MenuEntry {
            name: "db01".into(),
            kind: "physical".into(),
            zone: "core".into(),
            denied: Some("contract: expired".into()),
        },
    ];
    let mut editor = LineEditor::default();
    for chunk in data.chunks(7) {
        let edit = editor.feed(chunk);
        if let Some(line) = edit.line {
            let _ = pick(&entries, &line);
        }
        if edit.cancel {
            break;
        }
    }
}

/// Terminal output as the player and the live SSH relay clean it, and terminal recordings as
/// the player opens, seeks and searches them.
pub fn terminal_replay(data: &[u8]) {
    use player::terminal::{OutputSanitizer, TerminalReplay, Utf8Stream};
    let Some((&selector, data)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        let mut utf8 = Utf8Stream::new();
        let mut sanitizer = OutputSanitizer::new();
        let (mut text, mut out) = (String::new(), String::new());
        for chunk in data.chunks(usize::from(selector >> 1).max(1)) {
            text.clear();
            utf8.push(chunk, &mut text);
            sanitizer.push(&text, &mut out);
        }
        utf8.finish(&mut text);
    } else if let Ok(replay) = TerminalReplay::open(data) {
        let end = replay.end_us();
        let _ = replay.screen_at(end / 2);
        let _ = replay.screen_at(end);
        let _ = replay.search("$");
    }
}

/// RDP recordings as the player opens and seeks them: the PDUs are what a hostile server (or
/// client) sent, so the recording is well-formed but its contents are not. Input: records as
/// for [`rdp_mitm`] (tag bit 0: from the client; raw frames or wrapped channel data), put in a
/// real recording by the recorder's own encoder; mode bit 0 seeds the recorded handshake.
pub fn rdp_replay(data: &[u8]) {
    use recorder::format::{ChannelId, Direction, Header, Record, RecordKind, encode_recording};
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut frames: Vec<(bool, Vec<u8>)> = Vec::new();
    if mode & 1 != 0 {
        frames.extend(relay_prefix().unwrap_or_default());
    }
    for rec in records(rest) {
        let client = rec.tag & 1 != 0;
        let kind = (rec.tag >> 1) & 3;
        if kind == 0 {
            frames.push((client, rec.payload.to_vec()));
        } else if let [sel, flags, body @ ..] = rec.payload
            && let Some(frame) = wrap(client, kind - 1, channel_for(*sel), *flags, body)
        {
            frames.push((client, frame));
        }
    }
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("rdp.desktop-width".to_owned(), "64".to_owned());
    metadata.insert("rdp.desktop-height".to_owned(), "48".to_owned());
    let header = Header {
        session_id: Default::default(),
        protocol: "rdp".into(),
        user: Some("tanaka".into()),
        contractor: None,
        source: "127.0.10.11".into(),
        target: "win01".into(),
        start_unix_us: 1_764_061_200_000_000,
        metadata,
    };
    let recs: Vec<Record> = frames
        .into_iter()
        .zip(0u64..)
        .map(|((client, bytes), i)| Record {
            at_us: i * 10_000,
            kind: RecordKind::Data {
                direction: if client {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                },
                channel: ChannelId(0),
                bytes: bytes.into(),
            },
        })
        .collect();
    let end_us = recs.len() as u64 * 10_000;
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    let Ok(file) = encode_recording(&header, &recs, 64 * 1024, end_us, &key) else {
        return;
    };
    // A keyframe every 64 KiB of server PDUs, so restoring keyframes is exercised too
    // (smaller makes each run slow: a keyframe deflates the whole desktop).
    if let Ok(mut replay) = player::rdp::RdpReplay::open_with_keyframe_interval(&file, 65536) {
        let _ = replay.frame_at(end_us / 2);
        let _ = replay.frame_at(end_us);
        let _ = replay.frame_at(0);
    }
    // The same hostile PDUs through the typed-text decoder (keyboard input, logon notices).
    let _ = player::typed::typed_text(&file);
}

// ---------------------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------------------

fn record(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    out.push(tag);
    let len = u16::try_from(payload.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(payload.get(..usize::from(len)).unwrap_or_default());
}

/// A drdynvc PDU body: `cmd` nibble, channel id, then `rest` ([MS-RDPEDYC] 2.2).
fn dvc(cmd: u8, id: u8, rest: &[u8]) -> Vec<u8> {
    let mut v = vec![cmd << 4, id];
    v.extend_from_slice(rest);
    v
}

/// Seed inputs `(target, file name, bytes)` written to `fuzz/seeds/` by the ignored test
/// `write_fuzz_seeds` in `proxy/tests/fuzz_regressions.rs`.
pub fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let Some(ci) = connect_initial() else {
        return out;
    };
    out.push(("rdp_framing", "connect-initial", ci.clone()));
    if let Ok(req) = negotiation::connection_request(
        "tanaka+web01",
        SecurityProtocol::SSL | SecurityProtocol::HYBRID,
    ) {
        out.push(("rdp_framing", "connection-request", req));
    }
    if let Ok(cc) = negotiation::connection_confirm(SecurityProtocol::SSL) {
        out.push(("rdp_framing", "connection-confirm", cc));
    }

    // From the first frame: the whole connection sequence (both legs), then data on each kind
    // of channel.
    let mut full = vec![0x02];
    for (client, frame) in sequence().unwrap_or_default() {
        record(&mut full, u8::from(client), &frame);
    }
    record(&mut full, 3, &[0, 0, 1, 2, 3]);
    out.push(("rdp_mitm", "handshake", full));
    let mut accept = vec![0x02];
    for (client, frame) in sequence().unwrap_or_default().into_iter().skip(1) {
        if client {
            record(&mut accept, 1, &frame);
        }
    }
    out.push(("rdp_accept", "sequence", accept));
    let mut fresh_ci = vec![0x06];
    record(&mut fresh_ci, 1, &ci);
    out.push(("rdp_mitm", "connect-initial-only", fresh_ci));
    if let (Some(info), Some(odd)) = (client_info(), client_info_with_flags(0x1E00)) {
        // The logon with a Client Info whose compression bits ironrdp alone would refuse.
        let mut lenient = vec![0x00];
        for (client, frame) in sequence().unwrap_or_default() {
            let frame = if frame == info { odd.clone() } else { frame };
            record(&mut lenient, u8::from(client), &frame);
        }
        out.push(("rdp_mitm", "client-info-compression-bits", lenient));
    }

    // In the relay phase: a DVC create for a denied and an allowed channel, data on a refused
    // channel in chunks, a stripped channel join, data on a stripped and a kept channel.
    let create_denied = dvc(1, 7, b"URBDRC\0");
    let create_allowed = dvc(1, 8, b"Microsoft::Windows::RDS::DisplayControl\0");
    let data_refused = dvc(3, 7, &[1, 2, 3]);
    let mut relay = vec![0x03];
    for (tag, sel, flags, body) in [
        (2u8, 2u8, 3u8, create_denied.as_slice()),
        (2, 2, 3, create_allowed.as_slice()),
        (2, 2, 1, data_refused.as_slice()),
        (2, 2, 2, &[9, 9, 9][..]),
        (3, 2, 3, data_refused.as_slice()),
        (7, 4, 0, &[][..]),
        (3, 4, 3, &[1, 2][..]),
        (2, 1, 3, &[4, 5][..]),
        (2, 6, 3, &[6][..]),
    ] {
        let mut payload = vec![sel, flags];
        payload.extend_from_slice(body);
        record(&mut relay, tag, &payload);
    }
    out.push(("rdp_mitm", "relay-channels", relay.clone()));
    out.push(("rdp_channels", "relay-channels", relay));

    let mut replay = vec![0x01];
    record(
        &mut replay,
        0,
        &[0x00, 0x80, 0x10, 0x01, 0x0c, 0x00, 0x01, 0x00],
    );
    out.push(("rdp_replay", "handshake", replay));

    out.push(("ssh_menu", "login", b"tanaka+web01".to_vec()));
    out.push(("ssh_menu", "exec", b"console web01".to_vec()));
    out.push(("ssh_menu", "typed", b"1\x1b[A\x7fweb01\r".to_vec()));
    out.push((
        "terminal_replay",
        "colours",
        b"\x00\x1b[01;34metc\x1b[0m \xe9\x96\xa2\xe6\x89\x80\x1b]0;title\x07".to_vec(),
    ));
    out.push((
        "config",
        "window",
        b"Mon-Fri 09:00-18:00 Asia/Tokyo\n127.0.0.1:3389\n".to_vec(),
    ));
    out
}

// ---------------------------------------------------------------------------------------
// Regressions
// ---------------------------------------------------------------------------------------

/// A terminal recording of `events` (Data from the server, or Resize events), one record every
/// 10 ms, whose header gives the size as `cols` x `rows` (raw text, as a hostile file may).
fn terminal_recording(cols: &str, rows: &str, events: &[Option<(u32, u32)>]) -> Option<Vec<u8>> {
    use recorder::format::{
        ChannelId, Direction, Event, EventKind, Header, Record, RecordKind, encode_recording,
    };
    let mut metadata = std::collections::BTreeMap::new();
    metadata.insert("term.cols".to_owned(), cols.to_owned());
    metadata.insert("term.rows".to_owned(), rows.to_owned());
    let header = Header {
        session_id: Default::default(),
        protocol: "ssh".into(),
        user: Some("tanaka".into()),
        contractor: None,
        source: "127.0.10.11".into(),
        target: "web01".into(),
        start_unix_us: 1_764_061_200_000_000,
        metadata,
    };
    let recs: Vec<Record> = events
        .iter()
        .zip(0u64..)
        .map(|(e, i)| Record {
            at_us: i * 10_000,
            kind: match e {
                Some((width, height)) => RecordKind::Event(Event {
                    kind: EventKind::Resize {
                        width: *width,
                        height: *height,
                    },
                    detail: String::new(),
                }),
                None => RecordKind::Data {
                    direction: Direction::ServerToClient,
                    channel: ChannelId(0),
                    bytes: bytes::Bytes::from_static(
                        b"$ echo hello\r\nhello\r\n\x1b[2J\x1b[999;999H$ ",
                    ),
                },
            },
        })
        .collect();
    let end_us = recs.len() as u64 * 10_000;
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]);
    encode_recording(&header, &recs, 64, end_us, &key).ok()
}

/// Inputs that each guard one protection a parser depends on, written to `fuzz/regressions/`
/// by the ignored test `write_fuzz_regressions` in `proxy/tests/fuzz_regressions.rs` and
/// replayed there as ordinary tests (the committed files are what the fuzzers start from, so
/// they stay committed even though this function can remake them). A crash that a fuzz run
/// finds is added here, next to the protection that fixed it.
pub fn regressions() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    // Terminal sizes from a hostile recording: a header claiming 2^32-1 columns and 0 rows, a
    // resize to 65535 x 65535 and one to 0 x 0. Without the clamp to MAX_TERMINAL_COLS x
    // MAX_TERMINAL_ROWS the emulator allocates some 4 G cells; a zero size means "unknown".
    if let Some(rec) = terminal_recording(
        "4294967295",
        "0",
        &[None, Some((65_535, 65_535)), None, Some((0, 0)), None],
    ) {
        let mut input = vec![0x01];
        input.extend_from_slice(&rec);
        out.push(("terminal_replay", "resize-beyond-limits", input));
    }
    // A recording cut in the middle of its last chunk (a crash while writing): `seal` must
    // keep only the whole chunks, or the sealed file does not verify (the target asserts it).
    if let Some(rec) = terminal_recording("80", "24", &[None; 8]) {
        let magic = recorder::format::TRAILER_MAGIC;
        let trailer = rec.windows(magic.len()).rposition(|w| w == magic);
        let torn = rec
            .get(..trailer.unwrap_or_default().saturating_sub(7))
            .unwrap_or_default()
            .to_vec();
        out.push(("recording_reader", "torn-last-chunk", torn));
    }
    out
}
