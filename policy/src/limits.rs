//! `[limits]`: how many connections each front door holds at once. Past its limit a door
//! refuses new connections (SSH, VNC) or leaves them in the accept queue (RDP) rather than run
//! out of memory or file descriptors with every session in it. Read at start: a reload does
//! not resize a running door.

use serde::Deserialize;

use crate::diag::{Diag, S};

/// Built-in `limits.ssh_connections`: 5,000 idle console sessions (the scale goal) with room
/// for logins in progress.
pub const DEFAULT_SSH_CONNECTIONS: u32 = 10_000;
/// Built-in `limits.rdp_connections`: 1,000 held desktop sessions with room to spare.
pub const DEFAULT_RDP_CONNECTIONS: u32 = 2_000;
/// Built-in `limits.vnc_connections`: a graphical console session holds up to two message
/// buffers of several MiB, so fewer of them fit.
pub const DEFAULT_VNC_CONNECTIONS: u32 = 256;
/// Largest value any `limits` key accepts.
pub const MAX_CONNECTIONS: u32 = 1_000_000;

/// `[limits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// SSH connections at once, authenticated or not.
    pub ssh_connections: u32,
    /// RDP connections at once, handshaking or relaying.
    pub rdp_connections: u32,
    /// VNC connections at once, handshaking or relaying.
    pub vnc_connections: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ssh_connections: DEFAULT_SSH_CONNECTIONS,
            rdp_connections: DEFAULT_RDP_CONNECTIONS,
            vnc_connections: DEFAULT_VNC_CONNECTIONS,
        }
    }
}

impl Limits {
    /// The most connections the three doors may hold together.
    pub fn total_connections(&self) -> u64 {
        u64::from(self.ssh_connections)
            + u64::from(self.rdp_connections)
            + u64::from(self.vnc_connections)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    ssh_connections: Option<S<i64>>,
    rdp_connections: Option<S<i64>>,
    vnc_connections: Option<S<i64>>,
}

/// Each bad value is an error naming its key; the default stays for it.
pub(crate) fn parse(diag: &mut Diag<'_>, raw: &RawLimits, out: &mut Limits) {
    for (value, key, slot) in [
        (
            &raw.ssh_connections,
            "limits.ssh_connections",
            &mut out.ssh_connections,
        ),
        (
            &raw.rdp_connections,
            "limits.rdp_connections",
            &mut out.rdp_connections,
        ),
        (
            &raw.vnc_connections,
            "limits.vnc_connections",
            &mut out.vnc_connections,
        ),
    ] {
        let Some(n) = value else { continue };
        match u32::try_from(*n.get_ref()) {
            Ok(v) if (1..=MAX_CONNECTIONS).contains(&v) => *slot = v,
            _ => diag.error(
                n.span(),
                key,
                format!(
                    "{} is not a number of connections (1 to {MAX_CONNECTIONS})",
                    n.get_ref()
                ),
            ),
        }
    }
}
