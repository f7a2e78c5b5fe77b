//! The types both legs of an RDP connection share: what the client asked for and was given
//! (channels, the negotiated state), which way a PDU went, and the credentials Sekisho injects.

use std::fmt;

/// At most 31 static channels exist in an RDP connection ([MS-RDPBCGR] 2.2.1.3.4,
/// CHANNEL_MAX_COUNT); more is a hostile client.
pub const MAX_STATIC_CHANNELS: usize = 31;

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
