//! Images as plain pixels, for comparing what Sekisho shows with what a peer shows.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};

/// Converts any image ffmpeg reads (png, xwd, ppm) to raw RGB24: (width, height, pixels).
/// ffmpeg, not Sekisho's own image code, so a bug there cannot hide itself.
pub fn raw_rgb(path: &Path) -> Result<(u32, u32, Vec<u8>)> {
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .context("cannot run ffprobe")?;
    ensure!(
        probe.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&probe.stderr)
    );
    let dims = String::from_utf8_lossy(&probe.stdout);
    let mut it = dims.trim().split(',');
    let w: u32 = it.next().context("width")?.trim().parse()?;
    let h: u32 = it.next().context("height")?.trim().parse()?;
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .stdin(Stdio::null())
        .output()
        .context("cannot run ffmpeg")?;
    ensure!(
        out.status.success(),
        "ffmpeg {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    ensure!(
        out.stdout.len() == (w * h * 3) as usize,
        "{}: {} bytes of RGB for {w}x{h}",
        path.display(),
        out.stdout.len()
    );
    Ok((w, h, out.stdout))
}
