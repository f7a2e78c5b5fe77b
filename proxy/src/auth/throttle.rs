//! Stops password (and card) guessing at every front door: failed logons are counted per user
//! name and per source address, and after `max_failures` of either within `failure_window`
//! that name or address is locked out for `lockout` (the `[auth]` table).
//!
//! - One process-wide [`Throttle`] ([`process_throttle`]) is shared by the SSH, web and RDP
//!   doors, so guesses spread over several doors count together.
//! - While locked, a door answers exactly as to a wrong password and does not even check the
//!   password: the lockout is no oracle for it.
//! - Attempts refused while locked are not counted, so a lockout ends `lockout` after it began
//!   however much the guesser keeps trying.
//! - A success clears the failures of the user name only: clearing the address too would let
//!   a guesser who owns one account reset their address's count between guesses.
//! - [`Throttle::record_failure`] returns the lockouts it started; the caller writes each one
//!   as an audit event and a log line (this module does no I/O).
//!
//! The clock is passed in (`now`), so the rules are testable without sleeping.

use recorder::catalogue::DoorEventKind;

use super::outbox::Outbox;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use policy::AuthPolicy;

/// Most user names and addresses tracked at once. A flood of made-up user names must not grow
/// memory without bound: when full, entries with no recent failure and no lockout are dropped,
/// and if none can be, new names are not tracked (their addresses still are).
pub const MAX_TRACKED: usize = 100_000;
/// Longest user name kept as a key; longer names are cut (inventory names are short).
pub const MAX_KEY_LEN: usize = 128;

/// What is counted: a user name, or a source address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A user name as typed (known or not).
    User(String),
    /// The client's address.
    Address(IpAddr),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::User(u) => write!(f, "user {u}"),
            Subject::Address(a) => write!(f, "address {a}"),
        }
    }
}

/// A logon refused because its user name or address is locked out. Doors answer it exactly
/// like a wrong password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    /// What is locked (the user name is checked first).
    pub subject: Subject,
    /// How long the lockout still runs.
    pub remaining: Duration,
}

/// A lockout that a failure just started: write it as an audit event and a log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockout {
    /// What is locked.
    pub subject: Subject,
    /// Failures counted within the window.
    pub failures: u32,
    /// The window they fell in.
    pub window: Duration,
    /// How long the lockout lasts.
    pub lockout: Duration,
}

impl fmt::Display for Lockout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} locked out for {} s after {} failed logons within {} s",
            self.subject,
            self.lockout.as_secs(),
            self.failures,
            self.window.as_secs()
        )
    }
}

#[derive(Debug, Default)]
struct Entry {
    /// Recent failures, oldest first. INVARIANT: at most `max_failures` entries.
    failures: VecDeque<Instant>,
    locked_until: Option<Instant>,
}

impl Entry {
    fn locked_at(&self, now: Instant) -> Option<Duration> {
        self.locked_until
            .filter(|until| now < *until)
            .map(|until| until - now)
    }

    /// Nothing worth keeping at `now` (no lockout running, no failure in the window).
    fn idle(&self, now: Instant, window: Duration) -> bool {
        self.locked_at(now).is_none()
            && self
                .failures
                .back()
                .is_none_or(|t| now.saturating_duration_since(*t) >= window)
    }
}

/// Failure counts and lockouts per user name and per address, in memory.
#[derive(Debug)]
pub struct Throttle {
    limits: Mutex<AuthPolicy>,
    entries: Mutex<HashMap<Subject, Entry>>,
    /// Local failures and successes, for the other instances of the catalogue.
    outbox: Outbox,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(AuthPolicy::default())
    }
}

/// The throttle every front door of this process shares (see the module docs).
static PROCESS_THROTTLE: LazyLock<Arc<Throttle>> = LazyLock::new(|| Arc::new(Throttle::default()));

/// The process-wide [`Throttle`]. `Services` configures it from `[auth]` at start and on
/// every reload.
pub fn process_throttle() -> Arc<Throttle> {
    Arc::clone(&PROCESS_THROTTLE)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn user_key(user: &str) -> Subject {
    Subject::User(user.chars().take(MAX_KEY_LEN).collect())
}

impl Throttle {
    /// A throttle with no history and these limits.
    pub fn new(limits: AuthPolicy) -> Throttle {
        Throttle {
            limits: Mutex::new(limits),
            entries: Mutex::new(HashMap::new()),
            outbox: Outbox::default(),
        }
    }

    /// Takes new limits (a reload). Running lockouts keep their end.
    pub fn configure(&self, limits: AuthPolicy) {
        *lock(&self.limits) = limits;
    }

    /// `Ok` when `user` may try to log in from `ip` at `now`; `Err` while either is locked
    /// out. Checking counts nothing.
    pub fn check(&self, user: &str, ip: IpAddr, now: Instant) -> Result<(), Locked> {
        let entries = lock(&self.entries);
        for subject in [user_key(user), Subject::Address(ip)] {
            if let Some(remaining) = entries.get(&subject).and_then(|e| e.locked_at(now)) {
                return Err(Locked { subject, remaining });
            }
        }
        Ok(())
    }

    /// Counts one failed logon of `user` from `ip` at `now`. Returns the lockouts this failure
    /// started (none, the user's, the address's, or both), for the audit trail. A failure of
    /// a name or address already locked out is not counted.
    #[must_use = "each lockout started must be written to the audit trail"]
    pub fn record_failure(&self, user: &str, ip: IpAddr, now: Instant) -> Vec<Lockout> {
        self.outbox.note(DoorEventKind::Failure, user, Some(ip));
        self.count_failure(user, ip, now)
    }

    /// A failure another instance saw at `at` (on this process's clock): counted like a local
    /// one, but not noted for sharing again. Returns the lockouts it started.
    #[must_use = "each lockout started must be written to the audit trail"]
    pub fn record_remote_failure(&self, user: &str, ip: IpAddr, at: Instant) -> Vec<Lockout> {
        self.count_failure(user, ip, at)
    }

    /// A success another instance saw: the user's failures are forgotten here too.
    pub fn record_remote_success(&self, user: &str) {
        self.forget_failures(user);
    }

    /// The local failures and successes not yet shared.
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn count_failure(&self, user: &str, ip: IpAddr, now: Instant) -> Vec<Lockout> {
        let limits = *lock(&self.limits);
        let mut entries = lock(&self.entries);
        let mut started = Vec::new();
        for subject in [user_key(user), Subject::Address(ip)] {
            if !entries.contains_key(&subject) && entries.len() >= MAX_TRACKED {
                entries.retain(|_, e| !e.idle(now, limits.failure_window));
                if entries.len() >= MAX_TRACKED {
                    continue;
                }
            }
            let entry = entries.entry(subject.clone()).or_default();
            if entry.locked_at(now).is_some() {
                continue;
            }
            while entry
                .failures
                .front()
                .is_some_and(|t| now.saturating_duration_since(*t) >= limits.failure_window)
            {
                entry.failures.pop_front();
            }
            entry.failures.push_back(now);
            // Only the last `max_failures` matter.
            while entry.failures.len() > limits.max_failures as usize {
                entry.failures.pop_front();
            }
            if entry.failures.len() >= limits.max_failures as usize {
                entry.failures.clear();
                // The configuration caps `lockout` at 30 days, far from overflow; fail closed
                // (a lockout of the longest allowed length) should a clock ever be that late.
                entry.locked_until = now
                    .checked_add(limits.lockout)
                    .or_else(|| now.checked_add(policy::config::MAX_AUTH_DURATION));
                started.push(Lockout {
                    subject,
                    failures: limits.max_failures,
                    window: limits.failure_window,
                    lockout: limits.lockout,
                });
            }
        }
        started
    }

    /// A successful logon of `user`: their failures are forgotten (the address's are not, see
    /// the module docs).
    pub fn record_success(&self, user: &str, ip: IpAddr) {
        self.outbox.note(DoorEventKind::Success, user, Some(ip));
        self.forget_failures(user);
    }

    fn forget_failures(&self, user: &str) {
        let mut entries = lock(&self.entries);
        if let Some(e) = entries.get_mut(&user_key(user))
            && e.locked_until.is_none()
        {
            e.failures.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u32, window: u64, lockout: u64) -> AuthPolicy {
        let mut l = AuthPolicy::default();
        l.max_failures = max;
        l.failure_window = Duration::from_secs(window);
        l.lockout = Duration::from_secs(lockout);
        l
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 10, 11));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 10, 12));

    #[test]
    fn user_locked_after_n_failures_for_the_lockout() {
        let t = Throttle::new(limits(3, 60, 600));
        let t0 = Instant::now();
        // From different addresses: only the user name ties them together.
        assert!(t.record_failure("tanaka", A, t0).is_empty());
        assert!(t.record_failure("tanaka", B, t0).is_empty());
        assert!(t.check("tanaka", A, t0).is_ok());
        let started = t.record_failure("tanaka", "127.0.0.9".parse().unwrap(), t0);
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].subject, Subject::User("tanaka".into()));
        assert_eq!(
            started[0].to_string(),
            "user tanaka locked out for 600 s after 3 failed logons within 60 s"
        );
        let locked = t
            .check("tanaka", A, t0 + Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(locked.subject, Subject::User("tanaka".into()));
        assert_eq!(locked.remaining, Duration::from_secs(599));
        // Others are not locked; the lockout ends on time.
        assert!(t.check("suzuki", A, t0).is_ok());
        assert!(t.check("tanaka", A, t0 + Duration::from_secs(600)).is_ok());
    }

    #[test]
    fn address_locked_after_n_failures_with_any_names() {
        let t = Throttle::new(limits(3, 60, 600));
        let t0 = Instant::now();
        assert!(t.record_failure("a", A, t0).is_empty());
        assert!(t.record_failure("b", A, t0).is_empty());
        let started = t.record_failure("c", A, t0);
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].subject, Subject::Address(A));
        assert_eq!(
            t.check("tanaka", A, t0).unwrap_err().subject,
            Subject::Address(A)
        );
        assert!(t.check("tanaka", B, t0).is_ok());
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let t = Throttle::new(limits(3, 60, 600));
        let t0 = Instant::now();
        assert!(t.record_failure("u", A, t0).is_empty());
        assert!(
            t.record_failure("u", A, t0 + Duration::from_secs(30))
                .is_empty()
        );
        // The first is out of the window now: two in the window, no lockout.
        assert!(
            t.record_failure("u", A, t0 + Duration::from_secs(61))
                .is_empty()
        );
        assert!(t.check("u", A, t0 + Duration::from_secs(61)).is_ok());
        assert_eq!(
            t.record_failure("u", A, t0 + Duration::from_secs(62)).len(),
            2
        );
    }

    #[test]
    fn attempts_while_locked_neither_count_nor_extend_the_lockout() {
        let t = Throttle::new(limits(2, 60, 100));
        let t0 = Instant::now();
        let _ = t.record_failure("u", A, t0);
        assert_eq!(t.record_failure("u", A, t0).len(), 2);
        for s in 1..100 {
            assert!(
                t.record_failure("u", A, t0 + Duration::from_secs(s))
                    .is_empty()
            );
        }
        assert!(t.check("u", A, t0 + Duration::from_secs(100)).is_ok());
        // Counting starts afresh after the lockout.
        assert!(
            t.record_failure("u", A, t0 + Duration::from_secs(100))
                .is_empty()
        );
    }

    #[test]
    fn success_clears_the_user_but_not_the_address() {
        let t = Throttle::new(limits(3, 60, 600));
        let t0 = Instant::now();
        let _ = t.record_failure("u", A, t0);
        let _ = t.record_failure("u", A, t0);
        t.record_success("u", A);
        assert!(t.record_failure("u", B, t0).is_empty());
        // The address's two failures still count.
        let started = t.record_failure("v", A, t0);
        assert_eq!(started.len(), 1);
        assert_eq!(started[0].subject, Subject::Address(A));
        // A success does not lift a running lockout.
        let _ = t.record_failure("w", B, t0);
        let _ = t.record_failure("w", B, t0);
        let _ = t.record_failure("w", B, t0);
        t.record_success("w", B);
        assert!(t.check("w", "127.0.0.1".parse().unwrap(), t0).is_err());
    }

    #[test]
    fn configure_applies_new_limits() {
        let t = Throttle::new(limits(10, 60, 600));
        let t0 = Instant::now();
        t.configure(limits(1, 60, 600));
        assert_eq!(t.record_failure("u", A, t0).len(), 2);
    }

    #[test]
    fn long_names_share_one_capped_key() {
        let t = Throttle::new(limits(2, 60, 600));
        let t0 = Instant::now();
        let long = "x".repeat(10 * MAX_KEY_LEN);
        let _ = t.record_failure(&long, A, t0);
        let _ = t.record_failure(&format!("{long}y"), B, t0);
        assert!(t.check(&long, "127.0.0.1".parse().unwrap(), t0).is_err());
    }

    #[test]
    fn every_front_door_gets_the_same_process_throttle() {
        assert!(Arc::ptr_eq(&process_throttle(), &process_throttle()));
    }
}
