//! The player's controls in Chromium, in Japanese and English, against a real `sekisho
//! serve`: play/pause, the keyboard shortcuts and their help, fit to window at 1366×660,
//! wall-clock ticks in the configured zone (Asia/Tokyo), search hits on the timeline and
//! marked on the terminal's screen, policy events drawn apart from notes, the export buttons'
//! downloads, and no English on the Japanese page. Screenshots of each player in each
//! language go to `target/web-screenshots/`.
//!
//! The terminal recording is written by the real recorder (with a policy event and a note);
//! the graphical one is the real xrdp RDP fixture (1024×768).

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use chrono::{FixedOffset, TimeZone as _, Utc};
use fantoccini::Locator;
use fantoccini::actions::{InputSource as _, KeyAction, KeyActions};
use fantoccini::key::Key;
use policy::{Protocol, SessionId};
use recorder::catalogue::{Catalogue, InstanceId, NewSession};
use serde_json::Value;

use crate::support::{SekishoInstance, demo_inventory, require_peers};
use crate::web::web_browser::{Browser, english_words};
use crate::web::{attr, login, seed_rdp, wait_at, web_base, with_staff};

/// Typed and echoed in the terminal recording, found by search, present in the txt export.
const COMMAND: &str = "echo needle-4711";
/// The searched word.
const NEEDLE: &str = "needle-4711";
/// What the tests' inventory says (`timezone = "Asia/Tokyo"`): UTC+9 all year.
const TOKYO_OFFSET_S: i32 = 9 * 3600;
/// The browser window of the issue: a 1366×768 laptop less the browser's own bars.
const WINDOW: (u32, u32) = (1366, 660);

/// Seeds tanaka's SSH session on web01 (about 7 s): a prompt, [`COMMAND`] typed and echoed,
/// a policy event, [`NEEDLE`] printed later, then a note. Returns its id.
async fn seed_terminal_with_events(instance: &SekishoInstance) -> Result<SessionId> {
    use recorder::{ChannelId, Direction, EventKind};
    let dir = instance.dir.path();
    let key = recorder::signing::load(&dir.join("data/signing.key"))?;
    let recordings = recorder::LocalDir::new(dir.join("data/recordings"));
    let id = SessionId(uuid::Uuid::now_v7());
    let started = Utc::now();
    let header = recorder::Header {
        session_id: id.0,
        protocol: "ssh".into(),
        user: Some("tanaka".into()),
        contractor: Some("acme".into()),
        source: "127.0.10.11".into(),
        target: "web01".into(),
        start_unix_us: started.timestamp_micros(),
        metadata: Default::default(),
    };
    let w = recorder::RecordingWriter::create(
        &recordings,
        header,
        key,
        recorder::WriterConfig::default(),
    )
    .await?;
    let out = Direction::ServerToClient;
    let ch = ChannelId(0);
    let pause = |ms| tokio::time::sleep(Duration::from_millis(ms));
    w.data(out, ch, b"web01$ ".to_vec().into()).await?;
    pause(300).await;
    w.data(
        Direction::ClientToServer,
        ch,
        format!("{COMMAND}\r").into_bytes().into(),
    )
    .await?;
    w.data(out, ch, format!("{COMMAND}\r\n").into_bytes().into())
        .await?;
    pause(500).await;
    // Details in Japanese: they are recorded text, shown as they are on both pages.
    w.event(EventKind::Policy, "再評価で許可").await?;
    pause(3000).await;
    w.data(out, ch, format!("{NEEDLE}\r\nweb01$ ").into_bytes().into())
        .await?;
    pause(1000).await;
    w.event(EventKind::Note, "監査メモ").await?;
    pause(2000).await;
    let summary = w.finish().await?;
    let catalogue =
        Catalogue::connect(&format!("sqlite://{}/data/sekisho.db", dir.display())).await?;
    catalogue
        .session_started(&NewSession {
            id,
            instance: InstanceId::new("e2e-web-seed")?,
            protocol: Protocol::Ssh,
            user: "tanaka".into(),
            contractor: "acme".into(),
            source: "127.0.10.11".parse()?,
            target: "web01".into(),
            path: "internet-vpn".into(),
            console_session: None,
            started_at: started,
            recording: Some(summary.location.clone()),
            detail: None,
        })
        .await?;
    catalogue
        .session_ended(
            id,
            Utc::now(),
            recorder::catalogue::Outcome::Completed,
            None,
        )
        .await?;
    catalogue.close().await;
    Ok(id)
}

/// Presses `key` with nothing focused (the page's shortcuts listen on the document).
async fn press(b: &Browser, key: char) -> Result<()> {
    b.client
        .execute(
            "if (document.activeElement && document.activeElement !== document.body) \
             document.activeElement.blur();",
            vec![],
        )
        .await?;
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    b.client.perform_actions(keys).await?;
    Ok(())
}

/// The value at `pointer` in `v` (null when absent).
fn get<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&Value::Null)
}

/// Runs `script` (a function body) in the page and returns its value.
async fn js(b: &Browser, script: &str) -> Result<Value> {
    Ok(b.client.execute(script, vec![]).await?)
}

/// Waits (up to 10 s) until `script` returns true.
async fn wait_js(b: &Browser, script: &str) -> Result<bool> {
    for _ in 0..100 {
        if js(b, script).await?.as_bool() == Some(true) {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

/// The moment on screen (`data-at` of `view`).
async fn at(b: &Browser, view: &str) -> Result<u64> {
    attr(b, view, "data-at")
        .await?
        .and_then(|v| v.parse().ok())
        .context("no data-at")
}

/// Waits until the moment on screen is `want` (within 1 ms: the page floors milliseconds).
async fn wait_exact(b: &Browser, view: &str, want: u64) -> Result<()> {
    let got = wait_at(b, view, |v| v.abs_diff(want) <= 1).await?;
    ensure!(
        got.is_some_and(|v| v.abs_diff(want) <= 1),
        "{view} at {got:?}, wanted {want}"
    );
    Ok(())
}

/// A download fetched by the page with its own cookie: status, Content-Disposition, the
/// first bytes and the body's start as text.
struct Download {
    status: u64,
    disposition: String,
    head: Vec<u8>,
    text: String,
}

async fn download(b: &Browser, path: &str) -> Result<Download> {
    let v = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch(arguments[0], {credentials: 'same-origin'}).then(async r => {\
               const buf = new Uint8Array(await r.arrayBuffer());\
               done({status: r.status, disposition: r.headers.get('Content-Disposition') || '',\
                     head: Array.from(buf.slice(0, 16)),\
                     text: new TextDecoder().decode(buf.slice(0, 8192))});\
             }, e => done({status: 0, disposition: '', head: [], text: String(e)}));",
            vec![serde_json::json!(path)],
        )
        .await?;
    Ok(Download {
        status: get(&v, "/status").as_u64().context("status")?,
        disposition: get(&v, "/disposition")
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        head: get(&v, "/head")
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_u64().and_then(|x| u8::try_from(x).ok()))
                    .collect()
            })
            .unwrap_or_default(),
        text: get(&v, "/text").as_str().unwrap_or_default().to_owned(),
    })
}

/// The name a download of `id` gets: `sekisho-USER-TARGET-YYYYMMDD-HHMM-SHORTID.EXT`, the
/// start (`data-start-ms` of the page) in Tokyo time.
fn expected_name(
    user: &str,
    target: &str,
    start_ms: i64,
    id: SessionId,
    ext: &str,
) -> Result<String> {
    let tokyo = FixedOffset::east_opt(TOKYO_OFFSET_S).context("offset")?;
    let start = tokyo
        .timestamp_millis_opt(start_ms)
        .single()
        .context("start")?;
    let hex = id.0.simple().to_string();
    let short = hex.get(hex.len().saturating_sub(8)..).context("id")?;
    Ok(format!(
        "sekisho-{user}-{target}-{}-{short}.{ext}",
        start.format("%Y%m%d-%H%M")
    ))
}

/// HH:MM[:SS] in Tokyo of `start_ms + ms`.
fn tokyo_clock(start_ms: i64, ms: i64, seconds: bool) -> Result<String> {
    let tokyo = FixedOffset::east_opt(TOKYO_OFFSET_S).context("offset")?;
    let t = tokyo
        .timestamp_millis_opt(start_ms + ms)
        .single()
        .context("time")?;
    Ok(t.format(if seconds { "%H:%M:%S" } else { "%H:%M" })
        .to_string())
}

/// Switches the interface language (the switch link's own address).
async fn set_lang(b: &Browser, base: &str, lang: &str) -> Result<()> {
    b.goto(&format!("{base}/lang/{lang}")).await?;
    let html_lang = js(b, "return document.documentElement.lang;").await?;
    ensure!(
        html_lang.as_str() == Some(lang),
        "the page is in {html_lang}, not {lang}"
    );
    Ok(())
}

/// Opens the player of `id` at 1366×660 and waits for its first frame and its timeline.
async fn open_player(b: &Browser, base: &str, id: SessionId, view: &str) -> Result<()> {
    b.window(WINDOW.0, WINDOW.1).await?;
    b.goto(&format!("{base}/sessions/{id}/play")).await?;
    ensure!(
        wait_at(b, view, |_| true).await?.is_some(),
        "{view}: no frame drawn"
    );
    ensure!(
        wait_js(
            b,
            "return document.getElementById('player').dataset.ready === '1';"
        )
        .await?,
        "the timeline never loaded"
    );
    Ok(())
}

/// The play button, the slider and (when `view` is given) the picture are inside the window
/// without scrolling.
async fn check_fits(b: &Browser, view: Option<&str>) -> Result<Value> {
    let v = b
        .client
        .execute(
            "window.scrollTo(0, 0);\
             const box = id => { const r = document.getElementById(id).getBoundingClientRect();\
               return {top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width, height: r.height}; };\
             return {pause: box('pause'), slider: box('slider'), view: arguments[0] ? box(arguments[0]) : null,\
               h: window.innerHeight, w: window.innerWidth};",
            vec![serde_json::json!(view)],
        )
        .await?;
    let h = get(&v, "/h").as_f64().context("innerHeight")?;
    let w = get(&v, "/w").as_f64().context("innerWidth")?;
    for part in ["pause", "slider", "view"] {
        if part == "view" && view.is_none() {
            continue;
        }
        let r = get(&v, &format!("/{part}"));
        let (top, bottom, right) = (
            get(r, "/top").as_f64().context("top")?,
            get(r, "/bottom").as_f64().context("bottom")?,
            get(r, "/right").as_f64().context("right")?,
        );
        ensure!(
            top >= 0.0 && bottom <= h && right <= w + 0.5,
            "{part} is outside the {w}x{h} window without scrolling: {r}"
        );
    }
    Ok(v)
}

/// Play then pause: the moment advances while playing and stays once paused.
async fn check_play_pause(b: &Browser, view: &str) -> Result<()> {
    press(b, '0').await?;
    wait_exact(b, view, 0).await?;
    b.click("pause").await?;
    ensure!(
        attr(b, "pause", "data-playing").await?.as_deref() == Some("1"),
        "the play button did not start playing"
    );
    let moved = wait_at(b, view, |v| v > 0).await?;
    ensure!(
        moved.is_some_and(|v| v > 0),
        "playing did not advance (at {moved:?})"
    );
    b.click("pause").await?;
    ensure!(
        attr(b, "pause", "data-playing").await?.as_deref() == Some("0"),
        "the button did not pause"
    );
    // A frame asked for before the pause may still land (graphical frames take a while in
    // a debug build): wait for the screen to settle, then it must stay.
    let mut stopped = at(b, view).await?;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = at(b, view).await?;
        if now == stopped {
            break;
        }
        stopped = now;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    ensure!(at(b, view).await? == stopped, "still playing after pause");
    Ok(())
}

/// The shortcuts: space, ←/→, ↑/↓, digits, "?" and Esc for the help; none while typing in
/// the search box (when there is one).
async fn check_shortcuts(
    b: &Browser,
    view: &str,
    end: u64,
    help_title: &str,
    shot: &str,
) -> Result<()> {
    // Space plays and pauses.
    press(b, ' ').await?;
    ensure!(
        attr(b, "pause", "data-playing").await?.as_deref() == Some("1"),
        "space did not play"
    );
    press(b, ' ').await?;
    ensure!(
        attr(b, "pause", "data-playing").await?.as_deref() == Some("0"),
        "space did not pause"
    );
    // Digits jump to tenths of the session.
    press(b, '5').await?;
    wait_exact(b, view, end / 2).await?;
    press(b, '0').await?;
    wait_exact(b, view, 0).await?;
    // → and ← move 5 s.
    press(b, Key::Right.into()).await?;
    wait_exact(b, view, 5000.min(end)).await?;
    press(b, Key::Left.into()).await?;
    wait_exact(b, view, 0).await?;
    // ↑ and ↓ step through the speeds (1× is where it starts).
    press(b, Key::Up.into()).await?;
    ensure!(
        attr(b, "speed-2", "class")
            .await?
            .unwrap_or_default()
            .contains("active"),
        "↑ did not choose 2×"
    );
    press(b, Key::Down.into()).await?;
    press(b, Key::Down.into()).await?;
    ensure!(
        attr(b, "speed-0_5", "class")
            .await?
            .unwrap_or_default()
            .contains("active"),
        "↓↓ did not choose 0.5×"
    );
    press(b, Key::Up.into()).await?;
    // "?" opens and closes the help; so do its button and Esc.
    press(b, '?').await?;
    ensure!(
        js(b, "return !document.getElementById('help').hidden;")
            .await?
            .as_bool()
            == Some(true),
        "? did not open the help"
    );
    let text = b.visible_text().await?;
    ensure!(
        text.contains(help_title),
        "the help does not show {help_title:?}"
    );
    b.screenshot(&format!("{shot}-help")).await?;
    press(b, '?').await?;
    ensure!(
        js(b, "return document.getElementById('help').hidden;")
            .await?
            .as_bool()
            == Some(true),
        "? did not close the help"
    );
    b.click("help-button").await?;
    ensure!(
        js(b, "return !document.getElementById('help').hidden;")
            .await?
            .as_bool()
            == Some(true),
        "the ? button did not open the help"
    );
    press(b, Key::Escape.into()).await?;
    ensure!(
        js(b, "return document.getElementById('help').hidden;")
            .await?
            .as_bool()
            == Some(true),
        "Esc did not close the help"
    );
    // "f" puts the picture full screen and takes it back.
    press(b, 'f').await?;
    ensure!(
        wait_js(
            b,
            "return !!document.fullscreenElement && document.fullscreenElement.id === 'stage';"
        )
        .await?,
        "f did not put the picture full screen"
    );
    press(b, 'f').await?;
    ensure!(
        wait_js(b, "return !document.fullscreenElement;").await?,
        "f did not leave full screen"
    );
    b.window(WINDOW.0, WINDOW.1).await?;
    // Typing in the search box is not a shortcut.
    if b.client.find(Locator::Id("search")).await.is_ok() {
        let before = at(b, view).await?;
        b.type_into("search", " 5?").await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        ensure!(
            attr(b, "pause", "data-playing").await?.as_deref() == Some("0"),
            "space in the search box played"
        );
        ensure!(
            at(b, view).await? == before,
            "a digit in the search box jumped"
        );
        ensure!(
            js(b, "return document.getElementById('help').hidden;")
                .await?
                .as_bool()
                == Some(true),
            "? in the search box opened the help"
        );
        let typed = js(b, "return document.getElementById('search').value;").await?;
        ensure!(typed.as_str() == Some(" 5?"), "the search box got {typed}");
        b.type_into("search", "").await?;
    }
    Ok(())
}

/// Wall-clock ticks in Tokyo time, and the clock shows the moment's time of day.
async fn check_wall_clock(b: &Browser, view: &str, start_ms: i64) -> Result<()> {
    ensure!(
        attr(b, "player", "data-tz").await?.as_deref() == Some("Asia/Tokyo"),
        "the page was not given the configured zone"
    );
    let v = js(
        b,
        "return {ticks: Array.from(document.querySelectorAll('#ticks .tick')).map(t => [Number(t.dataset.ms), t.textContent]),\
                 wall: document.getElementById('wallclock').textContent,\
                 tz: document.getElementById('timezone').textContent};",
    )
    .await?;
    let ticks = get(&v, "/ticks").as_array().context("ticks")?;
    ensure!(!ticks.is_empty(), "no wall-clock ticks on the timeline");
    for t in ticks {
        let ms = get(t, "/0").as_i64().context("tick ms")?;
        let label = get(t, "/1").as_str().context("tick label")?;
        let want = tokyo_clock(start_ms, ms, label.len() > 5)?;
        ensure!(
            label == want,
            "tick at {ms} ms reads {label}, {want} in Tokyo"
        );
    }
    ensure!(
        get(&v, "/tz").as_str() == Some("Asia/Tokyo"),
        "zone shown: {}",
        get(&v, "/tz")
    );
    let now = at(b, view).await?;
    let want = tokyo_clock(start_ms, i64::try_from(now)?, true)?;
    ensure!(
        get(&v, "/wall").as_str() == Some(want.as_str()),
        "the clock reads {} at {now} ms, {want} in Tokyo",
        get(&v, "/wall")
    );
    Ok(())
}

/// The Japanese page has no English words but the names it shows.
async fn check_no_english(b: &Browser, allowed: &[&str]) -> Result<()> {
    let text = b.visible_text().await?;
    let words = english_words(&text, allowed);
    ensure!(
        words.is_empty(),
        "English on the Japanese player: {words:?}\n--- text ---\n{text}"
    );
    Ok(())
}

/// The details of the recorded events of `id` (what the timeline gives the page), joined.
async fn recorded_details(b: &Browser, id: SessionId) -> Result<String> {
    let v = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.json())\
               .then(t => done(t.markers.map(m => m.detail).join(' ')), e => done(null));",
            vec![serde_json::json!(format!("/sessions/{id}/timeline"))],
        )
        .await?;
    v.as_str().map(str::to_owned).context("no timeline")
}

/// Names and recorded text that the pages show as they are.
const ALLOWED: &[&str] = &[
    "tanaka",
    "suzuki",
    "web01",
    "acme",
    "file-phys02",
    "Asia",
    "Tokyo",
    "Asia/Tokyo",
    "txt",
    "asciicast",
    "PNG",
    "MP4",
    "ZIP",
    "auditor",
    "contractor",
    "echo",
    "needle",
    "web01$",
    "sekisho",
    // The language switch names the other language in itself.
    "English",
];

async fn run_terminal(base: &str, id: SessionId) -> Result<()> {
    let b = Browser::start().await?;
    let result = async {
        login(&b, base, "suzuki").await?;
        for (lang, help_title, policy_label) in [
            ("en", "Keyboard shortcuts", "Policy event"),
            ("ja", "キーボードショートカット", "ポリシーイベント"),
        ] {
            set_lang(&b, base, lang).await?;
            open_player(&b, base, id, "screen").await?;
            let end: u64 = js(&b, "return Number(document.getElementById('slider').max);")
                .await?
                .as_u64()
                .context("slider max")?;
            ensure!(end > 6000, "the recording is {end} ms");
            let start_ms: i64 = attr(&b, "player", "data-start-ms")
                .await?
                .and_then(|v| v.parse().ok())
                .context("data-start-ms")?;

            // Fit to window: the screen, the play button and the slider are all visible.
            let fits = check_fits(&b, Some("screen")).await?;
            eprintln!("player controls ({lang}, terminal): at 1366x660: {fits}");
            b.screenshot(&format!("player-terminal-{lang}")).await?;

            check_play_pause(&b, "screen").await?;
            check_shortcuts(&b, "screen", end, help_title, &format!("player-terminal-{lang}")).await?;
            check_wall_clock(&b, "screen", start_ms).await?;

            // Policy events and notes: different classes and shapes, and a legend.
            let v = js(
                &b,
                "const s = sel => { const e = document.querySelector(sel); if (!e) return null;\
                   const c = getComputedStyle(e); return [c.backgroundColor, c.clipPath, c.borderRadius, e.getAttribute('aria-label')]; };\
                 return {policy: s('#markers .marker.event-policy'), note: s('#markers .marker.event-note'),\
                   listPolicy: document.querySelectorAll('#marker-list li.event-policy').length,\
                   listNote: document.querySelectorAll('#marker-list li.event-note').length,\
                   legend: document.querySelectorAll('#legend li .swatch').length};",
            )
            .await?;
            let (policy, note) = (get(&v, "/policy"), get(&v, "/note"));
            ensure!(!policy.is_null() && !note.is_null(), "policy event or note missing: {v}");
            ensure!(
                get(policy, "/0") != get(note, "/0") && (get(policy, "/1") != get(note, "/1") || get(policy, "/2") != get(note, "/2")),
                "policy events and notes look alike: {v}"
            );
            ensure!(
                get(policy, "/3").as_str().unwrap_or_default().contains(policy_label),
                "the policy marker is not named as one: {v}"
            );
            ensure!(
                get(&v, "/listPolicy").as_u64() == Some(1) && get(&v, "/listNote").as_u64() == Some(1),
                "the event list does not tell them apart: {v}"
            );
            ensure!(get(&v, "/legend").as_u64() == Some(4), "no legend: {v}");

            // Search: hits on the timeline, the word marked on the screen, a hit seeks.
            b.type_into("search", NEEDLE).await?;
            b.click("search-go").await?;
            ensure!(
                wait_js(&b, "return document.querySelectorAll('#markers .hitmark').length >= 2;").await?,
                "no search hits on the timeline"
            );
            let last_hit: u64 = js(
                &b,
                "const h = document.querySelectorAll('#markers .hitmark'); return Number(h[h.length - 1].dataset.ms);",
            )
            .await?
            .as_u64()
            .context("hit ms")?;
            b.client
                .execute(
                    "const h = document.querySelectorAll('#markers .hitmark'); h[h.length - 1].click();",
                    vec![],
                )
                .await?;
            wait_exact(&b, "screen", last_hit).await?;
            ensure!(
                wait_js(&b, &format!(
                    "return Array.from(document.querySelectorAll('#screen mark.screen-hit')).some(m => m.textContent === '{NEEDLE}');"
                ))
                .await?,
                "the word is not marked on the screen"
            );
            b.screenshot(&format!("player-terminal-search-{lang}")).await?;

            // Exports: txt and asciicast, named after the session; the bundle for an auditor.
            let txt = download(&b, &format!("/sessions/{id}/export/txt")).await?;
            ensure!(txt.status == 200, "txt: {}", txt.status);
            let name = expected_name("tanaka", "web01", start_ms, id, "txt")?;
            ensure!(
                txt.disposition == format!("attachment; filename=\"{name}\""),
                "txt named {:?}, wanted {name}",
                txt.disposition
            );
            ensure!(txt.text.contains(COMMAND), "txt lacks the command: {}", txt.text);
            let cast = download(&b, &format!("/sessions/{id}/export/asciicast")).await?;
            ensure!(cast.status == 200, "asciicast: {}", cast.status);
            ensure!(cast.disposition.ends_with(".cast\""), "asciicast named {}", cast.disposition);
            let first: Value = serde_json::from_str(cast.text.lines().next().unwrap_or(""))
                .context("the asciicast's first line is not JSON")?;
            ensure!(first.get("version").is_some(), "asciicast header: {first}");
            for (link, path) in [
                ("export-txt", "/export/txt"),
                ("export-asciicast", "/export/asciicast"),
                ("export-bundle", "/bundle"),
            ] {
                let href = attr(&b, link, "href").await?.unwrap_or_default();
                ensure!(href.ends_with(path), "{link} points at {href}");
            }
            let bundle = download(&b, &format!("/sessions/{id}/bundle")).await?;
            ensure!(
                bundle.status == 200 && bundle.head.starts_with(b"PK"),
                "bundle: {}",
                bundle.status
            );
            // Clicking the button downloads without leaving the page or telling a failure.
            b.click("export-txt").await?;
            ensure!(
                wait_js(&b, "return document.getElementById('export-status').textContent === '';").await?,
                "the txt button told a failure"
            );
            ensure!(b.path().await?.ends_with("/play"), "the export button left the page");
            // A format for the other kind of session is refused, in the page's language.
            let png = download(&b, &format!("/sessions/{id}/export/png")).await?;
            ensure!(png.status == 422, "png of a terminal: {}", png.status);

            if lang == "ja" {
                check_no_english(&b, ALLOWED).await?;
            }
        }
        Ok(())
    }
    .await;
    b.close().await?;
    result
}

async fn run_graphical(base: &str, id: SessionId) -> Result<()> {
    let b = Browser::start().await?;
    let result = async {
        long_scripts(&b).await?;
        login(&b, base, "suzuki").await?;
        for (lang, help_title) in [("en", "Keyboard shortcuts"), ("ja", "キーボードショートカット")] {
            set_lang(&b, base, lang).await?;
            open_player(&b, base, id, "canvas").await?;
            let end: u64 = js(&b, "return Number(document.getElementById('slider').max);")
                .await?
                .as_u64()
                .context("slider max")?;
            let start_ms: i64 = attr(&b, "player", "data-start-ms")
                .await?
                .and_then(|v| v.parse().ok())
                .context("data-start-ms")?;

            // Fit to window: the 1024x768 canvas is scaled down, aspect kept, all in view.
            let fits = check_fits(&b, Some("canvas")).await?;
            let (w, h) = (
                get(&fits, "/view/width").as_f64().context("width")?,
                get(&fits, "/view/height").as_f64().context("height")?,
            );
            eprintln!("player controls ({lang}, RDP): canvas shown at {w}x{h} in 1366x660");
            ensure!(w < 1024.0 && h < 768.0, "the canvas was not scaled down: {w}x{h}");
            ensure!(
                (w / h - 1024.0 / 768.0).abs() < 0.02,
                "the canvas lost its aspect ratio: {w}x{h}"
            );
            b.screenshot(&format!("player-rdp-{lang}")).await?;
            // Actual size: one recorded pixel per screen pixel, scrolling in its box, and
            // the controls stay in view.
            b.click("fit-toggle").await?;
            let actual = check_fits(&b, None).await?;
            let v = js(&b, "const r = document.getElementById('canvas').getBoundingClientRect(); return [r.width, r.height];").await?;
            ensure!(
                get(&v, "/0").as_f64() == Some(1024.0) && get(&v, "/1").as_f64() == Some(768.0),
                "actual size shows {v}"
            );
            eprintln!("player controls ({lang}, RDP): actual size: {actual}");
            b.click("fit-toggle").await?;

            check_play_pause(&b, "canvas").await?;
            check_shortcuts(&b, "canvas", end, help_title, &format!("player-rdp-{lang}")).await?;
            check_wall_clock(&b, "canvas", start_ms).await?;

            // Exports: PNG of the moment on screen (the button follows it), MP4 of it all.
            press(&b, '5').await?;
            wait_exact(&b, "canvas", end / 2).await?;
            let href = attr(&b, "export-png", "href").await?.unwrap_or_default();
            let want_t = format!("t={:.3}", (end / 2) as f64 / 1000.0);
            ensure!(href.contains(&want_t), "PNG button points at {href}, not {want_t}");
            let png = download(&b, &href).await?;
            ensure!(png.status == 200, "png: {} {}", png.status, png.text);
            ensure!(png.head.starts_with(b"\x89PNG\r\n\x1a\n"), "png body: {:?}", png.head);
            let name = expected_name("tanaka", "file-phys02", start_ms, id, "png")?;
            ensure!(
                png.disposition == format!("attachment; filename=\"{name}\""),
                "png named {:?}, wanted {name}",
                png.disposition
            );
            let mp4 = download(&b, &format!("/sessions/{id}/export/mp4")).await?;
            ensure!(mp4.status == 200, "mp4: {} {}", mp4.status, mp4.text);
            ensure!(mp4.head.get(4..8) == Some(b"ftyp"), "mp4 body: {:?}", mp4.head);
            ensure!(mp4.disposition.ends_with(".mp4\""), "mp4 named {}", mp4.disposition);
            let txt = download(&b, &format!("/sessions/{id}/export/txt")).await?;
            ensure!(txt.status == 422, "txt of an RDP session: {}", txt.status);
            ensure!(
                b.client.find(Locator::Id("export-bundle")).await.is_ok(),
                "no bundle button for an auditor"
            );

            if lang == "ja" {
                // The events' details are recorded text (the proxy writes them in English
                // when it strips a channel, say) and are shown as they were recorded.
                let recorded = recorded_details(&b, id).await?;
                let mut allowed: Vec<&str> = ALLOWED.to_vec();
                allowed.extend(recorded.split(|c: char| !c.is_ascii_alphanumeric()));
                check_no_english(&b, &allowed).await?;
            }
        }
        // The session's owner may export it but takes no bundle; another contractor gets 404.
        b.goto(&format!("{base}/lang/en")).await?;
        b.client.find(Locator::Id("logout")).await?.click().await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        login(&b, base, "tanaka").await?;
        open_player(&b, base, id, "canvas").await?;
        ensure!(
            b.client.find(Locator::Id("export-bundle")).await.is_err(),
            "a contractor is offered the evidence bundle"
        );
        let png = download(&b, &format!("/sessions/{id}/export/png?t=1")).await?;
        ensure!(png.status == 200, "tanaka's own png: {}", png.status);
        b.client.find(Locator::Id("logout")).await?.click().await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        login(&b, base, "yamada").await?;
        for format in ["png", "mp4", "txt", "nonsense"] {
            let d = download(&b, &format!("/sessions/{id}/export/{format}")).await?;
            ensure!(d.status == 404, "yamada exports tanaka's {format}: {}", d.status);
        }
        Ok(())
    }
    .await;
    b.close().await?;
    result
}

/// Raises the WebDriver script timeout: an MP4 export encodes the whole recording.
async fn long_scripts(b: &Browser) -> Result<()> {
    b.client
        .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
            Some(Duration::from_secs(120)),
            Some(Duration::from_secs(60)),
            None,
        ))
        .await?;
    Ok(())
}

/// The terminal player's controls in both languages (see the module docs).
#[test]
fn web_player_controls_terminal_in_chromium() -> Result<()> {
    if !require_peers(&["chromium", "chromedriver"])? {
        return Ok(());
    }
    let instance = SekishoInstance::start(&with_staff(demo_inventory()))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let id = seed_terminal_with_events(&instance).await?;
        let base = web_base(&instance).await?;
        run_terminal(&base, id).await
    });
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}

/// The graphical (RDP) player's controls in both languages, with PNG and MP4 exports.
#[test]
fn web_player_controls_rdp_in_chromium() -> Result<()> {
    if !require_peers(&["chromium", "chromedriver", "ffmpeg"])? {
        return Ok(());
    }
    let instance = SekishoInstance::start(&with_staff(demo_inventory()))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let (id, _) = seed_rdp(&instance).await?;
        let base = web_base(&instance).await?;
        run_graphical(&base, id).await
    });
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}
