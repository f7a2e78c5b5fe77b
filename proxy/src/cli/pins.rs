//! `sekisho pins list|forget`: the keys of the targets, pinned on first use.
//!
//! A changed key (`rdp.server-cert-changed`, `console.host-key-changed`) keeps being refused
//! until an administrator, having checked the server, forgets its pin; the next dial pins what
//! the server shows then. Forgetting is an audit event, so the catalogue tells who let a new
//! key in and when.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use recorder::catalogue::{AuditEvent, InstanceId, PinKind};

use super::{EXIT_NO, Table};

/// The audit event kind of a forgotten pin.
pub const PIN_FORGOTTEN: &str = "pin forgotten";

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The configuration file (names the catalogue).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct ForgetArgs {
    /// The configuration file (names the catalogue).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Only this kind of key: rdp-certificate or ssh-host-key (default: both).
    #[arg(long, value_name = "KIND")]
    kind: Option<PinKind>,
    /// The endpoint, HOST:PORT, as `sekisho pins list` shows it.
    endpoint: String,
}

pub fn list(args: ListArgs) -> Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let tz = config.inventory.timezone();
    let rt = super::runtime()?;
    let pins = rt.block_on(async {
        let catalogue = super::open_catalogue(&config).await?;
        catalogue.pins().await.context("cannot list the pins")
    })?;
    if args.json {
        let rows: Vec<serde_json::Value> = pins
            .iter()
            .map(|p| {
                serde_json::json!({
                    "kind": p.kind.as_str(),
                    "endpoint": p.endpoint,
                    "fingerprint": p.fingerprint,
                    "pinned_at": p.pinned_at,
                    "instance": p.instance.as_str(),
                    "target": p.target,
                })
            })
            .collect();
        super::emit(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&["KIND", "ENDPOINT", "TARGET", "PINNED", "FINGERPRINT"]);
    for p in &pins {
        table.row(vec![
            p.kind.to_string(),
            p.endpoint.clone(),
            p.target.clone().unwrap_or_default(),
            p.pinned_at
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            p.fingerprint.clone(),
        ]);
    }
    if table.is_empty() {
        super::emit("no pins\n")?;
    } else {
        super::emit(&table.render())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Exit status: 0 forgotten, 1 no such pin.
pub fn forget(args: ForgetArgs) -> Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let catalogue = super::open_catalogue(&config).await?;
        let removed = catalogue
            .forget_pin(args.kind, &args.endpoint)
            .await
            .context("cannot forget the pin")?;
        if removed == 0 {
            eprintln!("no pin for {}", args.endpoint);
            return Ok(ExitCode::from(EXIT_NO));
        }
        let by = super::operator();
        let what = args.kind.map_or("every key", PinKind::as_str);
        catalogue
            .audit_event(&AuditEvent {
                at: chrono::Utc::now(),
                instance: InstanceId::new("cli").map_err(|e| anyhow::anyhow!("{e}"))?,
                kind: PIN_FORGOTTEN.to_owned(),
                detail: Some(format!(
                    "{by} forgot the pin of {} ({what}); the next connection pins what it is shown",
                    args.endpoint
                )),
                session_id: None,
            })
            .await
            .context("cannot write the audit event")?;
        println!(
            "forgot {removed} pin(s) of {}; the next connection pins what the server shows",
            args.endpoint
        );
        Ok(ExitCode::SUCCESS)
    })
}
