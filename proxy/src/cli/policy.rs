//! `sekisho policy check`: explain one decision without connecting.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use policy::{Decision, LiveConsole, Protocol, Request, SessionId, TargetRef};

use super::{EXIT_NO, EXIT_USAGE};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The configuration file.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
    /// rdp, ssh, console-serial or console-vnc.
    #[arg(long)]
    protocol: Protocol,
    /// The address the connection comes from (a VDI desktop, or a farm server for a hop).
    #[arg(long)]
    source: IpAddr,
    /// The target's name (or its address, as a transparent RDP connection knows it).
    #[arg(long)]
    target: String,
    /// The user who authenticated; default: the user assigned the source desktop.
    #[arg(long)]
    user: Option<String>,
    /// When the connection happens (RFC 3339); default: now.
    #[arg(long, value_name = "RFC3339")]
    at: Option<String>,
    /// A console session is live on TARGET, opened by a user of the same contractor
    /// (repeatable). Stands in for the live-session registry.
    #[arg(long = "active-console", value_name = "TARGET")]
    active_console: Vec<String>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs the check; exit 0 allow, 1 deny, 2 usage or configuration error.
pub fn check(args: CheckArgs) -> Result<ExitCode> {
    let config = match super::load_config(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e:#}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let inventory = &config.inventory;
    let now = match &args.at {
        Some(at) => chrono::DateTime::parse_from_rfc3339(at)
            .with_context(|| format!("--at {at:?} is not an RFC 3339 time"))?
            .with_timezone(&chrono::Utc),
        None => chrono::Utc::now(),
    };
    let target = match args.target.parse::<IpAddr>() {
        Ok(ip) => TargetRef::Address(ip),
        Err(_) => TargetRef::Name(args.target.clone()),
    };
    let request = Request {
        protocol: args.protocol,
        source: args.source,
        target,
        user: args.user.clone(),
    };
    let live = match active_consoles(inventory, &args) {
        Ok(live) => live,
        Err(e) => {
            eprintln!("sekisho: {e:#}");
            return Ok(ExitCode::from(EXIT_USAGE));
        }
    };
    let decision = policy::evaluate(inventory, &live, &request, now);
    print_decision(&decision, args.json)?;
    Ok(match decision {
        Decision::Allow(_) => ExitCode::SUCCESS,
        Decision::Deny(_) => ExitCode::from(EXIT_NO),
    })
}

/// Builds the live console sessions that `--active-console` stands for. The console's user is
/// `--user` when given, else the first contractor user (by name) whose contractor has a
/// contract naming that target; its access path is the pool of that user's first desktop,
/// else the first path the target's zone admits.
fn active_consoles(inventory: &policy::Inventory, args: &CheckArgs) -> Result<Vec<LiveConsole>> {
    let mut live = Vec::new();
    for name in &args.active_console {
        let target = inventory
            .target(name)
            .with_context(|| format!("--active-console {name}: no such target"))?;
        let user = match &args.user {
            Some(u) => inventory
                .user(u)
                .with_context(|| format!("--user {u}: no such user"))?,
            None => console_user_for(inventory, &target.name).with_context(|| {
                format!(
                    "--active-console {name}: no contractor user has a contract for it; pass --user"
                )
            })?,
        };
        let contractor = user.contractor.clone().with_context(|| {
            format!(
                "--active-console {name}: user {} has no contractor",
                user.name
            )
        })?;
        let path = user
            .desktops
            .iter()
            .find_map(|ip| inventory.pool_of(*ip))
            .map(|pool| pool.path.clone())
            .or_else(|| {
                inventory
                    .zones()
                    .get(&target.zone)
                    .and_then(|paths| paths.first().cloned())
            })
            .unwrap_or_default();
        live.push(LiveConsole {
            session_id: SessionId(uuid::Uuid::now_v7()),
            target: target.name.clone(),
            user: user.name.clone(),
            contractor,
            path,
        });
    }
    Ok(live)
}

fn console_user_for<'a>(
    inventory: &'a policy::Inventory,
    target: &str,
) -> Option<&'a policy::User> {
    let mut users: Vec<&policy::User> = inventory
        .users()
        .iter()
        .filter(|u| {
            u.contractor.as_deref().is_some_and(|c| {
                inventory
                    .contracts()
                    .iter()
                    .any(|k| k.contractor == c && k.targets.iter().any(|t| t == target))
            })
        })
        .collect();
    users.sort_by(|a, b| a.name.cmp(&b.name));
    users.first().copied()
}

fn print_decision(decision: &Decision, json: bool) -> Result<()> {
    let (verdict, rule, reason, user, contractor) = match decision {
        Decision::Allow(a) => (
            "allow",
            a.rule(),
            a.reason(),
            Some(a.user()),
            Some(a.contractor()),
        ),
        Decision::Deny(d) => ("deny", d.rule(), d.reason(), d.user(), d.contractor()),
    };
    if json {
        let mut obj = serde_json::json!({
            "decision": verdict,
            "rule": rule.as_str(),
            "reason": reason,
            "user": user,
            "contractor": contractor,
        });
        if let (Decision::Allow(a), Some(map)) = (decision, obj.as_object_mut()) {
            map.insert("target".into(), a.target().into());
            map.insert(
                "console_session".into(),
                a.console_session().map(|id| id.to_string()).into(),
            );
        }
        println!("{}", serde_json::to_string(&obj)?);
    } else {
        println!("{verdict} ({}): {reason}", rule.as_str());
    }
    Ok(())
}
