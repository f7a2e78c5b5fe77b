//! The glue between an RDP relay and its [`LiveSession`]: the one place that records, writes
//! events and listens for Sekisho ending the session. Any error from the recording ends the
//! session (fail closed).

use anyhow::Result;
use recorder::catalogue::Outcome;
use recorder::format::EventKind;
use tokio::io::{AsyncRead, AsyncWrite};

use super::mitm::Mitm;
use super::relay::{Sink, relay_frames};
use super::types::{Direction, Negotiated};
use crate::services::{EndReason, LiveSession};

/// Recording channel of the RDP wire (whole PDUs, both directions).
pub const WIRE_CHANNEL: u32 = 0;

/// What a session needs besides the two streams.
pub struct Relay {
    /// the recorded session
    pub live: LiveSession,
    /// the relay-phase machine
    pub mitm: Mitm,
}

impl Sink for LiveSession {
    async fn record(&self, direction: Direction, bytes: &[u8]) -> Result<()> {
        match direction {
            Direction::ClientToServer => self.client_data(WIRE_CHANNEL, bytes).await,
            Direction::ServerToClient => self.server_data(WIRE_CHANNEL, bytes).await,
        }
    }

    async fn event(&self, kind: &str, detail: &str) -> Result<()> {
        let k = match kind {
            "rdp.channel-stripped" | "rdp.dvc-refused" => EventKind::ChannelStripped,
            "rdp.user" => EventKind::UserIdentified,
            "rdp.negotiated" => EventKind::Note,
            _ => EventKind::Policy,
        };
        LiveSession::event(self, k, &format!("{kind}: {detail}")).await
    }

    async fn ended(&self) -> String {
        LiveSession::ended(self).await.message()
    }
}

/// What the contractor and the target exchanged before the relay, for the recording.
pub struct Handshake<'a> {
    /// the Connect Initial as the target received it
    pub connect_initial: &'a [u8],
    /// the rest of the MCS sequence as the contractor saw it (Sekisho's answers included)
    pub transcript: &'a [(Direction, Vec<u8>)],
    /// the Client Info PDU as the target received it, password emptied, in the client's ids
    pub client_info_redacted: &'a [u8],
    /// events from the connection sequence (channels stripped at the request)
    pub events: &'a [(&'static str, String)],
    /// the negotiated state in the client's ids
    pub negotiated: &'a Negotiated,
    /// the user name of the Client Info PDU
    pub username: &'a str,
}

/// Records the connection sequence, in the order it happened, once the recording is open:
/// the recording then replays from the Connect Initial like any other.
pub async fn record_handshake(live: &LiveSession, h: &Handshake<'_>) -> Result<()> {
    for (kind, detail) in h.events {
        Sink::event(live, kind, detail).await?;
    }
    Sink::record(live, Direction::ClientToServer, h.connect_initial).await?;
    for (direction, bytes) in h.transcript {
        Sink::record(live, *direction, bytes).await?;
    }
    Sink::record(live, Direction::ClientToServer, h.client_info_redacted).await?;
    Sink::event(live, "rdp.negotiated", &h.negotiated.describe()).await?;
    Sink::event(live, "rdp.user", h.username).await
}

/// Runs the session until a leg closes, the machine fails, or services end it; then seals
/// the recording.
pub async fn run<C, S>(relay: Relay, client: C, server: S) -> Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Relay { live, mitm } = relay;
    let result = relay_frames(&live, mitm, client, server).await;
    // A hop ended with its console: say so in the catalogue's events too, not only in the
    // recording, so the link between the two endings can be found without the file.
    if let Some(EndReason::ConsoleEnded { console }) = live.end_reason() {
        let _ = LiveSession::event(
            &live,
            EventKind::Policy,
            &format!(
                "rdp.hop-console-ended: the console session {console} this hop came from has ended"
            ),
        )
        .await;
    }
    // `finish` turns Completed into the end reason's outcome (killed, console ended…).
    let outcome = match &result {
        Ok(_) => Outcome::Completed,
        Err(e) => {
            let _ = Sink::event(&live, "rdp.session-error", &format!("{e:#}")).await;
            Outcome::Failed
        }
    };
    live.finish(outcome).await?;
    result.map(|_| ())
}
