//! The instance's ed25519 recording key (`storage.signing_key`): load or create it, and show
//! its public half to auditors.
//!
//! The key file holds the 32-byte secret seed as 64 lowercase hex digits and a newline. It is
//! created with mode 0600 (its directory with 0700 when missing) and refused when it is
//! readable by group or others, like the secrets file.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

pub use ed25519_dalek::{SigningKey, VerifyingKey};

/// Why the key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Reading, creating or writing the file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file does not hold a key in the expected form.
    #[error("key file {path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong (never the key material).
        reason: &'static str,
    },
    /// The file is readable by group or others.
    #[error("key file {path} is readable by others (mode {mode:o}); chmod 600 it")]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its mode bits.
        mode: u32,
    },
    /// The OS random generator failed.
    #[error("random generator failed: {0}")]
    Random(String),
    /// A public key given as text could not be parsed.
    #[error("invalid public key: {0}")]
    InvalidPublicKey(&'static str),
}

/// A loaded signing key; `Debug` never prints the secret.
#[derive(Clone)]
pub struct RecordingKey {
    key: SigningKey,
}

impl fmt::Debug for RecordingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordingKey")
            .field("public", &public_key_hex(&self.key.verifying_key()))
            .field("secret", &"<secret>")
            .finish()
    }
}

impl RecordingKey {
    /// Wraps a key.
    pub fn new(key: SigningKey) -> Self {
        RecordingKey { key }
    }

    /// A fresh key from the OS random generator.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(RecordingKey {
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The signing half.
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    /// The public half.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Loads the key at `path`, or creates one there (mode 0600, parent directories 0700) if the
/// file does not exist. Returns the key and whether it was created.
pub fn load_or_create(path: &Path) -> Result<(RecordingKey, bool), KeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            check_permissions(path)?;
            Ok((parse_key_file(path, &text)?, false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = RecordingKey::generate()?;
            write_new_key(path, &key)?;
            Ok((key, true))
        }
        Err(e) => Err(io(path)(e)),
    }
}

/// Loads an existing key file (no creation).
pub fn load(path: &Path) -> Result<RecordingKey, KeyError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    check_permissions(path)?;
    parse_key_file(path, &text)
}

#[cfg(unix)]
fn check_permissions(path: &Path) -> Result<(), KeyError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(io(path))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_permissions(_path: &Path) -> Result<(), KeyError> {
    Ok(())
}

fn parse_key_file(path: &Path, text: &str) -> Result<RecordingKey, KeyError> {
    let malformed = |reason| KeyError::Malformed {
        path: path.to_path_buf(),
        reason,
    };
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| malformed("no key"))?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(line, &mut seed).map_err(|_| malformed("expected 64 hex digits"))?;
    Ok(RecordingKey::new(SigningKey::from_bytes(&seed)))
}

fn write_new_key(path: &Path, key: &RecordingKey) -> Result<(), KeyError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        let mut b = std::fs::DirBuilder::new();
        b.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            b.mode(0o700);
        }
        b.create(dir).map_err(io(path))?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(io(path))?;
    let text = format!(
        "# Sekisho recording signing key (ed25519 seed). Public key: {}\n{}\n",
        public_key_hex(&key.verifying_key()),
        hex::encode(key.key.to_bytes())
    );
    f.write_all(text.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))?;
    Ok(())
}

/// The public key as 64 lowercase hex digits (what `--trusted-key` style options accept).
pub fn public_key_hex(key: &VerifyingKey) -> String {
    hex::encode(key.to_bytes())
}

/// A short fingerprint for people: `SK:` and the first 16 bytes of BLAKE3(public key) in hex,
/// in groups of four digits.
pub fn fingerprint(key: &VerifyingKey) -> String {
    fingerprint_bytes(&key.to_bytes())
}

/// [`fingerprint`] of raw public key bytes (as stored in a trailer).
pub fn fingerprint_bytes(key: &[u8; 32]) -> String {
    let h = blake3::hash(key);
    let hexed = hex::encode(h.as_bytes().get(..16).unwrap_or_default());
    let groups: Vec<&str> = hexed
        .as_bytes()
        .chunks(4)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!("SK:{}", groups.join(":"))
}

/// Parses a public key given as 64 hex digits.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, KeyError> {
    let mut b = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut b)
        .map_err(|_| KeyError::InvalidPublicKey("expected 64 hex digits"))?;
    VerifyingKey::from_bytes(&b).map_err(|_| KeyError::InvalidPublicKey("not an ed25519 point"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_same_key_with_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/sub/signing.key");
        let (k1, created) = load_or_create(&path).unwrap();
        assert!(created);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let (k2, created) = load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(k1.verifying_key(), k2.verifying_key());
        let shown = format!("{k1:?}");
        assert!(shown.contains("<secret>"));
        assert!(!shown.contains(&hex::encode(k1.signing_key().to_bytes())));
    }

    #[cfg(unix)]
    #[test]
    fn world_readable_key_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        load_or_create(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            load_or_create(&path),
            Err(KeyError::Permissions { .. })
        ));
    }

    #[test]
    fn public_key_text_round_trip() {
        let k = RecordingKey::new(SigningKey::from_bytes(&[5; 32]));
        let vk = k.verifying_key();
        assert_eq!(parse_public_key(&public_key_hex(&vk)).unwrap(), vk);
        let fp = fingerprint(&vk);
        assert!(fp.starts_with("SK:"));
        assert_eq!(fp.len(), 3 + 32 + 7);
        assert!(parse_public_key("zz").is_err());
    }
}
