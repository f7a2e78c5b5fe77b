//! What the russh handler tells a connection's session actor: the events of one SSH connection,
//! shared by both so that the handler uses the session and the session never the handler.

use bytes::Bytes;
use russh::ChannelId;

/// A refused request kind; maps to the `ssh.file-transfer` / `ssh.forwarding` rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// SFTP/SCP/rsync.
    FileTransfer,
    /// Port, agent or X11 forwarding.
    Forwarding,
}

/// What happened on the connection, for the actor.
#[derive(Debug)]
pub enum Event {
    /// The session channel was opened.
    SessionChannel(ChannelId),
    /// A PTY was requested.
    Pty {
        /// `TERM`.
        term: String,
        /// Columns.
        cols: u32,
        /// Rows.
        rows: u32,
    },
    /// A shell was requested on the channel.
    Shell(ChannelId),
    /// A command was requested on the channel.
    Exec(ChannelId, String),
    /// Keys.
    Data(ChannelId, Bytes),
    /// The client's window changed.
    Resize {
        /// Columns.
        cols: u32,
        /// Rows.
        rows: u32,
    },
    /// A request was refused (already answered negatively toward the client).
    Refused {
        /// Which rule.
        kind: Refusal,
        /// What was asked, for the user and the recording.
        detail: String,
        /// The channel it came on, if any (the actor ends an otherwise idle channel).
        channel: Option<ChannelId>,
        /// The user was already told (by the handler).
        told: bool,
    },
    /// The client sent EOF on a channel.
    Eof(ChannelId),
    /// The client closed a channel.
    Closed(ChannelId),
}
