//! Who passed the matrix card, from where and when: the doors without a card step of their own
//! (VNC, RDP) admit a card user only if that user passed the card from the same desktop
//! recently.
//!
//! - The SSH and web logins call [`SecondFactors::record_pass`] when a card answer is right
//!   (and the password or key was right too: the login succeeded).
//! - A door asks [`SecondFactors::passed`] with `auth.second_factor_ttl`; a user without a card
//!   needs no pass (the caller decides that from the inventory).
//! - A web logout calls [`SecondFactors::forget`]: the user's passes end everywhere, so a new
//!   VNC console or RDP connection needs the card again.
//!
//! One process-wide registry ([`process_second_factors`]) is shared by every door. State is in
//! memory: a restart forgets every pass (fail closed: the card is asked again). The clock is
//! passed in (`now`).
//!
//! Usage from a door (the RDP door does the same before dialling):
//!
//! ```ignore
//! let ttl = services.inventory().auth().second_factor_ttl;
//! if has_card && !process_second_factors().passed(user, source_ip, Instant::now(), ttl) {
//!     // deny with Rule::AuthSecondFactor, saying where to pass the card
//! }
//! ```

use recorder::catalogue::DoorEventKind;

use super::outbox::Outbox;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Most (user, address) passes kept. Passes are only written after a successful login, so
/// this bounds memory against a very busy instance, not a guesser; when full, the oldest pass
/// is dropped (that user is asked for the card again).
pub const MAX_PASSES: usize = 100_000;
/// Longest user name kept (inventory names are short).
const MAX_USER_LEN: usize = 128;

/// The passes of this process, per (user, source address): the last pass time.
#[derive(Debug, Default)]
pub struct SecondFactors {
    passes: Mutex<HashMap<(String, IpAddr), Instant>>,
    /// Local passes and logouts, for the other instances of the catalogue.
    outbox: Outbox,
}

/// The registry every door of this process shares (see the module docs).
static PROCESS_SECOND_FACTORS: LazyLock<Arc<SecondFactors>> =
    LazyLock::new(|| Arc::new(SecondFactors::new()));

/// The process-wide [`SecondFactors`].
pub fn process_second_factors() -> Arc<SecondFactors> {
    Arc::clone(&PROCESS_SECOND_FACTORS)
}

fn key(user: &str, ip: IpAddr) -> (String, IpAddr) {
    (user.chars().take(MAX_USER_LEN).collect(), ip)
}

impl SecondFactors {
    /// A registry with no passes.
    pub fn new() -> SecondFactors {
        SecondFactors::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<(String, IpAddr), Instant>> {
        self.passes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// `user` answered their matrix card right from `source_ip` at `now` (in a login that
    /// succeeded).
    pub fn record_pass(&self, user: &str, source_ip: IpAddr, now: Instant) {
        self.outbox
            .note(DoorEventKind::CardPass, user, Some(source_ip));
        self.keep_pass(user, source_ip, now);
    }

    /// A pass another instance saw at `at` (on this process's clock).
    pub fn record_remote_pass(&self, user: &str, source_ip: IpAddr, at: Instant) {
        let newer = self
            .lock()
            .get(&key(user, source_ip))
            .is_none_or(|known| *known < at);
        if newer {
            self.keep_pass(user, source_ip, at);
        }
    }

    /// A logout another instance saw: the user's passes end here too.
    pub fn forget_remote(&self, user: &str) {
        self.drop_passes(user);
    }

    /// The local passes and logouts not yet shared.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn keep_pass(&self, user: &str, source_ip: IpAddr, now: Instant) {
        let mut passes = self.lock();
        let k = key(user, source_ip);
        if !passes.contains_key(&k)
            && passes.len() >= MAX_PASSES
            && let Some(oldest) = passes
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| k.clone())
        {
            passes.remove(&oldest);
        }
        passes.insert(k, now);
    }

    /// True when `user` passed the card from `source_ip` no longer than `ttl` before `now`.
    pub fn passed(&self, user: &str, source_ip: IpAddr, now: Instant, ttl: Duration) -> bool {
        self.lock()
            .get(&key(user, source_ip))
            .is_some_and(|at| *at <= now && now.duration_since(*at) <= ttl)
    }

    /// Forgets every pass of `user` (a web logout).
    pub fn forget(&self, user: &str) {
        self.outbox.note(DoorEventKind::Logout, user, None);
        self.drop_passes(user);
    }

    fn drop_passes(&self, user: &str) {
        let user: String = user.chars().take(MAX_USER_LEN).collect();
        self.lock().retain(|(u, _), _| *u != user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 10, 11));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 10, 12));
    const TTL: Duration = Duration::from_secs(8 * 3600);

    #[test]
    fn a_pass_counts_from_the_same_address_within_the_ttl() {
        let r = SecondFactors::new();
        let t0 = Instant::now();
        assert!(!r.passed("tanaka", A, t0, TTL));
        r.record_pass("tanaka", A, t0);
        assert!(r.passed("tanaka", A, t0, TTL));
        assert!(r.passed("tanaka", A, t0 + TTL, TTL));
        assert!(!r.passed("tanaka", A, t0 + TTL + Duration::from_secs(1), TTL));
        // Another desktop, or another user, has not passed.
        assert!(!r.passed("tanaka", B, t0, TTL));
        assert!(!r.passed("sato", A, t0, TTL));
        // A shorter TTL (after a reload) applies to passes already made.
        assert!(!r.passed(
            "tanaka",
            A,
            t0 + Duration::from_secs(61),
            Duration::from_secs(60)
        ));
    }

    #[test]
    fn a_new_pass_renews_and_forget_ends_every_pass_of_the_user() {
        let r = SecondFactors::new();
        let t0 = Instant::now();
        r.record_pass("tanaka", A, t0);
        r.record_pass("tanaka", A, t0 + TTL);
        assert!(r.passed("tanaka", A, t0 + TTL + Duration::from_secs(1), TTL));
        r.record_pass("tanaka", B, t0);
        r.record_pass("sato", A, t0);
        r.forget("tanaka");
        assert!(!r.passed("tanaka", A, t0 + TTL, TTL));
        assert!(!r.passed("tanaka", B, t0, TTL));
        assert!(r.passed("sato", A, t0, TTL));
    }

    #[test]
    fn every_door_gets_the_same_process_registry() {
        assert!(Arc::ptr_eq(
            &process_second_factors(),
            &process_second_factors()
        ));
    }
}
