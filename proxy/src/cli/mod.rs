//! The operators' commands. Each submodule is one command family; they share configuration
//! loading, the catalogue connection and table output from here.

pub mod config;
pub mod denials;
pub mod ledger;
pub mod matrix;
pub mod passwd;
pub mod pins;
pub mod play;
pub mod policy;
pub mod recording;
pub mod serve;
pub mod sessions;
mod table;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

pub use table::Table;

/// Exit status for "usage or configuration error", as interfaces.md fixes it.
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a "no" answer: deny, not live, not intact.
pub const EXIT_NO: u8 = 1;

/// Writes a command's output to standard output. A reader that stops early (`| head`,
/// `| grep -q`) closes the pipe: that is the reader's choice, not an error, so it ends the
/// output quietly instead of failing (or panicking, as `print!` would).
pub fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

/// Sets up tracing. `serve` logs at info by default; the other commands only warn, so their
/// standard output stays the answer. `RUST_LOG` overrides both.
pub fn init_logging(json: bool, serving: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if serving { "info" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A configuration loaded from disk, with the name it was loaded from (for messages).
pub struct LoadedConfig {
    pub inventory: ::policy::Inventory,
    pub path: Option<PathBuf>,
}

/// Reads and validates a configuration file; the error lists every problem with its line.
pub fn load_config(path: &Path) -> Result<LoadedConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read configuration {}", path.display()))?;
    let inventory = ::policy::Inventory::from_toml(&text, &path.display().to_string())
        .map_err(|errors| anyhow::anyhow!("invalid configuration:\n{errors}"))?;
    Ok(LoadedConfig {
        inventory,
        path: Some(path.to_path_buf()),
    })
}

/// `serve`'s rule: the given file, else ./sekisho.toml when present, else built-in defaults.
pub fn load_config_or_default(path: Option<&Path>) -> Result<LoadedConfig> {
    match path {
        Some(p) => load_config(p),
        None if Path::new("sekisho.toml").exists() => load_config(Path::new("sekisho.toml")),
        None => {
            let inventory = ::policy::Inventory::from_toml("", "<built-in defaults>")
                .map_err(|errors| anyhow::anyhow!("built-in defaults are invalid:\n{errors}"))?;
            Ok(LoadedConfig {
                inventory,
                path: None,
            })
        }
    }
}

/// A current-thread runtime for the one-shot commands.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// The recording store of a configuration; the secrets file is read only when recordings go
/// to an object store (its keys are there).
pub fn open_recordings(config: &LoadedConfig) -> Result<crate::recordings::Recordings> {
    let storage = config.inventory.storage();
    let secrets = match storage.recordings.local_dir() {
        Some(_) => None,
        None => crate::secrets::load(&storage.secrets)?,
    };
    crate::recordings::Recordings::open(storage, secrets.as_ref())
}

/// Whether a recording argument names an object of an object store rather than a file.
pub fn is_url(recording: &Path) -> bool {
    recording.to_str().is_some_and(|s| s.contains("://"))
}

/// Who runs this command, for the catalogue (`sudo` keeps the person's own name).
pub fn operator() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "cli".to_owned())
}

/// Opens the catalogue named by the configuration.
pub async fn open_catalogue(config: &LoadedConfig) -> Result<recorder::catalogue::Catalogue> {
    let url = &config.inventory.storage().database;
    recorder::catalogue::Catalogue::connect(url)
        .await
        .context("cannot open the catalogue")
}

/// Parses a `--since` value: RFC 3339, a date (midnight in the configured time zone), or a
/// relative age such as `90m`, `24h`, `7d`.
pub fn parse_since(
    value: &str,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>> {
    use chrono::{NaiveDate, TimeZone};
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let midnight = d.and_hms_opt(0, 0, 0).context("invalid date")?;
        let local = tz
            .from_local_datetime(&midnight)
            .earliest()
            .with_context(|| format!("{value} has no midnight in {tz}"))?;
        return Ok(local.with_timezone(&chrono::Utc));
    }
    let (number, unit) = value.split_at(value.len().saturating_sub(1));
    let n: i64 = number.parse().with_context(|| {
        format!("--since {value:?}: expected RFC 3339, YYYY-MM-DD or an age like 24h")
    })?;
    let age = match unit {
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => anyhow::bail!("--since {value:?}: the age unit must be m, h or d"),
    };
    Ok(now - age)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn since_accepts_rfc3339_dates_and_ages() {
        let now = chrono::Utc
            .with_ymd_and_hms(2026, 11, 25, 12, 0, 0)
            .unwrap();
        let tz = chrono_tz::Asia::Tokyo;
        assert_eq!(
            parse_since("2026-11-25T00:00:00Z", tz, now).unwrap(),
            chrono::Utc.with_ymd_and_hms(2026, 11, 25, 0, 0, 0).unwrap()
        );
        // Midnight in Tokyo is 15:00 UTC the day before.
        assert_eq!(
            parse_since("2026-11-25", tz, now).unwrap(),
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 24, 15, 0, 0)
                .unwrap()
        );
        assert_eq!(
            parse_since("2h", tz, now).unwrap(),
            chrono::Utc
                .with_ymd_and_hms(2026, 11, 25, 10, 0, 0)
                .unwrap()
        );
        assert!(parse_since("yesterday", tz, now).is_err());
        assert!(parse_since("5y", tz, now).is_err());
    }
}
