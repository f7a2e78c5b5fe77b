//! The server leg's MCS phase: after the contractor was authenticated, Sekisho runs the MCS
//! connection sequence against the target as a client would, with the Connect Initial the
//! contractor sent (filtered by [`super::accept`]) and the Client Info carrying the injected
//! credential, then hands the relay a [`ChannelLink`] between the ids the client was given and
//! the ids the target gave.

use std::borrow::Cow;
use std::fmt;

use ironrdp_core::{decode, encode_vec};
use ironrdp_pdu::mcs::{
    AttachUserRequest, ChannelJoinRequest, ConnectInitial, ConnectResponse, ErectDomainPdu,
    McsMessage,
};
use ironrdp_pdu::nego::SecurityProtocol;
use ironrdp_pdu::rdp::client_info::{ClientInfoFlags, Credentials};
use ironrdp_pdu::x224::{X224, X224Data};

use super::accept::{ChannelPlan, ClientHandshake};
use super::error::RdpError;
use super::framing::{self, FrameKind, send_data_request};
use super::link::{ChannelLink, Ids};
use super::types::{Negotiated, TargetCredentials};

/// What to do after a server frame.
#[derive(Debug)]
pub enum ConnectStep {
    /// Write these frames to the server, then read on.
    Send(Vec<Vec<u8>>),
    /// The sequence is done: write the Client Info to the server, record its redacted copy,
    /// then relay through a machine built on the link.
    Done(Box<Connected>),
}

/// The end of the server leg's MCS phase.
pub struct Connected {
    /// the Client Info with the injected credential, to the server (never recorded)
    pub client_info: Vec<u8>,
    /// the same PDU with its password emptied, in the client's ids, for the recording
    pub client_info_redacted: Vec<u8>,
    /// the channel ids of both sides
    pub link: ChannelLink,
}

impl fmt::Debug for Connected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connected")
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    ConnectResponse,
    AttachUserConfirm,
    Joins,
    Done,
}

/// The server leg's MCS machine. Once it returned an error it returns the same error forever.
pub struct McsConnector {
    handshake: ClientHandshake,
    inject: Option<TargetCredentials>,
    server_selected: SecurityProtocol,
    phase: Phase,
    server_io: u16,
    server_user: u16,
    /// (client id, server id) of the kept channels the server granted
    statics: Vec<(u16, u16)>,
    /// server channel ids still to join, in order
    to_join: Vec<u16>,
    failed: Option<RdpError>,
}

impl fmt::Debug for McsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("McsConnector")
            .field("phase", &self.phase)
            .field("handshake", &self.handshake)
            .finish_non_exhaustive()
    }
}

impl McsConnector {
    /// A connector for a server that selected `server_selected`, and the Connect Initial to
    /// send it (also what the recording keeps of the request).
    pub fn start(
        handshake: ClientHandshake,
        server_selected: SecurityProtocol,
        inject: Option<TargetCredentials>,
    ) -> Result<(Self, Vec<u8>), RdpError> {
        let mut blocks = handshake
            .connect_initial
            .conference_create_request
            .gcc_blocks()
            .clone();
        blocks.core.optional_data.server_selected_protocol = Some(server_selected);
        let ci = ConnectInitial {
            conference_create_request: ironrdp_pdu::gcc::ConferenceCreateRequest::new(blocks)
                .map_err(|e| RdpError::encode("MCS Connect Initial", e))?,
            ..handshake.connect_initial.clone()
        };
        let payload = encode_vec(&ci).map_err(|e| RdpError::encode("MCS Connect Initial", e))?;
        let frame = encode_vec(&X224(X224Data {
            data: Cow::Owned(payload),
        }))
        .map_err(|e| RdpError::encode("MCS Connect Initial", e))?;
        Ok((
            Self {
                handshake,
                inject,
                server_selected,
                phase: Phase::ConnectResponse,
                server_io: 0,
                server_user: 0,
                statics: Vec::new(),
                to_join: Vec::new(),
                failed: None,
            },
            frame,
        ))
    }

    /// Feeds one whole frame from the server.
    pub fn server_frame(&mut self, frame: &[u8]) -> Result<ConnectStep, RdpError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.step(frame);
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn step(&mut self, frame: &[u8]) -> Result<ConnectStep, RdpError> {
        match framing::decode(frame)? {
            Some((FrameKind::X224, len)) if len == frame.len() => {}
            _ => {
                return Err(RdpError::Unexpected {
                    got: "server PDU",
                    expected: "the MCS connection sequence",
                });
            }
        }
        match self.phase {
            Phase::ConnectResponse => self.connect_response(frame),
            Phase::AttachUserConfirm | Phase::Joins => self.mcs(frame),
            Phase::Done => Err(RdpError::Misuse("the connector already finished")),
        }
    }

    fn connect_response(&mut self, frame: &[u8]) -> Result<ConnectStep, RdpError> {
        let data = decode::<X224<X224Data<'_>>>(frame)
            .map_err(|e| RdpError::malformed("MCS Connect Response", e))?
            .0;
        let resp = decode::<ConnectResponse>(data.data.as_ref())
            .map_err(|e| RdpError::malformed("MCS Connect Response", e))?;
        let gcc = resp.conference_create_response.gcc_blocks();
        let kept: Vec<u16> = self
            .handshake
            .plan
            .channels
            .iter()
            .filter(|c| c.kept)
            .filter_map(|c| c.id)
            .collect();
        let server_ids = &gcc.network.channel_ids;
        if server_ids.len() > kept.len() {
            return Err(RdpError::TooMany {
                what: "server channel id",
                count: server_ids.len(),
                limit: kept.len(),
            });
        }
        // A channel the server did not grant stays a dead end for the client.
        self.statics = kept
            .iter()
            .copied()
            .zip(server_ids.iter().copied())
            .collect();
        self.server_io = gcc.network.io_channel;
        let erect = encode_vec(&X224(ErectDomainPdu {
            sub_height: 0,
            sub_interval: 0,
        }))
        .map_err(|e| RdpError::encode("Erect Domain Request", e))?;
        let attach = encode_vec(&X224(AttachUserRequest))
            .map_err(|e| RdpError::encode("Attach User Request", e))?;
        self.phase = Phase::AttachUserConfirm;
        Ok(ConnectStep::Send(vec![erect, attach]))
    }

    fn mcs(&mut self, frame: &[u8]) -> Result<ConnectStep, RdpError> {
        let msg = decode::<X224<McsMessage<'_>>>(frame)
            .map_err(|e| RdpError::malformed("server MCS PDU", e))?
            .0;
        match (self.phase, msg) {
            (Phase::AttachUserConfirm, McsMessage::AttachUserConfirm(c)) => {
                if c.result != 0 {
                    return Err(RdpError::Unexpected {
                        got: "Attach User Confirm with a failure result",
                        expected: "a user channel",
                    });
                }
                self.server_user = c.initiator_id;
                let mut joins = vec![self.server_user, self.server_io];
                joins.extend(self.statics.iter().map(|(_, s)| *s));
                joins.reverse();
                self.to_join = joins;
                self.phase = Phase::Joins;
                self.next_join()
            }
            (Phase::Joins, McsMessage::ChannelJoinConfirm(c)) => {
                let expected = self.to_join.pop();
                if c.result != 0 || Some(c.requested_channel_id) != expected {
                    return Err(RdpError::Unexpected {
                        got: "Channel Join Confirm refusing or for another channel",
                        expected: "the channel Sekisho asked to join",
                    });
                }
                self.next_join()
            }
            _ => Err(RdpError::Unexpected {
                got: "server MCS PDU",
                expected: "Attach User Confirm or Channel Join Confirm",
            }),
        }
    }

    fn next_join(&mut self) -> Result<ConnectStep, RdpError> {
        if let Some(&channel_id) = self.to_join.last() {
            let join = encode_vec(&X224(ChannelJoinRequest {
                initiator_id: self.server_user,
                channel_id,
            }))
            .map_err(|e| RdpError::encode("Channel Join Request", e))?;
            return Ok(ConnectStep::Send(vec![join]));
        }
        self.finish()
    }

    fn finish(&mut self) -> Result<ConnectStep, RdpError> {
        self.phase = Phase::Done;
        let plan: &ChannelPlan = &self.handshake.plan;
        let mut info = self.handshake.client_info.clone();
        let ci = &mut info.client_info;
        if let Some(inject) = &self.inject {
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
        let client_info = send_data_request(
            self.server_user,
            self.server_io,
            encode_vec(&info).map_err(|e| RdpError::encode("Client Info", e))?,
        )?;
        info.client_info.credentials.password = String::new();
        let client_info_redacted = send_data_request(
            plan.user_channel,
            plan.io_channel,
            encode_vec(&info).map_err(|e| RdpError::encode("Client Info", e))?,
        )?;
        let mut channels = plan.channels.clone();
        for ch in &mut channels {
            // Not granted by the server: the client's id leads nowhere, as for a stripped one.
            if ch.kept && !self.statics.iter().any(|(c, _)| Some(*c) == ch.id) {
                ch.kept = false;
            }
        }
        let link = ChannelLink {
            negotiated: Negotiated {
                desktop: plan.desktop,
                io_channel: plan.io_channel,
                message_channel: None,
                channels,
                client_requested: self.handshake.client_requested.bits(),
                server_selected: self.server_selected.bits(),
            },
            client: Ids {
                io: plan.io_channel,
                user: plan.user_channel,
            },
            server: Ids {
                io: self.server_io,
                user: self.server_user,
            },
            statics: std::mem::take(&mut self.statics),
        };
        Ok(ConnectStep::Done(Box::new(Connected {
            client_info,
            client_info_redacted,
            link,
        })))
    }
}
