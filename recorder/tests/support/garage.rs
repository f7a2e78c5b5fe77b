//! The real Garage of `scripts/garage-test-server` (no fake of S3): its address and keys come
//! from the `SEKISHO_TEST_S3_*` variables that script prints. Missing, a test fails, unless
//! `SEKISHO_SKIP_PEERS=1` (then it is skipped and says so).

#![allow(dead_code, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use recorder::storage::{S3Config, S3Store, SecretKey};

pub struct Garage {
    pub endpoint: String,
    pub region: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

/// The test Garage, or `None` (skip) when it is not running and peers may be skipped.
pub fn garage() -> Option<Garage> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match (
        var("SEKISHO_TEST_S3_ENDPOINT"),
        var("SEKISHO_TEST_S3_BUCKET"),
        var("SEKISHO_TEST_S3_KEY_ID"),
        var("SEKISHO_TEST_S3_SECRET"),
    ) {
        (Some(endpoint), Some(bucket), Some(key_id), Some(secret)) => Some(Garage {
            endpoint,
            region: var("SEKISHO_TEST_S3_REGION").unwrap_or_else(|| "garage".into()),
            bucket,
            key_id,
            secret,
        }),
        _ if std::env::var("SEKISHO_SKIP_PEERS").as_deref() == Ok("1") => {
            eprintln!("SKIPPED: no Garage (eval \"$(scripts/garage-test-server start)\")");
            None
        }
        _ => panic!(
            "no Garage for the object storage tests: eval \"$(scripts/garage-test-server start)\" (or SEKISHO_SKIP_PEERS=1)"
        ),
    }
}

impl Garage {
    /// A store on a prefix of its own (tests share the bucket) with its own spool.
    pub fn store(&self, prefix: &str, spool: &Path, ship: Duration, limit: u64) -> S3Store {
        S3Store::open(S3Config {
            bucket: self.bucket.clone(),
            prefix: prefix.to_owned(),
            endpoint: Some(self.endpoint.clone()),
            region: self.region.clone(),
            path_style: true,
            access_key_id: self.key_id.clone(),
            secret_access_key: SecretKey::new(self.secret.clone()),
            spool: spool.to_owned(),
            ship_interval: ship,
            spool_limit: limit,
        })
        .expect("store configured")
    }

    /// Runs `scripts/garage-test-server ARG` (pause, resume).
    pub fn control(&self, arg: &str) {
        let script =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/garage-test-server");
        let status = std::process::Command::new(script)
            .arg(arg)
            .status()
            .expect("garage-test-server runs");
        assert!(status.success(), "garage-test-server {arg} failed");
    }
}

/// A prefix no other test run uses.
pub fn unique_prefix(test: &str) -> String {
    format!("test/{test}-{}", uuid::Uuid::now_v7())
}
