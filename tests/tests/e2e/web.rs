//! The web UI in a real headless Chromium (chromedriver + fantoccini) against a real
//! `sekisho serve`: log in as each role (and with a matrix card), list, filter, open the
//! denials dashboard, and a contractor cannot open another's session by id; the player on a
//! VNC session through Sekisho against QEMU and on the real xrdp RDP fixture, each canvas
//! compared with the decoder's frame; a console session's recording tampered with after the
//! fact is shown tampered; an ignored benchmark of the time to first frame.
//!
//! The catalogue is seeded directly (sessions and a denial) so the pages have known rows (the
//! tamper check records a real console session through the SSH door and QEMU instead). Every page is `sekisho serve`'s own web listener: a `serve` that
//! does not serve the UI fails these tests.

#[path = "support/web_browser.rs"]
pub(crate) mod web_browser;

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use chrono::Utc;
use policy::{Protocol, SessionId};
use recorder::catalogue::{Catalogue, DecisionRecord, InstanceId, NewSession, Verdict};

use crate::support::images::raw_rgb;
use crate::support::{
    InstanceOptions, SekishoInstance, demo_inventory, require_peers, wait_for_port,
};
use crate::vnc::vnc_peers;
use web_browser::Browser;

const PASSWORD: &str = "change-me-now";
/// tanaka's VDI desktop in the demo inventory (VNC consoles).
const VNC_DESKTOP: &str = "127.0.10.11";
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$IvBzMLDZyFbDrkZ3n1bk7w$8NW46C5ZNmNfiHNU+fwLLsnh9hyP7iNV8iEC4MEm5fU";

/// ito's matrix card (an auditor who logs in with password and card): rows 1..5, A..J.
const CARD: [&str; 5] = [
    "3829104756",
    "1047382956",
    "5561029384",
    "9012837465",
    "2749501836",
];

pub(crate) fn inventory() -> String {
    with_staff(demo_inventory())
}

/// `inventory` plus kobayashi (security), root (admin) and ito (auditor, with a card).
pub(crate) fn with_staff(inventory: String) -> String {
    let card = CARD
        .iter()
        .map(|r| format!("\"{r}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{}\n[[user]]\nname = \"kobayashi\"\nrole = \"security\"\npassword_hash = \"{HASH}\"\n\n\
         [[user]]\nname = \"root\"\nrole = \"admin\"\npassword_hash = \"{HASH}\"\n\n\
         [[user]]\nname = \"ito\"\nrole = \"auditor\"\npassword_hash = \"{HASH}\"\n\
         matrix_card = [{card}]\n",
        inventory
    )
}

/// `inventory` with web01's graphical console at a QEMU VNC display on `port`.
fn with_web01_vnc(inventory: String, port: u16) -> String {
    inventory.replacen(
        "vnc_console = \"127.0.0.1:15901\"",
        &format!("vnc_console = \"127.0.0.1:{port}\""),
        1,
    )
}

/// `inventory` with target app02 `supervised` (four eyes).
fn supervised_app02(inventory: String) -> Result<String> {
    let edited = inventory.replacen(
        "name = \"app02\"\naddress = \"127.0.20.12\"",
        "name = \"app02\"\naddress = \"127.0.20.12\"\nsupervised = true",
        1,
    );
    ensure!(edited != inventory, "app02 not found in the inventory");
    Ok(edited)
}

/// Whether an sshd log shows no SSH connection: the harness's own probe that sshd listens
/// connects without speaking SSH, while a dial by Sekisho would exchange identifications and
/// log on.
fn sshd_saw_no_ssh(log: &str) -> bool {
    !log.contains("Accepted ")
        && log.matches("Connection from").count()
            == log.matches("kex_exchange_identification").count()
}

pub(crate) struct Seeded {
    pub(crate) tanaka: Vec<SessionId>,
    pub(crate) yamada: SessionId,
}

pub(crate) async fn seed(instance: &SekishoInstance) -> Result<Seeded> {
    let url = format!("sqlite://{}/data/sekisho.db", instance.dir.path().display());
    let catalogue = Catalogue::connect(&url).await?;
    let me = InstanceId::new("e2e-web-seed")?;
    let session = |user: &str, contractor: &str, target: &str, minutes: i64| NewSession {
        id: SessionId(uuid::Uuid::now_v7()),
        instance: me.clone(),
        protocol: Protocol::ConsoleSerial,
        user: user.into(),
        contractor: contractor.into(),
        source: "127.0.10.11"
            .parse()
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1])),
        target: target.into(),
        path: "internet-vpn".into(),
        console_session: None,
        started_at: Utc::now() - chrono::Duration::minutes(minutes),
        recording: None,
        detail: None,
    };
    let rows = vec![
        session("tanaka", "acme", "web01", 30),
        session("tanaka", "acme", "app02", 20),
        session("yamada", "globex", "app02", 10),
    ];
    catalogue.session_started_batch(&rows).await?;
    for r in &rows {
        catalogue
            .session_ended(
                r.id,
                Utc::now(),
                recorder::catalogue::Outcome::Completed,
                None,
            )
            .await?;
    }
    catalogue
        .record_decision(&DecisionRecord {
            at: Utc::now(),
            instance: me.clone(),
            protocol: Protocol::Rdp,
            source: "127.0.10.11".parse()?,
            target: Some("web01".into()),
            user: Some("tanaka".into()),
            contractor: Some("acme".into()),
            verdict: Verdict::Deny,
            rule: "rdp.vdi-to-vm".into(),
            reason: "web01 is a virtual machine; use its console".into(),
            session_id: None,
            explanation: None,
        })
        .await?;
    catalogue.close().await;
    Ok(Seeded {
        tanaka: rows.iter().take(2).map(|r| r.id).collect(),
        yamada: rows.get(2).map(|r| r.id).context("seed")?,
    })
}

/// The web UI of `instance`'s `sekisho serve`. A web listener that does not come up fails the
/// test: the UI must be what `serve` serves, not something the test hosts itself.
pub(crate) async fn web_base(instance: &SekishoInstance) -> Result<String> {
    wait_for_port(instance.listen.web, Duration::from_secs(20)).with_context(|| {
        format!(
            "sekisho serve's web listener {} did not come up\n--- serve log ---\n{}",
            instance.listen.web,
            instance.serve_log()
        )
    })?;
    Ok(format!("https://{}", instance.listen.web))
}

/// Waits (up to 5 s) for the browser to reach a path `ok` accepts: a click may return before
/// the form's navigation has finished. Returns the last path seen.
pub(crate) async fn wait_path(b: &Browser, ok: impl Fn(&str) -> bool) -> Result<String> {
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

/// Waits (up to 5 s) for the page's HTML to satisfy `ok`.
pub(crate) async fn wait_source(b: &Browser, ok: impl Fn(&str) -> bool) -> Result<bool> {
    for _ in 0..50 {
        if ok(&b.source().await?) {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(false)
}

pub(crate) async fn login(b: &Browser, base: &str, user: &str) -> Result<()> {
    b.goto(&format!("{base}/login")).await?;
    b.type_into("user", user).await?;
    b.type_into("password", PASSWORD).await?;
    b.click("login").await?;
    let path = wait_path(b, |p| p.starts_with("/sessions")).await?;
    ensure!(
        path.starts_with("/sessions"),
        "{user}: after login at {path}"
    );
    let src = b.source().await?;
    ensure!(
        src.contains(&format!("{user} (")),
        "{user}: not shown as logged in"
    );
    Ok(())
}

async fn logout(b: &Browser) -> Result<()> {
    b.click("logout").await?;
    let path = wait_path(b, |p| p == "/login").await?;
    ensure!(
        path == "/login",
        "logout did not return to the login page (at {path})"
    );
    Ok(())
}

/// The cell names the card page asks for ("C3", ...), in order.
async fn challenged_cells(b: &Browser) -> Result<Vec<String>> {
    let mut cells = Vec::new();
    for i in 0..3 {
        let e = b
            .client
            .find(fantoccini::Locator::Id(&format!("cell-{i}")))
            .await?;
        cells.push(e.text().await?.trim().to_owned());
    }
    Ok(cells)
}

/// The digit of ito's card in `cell` (like "C3"), or that digit plus one when `!right`.
fn card_answer(cell: &str, right: bool) -> Result<String> {
    let mut chars = cell.chars();
    let col = chars.next().context("cell")?;
    let col = usize::from(u8::try_from(col)?.checked_sub(b'A').context("column")?);
    let row: usize = chars.as_str().parse()?;
    let digit = CARD
        .get(row.checked_sub(1).context("row")?)
        .and_then(|r| r.as_bytes().get(col))
        .context("cell outside the card")?
        - b'0';
    Ok((if right { digit } else { (digit + 1) % 10 }).to_string())
}

/// Types the answers to the challenged cells and submits.
async fn answer_card(b: &Browser, cells: &[String], right: bool) -> Result<()> {
    for (i, cell) in cells.iter().enumerate() {
        b.type_into(&format!("answer-{i}"), &card_answer(cell, right)?)
            .await?;
    }
    b.click("card-submit").await
}

/// A user with a matrix card: the password alone opens nothing; a wrong answer is refused and
/// new cells are asked; the right answer lands on the session list.
async fn matrix_card_login(b: &Browser, base: &str) -> Result<()> {
    b.goto(&format!("{base}/login")).await?;
    b.type_into("user", "ito").await?;
    b.type_into("password", PASSWORD).await?;
    b.click("login").await?;
    ensure!(
        wait_source(b, |s| s.contains("id=\"cell-2\"")).await?,
        "no matrix card challenge after ito's password"
    );
    // The password step gives no access to any page.
    b.goto(&format!("{base}/sessions")).await?;
    let path = wait_path(b, |p| p == "/login").await?;
    ensure!(path == "/login", "password alone opened {path}");
    // The pending login is still there: the card page asks its (pending) cells again.
    b.goto(&format!("{base}/login/card")).await?;
    let first = challenged_cells(b).await?;
    answer_card(b, &first, false).await?;
    ensure!(
        wait_source(b, |s| s.contains("card-error")).await?,
        "a wrong matrix card answer was not refused"
    );
    ensure!(
        !b.path().await?.starts_with("/sessions"),
        "a wrong matrix card answer let ito in"
    );
    let second = challenged_cells(b).await?;
    ensure!(
        second != first,
        "the same cells were asked again after a wrong answer: {second:?}"
    );
    answer_card(b, &second, true).await?;
    let path = wait_path(b, |p| p.starts_with("/sessions")).await?;
    ensure!(
        path.starts_with("/sessions"),
        "the right matrix card answer did not log in (at {path})"
    );
    ensure!(
        b.source().await?.contains("ito ("),
        "ito not shown as logged in"
    );
    eprintln!(
        "web: matrix card login: cells {first:?} refused with wrong digits, {second:?} answered"
    );
    logout(b).await
}

async fn run(base: &str, seeded: &Seeded) -> Result<()> {
    let b = Browser::start().await?;
    let result = async {
        // A wrong password is refused.
        b.goto(&format!("{base}/login")).await?;
        b.type_into("user", "tanaka").await?;
        b.type_into("password", "wrong").await?;
        b.click("login").await?;
        ensure!(
            wait_source(&b, |s| s.contains("login-error")).await?,
            "wrong password accepted"
        );

        matrix_card_login(&b, base).await?;

        let tanaka0 = seeded.tanaka.first().context("seed")?.to_string();
        let yamada = seeded.yamada.to_string();

        // Contractor: own sessions only; another's by id is "not found"; no dashboard.
        login(&b, base, "tanaka").await?;
        let src = b.source().await?;
        for id in &seeded.tanaka {
            ensure!(
                src.contains(&id.to_string()),
                "tanaka misses own session {id}"
            );
        }
        ensure!(
            !src.contains(&yamada),
            "tanaka sees yamada's session in the list"
        );
        ensure!(
            !src.contains("nav-denials"),
            "contractor offered the denials dashboard"
        );
        b.goto(&format!("{base}/sessions/{yamada}")).await?;
        let src = b.source().await?;
        ensure!(
            !src.contains("id=\"session\"") && src.contains("class=\"error\""),
            "tanaka opened yamada's session"
        );
        b.goto(&format!("{base}/sessions/{tanaka0}")).await?;
        ensure!(
            b.source().await?.contains("id=\"session\""),
            "tanaka cannot open own session"
        );
        b.goto(&format!("{base}/denials")).await?;
        ensure!(
            !b.source().await?.contains("by-rule"),
            "contractor opened the denials dashboard"
        );
        b.goto(&format!("{base}/sessions")).await?;
        logout(&b).await?;

        // Auditor: every session, filter by user, no denials dashboard.
        login(&b, base, "suzuki").await?;
        let src = b.source().await?;
        ensure!(
            src.contains(&yamada) && src.contains(&tanaka0),
            "auditor does not see every session"
        );
        b.type_into("f-user", "yamada").await?;
        b.click("apply").await?;
        let path = wait_path(&b, |p| p.contains("user=yamada")).await?;
        ensure!(
            path.contains("user=yamada"),
            "filter not applied (at {path})"
        );
        let src = b.source().await?;
        ensure!(
            src.contains(&yamada) && !src.contains(&tanaka0),
            "filter by user wrong"
        );
        b.goto(&format!("{base}/sessions?target=web01")).await?;
        let src = b.source().await?;
        ensure!(
            src.contains(&tanaka0) && !src.contains(&yamada),
            "filter by target wrong"
        );
        b.goto(&format!("{base}/sessions/{yamada}")).await?;
        ensure!(
            b.source().await?.contains("id=\"session\""),
            "auditor cannot open a session"
        );
        b.goto(&format!("{base}/denials")).await?;
        ensure!(
            !b.source().await?.contains("by-rule"),
            "auditor opened the denials dashboard"
        );
        b.goto(&format!("{base}/sessions")).await?;
        logout(&b).await?;

        // Security and admin: the denials dashboard with rule, user and reason.
        for user in ["kobayashi", "root"] {
            login(&b, base, user).await?;
            b.click("nav-denials").await?;
            wait_path(&b, |p| p.starts_with("/denials")).await?;
            let src = b.source().await?;
            ensure!(
                src.contains("by-rule") && src.contains("rdp.vdi-to-vm"),
                "{user}: dashboard lacks the rule"
            );
            ensure!(
                src.contains("use its console"),
                "{user}: dashboard lacks the reason"
            );
            b.click("nav-live").await?;
            let path = wait_path(&b, |p| p == "/live").await?;
            ensure!(path == "/live", "{user}: live page (at {path})");
            logout(&b).await?;
        }

        // Language switch: English (from the browser) to Japanese via the link.
        login(&b, base, "suzuki").await?;
        b.click("lang-switch").await?;
        ensure!(
            wait_source(&b, |s| s.contains("セッション一覧")).await?,
            "switch to Japanese failed"
        );
        Ok(())
    }
    .await;
    b.close().await?;
    result
}

#[test]
fn web_ui_in_chromium() -> Result<()> {
    if !require_peers(&["chromium", "chromedriver"])? {
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new()?;
    let instance = SekishoInstance::start(&inventory())?;
    let result = runtime.block_on(async {
        let seeded = seed(&instance).await?;
        let base = web_base(&instance).await?;
        run(&base, &seeded).await
    });
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}

/// The `#verification` verdict the session page of `id` shows an auditor: its class.
async fn verification_class(b: &Browser, base: &str, id: &str) -> Result<String> {
    b.goto(&format!("{base}/sessions/{id}")).await?;
    let src = b.source().await?;
    let at = src
        .find("id=\"verification\" class=\"")
        .with_context(|| format!("no verification on the session page:\n{src}"))?;
    let rest = src
        .get(at + "id=\"verification\" class=\"".len()..)
        .unwrap_or("");
    Ok(rest.split('"').next().unwrap_or("").to_owned())
}

/// A real console session's recording, as `serve` stores and serves it, with one byte flipped
/// inside a chunk: `recording verify` exits 1 naming it tampered, and the session page in
/// Chromium shows it tampered where it showed it intact before.
#[test]
fn a_tampered_recording_fails_verify_and_the_session_page_says_so() -> Result<()> {
    use crate::ssh::ssh_peers;
    if !require_peers(&["ssh", "qemu-system-x86_64", "chromium", "chromedriver"])? {
        return Ok(());
    }
    let qemu = ssh_peers::start_qemu_serial()?;
    let inventory = inventory().replace(
        "serial_console = \"127.0.0.1:14501\"",
        &format!("serial_console = \"127.0.0.1:{}\"", qemu.port),
    );
    let instance = SekishoInstance::start(&inventory)?;
    let askpass = ssh_peers::askpass(instance.dir.path(), PASSWORD, None)?;
    let session = ssh_peers::ssh_tt(
        &askpass,
        instance.listen.ssh.port(),
        VNC_DESKTOP,
        "tanaka+web01",
    )?;
    session.wait_for("No bootable device", Duration::from_secs(20))?;
    drop(session);
    let row = instance.wait_until(Duration::from_secs(15), "the ended session", || {
        Ok(instance
            .sessions()?
            .into_iter()
            .find(|s| s["target"] == "web01" && !s["ended_at"].is_null()))
    })?;
    let id = row["id"].as_str().context("session id")?.to_owned();
    let path = ssh_peers::recording_path(&instance, &row)?;
    let verify = || -> Result<(Option<i32>, String)> {
        let out = instance.cli(&["recording", "verify", &path.display().to_string()])?;
        Ok((out.status.code(), ssh_peers::output_text(&out)))
    };
    let (code, text) = verify()?;
    assert_eq!(code, Some(0), "{text}");

    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        let result = async {
            login(&b, &base, "suzuki").await?;
            let before = verification_class(&b, &base, &id).await?;
            ensure!(before == "verify-intact", "before the flip: {before}");

            // One byte inside the first chunk's compressed body.
            let mut bytes = std::fs::read(&path)?;
            let magic = recorder::format::CHUNK_MAGIC;
            let chunk = bytes
                .windows(magic.len())
                .position(|w| w == magic)
                .context("no chunk in the recording")?;
            // Past the magic, the fields' length byte and the fields.
            let fields = usize::from(*bytes.get(chunk + magic.len()).context("chunk prefix")?);
            let at = chunk + magic.len() + 1 + fields + 2;
            let byte = bytes.get_mut(at).context("chunk body")?;
            *byte ^= 0x20;
            std::fs::write(&path, &bytes)?;

            let (code, text) = verify()?;
            ensure!(
                code == Some(1),
                "verify of the flipped file: {code:?}\n{text}"
            );
            ensure!(text.contains("TAMPERED"), "{text}");
            let after = verification_class(&b, &base, &id).await?;
            ensure!(after == "verify-tampered", "after the flip: {after}");
            Ok(())
        }
        .await;
        b.close().await?;
        result
    });
    drop(qemu);
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}

/// Submits the login form as `user` with `password`; true when the page answered with the
/// login error (and did not log in).
async fn failed_login(b: &Browser, base: &str, user: &str, password: &str) -> Result<bool> {
    b.goto(&format!("{base}/login")).await?;
    b.type_into("user", user).await?;
    b.type_into("password", password).await?;
    b.click("login").await?;
    let refused = wait_source(b, |s| s.contains("login-error")).await?;
    Ok(refused && !b.path().await?.starts_with("/sessions"))
}

#[test]
fn web_guessing_in_chromium_is_locked_out_for_every_door() -> Result<()> {
    if !require_peers(&["chromium", "chromedriver", "ssh"])? {
        return Ok(());
    }
    const MAX_FAILURES: usize = 3;
    let inventory = format!(
        "{}\n[auth]\nmax_failures = {MAX_FAILURES}\nfailure_window = \"15m\"\nlockout = \"15m\"\n",
        inventory()
    );
    let instance = SekishoInstance::start(&inventory)?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        let result = async {
            for i in 0..MAX_FAILURES {
                ensure!(
                    failed_login(&b, &base, "tanaka", &format!("guess-{i}")).await?,
                    "wrong password {i} was not refused"
                );
            }
            // Locked: the right password gets the wrong password's answer, and no page opens.
            ensure!(
                failed_login(&b, &base, "tanaka", PASSWORD).await?,
                "tanaka's right password opened the UI during the lockout"
            );
            b.goto(&format!("{base}/sessions")).await?;
            let path = wait_path(&b, |p| p == "/login").await?;
            ensure!(path == "/login", "a locked-out login reached {path}");
            // The browser's address is locked as well: another user's right password from it
            // is refused too, so guessing cannot move on to the next name.
            ensure!(
                failed_login(&b, &base, "suzuki", PASSWORD).await?,
                "the guessing address could still log another user in"
            );
            Ok(())
        }
        .await;
        b.close().await?;
        result
    });
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))?;

    // Each wrong password is one auth.failed row of protocol web; refusals while locked write
    // none, so a locked-out guesser cannot flood the catalogue.
    let rows: Vec<_> = instance
        .denials()?
        .into_iter()
        .filter(|d| d["rule"] == "auth.failed")
        .collect();
    ensure!(rows.len() == MAX_FAILURES, "auth.failed rows: {rows:?}");
    ensure!(
        rows.iter()
            .all(|r| r["protocol"] == "web" && r["user"] == "tanaka"),
        "{rows:?}"
    );
    ensure!(
        rows.iter().all(|r| !r.to_string().contains("guess-")),
        "a guessed password reached the catalogue"
    );
    let lockouts = instance.audit_events("auth lockout")?;
    ensure!(
        lockouts
            .iter()
            .any(|e| e.contains("user tanaka locked out")),
        "{lockouts:?}"
    );

    // The lockout is the door-independent throttle: tanaka's right password over SSH, from
    // his own desktop, is refused the same way.
    let askpass = crate::ssh::ssh_peers::askpass(&instance.path("data"), PASSWORD, None)?;
    let mut ssh = crate::ssh::ssh_peers::ssh(
        &askpass,
        instance.listen.ssh.port(),
        VNC_DESKTOP,
        &[
            "-o",
            "NumberOfPasswordPrompts=1",
            "tanaka@127.0.0.1",
            "console",
            "web01",
        ],
    )?;
    let status = ssh.wait_exit(Duration::from_secs(30))?;
    let out = ssh.output();
    ensure!(status.code() == Some(255), "ssh during the lockout: {out}");
    ensure!(out.contains("Permission denied"), "{out}");
    ensure!(
        !instance.serve_log().contains("SSH login accepted"),
        "SSH accepted tanaka during the web lockout"
    );
    Ok(())
}

/// The id of the one seeded denial, from the dashboard's row.
async fn seeded_denial_id(b: &Browser) -> Result<String> {
    let src = b.source().await?;
    let at = src
        .find("id=\"d-")
        .context("no denial row on the dashboard")?;
    let id: String = src
        .get(at + 6..)
        .unwrap_or_default()
        .chars()
        .take_while(|c| *c != '"')
        .collect();
    ensure!(id.len() == 36, "odd denial id {id:?}");
    Ok(id)
}

#[test]
fn web_denial_review_in_chromium() -> Result<()> {
    if !require_peers(&["chromium", "chromedriver"])? {
        return Ok(());
    }
    let instance = SekishoInstance::start(&inventory())?;
    let runtime = tokio::runtime::Runtime::new()?;
    let csv = runtime.block_on(async {
        seed(&instance).await?;
        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        let result = async {
            login(&b, &base, "kobayashi").await?;
            b.goto(&format!("{base}/denials")).await?;
            let src = b.source().await?;
            ensure!(
                src.contains("id=\"unreviewed-count\"") && src.contains("<strong>1</strong> / 1"),
                "the dashboard does not count one unreviewed denial"
            );
            let id = seeded_denial_id(&b).await?;
            b.client
                .find(fantoccini::Locator::Id(&format!("review-{id}-disposition")))
                .await?
                .select_by_value("incident")
                .await?;
            b.type_into(&format!("review-{id}-comment"), "=tried the VM twice")
                .await?;
            b.click(&format!("review-{id}-submit")).await?;
            ensure!(
                wait_source(&b, |s| s.contains("review review-incident")).await?,
                "the review is not shown on the dashboard"
            );
            let src = b.source().await?;
            ensure!(
                src.contains("<strong>0</strong> / 1"),
                "the denial still counts as unreviewed"
            );
            ensure!(src.contains("=tried the VM twice"), "the comment is not shown");
            // Only unreviewed: the reviewed row is gone from the list.
            b.goto(&format!("{base}/denials?unreviewed=1")).await?;
            ensure!(
                !b.source().await?.contains(&format!("id=\"d-{id}\"")),
                "a reviewed denial is listed as unreviewed"
            );
            // The CSV of the period, as the monthly report takes it.
            let csv = b
                .client
                .execute_async(
                    "const done = arguments[arguments.length - 1];\
                     fetch('/denials.csv?days=30').then(r => r.text()).then(done, e => done('ERROR ' + e));",
                    vec![],
                )
                .await?;
            let csv = csv.as_str().unwrap_or_default().to_owned();
            logout(&b).await?;
            // A contractor can neither see nor post reviews.
            login(&b, &base, "tanaka").await?;
            b.goto(&format!("{base}/denials.csv")).await?;
            ensure!(
                !b.source().await?.contains("rdp.vdi-to-vm"),
                "a contractor downloaded the denials CSV"
            );
            anyhow::Ok(csv)
        }
        .await;
        b.close().await?;
        result
    });
    let csv =
        csv.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))?;
    let lines: Vec<&str> = csv.lines().collect();
    ensure!(lines.len() == 2, "CSV: {csv}");
    ensure!(
        lines
            .first()
            .is_some_and(|h| h.starts_with("time,kind,protocol,user,contractor")),
        "CSV header: {csv}"
    );
    let row = lines.get(1).copied().unwrap_or_default();
    ensure!(
        row.contains("\"incident\"") && row.contains("\"kobayashi\""),
        "CSV row: {row}"
    );
    // A comment a spreadsheet would run as a formula is defused.
    ensure!(row.contains("\"'=tried the VM twice\""), "CSV row: {row}");
    // The review is an audit event and a ledger row, and the ledger verifies.
    let events = instance.audit_events("review")?;
    ensure!(
        events
            .iter()
            .any(|e| e.contains("incident") && e.contains("kobayashi")),
        "{events:?}"
    );
    let out = instance.cli(&["ledger", "verify"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "{text}");
    ensure!(text.contains("ledger intact: 1 rows"), "{text}");
    Ok(())
}

/// A policy event of a real session (the clipboard a VNC viewer sent through Sekisho to QEMU,
/// dropped) is reviewed like a denial in Chromium: listed on the dashboard and counted as
/// unreviewed by rule, user and contractor, given a disposition and a comment, then counted
/// as reviewed, in the CSV, an audit event and a ledger row.
#[test]
fn web_policy_event_review_in_chromium() -> Result<()> {
    if !require_peers(&[
        "chromium",
        "chromedriver",
        "qemu-system-x86_64",
        "python3",
        "ssh",
    ])? {
        return Ok(());
    }
    let qemu = vnc_peers::start_qemu_vnc(None)?;
    let instance = SekishoInstance::start(&with_web01_vnc(inventory(), qemu.port))?;
    let (session, _) = vnc_peers::recorded_console_session_with_clipboard(
        &instance,
        VNC_DESKTOP,
        1.5,
        Some("clipboard-secret-from-vdi"),
    )?;
    let runtime = tokio::runtime::Runtime::new()?;
    let csv = runtime.block_on(async {
        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        let result = async {
            login(&b, &base, "kobayashi").await?;
            b.goto(&format!("{base}/denials")).await?;
            let src = b.source().await?;
            let row_start = src
                .find("class=\"policy-event-row\" id=\"e-")
                .context("no policy event listed on the dashboard")?;
            let row = src.get(row_start..).unwrap_or_default();
            let row = row.get(..row.find("</tr>").unwrap_or(row.len())).unwrap_or_default();
            ensure!(
                row.contains("clipboard-dropped") && row.contains(&session),
                "the listed event is not the session's clipboard drop: {row}"
            );
            let id = row
                .get("class=\"policy-event-row\" id=\"e-".len()..)
                .and_then(|r| r.split('"').next())
                .context("event id")?
                .to_owned();
            for table in ["unreviewed-by-rule", "unreviewed-by-user", "unreviewed-by-contractor"] {
                ensure!(src.contains(&format!("id=\"{table}\"")), "no {table} table");
            }
            let unreviewed = |s: &str| {
                s.find("id=\"unreviewed-count\"")
                    .and_then(|i| s.get(i..))
                    .and_then(|s| s.split("<strong>").nth(1))
                    .and_then(|s| s.split("</strong>").next())
                    .and_then(|n| n.parse::<u64>().ok())
            };
            let before = unreviewed(&src).context("no unreviewed count")?;
            ensure!(before >= 1, "the clipboard drop is not counted as unreviewed");
            b.client
                .find(fantoccini::Locator::Id(&format!("review-{id}-disposition")))
                .await?
                .select_by_value("expected")
                .await?;
            b.type_into(&format!("review-{id}-comment"), "pasted a ticket number")
                .await?;
            b.click(&format!("review-{id}-submit")).await?;
            ensure!(
                wait_source(&b, |s| s.contains("pasted a ticket number")).await?,
                "the review is not shown on the dashboard"
            );
            let src = b.source().await?;
            ensure!(
                unreviewed(&src) == Some(before - 1),
                "the reviewed event still counts as unreviewed"
            );
            if let Some(dir) = std::env::var_os("SEKISHO_DOCS_PICTURES") {
                // `SEKISHO_DOCS_PICTURES=docs/pictures`: the picture in docs/ledger.md.
                b.client
                    .set_window_size(1280, 900)
                    .await
                    .context("window size")?;
                b.goto(&format!("{base}/denials#e-{id}")).await?;
                let png = b.client.screenshot().await?;
                std::fs::write(std::path::Path::new(&dir).join("review-dashboard.png"), png)?;
            }
            b.goto(&format!("{base}/denials?unreviewed=1")).await?;
            ensure!(
                !b.source().await?.contains(&format!("id=\"e-{id}\"")),
                "a reviewed policy event is listed as unreviewed"
            );
            let csv = b
                .client
                .execute_async(
                    "const done = arguments[arguments.length - 1];\
                     fetch('/denials.csv?days=30').then(r => r.text()).then(done, e => done('ERROR ' + e));",
                    vec![],
                )
                .await?;
            // A contractor cannot review.
            logout(&b).await?;
            login(&b, &base, "tanaka").await?;
            let status = b
                .client
                .execute_async(
                    &format!(
                        "const done = arguments[arguments.length - 1];\
                         fetch('/events/{id}/review', {{method: 'POST', headers: \
                         {{'Content-Type': 'application/x-www-form-urlencoded'}}, \
                         body: 'csrf=x&disposition=mistake'}}).then(r => done(r.status), e => done(0));"
                    ),
                    vec![],
                )
                .await?;
            ensure!(
                status.as_u64() != Some(200) && status.as_u64() != Some(303),
                "a contractor's review was taken ({status})"
            );
            anyhow::Ok((id, csv.as_str().unwrap_or_default().to_owned()))
        }
        .await;
        b.close().await?;
        result
    });
    let (id, csv) =
        csv.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))?;
    ensure!(
        csv.lines()
            .next()
            .is_some_and(|h| h.starts_with("time,kind,protocol,user")),
        "CSV header: {csv}"
    );
    let line = csv
        .lines()
        .find(|l| l.contains(&id))
        .with_context(|| format!("the event is not in the CSV: {csv}"))?;
    ensure!(
        line.contains("\"policy event\"")
            && line.contains("\"clipboard-dropped\"")
            && line.contains("\"expected\"")
            && line.contains("\"kobayashi\""),
        "CSV row: {line}"
    );
    let events = instance.audit_events("review")?;
    ensure!(
        events
            .iter()
            .any(|e| e.contains(&id) && e.contains("clipboard-dropped") && e.contains("expected")),
        "{events:?}"
    );
    let out = instance.cli(&["ledger", "verify"])?;
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "{text}");
    Ok(())
}

/// The live view of an SSH console session (tanaka on app02, whose console is a real sshd):
/// kobayashi (security) watches it in Chromium; tanaka is told; what tanaka's terminal shows
/// appears on the page, and the page's screen is the recording's screen at the moment it
/// says; leaving the page is told too; back on it, the kill button ends the session.
#[test]
fn web_live_view_of_an_ssh_console_is_told_shown_and_killed() -> Result<()> {
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
    let mut ssh = ssh_peers::ssh_tt(
        &askpass,
        instance.listen.ssh.port(),
        VNC_DESKTOP,
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
    let result =
        runtime.block_on(async {
            let base = web_base(&instance).await?;
            let b = Browser::start().await?;
            let result = async {
            login(&b, &base, "kobayashi").await?;
            b.goto(&format!("{base}/live")).await?;
            b.click(&format!("watch-{id}")).await?;
            ssh.wait_for(
                "kobayashi (security) is now watching this session",
                Duration::from_secs(10),
            )?;
            // Typed by tanaka, shown to kobayashi.
            ssh.send(b"echo LIVE-$((6*7))\n")?;
            let shown_to_tanaka = ssh.wait_for("LIVE-42\r\n", Duration::from_secs(10))?;
            let mut lag = None;
            for _ in 0..100 {
                let text = b
                    .client
                    .find(fantoccini::Locator::Id("screen"))
                    .await?
                    .text()
                    .await?;
                if text.lines().any(|l| l.trim_end() == "LIVE-42") {
                    lag = Some(shown_to_tanaka.elapsed());
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let lag = lag.context("the live view never showed what tanaka typed")?;
            eprintln!(
                "live view: shown to the watcher {:.0} ms after the contractor's terminal",
                lag.as_secs_f64() * 1000.0
            );
            // Generous for a loaded 2-core machine; the page asks every 250 ms.
            ensure!(lag < crate::support::EMERGENCY_STOP, "the live view lags by {lag:?}");
            // The page shows the recording's screen at the moment it names.
            let at = attr(&b, "screen", "data-at").await?.context("data-at")?;
            let watched = b
                .client
                .find(fantoccini::Locator::Id("screen"))
                .await?
                .text()
                .await?;
            let recorded = b
                .client
                .execute_async(
                    &format!(
                        "const done = arguments[arguments.length - 1];\
                         fetch('/sessions/{id}/screen?ms={at}').then(r => r.json())\
                         .then(s => done(s.lines.join('\\n')), e => done('ERROR ' + e));"
                    ),
                    vec![],
                )
                .await?;
            let trim = |t: &str| t.lines().map(str::trim_end).collect::<Vec<_>>().join("\n");
            ensure!(
                trim(&watched).trim_end() == trim(recorded.as_str().unwrap_or("")).trim_end(),
                "the watched screen is not the recording's at {at} ms:\n{watched}\n---\n{recorded}"
            );
            if let Some(dir) = std::env::var_os("SEKISHO_DOCS_PICTURES") {
                // `SEKISHO_DOCS_PICTURES=docs/pictures`: the picture in docs/live-view.md.
                b.client.set_window_size(1100, 800).await?;
                tokio::time::sleep(Duration::from_millis(500)).await;
                let png = b.client.screenshot().await?;
                std::fs::write(std::path::Path::new(&dir).join("live-view.png"), png)?;
            }
            // Leaving the page is told.
            b.goto(&format!("{base}/sessions")).await?;
            ssh.wait_for(
                "kobayashi (security) stopped watching this session",
                Duration::from_secs(10),
            )?;
            // Back on it: the emergency stop on the same page.
            b.goto(&format!("{base}/sessions/{id}/watch")).await?;
            ensure!(
                wait_source(&b, |s| s.contains("id=\"kill\"")).await?,
                "no kill button on the live view"
            );
            let told_again = || {
                ssh.output()
                    .matches("kobayashi (security) is now watching this session")
                    .count()
                    == 2
            };
            for _ in 0..100 {
                if told_again() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            ensure!(told_again(), "tanaka was not told of the second watch");
            // The emergency stop asks why and for a confirmation (both recorded).
            b.type_into("stop-reason", "live view test").await?;
            b.click("stop-confirm").await?;
            let asked = std::time::Instant::now();
            b.click("kill").await?;
            let told = ssh.wait_for("session ended by security staff", Duration::from_secs(10))?;
            let took = told.duration_since(asked);
            eprintln!("live view: killed in {:.0} ms", took.as_secs_f64() * 1000.0);
            ensure!(took < crate::support::EMERGENCY_STOP, "kill took {took:?}");
            anyhow::Ok(())
        }
        .await;
            b.close().await?;
            result
        });
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))?;
    let row = instance.wait_until(Duration::from_secs(10), "the session ended", || {
        Ok(instance
            .sessions()?
            .into_iter()
            .find(|s| s["id"] == id.as_str() && !s["ended_at"].is_null()))
    })?;
    ensure!(row["outcome"] == "killed", "{row}");
    // Watching is on the record: in the catalogue's events and in the recording.
    let events = crate::support::faults::session_events(&instance, &id)?;
    let count = |kind: &str| {
        events
            .iter()
            .filter(|(k, d)| k == kind && d.contains("kobayashi (security)"))
            .count()
    };
    ensure!(count("watcher joined") == 2, "{events:?}");
    ensure!(count("watcher left") >= 1, "{events:?}");
    let path = crate::ssh::ssh_peers::recording_path(&instance, &row)?;
    let bytes = std::fs::read(&path)?;
    let recording = recorder::reader::Recording::parse(&bytes)?;
    let mut noted = Vec::new();
    for r in recording.records() {
        if let recorder::format::RecordKind::Event(e) = r?.kind {
            noted.push(e.detail);
        }
    }
    ensure!(
        noted
            .iter()
            .filter(|d| d.starts_with("watcher joined: kobayashi (security)"))
            .count()
            == 2,
        "the recording's events: {noted:?}"
    );
    Ok(())
}

/// Four eyes: app02 is `supervised`. tanaka's console session waits, with nothing dialled,
/// until kobayashi watches it in Chromium; when kobayashi leaves, what tanaka types is held
/// (the console's shell never runs it, then or later); when kobayashi returns, input flows
/// again. Each step is in the session's events.
#[test]
fn web_supervised_console_waits_for_a_watcher_and_holds_input_without_one() -> Result<()> {
    use crate::ssh::ssh_peers;
    if !require_peers(&["chromium", "chromedriver", "ssh", "sshd", "runuser"])? {
        return Ok(());
    }
    let sshd = ssh_peers::start_sshd(&[])?;
    let inventory = supervised_app02(with_staff(ssh_peers::console_inventory(14501, sshd.port)))?;
    let instance = SekishoInstance::start_with(
        &inventory,
        crate::support::InstanceOptions {
            secrets: Some(ssh_peers::console_secrets()),
            ..crate::support::InstanceOptions::default()
        },
    )?;
    let sshd_log = || std::fs::read_to_string(sshd.dir.path().join("sshd.log"));
    let askpass = ssh_peers::askpass(instance.dir.path(), ssh_peers::DEMO_PASSWORD, None)?;
    let mut ssh = ssh_peers::ssh_tt(
        &askpass,
        instance.listen.ssh.port(),
        VNC_DESKTOP,
        "tanaka+app02",
    )?;
    ssh.wait_for("is supervised (four eyes)", Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(2));
    let log = sshd_log()?;
    ensure!(
        sshd_saw_no_ssh(&log),
        "the console was dialled before anyone watched:\n{log}\n--- ssh ---\n{}",
        ssh.output()
    );
    ensure!(!ssh.output().contains("this session is recorded"));
    let id = instance.wait_until(Duration::from_secs(10), "the waiting session", || {
        Ok(instance
            .sessions()?
            .into_iter()
            .find(|s| s["target"] == "app02" && s["ended_at"].is_null()))
    })?["id"]
        .as_str()
        .context("id")?
        .to_owned();
    let held_line = "your input is held (not sent)";
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        let result = async {
            login(&b, &base, "kobayashi").await?;
            b.goto(&format!("{base}/sessions/{id}/watch")).await?;
            ssh.wait_for("this session is recorded", Duration::from_secs(15))?;
            ssh.send(b"echo ONE-$((6*7))\n")?;
            ssh.wait_for("ONE-42", Duration::from_secs(15))?;
            // kobayashi leaves: input is held.
            b.goto(&format!("{base}/sessions")).await?;
            ssh.wait_for(held_line, Duration::from_secs(15))?;
            ssh.send(b"echo HELD-$((6*7))\n")?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            ensure!(
                !ssh.output().contains("HELD-42"),
                "held input reached the console"
            );
            // kobayashi returns: input flows, and what was held never arrives.
            b.goto(&format!("{base}/sessions/{id}/watch")).await?;
            ssh.wait_for("input resumed", Duration::from_secs(15))?;
            ssh.send(b"echo TWO-$((6*7))\n")?;
            ssh.wait_for("TWO-42", Duration::from_secs(15))?;
            ensure!(
                !ssh.output().contains("HELD-42"),
                "held input arrived later"
            );
            anyhow::Ok(())
        }
        .await;
        b.close().await?;
        result
    });
    result.map_err(|e| {
        anyhow::anyhow!(
            "{e:#}\n--- ssh ---\n{}\n--- serve log ---\n{}",
            ssh.output(),
            instance.serve_log()
        )
    })?;
    drop(ssh);
    let events = crate::support::faults::session_events(&instance, &id)?;
    for want in [
        "supervised: waiting for a watcher",
        "watcher joined: kobayashi (security)",
        "input held: nobody is watching",
        "input resumed (",
    ] {
        ensure!(
            events.iter().any(|(_, d)| d.starts_with(want)),
            "no {want:?} in {events:?}"
        );
    }
    Ok(())
}

/// Four eyes, nobody comes: app02 is `supervised` with `auth.supervision_wait = 3`; tanaka's
/// console session waits, nobody watches, and it is refused as `supervision.absent` with
/// nothing dialled.
#[test]
fn supervised_console_nobody_watching_is_refused_with_nothing_dialled() -> Result<()> {
    use crate::ssh::ssh_peers;
    if !require_peers(&["ssh", "sshd", "runuser"])? {
        return Ok(());
    }
    let sshd = ssh_peers::start_sshd(&[])?;
    let inventory = format!(
        "{}\n[auth]\nsupervision_wait = 3\n",
        supervised_app02(ssh_peers::console_inventory(14501, sshd.port))?
    );
    let instance = SekishoInstance::start_with(
        &inventory,
        crate::support::InstanceOptions {
            secrets: Some(ssh_peers::console_secrets()),
            ..crate::support::InstanceOptions::default()
        },
    )?;
    let askpass = ssh_peers::askpass(instance.dir.path(), ssh_peers::DEMO_PASSWORD, None)?;
    let mut ssh = ssh_peers::ssh_tt(
        &askpass,
        instance.listen.ssh.port(),
        VNC_DESKTOP,
        "tanaka+app02",
    )?;
    ssh.wait_for("waiting up to 3 seconds", Duration::from_secs(30))?;
    let status = ssh.wait_exit(Duration::from_secs(30))?;
    ensure!(!status.success(), "{}", ssh.output());
    ensure!(
        ssh.output().contains("denied (supervision.absent)"),
        "{}",
        ssh.output()
    );
    let denial = instance.wait_until(Duration::from_secs(10), "the denial", || {
        Ok(instance
            .denials()?
            .into_iter()
            .find(|d| d["rule"] == "supervision.absent"))
    })?;
    let reason = denial["reason"].as_str().unwrap_or_default();
    ensure!(
        reason.contains("app02 is supervised") && reason.contains("within 3 s"),
        "{denial}"
    );
    let row = instance.wait_until(Duration::from_secs(10), "the session closed", || {
        Ok(instance
            .sessions()?
            .into_iter()
            .find(|s| s["target"] == "app02" && !s["ended_at"].is_null()))
    })?;
    ensure!(row["outcome"] == "denied", "{row}");
    let log = std::fs::read_to_string(sshd.dir.path().join("sshd.log"))?;
    ensure!(
        sshd_saw_no_ssh(&log),
        "the console was dialled for a refused session:\n{log}"
    );
    Ok(())
}

/// The live view of a VNC console session (a real viewer through Sekisho to QEMU): the
/// canvas kobayashi watches is the recording's frame at the moment it names, and the
/// watcher's presence is in the session's events.
#[test]
fn web_live_view_of_a_vnc_console_shows_the_recorded_frame() -> Result<()> {
    if !require_peers(&[
        "chromium",
        "chromedriver",
        "qemu-system-x86_64",
        "python3",
        "ssh",
        "ffmpeg",
        "ffprobe",
    ])? {
        return Ok(());
    }
    let qemu = vnc_peers::start_qemu_vnc(None)?;
    let instance = SekishoInstance::start(&with_web01_vnc(inventory(), qemu.port))?;
    // Let SeaBIOS reach a steady screen first.
    std::thread::sleep(Duration::from_secs(3));
    std::thread::scope(|scope| {
        let viewer =
            scope.spawn(|| vnc_peers::recorded_console_session(&instance, VNC_DESKTOP, 12.0));
        let id = instance.wait_until(Duration::from_secs(20), "the live VNC session", || {
            Ok(instance
                .sessions()?
                .into_iter()
                .find(|s| s["protocol"] == "console-vnc" && s["ended_at"].is_null()))
        })?["id"]
            .as_str()
            .context("id")?
            .to_owned();
        let shot = instance.dir.path().join("live-canvas.png");
        let runtime = tokio::runtime::Runtime::new()?;
        let at = runtime.block_on(async {
            let base = web_base(&instance).await?;
            let b = Browser::start().await?;
            let result = async {
                login(&b, &base, "kobayashi").await?;
                b.goto(&format!("{base}/sessions/{id}/watch")).await?;
                let at = wait_at(&b, "canvas", |v| v > 0).await?;
                let at = at.context("the live canvas never drew")?;
                canvas_png(&b, &shot).await?;
                ensure!(
                    attr(&b, "canvas", "data-at").await?.as_deref() == Some(&at.to_string()),
                    "the canvas moved on while being read"
                );
                anyhow::Ok(at)
            }
            .await;
            b.close().await?;
            result
        });
        let at =
            at.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))?;
        let (_, recording) = viewer
            .join()
            .map_err(|_| anyhow::anyhow!("the viewer thread panicked"))??;
        let frame = instance.dir.path().join("recorded-frame.png");
        export_png(&instance, &recording, at as f64 / 1000.0, false, &frame)?;
        let (aw, ah, a) = raw_rgb(&shot)?;
        let (bw, bh, d) = raw_rgb(&frame)?;
        ensure!((aw, ah) == (bw, bh), "live {aw}x{ah}, recorded {bw}x{bh}");
        let differing = differing(&a, &d, aw * ah);
        eprintln!(
            "live view (VNC): {:.4}% of pixels differ from the recording's frame at {at} ms",
            differing * 100.0
        );
        ensure!(
            differing <= MAX_CANVAS_DIFFERING,
            "{:.4}% differ",
            differing * 100.0
        );
        let events = crate::support::faults::session_events(&instance, &id)?;
        ensure!(
            events
                .iter()
                .any(|(k, d)| k == "watcher joined" && d.contains("kobayashi (security)")),
            "{events:?}"
        );
        Ok(())
    })
}

/// The live view of an RDP session (the headless RDP client through Sekisho to xrdp): the
/// canvas kobayashi watches is the recording's frame at the moment it names.
#[test]
fn web_live_view_of_an_rdp_session_shows_the_recorded_frame() -> Result<()> {
    use crate::rdp::rdp_peers::{self, XRDP_PORT};
    use crate::rdp_load::{DESKTOP, inventory as rdp_inventory};
    if !require_peers(&[
        "chromium",
        "chromedriver",
        "xrdp",
        "xrdp-sesman",
        "Xvnc",
        "ffmpeg",
        "ffprobe",
    ])? {
        return Ok(());
    }
    rdp_peers::ensure_xrdp()?;
    let _serial = rdp_peers::serial();
    let instance = SekishoInstance::start_with(
        &with_staff(rdp_inventory(&[("srv01", XRDP_PORT)], None)),
        crate::support::InstanceOptions {
            secrets: Some(rdp_peers::lab_secrets(&["srv01"])),
            ..crate::support::InstanceOptions::default()
        },
    )?;
    let shot = instance.dir.path().join("live-rdp.png");
    let runtime = tokio::runtime::Runtime::new()?;
    let (id, at) = runtime.block_on(async {
        let mut o = e2e::rdp_client::ConnectOptions::new(
            instance.listen.rdp,
            "tanaka+srv01",
            crate::support::inventory::PASSWORD,
        );
        o.source = Some(std::net::IpAddr::V4(DESKTOP));
        let mut client = e2e::rdp_client::connect(&o).await?;
        // The client keeps the session going (and its screen updated) while it is watched.
        let pump = tokio::spawn(async move {
            client.pump_for(Duration::from_secs(12)).await?;
            client.disconnect().await
        });
        let id = loop {
            if let Some(s) = instance
                .sessions()?
                .into_iter()
                .find(|s| s["protocol"] == "rdp" && s["ended_at"].is_null())
            {
                break s["id"].as_str().context("id")?.to_owned();
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        let watched = async {
            login(&b, &base, "kobayashi").await?;
            b.goto(&format!("{base}/sessions/{id}/watch")).await?;
            let first = wait_at(&b, "canvas", |v| v > 0).await?;
            let first = first.context("the live canvas never drew")?;
            // Later pictures follow the session (the clock on xrdp's desktop ticks).
            let later = wait_at(&b, "canvas", |v| v > first + 1000).await?;
            let at = later.context("the live canvas stopped following the session")?;
            canvas_png(&b, &shot).await?;
            let still = attr(&b, "canvas", "data-at").await?;
            if still.as_deref() != Some(&at.to_string()) {
                // Moved on between the two reads: take the picture of the new moment.
                canvas_png(&b, &shot).await?;
            }
            let at: u64 = attr(&b, "canvas", "data-at")
                .await?
                .and_then(|v| v.parse().ok())
                .context("data-at")?;
            anyhow::Ok(at)
        }
        .await;
        b.close().await?;
        let at = watched
            .map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))?;
        pump.await??;
        anyhow::Ok((id, at))
    })?;
    let row = rdp_peers::ended_session(&instance, "the RDP session to end")?;
    ensure!(row["id"] == id.as_str(), "{row}");
    let recording = crate::ssh::ssh_peers::recording_path(&instance, &row)?;
    let frame = instance.dir.path().join("recorded-rdp-frame.png");
    export_png(&instance, &recording, at as f64 / 1000.0, false, &frame)?;
    let (aw, ah, a) = raw_rgb(&shot)?;
    let (bw, bh, d) = raw_rgb(&frame)?;
    ensure!((aw, ah) == (bw, bh), "live {aw}x{ah}, recorded {bw}x{bh}");
    let differing = differing(&a, &d, aw * ah);
    eprintln!(
        "live view (RDP): {:.4}% of pixels differ from the recording's frame at {at} ms",
        differing * 100.0
    );
    ensure!(
        differing <= MAX_CANVAS_DIFFERING,
        "{:.4}% differ",
        differing * 100.0
    );
    Ok(())
}

/// At most this fraction of pixels may differ between the browser's canvas and the decoder's
/// frame at the same moment. The canvas draws the server's PNG of that very frame without
/// scaling, so any difference is a bug (colour management, scaling, a frame of another
/// moment); the margin is for nothing else.
const MAX_CANVAS_DIFFERING: f64 = 0.001;
/// The moment of the VNC recording the test seeks to (seconds).
const SEEK_AT: f64 = 1.5;
/// The word printed late in the seeded terminal recording, and when (at least).
const NEEDLE: &str = "needle-4711";
const NEEDLE_AFTER_MS: u64 = 1200;

/// Makes a real VNC console session through Sekisho against QEMU (tanaka, ~4 s); returns
/// (session id, recording path).
fn vnc_session(instance: &SekishoInstance) -> Result<(String, std::path::PathBuf)> {
    vnc_peers::recorded_console_session(instance, VNC_DESKTOP, 4.0)
}

/// Seeds tanaka's SSH session whose recording (the real writer) prints a prompt, then
/// [`NEEDLE`] after [`NEEDLE_AFTER_MS`].
pub(crate) async fn seed_terminal(instance: &SekishoInstance) -> Result<SessionId> {
    let dir = instance.dir.path();
    let key = recorder::signing::load(&dir.join("data/signing.key"))?;
    let recordings = recorder::LocalDir::new(dir.join("data/recordings"));
    let id = SessionId(uuid::Uuid::now_v7());
    let header = recorder::Header {
        session_id: id.0,
        protocol: "ssh".into(),
        user: Some("tanaka".into()),
        contractor: Some("acme".into()),
        source: "127.0.10.11".into(),
        target: "web01".into(),
        start_unix_us: Utc::now().timestamp_micros(),
        metadata: Default::default(),
    };
    let w = recorder::RecordingWriter::create(
        &recordings,
        header,
        key,
        recorder::WriterConfig::default(),
    )
    .await?;
    let out = recorder::Direction::ServerToClient;
    let ch = recorder::ChannelId(0);
    w.data(out, ch, "web01$ ".as_bytes().to_vec().into())
        .await?;
    w.data(
        recorder::Direction::ClientToServer,
        ch,
        "grep -r x\r".as_bytes().to_vec().into(),
    )
    .await?;
    tokio::time::sleep(Duration::from_millis(NEEDLE_AFTER_MS + 100)).await;
    w.data(
        out,
        ch,
        (format!("\r\n{NEEDLE} found\r\nweb01$ "))
            .into_bytes()
            .into(),
    )
    .await?;
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
            started_at: Utc::now(),
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

/// A data attribute of the element with `id` (None while absent).
pub(crate) async fn attr(b: &Browser, id: &str, name: &str) -> Result<Option<String>> {
    let e = b.client.find(fantoccini::Locator::Id(id)).await?;
    Ok(e.attr(name).await?)
}

/// Waits (up to 15 s) until `data-at` of the element `id` satisfies `ok`; returns it.
pub(crate) async fn wait_at(
    b: &Browser,
    id: &str,
    ok: impl Fn(u64) -> bool,
) -> Result<Option<u64>> {
    let mut last = None;
    for _ in 0..150 {
        last = attr(b, id, "data-at")
            .await?
            .and_then(|v| v.parse::<u64>().ok());
        if last.is_some_and(&ok) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(last)
}

/// The HTTP status of a same-origin GET made by the page (the browser's own cookie).
async fn fetch_status(b: &Browser, path: &str) -> Result<u64> {
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

async fn run_player(
    base: &str,
    instance: &SekishoInstance,
    vnc: &str,
    recording: &std::path::Path,
    terminal: SessionId,
) -> Result<()> {
    let b = Browser::start().await?;
    let result = async {
        let play = format!("{base}/sessions/{vnc}/play?t={SEEK_AT}");
        // Contractor: own recording plays; the canvas at SEEK_AT is the decoder's frame.
        login(&b, base, "tanaka").await?;
        b.goto(&play).await?;
        let want = (SEEK_AT * 1000.0) as u64;
        let at = wait_at(&b, "canvas", |v| v == want).await?;
        ensure!(at == Some(want), "canvas never showed {want} ms (at {at:?})");
        let first = attr(&b, "canvas", "data-first-frame-ms").await?;
        eprintln!(
            "web player: time to first frame {} ms from navigation start (VNC, seek to {SEEK_AT} s)",
            first.as_deref().unwrap_or("?")
        );
        let canvas = b.client.find(fantoccini::Locator::Id("canvas")).await?;
        let shot = instance.dir.path().join("canvas.png");
        std::fs::write(&shot, canvas.screenshot().await?)?;
        let frame = instance.dir.path().join("decoder.png");
        export_png(instance, recording, SEEK_AT, false, &frame)?;
        let (aw, ah, a) = raw_rgb(&shot)?;
        let (bw, bh, d) = raw_rgb(&frame)?;
        ensure!(
            (aw, ah) == (bw, bh),
            "canvas screenshot {aw}x{ah}, decoder frame {bw}x{bh}"
        );
        let differing = a
            .chunks_exact(3)
            .zip(d.chunks_exact(3))
            .filter(|(x, y)| x != y)
            .count() as f64
            / f64::from(aw * ah);
        eprintln!(
            "web player: {:.4}% of pixels differ between the canvas ({aw}x{ah}) and the decoder's frame at {SEEK_AT} s",
            differing * 100.0
        );
        ensure!(
            differing <= MAX_CANVAS_DIFFERING,
            "{:.4}% of pixels differ (at most {:.4}%)",
            differing * 100.0,
            MAX_CANVAS_DIFFERING * 100.0
        );
        // Playing at 16x moves the clock on.
        b.click("speed-16").await?;
        let moved = wait_at(&b, "canvas", |v| v > want).await?;
        ensure!(moved.is_some_and(|v| v > want), "16x did not play (at {moved:?})");
        b.click("pause").await?;
        logout(&b).await?;

        // Another contractor: neither the page nor its frames nor its timeline.
        login(&b, base, "yamada").await?;
        b.goto(&play).await?;
        ensure!(
            !b.source().await?.contains("id=\"canvas\""),
            "yamada opened tanaka's player"
        );
        for path in [
            format!("/sessions/{vnc}/frame?t=1"),
            format!("/sessions/{vnc}/timeline"),
        ] {
            let status = fetch_status(&b, &path).await?;
            ensure!(status == 404, "yamada GET {path}: {status}");
        }
        logout(&b).await?;

        // Auditor and security see it.
        for user in ["suzuki", "kobayashi"] {
            login(&b, base, user).await?;
            b.goto(&play).await?;
            let at = wait_at(&b, "canvas", |v| v == want).await?;
            ensure!(at == Some(want), "{user}: canvas at {at:?}");
            let status = fetch_status(&b, &format!("/sessions/{vnc}/timeline")).await?;
            ensure!(status == 200, "{user}: timeline {status}");
            logout(&b).await?;
        }

        // Search in a terminal recording jumps to the moment the word appeared.
        login(&b, base, "tanaka").await?;
        b.goto(&format!("{base}/sessions/{terminal}/play")).await?;
        ensure!(
            wait_at(&b, "screen", |_| true).await?.is_some(),
            "terminal player shows nothing"
        );
        let screen = b.client.find(fantoccini::Locator::Id("screen")).await?;
        ensure!(!screen.text().await?.contains(NEEDLE), "needle shown at the start");
        b.type_into("search", NEEDLE).await?;
        b.click("search-go").await?;
        let at = wait_at(&b, "screen", |v| v >= NEEDLE_AFTER_MS).await?;
        ensure!(
            at.is_some_and(|v| v >= NEEDLE_AFTER_MS),
            "search did not jump (at {at:?})"
        );
        let screen = b.client.find(fantoccini::Locator::Id("screen")).await?;
        ensure!(
            screen.text().await?.contains(NEEDLE),
            "the screen at the hit lacks the word"
        );
        // Typed keys are searched too.
        b.type_into("search", "grep -r").await?;
        b.click("search-go").await?;
        let ok = wait_source(&b, |s| s.contains("hit hit-input")).await?;
        ensure!(ok, "typed keys not found");
        Ok(())
    }
    .await;
    b.close().await?;
    result
}

/// The player in Chromium: a real VNC session through Sekisho against QEMU, played in the
/// browser; the canvas at a known moment equals the decoder's frame; who may see it; search
/// in a terminal recording.
#[test]
fn web_player_in_chromium() -> Result<()> {
    if !require_peers(&[
        "chromium",
        "chromedriver",
        "qemu-system-x86_64",
        "python3",
        "ssh",
        "ffmpeg",
        "ffprobe",
    ])? {
        return Ok(());
    }
    let qemu = vnc_peers::start_qemu_vnc(None)?;
    let inventory = with_web01_vnc(inventory(), qemu.port);
    let instance = SekishoInstance::start(&inventory)?;
    // Let SeaBIOS reach a steady screen first.
    std::thread::sleep(Duration::from_secs(3));
    let (vnc, recording) = vnc_session(&instance)
        .map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let terminal = seed_terminal(&instance).await?;
        let base = web_base(&instance).await?;
        run_player(&base, &instance, &vnc, &recording, terminal).await
    });
    drop(qemu);
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}

/// A real xfreerdp → Sekisho → xrdp recording (1024x768; a clock is on screen at 3 s).
const RDP_FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../player/tests/data/rdp-xrdp.skrec"
);
/// The moment of the RDP recording the test seeks to (seconds).
const RDP_SEEK_AT: f64 = 3.0;

/// Imports the RDP fixture into the instance's storage and catalogue as tanaka's session;
/// returns (session id, recording path).
pub(crate) async fn seed_rdp(
    instance: &SekishoInstance,
) -> Result<(SessionId, std::path::PathBuf)> {
    let dir = instance.dir.path();
    let recording = dir.join("data/recordings/rdp-xrdp-fixture.skrec");
    if let Some(parent) = recording.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(RDP_FIXTURE, &recording)
        .with_context(|| format!("cannot copy the fixture {RDP_FIXTURE}"))?;
    let id = SessionId(uuid::Uuid::now_v7());
    let catalogue =
        Catalogue::connect(&format!("sqlite://{}/data/sekisho.db", dir.display())).await?;
    catalogue
        .session_started(&NewSession {
            id,
            instance: InstanceId::new("e2e-web-seed")?,
            protocol: Protocol::Rdp,
            user: "tanaka".into(),
            contractor: "acme".into(),
            source: "127.0.10.11".parse()?,
            target: "file-phys02".into(),
            path: "internet-vpn".into(),
            console_session: None,
            started_at: Utc::now() - chrono::Duration::minutes(1),
            recording: Some(recording.display().to_string()),
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
    Ok((id, recording))
}

/// Standard base64 (what `canvas.toDataURL` gives).
fn base64_decode(text: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => anyhow::bail!("not base64: {c:#x}"),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    Ok(out)
}

/// `sekisho export RECORDING --format png --at AT [--pointer] -o OUT`, which must succeed: the
/// decoder's picture that the browser's canvas is compared with.
fn export_png(
    instance: &SekishoInstance,
    recording: &std::path::Path,
    at: f64,
    pointer: bool,
    out: &std::path::Path,
) -> Result<()> {
    let at = at.to_string();
    let mut args = vec![
        "export",
        recording.to_str().context("path")?,
        "--format",
        "png",
        "--at",
        &at,
    ];
    if pointer {
        args.push("--pointer");
    }
    args.extend(["-o", out.to_str().context("path")?]);
    let run = instance.cli_raw(&args)?;
    ensure!(
        run.status.success(),
        "export {args:?}: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    Ok(())
}

/// The canvas's own pixels (not a screenshot of the page) as a PNG file at `path`.
async fn canvas_png(b: &Browser, path: &std::path::Path) -> Result<()> {
    let v = b
        .client
        .execute(
            "return document.getElementById('canvas').toDataURL('image/png');",
            vec![],
        )
        .await?;
    let url = v.as_str().context("toDataURL gave no string")?;
    let data = url
        .strip_prefix("data:image/png;base64,")
        .context("toDataURL is not a PNG")?;
    std::fs::write(path, base64_decode(data)?)?;
    Ok(())
}

/// Fraction of pixels that differ between two RGB24 images of the same size.
fn differing(a: &[u8], b: &[u8], pixels: u32) -> f64 {
    a.chunks_exact(3)
        .zip(b.chunks_exact(3))
        .filter(|(x, y)| x != y)
        .count() as f64
        / f64::from(pixels)
}

async fn run_rdp_player(
    base: &str,
    instance: &SekishoInstance,
    id: SessionId,
    recording: &std::path::Path,
) -> Result<()> {
    let b = Browser::start().await?;
    let result = async {
        login(&b, base, "tanaka").await?;
        b.goto(&format!("{base}/sessions/{id}/play?t={RDP_SEEK_AT}"))
            .await?;
        let want = (RDP_SEEK_AT * 1000.0) as u64;
        let at = wait_at(&b, "canvas", |v| v == want).await?;
        ensure!(at == Some(want), "canvas never showed {want} ms (at {at:?})");
        let shot = instance.dir.path().join("rdp-canvas.png");
        canvas_png(&b, &shot).await?;
        let frame = instance.dir.path().join("rdp-decoder.png");
        export_png(instance, recording, RDP_SEEK_AT, false, &frame)?;
        let (aw, ah, a) = raw_rgb(&shot)?;
        let (bw, bh, d) = raw_rgb(&frame)?;
        ensure!(
            (aw, ah) == (bw, bh),
            "canvas {aw}x{ah}, decoder frame {bw}x{bh}"
        );
        // Not a blank screen: the moment shows the desktop's clock (white face, black hands).
        let white = d.chunks_exact(3).filter(|p| p == &[255, 255, 255]).count();
        ensure!(
            white > 10_000,
            "the decoder's frame at {RDP_SEEK_AT} s is nearly blank ({white} white pixels)"
        );
        let diff = differing(&a, &d, aw * ah);
        eprintln!(
            "web player: {:.4}% of pixels differ between the canvas ({aw}x{ah}) and the RDP decoder's frame at {RDP_SEEK_AT} s",
            diff * 100.0
        );
        // The canvas draws the server's PNG of that very frame unscaled: nothing may differ.
        ensure!(diff == 0.0, "{:.4}% of pixels differ", diff * 100.0);
        // Another moment is another picture (the canvas follows the slider).
        b.goto(&format!("{base}/sessions/{id}/play?t=1")).await?;
        let at = wait_at(&b, "canvas", |v| v == 1000).await?;
        ensure!(at == Some(1000), "canvas never showed 1000 ms (at {at:?})");
        canvas_png(&b, &shot).await?;
        let (_, _, early) = raw_rgb(&shot)?;
        ensure!(
            differing(&early, &d, aw * ah) > 0.01,
            "the canvas at 1 s equals the frame at {RDP_SEEK_AT} s"
        );
        // "Show the pointer": ticking the box redraws the same moment with the recorded
        // pointer over it, which changes a pointer's worth of pixels and nothing else;
        // unticking it gives the decoder's frame back exactly.
        b.goto(&format!("{base}/sessions/{id}/play?t={RDP_SEEK_AT}"))
            .await?;
        ensure!(wait_at(&b, "canvas", |v| v == want).await? == Some(want));
        let mut with_pointer = Vec::new();
        for tick in [true, false] {
            b.client
                .execute("delete document.getElementById('canvas').dataset.at;", vec![])
                .await?;
            b.click("show-pointer").await?;
            let at = wait_at(&b, "canvas", |v| v == want).await?;
            ensure!(at == Some(want), "canvas not redrawn after the pointer box (at {at:?})");
            canvas_png(&b, &shot).await?;
            let (_, _, pixels) = raw_rgb(&shot)?;
            if tick {
                with_pointer = pixels;
            } else {
                ensure!(
                    differing(&pixels, &d, aw * ah) == 0.0,
                    "the pointer is still drawn after unticking the box"
                );
            }
        }
        let changed = with_pointer
            .chunks_exact(3)
            .zip(d.chunks_exact(3))
            .filter(|(x, y)| x != y)
            .count();
        eprintln!("web player: the pointer changes {changed} pixels at {RDP_SEEK_AT} s");
        // A pointer is at most 384×384 (the large pointer), far less than the screen.
        ensure!(
            changed > 0 && changed <= 384 * 384,
            "{changed} pixels changed by the pointer"
        );
        // `sekisho export --pointer` draws the very same picture as the ticked box.
        let with_pointer_png = instance.dir.path().join("rdp-decoder-pointer.png");
        export_png(instance, recording, RDP_SEEK_AT, true, &with_pointer_png)?;
        let (_, _, exported) = raw_rgb(&with_pointer_png)?;
        ensure!(
            differing(&exported, &with_pointer, aw * ah) == 0.0,
            "export --pointer differs from the canvas with the pointer shown"
        );
        Ok(())
    }
    .await;
    b.close().await?;
    result
}

/// The player in Chromium on an RDP recording (the real xrdp fixture): the canvas at a known
/// moment is the decoder's frame, pixel for pixel.
#[test]
fn web_player_rdp_in_chromium() -> Result<()> {
    if !require_peers(&["chromium", "chromedriver", "ffmpeg", "ffprobe"])? {
        return Ok(());
    }
    let instance = SekishoInstance::start(&inventory())?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(async {
        let (id, recording) = seed_rdp(&instance).await?;
        let base = web_base(&instance).await?;
        run_rdp_player(&base, &instance, id, &recording).await
    });
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}

/// Page loads measured per recording kind by the first-frame benchmark (the first one is cold:
/// the server decodes the recording; later ones find it in the server's replay cache).
const BENCH_RUNS: usize = 7;

/// Navigates to the player of `id` `BENCH_RUNS` times; returns the times to first frame (ms,
/// from navigation start, as the page measured them), in run order.
async fn first_frames(b: &Browser, base: &str, id: &str, view: &str) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(BENCH_RUNS);
    for run in 0..BENCH_RUNS {
        // Another page in between, so every run is a fresh navigation and a fresh script.
        b.goto(&format!("{base}/sessions")).await?;
        b.goto(&format!("{base}/sessions/{id}/play")).await?;
        let mut ms = None;
        for _ in 0..300 {
            if let Some(v) = attr(b, view, "data-first-frame-ms").await? {
                ms = Some(v.parse::<f64>()?);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ms = ms.with_context(|| format!("{view}: no frame drawn in run {run}"))?;
        out.push(ms);
    }
    Ok(out)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let at = |i: usize| s.get(i).copied().unwrap_or(f64::NAN);
    if n % 2 == 1 {
        at(n / 2)
    } else {
        (at((n / 2).wrapping_sub(1)) + at(n / 2)) / 2.0
    }
}

/// Benchmark: time from navigation to the first drawn frame in Chromium, for a terminal, a VNC
/// (real session against QEMU) and an RDP (the xrdp fixture) recording. Prints
/// `BENCH web_first_frame_<kind>=<median> ms` (median of the warm runs) and the cold run,
/// with the release build of `sekisho serve` (`SEKISHO_BIN` to name another).
/// `cargo test -p e2e --test e2e -- --ignored --nocapture web_first_frame_bench`
#[test]
#[ignore = "benchmark: prints figures, run by scripts/bench"]
fn web_first_frame_bench() -> Result<()> {
    if !require_peers(&[
        "chromium",
        "chromedriver",
        "qemu-system-x86_64",
        "python3",
        "ssh",
    ])? {
        return Ok(());
    }
    let qemu = vnc_peers::start_qemu_vnc(None)?;
    let inventory = with_web01_vnc(inventory(), qemu.port);
    // The release build, as deployed: the cold runs decode recordings on the server, which
    // the test build does several times slower.
    let mut instance = SekishoInstance::start_with(
        &inventory,
        InstanceOptions {
            no_serve: true,
            ..InstanceOptions::default()
        },
    )?;
    instance.serve_with(crate::support::bench::sekisho_binary()?)?;
    std::thread::sleep(Duration::from_secs(3));
    let (vnc, _) = vnc_session(&instance)
        .map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let result: Result<()> = runtime.block_on(async {
        let terminal = seed_terminal(&instance).await?.to_string();
        let (rdp, _) = seed_rdp(&instance).await?;
        let rdp = rdp.to_string();
        let base = web_base(&instance).await?;
        let b = Browser::start().await?;
        let r: Result<()> = async {
            login(&b, &base, "suzuki").await?;
            for (kind, id, view) in [
                ("terminal", &terminal, "screen"),
                ("vnc", &vnc, "canvas"),
                ("rdp", &rdp, "canvas"),
            ] {
                let times = first_frames(&b, &base, id, view).await?;
                let cold = times.first().copied().unwrap_or(f64::NAN);
                let warm = median(times.get(1..).unwrap_or(&[]));
                eprintln!(
                    "web first frame {kind}: runs {times:?} ms (cold {cold:.0} ms, then median of {} warm runs)",
                    times.len().saturating_sub(1)
                );
                println!("BENCH web_first_frame_{kind}={warm:.0} ms");
                println!("BENCH web_first_frame_{kind}_cold={cold:.0} ms");
            }
            Ok(())
        }
        .await;
        b.close().await?;
        r
    });
    drop(qemu);
    result.map_err(|e| anyhow::anyhow!("{e:#}\n--- serve log ---\n{}", instance.serve_log()))
}
