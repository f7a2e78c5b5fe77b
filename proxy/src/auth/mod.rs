//! Verification of the people who log in to Sekisho's front doors: argon2 passwords, SSH public
//! keys from the inventory, and the matrix card second factor.
//!
//! Nothing in here logs a password, a key or a card answer: callers get a yes/no only.

pub mod matrix_card;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use russh::keys::PublicKey;

/// Longest password accepted before hashing. A peer could otherwise make Sekisho hash megabytes
/// per attempt; no person types more than this.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// Checks `password` against an argon2 PHC string (`$argon2id$v=19$...`). A malformed hash
/// is a mismatch (fail closed). CPU-bound (tens of ms): call it from `spawn_blocking`.
pub fn verify_password(phc_hash: &str, password: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc_hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
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
