//! The denials dashboard in Chromium, in Japanese and English: filters, links, severity, the previous period, failed logins from every door.
//!
//! Two tests against a real `sekisho serve`:
//!
//! - `web_denials_dashboard_in_chromium`: decisions of several rules, users, contractors,
//!   targets, sources and days (some in the previous period, one older still) are seeded
//!   through the catalogue, as `web.rs` does. In each language the dashboard lists them most
//!   serious first, counts by rule against the previous period, narrows by every filter (one
//!   through the form, the rest by URL), links a denial with a session to that session,
//!   answers a bad filter with a 400 and a message in the page's language, shows no English
//!   word on the Japanese page outside names, ids and addresses, and is screenshotted at
//!   1366×900 and at 800 px wide (the page itself does not scroll sideways there).
//! - `web_denials_failed_logins_from_every_door_in_chromium`: a wrong password at the web
//!   login (Chromium), over SSH (OpenSSH) and over RDP (the suite's headless client), and a
//!   wrong ticket at the VNC door (a raw RFB handshake: VNC's login is the one-time ticket),
//!   each from a real door; the dashboard lists each with its door, in both languages, and
//!   the door and rule filters find them.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use chrono::Utc;
use policy::{Protocol, SessionId};
use recorder::catalogue::{Catalogue, DecisionRecord, InstanceId, NewSession, Outcome, Verdict};
use serde_json::Value;

use crate::support::{InstanceOptions, SekishoInstance, demo_inventory, require_peers};
use crate::web::web_browser::{Browser, english_words};
use crate::web::{login, web_base, with_staff};

/// Words the Japanese page may show in Latin letters: the seeded names (users, contractors,
/// targets), the rule ids shown beside their names, acronyms (RDP, SSH, VNC, VDI), the language switch
/// ("English"), "CSV" and "Web" (as Japanese write 「Web画面」).
const ALLOWED: &[&str] = &[
    "tanaka",
    "sato",
    "yamada",
    "kobayashi",
    "nobody",
    "acme",
    "globex",
    "RDP",
    "SSH",
    "VNC",
    "VDI",
    "CSV",
    "Web",
    "English",
    "zone.path",
    "rdp.vdi-to-vm",
    "ssh.forwarding",
    "contract.expired",
    "target.unknown",
    "auth.failed",
    "vnc.ticket-invalid",
];

/// Waits (up to 5 s) for the browser to reach a path `ok` accepts.
async fn wait_path(b: &Browser, ok: impl Fn(&str) -> bool) -> Result<String> {
    let mut path = String::new();
    for _ in 0..50 {
        path = b.path().await?;
        if ok(&path) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(path)
}

/// The listed denials: (rule, severity, protocol, user, row id), in page order.
async fn listed(b: &Browser) -> Result<Vec<(String, String, String, String, String)>> {
    let v = b
        .client
        .execute(
            "return Array.from(document.querySelectorAll('tr.denial-row')).map(r => \
             [r.dataset.rule, r.dataset.severity, r.dataset.protocol, \
              r.querySelector('td.user').textContent, r.id]);",
            vec![],
        )
        .await?;
    let rows = v.as_array().context("denial rows")?;
    rows.iter()
        .map(|r| {
            let s = |i: usize| {
                r.get(i)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned()
            };
            Ok((s(0), s(1), s(2), s(3), s(4)))
        })
        .collect()
}

/// The table by rule: (rule, now, previous, change text), in page order.
async fn by_rule(b: &Browser) -> Result<Vec<(String, u64, u64, String)>> {
    let v = b
        .client
        .execute(
            "return Array.from(document.querySelectorAll('#by-rule tr.rule-count')).map(r => \
             [r.dataset.rule, r.querySelector('.count-now').textContent, \
              r.querySelector('.count-prev').textContent, \
              r.querySelector('.count-change').textContent]);",
            vec![],
        )
        .await?;
    let rows = v.as_array().context("by-rule rows")?;
    rows.iter()
        .map(|r| {
            let s = |i: usize| {
                r.get(i)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .trim()
                    .to_owned()
            };
            Ok((s(0), s(1).parse()?, s(2).parse()?, s(3)))
        })
        .collect()
}

/// The HTTP status of a same-origin GET from the page.
async fn fetch_status(b: &Browser, path: &str) -> Result<u64> {
    let v = b
        .client
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             fetch(arguments[0]).then(r => done(r.status), e => done(0));",
            vec![Value::from(path)],
        )
        .await?;
    v.as_u64().context("status")
}

/// The page's visible text without the elements marked `lang="en"` (decision reasons still
/// in the English sentence they were stored with, which the page marks as English).
async fn japanese_text(b: &Browser) -> Result<String> {
    let mut text = b.visible_text().await?;
    let v = b
        .client
        .execute(
            "return Array.from(document.querySelectorAll('main [lang=en], body [lang=en]'))\
             .map(e => e.innerText);",
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

/// Switches the page language through the switch link, and checks it took.
async fn switch_to(b: &Browser, lang: &str) -> Result<()> {
    let current = b
        .client
        .execute("return document.documentElement.lang;", vec![])
        .await?;
    if current.as_str() != Some(lang) {
        b.click("lang-switch").await?;
        for _ in 0..50 {
            let now = b
                .client
                .execute("return document.documentElement.lang;", vec![])
                .await?;
            if now.as_str() == Some(lang) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("the page did not switch to {lang}");
    }
    Ok(())
}

fn decision(
    me: &InstanceId,
    days_ago: f64,
    protocol: Protocol,
    (user, contractor, source): (&str, Option<&str>, &str),
    target: &str,
    rule: &str,
    session_id: Option<SessionId>,
) -> Result<DecisionRecord> {
    // Whole seconds, so "N days ago" sits well inside its calendar day's neighbours.
    let at = Utc::now() - chrono::Duration::seconds((days_ago * 86_400.0) as i64);
    Ok(DecisionRecord {
        at,
        instance: me.clone(),
        protocol,
        source: source.parse()?,
        target: Some(target.into()),
        user: Some(user.into()),
        contractor: contractor.map(str::to_owned),
        verdict: Verdict::Deny,
        rule: rule.into(),
        reason: format!("{rule} seeded for {user} to {target}"),
        session_id,
        // No template: the page reads it by its rule (as decisions stored before templates).
        explanation: None,
    })
}

/// The seeded session the `ssh.forwarding` denial belongs to.
struct Seeded {
    session: SessionId,
}

/// Decisions now (7: one critical, three plus one high, one medium, one low), in the
/// previous 30 days (3) and older (1), and tanaka's session for the forwarding refusal.
async fn seed(instance: &SekishoInstance) -> Result<Seeded> {
    let url = format!("sqlite://{}/data/sekisho.db", instance.dir.path().display());
    let catalogue = Catalogue::connect(&url).await?;
    let me = InstanceId::new("e2e-denials-seed")?;
    let session = NewSession {
        id: SessionId(uuid::Uuid::now_v7()),
        instance: me.clone(),
        protocol: Protocol::ConsoleSerial,
        user: "tanaka".into(),
        contractor: "acme".into(),
        source: "127.0.10.11".parse()?,
        target: "web01".into(),
        path: "internet-vpn".into(),
        console_session: None,
        started_at: Utc::now() - chrono::Duration::days(10),
        recording: None,
        detail: None,
    };
    catalogue.session_started(&session).await?;
    catalogue
        .session_ended(
            session.id,
            Utc::now() - chrono::Duration::days(10),
            Outcome::Completed,
            None,
        )
        .await?;
    let tanaka = ("tanaka", Some("acme"), "127.0.10.11");
    let yamada = ("yamada", Some("globex"), "127.0.10.31");
    let sato = ("sato", Some("acme"), "127.0.11.21");
    let rows = [
        // This period (the last 30 days).
        decision(
            &me,
            2.0,
            Protocol::Rdp,
            tanaka,
            "db-phys01",
            "zone.path",
            None,
        )?,
        decision(
            &me,
            1.0,
            Protocol::Rdp,
            tanaka,
            "web01",
            "rdp.vdi-to-vm",
            None,
        )?,
        decision(
            &me,
            4.0,
            Protocol::Rdp,
            tanaka,
            "web01",
            "rdp.vdi-to-vm",
            None,
        )?,
        decision(
            &me,
            6.0,
            Protocol::Rdp,
            yamada,
            "app02",
            "rdp.vdi-to-vm",
            None,
        )?,
        decision(
            &me,
            5.0,
            Protocol::ConsoleVnc,
            yamada,
            "app02",
            "contract.expired",
            None,
        )?,
        decision(
            &me,
            0.04,
            Protocol::Ssh,
            sato,
            "web99",
            "target.unknown",
            None,
        )?,
        decision(
            &me,
            10.0,
            Protocol::Ssh,
            tanaka,
            "web01",
            "ssh.forwarding",
            Some(session.id),
        )?,
        // The previous period (30 to 60 days ago).
        decision(
            &me,
            40.0,
            Protocol::Rdp,
            tanaka,
            "web01",
            "rdp.vdi-to-vm",
            None,
        )?,
        decision(
            &me,
            41.0,
            Protocol::Ssh,
            sato,
            "web98",
            "target.unknown",
            None,
        )?,
        decision(
            &me,
            42.0,
            Protocol::Ssh,
            sato,
            "web97",
            "target.unknown",
            None,
        )?,
        // Older: in neither.
        decision(
            &me,
            70.0,
            Protocol::Rdp,
            tanaka,
            "db-phys01",
            "zone.path",
            None,
        )?,
    ];
    for r in &rows {
        catalogue.record_decision(r).await?;
    }
    catalogue.close().await;
    Ok(Seeded {
        session: session.id,
    })
}

/// The users of the listed rows, sorted.
fn users(rows: &[(String, String, String, String, String)]) -> Vec<String> {
    let mut u: Vec<String> = rows.iter().map(|r| r.3.clone()).collect();
    u.sort();
    u
}

/// Every check of the seeded dashboard, in the page's current language `lang`.
async fn check_dashboard(b: &Browser, base: &str, lang: &str, seeded: &Seeded) -> Result<()> {
    b.window(1366, 900).await?;
    b.goto(&format!("{base}/denials")).await?;
    switch_to(b, lang).await?;
    ensure!(
        wait_path(b, |p| p.starts_with("/denials"))
            .await?
            .starts_with("/denials"),
        "{lang}: the language switch left the dashboard"
    );

    // Most serious first: the zone breach, though the unknown target is newer.
    let rows = listed(b).await?;
    ensure!(rows.len() == 7, "{lang}: listed {rows:?}");
    let order = ["critical", "high", "medium", "low"];
    let rank = |s: &str| order.iter().position(|o| *o == s).unwrap_or(order.len());
    ensure!(
        rows.windows(2).all(|w| match w {
            [a, b] => rank(&a.1) <= rank(&b.1),
            _ => true,
        }),
        "{lang}: not sorted by severity: {rows:?}"
    );
    ensure!(
        rows.first()
            .is_some_and(|r| r.0 == "zone.path" && r.1 == "critical"),
        "{lang}: the zone breach is not first: {rows:?}"
    );
    ensure!(
        rows.last()
            .is_some_and(|r| r.0 == "target.unknown" && r.1 == "low"),
        "{lang}: the unknown target is not last: {rows:?}"
    );

    // Counts by rule against the previous 30 days, severity first.
    let counts = by_rule(b).await?;
    let expect = [
        ("zone.path", 1, 0, "+1"),
        ("rdp.vdi-to-vm", 3, 1, "+2"),
        ("ssh.forwarding", 1, 0, "+1"),
        ("contract.expired", 1, 0, "+1"),
        ("target.unknown", 1, 2, "-1"),
    ];
    let got: Vec<(&str, u64, u64, &str)> = counts
        .iter()
        .map(|(r, n, p, c)| (r.as_str(), *n, *p, c.as_str()))
        .collect();
    ensure!(got == expect, "{lang}: by rule {got:?}");
    let total = b
        .client
        .find(fantoccini::Locator::Id("denial-total"))
        .await?
        .text()
        .await?;
    let (now_word, prev_word) = if lang == "ja" {
        ("7件", "3件")
    } else {
        ("7 denials", "had 3")
    };
    ensure!(
        total.contains(now_word) && total.contains(prev_word) && total.contains("+4"),
        "{lang}: total {total:?}"
    );
    let severity_label = b
        .client
        .find(fantoccini::Locator::Css("#by-rule tr.rule-count .sev"))
        .await?
        .text()
        .await?;
    let critical = if lang == "ja" { "重大" } else { "critical" };
    ensure!(
        severity_label == critical,
        "{lang}: badge {severity_label:?}"
    );

    // The Japanese page: no English word outside names, ids and addresses.
    if lang == "ja" {
        let words = english_words(&japanese_text(b).await?, ALLOWED);
        ensure!(
            words.is_empty(),
            "English on the Japanese dashboard: {words:?}"
        );
    }
    b.screenshot(&format!("denials-{lang}-1366")).await?;
    b.window(800, 900).await?;
    let overflow = b
        .client
        .execute(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            vec![],
        )
        .await?;
    ensure!(
        overflow.as_i64().is_some_and(|o| o <= 0),
        "{lang}: the page scrolls sideways at 800 px by {overflow}"
    );
    b.screenshot(&format!("denials-{lang}-800")).await?;
    b.window(1366, 900).await?;

    // A filter through the form: a user's prefix in another case.
    b.type_into("f-user", "TAN").await?;
    b.click("apply").await?;
    wait_path(b, |p| p.contains("user=TAN")).await?;
    let rows = listed(b).await?;
    ensure!(
        rows.len() == 4 && rows.iter().all(|r| r.3 == "tanaka"),
        "{lang}: user filter {rows:?}"
    );

    // Every other filter by URL: (query, rules expected, users expected).
    let since_5 = (Utc::now() - chrono::Duration::days(5))
        // The demo inventory's time zone, Asia/Tokyo (UTC+9, no summer time).
        .with_timezone(&chrono::FixedOffset::east_opt(9 * 3600).context("offset")?)
        .format("%Y-%m-%d")
        .to_string();
    let cases: Vec<(String, usize, Vec<&str>)> = vec![
        (
            "rule=rdp.vdi-to-vm".into(),
            3,
            vec!["tanaka", "tanaka", "yamada"],
        ),
        ("severity=critical".into(), 1, vec!["tanaka"]),
        ("severity=low".into(), 1, vec!["sato"]),
        ("contractor=GLOB".into(), 2, vec!["yamada", "yamada"]),
        (
            "contractor=acme".into(),
            5,
            vec!["sato", "tanaka", "tanaka", "tanaka", "tanaka"],
        ),
        ("target=db".into(), 1, vec!["tanaka"]),
        ("target=app02".into(), 2, vec!["yamada", "yamada"]),
        ("source=127.0.11.".into(), 1, vec!["sato"]),
        ("source=127.0.10.31".into(), 2, vec!["yamada", "yamada"]),
        ("protocol=ssh".into(), 2, vec!["sato", "tanaka"]),
        ("days=3".into(), 3, vec!["sato", "tanaka", "tanaka"]),
        (format!("from={since_5}&to={since_5}"), 1, vec!["yamada"]),
        ("days=60".into(), 10, vec![]),
    ];
    for (query, n, who) in &cases {
        b.goto(&format!("{base}/denials?{query}")).await?;
        let rows = listed(b).await?;
        ensure!(rows.len() == *n, "{lang}: {query}: {rows:?}");
        if !who.is_empty() {
            ensure!(users(&rows) == *who, "{lang}: {query}: {rows:?}");
        }
    }
    // The rule filter's counts: the previous period is counted with the same filter.
    b.goto(&format!("{base}/denials?rule=target.unknown"))
        .await?;
    let counts = by_rule(b).await?;
    ensure!(
        counts == vec![("target.unknown".to_owned(), 1, 2, "-1".to_owned())],
        "{lang}: {counts:?}"
    );

    // A denial with a session links to it; one without links to itself.
    b.goto(&format!("{base}/denials?rule=ssh.forwarding"))
        .await?;
    let link = b
        .client
        .find(fantoccini::Locator::Css("tr.denial-row a.session-link"))
        .await?;
    link.click().await?;
    let want = format!("/sessions/{}", seeded.session);
    let path = wait_path(b, |p| p == want).await?;
    ensure!(path == want, "{lang}: the session link went to {path}");
    b.goto(&format!("{base}/denials?rule=zone.path")).await?;
    let rows = listed(b).await?;
    let id = rows.first().map(|r| r.4.clone()).context("zone row")?;
    let href = b
        .client
        .find(fantoccini::Locator::Css("tr.denial-row a.decision-link"))
        .await?
        .attr("href")
        .await?
        .unwrap_or_default();
    ensure!(
        href == format!("#{id}"),
        "{lang}: decision link {href:?} for {id}"
    );

    // Bad filters: 400 and a message in the page's language.
    let bad = [
        (
            "source=not-an-ip",
            "「not-an-ip」",
            "\u{201c}not-an-ip\u{201d} is not an address",
        ),
        ("rule=rdp.physical", "「rdp.physical」", "no rule called"),
        ("severity=urgent", "「urgent」", "no severity called"),
        ("days=0", "1から366", "from 1 to 366"),
        ("from=yesterday", "「yesterday」", "is not a date"),
        ("protocol=telnet", "「telnet」", "no protocol called"),
    ];
    for (query, ja, en) in bad {
        let status = fetch_status(b, &format!("/denials?{query}")).await?;
        ensure!(status == 400, "{lang}: {query} answered {status}");
        b.goto(&format!("{base}/denials?{query}")).await?;
        let message = b
            .client
            .find(fantoccini::Locator::Id("filter-error"))
            .await?
            .text()
            .await?;
        let want = if lang == "ja" { ja } else { en };
        ensure!(message.contains(want), "{lang}: {query}: {message:?}");
        if lang == "ja" {
            let allowed: Vec<&str> = ALLOWED
                .iter()
                .copied()
                .chain(["not-an-ip", "rdp.physical", "urgent", "yesterday", "telnet"])
                .collect();
            let words = english_words(&japanese_text(b).await?, &allowed);
            ensure!(
                words.is_empty(),
                "{query}: English on the Japanese error page: {words:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn web_denials_dashboard_in_chromium() -> Result<()> {
    if !require_peers(&["chromium", "chromedriver"])? {
        return Ok(());
    }
    let instance = SekishoInstance::start(&with_staff(demo_inventory()))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let seeded = seed(&instance).await?;
        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        let result = async {
            login(&b, &base, "kobayashi").await?;
            check_dashboard(&b, &base, "en", &seeded).await?;
            check_dashboard(&b, &base, "ja", &seeded).await?;
            // And back: the switch works both ways.
            check_dashboard(&b, &base, "en", &seeded).await
        }
        .await;
        b.close().await?;
        result
    });
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}

/// A wrong VNC ticket at the VNC door from `source`: the RFB handshake up to the security
/// result, answered with 16 bytes no ticket gives.
async fn wrong_vnc_ticket(door: SocketAddr, source: std::net::IpAddr) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source, 0))?;
    let mut s = tokio::time::timeout(Duration::from_secs(10), socket.connect(door)).await??;
    let mut version = [0u8; 12];
    s.read_exact(&mut version).await?;
    ensure!(version.starts_with(b"RFB "), "not RFB: {version:?}");
    s.write_all(b"RFB 003.008\n").await?;
    let n = s.read_u8().await?;
    let mut types = vec![0u8; usize::from(n)];
    s.read_exact(&mut types).await?;
    ensure!(
        types.contains(&2),
        "no VNC authentication offered: {types:?}"
    );
    s.write_all(&[2]).await?;
    let mut challenge = [0u8; 16];
    s.read_exact(&mut challenge).await?;
    s.write_all(&[0x5a; 16]).await?;
    let result = s.read_u32().await?;
    ensure!(result != 0, "a wrong VNC ticket was accepted");
    Ok(())
}

#[test]
fn web_denials_failed_logins_from_every_door_in_chromium() -> Result<()> {
    if !require_peers(&["chromium", "chromedriver", "ssh"])? {
        return Ok(());
    }
    // file-phys02 with a credential to inject, so the RDP door gets as far as the password.
    let inventory = with_staff(demo_inventory());
    let with_credential = inventory.replacen(
        "name = \"file-phys02\"\naddress = \"127.0.20.22\"",
        "name = \"file-phys02\"\naddress = \"127.0.20.22\"\ncredential = \"file-phys02-maint\"",
        1,
    );
    ensure!(
        with_credential != inventory,
        "file-phys02 not in the demo inventory"
    );
    let instance = SekishoInstance::start_with(
        &with_credential,
        InstanceOptions {
            secrets: Some(
                "[credential.file-phys02-maint]\nusername = \"maint\"\npassword = \"unused\"\n"
                    .to_owned(),
            ),
            ..InstanceOptions::default()
        },
    )?;
    // SSH: a wrong password from tanaka's desktop (one prompt, so one failure).
    let askpass = crate::ssh::ssh_peers::askpass(&instance.path("data"), "not-the-password", None)?;
    let mut ssh = crate::ssh::ssh_peers::ssh(
        &askpass,
        instance.listen.ssh.port(),
        "127.0.10.11",
        &[
            "-o",
            "NumberOfPasswordPrompts=1",
            "tanaka@127.0.0.1",
            "console",
            "web01",
        ],
    )?;
    let status = ssh.wait_exit(Duration::from_secs(30))?;
    ensure!(
        status.code() == Some(255),
        "ssh with a wrong password: {}",
        ssh.output()
    );
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        // RDP: a wrong password in the Client Info (TLS), from sato's desktop.
        let mut o = e2e::rdp_client::ConnectOptions::new(
            instance.listen.rdp,
            "sato+file-phys02",
            "not-the-password",
        );
        o.source = Some("127.0.11.21".parse()?);
        o.timeout = Duration::from_secs(15);
        ensure!(
            e2e::rdp_client::connect(&o).await.is_err(),
            "a wrong RDP password gave a session"
        );
        // VNC: a wrong ticket from yamada's desktop.
        wrong_vnc_ticket(instance.listen.vnc, "127.0.10.31".parse()?).await?;

        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        let result = async {
            // Web: a wrong password in the login form.
            b.goto(&format!("{base}/login")).await?;
            b.type_into("user", "yamada").await?;
            b.type_into("password", "not-the-password").await?;
            b.click("login").await?;
            ensure!(
                wait_path(&b, |p| p.starts_with("/login"))
                    .await?
                    .starts_with("/login"),
                "a wrong web password logged in"
            );
            login(&b, &base, "kobayashi").await?;
            // Every door's failure is a denial with its door.
            let want = [
                ("auth.failed", "web", "yamada"),
                ("auth.failed", "ssh", "tanaka"),
                ("auth.failed", "rdp", "sato"),
                ("vnc.ticket-invalid", "console-vnc", ""),
            ];
            for lang in ["en", "ja"] {
                b.goto(&format!("{base}/denials")).await?;
                switch_to(&b, lang).await?;
                let mut rows = Vec::new();
                for _ in 0..50 {
                    b.goto(&format!("{base}/denials")).await?;
                    rows = listed(&b).await?;
                    if want
                        .iter()
                        .all(|(rule, door, _)| rows.iter().any(|r| r.0 == *rule && r.2 == *door))
                    {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                for (rule, door, user) in want {
                    ensure!(
                        rows.iter().any(|r| r.0 == rule
                            && r.2 == door
                            && (user.is_empty() || r.3 == user)),
                        "{lang}: no {rule} at the {door} door for {user:?}: {rows:?}"
                    );
                }
                // The door column names the door in the page's language.
                let doors = b
                    .client
                    .execute(
                        "return Array.from(document.querySelectorAll('tr.denial-row td.door'))\
                         .map(e => e.textContent);",
                        vec![],
                    )
                    .await?;
                let doors: Vec<&str> = doors
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let names: &[&str] = if lang == "ja" {
                    &["Web画面", "SSH", "RDP", "VNCコンソール"]
                } else {
                    &["web UI", "SSH", "RDP", "VNC console"]
                };
                for name in names {
                    ensure!(
                        doors.contains(name),
                        "{lang}: no door {name:?} in {doors:?}"
                    );
                }
                // The rule and door filters find them.
                b.goto(&format!("{base}/denials?rule=auth.failed")).await?;
                let rows = listed(&b).await?;
                let mut got: Vec<&str> = rows.iter().map(|r| r.2.as_str()).collect();
                got.sort_unstable();
                ensure!(
                    got == ["rdp", "ssh", "web"],
                    "{lang}: auth.failed doors {got:?}"
                );
                for door in ["web", "ssh", "rdp", "console-vnc"] {
                    b.goto(&format!("{base}/denials?protocol={door}")).await?;
                    let rows = listed(&b).await?;
                    ensure!(
                        !rows.is_empty() && rows.iter().all(|r| r.2 == door),
                        "{lang}: door filter {door}: {rows:?}"
                    );
                }
                b.goto(&format!("{base}/denials?protocol=web")).await?;
                if lang == "ja" {
                    let words = english_words(&japanese_text(&b).await?, ALLOWED);
                    ensure!(
                        words.is_empty(),
                        "English on the Japanese dashboard: {words:?}"
                    );
                }
                b.screenshot(&format!("denials-doors-{lang}")).await?;
            }
            Ok(())
        }
        .await;
        b.close().await?;
        result
    });
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}
