//! Server certificate pinning (trust on first use) for the server leg.
//!
//! rustls is given a verifier that checks the handshake signature against whatever
//! certificate the server presents; the certificate itself is then compared with the pin in
//! `DATA_DIR/rdp_pins.toml` before any RDP byte is sent over TLS. A first connection records the
//! pin; a different certificate later is a denial (`rdp.server-cert-changed`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use anyhow::{Context, Result};
use tokio_rustls::rustls;
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{DigitallySignedStruct, SignatureScheme};

/// Largest pins file read; each pin is one certificate in hex (a few KiB), and a bastion
/// has at most some thousands of targets.
const MAX_PINS_FILE: u64 = 16 * 1024 * 1024;

/// The outcome of comparing a server's certificate with its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    /// No pin existed; this certificate is now pinned.
    FirstUse,
    /// Same certificate as pinned.
    Match,
    /// A different certificate: refuse.
    Changed,
}

/// Accepts any certificate chain (it is pinned afterwards) but checks that the handshake was
/// signed by the presented certificate's key.
#[derive(Debug)]
pub struct DangerPinLaterVerifier {
    provider: Arc<CryptoProvider>,
}

impl DangerPinLaterVerifier {
    /// A verifier using `provider`'s signature algorithms.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        Self { provider }
    }
}

impl ServerCertVerifier for DangerPinLaterVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The rustls client configuration of the server leg.
pub fn client_config() -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DangerPinLaterVerifier::new(provider)))
        .with_no_client_auth();
    Ok(config)
}

fn file_lock() -> &'static Mutex<()> {
    static LOCK: OnceLock<Mutex<()>> = OnceLock::new();
    LOCK.get_or_init(|| Mutex::new(()))
}

/// The pins file under the data directory.
pub fn pins_path(data_dir: &Path) -> PathBuf {
    data_dir.join("rdp_pins.toml")
}

/// Compares `cert` with the pin of `target`, recording it on first use.
pub fn check_and_pin(path: &Path, target: &str, cert: &[u8]) -> Result<PinCheck> {
    let _guard = match file_lock().lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let mut pins = read_pins(path)?;
    let hex = to_hex(cert);
    match pins.get(target) {
        Some(p) if *p == hex => Ok(PinCheck::Match),
        Some(_) => Ok(PinCheck::Changed),
        None => {
            pins.insert(target.to_owned(), hex);
            write_pins(path, &pins)?;
            Ok(PinCheck::FirstUse)
        }
    }
}

fn read_pins(path: &Path) -> Result<BTreeMap<String, String>> {
    let mut pins = BTreeMap::new();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(pins),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    if meta.len() > MAX_PINS_FILE {
        anyhow::bail!("{} is larger than {MAX_PINS_FILE} bytes", path.display());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let k = k.trim().trim_matches('"');
            let v = v.trim().trim_matches('"');
            pins.insert(k.to_owned(), v.to_owned());
        }
    }
    Ok(pins)
}

fn write_pins(path: &Path, pins: &BTreeMap<String, String>) -> Result<()> {
    let mut text =
        String::from("# Server certificates of RDP targets, pinned on first use (DER, hex).\n");
    for (k, v) in pins {
        let _ = writeln!(text, "\"{k}\" = \"{v}\"");
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_use_then_match_then_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = pins_path(dir.path());
        assert_eq!(
            check_and_pin(&path, "db-phys01", b"cert-a").unwrap(),
            PinCheck::FirstUse
        );
        assert_eq!(
            check_and_pin(&path, "db-phys01", b"cert-a").unwrap(),
            PinCheck::Match
        );
        assert_eq!(
            check_and_pin(&path, "db-phys01", b"cert-b").unwrap(),
            PinCheck::Changed
        );
        assert_eq!(
            check_and_pin(&path, "web01", b"cert-b").unwrap(),
            PinCheck::FirstUse
        );
    }
}
