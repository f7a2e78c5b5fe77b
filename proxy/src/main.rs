//! `sekisho`: the bastion's single binary. `serve` runs every listener; the other commands are
//! for the people around it (administrators, security staff, auditors).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use proxy::cli;

/// Sekisho (関所): a session-recording bastion for RDP and hypervisor consoles.
///
/// Contractors reach virtual machines only through their hypervisor's console; RDP is allowed
/// only to physical servers and from a server reached through a live console. Every decision
/// and every session is written to the audit catalogue, and every session is recorded.
#[derive(Debug, Parser)]
#[command(name = "sekisho", version, propagate_version = true)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every listener (SSH, RDP, VNC, web), the recorder and the catalogue.
    ///
    /// Without --config, ./sekisho.toml is used when present, else built-in defaults. Missing
    /// state (SQLite catalogue, signing key, self-signed TLS certificate) is created on first
    /// start; recordings left unfinished by a crash are sealed and their sessions marked
    /// interrupted.
    Serve(ServeArgs),

    /// Validate a configuration; every mistake is reported with file, line and key.
    ///
    /// Exit status: 0 valid, 2 invalid.
    CheckConfig(ConfigArg),

    /// Explain policy decisions without connecting.
    #[command(subcommand)]
    Policy(PolicyCommand),

    /// The catalogue of sessions; the emergency stop.
    #[command(subcommand)]
    Sessions(SessionsCommand),

    /// Every deny decision, with its rule and reason.
    #[command(subcommand)]
    Denials(DenialsCommand),

    /// Inspect, verify and seal recording files.
    #[command(subcommand)]
    Recording(RecordingCommand),

    /// Replay a terminal session in this terminal.
    Play(cli::play::PlayArgs),

    /// Export a recording as asciicast v2, plain text, PNG or MP4.
    Export(cli::play::ExportArgs),

    /// Issue matrix (grid) cards, the second factor of the SSH front door.
    #[command(subcommand, name = "matrix-card")]
    MatrixCard(MatrixCardCommand),

    /// The ledger of sealed and deleted recordings: verify it, export its signed checkpoints.
    #[command(subcommand)]
    Ledger(LedgerCommand),

    /// The keys of the targets (RDP certificates, console SSH host keys), pinned on first use.
    #[command(subcommand)]
    Pins(PinsCommand),

    /// Hash a password for `password_hash` (argon2) and `nt_hash` (for RDP NLA).
    ///
    /// Reads the password from standard input (one line), never from the command line.
    Passwd,
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// The configuration file (sekisho.toml).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
}

#[derive(Debug, Args)]
struct OptionalConfigArg {
    /// The configuration file; default ./sekisho.toml, else built-in defaults.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    #[command(flatten)]
    config: OptionalConfigArg,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Explain one decision: the verdict, the rule id and the reason.
    ///
    /// Exit status: 0 allow, 1 deny, 2 usage or configuration error.
    Check(cli::policy::CheckArgs),
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// List sessions, newest first.
    List(cli::sessions::ListArgs),
    /// End a live session now (the emergency stop). Exit status: 0 ended, 1 not live.
    Kill(cli::sessions::KillArgs),
}

#[derive(Debug, Subcommand)]
enum DenialsCommand {
    /// List deny decisions, newest first.
    List(cli::denials::ListArgs),
}

#[derive(Debug, Subcommand)]
enum RecordingCommand {
    /// Print a recording's metadata as JSON.
    Info(cli::recording::InfoArgs),
    /// Check completeness, hash chain and signature. Exit status: 0 intact, 1 not intact.
    Verify(cli::recording::VerifyArgs),
    /// Sign the readable prefix of a recording cut short by a crash.
    Seal(cli::recording::SealArgs),
    /// Print this instance's recording-signing public key, for auditors.
    PublicKey(cli::recording::PublicKeyArgs),
    /// Delete recordings past `[recording] retention_days` (as serve does hourly); each
    /// deletion is written to the catalogue. Exit status: 0 done, 1 some could not be deleted.
    Prune(cli::recording::PruneArgs),
}

#[derive(Debug, Subcommand)]
enum LedgerCommand {
    /// Check the chain, the checkpoints and the recordings against it.
    /// Exit status: 0 intact, 1 not intact (every finding is printed).
    Verify(cli::ledger::VerifyArgs),
    /// Write the signed checkpoints, for an auditor to keep outside the system.
    Export(cli::ledger::ExportArgs),
    /// Sign a checkpoint of the ledger's head now (serve does it hourly and at shutdown).
    Checkpoint(cli::ledger::CheckpointArgs),
}

#[derive(Debug, Subcommand)]
enum PinsCommand {
    /// List the pinned keys.
    List(cli::pins::ListArgs),
    /// Forget a pin after checking the server, so the next connection pins its new key.
    /// Exit status: 0 forgotten, 1 no such pin.
    Forget(cli::pins::ForgetArgs),
}

#[derive(Debug, Subcommand)]
enum MatrixCardCommand {
    /// Issue a new card for USER: prints the grid to hand over and the config line to store.
    New(cli::matrix::NewArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(cli.log_json, matches!(cli.command, Command::Serve(_)));
    let result = match cli.command {
        Command::Serve(args) => cli::serve::run(args.config.config),
        Command::CheckConfig(args) => cli::config::check(&args.config),
        Command::Policy(PolicyCommand::Check(args)) => cli::policy::check(args),
        Command::Sessions(SessionsCommand::List(args)) => cli::sessions::list(args),
        Command::Sessions(SessionsCommand::Kill(args)) => cli::sessions::kill(args),
        Command::Denials(DenialsCommand::List(args)) => cli::denials::list(args),
        Command::Recording(RecordingCommand::Info(args)) => cli::recording::info(args),
        Command::Recording(RecordingCommand::Verify(args)) => cli::recording::verify(args),
        Command::Recording(RecordingCommand::Seal(args)) => cli::recording::seal(args),
        Command::Recording(RecordingCommand::PublicKey(args)) => cli::recording::public_key(args),
        Command::Recording(RecordingCommand::Prune(args)) => cli::recording::prune(args),
        Command::Play(args) => cli::play::play(args),
        Command::Export(args) => cli::play::export(args),
        Command::MatrixCard(MatrixCardCommand::New(args)) => cli::matrix::new_card(args),
        Command::Ledger(LedgerCommand::Verify(args)) => cli::ledger::verify(args),
        Command::Ledger(LedgerCommand::Export(args)) => cli::ledger::export(args),
        Command::Ledger(LedgerCommand::Checkpoint(args)) => cli::ledger::checkpoint(args),
        Command::Pins(PinsCommand::List(args)) => cli::pins::list(args),
        Command::Pins(PinsCommand::Forget(args)) => cli::pins::forget(args),
        Command::Passwd => cli::passwd::run(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("sekisho: {e:#}");
            ExitCode::from(cli::EXIT_USAGE)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
