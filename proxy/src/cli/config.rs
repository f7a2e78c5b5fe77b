//! `sekisho check-config`: validate a configuration and its secrets file.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use super::EXIT_USAGE;

/// Validates `path`. Prints every error with its location and exits 2, or prints a one-line
/// summary (and warnings) and exits 0.
pub fn check(path: &Path) -> Result<ExitCode> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: cannot read: {e}", path.display());
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let inventory = match policy::Inventory::from_toml(&text, &path.display().to_string()) {
        Ok(inv) => inv,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!("{}: invalid", path.display());
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };

    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let secrets_path = inventory.storage().secrets.as_path();
    let object_store = inventory.storage().recordings.local_dir().is_none();
    match crate::secrets::load(secrets_path) {
        Ok(secrets) if object_store && secrets.as_ref().and_then(|s| s.s3()).is_none() => {
            // `serve` would refuse to start: say so now.
            problems.push(format!(
                "{}: storage.recordings is {}, but {} has no [s3] access_key_id and secret_access_key",
                path.display(),
                inventory.storage().recordings,
                secrets_path.display()
            ));
        }
        Ok(Some(secrets)) => {
            for (credential, referrer) in inventory.missing_credentials(&secrets) {
                problems.push(format!(
                    "{}: {referrer}: credential {credential:?} is not in {}",
                    path.display(),
                    secrets_path.display()
                ));
            }
        }
        Ok(None) => warnings.push(format!(
            "warning: secrets file {} does not exist; connections that need a credential will be refused",
            secrets_path.display()
        )),
        Err(e) => problems.push(format!("{e:#}")),
    }

    for w in &warnings {
        eprintln!("{w}");
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!("{}: invalid", path.display());
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    println!(
        "{}: valid ({} targets, {} users, {} contractors)",
        path.display(),
        inventory.targets().len(),
        inventory.users().len(),
        inventory.contractors().len(),
    );
    Ok(ExitCode::SUCCESS)
}
