//! The MCS-phase man-in-the-middle: a sans-IO machine fed with whole frames from either leg
//! (after TLS and CredSSP), answering with [`Action`]s for the relay to carry out in order.
//!
//! It rewrites the MCS Connect Initial (strip static channels, server leg's protocol, no
//! GFX), the Connect Response (pad channel ids back to the client's order, client's
//! requested protocols), answers Channel Join Requests for stripped channels itself, never
//! forwards data on a channel that was not granted, refuses denied dynamic channels at
//! creation, injects the target credentials into the Client Info PDU (with a redacted copy
//! for the recording) and clears drawing orders from the Confirm Active so the player can
//! decode the session. See [MS-RDPBCGR] 1.3.1.1 for the sequence.
//!
//! [MS-RDPBCGR]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpbcgr/

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use ironrdp_core::{decode, encode_vec};
use ironrdp_dvc::pdu::{CreateResponsePdu, CreationStatus, DrdynvcClientPdu, DrdynvcServerPdu};
use ironrdp_pdu::gcc::{
    ChannelDef, ClientEarlyCapabilityFlags, ConferenceCreateRequest, ConferenceCreateResponse,
};
use ironrdp_pdu::mcs::{
    ChannelJoinConfirm, ConnectInitial, ConnectResponse, McsMessage, SendDataRequest,
};
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::rdp::ClientInfoPdu;
use ironrdp_pdu::rdp::capability_sets::{CapabilitySet, Order, OrderFlags, OrderSupportExFlags};
use ironrdp_pdu::rdp::client_info::{ClientInfoFlags, Credentials};
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu};
use ironrdp_pdu::rdp::vc::{ChannelControlFlags, ChannelPduHeader};
use ironrdp_pdu::x224::{X224, X224Data};

use super::channels::{ChannelRules, describe_dynamic, describe_static};
use super::error::RdpError;
use super::framing::{self, FrameKind};

/// At most 31 static channels exist in an RDP connection ([MS-RDPBCGR] 2.2.1.3.4,
/// CHANNEL_MAX_COUNT); more is a hostile client.
pub const MAX_STATIC_CHANNELS: usize = 31;

/// Dynamic channels refused in one session before the machine gives up; a server that keeps
/// asking for refused channels is misbehaving and memory for their ids must stay bounded.
pub const MAX_REFUSED_DVCS: usize = 1024;

/// First channel id handed to the client for a stripped channel. The server never learns of
/// these ids; 0x0F00 is far above the ids servers give (1004 upwards).
pub const STRIPPED_CHANNEL_ID_BASE: u16 = 0x0F00;

/// A password or other credential; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// Credentials for the target, injected into the Client Info PDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCredentials {
    /// user name on the target
    pub username: String,
    /// password on the target
    pub password: Secret,
    /// domain, if any
    pub domain: Option<String>,
}

/// Which way a PDU went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// contractor → target
    ClientToServer,
    /// target → contractor
    ServerToClient,
}

/// What the relay must do, in order. An error while doing one ends the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the server leg.
    ToServer(Vec<u8>),
    /// Write these bytes to the client leg.
    ToClient(Vec<u8>),
    /// Put this PDU in the recording.
    Record {
        /// which way it went
        direction: Direction,
        /// the PDU as seen on the wire after rewriting (secrets redacted)
        bytes: Vec<u8>,
    },
    /// Something an auditor should see (recording and catalogue).
    Event {
        /// event kind, e.g. `rdp.channel-stripped`
        kind: &'static str,
        /// human text
        detail: String,
    },
    /// The contractor's logon from the Client Info PDU. The relay checks it (TLS-only
    /// contractor leg) before carrying out the actions after it.
    ClientLogon {
        /// user name as sent
        username: String,
        /// password as sent
        password: Secret,
        /// domain as sent
        domain: Option<String>,
    },
}

/// One static channel as the client asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientChannel {
    /// channel name
    pub name: String,
    /// passed to the server
    pub kept: bool,
    /// the id the client was given (after the Connect Response)
    pub id: Option<u16>,
}

/// What the player needs to recover the negotiated state; also emitted as an event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Negotiated {
    /// desktop size the client asked for
    pub desktop: (u16, u16),
    /// the I/O channel id
    pub io_channel: u16,
    /// the MCS message channel id, if any
    pub message_channel: Option<u16>,
    /// static channels in the client's order
    pub channels: Vec<ClientChannel>,
    /// protocols the client asked for
    pub client_requested: u32,
    /// protocol the server leg selected
    pub server_selected: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitConnectInitial,
    AwaitConnectResponse,
    Active,
}

/// Configuration of one session's machine.
#[derive(Debug, Clone)]
pub struct MitmConfig {
    /// channel rules from `[rdp]`
    pub rules: ChannelRules,
    /// what the client asked for in its X.224 Connection Request
    pub client_requested: SecurityProtocol,
    /// what the server leg selected
    pub server_selected: SecurityProtocol,
    /// credentials injected into the Client Info PDU
    pub inject: Option<TargetCredentials>,
}

/// The machine. Once it returned an error it returns the same error forever.
#[derive(Debug)]
pub struct Mitm {
    cfg: MitmConfig,
    phase: Phase,
    negotiated: Negotiated,
    /// ids the server granted and data may flow on (I/O, message, user, kept static).
    granted: BTreeSet<u16>,
    /// ids handed to the client for stripped channels.
    stripped: BTreeSet<u16>,
    /// channels on which a drop was already reported (one event per channel).
    reported: BTreeSet<u16>,
    drdynvc: Option<u16>,
    user_channel: Option<u16>,
    refused_dvcs: BTreeSet<u32>,
    /// dropping the rest of a chunked drdynvc message (server→client, client→server).
    dropping_chunks: DroppingChunks,
    client_info_seen: bool,
    failed: Option<RdpError>,
}

/// Whether the rest of a chunked drdynvc message is being dropped, per direction.
#[derive(Debug, Default)]
struct DroppingChunks {
    server_to_client: bool,
    client_to_server: bool,
}

/// One drdynvc channel PDU as it arrives.
enum DvcChunk<'a> {
    /// A later chunk of a message; `dropped` when its message is being dropped.
    Continuation { dropped: bool },
    /// The first chunk of a message: its body, and whether it is also the last.
    First { body: &'a [u8], last: bool },
}

impl Mitm {
    /// A machine waiting for the client's MCS Connect Initial.
    pub fn new(cfg: MitmConfig) -> Self {
        Self {
            negotiated: Negotiated {
                client_requested: cfg.client_requested.bits(),
                server_selected: cfg.server_selected.bits(),
                ..Negotiated::default()
            },
            cfg,
            phase: Phase::AwaitConnectInitial,
            granted: BTreeSet::new(),
            stripped: BTreeSet::new(),
            reported: BTreeSet::new(),
            drdynvc: None,
            user_channel: None,
            refused_dvcs: BTreeSet::new(),
            dropping_chunks: DroppingChunks::default(),
            client_info_seen: false,
            failed: None,
        }
    }

    /// The negotiated state so far.
    pub fn negotiated(&self) -> &Negotiated {
        &self.negotiated
    }

    /// Whether the Client Info PDU went through (the logon point).
    pub fn client_info_seen(&self) -> bool {
        self.client_info_seen
    }

    /// Feeds one whole frame from the client.
    pub fn client_frame(&mut self, frame: &[u8]) -> Result<Vec<Action>, RdpError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.client_frame_inner(frame);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    /// Feeds one whole frame from the server.
    pub fn server_frame(&mut self, frame: &[u8]) -> Result<Vec<Action>, RdpError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.server_frame_inner(frame);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn client_frame_inner(&mut self, frame: &[u8]) -> Result<Vec<Action>, RdpError> {
        let kind = frame_kind(frame)?;
        match (self.phase, kind) {
            (Phase::AwaitConnectInitial, FrameKind::X224) => self.connect_initial(frame),
            (Phase::AwaitConnectInitial, FrameKind::FastPath) => Err(RdpError::Unexpected {
                got: "fast-path PDU",
                expected: "MCS Connect Initial",
            }),
            (Phase::AwaitConnectResponse, _) => Err(RdpError::Unexpected {
                got: "client PDU",
                expected: "server MCS Connect Response",
            }),
            (Phase::Active, FrameKind::FastPath) => Ok(forward_to_server(frame)),
            (Phase::Active, FrameKind::X224) => self.client_mcs(frame),
        }
    }

    fn server_frame_inner(&mut self, frame: &[u8]) -> Result<Vec<Action>, RdpError> {
        let kind = frame_kind(frame)?;
        match (self.phase, kind) {
            (Phase::AwaitConnectResponse, FrameKind::X224) => self.connect_response(frame),
            (Phase::AwaitConnectInitial | Phase::AwaitConnectResponse, _) => {
                Err(RdpError::Unexpected {
                    got: "server PDU",
                    expected: "MCS Connect Response",
                })
            }
            (Phase::Active, FrameKind::FastPath) => Ok(forward_to_client(frame)),
            (Phase::Active, FrameKind::X224) => self.server_mcs(frame),
        }
    }

    fn connect_initial(&mut self, frame: &[u8]) -> Result<Vec<Action>, RdpError> {
        let data = decode::<X224<X224Data<'_>>>(frame)
            .map_err(|e| RdpError::malformed("MCS Connect Initial", e))?
            .0;
        let ci = decode::<ConnectInitial>(data.data.as_ref())
            .map_err(|e| RdpError::malformed("MCS Connect Initial", e))?;
        let mut blocks = ci.conference_create_request.gcc_blocks().clone();
        let mut actions = Vec::new();

        let requested: Vec<ChannelDef> = blocks
            .network
            .as_ref()
            .map(|n| n.channels.clone())
            .unwrap_or_default();
        if requested.len() > MAX_STATIC_CHANNELS {
            return Err(RdpError::TooMany {
                what: "static channel",
                count: requested.len(),
                limit: MAX_STATIC_CHANNELS,
            });
        }
        let mut kept = Vec::new();
        for def in &requested {
            let name = def.name.as_str().unwrap_or("?").to_owned();
            let keep = self.cfg.rules.allows_static(&name);
            if keep {
                kept.push(def.clone());
            } else {
                actions.push(Action::Event {
                    kind: "rdp.channel-stripped",
                    detail: format!(
                        "{} requested by the client ({name}): stripped",
                        describe_static(&name)
                    ),
                });
            }
            self.negotiated.channels.push(ClientChannel {
                name,
                kept: keep,
                id: None,
            });
        }
        if let Some(network) = blocks.network.as_mut() {
            network.channels = kept;
        }
        blocks.core.optional_data.server_selected_protocol = Some(self.cfg.server_selected);
        // The player does not decode the GFX pipeline: never let the server offer it.
        if let Some(flags) = blocks.core.optional_data.early_capability_flags.as_mut() {
            flags.remove(ClientEarlyCapabilityFlags::SUPPORT_DYN_VC_GFX_PROTOCOL);
        }
        self.negotiated.desktop = (blocks.core.desktop_width, blocks.core.desktop_height);

        let rewritten = ConnectInitial {
            conference_create_request: ConferenceCreateRequest::new(blocks)
                .map_err(|e| RdpError::encode("MCS Connect Initial", e))?,
            ..ci
        };
        let payload =
            encode_vec(&rewritten).map_err(|e| RdpError::encode("MCS Connect Initial", e))?;
        let out = encode_vec(&X224(X224Data {
            data: Cow::Owned(payload),
        }))
        .map_err(|e| RdpError::encode("MCS Connect Initial", e))?;
        actions.push(Action::Record {
            direction: Direction::ClientToServer,
            bytes: out.clone(),
        });
        actions.push(Action::ToServer(out));
        self.phase = Phase::AwaitConnectResponse;
        Ok(actions)
    }

    fn connect_response(&mut self, frame: &[u8]) -> Result<Vec<Action>, RdpError> {
        let data = decode::<X224<X224Data<'_>>>(frame)
            .map_err(|e| RdpError::malformed("MCS Connect Response", e))?
            .0;
        let resp = decode::<ConnectResponse>(data.data.as_ref())
            .map_err(|e| RdpError::malformed("MCS Connect Response", e))?;
        let user_id = conference_user_id(&resp.conference_create_response)?;
        let mut gcc = resp.conference_create_response.gcc_blocks().clone();
        let server_ids = gcc.network.channel_ids.clone();
        let kept_count = self.negotiated.channels.iter().filter(|c| c.kept).count();
        if server_ids.len() > kept_count {
            return Err(RdpError::TooMany {
                what: "server channel id",
                count: server_ids.len(),
                limit: kept_count,
            });
        }
        let io = gcc.network.io_channel;
        let message = gcc
            .message_channel
            .as_ref()
            .map(|m| m.mcs_message_channel_id);
        let mut used: BTreeSet<u16> = server_ids.iter().copied().collect();
        used.insert(io);
        if let Some(m) = message {
            used.insert(m);
        }
        let mut next_fake = STRIPPED_CHANNEL_ID_BASE;
        let mut server_iter = server_ids.iter().copied();
        let mut padded = Vec::with_capacity(self.negotiated.channels.len());
        for ch in &mut self.negotiated.channels {
            let id = if ch.kept { server_iter.next() } else { None };
            let id = match id {
                Some(id) => {
                    self.granted.insert(id);
                    if ch.name.eq_ignore_ascii_case("drdynvc") {
                        self.drdynvc = Some(id);
                    }
                    id
                }
                None => {
                    // Stripped (or not granted by the server): an id nobody uses, answered locally.
                    while used.contains(&next_fake) {
                        next_fake = next_fake
                            .checked_add(1)
                            .ok_or(RdpError::Misuse("channel id space exhausted"))?;
                    }
                    let id = next_fake;
                    used.insert(id);
                    self.stripped.insert(id);
                    ch.kept = false;
                    id
                }
            };
            ch.id = Some(id);
            padded.push(id);
        }
        gcc.network.channel_ids = padded;
        if gcc.core.optional_data.client_requested_protocols.is_some() {
            gcc.core.optional_data.client_requested_protocols = Some(self.cfg.client_requested);
        }
        self.granted.insert(io);
        if let Some(m) = message {
            self.granted.insert(m);
        }
        self.negotiated.io_channel = io;
        self.negotiated.message_channel = message;

        let rewritten = ConnectResponse {
            conference_create_response: ConferenceCreateResponse::new(user_id, gcc)
                .map_err(|e| RdpError::encode("MCS Connect Response", e))?,
            ..resp
        };
        let payload =
            encode_vec(&rewritten).map_err(|e| RdpError::encode("MCS Connect Response", e))?;
        let out = encode_vec(&X224(X224Data {
            data: Cow::Owned(payload),
        }))
        .map_err(|e| RdpError::encode("MCS Connect Response", e))?;
        self.phase = Phase::Active;
        Ok(vec![
            Action::Event {
                kind: "rdp.negotiated",
                detail: self.negotiated.describe(),
            },
            Action::Record {
                direction: Direction::ServerToClient,
                bytes: out.clone(),
            },
            Action::ToClient(out),
        ])
    }

    fn client_mcs(&mut self, frame: &[u8]) -> Result<Vec<Action>, RdpError> {
        let msg = decode::<X224<McsMessage<'_>>>(frame)
            .map_err(|e| RdpError::malformed("client MCS PDU", e))?
            .0;
        match msg {
            McsMessage::ChannelJoinRequest(req) if self.stripped.contains(&req.channel_id) => {
                let confirm = encode_vec(&X224(ChannelJoinConfirm {
                    result: 0,
                    initiator_id: req.initiator_id,
                    requested_channel_id: req.channel_id,
                    channel_id: req.channel_id,
                }))
                .map_err(|e| RdpError::encode("Channel Join Confirm", e))?;
                Ok(vec![Action::ToClient(confirm)])
            }
            McsMessage::SendDataRequest(req) => {
                let channel = req.channel_id;
                if channel == self.negotiated.io_channel {
                    self.client_io(frame, req)
                } else if !self.may_flow(channel) {
                    Ok(self.drop_on(channel, Direction::ClientToServer))
                } else if Some(channel) == self.drdynvc {
                    self.client_dvc(frame, &req.user_data)
                } else {
                    Ok(forward_to_server(frame))
                }
            }
            _ => Ok(forward_to_server(frame)),
        }
    }

    fn server_mcs(&mut self, frame: &[u8]) -> Result<Vec<Action>, RdpError> {
        let msg = decode::<X224<McsMessage<'_>>>(frame)
            .map_err(|e| RdpError::malformed("server MCS PDU", e))?
            .0;
        match msg {
            McsMessage::AttachUserConfirm(c) => {
                self.user_channel = Some(c.initiator_id);
                self.granted.insert(c.initiator_id);
                Ok(forward_to_client(frame))
            }
            McsMessage::SendDataIndication(ind) => {
                let channel = ind.channel_id;
                if !self.may_flow(channel) {
                    Ok(self.drop_on(channel, Direction::ServerToClient))
                } else if Some(channel) == self.drdynvc {
                    self.server_dvc(frame, channel, &ind.user_data)
                } else {
                    Ok(forward_to_client(frame))
                }
            }
            _ => Ok(forward_to_client(frame)),
        }
    }

    fn may_flow(&self, channel: u16) -> bool {
        self.granted.contains(&channel) && !self.stripped.contains(&channel)
    }

    fn drop_on(&mut self, channel: u16, direction: Direction) -> Vec<Action> {
        if self.reported.insert(channel) {
            let who = match direction {
                Direction::ClientToServer => "client",
                Direction::ServerToClient => "server",
            };
            let name = self
                .negotiated
                .channels
                .iter()
                .find(|c| c.id == Some(channel))
                .map(|c| c.name.clone())
                .unwrap_or_else(|| format!("id {channel}"));
            vec![Action::Event {
                kind: "rdp.channel-data-dropped",
                detail: format!(
                    "data from the {who} on channel {name}, which was not granted: dropped"
                ),
            }]
        } else {
            Vec::new()
        }
    }

    fn client_io(
        &mut self,
        frame: &[u8],
        req: SendDataRequest<'_>,
    ) -> Result<Vec<Action>, RdpError> {
        if !self.client_info_seen
            && let Ok(info) = decode::<ClientInfoPdu>(req.user_data.as_ref())
        {
            return self.client_info(&req, info);
        }
        if let Ok(header) = decode::<ShareControlHeader>(req.user_data.as_ref())
            && let ShareControlPdu::ClientConfirmActive(mut cca) = header.share_control_pdu
        {
            {
                for cap in &mut cca.pdu.capability_sets {
                    if let CapabilitySet::Order(_) = cap {
                        // No drawing orders: the server falls back to bitmap updates, which
                        // the player decodes. 480*480 is the usual desktop save size.
                        *cap = CapabilitySet::Order(Order::new(
                            OrderFlags::NEGOTIATE_ORDER_SUPPORT
                                | OrderFlags::ZERO_BOUNDS_DELTAS_SUPPORT,
                            OrderSupportExFlags::empty(),
                            480 * 480,
                            0,
                        ));
                    }
                }
                let user_data = encode_vec(&ShareControlHeader {
                    share_control_pdu: ShareControlPdu::ClientConfirmActive(cca),
                    pdu_source: header.pdu_source,
                    share_id: header.share_id,
                })
                .map_err(|e| RdpError::encode("Confirm Active", e))?;
                let out = send_data_request(req.initiator_id, req.channel_id, user_data)?;
                return Ok(vec![
                    Action::Record {
                        direction: Direction::ClientToServer,
                        bytes: out.clone(),
                    },
                    Action::ToServer(out),
                ]);
            }
        }
        Ok(forward_to_server(frame))
    }

    fn client_info(
        &mut self,
        req: &SendDataRequest<'_>,
        mut info: ClientInfoPdu,
    ) -> Result<Vec<Action>, RdpError> {
        self.client_info_seen = true;
        let original = info.client_info.credentials.clone();
        let mut actions = vec![Action::ClientLogon {
            username: original.username.clone(),
            password: Secret::new(original.password),
            domain: original.domain.clone(),
        }];
        let ci = &mut info.client_info;
        if let Some(inject) = &self.cfg.inject {
            ci.credentials = Credentials {
                username: inject.username.clone(),
                password: inject.password.expose().to_owned(),
                domain: inject.domain.clone(),
            };
        }
        ci.flags.insert(ClientInfoFlags::AUTOLOGON);
        // Recordings carry no bulk decompressor: ask the server not to compress.
        ci.flags.remove(ClientInfoFlags::COMPRESSION);
        ci.password_cookie = None;
        let out = send_data_request(
            req.initiator_id,
            req.channel_id,
            encode_vec(&info).map_err(|e| RdpError::encode("Client Info", e))?,
        )?;
        info.client_info.credentials.password = String::new();
        let redacted = send_data_request(
            req.initiator_id,
            req.channel_id,
            encode_vec(&info).map_err(|e| RdpError::encode("Client Info", e))?,
        )?;
        actions.push(Action::Record {
            direction: Direction::ClientToServer,
            bytes: redacted,
        });
        actions.push(Action::ToServer(out));
        Ok(actions)
    }

    fn server_dvc(
        &mut self,
        frame: &[u8],
        channel: u16,
        user_data: &[u8],
    ) -> Result<Vec<Action>, RdpError> {
        let (body, last) = match self.dvc_chunk(Direction::ServerToClient, user_data)? {
            DvcChunk::Continuation { dropped: true } => return Ok(Vec::new()),
            DvcChunk::Continuation { dropped: false } => return Ok(forward_to_client(frame)),
            DvcChunk::First { body, last } => (body, last),
        };
        let (cmd, dvc_id) = dvc_header(body)?;
        if cmd == DVC_CMD_CREATE {
            if !last {
                return Err(RdpError::Unexpected {
                    got: "fragmented dynamic channel create request",
                    expected: "a create request in one chunk",
                });
            }
            let pdu = decode::<DrdynvcServerPdu>(body)
                .map_err(|e| RdpError::malformed("DVC create request", e))?;
            if let DrdynvcServerPdu::Create(create) = pdu {
                let name = create.channel_name().to_owned();
                if self.cfg.rules.denies_dynamic(&name) {
                    if self.refused_dvcs.len() >= MAX_REFUSED_DVCS {
                        return Err(RdpError::TooMany {
                            what: "refused dynamic channel",
                            count: self.refused_dvcs.len(),
                            limit: MAX_REFUSED_DVCS,
                        });
                    }
                    self.refused_dvcs.insert(create.channel_id());
                    let response = DrdynvcClientPdu::Create(CreateResponsePdu::new(
                        create.channel_id(),
                        CreationStatus::NO_LISTENER,
                    ));
                    let initiator = self.user_channel.ok_or(RdpError::Unexpected {
                        got: "dynamic channel create request",
                        expected: "MCS Attach User Confirm",
                    })?;
                    let out = send_data_request(initiator, channel, channel_pdu(&response)?)?;
                    return Ok(vec![
                        Action::Event {
                            kind: "rdp.dvc-refused",
                            detail: format!(
                                "{} ({name}) offered by the server: refused",
                                describe_dynamic(&name)
                            ),
                        },
                        Action::Record {
                            direction: Direction::ClientToServer,
                            bytes: out.clone(),
                        },
                        Action::ToServer(out),
                    ]);
                }
            }
            return Ok(forward_to_client(frame));
        }
        if dvc_id.is_some_and(|id| self.refused_dvcs.contains(&id)) {
            self.dropping_chunks.server_to_client = !last;
            return Ok(Vec::new());
        }
        Ok(forward_to_client(frame))
    }

    /// The drdynvc PDU in `user_data`, sent by `side`: a continuation chunk (dropped when the
    /// PDU it continues was, which this also keeps track of), or a first chunk, uncompressed.
    fn dvc_chunk<'a>(
        &mut self,
        side: Direction,
        user_data: &'a [u8],
    ) -> Result<DvcChunk<'a>, RdpError> {
        let (header, body) = split_channel_pdu(user_data)?;
        let first = header.flags.contains(ChannelControlFlags::FLAG_FIRST);
        let last = header.flags.contains(ChannelControlFlags::FLAG_LAST);
        if !first {
            let dropping = match side {
                Direction::ServerToClient => &mut self.dropping_chunks.server_to_client,
                Direction::ClientToServer => &mut self.dropping_chunks.client_to_server,
            };
            let dropped = *dropping;
            if dropped {
                *dropping = !last;
            }
            return Ok(DvcChunk::Continuation { dropped });
        }
        // Compressed DVC data could hide a create request from the filter: refused.
        if header
            .flags
            .contains(ChannelControlFlags::PACKET_COMPRESSED)
        {
            return Err(RdpError::Unexpected {
                got: "compressed dynamic channel PDU",
                expected: "uncompressed channel data",
            });
        }
        Ok(DvcChunk::First { body, last })
    }

    fn client_dvc(&mut self, frame: &[u8], user_data: &[u8]) -> Result<Vec<Action>, RdpError> {
        let (body, last) = match self.dvc_chunk(Direction::ClientToServer, user_data)? {
            DvcChunk::Continuation { dropped: true } => return Ok(Vec::new()),
            DvcChunk::Continuation { dropped: false } => return Ok(forward_to_server(frame)),
            DvcChunk::First { body, last } => (body, last),
        };
        let (_, dvc_id) = dvc_header(body)?;
        if dvc_id.is_some_and(|id| self.refused_dvcs.contains(&id)) {
            self.dropping_chunks.client_to_server = !last;
            return Ok(Vec::new());
        }
        Ok(forward_to_server(frame))
    }
}

impl Negotiated {
    /// One line for the event list and the player.
    pub fn describe(&self) -> String {
        let channels: Vec<String> = self
            .channels
            .iter()
            .map(|c| {
                format!(
                    "{}={}{}",
                    c.name,
                    c.id.map(|i| i.to_string()).unwrap_or_default(),
                    if c.kept { "" } else { "(stripped)" }
                )
            })
            .collect();
        format!(
            "desktop={}x{} io_channel={} message_channel={} client_requested={:#x} server_selected={:#x} channels=[{}]",
            self.desktop.0,
            self.desktop.1,
            self.io_channel,
            self.message_channel
                .map(|m| m.to_string())
                .unwrap_or_else(|| "none".into()),
            self.client_requested,
            self.server_selected,
            channels.join(",")
        )
    }
}

const DVC_CMD_CREATE: u8 = 0x01;

fn frame_kind(frame: &[u8]) -> Result<FrameKind, RdpError> {
    match framing::decode(frame)? {
        Some((kind, len)) if len == frame.len() => Ok(kind),
        _ => Err(RdpError::Misuse("not exactly one frame")),
    }
}

fn forward_to_server(frame: &[u8]) -> Vec<Action> {
    vec![
        Action::Record {
            direction: Direction::ClientToServer,
            bytes: frame.to_vec(),
        },
        Action::ToServer(frame.to_vec()),
    ]
}

fn forward_to_client(frame: &[u8]) -> Vec<Action> {
    vec![
        Action::Record {
            direction: Direction::ServerToClient,
            bytes: frame.to_vec(),
        },
        Action::ToClient(frame.to_vec()),
    ]
}

fn send_data_request(
    initiator_id: u16,
    channel_id: u16,
    user_data: Vec<u8>,
) -> Result<Vec<u8>, RdpError> {
    encode_vec(&X224(SendDataRequest {
        initiator_id,
        channel_id,
        user_data: Cow::Owned(user_data),
    }))
    .map_err(|e| RdpError::encode("MCS Send Data Request", e))
}

fn channel_pdu(pdu: &DrdynvcClientPdu) -> Result<Vec<u8>, RdpError> {
    let body = encode_vec(pdu).map_err(|e| RdpError::encode("DVC PDU", e))?;
    let header = ChannelPduHeader {
        length: u32::try_from(body.len()).map_err(|e| RdpError::encode("DVC PDU", e))?,
        flags: ChannelControlFlags::FLAG_FIRST | ChannelControlFlags::FLAG_LAST,
    };
    let mut out = encode_vec(&header).map_err(|e| RdpError::encode("channel PDU header", e))?;
    out.extend_from_slice(&body);
    Ok(out)
}

fn split_channel_pdu(user_data: &[u8]) -> Result<(ChannelPduHeader, &[u8]), RdpError> {
    let (head, body) = user_data
        .split_at_checked(8)
        .ok_or_else(|| RdpError::malformed("channel PDU header", "shorter than 8 bytes"))?;
    let header = decode::<ChannelPduHeader>(head)
        .map_err(|e| RdpError::malformed("channel PDU header", e))?;
    Ok((header, body))
}

/// The command and channel id of a DVC PDU ([MS-RDPEDYC] 2.2): `cbId` in bits 0-1 gives the
/// id's size, `Cmd` in bits 4-7. Capability PDUs (cmd 5) have no id.
fn dvc_header(body: &[u8]) -> Result<(u8, Option<u32>), RdpError> {
    let (&h, rest) = body
        .split_first()
        .ok_or_else(|| RdpError::malformed("DVC header", "empty"))?;
    let cmd = h >> 4;
    if cmd == 0x05 {
        return Ok((cmd, None));
    }
    let id = match h & 0x03 {
        0 => rest.first().map(|&b| u32::from(b)),
        1 => rest.get(..2).map(|b| {
            u32::from(u16::from_le_bytes([
                b.first().copied().unwrap_or(0),
                b.get(1).copied().unwrap_or(0),
            ]))
        }),
        _ => rest.get(..4).map(|b| {
            let mut a = [0u8; 4];
            a.copy_from_slice(b);
            u32::from_le_bytes(a)
        }),
    };
    match id {
        Some(id) => Ok((cmd, Some(id))),
        None => Err(RdpError::malformed("DVC header", "truncated channel id")),
    }
}

/// The GCC node id (`user_id`) of a Conference Create Response. ironrdp-pdu keeps it private,
/// and a rewritten response must carry the server's value, so it is read back from the PER
/// encoding: choice (1), object id (6), length (1 or 2), choice (1), then the id as a
/// big-endian u16 minus 1001 ([T.125] / [MS-RDPBCGR] 2.2.1.4).
fn conference_user_id(ccr: &ConferenceCreateResponse) -> Result<u16, RdpError> {
    let bytes = encode_vec(ccr).map_err(|e| RdpError::encode("Conference Create Response", e))?;
    let len_at = 7;
    let len_first = *bytes
        .get(len_at)
        .ok_or_else(|| RdpError::malformed("Conference Create Response", "too short"))?;
    let id_at = len_at + if len_first & 0x80 != 0 { 2 } else { 1 } + 1;
    let id = bytes
        .get(id_at..id_at + 2)
        .ok_or_else(|| RdpError::malformed("Conference Create Response", "too short"))?;
    let raw = u16::from_be_bytes([
        id.first().copied().unwrap_or(0),
        id.get(1).copied().unwrap_or(0),
    ]);
    raw.checked_add(1001)
        .ok_or_else(|| RdpError::malformed("Conference Create Response", "node id out of range"))
}

#[cfg(test)]
#[path = "mitm_tests.rs"]
mod tests;

/// An MCS Disconnect Provider Ultimatum (reason: user requested), the PDU with which an RDP
/// server ends a session ([MS-RDPBCGR] 2.2.2.3). Sent to the client when Sekisho ends a session
/// (kill, window end), so that the client shows "disconnected" at once instead of waiting on
/// a half-closed transport.
///
/// [MS-RDPBCGR]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpbcgr/
pub fn disconnect_ultimatum() -> Result<Vec<u8>, RdpError> {
    use ironrdp_pdu::mcs::{DisconnectProviderUltimatum, DisconnectReason};
    encode_vec(&X224(DisconnectProviderUltimatum::from_reason(
        DisconnectReason::UserRequested,
    )))
    .map_err(|e| RdpError::encode("Disconnect Provider Ultimatum", e))
}

#[cfg(test)]
mod ultimatum_tests {
    #[test]
    fn disconnect_ultimatum_is_one_tpkt_frame() {
        let bytes = super::disconnect_ultimatum().unwrap();
        assert_eq!(bytes.first(), Some(&3), "TPKT version 3");
        let len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
        assert_eq!(len, bytes.len());
    }
}
