//! One trust-on-first-use store for the keys of every target Sekisho dials: RDP servers' TLS
//! certificates and consoles' SSH host keys.
//!
//! The pins live in the catalogue (see `recorder::catalogue::pins`), keyed by kind and the
//! `host:port` dialled, so every instance sharing the catalogue gives the same answer. A
//! catalogue that cannot be read is a refusal: a key that was never compared is not trusted.
//!
//! Instances before this store kept pins in two files under the data directory
//! (`rdp_pins.toml`, keyed by target name, and an OpenSSH `known_hosts`);
//! [`import_legacy_files`] moves them into the catalogue once, at start.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::Utc;
use policy::Inventory;
use recorder::catalogue::{Catalogue, InstanceId, PinCheck, PinKind, Presented};
use russh::keys::{HashAlg, PublicKey};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

/// The pins of one instance, in its catalogue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PinStore {
    catalogue: Catalogue,
    instance: InstanceId,
}

impl PinStore {
    /// Pins kept in `catalogue`, written as `instance`.
    pub fn new(catalogue: Catalogue, instance: InstanceId) -> Self {
        Self {
            catalogue,
            instance,
        }
    }

    /// Compares an RDP server's certificate (DER) at `endpoint` with its pin.
    pub async fn check_certificate(
        &self,
        endpoint: &str,
        target: &str,
        der: &[u8],
    ) -> Result<PinCheck> {
        let fingerprint = certificate_fingerprint(der);
        self.check(
            PinKind::RdpCertificate,
            endpoint,
            Some(target),
            &fingerprint,
        )
        .await
    }

    /// Compares a console's SSH host key at `endpoint` with its pin.
    pub async fn check_host_key(&self, endpoint: &str, key: &PublicKey) -> Result<PinCheck> {
        let fingerprint = host_key_fingerprint(key);
        self.check(PinKind::SshHostKey, endpoint, None, &fingerprint)
            .await
    }

    async fn check(
        &self,
        kind: PinKind,
        endpoint: &str,
        target: Option<&str>,
        fingerprint: &str,
    ) -> Result<PinCheck> {
        let presented = Presented {
            kind,
            endpoint,
            fingerprint,
            target,
        };
        let check = self
            .catalogue
            .check_or_pin(&presented, &self.instance, Utc::now())
            .await
            .with_context(|| format!("cannot check the pinned {kind} of {endpoint}"))?;
        match &check {
            PinCheck::FirstUse => {
                info!(%kind, %endpoint, %fingerprint, "Pinned on first use");
            }
            PinCheck::Match => {}
            PinCheck::Changed { pinned } => {
                warn!(%kind, %endpoint, presented = %fingerprint, %pinned, "Key differs from its pin; refusing");
            }
        }
        Ok(check)
    }
}

/// `host:port` as a pin's endpoint.
pub fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A certificate's SHA-256 fingerprint as `openssl x509 -fingerprint -sha256` prints it
/// (colon-separated upper-case hex), prefixed `SHA256:`.
pub fn certificate_fingerprint(der: &[u8]) -> String {
    let digest = Sha256::digest(der);
    let mut out = String::from("SHA256:");
    for (i, b) in digest.iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{b:02X}");
    }
    out
}

/// A host key's fingerprint as `ssh-keygen -l` prints it (`SHA256:` and unpadded base64).
pub fn host_key_fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// Largest legacy pin file read: each line is one key, a bastion has some thousands of targets.
const MAX_LEGACY_FILE: u64 = 16 * 1024 * 1024;

/// The legacy RDP pins file (target name = DER certificate in hex).
fn legacy_rdp_pins(data_dir: &Path) -> PathBuf {
    data_dir.join("rdp_pins.toml")
}

/// The legacy SSH pins file (OpenSSH `known_hosts`, `[host]:port key`).
fn legacy_known_hosts(data_dir: &Path) -> PathBuf {
    data_dir.join("known_hosts")
}

/// Moves the pins of the legacy files under `data_dir` into the catalogue, then renames each
/// file to `NAME.imported` so it is read once. A pin that conflicts with one already in the
/// catalogue keeps the catalogue's (the shared answer) and is logged. An RDP pin whose target
/// is no longer in `inventory` is dropped with a warning: its endpoint cannot be known, and the
/// next dial of a re-added target pins afresh.
pub async fn import_legacy_files(
    store: &PinStore,
    data_dir: &Path,
    inventory: &Inventory,
) -> Result<usize> {
    let mut imported = 0;
    let rdp = legacy_rdp_pins(data_dir);
    if let Some(text) = read_legacy(&rdp)? {
        for (target, hex) in parse_rdp_pins(&text) {
            let Some(t) = inventory.target(&target) else {
                warn!(%target, file = %rdp.display(), "Pinned RDP certificate of a target no longer configured; not imported");
                continue;
            };
            let Ok(der) = hex::decode(hex) else {
                warn!(%target, file = %rdp.display(), "Unreadable pinned certificate; not imported");
                continue;
            };
            let ep = endpoint(&t.address.to_string(), t.rdp_port);
            report(store.check_certificate(&ep, &target, &der).await?, &ep);
            imported += 1;
        }
        done_with(&rdp)?;
    }
    let ssh = legacy_known_hosts(data_dir);
    if let Some(text) = read_legacy(&ssh)? {
        for line in text.lines() {
            let Some((name, key)) = line.split_once(' ') else {
                continue;
            };
            let Some(ep) = known_hosts_endpoint(name) else {
                warn!(entry = %name, file = %ssh.display(), "Unreadable known_hosts entry; not imported");
                continue;
            };
            let Ok(key) = PublicKey::from_openssh(key.trim()) else {
                warn!(entry = %name, file = %ssh.display(), "Unreadable host key; not imported");
                continue;
            };
            report(store.check_host_key(&ep, &key).await?, &ep);
            imported += 1;
        }
        done_with(&ssh)?;
    }
    if imported > 0 {
        info!(
            pins = imported,
            "Imported pins from the data directory into the catalogue"
        );
    }
    Ok(imported)
}

fn report(check: PinCheck, endpoint: &str) {
    if let PinCheck::Changed { pinned } = check {
        warn!(%endpoint, %pinned, "A legacy pin conflicts with the catalogue's; the catalogue's is kept");
    }
}

fn read_legacy(path: &Path) -> Result<Option<String>> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > MAX_LEGACY_FILE => {
            anyhow::bail!("{} is too large to be a pin file", path.display())
        }
        Ok(_) => std::fs::read_to_string(path)
            .map(Some)
            .with_context(|| format!("cannot read {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn done_with(path: &Path) -> Result<()> {
    let mut to = path.as_os_str().to_owned();
    to.push(".imported");
    std::fs::rename(path, &to).with_context(|| format!("cannot rename {}", path.display()))
}

/// `target = "hex"` lines; comments and blank lines skipped.
fn parse_rdp_pins(text: &str) -> Vec<(String, &str)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.split_once('=')?;
            let k = k.trim().trim_matches('"');
            let v = v.trim().trim_matches('"');
            Some((k.to_owned(), v))
        })
        .collect()
}

/// `[host]:port` (or a bare `host`, port 22) as an endpoint.
fn known_hosts_endpoint(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        return Some(endpoint(host, port.parse().ok()?));
    }
    (!name.is_empty() && !name.contains(',')).then(|| endpoint(name, 22))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_fingerprint_is_openssl_shaped() {
        // SHA-256 of the empty input.
        assert_eq!(
            certificate_fingerprint(b""),
            "SHA256:E3:B0:C4:42:98:FC:1C:14:9A:FB:F4:C8:99:6F:B9:24:27:AE:41:E4:64:9B:93:4C:A4:95:99:1B:78:52:B8:55"
        );
    }

    #[test]
    fn endpoints_bracket_ipv6_only() {
        assert_eq!(endpoint("127.0.20.11", 22), "127.0.20.11:22");
        assert_eq!(endpoint("::1", 22), "[::1]:22");
        assert_eq!(
            endpoint("kvm01.pref.example", 2222),
            "kvm01.pref.example:2222"
        );
    }

    #[test]
    fn legacy_known_hosts_names() {
        assert_eq!(
            known_hosts_endpoint("[127.0.0.1]:2222").as_deref(),
            Some("127.0.0.1:2222")
        );
        assert_eq!(known_hosts_endpoint("kvm01").as_deref(), Some("kvm01:22"));
        assert_eq!(
            known_hosts_endpoint("[::1]:22").as_deref(),
            Some("[::1]:22")
        );
        assert_eq!(known_hosts_endpoint("[broken"), None);
        assert_eq!(known_hosts_endpoint("a,b"), None);
    }

    #[test]
    fn legacy_rdp_pins_lines() {
        let text = "# comment\n\"db-phys01\" = \"30820122\"\nweb01 = \"ab\"\n\n";
        assert_eq!(
            parse_rdp_pins(text),
            vec![
                ("db-phys01".to_owned(), "30820122"),
                ("web01".to_owned(), "ab")
            ]
        );
    }

    const INVENTORY: &str = r#"
[[vdi_pool]]
name = "vdi-internet"
path = "internet-vpn"
networks = ["127.0.10.0/24"]

[zones]
business = ["internet-vpn"]

[[target]]
name = "db-phys01"
address = "127.0.20.21"
kind = "physical"
zone = "business"
"#;

    const KEY_A: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDR3zNuxPoloAlApNaiynbruslOsDwaEPN/suAH+DF1N";
    const KEY_B: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDwSr/AmLnGu/fhdqI8YA5uyHODpzJF9J0U2PGvXOIt1";

    #[tokio::test]
    async fn legacy_files_move_into_the_catalogue_once_and_keep_refusing_a_changed_key() {
        let dir = tempfile::tempdir().unwrap();
        let catalogue = Catalogue::connect("sqlite::memory:").await.unwrap();
        let store = PinStore::new(catalogue.clone(), InstanceId::new("a").unwrap());
        let inventory = Inventory::from_toml(INVENTORY, "test.toml").unwrap();
        std::fs::write(
            dir.path().join("rdp_pins.toml"),
            "# pins\n\"db-phys01\" = \"0102\"\n\"gone01\" = \"0304\"\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("known_hosts"),
            format!("[127.0.0.1]:2222 {KEY_A}\ngarbage\n"),
        )
        .unwrap();

        let imported = import_legacy_files(&store, dir.path(), &inventory)
            .await
            .unwrap();
        assert_eq!(
            imported, 2,
            "the pin of a target no longer configured is dropped"
        );
        assert!(dir.path().join("rdp_pins.toml.imported").exists());
        assert!(dir.path().join("known_hosts.imported").exists());
        assert!(!dir.path().join("known_hosts").exists());
        // Read once: a second start imports nothing.
        assert_eq!(
            import_legacy_files(&store, dir.path(), &inventory)
                .await
                .unwrap(),
            0
        );

        let a = PublicKey::from_openssh(KEY_A).unwrap();
        let b = PublicKey::from_openssh(KEY_B).unwrap();
        assert_eq!(
            store.check_host_key("127.0.0.1:2222", &a).await.unwrap(),
            PinCheck::Match
        );
        assert!(matches!(
            store.check_host_key("127.0.0.1:2222", &b).await.unwrap(),
            PinCheck::Changed { pinned } if pinned == host_key_fingerprint(&a)
        ));
        // The RDP pin moved from the target's name to its endpoint.
        assert_eq!(
            store
                .check_certificate("127.0.20.21:3389", "db-phys01", &[1, 2])
                .await
                .unwrap(),
            PinCheck::Match
        );
        assert!(matches!(
            store
                .check_certificate("127.0.20.21:3389", "db-phys01", &[9])
                .await
                .unwrap(),
            PinCheck::Changed { .. }
        ));
    }
}
