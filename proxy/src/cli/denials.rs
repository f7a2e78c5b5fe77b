//! `sekisho denials list`: every deny decision with its rule and reason.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use recorder::catalogue::DenialFilter;

use super::Table;

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The configuration file (names the catalogue).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Only denials at or after T (RFC 3339, YYYY-MM-DD, or an age like 24h).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only this user's denials.
    #[arg(long)]
    user: Option<String>,
    /// Only this rule (e.g. rdp.vdi-to-vm).
    #[arg(long)]
    rule: Option<String>,
    /// At most N denials (newest first).
    #[arg(long, default_value_t = 1000)]
    limit: u32,
}

pub fn list(args: ListArgs) -> Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let tz = config.inventory.timezone();
    let since = args
        .since
        .as_deref()
        .map(|s| super::parse_since(s, tz, chrono::Utc::now()))
        .transpose()?;
    let filter = DenialFilter {
        since,
        user: args.user.clone(),
        rule: args.rule.clone(),
        limit: Some(args.limit),
        ..DenialFilter::default()
    };
    let rt = super::runtime()?;
    let rows = rt.block_on(async {
        let catalogue = super::open_catalogue(&config).await?;
        catalogue
            .list_denials(&filter)
            .await
            .context("cannot list denials")
    })?;
    if args.json {
        super::emit(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Table::new(&[
        "TIME", "PROTOCOL", "USER", "SOURCE", "TARGET", "RULE", "REASON",
    ]);
    for d in &rows {
        table.row(vec![
            d.started_at
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            d.protocol.to_string(),
            d.user.clone().unwrap_or_default(),
            d.source.to_string(),
            d.target.clone().unwrap_or_default(),
            d.rule.clone(),
            d.reason.clone(),
        ]);
    }
    if table.is_empty() {
        super::emit("no denials\n")?;
    } else {
        super::emit(&table.render())?;
    }
    Ok(ExitCode::SUCCESS)
}
