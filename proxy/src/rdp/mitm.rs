//! The relay-phase man-in-the-middle: a sans-IO machine fed with whole frames from either leg
//! once both legs finished the MCS connection sequence ([`super::accept`] toward the
//! contractor, [`super::connect`] toward the target), answering with [`Action`]s for the relay
//! to carry out in order.
//!
//! It translates channel ids between the two legs ([`ChannelLink`]), never forwards data on a
//! channel that was not granted, refuses dynamic channels outside the allow list at creation,
//! and clears drawing orders from the Confirm Active so the player can decode the session.
//! Everything is recorded in the client's ids, the ones the recorded Connect Response gives.
//! See [MS-RDPBCGR] 1.3.1.1 for the sequence.
//!
//! [MS-RDPBCGR]: https://learn.microsoft.com/en-us/openspecs/windows_protocols/ms-rdpbcgr/

use std::borrow::Cow;
use std::collections::BTreeSet;

use ironrdp_core::{decode, encode_vec};
use ironrdp_dvc::pdu::{CreateResponsePdu, CreationStatus, DrdynvcClientPdu, DrdynvcServerPdu};
use ironrdp_pdu::mcs::{ChannelJoinConfirm, McsMessage, SendDataIndication, SendDataRequest};
use ironrdp_pdu::rdp::capability_sets::{CapabilitySet, Order, OrderFlags, OrderSupportExFlags};
use ironrdp_pdu::rdp::headers::{ShareControlHeader, ShareControlPdu};
use ironrdp_pdu::rdp::vc::{ChannelControlFlags, ChannelPduHeader};
use ironrdp_pdu::x224::X224;

use super::channels::{ChannelRules, describe_dynamic};
use super::error::RdpError;
use super::framing::send_data_request;
use super::framing::{self, FrameKind};
pub use super::link::ChannelLink;
use super::types::{Direction, Negotiated};

/// Dynamic channels refused in one session before the machine gives up; a server that keeps
/// asking for refused channels is misbehaving and memory for their ids must stay bounded.
pub const MAX_REFUSED_DVCS: usize = 1024;

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
}

/// Configuration of one session's machine.
#[derive(Debug, Clone)]
pub struct MitmConfig {
    /// channel rules from `[rdp]`
    pub rules: ChannelRules,
}

/// The machine. Once it returned an error it returns the same error forever.
#[derive(Debug)]
pub struct Mitm {
    cfg: MitmConfig,
    link: ChannelLink,
    /// channels on which a drop was already reported (one event per channel).
    reported: BTreeSet<u16>,
    /// the client's id of the drdynvc channel, when it was kept and granted
    drdynvc: Option<u16>,
    refused_dvcs: BTreeSet<u32>,
    /// dropping the rest of a chunked drdynvc message (server→client, client→server).
    dropping_chunks: DroppingChunks,
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
    /// A machine for the relay phase of a connection whose two legs are joined by `link`.
    pub fn new(cfg: MitmConfig, link: ChannelLink) -> Self {
        let drdynvc = link
            .negotiated
            .channels
            .iter()
            .find(|c| c.kept && c.name.eq_ignore_ascii_case("drdynvc"))
            .and_then(|c| c.id);
        Self {
            cfg,
            link,
            reported: BTreeSet::new(),
            drdynvc,
            refused_dvcs: BTreeSet::new(),
            dropping_chunks: DroppingChunks::default(),
            failed: None,
        }
    }

    /// The negotiated state, in the client's ids.
    pub fn negotiated(&self) -> &Negotiated {
        &self.link.negotiated
    }

    /// The channel ids of both legs.
    pub fn link(&self) -> &ChannelLink {
        &self.link
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
        match frame_kind(frame)? {
            FrameKind::FastPath => Ok(forward_to_server(frame)),
            FrameKind::X224 => self.client_mcs(frame),
        }
    }

    fn server_frame_inner(&mut self, frame: &[u8]) -> Result<Vec<Action>, RdpError> {
        match frame_kind(frame)? {
            FrameKind::FastPath => Ok(forward_to_client(frame)),
            FrameKind::X224 => self.server_mcs(frame),
        }
    }

    fn client_mcs(&mut self, frame: &[u8]) -> Result<Vec<Action>, RdpError> {
        let msg = decode::<X224<McsMessage<'_>>>(frame)
            .map_err(|e| RdpError::malformed("client MCS PDU", e))?
            .0;
        match msg {
            // The joins were all answered before the logon; a late one is answered here and
            // never reaches the server, which knows other ids.
            McsMessage::ChannelJoinRequest(req) if self.knows(req.channel_id) => {
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
                if self.link.to_server(channel).is_none() {
                    Ok(self.drop_on(channel, channel, Direction::ClientToServer))
                } else if channel == self.link.io_channel() {
                    self.client_io(frame, &req)
                } else if Some(channel) == self.drdynvc {
                    self.client_dvc(frame, &req)
                } else {
                    self.relay_request(frame, &req, None)
                }
            }
            McsMessage::DisconnectProviderUltimatum(_) => Ok(forward_to_server(frame)),
            _ => Err(RdpError::Unexpected {
                got: "client MCS connection PDU",
                expected: "data or a disconnect",
            }),
        }
    }

    fn server_mcs(&mut self, frame: &[u8]) -> Result<Vec<Action>, RdpError> {
        let msg = decode::<X224<McsMessage<'_>>>(frame)
            .map_err(|e| RdpError::malformed("server MCS PDU", e))?
            .0;
        match msg {
            McsMessage::SendDataIndication(ind) => match self.link.to_client(ind.channel_id) {
                None => Ok(self.drop_on(ind.channel_id, ind.channel_id, Direction::ServerToClient)),
                Some(channel) if Some(channel) == self.drdynvc => {
                    self.server_dvc(frame, &ind, channel)
                }
                Some(channel) => self.relay_indication(frame, &ind, channel),
            },
            McsMessage::DisconnectProviderUltimatum(_) => Ok(forward_to_client(frame)),
            _ => Err(RdpError::Unexpected {
                got: "server MCS connection PDU",
                expected: "data or a disconnect",
            }),
        }
    }

    /// Whether `id` is one of the client's channel ids (granted or leading nowhere).
    fn knows(&self, id: u16) -> bool {
        self.link.to_server(id).is_some()
            || self
                .link
                .negotiated
                .channels
                .iter()
                .any(|c| c.id == Some(id))
    }

    /// Relays a client's Send Data Request, with `user_data` in place of the client's when
    /// the machine rewrote it: recorded in the client's ids, sent in the server's.
    fn relay_request(
        &self,
        frame: &[u8],
        req: &SendDataRequest<'_>,
        user_data: Option<Vec<u8>>,
    ) -> Result<Vec<Action>, RdpError> {
        let channel = req.channel_id;
        let server_channel = self.link.to_server(channel).ok_or(RdpError::Misuse(
            "relaying on a channel without a server id",
        ))?;
        let (client_user, server_user) = self.link.user_channel();
        let recorded = match &user_data {
            Some(d) => send_data_request(client_user, channel, d.clone())?,
            None => frame.to_vec(),
        };
        let mut data = user_data.unwrap_or_else(|| req.user_data.to_vec());
        if channel == self.link.io_channel() {
            patch_share_control_source(&mut data, client_user, server_user);
        }
        let to_server = if self.link.is_identity() && req.initiator_id == client_user {
            recorded.clone()
        } else {
            send_data_request(server_user, server_channel, data)?
        };
        Ok(vec![
            Action::Record {
                direction: Direction::ClientToServer,
                bytes: recorded,
            },
            Action::ToServer(to_server),
        ])
    }

    /// Relays a server's Send Data Indication on the client's `channel`: what the client gets
    /// is what is recorded.
    fn relay_indication(
        &self,
        frame: &[u8],
        ind: &SendDataIndication<'_>,
        channel: u16,
    ) -> Result<Vec<Action>, RdpError> {
        if self.link.is_identity() {
            return Ok(forward_to_client(frame));
        }
        // The initiator is the server's own channel, which clients do not look up: kept as is.
        let out = encode_vec(&X224(SendDataIndication {
            initiator_id: ind.initiator_id,
            channel_id: channel,
            user_data: Cow::Borrowed(ind.user_data.as_ref()),
        }))
        .map_err(|e| RdpError::encode("MCS Send Data Indication", e))?;
        Ok(forward_to_client(&out))
    }

    fn drop_on(&mut self, channel: u16, shown: u16, direction: Direction) -> Vec<Action> {
        if self.reported.insert(channel) {
            let who = match direction {
                Direction::ClientToServer => "client",
                Direction::ServerToClient => "server",
            };
            let name = self
                .link
                .negotiated
                .channels
                .iter()
                .find(|c| c.id == Some(shown))
                .map(|c| c.name.clone())
                .unwrap_or_else(|| format!("id {shown}"));
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
        req: &SendDataRequest<'_>,
    ) -> Result<Vec<Action>, RdpError> {
        if let Ok(header) = decode::<ShareControlHeader>(req.user_data.as_ref())
            && let ShareControlPdu::ClientConfirmActive(mut cca) = header.share_control_pdu
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
            return self.relay_request(frame, req, Some(user_data));
        }
        self.relay_request(frame, req, None)
    }

    fn server_dvc(
        &mut self,
        frame: &[u8],
        ind: &SendDataIndication<'_>,
        channel: u16,
    ) -> Result<Vec<Action>, RdpError> {
        let (body, last) =
            match self.dvc_chunk(Direction::ServerToClient, ind.user_data.as_ref())? {
                DvcChunk::Continuation { dropped: true } => return Ok(Vec::new()),
                DvcChunk::Continuation { dropped: false } => {
                    return self.relay_indication(frame, ind, channel);
                }
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
                    return self.refuse_dvc(create.channel_id(), &name, channel, ind.channel_id);
                }
            }
            return self.relay_indication(frame, ind, channel);
        }
        if dvc_id.is_some_and(|id| self.refused_dvcs.contains(&id)) {
            self.dropping_chunks.server_to_client = !last;
            return Ok(Vec::new());
        }
        self.relay_indication(frame, ind, channel)
    }

    /// Answers a create request for a refused dynamic channel in the client's stead; the
    /// client never learns of the channel.
    fn refuse_dvc(
        &mut self,
        dvc_id: u32,
        name: &str,
        client_channel: u16,
        server_channel: u16,
    ) -> Result<Vec<Action>, RdpError> {
        if self.refused_dvcs.len() >= MAX_REFUSED_DVCS {
            return Err(RdpError::TooMany {
                what: "refused dynamic channel",
                count: self.refused_dvcs.len(),
                limit: MAX_REFUSED_DVCS,
            });
        }
        self.refused_dvcs.insert(dvc_id);
        let response = channel_pdu(&DrdynvcClientPdu::Create(CreateResponsePdu::new(
            dvc_id,
            CreationStatus::NO_LISTENER,
        )))?;
        let (client_user, server_user) = self.link.user_channel();
        Ok(vec![
            Action::Event {
                kind: "rdp.dvc-refused",
                detail: format!(
                    "{} ({name}) offered by the server: refused",
                    describe_dynamic(name)
                ),
            },
            Action::Record {
                direction: Direction::ClientToServer,
                bytes: send_data_request(client_user, client_channel, response.clone())?,
            },
            Action::ToServer(send_data_request(server_user, server_channel, response)?),
        ])
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

    fn client_dvc(
        &mut self,
        frame: &[u8],
        req: &SendDataRequest<'_>,
    ) -> Result<Vec<Action>, RdpError> {
        let (body, last) =
            match self.dvc_chunk(Direction::ClientToServer, req.user_data.as_ref())? {
                DvcChunk::Continuation { dropped: true } => return Ok(Vec::new()),
                DvcChunk::Continuation { dropped: false } => {
                    return self.relay_request(frame, req, None);
                }
                DvcChunk::First { body, last } => (body, last),
            };
        let (_, dvc_id) = dvc_header(body)?;
        if dvc_id.is_some_and(|id| self.refused_dvcs.contains(&id)) {
            self.dropping_chunks.client_to_server = !last;
            return Ok(Vec::new());
        }
        self.relay_request(frame, req, None)
    }
}

/// Replaces the `pduSource` of a Share Control Header ([MS-RDPBCGR] 2.2.8.1.1.1.1), the
/// sender's MCS user channel, when it is the client's id: the server knows another one.
fn patch_share_control_source(user_data: &mut [u8], client_user: u16, server_user: u16) {
    if client_user == server_user {
        return;
    }
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_le_bytes(
            user_data.get(at..at + 2)?.try_into().ok()?,
        ))
    };
    let is_share_control = u16_at(2).is_some_and(|t| t & 0xFFF0 == 0x0010);
    if is_share_control
        && u16_at(4) == Some(client_user)
        && let Some(source) = user_data.get_mut(4..6)
    {
        source.copy_from_slice(&server_user.to_le_bytes());
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
