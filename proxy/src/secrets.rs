//! Loading the secrets file: the credentials Sekisho injects toward targets and hypervisors.
//!
//! The file must be readable by Sekisho only (mode 0600 or stricter); a looser file is an
//! error, because anyone who can read it can log in to every server as the maintenance user.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Reads and parses the secrets file. `Ok(None)` when it does not exist.
pub fn load(path: &Path) -> Result<Option<policy::Secrets>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{}: secrets file has mode {mode:03o}; it must be readable by Sekisho only (chmod 600)",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let secrets = policy::Secrets::from_toml(&text, &path.display().to_string())
        .map_err(|errors| anyhow::anyhow!("{errors}"))?;
    Ok(Some(secrets))
}
