//! Sekisho's TLS identity toward clients: loaded from `tls.cert`/`tls.key`, or created
//! self-signed on first start so that a fresh install works (administrators replace it with a
//! certificate from their CA, which contractors' clients then trust).

use std::io::BufReader;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tracing::info;

/// Loads the certificate and key, creating a self-signed pair when both are missing.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    if !cert.exists() && !key.exists() {
        create_self_signed(cert, key)?;
    }
    let config = server_config(cert, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The rustls server configuration for `cert`/`key` (PEM).
pub fn server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig> {
    let certs = rustls_pemfile::certs(&mut BufReader::new(
        std::fs::File::open(cert).with_context(|| format!("cannot open {}", cert.display()))?,
    ))
    .collect::<std::result::Result<Vec<_>, _>>()
    .with_context(|| format!("{}: not a PEM certificate chain", cert.display()))?;
    let key_der = rustls_pemfile::private_key(&mut BufReader::new(
        std::fs::File::open(key).with_context(|| format!("cannot open {}", key.display()))?,
    ))
    .with_context(|| format!("{}: not a PEM private key", key.display()))?
    .with_context(|| format!("{}: no private key in the file", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .context("the TLS certificate and key do not match")?;
    Ok(config)
}

fn create_self_signed(cert: &Path, key: &Path) -> Result<()> {
    let host = hostname();
    let names = vec![host.clone(), "localhost".to_owned()];
    let generated =
        rcgen::generate_simple_self_signed(names).context("cannot generate a TLS key")?;
    for p in [cert, key] {
        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
    }
    write_private(key, generated.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(cert, generated.cert.pem())
        .with_context(|| format!("cannot write {}", cert.display()))?;
    info!(cert = %cert.display(), %host, "Created a self-signed TLS certificate");
    Ok(())
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sekisho".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_then_reuses_a_self_signed_identity() {
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("tls/cert.pem");
        let key = dir.path().join("tls/key.pem");
        acceptor(&cert, &key).unwrap();
        let first = std::fs::read(&cert).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        acceptor(&cert, &key).unwrap();
        assert_eq!(
            std::fs::read(&cert).unwrap(),
            first,
            "an existing identity is kept"
        );
    }
}
