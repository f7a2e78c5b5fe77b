//! The recording store of a configuration (`storage.recordings`: a directory, or an
//! S3-compatible object store through a local spool), and reading a recording wherever the
//! catalogue says it is: a file path, or an `s3://` URL of this configuration's store.

use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use policy::{Recordings as Configured, S3Recordings};
use recorder::storage::{LocalDir, S3Config, S3Store, SecretKey, Storage};

/// Largest recording read whole into memory (verified, downloaded or played by the web UI,
/// exported from the object store, indexed for typed text): bigger ones are refused rather
/// than risking the process's memory (the CLI reads local files of any size).
pub const MAX_RECORDING_BYTES: u64 = 1 << 30;

/// Where this instance writes recordings, and how it reads any catalogued location.
#[derive(Clone)]
pub struct Recordings {
    /// Where new recordings go.
    writer: Arc<dyn Storage>,
    /// Reads file paths (any directory: a path is its own location).
    local: LocalDir,
    /// The object store, when `storage.recordings` is an `s3://` URL.
    s3: Option<S3Store>,
}

impl std::fmt::Debug for Recordings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recordings")
            .field("local", &self.local.root())
            .field("s3", &self.s3.as_ref().map(S3Store::url))
            .finish()
    }
}

impl From<LocalDir> for Recordings {
    fn from(dir: LocalDir) -> Self {
        Recordings {
            writer: Arc::new(dir.clone()),
            local: dir,
            s3: None,
        }
    }
}

impl Recordings {
    /// The store of `storage`. An object store needs the secrets file's `[s3]` keys; it is
    /// configured, not contacted (a store that is down at start only makes recordings spool).
    pub fn open(storage: &policy::Storage, secrets: Option<&policy::Secrets>) -> Result<Self> {
        match &storage.recordings {
            Configured::Local(dir) => Ok(LocalDir::new(dir.clone()).into()),
            Configured::S3(s3) => {
                let keys = secrets.and_then(|s| s.s3()).with_context(|| {
                    format!(
                        "storage.recordings is {}, but the secrets file {} has no [s3] access_key_id and secret_access_key",
                        storage.recordings,
                        storage.secrets.display()
                    )
                })?;
                let store = S3Store::open(s3_config(s3, keys)).with_context(|| {
                    format!("cannot open the object store {}", storage.recordings)
                })?;
                Ok(Recordings {
                    writer: Arc::new(store.clone()),
                    local: LocalDir::new("."),
                    s3: Some(store),
                })
            }
            other => bail!("unsupported storage.recordings {other}"),
        }
    }

    /// Where new recordings are written.
    pub fn store(&self) -> &dyn Storage {
        self.writer.as_ref()
    }

    /// The object store, if recordings go to one.
    pub fn s3(&self) -> Option<&S3Store> {
        self.s3.as_ref()
    }

    /// The store that holds `location` (a path, or a URL of this configuration's store).
    pub fn reader(&self, location: &str) -> Result<&dyn Storage> {
        if location.starts_with("s3://") {
            return match &self.s3 {
                Some(s3) if s3.owns(location) => Ok(s3),
                Some(s3) => Err(anyhow!(
                    "{location} is not in this configuration's object store ({})",
                    s3.url()
                )),
                None => Err(anyhow!(
                    "{location} is in an object store, but this configuration's storage.recordings is a directory"
                )),
            };
        }
        if location.contains("://") {
            bail!("{location}: unsupported recording location");
        }
        Ok(&self.local)
    }

    /// Seals the recording at `location` of a session whose instance died (the takeover by
    /// another instance): from the segments that reached the object store, signed with `key`
    /// (this instance's). The result goes to [`crate::recovery::record_interruption`]. A local
    /// path is refused: another host's disk is not readable from here.
    pub async fn seal_abandoned(
        &self,
        location: &str,
        key: &recorder::RecordingKey,
    ) -> crate::recovery::Sealed {
        match &self.s3 {
            Some(s3) if s3.owns(location) => s3.seal_from_store(location, key).await,
            _ => Err(recorder::SealError::Io(format!(
                "{location} is not in this instance's object store: only its own host can seal it"
            ))),
        }
    }

    /// Reads a whole recording, refusing one larger than `max` bytes (the players decode from
    /// memory; the cap keeps a huge recording from taking it all).
    pub async fn read(&self, location: &str, max: u64) -> Result<Vec<u8>> {
        let store = self.reader(location)?;
        let size = store
            .size(location)
            .await
            .with_context(|| format!("cannot read the recording {location}"))?;
        if size > max {
            bail!(
                "the recording {location} is {size} bytes, more than the {max} this command reads"
            );
        }
        store
            .read(location)
            .await
            .with_context(|| format!("cannot read the recording {location}"))
    }
}

fn s3_config(s3: &S3Recordings, keys: &policy::S3Keys) -> S3Config {
    S3Config {
        bucket: s3.bucket.clone(),
        prefix: s3.prefix.clone(),
        endpoint: s3.endpoint.clone(),
        region: s3.region.clone(),
        path_style: s3.path_style,
        access_key_id: keys.access_key_id.clone(),
        secret_access_key: SecretKey::new(keys.secret_access_key.expose().clone()),
        spool: s3.spool.clone(),
        ship_interval: s3.ship_interval,
        spool_limit: s3.spool_limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_go_to_the_store_that_holds_them() {
        let r: Recordings = LocalDir::new("/tmp/x").into();
        assert!(r.reader("/srv/rec/2025/01/01/a.skrec").is_ok());
        let e = r.reader("s3://rec/a.skrec").err().unwrap().to_string();
        assert!(e.contains("storage.recordings is a directory"), "{e}");
        assert!(r.reader("gs://rec/a.skrec").is_err());
    }

    #[test]
    fn s3_needs_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let inv = policy::Inventory::from_toml(
            &format!(
                "[storage]\nrecordings = \"s3://rec/p\"\n[storage.s3]\nendpoint = \"http://127.0.0.1:1\"\nspool = \"{}\"\n",
                dir.path().join("spool").display()
            ),
            "s.toml",
        )
        .unwrap();
        let e = Recordings::open(inv.storage(), None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("has no [s3] access_key_id"), "{e}");
        let secrets = policy::Secrets::from_toml(
            "[s3]\naccess_key_id = \"GK1\"\nsecret_access_key = \"x\"\n",
            "secrets.toml",
        )
        .unwrap();
        let r = Recordings::open(inv.storage(), Some(&secrets)).unwrap();
        assert!(r.s3().is_some());
        assert!(r.reader("s3://rec/p/2025/01/01/a.skrec").is_ok());
        assert!(r.reader("s3://rec/q/a.skrec").is_err());
    }
}
