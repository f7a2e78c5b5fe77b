//! Evidence bundles of real sessions: `sekisho export SESSION --format bundle` and the web
//! UI's download, opened the way a recipient without an account opens them: `player.html`
//! from `file://` in headless Chromium with the network cut off.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use base64::Engine as _;
use rdp_peers::XRDP_PORT;

use crate::player::{differing, export};
use crate::rdp::rdp_peers;
use crate::support::inventory::{Inventory, PASSWORD, Target};
use crate::support::{InstanceOptions, SekishoInstance, require_peers};
use crate::web::web_browser::Browser;
use crate::web::{login, web_base, with_staff};

/// The VDI desktop the RDP client appears to come from (SNAT, as in `rdp.rs`).
const DESKTOP: &str = "127.0.10.11";

/// The files every bundle holds besides the recording.
const BUNDLE_FILES: [&str; 5] = [
    "README.txt",
    "player.html",
    "public-key.txt",
    "ledger.json",
    "session.json",
];

fn read_zip(path: &Path) -> Result<zip::ZipArchive<std::fs::File>> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    Ok(zip::ZipArchive::new(file)?)
}

fn zip_member(archive: &mut zip::ZipArchive<std::fs::File>, name: &str) -> Result<Vec<u8>> {
    let mut member = archive
        .by_name(name)
        .with_context(|| format!("the bundle has no {name}"))?;
    let mut bytes = Vec::new();
    member.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The evidence block of `player.html` and where it sits.
fn evidence_of(html: &str) -> Result<(usize, usize, serde_json::Value)> {
    let open = "<script type=\"application/json\" id=\"evidence\">";
    let start = html
        .find(open)
        .context("player.html has no evidence block")?
        + open.len();
    let end = start
        + html
            .get(start..)
            .and_then(|rest| rest.find("</script>"))
            .context("evidence block not closed")?;
    let json = serde_json::from_str(html.get(start..end).context("evidence")?)?;
    Ok((start, end, json))
}

/// `player.html` with one byte of its embedded recording flipped, inside the chunks (past the
/// header), as a forger editing what the page plays would.
fn with_flipped_recording_byte(html: &str) -> Result<String> {
    let (start, end, mut evidence) = evidence_of(html)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    let embedded = evidence
        .pointer_mut("/recording/bytes_b64")
        .context("no recording")?;
    let mut bytes = b64.decode(embedded.as_str().context("no recording")?)?;
    let at = bytes.len() / 2;
    *bytes.get_mut(at).context("empty recording")? ^= 0x01;
    *embedded = serde_json::Value::from(b64.encode(&bytes));
    let json = serde_json::to_string(&evidence)?.replace('<', "\\u003c");
    Ok(format!(
        "{}{json}{}",
        html.get(..start).unwrap_or_default(),
        html.get(end..).unwrap_or_default()
    ))
}

/// Opens `page` from `file://` and waits (up to 60 s: the page hashes the whole recording in
/// JavaScript) for its verdict. Returns the verdict and the check lines.
async fn verdict_of(b: &Browser, page: &Path) -> Result<(String, String)> {
    b.goto(&format!("file://{}", page.display())).await?;
    for _ in 0..600 {
        let status = b
            .client
            .execute("return document.body.dataset.status || '';", vec![])
            .await?;
        if let Some(s) = status.as_str().filter(|s| !s.is_empty()) {
            let checks = b
                .client
                .execute(
                    "return document.getElementById('checks').innerText + '\\n' + \
                     document.getElementById('status').innerText;",
                    vec![],
                )
                .await?;
            return Ok((s.to_owned(), checks.as_str().unwrap_or_default().to_owned()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("{} gave no verdict within 60 s", page.display())
}

/// A real RDP session (xfreerdp through Sekisho to xrdp) exported as an evidence bundle: the
/// ZIP holds the recording, the keys, the ledger rows and checkpoint, the session's facts and
/// the offline player; opened from `file://` in Chromium with the network cut off, the player
/// loads nothing, says "verified" for the recording, the ledger and the pictures, and plays
/// to a last picture equal to `sekisho export --format png` of the end; with one byte of the
/// bundled recording flipped it says "tampered". The web UI offers the same bundle to
/// security staff, not to the contractor, and the export is an audit event.
#[test]
fn bundle_of_a_real_rdp_session_verifies_and_plays_offline_and_a_flipped_byte_is_tampered()
-> Result<()> {
    if !require_peers(&[
        "xrdp",
        "xfreerdp",
        "Xvfb",
        "Xvnc",
        "timeout",
        "iptables",
        "ffmpeg",
        "ffprobe",
        "chromium",
        "chromedriver",
    ])? {
        return Ok(());
    }
    rdp_peers::ensure_xrdp()?;
    let _serial = rdp_peers::serial();
    let inventory = with_staff(
        Inventory::new()
            .pool("vdi-test", "ip-vpn", "127.0.10.0/24")
            .zone("business", &["ip-vpn"])
            .user("tanaka", DESKTOP)
            .target(Target::rdp_server("srv01", XRDP_PORT))
            .render(),
    );
    let instance = SekishoInstance::start_with(
        &inventory,
        InstanceOptions {
            secrets: Some(rdp_peers::lab_secrets(&["srv01"])),
            ..InstanceOptions::default()
        },
    )?;
    let _snat = rdp_peers::Snat::add(instance.listen.rdp.port(), DESKTOP)?;
    let client = rdp_peers::Background::spawn(
        instance.listen.rdp.port(),
        "tanaka",
        PASSWORD,
        8,
        &["/pcb:srv01", "/size:1024x768", "/bpp:32"],
    );
    let run = client.join()?;
    ensure!(
        run.active(),
        "session through Sekisho did not come up:\n{}\n{}",
        run.log,
        instance.serve_log()
    );
    let session = rdp_peers::ended_session(&instance, "the RDP session to end")?;
    let id = session["id"].as_str().context("session id")?.to_owned();
    let recording = instance.dir.path().join(
        session["recording"]
            .as_str()
            .context("session has no recording")?,
    );

    // The command line.
    let zip_path = instance.dir.path().join("evidence.zip");
    let out = instance.cli(&[
        "export",
        &id,
        "--format",
        "bundle",
        "-o",
        zip_path.to_str().context("path")?,
    ])?;
    ensure!(
        out.status.success(),
        "bundle export failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut archive = read_zip(&zip_path)?;
    for name in BUNDLE_FILES {
        zip_member(&mut archive, name)?;
    }
    let bundled = zip_member(&mut archive, &format!("{id}.skrec"))?;
    ensure!(
        bundled == std::fs::read(&recording)?,
        "the bundled recording is not the recording byte for byte"
    );
    let public_key = String::from_utf8(zip_member(&mut archive, "public-key.txt")?)?;
    let key = instance.cli(&["recording", "public-key"])?;
    let key = String::from_utf8_lossy(&key.stdout);
    let key = key.split_whitespace().next().context("no public key")?;
    ensure!(
        public_key.contains(key),
        "public-key.txt does not name the instance key {key}:\n{public_key}"
    );
    let ledger: serde_json::Value =
        serde_json::from_slice(&zip_member(&mut archive, "ledger.json")?)?;
    ensure!(
        !ledger["checkpoint"].is_null()
            && ledger["entries"].as_array().is_some_and(|e| e
                .iter()
                .any(|r| r["session_id"] == id.as_str() && r["kind"] == "recording-sealed")),
        "ledger.json has no checkpoint or no sealed row for {id}: {ledger}"
    );
    let facts: serde_json::Value =
        serde_json::from_slice(&zip_member(&mut archive, "session.json")?)?;
    ensure!(
        facts["session"]["id"] == id.as_str()
            && facts["decisions"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["verdict"] == "allow")),
        "session.json lacks the session or its allow decision: {facts}"
    );

    let pages = tempfile::Builder::new()
        .prefix("sekisho-bundle-")
        .tempdir()?;
    let html = String::from_utf8(zip_member(&mut archive, "player.html")?)?;
    let page = pages.path().join("player.html");
    std::fs::write(&page, &html)?;
    let tampered = pages.path().join("player-tampered.html");
    std::fs::write(&tampered, with_flipped_recording_byte(&html)?)?;
    let (_, _, evidence) = evidence_of(&html)?;
    let frames = evidence["playback"]["frames"]
        .as_array()
        .context("no frames")?;
    ensure!(
        frames.len() > 1,
        "the player has {} picture(s)",
        frames.len()
    );
    let last_png = pages.path().join("bundle-last.png");
    std::fs::File::create(&last_png)?.write_all(
        &base64::engine::general_purpose::STANDARD.decode(
            frames
                .last()
                .and_then(|f| f["png"].as_str())
                .context("last frame")?,
        )?,
    )?;
    let exported = pages.path().join("export-end.png");
    export(&instance, &recording, "png", None, &exported)?;
    let differ = differing(&last_png, &exported)?;
    eprintln!(
        "bundle: {} pictures; last differs from `export --format png` in {:.4}% of pixels",
        frames.len(),
        differ * 100.0
    );
    ensure!(
        differ == 0.0,
        "the bundle's last picture is not the end of the recording"
    );

    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let b = Browser::start_offline().await?;
        let result = async {
            let (status, checks) = verdict_of(&b, &page).await?;
            ensure!(status == "verified", "the bundle says {status}:\n{checks}");
            ensure!(
                checks.matches(": verified").count() == 3,
                "not every check is verified:\n{checks}"
            );
            // Nothing was fetched: the page is all there is.
            let loaded = b
                .client
                .execute(
                    "return performance.getEntriesByType('resource').length;",
                    vec![],
                )
                .await?;
            ensure!(
                loaded == 0,
                "the offline player loaded {loaded} resource(s)"
            );
            // Plays to the end at 16x.
            b.client
                .execute("document.getElementById('speed').value = '16';", vec![])
                .await?;
            b.click("play").await?;
            let last = (frames.len() - 1).to_string();
            let mut reached = String::new();
            for _ in 0..100 {
                reached = b
                    .client
                    .execute("return document.body.dataset.frame || '';", vec![])
                    .await?
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if reached == last {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            ensure!(
                reached == last,
                "playing stopped at picture {reached} of {last}"
            );
            let shown = b
                .client
                .execute(
                    "const i = document.getElementById('screen'); \
                     return [i.naturalWidth, i.naturalHeight, i.src.length];",
                    vec![],
                )
                .await?;
            ensure!(
                shown[0] == 1024 && shown[1] == 768,
                "the player shows a {shown} picture"
            );
            if let Some(dir) = std::env::var_os("SEKISHO_DOCS_PICTURES") {
                // `SEKISHO_DOCS_PICTURES=docs/pictures`: the picture in docs/evidence-bundles.md.
                b.client
                    .set_window_size(1280, 1000)
                    .await
                    .context("window size")?;
                let png = b.client.screenshot().await?;
                std::fs::write(Path::new(&dir).join("evidence-bundle.png"), png)?;
            }

            let (status, checks) = verdict_of(&b, &tampered).await?;
            ensure!(
                status == "tampered" && checks.contains("tampered"),
                "a flipped byte gives {status}:\n{checks}"
            );

            // The web UI's download: security staff get the bundle, the contractor does not.
            let base = web_base(&instance).await?;
            let fetch = "const done = arguments[arguments.length - 1]; \
                         fetch(arguments[0]).then(r => r.arrayBuffer().then(b => \
                         done([r.status, r.headers.get('content-type'), b.byteLength])));";
            let url = format!("/sessions/{id}/bundle");
            let online = Browser::start().await?;
            let downloads = async {
                login(&online, &base, "kobayashi").await?;
                online.goto(&format!("{base}/sessions/{id}")).await?;
                ensure!(
                    online.source().await?.contains("id=\"bundle\""),
                    "the session page offers no bundle to security staff"
                );
                let got = online
                    .client
                    .execute_async(fetch, vec![url.clone().into()])
                    .await?;
                ensure!(
                    got[0] == 200
                        && got[1] == "application/zip"
                        && got[2].as_u64().is_some_and(|n| n > 1000),
                    "security staff's download: {got}"
                );
                online.click("logout").await?;
                login(&online, &base, "tanaka").await?;
                let got = online
                    .client
                    .execute_async(fetch, vec![url.clone().into()])
                    .await?;
                ensure!(got[0] == 404, "the contractor's download: {got}");
                anyhow::Ok(())
            }
            .await;
            online.close().await?;
            downloads
        }
        .await;
        b.close().await?;
        result
    })?;

    let exports = instance.audit_events("evidence exported")?;
    ensure!(
        exports.len() == 2
            && exports.iter().any(|e| e.contains("evidence.zip"))
            && exports.iter().any(|e| e.contains("kobayashi")),
        "the two exports (command line, web) are not both audit events: {exports:?}"
    );
    Ok(())
}
