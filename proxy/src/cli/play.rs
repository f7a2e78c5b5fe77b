//! `sekisho play` and `sekisho export`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
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
    /// An evidence bundle (ZIP): the recording, the signer's key, the ledger rows and
    /// checkpoint that cover it, the session's decisions and events, and an offline player.
    Bundle,
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

/// The asciicast, text or PNG (at `at_us`, default the end) export of a recording, whole in
/// memory: what `sekisho export` writes and the web UI's export downloads. MP4 and bundles
/// are not made in memory (see [`encode_mp4`] and [`export_bundle`]).
pub(crate) fn export_in_memory(
    format: ExportFormat,
    bytes: &[u8],
    at_us: Option<u64>,
    pointer: bool,
) -> Result<Vec<u8>> {
    let mut buffer = Vec::new();
    match format {
        ExportFormat::Asciicast => player::export::export_asciicast(
            bytes,
            &player::export::AsciicastOptions {
                markers: true,
                ..Default::default()
            },
            &mut buffer,
        )
        .context("cannot export asciicast")?,
        ExportFormat::Txt => {
            player::export::export_text(bytes, &mut buffer).context("cannot export text")?
        }
        ExportFormat::Png => open_pictures(bytes, pointer)
            .and_then(|mut replay| Ok(replay.write_png_at(at_us, &mut buffer)?))
            .context("cannot export png")?,
        ExportFormat::Mp4 | ExportFormat::Bundle => {
            bail!("{format:?} is not exported in memory")
        }
    }
    Ok(buffer)
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

/// Encodes the whole of `replay` as H.264 in MP4 into `out` (a name ending in `.mp4`) with
/// `ffmpeg`, fed raw RGBA frames at [`player::export::VIDEO_FPS`] on its standard input.
/// `stop` is asked before every frame: when it says yes the encoding is abandoned (the web
/// export stops when its request is gone). On failure `out` is removed.
pub(crate) fn encode_mp4(
    ffmpeg: &Path,
    replay: &mut player::export::Graphical,
    out: &Path,
    stop: &dyn Fn() -> bool,
) -> Result<()> {
    use std::process::{Command, Stdio};

    let first = replay.frame_at(0).context("cannot export mp4")?;
    let mut child = Command::new(ffmpeg)
        .args([
            "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgba", "-s",
        ])
        .arg(format!("{}x{}", first.width, first.height))
        .args(["-r", &player::export::VIDEO_FPS.to_string(), "-i", "-"])
        // yuv420p (what players expect) needs even sides.
        .args(["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-f", "mp4"])
        .arg(out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", ffmpeg.display()))?;
    let mut stdin = child.stdin.take().context("ffmpeg stdin")?;
    let fed = player::export::video_frames(replay, |rgba| {
        if stop() {
            return Err(std::io::Error::other("export abandoned"));
        }
        stdin.write_all(rgba)
    });
    drop(stdin);
    let done = child.wait_with_output().context("ffmpeg")?;
    if let Err(e) = fed {
        let _ = std::fs::remove_file(out);
        return Err(anyhow::Error::new(e).context(format!(
            "cannot export mp4: {}",
            String::from_utf8_lossy(&done.stderr).trim()
        )));
    }
    if !done.status.success() {
        let _ = std::fs::remove_file(out);
        bail!(
            "ffmpeg failed ({}): {}",
            done.status,
            String::from_utf8_lossy(&done.stderr).trim()
        );
    }
    Ok(())
}

/// Opens a recording for pictures; for a terminal recording drawn with the built-in bitmap
/// font (no font file found), says so: kanji then show as boxes. `pointer` draws the RDP
/// pointer; other recordings have none to draw, which is an error rather than silently
/// ignored.
fn open_pictures(bytes: &[u8], pointer: bool) -> Result<player::export::Graphical> {
    let mut replay = player::export::Graphical::open(bytes)?;
    if pointer {
        match &mut replay {
            player::export::Graphical::Rdp(r) => r.set_draw_pointer(true),
            _ => bail!("--pointer applies to RDP recordings; this one has no pointer to draw"),
        }
    }
    if let player::export::Graphical::Terminal(t) = &replay
        && !t.font().is_outline()
    {
        eprintln!(
            "note: no terminal font found (Debian: apt-get install fonts-dejavu-core \
             fonts-ipafont-gothic); drawing with the built-in bitmap font, which has no kanji"
        );
    }
    Ok(replay)
}

/// `ffmpeg` on PATH (or `$SEKISHO_FFMPEG`), if it is there.
pub(crate) fn find_ffmpeg() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SEKISHO_FFMPEG") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("ffmpeg"))
        .find(|p| p.is_file())
}
