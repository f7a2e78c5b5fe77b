//! `sekisho play` and `sekisho export`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::export::{ExportFormat, encode_mp4, export_in_memory, find_ffmpeg, open_pictures};

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

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A recording file, or a session id (looked up in the catalogue of --config).
    recording: String,
    /// asciicast (v2), txt, png, mp4, or bundle (evidence ZIP; needs a session id).
    #[arg(long)]
    format: ExportFormat,
    /// The moment to export, in seconds from the start (png); default: the end. Terminal
    /// recordings are drawn with a font (see docs/export.md).
    #[arg(long, value_name = "SECONDS")]
    at: Option<f64>,
    /// Draw the recorded mouse pointer over the screen (png, mp4; RDP recordings), as the web
    /// player's "Show the pointer" does.
    #[arg(long)]
    pointer: bool,
    /// Where to write.
    #[arg(short = 'o', long = "output", value_name = "OUT")]
    output: PathBuf,
    /// The configuration (to look up a session id).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Reads a recording given as a file path, an `s3://` URL of the configuration's object store,
/// or a session id looked up in the catalogue of `--config` (default ./sekisho.toml).
fn load_recording(recording: &str, config: Option<&Path>) -> Result<Vec<u8>> {
    let path = Path::new(recording);
    if path.is_file() {
        return std::fs::read(path).with_context(|| format!("cannot read {}", path.display()));
    }
    let is_url = super::is_url(path);
    let id = match recording.parse::<policy::SessionId>() {
        Ok(id) => Some(id),
        Err(_) if is_url => None,
        Err(_) => bail!("{recording}: no such file, and not a session id"),
    };
    let config = super::load_config_or_default(config)?;
    let rt = super::runtime()?;
    rt.block_on(async {
        let location = match id {
            None => recording.to_owned(),
            Some(id) => {
                let catalogue = super::open_catalogue(&config).await?;
                let session = catalogue
                    .get_session(id)
                    .await
                    .context("cannot read the catalogue")?
                    .with_context(|| format!("no session {id} in the catalogue"))?;
                session
                    .recording
                    .with_context(|| format!("session {id} has no recording"))?
            }
        };
        if !super::is_url(Path::new(&location)) {
            return std::fs::read(&location)
                .with_context(|| format!("cannot read the recording {location}"));
        }
        // The players decode from memory: an object is read whole, up to the web player's cap.
        super::open_recordings(&config)?
            .read(&location, crate::recordings::MAX_RECORDING_BYTES)
            .await
    })
}

pub fn play(args: PlayArgs) -> Result<ExitCode> {
    let bytes = load_recording(&args.recording, args.config.as_deref())?;
    let skip_idle = args
        .skip_idle
        .map(Duration::try_from_secs_f64)
        .transpose()
        .context("--skip-idle must be a positive number of seconds")?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    player::terminal::play_terminal(&bytes, args.speed, skip_idle, &mut out, std::thread::sleep)
        .context("cannot play the recording")?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

pub fn export(args: ExportArgs) -> Result<ExitCode> {
    if args.pointer && matches!(args.format, ExportFormat::Asciicast | ExportFormat::Txt) {
        bail!("--pointer applies to png and mp4");
    }
    let bytes = load_recording(&args.recording, args.config.as_deref())?;
    let buffer = match args.format {
        ExportFormat::Asciicast | ExportFormat::Txt => {
            export_in_memory(args.format, &bytes, None, false)?
        }
        ExportFormat::Png => {
            let at_us = args.at.map(seconds_to_us).transpose()?;
            export_in_memory(args.format, &bytes, at_us, args.pointer)?
        }
        ExportFormat::Mp4 => {
            if args.at.is_some() {
                bail!("--at applies to png; mp4 exports the whole recording");
            }
            return export_mp4(&bytes, args.pointer, &args.output);
        }
        ExportFormat::Bundle => {
            if args.at.is_some() || args.pointer {
                bail!("--at and --pointer do not apply to a bundle");
            }
            return export_bundle(&args, bytes);
        }
    };
    write_whole(&args.output, &buffer)?;
    Ok(ExitCode::SUCCESS)
}

/// Writes whole or not at all: a half-written evidence export is worse than none.
fn write_whole(output: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = output.with_extension("partial");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, output).with_context(|| format!("cannot write {}", output.display()))
}

/// `export SESSION --format bundle`: the catalogue's facts about the session come with the
/// recording, so the argument must be a session id. When no checkpoint covers the session's
/// ledger rows yet, one is signed now with the instance key, as `ledger checkpoint` does.
fn export_bundle(args: &ExportArgs, bytes: Vec<u8>) -> Result<ExitCode> {
    let id: policy::SessionId = args.recording.parse().with_context(|| {
        format!(
            "{}: a bundle is made from a session id (the catalogue holds its decisions, events \
             and ledger rows), not a file",
            args.recording
        )
    })?;
    let config = super::load_config_or_default(args.config.as_deref())?;
    let rt = super::runtime()?;
    let evidence = rt.block_on(async {
        let catalogue = super::open_catalogue(&config).await?;
        let mut proof = crate::evidence::ledger_proof(&catalogue, id).await?;
        if crate::evidence::needs_checkpoint(proof.as_ref()) {
            let (cp, fingerprint) = super::ledger::sign_checkpoint_now(&config, &catalogue).await?;
            eprintln!(
                "signed a checkpoint of ledger row {} ({fingerprint}) to cover the session",
                cp.seq
            );
            proof = crate::evidence::ledger_proof(&catalogue, id).await?;
        }
        let by = format!(
            "sekisho export on {}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "the command line".to_owned())
        );
        let evidence = crate::evidence::gather(&catalogue, id, bytes, proof, by.clone()).await?;
        // Recorded before the file is written: an export the catalogue never heard of would
        // be evidence leaving without a trace.
        catalogue
            .audit_event(&recorder::catalogue::AuditEvent {
                at: chrono::Utc::now(),
                instance: super::serve::instance_id(&super::serve::data_dir_of(
                    &config.inventory.storage().signing_key,
                ))?,
                kind: recorder::catalogue::event_kind::EVIDENCE_EXPORTED.to_owned(),
                detail: Some(format!(
                    "bundle written to {} by {by}",
                    args.output.display()
                )),
                session_id: Some(id),
            })
            .await
            .context("cannot record the export in the catalogue")?;
        anyhow::Ok(evidence)
    })?;
    let (zip, summary) = crate::evidence::zip(&evidence)?;
    write_whole(&args.output, &zip)?;
    eprintln!(
        "{}: recording {}, {} ledger row(s){}, {} picture(s) in the offline player",
        args.output.display(),
        summary.recording_state,
        summary.ledger_rows,
        if summary.checkpointed {
            " fixed by a signed checkpoint"
        } else {
            ", no checkpoint"
        },
        summary.frames
    );
    Ok(ExitCode::SUCCESS)
}

fn seconds_to_us(s: f64) -> Result<u64> {
    if !s.is_finite() || s < 0.0 {
        bail!("--at must be a number of seconds from the start, not {s}");
    }
    Ok((s * 1e6).round() as u64)
}

/// Encodes the whole recording as H.264 in MP4 through the system's ffmpeg, fed raw RGBA
/// frames at a fixed rate on its standard input.
fn export_mp4(bytes: &[u8], pointer: bool, output: &Path) -> Result<ExitCode> {
    // Look for ffmpeg before decoding anything: its absence is the likely failure.
    let ffmpeg = find_ffmpeg().context(
        "mp4 export needs ffmpeg, which is not installed (or not on PATH): install it \
         (Debian: apt-get install ffmpeg), or export single frames with --format png --at S",
    )?;
    let mut replay = open_pictures(bytes, pointer).context("cannot export mp4")?;
    // ffmpeg picks the container from the name: keep ".mp4" on the partial file.
    let tmp = output.with_extension("partial.mp4");
    encode_mp4(&ffmpeg, &mut replay, &tmp, &|| false)?;
    std::fs::rename(&tmp, output).with_context(|| format!("cannot write {}", output.display()))?;
    Ok(ExitCode::SUCCESS)
}
