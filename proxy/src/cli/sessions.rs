//! `sekisho sessions list|kill`: the catalogue of sessions and the emergency stop.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use policy::{Protocol, SessionId};
use recorder::catalogue::SessionFilter;

use super::{EXIT_NO, Table};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// The configuration file (names the catalogue).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// Print a JSON array instead of a table.
    #[arg(long)]
    json: bool,
    /// Only sessions started at or after T (RFC 3339, YYYY-MM-DD, or an age like 24h).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only this user's sessions.
    #[arg(long)]
    user: Option<String>,
    /// Only sessions to this target.
    #[arg(long)]
    target: Option<String>,
    /// Only this protocol: rdp, ssh, console-serial, console-vnc.
    #[arg(long)]
    protocol: Option<Protocol>,
    /// At most N sessions (newest first).
    #[arg(long, default_value_t = 1000)]
    limit: u32,
}

#[derive(Debug, Args)]
pub struct KillArgs {
    /// The configuration file (names the catalogue).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// The session to end.
    id: SessionId,
    /// How long to wait for the owning instance to confirm the end.
    #[arg(long, default_value_t = 5)]
    wait_seconds: u64,
}

pub fn list(args: ListArgs) -> Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let now = chrono::Utc::now();
    let since = args
        .since
        .as_deref()
        .map(|s| super::parse_since(s, config.inventory.timezone(), now))
        .transpose()?;
    let filter = SessionFilter {
        since,
        user: args.user.clone(),
        target: args.target.clone(),
        protocol: args.protocol,
        limit: Some(args.limit),
        ..SessionFilter::default()
    };
    let rt = super::runtime()?;
    let rows = rt.block_on(async {
        let catalogue = super::open_catalogue(&config).await?;
        catalogue
            .list_sessions(&filter)
            .await
            .context("cannot list sessions")
    })?;
    if args.json {
        super::emit(&format!("{}\n", serde_json::to_string_pretty(&rows)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    let tz = config.inventory.timezone();
    let mut table = Table::new(&[
        "ID", "STARTED", "ENDED", "PROTOCOL", "USER", "SOURCE", "TARGET", "OUTCOME",
    ]);
    for s in &rows {
        table.row(vec![
            s.id.to_string(),
            s.started_at
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string(),
            s.ended_at
                .map(|t| t.with_timezone(&tz).format("%H:%M:%S").to_string())
                .unwrap_or_else(|| "live".to_owned()),
            s.protocol.to_string(),
            s.user.clone(),
            s.source.to_string(),
            s.target.clone(),
            s.outcome.to_string(),
        ]);
    }
    if table.is_empty() {
        super::emit("no sessions\n")?;
    } else {
        super::emit(&table.render())?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the instance that owns the session to end it, and waits until the catalogue shows it
/// ended. Exit 0 ended, 1 not live.
pub fn kill(args: KillArgs) -> Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let catalogue = super::open_catalogue(&config).await?;
        let by = super::operator();
        if !catalogue
            .request_kill(args.id, &by)
            .await
            .context("cannot request the kill")?
        {
            eprintln!("session {} is not live", args.id);
            return Ok(ExitCode::from(EXIT_NO));
        }
        let deadline = Instant::now() + Duration::from_secs(args.wait_seconds);
        loop {
            let session = catalogue
                .get_session(args.id)
                .await
                .context("cannot read the session")?;
            if session.is_some_and(|s| s.ended_at.is_some()) {
                println!("session {} ended", args.id);
                return Ok(ExitCode::SUCCESS);
            }
            if Instant::now() > deadline {
                eprintln!(
                    "session {}: kill requested, but its instance has not confirmed within {} s; \
                     it will end the session when it next polls",
                    args.id, args.wait_seconds
                );
                return Ok(ExitCode::from(EXIT_NO));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}
