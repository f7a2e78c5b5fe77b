//! Which channel id of the client's is which of the target's: Sekisho numbered the client's
//! channels itself before the target was dialled ([`super::accept`]), and the target numbered
//! its own ([`super::connect`]). The relay translates between the two through a
//! [`ChannelLink`].

use super::types::Negotiated;

/// The ids of one side of the connection (the client's view or the target's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ids {
    pub(crate) io: u16,
    pub(crate) user: u16,
}

/// Which client channel id is which server channel id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelLink {
    /// the negotiated state in the client's view (as recorded)
    pub negotiated: Negotiated,
    pub(crate) client: Ids,
    pub(crate) server: Ids,
    /// (client id, server id) of every kept static channel the server granted
    pub(crate) statics: Vec<(u16, u16)>,
}

impl ChannelLink {
    /// The id the server knows for the client's channel `id`, if it reaches the server.
    pub fn to_server(&self, id: u16) -> Option<u16> {
        if id == self.client.io {
            Some(self.server.io)
        } else if id == self.client.user {
            Some(self.server.user)
        } else {
            self.statics.iter().find(|(c, _)| *c == id).map(|(_, s)| *s)
        }
    }

    /// The id the client knows for the server's channel `id`, if the client has one.
    pub fn to_client(&self, id: u16) -> Option<u16> {
        if id == self.server.io {
            Some(self.client.io)
        } else if id == self.server.user {
            Some(self.client.user)
        } else {
            self.statics.iter().find(|(_, s)| *s == id).map(|(c, _)| *c)
        }
    }

    /// The user channel (the MCS initiator) of each side: (client, server).
    pub fn user_channel(&self) -> (u16, u16) {
        (self.client.user, self.server.user)
    }

    /// The I/O channel of the client's view.
    pub fn io_channel(&self) -> u16 {
        self.client.io
    }

    /// Whether every id is the same on both sides (nothing to translate).
    pub fn is_identity(&self) -> bool {
        self.client == self.server && self.statics.iter().all(|(c, s)| c == s)
    }

    /// A link whose two sides agree, for tests and fuzzing of the relay.
    pub fn identity(negotiated: Negotiated, user: u16) -> Self {
        let statics = negotiated
            .channels
            .iter()
            .filter(|c| c.kept)
            .filter_map(|c| c.id.map(|id| (id, id)))
            .collect();
        let ids = Ids {
            io: negotiated.io_channel,
            user,
        };
        Self {
            negotiated,
            client: ids.clone(),
            server: ids,
            statics,
        }
    }
}
