//! Finding what someone did across sessions in Chromium, in Japanese and English: the find
//! page and the per-session command list (issue #18).
//!
//! A real terminal session: the OpenSSH client as tanaka through Sekisho's SSH door to app02's
//! console on a real sshd (bash as the lab user). tanaka runs a command with a unique word,
//! a line edited with Backspace, and answers a password prompt (`read -s`, which turns the
//! terminal's echo off as sudo does) with a secret. Once the session has ended and Sekisho
//! has indexed it, kobayashi (security) finds the command and the screen text, narrows them
//! with the filters, and opens a hit in the player at its moment; the secret is in neither
//! the page nor the catalogue; tanaka finds his own command, sato (another contractor of the
//! same company) finds nothing of tanaka's; the Japanese pages have no English words but
//! names and what was typed; screenshots of each language go to the test output.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use recorder::catalogue::{Catalogue, TextQuery};

use crate::ssh::ssh_peers;
use crate::support::{InstanceOptions, SekishoInstance, require_peers};
use crate::web::web_browser::{Browser, english_words};
use crate::web::{login, wait_at, web_base, with_staff};

/// tanaka's VDI desktop in the demo inventory.
const TANAKA_DESKTOP: &str = "127.0.10.11";
/// The unique word of the first command (its output prints it again, on screen).
const WORD: &str = "Kirin4417";
/// Typed at the password prompt with echo off: must never be indexed.
const SECRET: &str = "Hunter2-Zx9-Secret";
/// What the page shows as it is in Japanese too: names, products and what was typed.
const ALLOWED: &[&str] = &[
    "tanaka",
    "sato",
    "kobayashi",
    "acme",
    "app02",
    "SSH",
    "RDP",
    "VNC",
    "labuser",
    "echo",
    // The access path's id, shown on the session page as configured.
    "internet-vpn",
];

/// Runs the session; returns its id once it has ended.
fn terminal_session(instance: &SekishoInstance) -> Result<String> {
    let askpass = ssh_peers::askpass(instance.dir.path(), ssh_peers::DEMO_PASSWORD, None)?;
    let mut s = ssh_peers::ssh_tt(
        &askpass,
        instance.listen.ssh.port(),
        TANAKA_DESKTOP,
        "tanaka+app02",
    )?;
    s.wait_for("this session is recorded", Duration::from_secs(30))?;
    // A moment for the shell's first prompt, so the keys below follow it as a person's do.
    std::thread::sleep(Duration::from_secs(2));
    s.send(format!("echo {WORD}-$((6*7))\n").as_bytes())?;
    s.wait_for(&format!("{WORD}-42"), Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(1500));
    // "echo wrnog" corrected with three Backspaces (DEL, as terminals send it).
    s.send(b"echo wrnog\x7f\x7f\x7fong-EDITED\n")?;
    s.wait_for("wrong-EDITED", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(500));
    s.send(b"read -s -p 'Password: ' pw; echo; echo got-${#pw}\n")?;
    s.wait_for("Password: ", Duration::from_secs(20))?;
    std::thread::sleep(Duration::from_millis(500));
    s.send(format!("{SECRET}\n").as_bytes())?;
    s.wait_for(&format!("got-{}", SECRET.len()), Duration::from_secs(20))?;
    s.send(b"exit\n")?;
    s.wait_exit(Duration::from_secs(20))?;
    let row = instance.wait_until(Duration::from_secs(15), "the ended session", || {
        Ok(instance.sessions()?.into_iter().find(|r| {
            r.get("target").is_some_and(|t| t == "app02")
                && r.get("ended_at").is_some_and(|e| !e.is_null())
        }))
    })?;
    Ok(row
        .get("id")
        .and_then(|v| v.as_str())
        .context("id")?
        .to_owned())
}

/// The catalogue's hits for `text` (any kind, any session).
async fn catalogue_hits(instance: &SekishoInstance, text: &str) -> Result<Vec<String>> {
    let url = format!("sqlite://{}", instance.path("data/sekisho.db").display());
    let c = Catalogue::connect(&url).await?;
    let hits = c
        .search_text(&TextQuery {
            text: text.to_owned(),
            limit: 100,
            ..TextQuery::default()
        })
        .await?;
    c.close().await;
    Ok(hits.into_iter().map(|h| h.text).collect())
}

/// Waits (up to 30 s) until the catalogue holds the session's index.
async fn wait_indexed(instance: &SekishoInstance) -> Result<()> {
    for _ in 0..300 {
        if !catalogue_hits(instance, WORD).await?.is_empty() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the session was never indexed")
}

/// The page's text a reader sees, without what was recorded (in `code`: commands and
/// screen lines are the session's, not the UI's).
async fn ui_text(b: &Browser) -> Result<String> {
    let mut text = b.visible_text().await?;
    let v = b
        .client
        .execute(
            // Longest first: a command is also part of the screen line that echoed it.
            "return Array.from(document.querySelectorAll('code')).map(e => e.innerText)\
             .sort((a, b) => b.length - a.length);",
            vec![],
        )
        .await?;
    for part in v.as_array().into_iter().flatten() {
        if let Some(p) = part.as_str().filter(|p| !p.is_empty()) {
            text = text.replace(p, "");
        }
    }
    Ok(text)
}

/// The texts of the hits' lines, in page order.
async fn hit_lines(b: &Browser) -> Result<Vec<String>> {
    let v = b
        .client
        .execute(
            "return Array.from(document.querySelectorAll('li.hit code')).map(e => e.innerText);",
            vec![],
        )
        .await?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect())
}

/// The kinds of the hits, in page order.
async fn hit_kinds(b: &Browser) -> Result<Vec<String>> {
    let v = b
        .client
        .execute(
            "return Array.from(document.querySelectorAll('li.hit')).map(e => e.dataset.kind);",
            vec![],
        )
        .await?;
    Ok(v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
        .collect())
}

/// The HTTP status of a same-origin GET made by the page.
async fn status_of(b: &Browser, path: &str) -> Result<u64> {
    let v = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch(arguments[0], {credentials: 'same-origin'}).then(r => done(r.status), () => done(0));",
            vec![serde_json::json!(path)],
        )
        .await?;
    v.as_u64().context("status")
}

/// Clicks hit `id` and checks the player of `session` opens at its moment.
async fn open_hit(b: &Browser, id: &str, session: &str) -> Result<()> {
    let href = b
        .client
        .find(fantoccini::Locator::Id(id))
        .await?
        .attr("href")
        .await?
        .context("hit href")?;
    ensure!(
        href.starts_with(&format!("/sessions/{session}/play?t=")),
        "the hit links to {href}"
    );
    let t: f64 = href.split("?t=").nth(1).context("no t")?.parse()?;
    ensure!(t > 0.0, "the hit is at the session's very start: {href}");
    b.click(id).await?;
    let at = wait_at(b, "screen", |ms| ms > 0).await?;
    let at = at.with_context(|| format!("the player of {session} never drew a moment"))?;
    ensure!(
        (at as f64 - t * 1000.0).abs() < 1500.0,
        "the player opened at {at} ms, the hit is at {t} s"
    );
    Ok(())
}

/// Finds `q` with `filters` (a query string tail) and returns the page's HTML.
async fn find(b: &Browser, base: &str, q: &str, filters: &str) -> Result<String> {
    b.goto(&format!("{base}/search?q={q}{filters}")).await?;
    b.source().await
}

async fn set_lang(b: &Browser, base: &str, lang: &str) -> Result<()> {
    b.goto(&format!("{base}/lang/{lang}")).await
}

/// The auditor's part, in `lang`.
async fn review(b: &Browser, base: &str, session: &str, lang: &str) -> Result<()> {
    set_lang(b, base, lang).await?;
    // The command and the line it printed, each once; the screen line of the echoed command
    // too.
    let src = find(b, base, &WORD.to_lowercase(), "").await?;
    ensure!(src.contains("id=\"hit-0\""), "{lang}: no hit for {WORD}");
    let lines = hit_lines(b).await?;
    let kinds = hit_kinds(b).await?;
    ensure!(
        lines
            .iter()
            .zip(&kinds)
            .any(|(l, k)| k == "commands" && l == &format!("echo {WORD}-$((6*7))")),
        "{lang}: the command is not among the hits: {lines:?} {kinds:?}"
    );
    ensure!(
        lines
            .iter()
            .zip(&kinds)
            .any(|(l, k)| k == "screen" && l == &format!("{WORD}-42")),
        "{lang}: the printed line is not among the hits: {lines:?} {kinds:?}"
    );
    ensure!(
        src.contains(&format!("<mark>{WORD}</mark>")),
        "{lang}: the match is not marked"
    );
    b.screenshot(&format!("find-{lang}-hits")).await?;
    if lang == "ja" {
        let words = english_words(&ui_text(b).await?, ALLOWED);
        ensure!(
            words.is_empty(),
            "English on the Japanese Find page: {words:?}"
        );
        ensure!(src.contains("<h1>検索</h1>"), "ja: the title");
    } else {
        ensure!(src.contains("<h1>Find</h1>"), "en: the title");
    }

    // Filters narrow: commands only, screen text only, by user, protocol, target, period.
    find(b, base, WORD, "&kind=commands").await?;
    ensure!(
        hit_kinds(b).await?.iter().all(|k| k == "commands") && !hit_lines(b).await?.is_empty(),
        "{lang}: kind=commands"
    );
    find(b, base, WORD, "&kind=screen").await?;
    ensure!(
        hit_kinds(b).await?.iter().all(|k| k == "screen") && !hit_lines(b).await?.is_empty(),
        "{lang}: kind=screen"
    );
    let src = find(b, base, WORD, "&user=sato").await?;
    ensure!(
        src.contains("id=\"no-hits\""),
        "{lang}: user=sato finds tanaka's"
    );
    let src = find(b, base, WORD, "&protocol=rdp").await?;
    ensure!(src.contains("id=\"no-hits\""), "{lang}: protocol=rdp");
    let src = find(b, base, WORD, "&target=web01").await?;
    ensure!(src.contains("id=\"no-hits\""), "{lang}: target=web01");
    let src = find(b, base, WORD, "&target=app02&contractor=acme&user=tanaka").await?;
    ensure!(src.contains("id=\"hit-0\""), "{lang}: the exact filters");
    let src = find(b, base, WORD, "&from=2001-01-01&to=2001-01-02").await?;
    ensure!(src.contains("id=\"no-hits\""), "{lang}: a period long ago");
    // The form drives the same: type, pick a kind, submit.
    b.goto(&format!("{base}/search")).await?;
    b.type_into("q", "wrong-edited").await?;
    b.client
        .execute(
            "document.getElementById('f-kind').value = 'commands';",
            vec![],
        )
        .await?;
    b.click("search-go").await?;
    crate::web::wait_path(b, |p| p.contains("q=wrong-edited")).await?;
    let lines = hit_lines(b).await?;
    ensure!(
        lines == ["echo wrong-EDITED"],
        "{lang}: the edited line is found as it ran: {lines:?}"
    );
    b.screenshot(&format!("find-{lang}-commands")).await?;

    // The secret: not on the page, not in the catalogue; the prompt line itself is there.
    let src = find(b, base, SECRET, "").await?;
    ensure!(
        src.contains("id=\"no-hits\""),
        "{lang}: the secret was found"
    );
    let src = find(b, base, "hunter2", "").await?;
    ensure!(
        src.contains("id=\"no-hits\""),
        "{lang}: part of the secret was found"
    );
    find(b, base, "Password:", "&kind=screen").await?;
    ensure!(
        hit_lines(b)
            .await?
            .iter()
            .all(|l| !l.contains("Hunter2") && !l.contains("Secret")),
        "{lang}: the prompt's line holds the secret"
    );

    // Bad input is a clear message with 400.
    let long = "x".repeat(300);
    ensure!(
        status_of(b, &format!("/search?q={long}")).await? == 400,
        "{lang}: a long query"
    );
    let src = find(b, base, WORD, "&from=yesterday").await?;
    ensure!(src.contains("id=\"find-error\""), "{lang}: a bad date");
    ensure!(
        status_of(b, &format!("/search?q={WORD}&from=yesterday")).await? == 400,
        "{lang}: a bad date's status"
    );
    if lang == "ja" {
        let allowed: Vec<&str> = ALLOWED.iter().copied().chain(["yesterday"]).collect();
        let words = english_words(&ui_text(b).await?, &allowed);
        ensure!(words.is_empty(), "English on the Japanese error: {words:?}");
    }
    b.screenshot(&format!("find-{lang}-bad-date")).await?;

    // A hit opens the player at its moment.
    find(b, base, WORD, "&kind=commands").await?;
    open_hit(b, "hit-0", session).await?;
    b.screenshot(&format!("find-{lang}-player")).await?;
    Ok(())
}

/// Find across a real terminal session, in both languages, for security staff and two
/// contractors; the session's commands in time order (what its page lists).
#[test]
fn find_commands_and_screen_text_of_a_real_terminal_session_in_chromium() -> Result<()> {
    if !require_peers(&["chromium", "chromedriver", "ssh", "sshd"])? {
        return Ok(());
    }
    let sshd = ssh_peers::start_sshd(&[])?;
    let instance = SekishoInstance::start_with(
        &with_staff(ssh_peers::console_inventory(14501, sshd.port)),
        InstanceOptions {
            secrets: Some(ssh_peers::console_secrets()),
            ..InstanceOptions::default()
        },
    )?;
    let session = terminal_session(&instance)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        wait_indexed(&instance).await?;
        // The secret is nowhere in the index.
        ensure!(
            catalogue_hits(&instance, SECRET).await?.is_empty()
                && catalogue_hits(&instance, "hunter2").await?.is_empty(),
            "the secret is in the catalogue"
        );
        for file in ["data/sekisho.db", "data/sekisho.db-wal"] {
            let bytes = std::fs::read(instance.path(file)).unwrap_or_default();
            ensure!(
                !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                "the secret is in {file}"
            );
        }
        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        let result = async {
            b.window(1366, 900).await?;
            login(&b, &base, "kobayashi").await?;
            for lang in ["ja", "en"] {
                review(&b, &base, &session, lang).await?;
            }
            // The session's commands in time order (the data of its page's list).
            set_lang(&b, &base, "en").await?;
            find(&b, &base, "echo", "&kind=commands&user=tanaka").await?;
            let lines = hit_lines(&b).await?;
            ensure!(
                lines
                    == [
                        "read -s -p 'Password: ' pw; echo; echo got-${#pw}".to_owned(),
                        "echo wrong-EDITED".to_owned(),
                        format!("echo {WORD}-$((6*7))"),
                    ],
                "the commands, newest first: {lines:?}"
            );
            b.click("logout").await?;

            // tanaka finds his own command; sato (same company) finds nothing of tanaka's,
            // whatever the form says.
            login(&b, &base, "tanaka").await?;
            for lang in ["ja", "en"] {
                set_lang(&b, &base, lang).await?;
                let src = find(&b, &base, WORD, "").await?;
                ensure!(src.contains("id=\"hit-0\""), "{lang}: tanaka finds nothing");
                b.screenshot(&format!("find-{lang}-contractor")).await?;
                if lang == "ja" {
                    let words = english_words(&ui_text(&b).await?, ALLOWED);
                    ensure!(
                        words.is_empty(),
                        "English on tanaka's Japanese page: {words:?}"
                    );
                }
            }
            b.click("logout").await?;
            login(&b, &base, "sato").await?;
            for filters in [
                "",
                "&user=tanaka",
                "&contractor=acme&user=tanaka&target=app02",
            ] {
                let src = find(&b, &base, WORD, filters).await?;
                ensure!(
                    src.contains("id=\"no-hits\"") && !src.contains(&session),
                    "sato found tanaka's session with {filters:?}"
                );
            }
            anyhow::Ok(())
        }
        .await;
        b.close().await?;
        result
    });
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}

/// The session page lists the commands run, each a link into the player at its moment.
/// Ignored until the session page (pages.rs) calls `search::command_list`.
#[test]
fn find_command_list_on_session_page() -> Result<()> {
    if !require_peers(&["chromium", "chromedriver", "ssh", "sshd"])? {
        return Ok(());
    }
    let sshd = ssh_peers::start_sshd(&[])?;
    let instance = SekishoInstance::start_with(
        &with_staff(ssh_peers::console_inventory(14501, sshd.port)),
        InstanceOptions {
            secrets: Some(ssh_peers::console_secrets()),
            ..InstanceOptions::default()
        },
    )?;
    let session = terminal_session(&instance)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        wait_indexed(&instance).await?;
        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        let result = async {
            login(&b, &base, "kobayashi").await?;
            for (lang, title) in [("ja", "実行したコマンド"), ("en", "Commands run")] {
                set_lang(&b, &base, lang).await?;
                b.goto(&format!("{base}/sessions/{session}")).await?;
                let src = b.source().await?;
                ensure!(src.contains(title), "{lang}: no command list");
                let v = b
                    .client
                    .execute(
                        "return Array.from(document.querySelectorAll('#commands li code'))\
                         .map(e => e.innerText);",
                        vec![],
                    )
                    .await?;
                let lines: Vec<String> = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect();
                ensure!(
                    // Then `exit`, if bash echoed its line feed before the console closed.
                    lines.starts_with(&[
                        format!("echo {WORD}-$((6*7))"),
                        "echo wrong-EDITED".to_owned(),
                        "read -s -p 'Password: ' pw; echo; echo got-${#pw}".to_owned(),
                    ]),
                    "{lang}: the commands in time order: {lines:?}"
                );
                ensure!(
                    !src.contains(SECRET),
                    "{lang}: the secret on the session page"
                );
                b.screenshot(&format!("find-{lang}-session-commands"))
                    .await?;
                if lang == "ja" {
                    let words = english_words(&ui_text(&b).await?, ALLOWED);
                    ensure!(
                        words.is_empty(),
                        "English on the Japanese session page: {words:?}"
                    );
                }
            }
            // The first command opens the player at its moment.
            let id = "first-command";
            b.client
                .execute(
                    "document.querySelector('#commands li a').id = arguments[0];",
                    vec![serde_json::json!(id)],
                )
                .await?;
            open_hit(&b, id, &session).await?;
            anyhow::Ok(())
        }
        .await;
        b.close().await?;
        result
    });
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}
