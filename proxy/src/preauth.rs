//! The limits every front door puts on connections that have not authenticated yet: a cap
//! per source address and in total (the deadline is `auth.preauth_timeout`).
//!
//! Before authentication a connection costs Sekisho memory, a task and (for RDP) a TLS
//! handshake, and it proves nothing. Without a cap one desktop could hold every slot of a door
//! by opening connections and staying silent; without a deadline a slot would be held forever.
//! A connection takes a [`PreAuthPermit`] when it is accepted and drops it once the person is
//! authenticated (or the connection ends), so the caps count only the unauthenticated.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

/// Unauthenticated connections one source address may hold at once. A VDI desktop opens a
/// few at a time (a client retrying, a second window); more is someone filling the door.
pub const MAX_PREAUTH_PER_SOURCE: usize = 16;

/// Unauthenticated connections a door holds at once, across all sources.
pub const MAX_PREAUTH_TOTAL: usize = 256;

/// Why a connection was not admitted to authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GateFull {
    /// This source holds its quota of unauthenticated connections.
    #[error("{limit} connections from this address are already waiting to authenticate")]
    Source {
        /// the per-source cap
        limit: usize,
    },
    /// The door holds its quota of unauthenticated connections.
    #[error("{limit} connections are already waiting to authenticate")]
    Total {
        /// the total cap
        limit: usize,
    },
}

#[derive(Debug, Default)]
struct Counts {
    per_source: HashMap<IpAddr, usize>,
    total: usize,
}

/// The caps of one door (or of every door sharing it).
#[derive(Debug)]
pub struct PreAuthGate {
    per_source: usize,
    total: usize,
    counts: Mutex<Counts>,
}

impl PreAuthGate {
    /// A gate with the given caps.
    pub fn new(per_source: usize, total: usize) -> Arc<Self> {
        Arc::new(Self {
            per_source,
            total,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Admits a connection from `source` to authenticate, or says which cap is full.
    pub fn enter(self: &Arc<Self>, source: IpAddr) -> Result<PreAuthPermit, GateFull> {
        let mut counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        if counts.total >= self.total {
            return Err(GateFull::Total { limit: self.total });
        }
        let mine = counts.per_source.entry(source).or_insert(0);
        if *mine >= self.per_source {
            return Err(GateFull::Source {
                limit: self.per_source,
            });
        }
        *mine += 1;
        counts.total += 1;
        Ok(PreAuthPermit {
            gate: Arc::clone(self),
            source,
        })
    }

    /// Unauthenticated connections held now (for `/metrics` and tests).
    pub fn waiting(&self) -> usize {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

/// One unauthenticated connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct PreAuthPermit {
    gate: Arc<PreAuthGate>,
    source: IpAddr,
}

impl Drop for PreAuthPermit {
    fn drop(&mut self) {
        let mut counts = self.gate.counts.lock().unwrap_or_else(|p| p.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.per_source.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.per_source.remove(&self.source);
            }
        }
    }
}

/// A front door with a gate of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Door {
    /// `listen.rdp`
    Rdp,
    /// `listen.ssh`
    Ssh,
    /// `listen.vnc`
    Vnc,
}

/// The gate of `door`. Each door has its own, so a flood on one leaves the others usable.
pub fn gate(door: Door) -> &'static Arc<PreAuthGate> {
    static GATES: [OnceLock<Arc<PreAuthGate>>; 3] =
        [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    let slot = match door {
        Door::Rdp => &GATES[0],
        Door::Ssh => &GATES[1],
        Door::Vnc => &GATES[2],
    };
    slot.get_or_init(|| PreAuthGate::new(MAX_PREAUTH_PER_SOURCE, MAX_PREAUTH_TOTAL))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_source_and_in_total_and_permits_free_their_place() {
        let gate = PreAuthGate::new(2, 3);
        let a: IpAddr = "127.0.10.11".parse().unwrap();
        let b: IpAddr = "127.0.10.12".parse().unwrap();
        let a1 = gate.enter(a).unwrap();
        let _a2 = gate.enter(a).unwrap();
        assert_eq!(gate.enter(a).unwrap_err(), GateFull::Source { limit: 2 });
        let _b1 = gate.enter(b).unwrap();
        assert_eq!(gate.enter(b).unwrap_err(), GateFull::Total { limit: 3 });
        drop(a1);
        assert_eq!(gate.waiting(), 2);
        let _a3 = gate.enter(a).unwrap();
    }
}
