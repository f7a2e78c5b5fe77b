//! The contractor leg's MCS phase, answered by Sekisho itself, up to the Client Info PDU.
//!
//! Authenticate first: on a TLS-only contractor leg the password arrives in the Client Info
//! PDU, after the MCS Connect Initial, the domain, the user attachment and the channel joins
//! ([MS-RDPBCGR] 1.3.1.1). Sekisho plays the server for that part of the sequence, so that no
//! byte reaches the target (and no recording or live session is opened) before the contractor
//! is authenticated. It hands out its own channel ids; [`super::connect`] later runs the same
//! sequence against the target and [`super::link::ChannelLink`] translates between the two.
//!
//! What the client asks for is filtered here, once: static channels outside the allow list
//! are given ids that lead nowhere, duplicate channel names are refused, and the
//! multitransport (UDP) and message channel blocks are dropped, so the target never offers
//! UDP and every byte stays on the recorded TCP connection.
//!
//! [MS-RDPBCGR]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpbcgr/

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;

use ironrdp_core::{decode, encode_vec};
use ironrdp_pdu::gcc::{
    ClientEarlyCapabilityFlags, ConferenceCreateResponse, RdpVersion, ServerCoreData,
    ServerCoreOptionalData, ServerGccBlocks, ServerNetworkData, ServerSecurityData,
};
use ironrdp_pdu::mcs::{
    AttachUserConfirm, ChannelJoinConfirm, ConnectInitial, ConnectResponse, DomainParameters,
    McsMessage,
};
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::rdp::ClientInfoPdu;
use ironrdp_pdu::rdp::headers::BasicSecurityHeaderFlags;
use ironrdp_pdu::x224::{X224, X224Data};

use super::channels::{ChannelRules, describe_static};
use super::client_info::decode_client_info;
use super::error::RdpError;
use super::framing::{self, FrameKind};
use super::types::{
    ClientChannel, Direction, MAX_STATIC_CHANNELS, STRIPPED_CHANNEL_ID_BASE, Secret,
};

/// The MCS I/O channel id Sekisho gives the client, the one every RDP server uses.
pub const IO_CHANNEL_ID: u16 = 1003;

/// The first static channel id handed out; servers number the channels they grant from here.
pub const FIRST_STATIC_CHANNEL_ID: u16 = 1004;

/// GCC node id in the Conference Create Response (the value Windows servers use).
const GCC_NODE_ID: u16 = 0x79F3;

/// Channel ids are handed out in the client's order: kept channels from
/// [`FIRST_STATIC_CHANNEL_ID`] as a server numbers the channels it grants (so that the ids
/// usually agree with the target's and need no translation), stripped ones from
/// [`STRIPPED_CHANNEL_ID_BASE`], and the user channel right after the kept ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPlan {
    /// desktop size the client asked for
    pub desktop: (u16, u16),
    /// the I/O channel id given to the client
    pub io_channel: u16,
    /// the user channel id given to the client
    pub user_channel: u16,
    /// static channels in the client's order, with the ids given to the client
    pub channels: Vec<ClientChannel>,
}

impl ChannelPlan {
    fn new(rules: &ChannelRules, names: &[String], desktop: (u16, u16)) -> Result<Self, RdpError> {
        let mut next_kept = FIRST_STATIC_CHANNEL_ID;
        let mut next_stripped = STRIPPED_CHANNEL_ID_BASE;
        let mut channels = Vec::with_capacity(names.len());
        for name in names {
            let kept = rules.allows_static(name);
            let counter = if kept {
                &mut next_kept
            } else {
                &mut next_stripped
            };
            let id = *counter;
            *counter = counter
                .checked_add(1)
                .ok_or(RdpError::Misuse("channel id space exhausted"))?;
            channels.push(ClientChannel {
                name: name.clone(),
                kept,
                id: Some(id),
            });
        }
        Ok(Self {
            desktop,
            io_channel: IO_CHANNEL_ID,
            user_channel: next_kept,
            channels,
        })
    }

    /// Whether the client may join `id`.
    fn knows(&self, id: u16) -> bool {
        id == self.io_channel
            || id == self.user_channel
            || self.channels.iter().any(|c| c.id == Some(id))
    }
}

/// What the acceptor learned before the logon; consumed by [`super::connect::McsConnector`].
pub struct ClientHandshake {
    /// the client's Connect Initial, filtered (stripped channels, no UDP, no GFX)
    pub(crate) connect_initial: ConnectInitial,
    /// ids given to the client
    pub plan: ChannelPlan,
    /// the protocols the client offered in its X.224 Connection Request
    pub client_requested: SecurityProtocol,
    /// the Client Info PDU as the client sent it (its password included)
    pub(crate) client_info: ClientInfoPdu,
    /// PDUs exchanged with the client after the Connect Initial, for the recording (the
    /// Connect Initial and the Client Info are recorded as sent to the server, redacted)
    pub transcript: Vec<(Direction, Vec<u8>)>,
    /// events an auditor should see (channels stripped at the request)
    pub events: Vec<(&'static str, String)>,
}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The Client Info holds the contractor's password: never printed.
        f.debug_struct("ClientHandshake")
            .field("plan", &self.plan)
            .field("transcript_len", &self.transcript.len())
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

/// The contractor's logon, read from the Client Info PDU.
#[derive(Debug)]
pub struct ClientLogon {
    /// user name as sent (may be `user+target`, `DOMAIN\user`)
    pub username: String,
    /// domain as sent
    pub domain: Option<String>,
    /// password as sent (empty with NLA, where CredSSP carried it)
    pub password: Secret,
    /// everything needed to connect the server leg
    pub handshake: ClientHandshake,
}

/// What to do after a client frame.
#[derive(Debug)]
pub enum AcceptStep {
    /// Write these frames to the client, then read on.
    Reply(Vec<Vec<u8>>),
    /// The Client Info PDU arrived: check the logon before anything reaches the target.
    Logon(Box<ClientLogon>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    ConnectInitial,
    /// Erect Domain, Attach User, Channel Joins, then the Client Info.
    Mcs,
    Done,
}

/// The acceptor. Once it returned an error it returns the same error forever.
#[derive(Debug)]
pub struct McsAcceptor {
    rules: ChannelRules,
    client_requested: SecurityProtocol,
    phase: Phase,
    connect_initial: Option<ConnectInitial>,
    plan: Option<ChannelPlan>,
    attached: bool,
    joined: BTreeSet<u16>,
    transcript: Vec<(Direction, Vec<u8>)>,
    events: Vec<(&'static str, String)>,
    failed: Option<RdpError>,
}

impl McsAcceptor {
    /// An acceptor waiting for the client's MCS Connect Initial; `client_requested` is what
    /// the client offered in its X.224 Connection Request (echoed in the Connect Response,
    /// where the client checks it).
    pub fn new(rules: ChannelRules, client_requested: SecurityProtocol) -> Self {
        Self {
            rules,
            client_requested,
            phase: Phase::ConnectInitial,
            connect_initial: None,
            plan: None,
            attached: false,
            joined: BTreeSet::new(),
            transcript: Vec::new(),
            events: Vec::new(),
            failed: None,
        }
    }

    /// Feeds one whole frame from the client.
    pub fn client_frame(&mut self, frame: &[u8]) -> Result<AcceptStep, RdpError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.step(frame);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn step(&mut self, frame: &[u8]) -> Result<AcceptStep, RdpError> {
        match framing::decode(frame)? {
            Some((FrameKind::X224, len)) if len == frame.len() => {}
            Some((FrameKind::FastPath, _)) => {
                return Err(RdpError::Unexpected {
                    got: "fast-path PDU",
                    expected: "the MCS connection sequence",
                });
            }
            _ => return Err(RdpError::Misuse("not exactly one frame")),
        }
        match self.phase {
            Phase::ConnectInitial => self.connect_initial(frame),
            Phase::Mcs => self.mcs(frame),
            Phase::Done => Err(RdpError::Misuse("the acceptor already gave the logon")),
        }
    }

    fn connect_initial(&mut self, frame: &[u8]) -> Result<AcceptStep, RdpError> {
        let data = decode::<X224<X224Data<'_>>>(frame)
            .map_err(|e| RdpError::malformed("MCS Connect Initial", e))?
            .0;
        let ci = decode::<ConnectInitial>(data.data.as_ref())
            .map_err(|e| RdpError::malformed("MCS Connect Initial", e))?;
        let mut blocks = ci.conference_create_request.gcc_blocks().clone();
        let requested = blocks
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
        let mut names = Vec::with_capacity(requested.len());
        let mut seen = BTreeSet::new();
        for def in &requested {
            let name = def.name.as_str().unwrap_or("?").to_owned();
            // A second channel of the same name would get past filters that look a channel
            // up by name (a second "drdynvc" escaping the dynamic channel filter).
            if !seen.insert(name.to_ascii_lowercase()) {
                return Err(RdpError::Unexpected {
                    got: "a static channel name requested twice",
                    expected: "distinct channel names",
                });
            }
            names.push(name);
        }
        let plan = ChannelPlan::new(
            &self.rules,
            &names,
            (blocks.core.desktop_width, blocks.core.desktop_height),
        )?;
        for ch in plan.channels.iter().filter(|c| !c.kept) {
            self.events.push((
                "rdp.channel-stripped",
                format!(
                    "{} requested by the client ({}): stripped",
                    describe_static(&ch.name),
                    ch.name
                ),
            ));
        }
        if let Some(network) = blocks.network.as_mut() {
            network.channels = requested
                .into_iter()
                .filter(|d| self.rules.allows_static(d.name.as_str().unwrap_or("?")))
                .collect();
        }
        if blocks.multi_transport_channel.take().is_some() {
            self.events.push((
                "rdp.multitransport-stripped",
                "UDP transport (multitransport) requested by the client: stripped, every byte \
                 stays on the recorded TCP connection"
                    .to_owned(),
            ));
        }
        // The message channel only serves auto-detection and multitransport.
        blocks.message_channel = None;
        if let Some(flags) = blocks.core.optional_data.early_capability_flags.as_mut() {
            // The player does not decode the GFX pipeline: never let the server offer it.
            flags.remove(ClientEarlyCapabilityFlags::SUPPORT_DYN_VC_GFX_PROTOCOL);
            // Sekisho joins every channel on the server leg, and asks the client to as well.
            flags.remove(ClientEarlyCapabilityFlags::SUPPORT_SKIP_CHANNELJOIN);
        }
        let response = self.connect_response(&plan)?;
        self.connect_initial = Some(ConnectInitial {
            conference_create_request: ironrdp_pdu::gcc::ConferenceCreateRequest::new(blocks)
                .map_err(|e| RdpError::encode("MCS Connect Initial", e))?,
            ..ci
        });
        self.plan = Some(plan);
        self.transcript
            .push((Direction::ServerToClient, response.clone()));
        self.phase = Phase::Mcs;
        Ok(AcceptStep::Reply(vec![response]))
    }

    fn connect_response(&self, plan: &ChannelPlan) -> Result<Vec<u8>, RdpError> {
        let gcc = ServerGccBlocks {
            core: ServerCoreData {
                version: RdpVersion::V5_PLUS,
                optional_data: ServerCoreOptionalData {
                    client_requested_protocols: Some(self.client_requested),
                    early_capability_flags: None,
                },
            },
            network: ServerNetworkData {
                channel_ids: plan.channels.iter().filter_map(|c| c.id).collect(),
                io_channel: plan.io_channel,
            },
            security: ServerSecurityData::no_security(),
            message_channel: None,
            multi_transport_channel: None,
        };
        let response = ConnectResponse {
            conference_create_response: ConferenceCreateResponse::new(GCC_NODE_ID, gcc)
                .map_err(|e| RdpError::encode("MCS Connect Response", e))?,
            called_connect_id: 0,
            domain_parameters: DomainParameters::target(),
        };
        let payload =
            encode_vec(&response).map_err(|e| RdpError::encode("MCS Connect Response", e))?;
        encode_vec(&X224(X224Data {
            data: Cow::Owned(payload),
        }))
        .map_err(|e| RdpError::encode("MCS Connect Response", e))
    }

    fn mcs(&mut self, frame: &[u8]) -> Result<AcceptStep, RdpError> {
        let plan = self
            .plan
            .as_ref()
            .ok_or(RdpError::Misuse("no channel plan"))?;
        let msg = decode::<X224<McsMessage<'_>>>(frame)
            .map_err(|e| RdpError::malformed("client MCS PDU", e))?
            .0;
        let reply = match msg {
            McsMessage::ErectDomainRequest(_) => None,
            McsMessage::AttachUserRequest(_) if !self.attached => {
                self.attached = true;
                Some(
                    encode_vec(&X224(AttachUserConfirm {
                        result: 0,
                        initiator_id: plan.user_channel,
                    }))
                    .map_err(|e| RdpError::encode("Attach User Confirm", e))?,
                )
            }
            McsMessage::ChannelJoinRequest(req)
                if self.attached
                    && req.initiator_id == plan.user_channel
                    && plan.knows(req.channel_id) =>
            {
                self.joined.insert(req.channel_id);
                Some(
                    encode_vec(&X224(ChannelJoinConfirm {
                        result: 0,
                        initiator_id: req.initiator_id,
                        requested_channel_id: req.channel_id,
                        channel_id: req.channel_id,
                    }))
                    .map_err(|e| RdpError::encode("Channel Join Confirm", e))?,
                )
            }
            McsMessage::SendDataRequest(req)
                if req.channel_id == plan.io_channel
                    && req.initiator_id == plan.user_channel
                    && self.joined.contains(&plan.io_channel) =>
            {
                return self.client_info(frame, req.user_data.as_ref());
            }
            _ => {
                return Err(RdpError::Unexpected {
                    got: "client MCS PDU",
                    expected: "Erect Domain, Attach User, Channel Join or the Client Info",
                });
            }
        };
        self.transcript
            .push((Direction::ClientToServer, frame.to_vec()));
        match reply {
            Some(reply) => {
                self.transcript
                    .push((Direction::ServerToClient, reply.clone()));
                Ok(AcceptStep::Reply(vec![reply]))
            }
            None => Ok(AcceptStep::Reply(Vec::new())),
        }
    }

    fn client_info(&mut self, _frame: &[u8], user_data: &[u8]) -> Result<AcceptStep, RdpError> {
        // Only the Client Info may come before the logon; it carries INFO_PKT.
        let flags = user_data
            .get(..2)
            .map(|b| {
                u16::from_le_bytes([
                    b.first().copied().unwrap_or(0),
                    b.get(1).copied().unwrap_or(0),
                ])
            })
            .unwrap_or(0);
        if !BasicSecurityHeaderFlags::from_bits_retain(flags)
            .contains(BasicSecurityHeaderFlags::INFO_PKT)
        {
            return Err(RdpError::Unexpected {
                got: "data on the I/O channel",
                expected: "the Client Info PDU",
            });
        }
        let info = decode_client_info(user_data)?;
        let connect_initial = self
            .connect_initial
            .take()
            .ok_or(RdpError::Misuse("no Connect Initial"))?;
        let plan = self
            .plan
            .take()
            .ok_or(RdpError::Misuse("no channel plan"))?;
        self.phase = Phase::Done;
        let credentials = &info.client_info.credentials;
        Ok(AcceptStep::Logon(Box::new(ClientLogon {
            username: credentials.username.clone(),
            domain: credentials.domain.clone(),
            password: Secret::new(credentials.password.clone()),
            handshake: ClientHandshake {
                connect_initial,
                plan,
                client_requested: self.client_requested,
                client_info: info,
                transcript: std::mem::take(&mut self.transcript),
                events: std::mem::take(&mut self.events),
            },
        })))
    }
}

#[cfg(test)]
#[path = "accept_tests.rs"]
mod tests;
