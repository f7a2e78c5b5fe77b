//! `sekisho play` and `sekisho export`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, ValueEnum};

#[derive(Debug, Args)]
pub struct PlayArgs {
    /// A recording file, or a session id (looked up in the catalogue of --config).
    recording: String,
    /// Playback speed, 0.5 to 16.
    #[arg(long, default_value_t = 1.0)]
    speed: f64,
    /// Shorten pauses longer than this many seconds.
    #[arg(long, value_name = "SECONDS")]
    skip_idle: Option<f64>,
    /// The configuration (to look up a session id).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Asciicast,
    Txt,
    Png,
    Mp4,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A recording file, or a session id (looked up in the catalogue of --config).
    recording: String,
    /// asciicast (v2), txt, png or mp4.
    #[arg(long)]
    format: ExportFormat,
    /// The moment to export, in seconds from the start (png); default: the end.
    #[arg(long, value_name = "SECONDS")]
    at: Option<f64>,
    /// Where to write.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: PathBuf,
    /// The configuration (to look up a session id).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

pub fn play(args: PlayArgs) -> Result<ExitCode> {
    let _ = (&args.recording, args.speed, args.skip_idle, &args.config);
    bail!("play is not available in this build yet")
}

pub fn export(args: ExportArgs) -> Result<ExitCode> {
    let _ = (
        &args.recording,
        args.format,
        args.at,
        &args.output,
        &args.config,
    );
    bail!("export is not available in this build yet")
}
