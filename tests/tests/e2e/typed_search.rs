//! Typed-text search (issue #15) with real sessions: the headless RDP client types through
//! Sekisho into freerdp-shadow-cli (NLA on Sekisho's leg to it, so indexed; see
//! `player::typed::rdp`), the scripted VNC viewer types through Sekisho into a Tk program on
//! TigerVNC's Xvnc (a console whose screen answers typing, unlike QEMU's bare SeaBIOS screen),
//! and an auditor searches both in Chromium and opens the player at a hit; a contractor and an
//! administrator find none of it (Find shows them terminal sessions only, issue #18).
//!
//! The Tk program plays a text console's logon: a `Password:` prompt that echoes nothing, then
//! a prompt that echoes. The password typed at the first must not be indexed (the VNC rule:
//! a line that changed nothing on screen); the line typed at the second must be.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::rdp::rdp_peers::{self, XRDP_PORT};
use crate::support::inventory::PASSWORD;
use crate::support::{
    InstanceOptions, SekishoInstance, demo_inventory, require_peers, wait_for_port,
};
use crate::vnc::vnc_peers::{self, Reaped, ViewerArgs, start_xvnc};
use crate::web::web_browser::Browser;

/// tanaka's VDI desktop in the demo inventory.
const DESKTOP: &str = "127.0.10.11";
/// Typed in the RDP session (mixed case: the search ignores case).
const RDP_WORD: &str = "Rdp-Audit-Word42";
/// Typed at the VNC console's echoing prompt.
const VNC_WORD: &str = "vnc-audit-word";
/// Typed at the VNC console's silent `Password:` prompt: never indexed.
const VNC_PASSWORD: &str = "hunter2secret";
/// The staff's password hash (PASSWORD) in the demo inventory.
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$IvBzMLDZyFbDrkZ3n1bk7w$8NW46C5ZNmNfiHNU+fwLLsnh9hyP7iNV8iEC4MEm5fU";

/// The "guest" on the Xvnc console: a silent password prompt, then an echoing prompt.
const GUEST_PY: &str = r#"
import sys, tkinter as tk
root = tk.Tk()
root.geometry("800x600+0+0")
root.configure(bg="white")
font = ("DejaVu Sans Mono", 18)
prompt = tk.Label(root, text="Password:", font=font, bg="white")
prompt.pack(anchor="w")
entry = tk.Entry(root, font=font, width=40, insertofftime=0)
state = {"phase": "password"}
def silent(ev):
    if state["phase"] != "password":
        return
    if ev.keysym == "Return":
        state["phase"] = "shell"
        prompt.configure(text="$")
        entry.pack(anchor="w")
        entry.focus_force()
    return "break"
def enter(ev):
    tk.Label(root, text=entry.get(), font=font, bg="white").pack(anchor="w")
    entry.delete(0, "end")
root.bind_all("<Key>", silent)
entry.bind("<Return>", enter)
def ready():
    root.focus_force()
    open(sys.argv[1], "w").write("ready")
root.after(500, ready)
root.mainloop()
"#;

/// The demo inventory with the staff, web01's console on Xvnc at `vnc_port`, and file-phys02
/// on freerdp-shadow-cli at `rdp_port` (its credential injected).
fn inventory(vnc_port: u16, rdp_port: u16) -> Result<String> {
    let base = demo_inventory();
    let edited = base
        .replacen(
            "vnc_console = \"127.0.0.1:15901\"",
            &format!("vnc_console = \"127.0.0.1:{vnc_port}\""),
            1,
        )
        .replacen(
            "name = \"file-phys02\"\naddress = \"127.0.20.22\"",
            "name = \"file-phys02\"\naddress = \"127.0.0.1\"\ncredential = \"file-phys02-maint\"",
            1,
        );
    ensure!(
        edited.matches("127.0.0.1").count() == base.matches("127.0.0.1").count() + 1
            && edited.contains(&format!(":{vnc_port}\"")),
        "the demo inventory changed: web01 or file-phys02 not found"
    );
    ensure!(edited.contains(&format!("rdp_port = {XRDP_PORT}")));
    let edited = edited.replacen(
        &format!("credential = \"file-phys02-maint\"\nkind = \"physical\"\nzone = \"business\"\nrdp_port = {XRDP_PORT}"),
        &format!("credential = \"file-phys02-maint\"\nkind = \"physical\"\nzone = \"business\"\nrdp_port = {rdp_port}"),
        1,
    );
    Ok(format!(
        "{edited}\n[[user]]\nname = \"kobayashi\"\nrole = \"security\"\npassword_hash = \"{HASH}\"\n\n\
         [[user]]\nname = \"root\"\nrole = \"admin\"\npassword_hash = \"{HASH}\"\n"
    ))
}

/// Starts the guest program on `display` and waits until it has the focus.
fn start_guest(display: &str, dir: &Path) -> Result<Reaped> {
    let script = dir.join("guest.py");
    std::fs::write(&script, GUEST_PY)?;
    let ready = dir.join("guest.ready");
    let child = Command::new("python3")
        .arg(&script)
        .arg(&ready)
        .env("DISPLAY", display)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("spawn the Tk guest")?;
    let child = Reaped(child);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !ready.exists() {
        if Instant::now() > deadline {
            bail!("the Tk guest never came up on {display}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(child)
}

/// X keysyms typing `text` (ASCII; `\n` is Return).
fn keysyms(text: &str) -> Vec<u32> {
    text.chars()
        .map(|c| if c == '\n' { 0xFF0D } else { u32::from(c) })
        .collect()
}

/// Waits for the ended session of `protocol`; returns its id.
fn ended_session(instance: &SekishoInstance, protocol: &str) -> Result<String> {
    let row = instance.wait_until(
        Duration::from_secs(20),
        &format!("the {protocol} session to end"),
        || {
            Ok(instance
                .sessions()?
                .into_iter()
                .find(|s| s["protocol"] == protocol && !s["ended_at"].is_null()))
        },
    )?;
    Ok(row
        .get("id")
        .and_then(|v| v.as_str())
        .context("id")?
        .to_owned())
}

async fn login(b: &Browser, base: &str, user: &str) -> Result<()> {
    b.goto(&format!("{base}/login")).await?;
    b.type_into("user", user).await?;
    b.type_into("password", PASSWORD).await?;
    b.click("login").await?;
    for _ in 0..50 {
        if b.path().await?.starts_with("/sessions") {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{user}: not logged in")
}

/// The status and body of a same-origin GET made by the page (the browser's own cookie).
async fn fetch(b: &Browser, path: &str) -> Result<(u64, String)> {
    let v = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch(arguments[0], {credentials: 'same-origin'})\
             .then(r => r.text().then(t => done([r.status, t])), () => done([0, '']));",
            vec![serde_json::json!(path)],
        )
        .await?;
    let status = v.get(0).and_then(|s| s.as_u64()).unwrap_or(0);
    let body = v.get(1).and_then(|s| s.as_str()).unwrap_or("").to_owned();
    Ok((status, body))
}

/// Searches until the page shows a hit for `q` (indexing runs after each session ends).
async fn search_until_hit(b: &Browser, base: &str, q: &str) -> Result<String> {
    let mut src = String::new();
    for _ in 0..60 {
        b.goto(&format!("{base}/search?q={q}")).await?;
        src = b.source().await?;
        if src.contains("id=\"hit-0\"") {
            return Ok(src);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("no hit for {q:?}:\n{src}")
}

/// Clicks the first hit on the page and checks the player of `session` opens at its moment.
async fn open_hit(b: &Browser, session: &str) -> Result<()> {
    let href = b
        .client
        .find(fantoccini::Locator::Id("hit-0"))
        .await?
        .attr("href")
        .await?
        .context("hit href")?;
    let t: f64 = href
        .split("?t=")
        .nth(1)
        .context("no t in the hit's link")?
        .parse()?;
    b.click("hit-0").await?;
    let mut at = None;
    for _ in 0..150 {
        if b.path()
            .await?
            .starts_with(&format!("/sessions/{session}/play"))
        {
            at = b
                .client
                .find(fantoccini::Locator::Id("canvas"))
                .await?
                .attr("data-at")
                .await?
                .and_then(|v| v.parse::<f64>().ok());
            if at.is_some_and(|ms| ms > 0.0) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at = at.with_context(|| format!("the player of {session} never drew the hit's moment"))?;
    ensure!(
        (at - t * 1000.0).abs() < 1500.0,
        "the player opened at {at} ms, the hit is at {t} s"
    );
    Ok(())
}

/// A real RDP session (the headless client through Sekisho to freerdp-shadow-cli, NLA) and a
/// real VNC console (the scripted viewer into the Tk guest on Xvnc): Sekisho indexes the RDP
/// line and the VNC line typed at the echoing prompt, not the password; an auditor finds each
/// in Chromium and a hit opens the player at its moment; a contractor and an administrator find
/// none of it. (xrdp, which gives no logon notification and no NLA, is indexed nothing:
/// `rdp::rdp_typed_text_of_an_nla_session_is_indexed_and_found`.)
#[test]
fn typed_text_of_real_rdp_and_vnc_sessions_is_searched_by_an_auditor_in_chromium() -> Result<()> {
    if !require_peers(&[
        "chromium",
        "chromedriver",
        "freerdp-shadow-cli",
        "Xvfb",
        "Xvnc",
        "python3",
        "ssh",
    ])? {
        return Ok(());
    }
    let _serial = rdp_peers::serial();
    let console = start_xvnc()?;
    let work = tempfile::tempdir()?;
    let _guest = start_guest(&console.x.display, work.path())?;
    let (_shadow, nla_port) = rdp_peers::start_nla_shadow(&work.path().join("shadow"))?;
    let instance = SekishoInstance::start_with(
        &inventory(console.port, nla_port)?,
        InstanceOptions {
            secrets: Some(rdp_peers::lab_secrets(&["file-phys02"])),
            ..InstanceOptions::default()
        },
    )?;
    let runtime = tokio::runtime::Runtime::new()?;

    // RDP: tanaka types a command on the shadowed desktop.
    let rdp_session = |target: &'static str, word: &'static str| -> Result<String> {
        runtime.block_on(async {
            let mut o = e2e::rdp_client::ConnectOptions::new(
                instance.listen.rdp,
                format!("tanaka+{target}"),
                PASSWORD,
            );
            o.source = Some(DESKTOP.parse()?);
            let mut client = e2e::rdp_client::connect(&o).await?;
            client.pump_for(Duration::from_secs(2)).await?;
            client
                .type_text(&format!("echo {word}x\u{8}\n"), Duration::from_millis(30))
                .await?;
            client.pump_for(Duration::from_secs(1)).await?;
            client.disconnect().await?;
            anyhow::Ok(())
        })?;
        let row = instance.wait_until(Duration::from_secs(20), "the RDP session to end", || {
            Ok(instance.sessions()?.into_iter().find(|s| {
                s["protocol"] == "rdp" && s["target"] == target && !s["ended_at"].is_null()
            }))
        })?;
        Ok(row["id"].as_str().context("id")?.to_owned())
    };
    let rdp_id = rdp_session("file-phys02", RDP_WORD)?;
    let recording_of = |id: &str| -> Result<Vec<u8>> {
        let row = instance
            .sessions()?
            .into_iter()
            .find(|r| r["id"] == id)
            .context("the RDP session's row")?;
        Ok(std::fs::read(
            instance
                .dir
                .path()
                .join(row["recording"].as_str().context("recording")?),
        )?)
    };
    // freerdp-shadow-cli took NLA: the recorded scan codes (Shift, Backspace) read through
    // the session's layout give the line typed.
    let lines = player::typed::typed_text(&recording_of(&rdp_id)?)?;
    ensure!(
        lines.iter().map(|l| l.text.as_str()).collect::<Vec<_>>() == [format!("echo {RDP_WORD}")],
        "{lines:?}"
    );

    // VNC: the password at the silent prompt, then a command at the echoing one.
    let script = vnc_peers::viewer_script(instance.dir.path())?;
    let mut keys = keysyms(&format!("{VNC_PASSWORD}\n"));
    keys.push(0);
    keys.extend(keysyms(&format!("echo {VNC_WORD}\n")));
    keys.push(0);
    let report = vnc_peers::run_viewer(
        &script,
        &ViewerArgs {
            host: instance.listen.vnc.ip().to_string(),
            port: instance.listen.vnc.port(),
            source: DESKTOP.to_owned(),
            password: vnc_peers::tanaka_web01_ticket(&instance, DESKTOP)?,
            hold: 12.0,
            keys,
            ..ViewerArgs::default()
        },
    )?;
    ensure!(
        report["result"] == "ok",
        "{report}\n{}",
        instance.serve_log()
    );
    let vnc_id = ended_session(&instance, "console-vnc")?;

    wait_for_port(instance.listen.web, Duration::from_secs(20))?;
    let base = format!("https://{}", instance.listen.web);
    let pictures = std::env::var_os("SEKISHO_DOCS_PICTURES");
    let result = runtime.block_on(async {
        let b = Browser::start().await?;
        let result = async {
            // suzuki (auditor) finds each word in its session, case-insensitively.
            login(&b, &base, "suzuki").await?;
            ensure!(
                b.source().await?.contains("id=\"nav-search\""),
                "no search link for an auditor"
            );
            let src = search_until_hit(&b, &base, "AUDIT-WORD").await?;
            ensure!(
                src.contains(&format!("/sessions/{vnc_id}/play?t=")),
                "{src}"
            );
            ensure!(src.contains("echo vnc-<mark>audit-word</mark>"), "{src}");
            // The password typed at the silent prompt is not in the index.
            b.goto(&format!("{base}/search?q={VNC_PASSWORD}")).await?;
            let src = b.source().await?;
            ensure!(
                src.contains("id=\"no-hits\""),
                "the password was indexed:\n{src}"
            );
            // The session's own search (the player's) answers from the same index.
            let (status, body) =
                fetch(&b, &format!("/sessions/{vnc_id}/search?q={VNC_WORD}")).await?;
            ensure!(status == 200, "{status} {body}");
            let json: serde_json::Value = serde_json::from_str(&body)?;
            ensure!(
                json["hits"][0]["source"] == "typed"
                    && json["hits"][0]["context"] == format!("echo {VNC_WORD}"),
                "{json}"
            );
            let src = search_until_hit(&b, &base, &RDP_WORD.to_lowercase()).await?;
            ensure!(
                src.contains(&format!("/sessions/{rdp_id}/play?t=")),
                "{src}"
            );
            ensure!(
                src.contains(&format!("echo <mark>{RDP_WORD}</mark>")),
                "{src}"
            );
            open_hit(&b, &rdp_id).await?;
            if let Some(dir) = &pictures {
                // `SEKISHO_DOCS_PICTURES=docs/pictures`: the picture in docs/typed-text-search.md.
                b.goto(&format!("{base}/search?q=audit-word")).await?;
                b.client.set_window_size(1100, 700).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let png = b.client.screenshot().await?;
                std::fs::write(Path::new(dir).join("typed-text-search.png"), png)?;
            }
            // A hit opens the player at its moment.
            b.goto(&format!("{base}/search?q={VNC_WORD}")).await?;
            open_hit(&b, &vnc_id).await?;
            b.click("logout").await?;

            // tanaka (contractor) finds in his own terminal sessions only (Find, issue #18):
            // not the typed text of his graphical sessions, not through the session's search.
            login(&b, &base, "tanaka").await?;
            let (status, body) = fetch(&b, &format!("/search?q={VNC_WORD}")).await?;
            ensure!(
                status == 200 && body.contains("id=\"no-hits\""),
                "a contractor got {status} or hits for /search"
            );
            let (status, _) = fetch(&b, &format!("/sessions/{rdp_id}/search?q={RDP_WORD}")).await?;
            ensure!(
                status == 404,
                "a contractor got {status} for the session's search"
            );
            b.click("logout").await?;

            // root (admin) administers Sekisho and does not review graphical keystrokes.
            login(&b, &base, "root").await?;
            let (status, body) = fetch(&b, &format!("/search?q={VNC_WORD}")).await?;
            ensure!(
                status == 200 && body.contains("id=\"no-hits\""),
                "an admin got {status} or hits for /search"
            );
            anyhow::Ok(())
        }
        .await;
        b.close().await?;
        result
    });
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}
