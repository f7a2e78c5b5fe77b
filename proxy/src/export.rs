//! What `sekisho export` and the web UI's export buttons make from a recording: asciicast,
//! text and PNG whole in memory, MP4 through the system's ffmpeg. One implementation for the
//! command line (`cli/play.rs`) and the web UI (`web/export.rs`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::ValueEnum;

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

/// The asciicast, text or PNG (at `at_us`, default the end) export of a recording, whole in
/// memory: what `sekisho export` writes and the web UI's export downloads. MP4 and bundles
/// are not made in memory (see [`encode_mp4`]; bundles are `crate::evidence`).
pub fn export_in_memory(
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

/// Encodes the whole of `replay` as H.264 in MP4 into `out` (a name ending in `.mp4`) with
/// `ffmpeg`, fed raw RGBA frames at [`player::export::VIDEO_FPS`] on its standard input.
/// `stop` is asked before every frame: when it says yes the encoding is abandoned (the web
/// export stops when its request is gone). On failure `out` is removed.
pub fn encode_mp4(
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
pub fn open_pictures(bytes: &[u8], pointer: bool) -> Result<player::export::Graphical> {
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
pub fn find_ffmpeg() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SEKISHO_FFMPEG") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("ffmpeg"))
        .find(|p| p.is_file())
}
