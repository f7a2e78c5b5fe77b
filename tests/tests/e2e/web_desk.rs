//! The review desk in Chromium, in Japanese and English: the session list (titles, counts,
//! forgiving filters, pick-lists, quick ranges, clear errors), the session page, the
//! emergency stop (a reason and a confirmation, the page showing the end at once), and the
//! Japanese pages checked for English words. Screenshots go to `target/web-screenshots/`.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use fantoccini::Locator;

use crate::support::{SekishoInstance, require_peers};
use crate::web::web_browser::{Browser, english_words};
use crate::web::{inventory, login, seed, seed_terminal, wait_path, web_base, with_staff};

/// What a Japanese desk page may show in Latin letters: the seeded names, the protocols'
/// own names, size units and the time zone (names, ids and addresses, as the issue allows).
const ALLOWED: &[&str] = &[
    "tanaka",
    "yamada",
    "suzuki",
    "kobayashi",
    "acme",
    "globex",
    "web01",
    "app02",
    "db01",
    "phys01",
    "RDP",
    "SSH",
    "VNC",
    "KB",
    "MB",
    "GB",
    "B",
    "Asia",
    "Tokyo",
    "internet-vpn",
    "ip-vpn",
];

/// Opens `path` in `lang` (the switch link sets a cookie; `/lang/X` is that link).
async fn goto_in(b: &Browser, base: &str, lang: &str, path: &str) -> Result<()> {
    b.goto(&format!("{base}/lang/{lang}")).await?;
    b.goto(&format!("{base}{path}")).await
}

/// The page's English words, when it is in Japanese.
async fn english_on(b: &Browser, extra: &[&str]) -> Result<Vec<String>> {
    let text = b.visible_text().await?;
    let allowed: Vec<&str> = ALLOWED.iter().chain(extra).copied().collect();
    Ok(english_words(&text, &allowed))
}

/// The HTTP status of `path` fetched by the page itself (with its cookies).
async fn status_of(b: &Browser, path: &str) -> Result<u64> {
    let v = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch(arguments[0], {credentials: 'same-origin'}).then(r => done(r.status), () => done(0));",
            vec![serde_json::Value::from(path)],
        )
        .await?;
    v.as_u64().context("status")
}

async fn text_of(b: &Browser, id: &str) -> Result<String> {
    Ok(b.client.find(Locator::Id(id)).await?.text().await?)
}

async fn session_list(
    b: &Browser,
    base: &str,
    seeded: &crate::web::Seeded,
    terminal: &str,
) -> Result<()> {
    let tanaka0 = seeded.tanaka.first().context("seed")?.to_string();
    for lang in ["en", "ja"] {
        let ja = lang == "ja";
        goto_in(b, base, lang, "/sessions").await?;
        b.window(1366, 900).await?;
        // Human titles, a count, a Play link for the recorded session.
        let table = text_of(b, "sessions").await?;
        let title = if ja {
            "tanaka → web01、シリアルコンソール"
        } else {
            "tanaka → web01, serial console"
        };
        ensure!(table.contains(title), "{lang}: no human title in {table}");
        let count = text_of(b, "result-count").await?;
        let want = if ja {
            "該当するセッション: 4件"
        } else {
            "4 sessions match."
        };
        ensure!(
            count.contains(want),
            "{lang}: count {count:?}, want {want:?}"
        );
        ensure!(
            b.source()
                .await?
                .contains(&format!("href=\"/sessions/{terminal}/play\"")),
            "{lang}: no Play link for the recorded session"
        );
        // The pick-lists carry the inventory's names.
        for (list, name) in [
            ("users", "tanaka"),
            ("targets", "web01"),
            ("contractors", "acme"),
        ] {
            let found = b
                .client
                .execute(
                    "return [...document.querySelectorAll('#' + arguments[0] + ' option')].map(o => o.value);",
                    vec![serde_json::Value::from(list)],
                )
                .await?;
            ensure!(
                found
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == name)),
                "{lang}: pick-list {list} lacks {name}: {found}"
            );
        }
        b.screenshot(&format!("desk-sessions-{lang}")).await?;
        if ja {
            let english = english_on(b, &[]).await?;
            ensure!(
                english.is_empty(),
                "English on the Japanese session list: {english:?}"
            );
        }

        // Filters forgive: a prefix in another case finds web01's sessions only.
        b.type_into("f-target", "WEB0").await?;
        b.click("apply").await?;
        wait_path(b, |p| p.contains("target=WEB0")).await?;
        let table = text_of(b, "sessions").await?;
        ensure!(
            table.contains("web01") && !table.contains("app02"),
            "{lang}: a forgiving target filter: {table}"
        );
        ensure!(
            text_of(b, "result-count")
                .await?
                .contains(if ja { "2件" } else { "2 sessions" }),
            "{lang}: count after the filter"
        );

        // Quick ranges: "today" sets both dates to today in the configured zone.
        b.goto(&format!("{base}/sessions")).await?;
        b.click("range-today").await?;
        let path = wait_path(b, |p| p.contains("from=")).await?;
        let today = chrono::Utc::now()
            .with_timezone(&chrono_tz::Asia::Tokyo)
            .format("%Y-%m-%d")
            .to_string();
        ensure!(
            path.contains(&format!("from={today}&to={today}")),
            "{lang}: today is {today}, the link went to {path}"
        );
        ensure!(
            b.client.find(Locator::Id("result-count")).await.is_ok(),
            "{lang}: the quick range did not list"
        );

        // Bad input: a clear message in the page's language, the form kept, a 400.
        b.goto(&format!("{base}/sessions?from=last+tuesday"))
            .await?;
        let message = text_of(b, "filter-error").await?;
        let want = if ja {
            "日付として読めません"
        } else {
            "is not a date"
        };
        ensure!(
            message.contains("last tuesday") && message.contains(want),
            "{lang}: the date error says {message:?}"
        );
        ensure!(
            b.client.find(Locator::Id("filters")).await.is_ok(),
            "{lang}: no form"
        );
        ensure!(
            status_of(b, "/sessions?from=last+tuesday").await? == 400,
            "{lang}: not 400"
        );
        ensure!(
            status_of(b, "/sessions?protocol=telnet").await? == 400,
            "{lang}: telnet"
        );
        b.screenshot(&format!("desk-filter-error-{lang}")).await?;
        if ja {
            let english = english_on(b, &["last", "tuesday"]).await?;
            ensure!(
                english.is_empty(),
                "English on the Japanese error: {english:?}"
            );
        }

        // The session page: the title, the words for the outcome; a 404 in the language.
        b.goto(&format!("{base}/sessions/{tanaka0}")).await?;
        let h1 = b.client.find(Locator::Css("h1")).await?.text().await?;
        ensure!(
            h1.contains("tanaka → web01"),
            "{lang}: session title {h1:?}"
        );
        let outcome = text_of(b, "outcome").await?;
        ensure!(
            outcome == if ja { "正常終了" } else { "completed" },
            "{lang}: outcome {outcome:?}"
        );
        b.screenshot(&format!("desk-session-{lang}")).await?;
        if ja {
            let english = english_on(b, &[&tanaka0]).await?;
            ensure!(
                english.is_empty(),
                "English on the Japanese session page: {english:?}"
            );
        }
        b.goto(&format!("{base}/sessions/not-a-session")).await?;
        let error = b.client.find(Locator::Css("p.error")).await?.text().await?;
        ensure!(
            error
                == if ja {
                    "見つかりません。"
                } else {
                    "Not found."
                },
            "{lang}: 404 says {error:?}"
        );
        if ja {
            let english = english_on(b, &[]).await?;
            ensure!(
                english.is_empty(),
                "English on the Japanese 404: {english:?}"
            );
        }

        // 800 px wide: nothing wider than the window but the tables, which scroll inside.
        b.window(800, 900).await?;
        b.goto(&format!("{base}/sessions")).await?;
        let wide = b
            .client
            .execute("return document.documentElement.scrollWidth;", vec![])
            .await?;
        ensure!(
            wide.as_u64().is_some_and(|w| w <= 800),
            "{lang}: the list is {wide} px wide in an 800 px window"
        );
        b.screenshot(&format!("desk-sessions-800-{lang}")).await?;
    }
    Ok(())
}

/// The session list and session page in both languages, as an auditor.
#[test]
fn desk_session_list_in_chromium_in_both_languages() -> Result<()> {
    if !require_peers(&["chromium", "chromedriver"])? {
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let instance = SekishoInstance::start(&inventory())?;
    let result = runtime.block_on(async {
        let seeded = seed(&instance).await?;
        let terminal = seed_terminal(&instance).await?.to_string();
        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        let result = async {
            login(&b, &base, "suzuki").await?;
            session_list(&b, &base, &seeded, &terminal).await
        }
        .await;
        b.close().await?;
        result
    });
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}

/// The emergency stop of a real, live SSH console session: refused without a reason (in the
/// page's language), then asked in Japanese with a reason and the confirmation; the page it
/// returns to already shows the session stopped, the contractor's terminal is closed, and the
/// timeline names who stopped it and why.
#[test]
fn desk_emergency_stop_asks_why_and_shows_the_end_at_once() -> Result<()> {
    use crate::ssh::ssh_peers;
    if !require_peers(&["chromium", "chromedriver", "ssh", "sshd", "runuser"])? {
        return Ok(());
    }
    let sshd = ssh_peers::start_sshd(&[])?;
    let instance = SekishoInstance::start_with(
        &with_staff(ssh_peers::console_inventory(14501, sshd.port)),
        crate::support::InstanceOptions {
            secrets: Some(ssh_peers::console_secrets()),
            ..crate::support::InstanceOptions::default()
        },
    )?;
    let askpass = ssh_peers::askpass(instance.dir.path(), ssh_peers::DEMO_PASSWORD, None)?;
    let ssh = ssh_peers::ssh_tt(
        &askpass,
        instance.listen.ssh.port(),
        "127.0.10.11",
        "tanaka+app02",
    )?;
    ssh.wait_for("this session is recorded", Duration::from_secs(30))?;
    let id = instance.wait_until(Duration::from_secs(10), "the live session", || {
        Ok(instance
            .sessions()?
            .into_iter()
            .find(|s| s["target"] == "app02" && s["ended_at"].is_null()))
    })?["id"]
        .as_str()
        .context("id")?
        .to_owned();
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        let result = async {
            login(&b, &base, "kobayashi").await?;
            // Live: the recording reads "recording (live)", not "incomplete".
            goto_in(&b, &base, "en", &format!("/sessions/{id}")).await?;
            let verification = text_of(&b, "verification").await?;
            ensure!(verification == "recording (live)", "live recording shown as {verification:?}");
            // The live list leads to the stop form.
            b.goto(&format!("{base}/live")).await?;
            b.click(&format!("stop-{id}")).await?;
            wait_path(&b, |p| p.starts_with(&format!("/sessions/{id}"))).await?;
            // Without a reason (the browser's own check removed): refused, nothing asked.
            b.client
                .execute(
                    "for (const e of document.querySelectorAll('#stop-form [required]')) e.removeAttribute('required');",
                    vec![],
                )
                .await?;
            b.click("stop-confirm").await?;
            b.click("kill").await?;
            let error = text_of(&b, "stop-error").await?;
            ensure!(error.contains("reason"), "the missing reason was answered with {error:?}");
            let still_live = instance
                .sessions()?
                .into_iter()
                .any(|s| s["id"] == id.as_str() && s["ended_at"].is_null());
            ensure!(still_live, "the session ended without a reason");

            goto_in(&b, &base, "ja", &format!("/sessions/{id}")).await?;
            let verification = text_of(&b, "verification").await?;
            ensure!(verification == "録画中(接続中)", "live recording in Japanese: {verification:?}");
            b.window(1366, 900).await?;
            b.type_into("stop-reason", "作業範囲外のファイルを開いたため").await?;
            b.click("stop-confirm").await?;
            b.screenshot("desk-emergency-stop-ja").await?;
            let english = english_on(&b, &[&id, "ssh", "bastion"]).await?;
            ensure!(english.is_empty(), "English on the Japanese stop form: {english:?}");
            b.click("kill").await?;
            wait_path(&b, |p| p == format!("/sessions/{id}")).await?;
            // The page it comes back to shows the end at once.
            let outcome = text_of(&b, "outcome").await?;
            ensure!(outcome == "緊急停止", "after the stop the page shows {outcome:?}");
            let timeline = text_of(&b, "timeline").await?;
            ensure!(
                timeline.contains("緊急停止を要求")
                    && timeline.contains("web:kobayashi: 作業範囲外のファイルを開いたため"),
                "the timeline lacks who and why: {timeline}"
            );
            b.screenshot("desk-stopped-ja").await?;
            ssh.wait_for("session ended by security staff", Duration::from_secs(10))?;
            anyhow::Ok(())
        }
        .await;
        b.close().await?;
        result
    });
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}

/// What the page's design check found: controls without a name a screen reader can say, text
/// whose contrast with its background is under WCAG AA (4.5:1, 3:1 for large text), and
/// whether the page links the favicon.
async fn design_faults(b: &Browser) -> Result<Vec<String>> {
    let v = b
        .client
        .execute(
            r#"
            const faults = [];
            // Every control has a name: a label, aria-label(ledby), a title, or its own text.
            for (const e of document.querySelectorAll('input:not([type=hidden]), select, textarea, button, a[href]')) {
              if (e.offsetParent === null && getComputedStyle(e).position !== 'fixed') continue;
              const named = (e.labels && e.labels.length) || e.getAttribute('aria-label') ||
                e.getAttribute('aria-labelledby') || e.getAttribute('title') ||
                (e.textContent || '').trim() || (e.type === 'submit' && e.value);
              if (!named) faults.push('unlabelled ' + e.outerHTML.slice(0, 120));
            }
            // Contrast: each element with its own visible text against the first opaque
            // background behind it.
            const rgb = s => (s.match(/[\d.]+/g) || []).map(Number);
            const lum = ([r, g, b]) => {
              const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
              return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
            };
            const background = e => {
              for (let n = e; n; n = n.parentElement) {
                const c = rgb(getComputedStyle(n).backgroundColor);
                if (c.length === 3 || (c.length === 4 && c[3] === 1)) return c.slice(0, 3);
              }
              return [255, 255, 255];
            };
            for (const e of document.querySelectorAll('body *')) {
              const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
              if (!own || e.offsetParent === null) continue;
              const st = getComputedStyle(e);
              if (st.visibility === 'hidden' || e.closest('.visually-hidden, canvas, pre.terminal')) continue;
              const fg = rgb(st.color).slice(0, 3), bg = background(e);
              const [a, c] = [lum(fg), lum(bg)].sort((x, y) => y - x);
              const ratio = (a + 0.05) / (c + 0.05);
              const size = parseFloat(st.fontSize), bold = Number(st.fontWeight) >= 700;
              const need = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
              if (ratio < need) faults.push('contrast ' + ratio.toFixed(2) + ' < ' + need + ': ' +
                e.tagName.toLowerCase() + '.' + e.className + ' "' + e.textContent.trim().slice(0, 40) + '"');
            }
            if (!document.querySelector('link[rel=icon]')) faults.push('no favicon link');
            return faults;
            "#,
            vec![],
        )
        .await?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// Design and accessibility on every page of the desk, in both languages: each control has a
/// name, text meets WCAG AA contrast, the favicon is linked and served, and at 800 px no page
/// scrolls sideways. Screenshots of each page at 800 px.
#[test]
fn desk_pages_are_labelled_legible_and_fit_800_px_in_both_languages() -> Result<()> {
    if !require_peers(&["chromium", "chromedriver"])? {
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let instance = SekishoInstance::start(&inventory())?;
    let result = runtime.block_on(async {
        let seeded = seed(&instance).await?;
        let terminal = seed_terminal(&instance).await?.to_string();
        let yamada = seeded.yamada.to_string();
        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        let result = async {
            // Served before any login (the login page links it too).
            b.goto(&format!("{base}/login")).await?;
            ensure!(
                status_of(&b, "/assets/favicon.svg").await? == 200,
                "the favicon is not served"
            );
            for lang in ["ja", "en"] {
                goto_in(&b, &base, lang, "/login").await?;
                let faults = design_faults(&b).await?;
                ensure!(faults.is_empty(), "{lang} /login: {faults:#?}");
            }
            // The check itself finds what it looks for: grey text and a nameless field.
            b.client
                .execute(
                    "const p = document.createElement('p'); p.textContent = 'faint';\
                     p.style.color = '#aaaaaa'; document.body.appendChild(p);\
                     document.body.appendChild(document.createElement('input'));",
                    vec![],
                )
                .await?;
            let planted = design_faults(&b).await?;
            ensure!(
                planted
                    .iter()
                    .any(|f| f.starts_with("contrast") && f.contains("faint"))
                    && planted.iter().any(|f| f.starts_with("unlabelled <input")),
                "the design check misses planted faults: {planted:#?}"
            );
            login(&b, &base, "kobayashi").await?;
            let pages = [
                ("sessions", "/sessions".to_owned()),
                ("session", format!("/sessions/{yamada}")),
                ("player", format!("/sessions/{terminal}/play")),
                ("find", "/search?q=echo".to_owned()),
                ("denials", "/denials".to_owned()),
                ("live", "/live".to_owned()),
                ("error", "/sessions?from=someday".to_owned()),
            ];
            for lang in ["ja", "en"] {
                for (name, path) in &pages {
                    for width in [1366, 800] {
                        b.window(width, 900).await?;
                        goto_in(&b, &base, lang, path).await?;
                        let faults = design_faults(&b).await?;
                        ensure!(
                            faults.is_empty(),
                            "{lang} {path} at {width} px: {faults:#?}"
                        );
                        let wide = b
                            .client
                            .execute("return document.documentElement.scrollWidth;", vec![])
                            .await?;
                        ensure!(
                            wide.as_u64().is_some_and(|w| w <= u64::from(width)),
                            "{lang} {path}: {wide} px wide in a {width} px window"
                        );
                    }
                    b.screenshot(&format!("desk-{name}-800-{lang}")).await?;
                }
            }
            Ok(())
        }
        .await;
        b.close().await?;
        result
    });
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}
