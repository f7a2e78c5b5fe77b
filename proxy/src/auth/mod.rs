//! Verification of the people who log in to Sekisho's front doors: argon2 passwords, SSH public
//! keys from the inventory, and the matrix card second factor; and the state every door shares
//! about logons: [`throttle`] (failed logons and lockouts per user name and address) and
//! [`second_factor`] (who passed the matrix card, from where, when).
//!
//! Nothing in here logs a password, a key or a card answer: callers get a yes/no only.

pub mod matrix_card;
pub mod outbox;
pub mod second_factor;
pub mod throttle;

use std::sync::{Condvar, LazyLock, Mutex, MutexGuard};

use argon2::password_hash::Output;
use argon2::{Algorithm, Argon2, Block, Params, PasswordHash, Version};
use russh::keys::PublicKey;

/// Longest password accepted before hashing. A peer could otherwise make Sekisho hash megabytes
/// per attempt; no person types more than this.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Checks `password` against an argon2 PHC string (`$argon2id$v=19$...`). A malformed hash
/// is a mismatch (fail closed). CPU-bound (tens of ms): call it from `spawn_blocking`.
///
/// The argon2 working memory (19 MiB for the default parameters) comes from a small pool
/// shared by every front door, and at most one check per core runs at a time. Allocating it
/// per check let the allocator keep one such block per thread that ever checked a password,
/// which made hundreds of logins cost hundreds of MiB that were never given back.
pub fn verify_password(phc_hash: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc_hash) else {
        return false;
    };
    matches_hash(&parsed, password.as_bytes()).unwrap_or(false)
}

/// `None` when the PHC string is not a usable argon2 hash.
fn matches_hash(parsed: &PasswordHash<'_>, password: &[u8]) -> Option<bool> {
    let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
    let version = match parsed.version {
        Some(v) => Version::try_from(v).ok()?,
        None => Version::default(),
    };
    let params = Params::try_from(parsed).ok()?;
    let expected = parsed.hash?;
    let mut salt_buf = [0u8; 64];
    let salt = parsed.salt?.decode_b64(&mut salt_buf).ok()?;
    let mut computed = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let mut memory = WORKING_MEMORY.take(params.block_count());
    let hashed = argon2.hash_password_into_with_memory(
        password,
        salt,
        &mut computed,
        memory.blocks.as_mut_slice(),
    );
    hashed.ok()?;
    // `Output`'s equality is constant-time.
    Some(Output::new(&computed).ok()? == expected)
}

/// Argon2 working memory, lent to one password check at a time.
struct WorkingMemoryPool {
    state: Mutex<PoolState>,
    returned: Condvar,
    limit: usize,
}

struct PoolState {
    free: Vec<Vec<Block>>,
    lent: usize,
}

static WORKING_MEMORY: LazyLock<WorkingMemoryPool> = LazyLock::new(|| WorkingMemoryPool {
    state: Mutex::new(PoolState {
        free: Vec::new(),
        lent: 0,
    }),
    returned: Condvar::new(),
    limit: std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8)),
});

impl WorkingMemoryPool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until a block of memory is free (at most `limit` are ever lent out).
    fn take(&self, blocks: usize) -> LentMemory<'_> {
        let mut state = self.lock();
        while state.free.is_empty() && state.lent >= self.limit {
            state = self
                .returned
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        let mut memory = state.free.pop().unwrap_or_default();
        state.lent += 1;
        drop(state);
        memory.resize(blocks, Block::default());
        LentMemory {
            pool: self,
            blocks: memory,
        }
    }
}

struct LentMemory<'a> {
    pool: &'a WorkingMemoryPool,
    blocks: Vec<Block>,
}

impl Drop for LentMemory<'_> {
    fn drop(&mut self) {
        // The blocks hold values derived from a password: clear them before they wait for
        // the next check.
        self.blocks.fill(Block::default());
        let mut state = self.pool.lock();
        state.lent = state.lent.saturating_sub(1);
        state.free.push(std::mem::take(&mut self.blocks));
        drop(state);
        self.pool.returned.notify_one();
    }
}

/// Hashes `password` with argon2id and a random salt (PHC string), for tests and `sekisho passwd`.
pub fn hash_password(password: &str) -> Result<String, argon2::password_hash::Error> {
    use argon2::PasswordHasher;
    use argon2::password_hash::SaltString;
    use rand::RngCore as _;
    let mut raw = [0u8; 16];
    rand::rng().fill_bytes(&mut raw);
    let salt = SaltString::encode_b64(&raw)?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// True when `key` is one of `authorized` (OpenSSH `authorized_keys` lines: `TYPE BASE64
/// [comment]`). Lines that do not parse are skipped: the inventory check reports them.
pub fn key_is_authorized(authorized: &[String], key: &PublicKey) -> bool {
    authorized.iter().any(|line| {
        PublicKey::from_openssh(line.trim()).is_ok_and(|k| k.key_data() == key.key_data())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHANGE_ME: &str = "$argon2id$v=19$m=19456,t=2,p=1$IvBzMLDZyFbDrkZ3n1bk7w$8NW46C5ZNmNfiHNU+fwLLsnh9hyP7iNV8iEC4MEm5fU";

    #[test]
    fn example_hash_accepts_its_password_only() {
        assert!(verify_password(CHANGE_ME, "change-me-now"));
        assert!(!verify_password(CHANGE_ME, "change-me-later"));
        assert!(!verify_password("not a hash", "change-me-now"));
        assert!(!verify_password(
            CHANGE_ME,
            &"x".repeat(MAX_PASSWORD_LEN + 1)
        ));
    }

    #[test]
    fn hash_round_trip() {
        let h = hash_password("s3cret").unwrap();
        assert!(verify_password(&h, "s3cret"));
        assert!(!verify_password(&h, "s3cre"));
    }

    #[test]
    fn hashes_with_other_algorithms_and_costs_verify_through_the_pool() {
        use argon2::PasswordHasher;
        use argon2::password_hash::SaltString;
        for (algorithm, m) in [
            (Algorithm::Argon2i, 8192),
            (Algorithm::Argon2d, 64),
            (Algorithm::Argon2id, 32768),
        ] {
            let params = Params::new(m, 2, 1, Some(24)).unwrap();
            let argon2 = Argon2::new(algorithm, Version::V0x13, params);
            let salt = SaltString::encode_b64(b"sixteen byte slt").unwrap();
            let phc = argon2
                .hash_password(b"pass phrase", &salt)
                .unwrap()
                .to_string();
            assert!(verify_password(&phc, "pass phrase"), "{phc}");
            assert!(!verify_password(&phc, "pass phrasE"), "{phc}");
        }
    }

    #[test]
    fn concurrent_checks_share_a_bounded_pool() {
        let threads: Vec<_> = (0..12)
            .map(|i| {
                std::thread::spawn(move || {
                    let password = if i % 2 == 0 { "change-me-now" } else { "wrong" };
                    verify_password(CHANGE_ME, password) == (i % 2 == 0)
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().unwrap());
        }
        // Other tests may be checking passwords at the same time: only the bound is certain.
        let state = WORKING_MEMORY.lock();
        assert!(state.lent + state.free.len() <= WORKING_MEMORY.limit);
    }

    #[test]
    fn authorized_keys_match_by_key_data() {
        let a =
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDR3zNuxPoloAlApNaiynbruslOsDwaEPN/suAH+DF1N a@b";
        let b = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDwSr/AmLnGu/fhdqI8YA5uyHODpzJF9J0U2PGvXOIt1";
        let key = PublicKey::from_openssh(a).unwrap();
        assert!(key_is_authorized(&[b.to_owned(), a.to_owned()], &key));
        assert!(!key_is_authorized(
            &[b.to_owned(), "garbage".to_owned()],
            &key
        ));
    }
}
