//! One-time VNC tickets: the SSH front door's `console TARGET` issues one, and the VNC
//! listener redeems it as the VNC password.
//!
//! VNC authentication ([RFC 6143 §7.2.2]) never sends the password: the server sends a random
//! 16-byte challenge and the viewer answers with the challenge DES-encrypted under the password
//! (only its first 8 bytes count, hence 8-character tickets). So the store cannot look a
//! ticket up; it computes the expected answer for every ticket bound to the connecting address
//! and compares in constant time.
//!
//! A ticket is single use, valid for [`DEFAULT_VALIDITY`], and bound to a user, a target and
//! the source address it was issued to. Spent and expired tickets are kept a little longer so
//! a refusal can say *why* ("reused", "expired") for the catalogue.
//!
//! [RFC 6143 §7.2.2]: https://www.rfc-editor.org/rfc/rfc6143#section-7.2.2

use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, Duration, Utc};
use des::Des;
use des::cipher::{Array, BlockCipherEncrypt, KeyInit};
use rand::Rng;
use subtle::ConstantTimeEq;

/// Ticket length: VNC authentication uses only the first 8 bytes of a password.
pub const TICKET_LEN: usize = 8;
/// How long a ticket may be redeemed after it is issued.
pub const DEFAULT_VALIDITY: Duration = Duration::seconds(60);
/// How long spent and expired tickets are remembered, to name the refusal reason.
const REMEMBER_SPENT: Duration = Duration::minutes(10);
/// Most tickets held at once (outstanding + remembered). Each redemption does one DES per
/// ticket of the connecting address, and memory is per ticket: a cap keeps a flood of
/// `console` requests from costing more than a few hundred KiB and milliseconds.
pub const MAX_TICKETS: usize = 10_000;
/// Characters of a ticket: printable, no look-alikes (0/O, 1/l/I), easy to type in a viewer's
/// password box. 55 symbols, 8 of them: about 46 bits, against an attacker who gets one guess
/// per VNC connection from an address that holds a live ticket, within 60 s.
const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";

/// A ticket's secret. Debug prints `<secret>`; read it with [`Ticket::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket(String);

impl Ticket {
    /// The ticket text, to show to the user who asked for it (and nowhere else).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<secret>")
    }
}

/// What a redeemed ticket allows: a VNC console on `target` for `user`, from `source`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The user the ticket was issued to.
    pub user: String,
    /// The target whose console was asked for.
    pub target: String,
    /// The address the ticket was issued to (and redeemed from).
    pub source: IpAddr,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
}

/// Why a ticket was refused. `Display` is the reason sent to the viewer and the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TicketError {
    /// No ticket (live or remembered) matches the answer: a wrong password.
    #[error("wrong or unknown ticket")]
    NoMatch,
    /// The ticket was already used.
    #[error("ticket for {} on {} already used", .0.user, .0.target)]
    Reused(Grant),
    /// The ticket is older than its validity.
    #[error("ticket for {} on {} expired", .0.user, .0.target)]
    Expired(Grant),
    /// The ticket was issued to another address; it is now void.
    #[error("ticket for {} on {} was issued to {}, not this address", .0.user, .0.target, .0.source)]
    WrongSource(Grant),
    /// Too many tickets outstanding (issue only).
    #[error("too many outstanding console tickets; try again in a minute")]
    Full,
}

impl TicketError {
    /// The grant the ticket carried, if one matched.
    pub fn grant(&self) -> Option<&Grant> {
        match self {
            TicketError::Reused(g) | TicketError::Expired(g) | TicketError::WrongSource(g) => {
                Some(g)
            }
            TicketError::NoMatch | TicketError::Full => None,
        }
    }
}

struct Entry {
    secret: Ticket,
    grant: Grant,
    spent: bool,
}

/// The in-memory ticket store of one instance (a ticket is redeemed on the instance that
/// issued it: the SSH and VNC listeners are on the same host).
pub struct TicketStore {
    validity: Duration,
    entries: Mutex<Vec<Entry>>,
}

impl std::fmt::Debug for TicketStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TicketStore")
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

impl Default for TicketStore {
    fn default() -> Self {
        TicketStore::new(DEFAULT_VALIDITY)
    }
}

impl TicketStore {
    /// A store whose tickets are valid for `validity`.
    pub fn new(validity: Duration) -> Self {
        TicketStore {
            validity,
            entries: Mutex::new(Vec::new()),
        }
    }

    /// A store whose validity is `SEKISHO_VNC_TICKET_SECONDS` if set (for tests of expiry),
    /// else [`DEFAULT_VALIDITY`].
    pub fn from_env() -> Self {
        let validity = std::env::var("SEKISHO_VNC_TICKET_SECONDS")
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|s| (1..=3600).contains(s))
            .map_or(DEFAULT_VALIDITY, Duration::seconds);
        TicketStore::new(validity)
    }

    /// How long a ticket stays valid.
    pub fn validity(&self) -> Duration {
        self.validity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Entry>> {
        match self.entries.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn prune(&self, entries: &mut Vec<Entry>, now: DateTime<Utc>) {
        let keep_until = self.validity + REMEMBER_SPENT;
        entries.retain(|e| now - e.grant.issued_at < keep_until);
    }

    /// Issues a ticket for `user` to open `target`'s console from `source`. The caller has
    /// already asked the policy (`console.vm`); the VNC listener asks again at connect time.
    pub fn issue(
        &self,
        user: &str,
        target: &str,
        source: IpAddr,
        now: DateTime<Utc>,
    ) -> Result<Ticket, TicketError> {
        let mut entries = self.lock();
        self.prune(&mut entries, now);
        if entries.len() >= MAX_TICKETS {
            return Err(TicketError::Full);
        }
        let mut rng = rand::rng();
        let secret = loop {
            let s: String = (0..TICKET_LEN)
                .map(|_| {
                    char::from(
                        ALPHABET
                            .get(rng.random_range(0..ALPHABET.len()))
                            .copied()
                            .unwrap_or(b'x'),
                    )
                })
                .collect();
            // Two live tickets with one secret on one address would be ambiguous.
            if !entries
                .iter()
                .any(|e| e.grant.source == source && e.secret.0 == s)
            {
                break Ticket(s);
            }
        };
        entries.push(Entry {
            secret: secret.clone(),
            grant: Grant {
                user: user.to_owned(),
                target: target.to_owned(),
                source,
                issued_at: now,
            },
            spent: false,
        });
        Ok(secret)
    }

    /// Redeems the ticket whose VNC-auth answer to `challenge` is `response`, for a viewer
    /// connecting from `source`. A matching ticket is consumed whatever the outcome.
    pub fn redeem(
        &self,
        challenge: &[u8; 16],
        response: &[u8; 16],
        source: IpAddr,
        now: DateTime<Utc>,
    ) -> Result<Grant, TicketError> {
        let mut entries = self.lock();
        self.prune(&mut entries, now);
        // Compare against every ticket without stopping at the first match, so the time
        // taken does not tell which ticket (or how many) matched.
        let mut found: Option<usize> = None;
        for (i, e) in entries.iter().enumerate() {
            let expected = vnc_auth_response(e.secret.expose().as_bytes(), challenge);
            if bool::from(expected.ct_eq(response)) && found.is_none() {
                found = Some(i);
            }
        }
        let entry = found
            .and_then(|i| entries.get_mut(i))
            .ok_or(TicketError::NoMatch)?;
        let grant = entry.grant.clone();
        let was_spent = entry.spent;
        entry.spent = true;
        if was_spent {
            Err(TicketError::Reused(grant))
        } else if grant.source != source {
            Err(TicketError::WrongSource(grant))
        } else if now - grant.issued_at >= self.validity {
            Err(TicketError::Expired(grant))
        } else {
            Ok(grant)
        }
    }
}

/// The instance's ticket store, shared by the SSH front door (`console TARGET` issues) and the
/// VNC listener (redeems). Validity from [`TicketStore::from_env`].
pub fn shared() -> Arc<TicketStore> {
    static STORE: OnceLock<Arc<TicketStore>> = OnceLock::new();
    Arc::clone(STORE.get_or_init(|| Arc::new(TicketStore::from_env())))
}

/// The VNC authentication answer: the challenge DES-encrypted (ECB, two blocks) with the
/// password's first 8 bytes, zero-padded, each byte's bits reversed (a historical quirk of
/// the original implementation that every viewer follows).
pub fn vnc_auth_response(password: &[u8], challenge: &[u8; 16]) -> [u8; 16] {
    let mut key = [0u8; 8];
    for (k, p) in key.iter_mut().zip(password) {
        *k = p.reverse_bits();
    }
    let cipher = Des::new(&Array::from(key));
    let mut out = *challenge;
    for chunk in out.chunks_exact_mut(8) {
        if let Ok(block) = <&mut Array<u8, _>>::try_from(chunk) {
            cipher.encrypt_block(block);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-25T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 10, 11));
    const CH: [u8; 16] = *b"0123456789abcdef";

    fn answer(t: &Ticket) -> [u8; 16] {
        vnc_auth_response(t.expose().as_bytes(), &CH)
    }

    #[test]
    fn known_vector() {
        // Same as rfb_probe.py / python cryptography: DES-ECB with bit-reversed "vncpass1".
        let ch: [u8; 16] = std::array::from_fn(|i| i as u8);
        let r = vnc_auth_response(b"vncpass1", &ch);
        let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "9d395ef8e6efac5da57b452147b087d7");
        assert_eq!(
            vnc_auth_response(b"password-longer", &CH),
            vnc_auth_response(b"password", &CH)
        );
    }

    #[test]
    fn issue_shape_and_debug() {
        let s = TicketStore::default();
        let t = s.issue("tanaka", "web01", SRC, t0()).unwrap();
        assert_eq!(t.expose().len(), TICKET_LEN);
        assert!(t.expose().bytes().all(|b| ALPHABET.contains(&b)));
        assert_eq!(format!("{t:?}"), "<secret>");
    }

    #[test]
    fn single_use() {
        let s = TicketStore::default();
        let t = s.issue("tanaka", "web01", SRC, t0()).unwrap();
        let g = s
            .redeem(&CH, &answer(&t), SRC, t0() + Duration::seconds(5))
            .unwrap();
        assert_eq!((g.user.as_str(), g.target.as_str()), ("tanaka", "web01"));
        assert!(matches!(
            s.redeem(&CH, &answer(&t), SRC, t0() + Duration::seconds(6)),
            Err(TicketError::Reused(_))
        ));
    }

    #[test]
    fn expires_at_60_seconds() {
        let s = TicketStore::default();
        let t = s.issue("tanaka", "web01", SRC, t0()).unwrap();
        let u = s.issue("tanaka", "web01", SRC, t0()).unwrap();
        assert!(
            s.redeem(&CH, &answer(&u), SRC, t0() + Duration::milliseconds(59_999))
                .is_ok()
        );
        assert!(matches!(
            s.redeem(&CH, &answer(&t), SRC, t0() + Duration::seconds(60)),
            Err(TicketError::Expired(_))
        ));
    }

    #[test]
    fn wrong_source_voids_the_ticket() {
        let s = TicketStore::default();
        let t = s.issue("tanaka", "web01", SRC, t0()).unwrap();
        let other: IpAddr = "127.0.10.99".parse().unwrap();
        assert!(matches!(
            s.redeem(&CH, &answer(&t), other, t0()),
            Err(TicketError::WrongSource(_))
        ));
        assert!(matches!(
            s.redeem(&CH, &answer(&t), SRC, t0()),
            Err(TicketError::Reused(_))
        ));
    }

    #[test]
    fn wrong_response() {
        let s = TicketStore::default();
        let t = s.issue("tanaka", "web01", SRC, t0()).unwrap();
        assert_eq!(
            s.redeem(&CH, &vnc_auth_response(b"guess123", &CH), SRC, t0()),
            Err(TicketError::NoMatch)
        );
        // A wrong guess does not burn the real ticket.
        assert!(s.redeem(&CH, &answer(&t), SRC, t0()).is_ok());
    }

    #[test]
    fn forgotten_after_retention() {
        let s = TicketStore::default();
        let t = s.issue("tanaka", "web01", SRC, t0()).unwrap();
        let late = t0() + DEFAULT_VALIDITY + REMEMBER_SPENT;
        assert_eq!(
            s.redeem(&CH, &answer(&t), SRC, late),
            Err(TicketError::NoMatch)
        );
    }

    #[test]
    fn capped() {
        let s = TicketStore::default();
        for _ in 0..MAX_TICKETS {
            s.issue("u", "t", SRC, t0()).unwrap();
        }
        assert_eq!(s.issue("u", "t", SRC, t0()), Err(TicketError::Full));
    }
}
