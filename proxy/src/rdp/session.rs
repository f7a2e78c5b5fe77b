//! The glue between an RDP relay and its [`LiveSession`]: the one place that records, writes
//! events and listens for Sekisho ending the session. Any error from the recording ends the
//! session (fail closed).

use anyhow::Result;
use recorder::catalogue::Outcome;
use recorder::format::EventKind;
use tokio::io::{AsyncRead, AsyncWrite};

use super::mitm::{Direction, Mitm};
use super::relay::{LogonCheck, Sink, relay_frames};
use crate::services::{EndReason, LiveSession};

/// Recording channel of the RDP wire (whole PDUs, both directions).
pub const WIRE_CHANNEL: u32 = 0;

/// What a session needs besides the two streams.
pub struct Relay {
    /// the recorded session
    pub live: LiveSession,
    /// the MCS-phase machine
    pub mitm: Mitm,
    /// the logon check, when the contractor was not authenticated by CredSSP
    pub logon: Option<LogonCheck>,
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

/// Runs the session until a leg closes, the machine fails, or services end it; then seals
/// the recording.
pub async fn run<C, S>(relay: Relay, client: C, server: S) -> Result<()>
where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Relay { live, mitm, logon } = relay;
    let result = relay_frames(&live, mitm, logon, client, server).await;
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
