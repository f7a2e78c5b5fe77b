//! The web UI's authorisation, CSRF and rate limit, over the real router and a real SQLite
//! catalogue (through `tower::ServiceExt::oneshot`).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use bytes::Bytes;
use chrono::Utc;
use policy::{Inventory, Protocol, SessionId};
use recorder::catalogue::{Catalogue, DecisionRecord, InstanceId, NewSession, Verdict};
use tower::ServiceExt as _;

use super::{WebLimits, WebState, metrics_router, router, serve_listener};
use crate::services::{Services, ServicesConfig};

const PASSWORD: &str = "correct horse";
/// sato's matrix card (rows 1..5, columns A..J).
const CARD: [&str; 5] = [
    "3829104756",
    "1047382956",
    "5561029384",
    "9012837465",
    "2749501836",
];

/// A cheap argon2id hash (tests only: the real ones are costly on purpose).
fn cheap_hash(password: &str) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let params = argon2::Params::new(8, 1, 1, None).unwrap();
    let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
    a.hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

fn inventory(dir: &std::path::Path) -> Inventory {
    let hash = cheap_hash(PASSWORD);
    let text = format!(
        r#"timezone = "Asia/Tokyo"

[storage]
database = "sqlite://{d}/cat.db"
recordings = "{d}/rec"
signing_key = "{d}/signing.key"
secrets = "{d}/secrets.toml"

[[contractor]]
id = "acme"
name = "ACME"

[[contractor]]
id = "globex"
name = "Globex"

[[user]]
name = "tanaka"
contractor = "acme"
role = "contractor"
password_hash = "{hash}"

[[user]]
name = "yamada"
contractor = "globex"
role = "contractor"
password_hash = "{hash}"

[[user]]
name = "suzuki"
role = "auditor"
password_hash = "{hash}"

[[user]]
name = "kobayashi"
role = "security"
password_hash = "{hash}"

[[user]]
name = "root"
role = "admin"
password_hash = "{hash}"

[[user]]
name = "sato"
contractor = "acme"
role = "contractor"
password_hash = "{hash}"
matrix_card = [{card}]
"#,
        card = CARD
            .iter()
            .map(|r| format!("\"{r}\""))
            .collect::<Vec<_>>()
            .join(", "),
        d = dir.display()
    );
    Inventory::from_toml(&text, "test.toml").unwrap()
}

struct Fixture {
    state: Arc<WebState>,
    /// tanaka's finished SSH session, with an intact recording.
    tanaka: SessionId,
    /// yamada's live session.
    yamada_live: SessionId,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let inv = inventory(dir.path());
    let catalogue = Catalogue::connect(&format!("sqlite://{}/cat.db", dir.path().display()))
        .await
        .unwrap();
    let key = recorder::RecordingKey::generate().unwrap();
    let recordings = recorder::LocalDir::new(dir.path().join("rec"));
    std::fs::create_dir_all(dir.path().join("rec")).unwrap();
    let instance = InstanceId::new("test").unwrap();

    let tanaka = SessionId(uuid::Uuid::now_v7());
    let header = recorder::Header {
        session_id: tanaka.0,
        protocol: "ssh".into(),
        user: Some("tanaka".into()),
        contractor: Some("acme".into()),
        source: "127.0.10.11".into(),
        target: "web01".into(),
        start_unix_us: Utc::now().timestamp_micros(),
        metadata: Default::default(),
    };
    let writer = recorder::RecordingWriter::create(
        &recordings,
        header,
        key.clone(),
        recorder::WriterConfig::default(),
    )
    .await
    .unwrap();
    writer
        .data(
            recorder::Direction::ServerToClient,
            recorder::ChannelId(0),
            Bytes::from_static(b"hello from web01\r\n$ "),
        )
        .await
        .unwrap();
    let summary = writer.finish().await.unwrap();
    let started = Utc::now() - chrono::Duration::minutes(5);
    let session = |id, user: &str, contractor: &str, recording: Option<String>| NewSession {
        id,
        instance: instance.clone(),
        protocol: Protocol::Ssh,
        user: user.into(),
        contractor: contractor.into(),
        source: "127.0.10.11".parse().unwrap(),
        target: "web01".into(),
        path: "internet-vpn".into(),
        console_session: None,
        started_at: started,
        recording,
        detail: None,
    };
    catalogue
        .session_started(&session(
            tanaka,
            "tanaka",
            "acme",
            Some(summary.location.clone()),
        ))
        .await
        .unwrap();
    catalogue
        .session_ended(
            tanaka,
            Utc::now(),
            recorder::catalogue::Outcome::Completed,
            Some(&recorder::catalogue::RecordingSummary {
                location: summary.location.clone(),
                state: recorder::catalogue::RecordingState::Complete,
                size: summary.size,
                hash: Some(summary.final_hash.clone()),
            }),
        )
        .await
        .unwrap();
    let yamada_live = SessionId(uuid::Uuid::now_v7());
    catalogue
        .session_started(&session(yamada_live, "yamada", "globex", None))
        .await
        .unwrap();
    catalogue
        .record_decision(&DecisionRecord {
            at: Utc::now(),
            instance: instance.clone(),
            protocol: Protocol::Rdp,
            source: "127.0.10.11".parse().unwrap(),
            target: Some("web01".into()),
            user: Some("tanaka".into()),
            contractor: Some("acme".into()),
            verdict: Verdict::Deny,
            rule: "rdp.vdi-to-vm".into(),
            reason: "web01 is a virtual machine; use its console".into(),
            session_id: None,
            explanation: None,
        })
        .await
        .unwrap();

    let services = Services::new(ServicesConfig {
        inventory: inv,
        secrets: None,
        catalogue,
        recordings: recordings.into(),
        signing_key: key.clone(),
        instance,
        data_dir: dir.path().to_path_buf(),
        tls: None,
        shutdown: tokio_util::sync::CancellationToken::new(),
        tasks: tokio_util::task::TaskTracker::new(),
    });
    let state = WebState::with_key(services, true, Some(key.verifying_key()));
    Fixture {
        state,
        tanaka,
        yamada_live,
        _dir: dir,
    }
}

/// Logs `user` in directly (the login form itself is tested apart): (cookie, csrf).
fn login_as(f: &Fixture, user: &str) -> (String, String) {
    let (token, csrf) = f.state.auth.create(user).unwrap();
    (format!("sekisho_session={token}"), csrf)
}

async fn get(f: &Fixture, cookie: Option<&str>, uri: &str) -> (StatusCode, String) {
    let mut req = Request::builder().uri(uri);
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    let resp = router(f.state.clone())
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn post(
    f: &Fixture,
    cookie: Option<&str>,
    uri: &str,
    form: &str,
) -> axum::response::Response {
    let mut req = Request::builder()
        .method("POST")
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header(header::COOKIE, c);
    }
    router(f.state.clone())
        .oneshot(req.body(Body::from(form.to_owned())).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn every_route_checks_the_role() {
    let f = fixture().await;
    let t = f.tanaka;
    let y = f.yamada_live;
    let pages = [
        "/sessions".to_owned(),
        format!("/sessions/{t}"),
        format!("/sessions/{t}/recording"),
        format!("/sessions/{t}/play"),
        format!("/sessions/{t}/screen?ms=0"),
        format!("/sessions/{y}"),
        "/denials".to_owned(),
        "/live".to_owned(),
    ];
    use StatusCode as S;
    // Expected status per role: tanaka (owner of t), yamada (owner of y), auditor, security, admin.
    let expected: [[S; 5]; 8] = [
        [S::OK, S::OK, S::OK, S::OK, S::OK],
        [S::OK, S::NOT_FOUND, S::OK, S::OK, S::OK],
        [S::OK, S::NOT_FOUND, S::OK, S::OK, S::OK],
        [S::OK, S::NOT_FOUND, S::OK, S::OK, S::OK],
        [S::OK, S::NOT_FOUND, S::OK, S::OK, S::OK],
        [S::NOT_FOUND, S::OK, S::OK, S::OK, S::OK],
        [S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND, S::OK, S::OK],
        [S::NOT_FOUND, S::NOT_FOUND, S::NOT_FOUND, S::OK, S::OK],
    ];
    let users = ["tanaka", "yamada", "suzuki", "kobayashi", "root"];
    for (ui, user) in users.iter().enumerate() {
        let (cookie, _) = login_as(&f, user);
        for (pi, page) in pages.iter().enumerate() {
            let (status, _) = get(&f, Some(&cookie), page).await;
            assert_eq!(status, expected[pi][ui], "{user} GET {page}");
        }
    }
    // Not logged in: every page sends to the login page.
    for page in &pages {
        let (status, _) = get(&f, None, page).await;
        assert_eq!(status, S::SEE_OTHER, "anonymous GET {page}");
    }
    // An unknown id is a 404 like another's.
    let (cookie, _) = login_as(&f, "suzuki");
    let (status, _) = get(
        &f,
        Some(&cookie),
        &format!("/sessions/{}", uuid::Uuid::now_v7()),
    )
    .await;
    assert_eq!(status, S::NOT_FOUND);
    let (status, _) = get(&f, Some(&cookie), "/sessions/not-a-uuid").await;
    assert_eq!(status, S::NOT_FOUND);
}

#[tokio::test]
async fn contractor_lists_only_own_sessions() {
    let f = fixture().await;
    let (cookie, _) = login_as(&f, "tanaka");
    // Even asking for yamada's sessions gives tanaka's own only.
    let (status, body) = get(&f, Some(&cookie), "/sessions?user=yamada").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains(&f.tanaka.to_string()));
    assert!(!body.contains(&f.yamada_live.to_string()));
    let (cookie, _) = login_as(&f, "suzuki");
    let (_, body) = get(&f, Some(&cookie), "/sessions").await;
    assert!(body.contains(&f.tanaka.to_string()) && body.contains(&f.yamada_live.to_string()));
    let (_, body) = get(&f, Some(&cookie), "/sessions?outcome=live").await;
    assert!(!body.contains(&f.tanaka.to_string()) && body.contains(&f.yamada_live.to_string()));
    let (status, _) = get(&f, Some(&cookie), "/sessions?protocol=bogus").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn session_page_shows_verification_and_download_is_the_file() {
    let f = fixture().await;
    let (cookie, _) = login_as(&f, "suzuki");
    let (status, body) = get(&f, Some(&cookie), &format!("/sessions/{}", f.tanaka)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("verify-intact"), "{body}");
    let resp = router(f.state.clone())
        .oneshot(
            Request::builder()
                .uri(format!("/sessions/{}/recording", f.tanaka))
                .header(header::COOKIE, &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let served = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    // Byte for byte the recording file the catalogue row names, not only something.
    let row = f
        .state
        .services
        .catalogue()
        .get_session(f.tanaka)
        .await
        .unwrap()
        .unwrap();
    let file = std::fs::read(row.recording.unwrap()).unwrap();
    assert!(file.len() > 100, "{} bytes", file.len());
    assert!(served[..] == file[..], "the download differs from the file");
    let (status, json) = get(
        &f,
        Some(&cookie),
        &format!("/sessions/{}/screen?ms=100000", f.tanaka),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(json.contains("hello from web01"), "{json}");
}

#[tokio::test]
async fn kill_needs_security_and_csrf() {
    let f = fixture().await;
    let uri = format!("/sessions/{}/kill", f.yamada_live);
    // Auditor with a valid token: not allowed (404, like every hidden thing).
    let (cookie, csrf) = login_as(&f, "suzuki");
    let resp = post(&f, Some(&cookie), &uri, &format!("csrf={csrf}")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // The owner (a contractor) cannot kill either.
    let (cookie, csrf) = login_as(&f, "yamada");
    let resp = post(&f, Some(&cookie), &uri, &format!("csrf={csrf}")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    // Security without or with a wrong token: refused.
    let (cookie, csrf) = login_as(&f, "kobayashi");
    let resp = post(&f, Some(&cookie), &uri, "csrf=0000").await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = post(&f, Some(&cookie), &uri, "").await;
    assert!(resp.status().is_client_error());
    // A token of another session does not work either.
    let (_, other_csrf) = login_as(&f, "root");
    let resp = post(&f, Some(&cookie), &uri, &format!("csrf={other_csrf}")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // The emergency stop needs a reason and the confirmation; without either nothing is asked.
    let resp = post(&f, Some(&cookie), &uri, &format!("csrf={csrf}&confirm=yes")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = post(
        &f,
        Some(&cookie),
        &uri,
        &format!("csrf={csrf}&reason=%20%20&confirm=yes"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = post(
        &f,
        Some(&cookie),
        &uri,
        &format!("csrf={csrf}&reason=copying+data"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let catalogue = f.state.services.catalogue();
    let test_instance = InstanceId::new("test").unwrap();
    assert!(
        catalogue
            .pending_kills(&test_instance)
            .await
            .unwrap()
            .is_empty()
    );
    let long = "x".repeat(super::pages::MAX_STOP_REASON + 1);
    let resp = post(
        &f,
        Some(&cookie),
        &uri,
        &format!("csrf={csrf}&reason={long}&confirm=yes"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let resp = post(
        &f,
        Some(&cookie),
        &uri,
        &format!("csrf={csrf}&reason=copying+data+out&confirm=yes"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let events = catalogue.session_events(f.yamada_live).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.detail.as_deref() == Some("web:kobayashi: copying data out")),
        "the reason is not recorded: {events:?}"
    );
    let pending = f
        .state
        .services
        .catalogue()
        .pending_kills(&InstanceId::new("test").unwrap())
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    // A finished session cannot be killed.
    let resp = post(
        &f,
        Some(&cookie),
        &format!("/sessions/{}/kill", f.tanaka),
        &format!("csrf={csrf}&reason=late&confirm=yes"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
}

/// `page` without the value of its CSRF field, which differs on every page.
fn strip_csrf(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    match page.find(marker) {
        Some(at) => {
            let rest = &page[at + marker.len()..];
            let end = rest.find('"').unwrap_or(rest.len());
            format!("{}{}", &page[..at], &rest[end..])
        }
        None => page.to_owned(),
    }
}

fn login_csrf(resp: &axum::response::Response) -> String {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("sekisho_login_csrf="))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap()
}

async fn try_login(f: &Fixture, user: &str, password: &str) -> axum::response::Response {
    let page = router(f.state.clone())
        .oneshot(
            Request::builder()
                .uri("/login")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let csrf = login_csrf(&page);
    post(
        f,
        Some(&format!("sekisho_login_csrf={csrf}")),
        "/login",
        &format!(
            "user={user}&password={}&csrf={csrf}",
            password.replace(' ', "+")
        ),
    )
    .await
}

#[tokio::test]
async fn login_sets_a_strict_session_cookie_and_logout_ends_it() {
    let f = fixture().await;
    let resp = try_login(&f, "suzuki", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let set: Vec<String> = resp
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = set
        .iter()
        .find(|c| c.starts_with("sekisho_session="))
        .unwrap();
    assert!(
        session.contains("HttpOnly")
            && session.contains("SameSite=Strict")
            && session.contains("Secure")
    );
    let token = session.split(';').next().unwrap().to_owned();
    assert_eq!(token.len(), "sekisho_session=".len() + 64);
    let (status, body) = get(&f, Some(&token), "/sessions").await;
    assert_eq!(status, StatusCode::OK);
    let csrf = body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    // Logout without the token is refused; with it, the session ends.
    assert_eq!(
        post(&f, Some(&token), "/logout", "csrf=x").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        post(&f, Some(&token), "/logout", &format!("csrf={csrf}"))
            .await
            .status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        get(&f, Some(&token), "/sessions").await.0,
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn login_without_csrf_is_refused() {
    let f = fixture().await;
    let resp = post(
        &f,
        None,
        "/login",
        &format!(
            "user=suzuki&password={}&csrf=abc",
            PASSWORD.replace(' ', "+")
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = post(
        &f,
        Some("sekisho_login_csrf=abd"),
        "/login",
        &format!(
            "user=suzuki&password={}&csrf=abc",
            PASSWORD.replace(' ', "+")
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    // An unknown user gets the same answer as a wrong password.
    assert_eq!(
        try_login(&f, "nobody", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

/// The `auth.failed` denial rows of the fixture's catalogue, newest first.
async fn auth_failed_rows(f: &Fixture) -> Vec<recorder::catalogue::DenialRow> {
    f.state
        .services
        .catalogue()
        .list_denials(&recorder::catalogue::DenialFilter {
            rule: Some("auth.failed".into()),
            ..Default::default()
        })
        .await
        .unwrap()
}

/// The fixture's `[auth] max_failures`.
fn max_failures(f: &Fixture) -> u32 {
    f.state.services.inventory().auth().max_failures
}

#[tokio::test]
async fn failed_login_is_an_auth_failed_denial_on_the_dashboard() {
    let f = fixture().await;
    assert_eq!(
        try_login(&f, "kobayashi", "wrong guess").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        try_login(&f, "nobody", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let rows = auth_failed_rows(&f).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let row = rows
        .iter()
        .find(|r| r.user.as_deref() == Some("kobayashi"))
        .unwrap();
    assert_eq!(row.protocol, Protocol::Web);
    assert!(row.reason.contains("wrong password"), "{}", row.reason);
    assert!(!row.reason.contains("wrong guess"), "no password in a row");
    let unknown = rows
        .iter()
        .find(|r| r.user.as_deref() == Some("nobody"))
        .unwrap();
    assert!(
        unknown.reason.contains("unknown user"),
        "{}",
        unknown.reason
    );
    // A right login writes no row.
    assert_eq!(
        try_login(&f, "suzuki", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(auth_failed_rows(&f).await.len(), 2);
    let (cookie, _) = login_as(&f, "kobayashi");
    // In English, the reason is the sentence the door wrote.
    let (status, body) = get(&f, Some(&format!("{cookie}; lang=en")), "/denials").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("auth.failed") && body.contains("web UI login of kobayashi"));
    // In Japanese (the default), the same refusal read by its rule.
    let (_, body) = get(&f, Some(&cookie), "/denials").await;
    assert!(body.contains("認証に失敗しました。"), "{body}");
}

#[tokio::test]
async fn login_guessing_is_locked_out_per_user() {
    let f = fixture().await;
    let mut wrong_page = String::new();
    for _ in 0..max_failures(&f) {
        let resp = try_login(&f, "kobayashi", "wrong").await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        wrong_page = body_of(resp).await;
    }
    let lockouts = f
        .state
        .services
        .catalogue()
        .list_audit_events(&recorder::catalogue::AuditFilter {
            kind: Some("auth lockout".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(
        lockouts.iter().any(|e| e
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("user kobayashi locked out"))),
        "{lockouts:?}"
    );
    // Now even the right password is refused, unchecked, with a wrong password's very answer.
    let resp = try_login(&f, "kobayashi", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie_set(&resp, "sekisho_session").is_none());
    assert_eq!(strip_csrf(&body_of(resp).await), strip_csrf(&wrong_page));
    // Refusals while locked write no row.
    assert_eq!(auth_failed_rows(&f).await.len(), max_failures(&f) as usize);
}

#[tokio::test]
async fn login_guessing_is_locked_out_per_address() {
    let f = fixture().await;
    let app = router(f.state.clone()).layer(axum::Extension(super::ClientAddr(
        "192.0.2.7".parse().unwrap(),
    )));
    let max = max_failures(&f) as usize;
    let mut last = StatusCode::OK;
    let mut answered = Vec::new();
    for i in 0..=max {
        let page = app
            .clone()
            .oneshot(
                Request::builder()
                    .uri("/login")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let csrf = login_csrf(&page);
        // A different user each time: only the address ties them together.
        let user = if i == max {
            "suzuki".to_owned()
        } else {
            format!("guess{i}")
        };
        let password = if i == max {
            PASSWORD.replace(' ', "+")
        } else {
            "x".into()
        };
        let req = Request::builder()
            .method("POST")
            .uri("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(header::COOKIE, format!("sekisho_login_csrf={csrf}"))
            .body(Body::from(format!(
                "user={user}&password={password}&csrf={csrf}"
            )))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        last = resp.status();
        answered.push(strip_csrf(&body_of(resp).await));
    }
    // suzuki's right password from the locked address: a wrong password's answer.
    assert_eq!(last, StatusCode::UNAUTHORIZED);
    assert_eq!(answered[max], answered[0]);
    // The same user from another address is not locked.
    assert_eq!(
        try_login(&f, "suzuki", PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
}

#[tokio::test]
async fn metrics_and_denials_dashboard() {
    let f = fixture().await;
    let (status, text) = scrape(&f, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("sekisho_sessions_live{protocol=\"ssh\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("sekisho_denials_24h{rule=\"rdp.vdi-to-vm\"} 1"),
        "{text}"
    );
    assert!(text.contains("sekisho_web_catalogue_errors_total 0"));
    for family in [
        "sekisho_sessions_started_total",
        "sekisho_denials_total",
        "sekisho_recorded_bytes_total",
        "sekisho_errors_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family} counter")),
            "{family}: {text}"
        );
    }
    let (cookie, _) = login_as(&f, "kobayashi");
    let (status, body) = get(&f, Some(&format!("{cookie}; lang=en")), "/denials").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("rdp.vdi-to-vm") && body.contains("use its console"));
}

#[test]
fn escape_covers_html_metacharacters() {
    assert_eq!(
        super::html::escape("<a href=\"x\">'&"),
        "&lt;a href=&quot;x&quot;&gt;&#39;&amp;"
    );
}

#[tokio::test]
async fn session_list_pages_by_keyset() {
    let f = fixture().await;
    let instance = InstanceId::new("test").unwrap();
    let base = Utc::now() - chrono::Duration::days(1);
    let rows: Vec<NewSession> = (0..120)
        .map(|i| NewSession {
            id: SessionId(uuid::Uuid::now_v7()),
            instance: instance.clone(),
            protocol: Protocol::Rdp,
            user: "tanaka".into(),
            contractor: "acme".into(),
            source: "127.0.10.11".parse().unwrap(),
            target: "file-phys02".into(),
            path: "internet-vpn".into(),
            console_session: None,
            // Several share a start time: the id breaks the tie, nothing is lost or repeated.
            started_at: base + chrono::Duration::seconds(i / 3),
            recording: None,
            detail: None,
        })
        .collect();
    f.state
        .services
        .catalogue()
        .session_started_batch(&rows)
        .await
        .unwrap();
    let (cookie, _) = login_as(&f, "suzuki");
    let mut uri = "/sessions?target=file-phys02".to_owned();
    let mut seen = std::collections::HashSet::new();
    let mut pages = 0;
    loop {
        let (status, body) = get(&f, Some(&cookie), &uri).await;
        assert_eq!(status, StatusCode::OK);
        pages += 1;
        let ids: Vec<&str> = body
            .split("class=\"session-row\" data-id=\"")
            .skip(1)
            .filter_map(|s| s.split('"').next())
            .collect();
        assert!(ids.len() <= super::session_list::PAGE_SIZE as usize);
        for id in ids {
            assert!(seen.insert(id.to_owned()), "{id} listed twice");
        }
        match body.split("id=\"next-page\" href=\"").nth(1) {
            Some(rest) => uri = rest.split('"').next().unwrap().replace("&amp;", "&"),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 120);
    // A malformed cursor is a bad request.
    let (status, _) = get(&f, Some(&cookie), "/sessions?after=garbage").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Adds a finished VNC console session of `user` whose recording (made by the real writer)
/// draws a 16x8 screen red, then a clipboard event, then the left half green.
async fn add_vnc_session(f: &Fixture, user: &str, contractor: &str) -> SessionId {
    use player::rfb::{Encoding, PixelFormat, ServerInit};
    let dir = f._dir.path();
    let recordings = recorder::LocalDir::new(dir.join("rec"));
    let key = recorder::RecordingKey::generate().unwrap();
    let id = SessionId(uuid::Uuid::now_v7());
    let init = ServerInit {
        width: 16,
        height: 8,
        pixel_format: PixelFormat::RGB888_LE,
        name: "web01".into(),
    };
    let mut raw = Vec::new();
    player::rfb::encode_server_init(&init, &mut raw).unwrap();
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let header = recorder::Header {
        session_id: id.0,
        protocol: "console-vnc".into(),
        user: Some(user.into()),
        contractor: Some(contractor.into()),
        source: "127.0.10.11".into(),
        target: "web01".into(),
        start_unix_us: Utc::now().timestamp_micros(),
        metadata: [("rfb.server_init".to_owned(), hex)].into_iter().collect(),
    };
    let writer = recorder::RecordingWriter::create(
        &recordings,
        header,
        key,
        recorder::WriterConfig::default(),
    )
    .await
    .unwrap();
    // Little-endian RGB888: bytes are B, G, R, X.
    let update = |w: u16, bgrx: [u8; 4]| {
        let mut out = Vec::new();
        player::rfb::encode_update_header(1, &mut out);
        player::rfb::encode_rect_header(0, 0, w, 8, Encoding::Raw, &mut out);
        for _ in 0..usize::from(w) * 8 {
            out.extend_from_slice(&bgrx);
        }
        Bytes::from(out)
    };
    let ch = recorder::ChannelId(0);
    writer
        .data(
            recorder::Direction::ServerToClient,
            ch,
            update(16, [0, 0, 255, 0]),
        )
        .await
        .unwrap();
    writer
        .event(
            recorder::EventKind::ClipboardDropped,
            "clipboard to the target stripped",
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    writer
        .data(
            recorder::Direction::ServerToClient,
            ch,
            update(8, [0, 255, 0, 0]),
        )
        .await
        .unwrap();
    let summary = writer.finish().await.unwrap();
    let catalogue = f.state.services.catalogue();
    catalogue
        .session_started(&NewSession {
            id,
            instance: InstanceId::new("test").unwrap(),
            protocol: Protocol::ConsoleVnc,
            user: user.into(),
            contractor: contractor.into(),
            source: "127.0.10.11".parse().unwrap(),
            target: "web01".into(),
            path: "internet-vpn".into(),
            console_session: None,
            started_at: Utc::now(),
            recording: Some(summary.location.clone()),
            detail: None,
        })
        .await
        .unwrap();
    id
}

async fn get_bytes(f: &Fixture, cookie: &str, uri: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::builder()
        .uri(uri)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap();
    let resp = router(f.state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, body.to_vec())
}

fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let dec = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    assert_eq!(info.color_type, png::ColorType::Rgb);
    (info.width, info.height, buf)
}

#[tokio::test]
async fn player_endpoints_are_authorised_like_the_recording() {
    let f = fixture().await;
    let vnc = add_vnc_session(&f, "tanaka", "acme").await;
    let t = f.tanaka;
    let pages = [
        format!("/sessions/{vnc}/play"),
        format!("/sessions/{vnc}/frame?t=0"),
        format!("/sessions/{vnc}/timeline"),
        format!("/sessions/{t}/timeline"),
        format!("/sessions/{t}/search?q=web01"),
    ];
    use StatusCode as S;
    // tanaka owns both; yamada (another contractor) guesses the ids; auditor, security, admin.
    for (user, want) in [
        ("tanaka", S::OK),
        ("yamada", S::NOT_FOUND),
        ("suzuki", S::OK),
        ("kobayashi", S::OK),
        ("root", S::OK),
    ] {
        let (cookie, _) = login_as(&f, user);
        for page in &pages {
            let (status, body) = get_bytes(&f, &cookie, page).await;
            assert_eq!(status, want, "{user} GET {page}");
            if want == S::NOT_FOUND {
                // Nothing of the recording leaks in the refusal.
                assert!(!body.starts_with(b"\x89PNG"), "{user} GET {page}");
                assert!(!String::from_utf8_lossy(&body).contains("duration_ms"));
            }
        }
    }
    for page in &pages {
        let (status, _) = get(&f, None, page).await;
        assert_eq!(status, S::SEE_OTHER, "anonymous GET {page}");
    }
    // A graphical session's search is its typed-text index, for auditors and security staff
    // only: not for its own contractor, nor an administrator.
    for (user, want) in [
        ("suzuki", S::OK),
        ("kobayashi", S::OK),
        ("tanaka", S::NOT_FOUND),
        ("root", S::NOT_FOUND),
    ] {
        let (cookie, _) = login_as(&f, user);
        let (status, body) = get_bytes(&f, &cookie, &format!("/sessions/{vnc}/search?q=x")).await;
        assert_eq!(status, want, "{user}");
        if want == S::OK {
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                json["hits"],
                serde_json::json!([]),
                "{user}: nothing indexed"
            );
        }
        // Find answers everyone logged in, each within what they may see (its own tests).
        let (status, _) = get_bytes(&f, &cookie, "/search?q=x").await;
        assert_eq!(status, S::OK, "{user} GET /search");
    }
    // Frames only for graphical recordings, ids unguessable.
    let (cookie, _) = login_as(&f, "suzuki");
    for page in [
        format!("/sessions/{t}/frame?t=0"),
        format!("/sessions/{}/frame?t=0", uuid::Uuid::now_v7()),
        format!("/sessions/{}/timeline", uuid::Uuid::now_v7()),
        "/sessions/not-a-uuid/frame".to_owned(),
    ] {
        let (status, _) = get_bytes(&f, &cookie, &page).await;
        assert_eq!(status, S::NOT_FOUND, "{page}");
    }
}

#[tokio::test]
async fn player_frames_timeline_and_search_show_the_recording() {
    let f = fixture().await;
    let vnc = add_vnc_session(&f, "tanaka", "acme").await;
    let (cookie, _) = login_as(&f, "tanaka");
    let px = |rgb: &[u8], x: usize, y: usize| rgb[(y * 16 + x) * 3..(y * 16 + x) * 3 + 3].to_vec();
    // Just after the start: all red. At the end: the left half green. Back again (a new decode from
    // the cache's earlier position) and forward again.
    for (t, left, right) in [
        ("0.1", [255, 0, 0], [255, 0, 0]),
        ("3600", [0, 255, 0], [255, 0, 0]),
        ("0.1", [255, 0, 0], [255, 0, 0]),
        ("1e9", [0, 255, 0], [255, 0, 0]),
        ("nonsense", [255, 0, 0], [255, 0, 0]),
    ] {
        let (status, png) = get_bytes(&f, &cookie, &format!("/sessions/{vnc}/frame?t={t}")).await;
        if t == "nonsense" {
            assert_eq!(status, StatusCode::BAD_REQUEST, "t={t}");
            continue;
        }
        assert_eq!(status, StatusCode::OK, "t={t}");
        let (w, h, rgb) = decode_png(&png);
        assert_eq!((w, h), (16, 8));
        assert_eq!(px(&rgb, 0, 0), left, "t={t}");
        assert_eq!(px(&rgb, 15, 7), right, "t={t}");
    }
    let (status, body) = get(&f, Some(&cookie), &format!("/sessions/{vnc}/timeline")).await;
    assert_eq!(status, StatusCode::OK);
    let tl: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(tl["kind"], "graphical");
    assert!(tl["duration_ms"].as_u64().unwrap() >= 300, "{tl}");
    let markers = tl["markers"].as_array().unwrap();
    assert_eq!(markers.len(), 1, "{tl}");
    assert_eq!(markers[0]["kind"], "clipboard-dropped");
    // The page's language: Japanese by default.
    assert_eq!(markers[0]["label"], "クリップボードを遮断");
    assert!(markers[0]["ms"].as_u64().unwrap() < 300);

    let (status, body) = get(
        &f,
        Some(&cookie),
        &format!("/sessions/{}/search?q=WEB01", f.tanaka),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let hits: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(hits["hits"][0]["source"], "output", "{hits}");
    assert!(
        hits["hits"][0]["context"]
            .as_str()
            .unwrap()
            .contains("web01")
    );
    // The hit's moment shows the hit on screen.
    let ms = hits["hits"][0]["ms"].as_u64().unwrap();
    let uri = format!("/sessions/{}/screen?ms={ms}", f.tanaka);
    let (_, screen) = get(&f, Some(&cookie), &uri).await;
    assert!(screen.contains("hello from web01"), "{hits} {screen}");
    let (status, _) = get(
        &f,
        Some(&cookie),
        &format!("/sessions/{}/search?q=", f.tanaka),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The player page: a canvas for VNC, the terminal with search for SSH.
    let (_, page) = get(&f, Some(&cookie), &format!("/sessions/{vnc}/play")).await;
    assert!(page.contains("id=\"canvas\"") && !page.contains("id=\"search\""));
    let (_, page) = get(&f, Some(&cookie), &format!("/sessions/{}/play", f.tanaka)).await;
    assert!(page.contains("id=\"screen\"") && page.contains("id=\"search\""));
}

/// Set-Cookie values of a response.
fn set_cookies(resp: &axum::response::Response) -> Vec<String> {
    resp.headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

/// The `name=value` pair a response sets for cookie `name` (None when not set or cleared).
fn cookie_set(resp: &axum::response::Response, name: &str) -> Option<String> {
    set_cookies(resp)
        .into_iter()
        .filter_map(|c| c.split(';').next().map(str::to_owned))
        .find(|kv| kv.starts_with(&format!("{name}=")) && kv.len() > name.len() + 1)
}

async fn body_of(resp: axum::response::Response) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The cell names a card page asks for, in order ("C3", ...).
fn challenged_cells(body: &str) -> Vec<String> {
    (0..3)
        .map(|i| {
            body.split(&format!("id=\"cell-{i}\">"))
                .nth(1)
                .unwrap()
                .split('<')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect()
}

/// The digit of sato's card in `cell`.
fn card_digit(cell: &str) -> char {
    let col = usize::from(cell.as_bytes()[0] - b'A');
    let row: usize = cell[1..].parse().unwrap();
    CARD[row - 1].as_bytes()[col] as char
}

fn page_csrf(body: &str) -> String {
    body.split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned()
}

/// Answers the card page `body` with `pending` cookie; `right` picks the true digits or
/// digits that are each off by one.
async fn answer_card(
    f: &Fixture,
    pending: &str,
    body: &str,
    right: bool,
) -> axum::response::Response {
    let cells = challenged_cells(body);
    let digits: Vec<char> = cells
        .iter()
        .map(|c| {
            let d = card_digit(c);
            if right {
                d
            } else {
                char::from(b'0' + (d as u8 - b'0' + 1) % 10)
            }
        })
        .collect();
    post(
        f,
        Some(pending),
        "/login/card",
        &format!(
            "csrf={}&a0={}&a1={}&a2={}",
            page_csrf(body),
            digits[0],
            digits[1],
            digits[2]
        ),
    )
    .await
}

#[tokio::test]
async fn matrix_card_user_needs_the_card_after_the_password() {
    let f = fixture().await;
    // The password alone: a challenge page, no session cookie, only a pending one.
    let resp = try_login(&f, "sato", PASSWORD).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(cookie_set(&resp, "sekisho_session").is_none());
    let pending = cookie_set(&resp, "sekisho_login_pending").unwrap();
    let attrs = set_cookies(&resp)
        .into_iter()
        .find(|c| c.starts_with("sekisho_login_pending="))
        .unwrap();
    assert!(
        attrs.contains("HttpOnly")
            && attrs.contains("SameSite=Strict")
            && attrs.contains("Max-Age=300")
    );
    let body = body_of(resp).await;
    let cells = challenged_cells(&body);
    assert_eq!(cells.len(), 3);
    // The pending cookie opens no page, not even as a session cookie.
    let token = pending.split('=').nth(1).unwrap();
    for cookie in [pending.clone(), format!("sekisho_session={token}")] {
        assert_eq!(
            get(&f, Some(&cookie), "/sessions").await.0,
            StatusCode::SEE_OTHER
        );
    }
    // Without the form's CSRF token: refused, and new cells are asked.
    let resp = post(
        &f,
        Some(&pending),
        "/login/card",
        "csrf=nope&a0=1&a1=2&a2=3",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(cookie_set(&resp, "sekisho_session").is_none());
    let body = body_of(resp).await;
    // A wrong answer: refused, no session, a fresh challenge.
    let resp = answer_card(&f, &pending, &body, false).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie_set(&resp, "sekisho_session").is_none());
    let body2 = body_of(resp).await;
    assert!(body2.contains("card-error"));
    assert_ne!(challenged_cells(&body2), challenged_cells(&body));
    // The right answer to the new cells: the session, and the pending login is gone.
    let resp = answer_card(&f, &pending, &body2, true).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[header::LOCATION], "/sessions");
    let session = cookie_set(&resp, "sekisho_session").unwrap();
    let (status, body3) = get(&f, Some(&session), "/sessions").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body3.contains("sato ("));
    // Replaying the same answer with the same pending cookie gets nothing.
    let resp = answer_card(&f, &pending, &body2, true).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie_set(&resp, "sekisho_session").is_none());
    assert_eq!(
        get(&f, Some(&pending), "/login/card").await.0,
        StatusCode::UNAUTHORIZED
    );
    // Without a pending login the card page sends to the login form.
    assert_eq!(get(&f, None, "/login/card").await.0, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn matrix_card_locks_out_after_repeated_wrong_answers() {
    let f = fixture().await;
    let resp = try_login(&f, "sato", PASSWORD).await;
    let pending = cookie_set(&resp, "sekisho_login_pending").unwrap();
    let mut body = body_of(resp).await;
    let mut last = StatusCode::OK;
    for _ in 0..crate::auth::matrix_card::MAX_FAILURES {
        let resp = answer_card(&f, &pending, &body, false).await;
        last = resp.status();
        body = body_of(resp).await;
        if last != StatusCode::UNAUTHORIZED {
            break;
        }
    }
    // The card's lockout (5 wrong answers, before the throttle's 10) ends it: no session and
    // the pending login is gone.
    assert_eq!(last, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(
        get(&f, Some(&pending), "/login/card").await.0,
        StatusCode::UNAUTHORIZED
    );
    // The card is locked: even the right password and right cells get no session now.
    assert!(f.state.matrix.is_locked("sato", std::time::Instant::now()));
    let resp = try_login(&f, "sato", PASSWORD).await;
    assert!(cookie_set(&resp, "sekisho_session").is_none());
    assert!(cookie_set(&resp, "sekisho_login_pending").is_none());
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let right = body_of(resp).await;
    // A wrong password gets the very same answer: the lockout tells nothing about the password.
    let resp = try_login(&f, "sato", "not-the-password").await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let wrong = body_of(resp).await;
    assert!(
        right.contains("マトリクスカードの回答の誤りが多すぎます"),
        "{right}"
    );
    assert_eq!(strip_csrf(&right), strip_csrf(&wrong));
}

#[tokio::test]
async fn matrix_card_redraw_shows_the_same_cells_until_answered() {
    let f = fixture().await;
    let resp = try_login(&f, "sato", PASSWORD).await;
    let pending = cookie_set(&resp, "sekisho_login_pending").unwrap();
    let first = challenged_cells(&body_of(resp).await);
    // Reloading the card page, or logging in again, shows the same cells: no redrawing
    // until only known cells are asked.
    for _ in 0..5 {
        let (status, body) = get(&f, Some(&pending), "/login/card").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(challenged_cells(&body), first);
    }
    let again = try_login(&f, "sato", PASSWORD).await;
    let pending2 = cookie_set(&again, "sekisho_login_pending").unwrap();
    assert_eq!(challenged_cells(&body_of(again).await), first);
    // Each wrong answer counts (a failed-login row) and only then are new cells drawn.
    let (_, body) = get(&f, Some(&pending2), "/login/card").await;
    let resp = answer_card(&f, &pending2, &body, false).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_ne!(challenged_cells(&body_of(resp).await), first);
    let rows = auth_failed_rows(&f).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].reason.contains("wrong matrix card answer"));
}

#[tokio::test]
async fn matrix_card_wrong_password_gets_the_card_step_and_fails_at_its_end() {
    let f = fixture().await;
    let right = try_login(&f, "sato", PASSWORD).await;
    let wrong = try_login(&f, "sato", "not the password").await;
    // The same answer to both: a card page and a pending login, nothing else.
    assert_eq!(wrong.status(), right.status());
    assert_eq!(wrong.status(), StatusCode::OK);
    let pending = cookie_set(&wrong, "sekisho_login_pending").unwrap();
    assert!(cookie_set(&wrong, "sekisho_session").is_none());
    let right_body = body_of(right).await;
    let wrong_body = body_of(wrong).await;
    assert_eq!(strip_csrf(&right_body), strip_csrf(&wrong_body));
    assert!(auth_failed_rows(&f).await.is_empty(), "nothing decided yet");
    // The right card answer after a wrong password: refused like a wrong answer.
    let resp = answer_card(&f, &pending, &wrong_body, true).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie_set(&resp, "sekisho_session").is_none());
    assert!(body_of(resp).await.contains("card-error"));
    let rows = auth_failed_rows(&f).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].reason.contains("wrong password"),
        "{}",
        rows[0].reason
    );
    assert!(!f.state.second_factors.passed(
        "sato",
        "0.0.0.0".parse().unwrap(),
        std::time::Instant::now(),
        std::time::Duration::from_secs(60)
    ));
}

#[tokio::test]
async fn matrix_card_pass_is_recorded_for_the_desktop_and_logout_forgets_it() {
    let f = fixture().await;
    let ip: std::net::IpAddr = "0.0.0.0".parse().unwrap();
    let ttl = f.state.services.inventory().auth().second_factor_ttl;
    let resp = try_login(&f, "sato", PASSWORD).await;
    let pending = cookie_set(&resp, "sekisho_login_pending").unwrap();
    let body = body_of(resp).await;
    assert!(
        !f.state
            .second_factors
            .passed("sato", ip, std::time::Instant::now(), ttl)
    );
    let resp = answer_card(&f, &pending, &body, true).await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let session = cookie_set(&resp, "sekisho_session").unwrap();
    assert!(
        f.state
            .second_factors
            .passed("sato", ip, std::time::Instant::now(), ttl)
    );
    let (_, page) = get(&f, Some(&session), "/sessions").await;
    let resp = post(
        &f,
        Some(&session),
        "/logout",
        &format!("csrf={}", page_csrf(&page)),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert!(
        !f.state
            .second_factors
            .passed("sato", ip, std::time::Instant::now(), ttl)
    );
}

#[tokio::test]
async fn matrix_card_page_speaks_japanese() {
    let f = fixture().await;
    let resp = try_login(&f, "sato", PASSWORD).await;
    let pending = cookie_set(&resp, "sekisho_login_pending").unwrap();
    let (status, body) = get(&f, Some(&format!("{pending}; lang=ja")), "/login/card").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("マトリクスカード") && body.contains("id=\"cell-2\""));
    let (_, body) = get(&f, Some(&format!("{pending}; lang=en")), "/login/card").await;
    assert!(body.contains("Matrix card"));
}

/// Tens of thousands of sessions: the list pages through all of them by keyset (every session
/// once, none lost at equal start times), a contractor's filter pages through their own only,
/// and the time per page is printed for the first and the last pages (a keyset page costs the
/// same wherever it is; an offset page would grow with its position).
#[tokio::test]
async fn session_list_pages_through_twenty_thousand_sessions() {
    const N: usize = 20_000;
    let f = fixture().await;
    let instance = InstanceId::new("test").unwrap();
    let base = Utc::now() - chrono::Duration::days(30);
    let rows: Vec<NewSession> = (0..N)
        .map(|i| {
            let (user, contractor) = if i % 2 == 0 {
                ("tanaka", "acme")
            } else {
                ("yamada", "globex")
            };
            NewSession {
                id: SessionId(uuid::Uuid::now_v7()),
                instance: instance.clone(),
                protocol: Protocol::Rdp,
                user: user.into(),
                contractor: contractor.into(),
                source: "127.0.10.11".parse().unwrap(),
                target: "bulk-target".into(),
                path: "internet-vpn".into(),
                console_session: None,
                // Runs of four sessions share a start time.
                started_at: base + chrono::Duration::seconds((i / 4) as i64),
                recording: None,
                detail: None,
            }
        })
        .collect();
    for chunk in rows.chunks(1_000) {
        f.state
            .services
            .catalogue()
            .session_started_batch(chunk)
            .await
            .unwrap();
    }
    for (user, expected) in [("suzuki", N), ("tanaka", N / 2)] {
        let (cookie, _) = login_as(&f, user);
        let mut uri = "/sessions?target=bulk-target".to_owned();
        let mut seen = std::collections::HashSet::new();
        let mut times = Vec::new();
        loop {
            let t0 = std::time::Instant::now();
            let (status, body) = get(&f, Some(&cookie), &uri).await;
            times.push(t0.elapsed());
            assert_eq!(status, StatusCode::OK);
            for id in body
                .split("class=\"session-row\" data-id=\"")
                .skip(1)
                .filter_map(|s| s.split('"').next())
            {
                assert!(seen.insert(id.to_owned()), "{user}: {id} listed twice");
            }
            match body.split("id=\"next-page\" href=\"").nth(1) {
                Some(rest) => uri = rest.split('"').next().unwrap().replace("&amp;", "&"),
                None => break,
            }
        }
        assert_eq!(seen.len(), expected, "{user}");
        assert_eq!(
            times.len(),
            expected.div_ceil(super::session_list::PAGE_SIZE as usize)
        );
        let avg = |t: &[std::time::Duration]| {
            t.iter().sum::<std::time::Duration>().as_secs_f64() * 1000.0 / t.len() as f64
        };
        eprintln!(
            "session list ({user}, {expected} sessions, {} pages): first 10 pages {:.1} ms/page, last 10 pages {:.1} ms/page",
            times.len(),
            avg(&times[..10]),
            avg(&times[times.len() - 10..])
        );
    }
}

#[tokio::test]
async fn matrix_card_pending_login_expires() {
    let f = fixture().await;
    let resp = try_login(&f, "sato", PASSWORD).await;
    let pending = cookie_set(&resp, "sekisho_login_pending").unwrap();
    let body = body_of(resp).await;
    f.state.auth.age_pending(super::auth::PENDING_TIMEOUT);
    // Even the right answer gets nothing once the pending login is too old.
    let resp = answer_card(&f, &pending, &body, true).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(cookie_set(&resp, "sekisho_session").is_none());
    assert!(body_of(resp).await.contains("login-error"));
    assert_eq!(
        get(&f, Some(&pending), "/login/card").await.0,
        StatusCode::UNAUTHORIZED
    );
}

/// Registers the real RDP fixture (xfreerdp → Sekisho → xrdp) as a session of `user`.
async fn add_rdp_fixture_session(f: &Fixture, user: &str, contractor: &str) -> SessionId {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../player/tests/data/rdp-xrdp.skrec");
    let location = f._dir.path().join("rdp-xrdp.skrec");
    std::fs::copy(&fixture, &location).unwrap();
    let id = SessionId(uuid::Uuid::now_v7());
    f.state
        .services
        .catalogue()
        .session_started(&NewSession {
            id,
            instance: InstanceId::new("test").unwrap(),
            protocol: Protocol::Rdp,
            user: user.into(),
            contractor: contractor.into(),
            source: "127.0.10.11".parse().unwrap(),
            target: "srv01".into(),
            path: "internet-vpn".into(),
            console_session: None,
            started_at: Utc::now(),
            recording: Some(location.to_string_lossy().into_owned()),
            detail: None,
        })
        .await
        .unwrap();
    id
}

#[tokio::test]
async fn rdp_player_draws_the_pointer_only_when_asked() {
    let f = fixture().await;
    let rdp = add_rdp_fixture_session(&f, "tanaka", "acme").await;
    let vnc = add_vnc_session(&f, "tanaka", "acme").await;
    let (cookie, _) = login_as(&f, "tanaka");
    let (status, page) = get(&f, Some(&cookie), &format!("/sessions/{rdp}/play")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("id=\"show-pointer\""), "{page}");
    let (_, page) = get(&f, Some(&cookie), &format!("/sessions/{vnc}/play")).await;
    assert!(!page.contains("show-pointer"), "VNC has no pointer to draw");

    let frame = |q: &'static str| {
        let uri = format!("/sessions/{rdp}/frame?t=1e9{q}");
        let f = &f;
        let cookie = &cookie;
        async move {
            let (status, png) = get_bytes(f, cookie, &uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            decode_png(&png)
        }
    };
    let plain = frame("").await;
    let drawn = frame("&pointer=1").await;
    // The cached replay must not keep drawing the pointer for the next plain request.
    let plain_again = frame("&pointer=0").await;
    assert_eq!((plain.0, plain.1), (drawn.0, drawn.1));
    let differing = plain
        .2
        .chunks(3)
        .zip(drawn.2.chunks(3))
        .filter(|(a, b)| a != b)
        .count();
    assert!(differing > 0, "no pointer drawn");
    // A pointer is at most 384×384 (the large pointer), far less than the screen.
    assert!(differing <= 384 * 384, "{differing} pixels changed");
    assert_eq!(plain_again.2, plain.2);
}

/// `GET /metrics` on the metrics listener's routes (`listen.metrics`), or on the web UI's with
/// `bearer` as the `Authorization: Bearer` token.
async fn scrape(f: &Fixture, bearer: Option<&str>) -> (StatusCode, String) {
    let app = match bearer {
        None => metrics_router(f.state.clone()),
        Some(_) => router(f.state.clone()),
    };
    let mut req = Request::builder().uri("/metrics");
    if let Some(token) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Puts a secrets file holding `[metrics] token = TOKEN` in force, as a reload would.
fn set_metrics_token(f: &Fixture, token: &str) {
    let secrets =
        policy::Secrets::from_toml(&format!("[metrics]\ntoken = \"{token}\"\n"), "s.toml").unwrap();
    let inventory = (*f.state.services.inventory()).clone();
    f.state.services.replace_config(inventory, Some(secrets));
}

#[tokio::test]
async fn metrics_on_the_web_port_needs_the_bearer_token() {
    let f = fixture().await;
    // No token in the secrets file: /metrics is not on the web port at all.
    let (status, _) = get(&f, None, "/metrics").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A logged-in admin does not open it either: it is for the scraper.
    let (cookie, _) = login_as(&f, "root");
    let (status, _) = get(&f, Some(&cookie), "/metrics").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    const TOKEN: &str = "s3cret-metrics-token-0123456789";
    set_metrics_token(&f, TOKEN);
    let resp = router(f.state.clone())
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(resp.headers().contains_key(header::WWW_AUTHENTICATE));
    for wrong in [
        "s3cret-metrics-token-012345678",
        "s3cret-metrics-token-0123456780",
        "S3cret-metrics-token-0123456789",
        "",
    ] {
        let (status, body) = scrape(&f, Some(wrong)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong:?}");
        assert!(!body.contains("sekisho_"), "{body}");
    }
    let (status, text) = scrape(&f, Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        text.contains("sekisho_sessions_live{protocol=\"ssh\"} 1"),
        "{text}"
    );
    // The metrics listener needs no token.
    let (status, text) = scrape(&f, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("sekisho_sessions_live"), "{text}");
}

#[tokio::test]
async fn session_page_verifies_once_and_again_after_a_change() {
    let f = fixture().await;
    let (cookie, _) = login_as(&f, "suzuki");
    let uri = format!("/sessions/{}", f.tanaka);
    for _ in 0..3 {
        let (status, body) = get(&f, Some(&cookie), &uri).await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("verify-intact"), "{body}");
    }
    assert_eq!(f.state.verified.runs(), 1, "verified once for three views");
    assert_eq!(f.state.verified.hits(), 2);

    // Altered in place: same inode, same size, the modification time set back. Only the
    // change time (which cannot be set back) tells; the page must say tampered.
    let row = f
        .state
        .services
        .catalogue()
        .get_session(f.tanaka)
        .await
        .unwrap()
        .unwrap();
    let path = std::path::PathBuf::from(row.recording.unwrap());
    let before = std::fs::metadata(&path).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    {
        use std::io::{Seek as _, Write as _};
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.seek(std::io::SeekFrom::Start(middle as u64)).unwrap();
        file.write_all(&bytes[middle..=middle]).unwrap();
        file.set_modified(before.modified().unwrap()).unwrap();
    }
    let after = std::fs::metadata(&path).unwrap();
    assert_eq!(after.len(), before.len());
    assert_eq!(after.modified().unwrap(), before.modified().unwrap());
    let (status, body) = get(&f, Some(&cookie), &uri).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("verify-tampered"), "{body}");
    assert_eq!(
        f.state.verified.runs(),
        2,
        "a changed file is verified again"
    );
    // And the tampered verdict is what is cached for this version.
    let (_, body) = get(&f, Some(&cookie), &uri).await;
    assert!(body.contains("verify-tampered"), "{body}");
    assert_eq!(f.state.verified.runs(), 2);

    let (_, text) = scrape(&f, None).await;
    assert!(
        text.contains("sekisho_web_verifications_total{result=\"run\"} 2"),
        "{text}"
    );
}

/// Serves the fixture's web UI over plain HTTP on 127.0.0.1:0 with `limits`: (address, stop).
async fn serve_fixture(
    f: &Fixture,
    limits: WebLimits,
) -> (std::net::SocketAddr, tokio_util::sync::CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(serve_listener(
        listener,
        router(f.state.clone()),
        None,
        f.state.clone(),
        limits,
        stop.clone(),
    ));
    (addr, stop)
}

/// A connection to `server` from the loopback address `from` (127.0.0.0/8 is all local).
async fn connect_from(from: [u8; 4], server: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::from((from, 0))).unwrap();
    socket.connect(server).await.unwrap()
}

/// Reads until the server closes the connection (or `within` passes): the bytes received,
/// and whether it was closed in time.
async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    within: std::time::Duration,
) -> (Vec<u8>, bool) {
    use tokio::io::AsyncReadExt as _;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// A one-shot request from `from`: the response's status line.
async fn request_from(from: [u8; 4], server: std::net::SocketAddr) -> String {
    use tokio::io::AsyncWriteExt as _;
    let mut s = connect_from(from, server).await;
    // A refused connection may already be closed: the empty answer tells.
    let _ = s
        .write_all(b"GET /assets/style.css HTTP/1.1\r\nHost: sekisho\r\nConnection: close\r\n\r\n")
        .await;
    let (got, closed) = read_until_closed(&mut s, std::time::Duration::from_secs(5)).await;
    assert!(closed, "the server did not close after answering");
    String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

fn short_limits() -> WebLimits {
    WebLimits {
        tls_handshake_timeout: std::time::Duration::from_millis(300),
        header_read_timeout: std::time::Duration::from_millis(300),
        request_timeout: std::time::Duration::from_millis(300),
        ..WebLimits::default()
    }
}

#[tokio::test]
async fn a_silent_client_is_dropped_at_the_header_deadline() {
    use tokio::io::AsyncWriteExt as _;
    let f = fixture().await;
    let (server, stop) = serve_fixture(&f, short_limits()).await;
    let started = std::time::Instant::now();
    // One says nothing; one sends half a request head and stops.
    let mut silent = connect_from([127, 0, 0, 1], server).await;
    let mut half = connect_from([127, 0, 0, 1], server).await;
    half.write_all(b"GET /sessions HTTP/1.1\r\nHost: sek")
        .await
        .unwrap();
    for stream in [&mut silent, &mut half] {
        let (_, closed) = read_until_closed(stream, std::time::Duration::from_secs(3)).await;
        assert!(closed, "a silent client was kept past the header deadline");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(250),
        "closed before the deadline: {elapsed:?}"
    );
    // A client that asks in time is still served.
    assert_eq!(
        request_from([127, 0, 0, 1], server).await,
        "HTTP/1.1 200 OK"
    );
    stop.cancel();
}

#[tokio::test]
async fn a_request_whose_body_stalls_gets_408() {
    use tokio::io::AsyncWriteExt as _;
    let f = fixture().await;
    let (server, stop) = serve_fixture(&f, short_limits()).await;
    let mut s = connect_from([127, 0, 0, 1], server).await;
    // The head in full, then ten bytes of a hundred-byte body.
    s.write_all(
        b"POST /login HTTP/1.1\r\nHost: sekisho\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nuser=tanak",
    )
    .await
    .unwrap();
    let (got, closed) = read_until_closed(&mut s, std::time::Duration::from_secs(3)).await;
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(closed, "the connection stayed open after the timeout");
    stop.cancel();
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_and_other_addresses_still_served() {
    let f = fixture().await;
    let limits = WebLimits {
        header_read_timeout: std::time::Duration::from_secs(30),
        max_connections: 3,
        max_connections_per_addr: 2,
        ..WebLimits::default()
    };
    let (server, stop) = serve_fixture(&f, limits).await;
    let quick = std::time::Duration::from_secs(2);
    // 127.0.0.1 holds its two slots with silent connections.
    let mut held = vec![
        connect_from([127, 0, 0, 1], server).await,
        connect_from([127, 0, 0, 1], server).await,
    ];
    // A third from the same address is closed at once, without an answer.
    let mut third = connect_from([127, 0, 0, 1], server).await;
    let (got, closed) = read_until_closed(&mut third, quick).await;
    assert!(closed && got.is_empty(), "third connection kept: {got:?}");
    // Another address is still served.
    assert_eq!(
        request_from([127, 0, 0, 2], server).await,
        "HTTP/1.1 200 OK"
    );
    // The total cap: with 127.0.0.2 holding the last slot, a third address is refused.
    held.push(connect_from([127, 0, 0, 2], server).await);
    let mut over = connect_from([127, 0, 0, 3], server).await;
    let (got, closed) = read_until_closed(&mut over, quick).await;
    assert!(
        closed && got.is_empty(),
        "connection past the total cap kept: {got:?}"
    );
    // A slot given back is free again.
    held.remove(0);
    let mut served = String::new();
    for _ in 0..20 {
        served = request_from([127, 0, 0, 3], server).await;
        if !served.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(served, "HTTP/1.1 200 OK");
    assert_eq!(
        f.state
            .refused_per_addr
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
    assert!(
        f.state
            .refused_total
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 1
    );
    stop.cancel();
}

#[tokio::test]
async fn second_factor_is_required_of_card_users_only_from_the_desktop_that_passed() {
    let f = fixture().await;
    let services = &f.state.services;
    let vnc = Protocol::ConsoleVnc;
    // An address of its own: the process-wide registry is shared by every test.
    let desktop: std::net::IpAddr = "192.0.2.91".parse().unwrap();
    let other: std::net::IpAddr = "192.0.2.92".parse().unwrap();
    let now = std::time::Instant::now();
    // Without a card nothing is asked.
    assert!(
        services
            .second_factor_missing(vnc, "tanaka", desktop, "web01", now)
            .is_none()
    );
    let denial = services
        .second_factor_missing(vnc, "sato", desktop, "web01", now)
        .unwrap();
    assert_eq!(denial.rule().as_str(), "auth.second-factor");
    assert!(
        denial.reason().contains("web UI") && denial.reason().contains("ssh sato@bastion"),
        "{}",
        denial.reason()
    );
    assert!(denial.reason().contains("8 h"), "{}", denial.reason());
    services.second_factors().record_pass("sato", desktop, now);
    assert!(
        services
            .second_factor_missing(vnc, "sato", desktop, "web01", now)
            .is_none()
    );
    // Only from that desktop, and only within the TTL.
    assert!(
        services
            .second_factor_missing(vnc, "sato", other, "web01", now)
            .is_some()
    );
    let ttl = services.inventory().auth().second_factor_ttl;
    let later = now + ttl + std::time::Duration::from_secs(1);
    assert!(
        services
            .second_factor_missing(vnc, "sato", desktop, "web01", later)
            .is_some()
    );
}

/// A live SSH session of yamada's whose recording is being written: (id, writer).
async fn add_live_recorded_session(f: &Fixture) -> (SessionId, recorder::RecordingWriter) {
    let id = SessionId(uuid::Uuid::now_v7());
    let recordings = recorder::LocalDir::new(f._dir.path().join("rec"));
    let header = recorder::Header {
        session_id: id.0,
        protocol: "ssh".into(),
        user: Some("yamada".into()),
        contractor: Some("globex".into()),
        source: "127.0.10.11".into(),
        target: "web01".into(),
        start_unix_us: Utc::now().timestamp_micros(),
        metadata: Default::default(),
    };
    let writer = recorder::RecordingWriter::create(
        &recordings,
        header,
        recorder::RecordingKey::generate().unwrap(),
        recorder::WriterConfig::default(),
    )
    .await
    .unwrap();
    writer
        .data(
            recorder::Direction::ServerToClient,
            recorder::ChannelId(0),
            Bytes::from_static(b"watched-4711\r\n$ "),
        )
        .await
        .unwrap();
    f.state
        .services
        .catalogue()
        .session_started(&NewSession {
            id,
            instance: f.state.services.instance().clone(),
            protocol: Protocol::Ssh,
            user: "yamada".into(),
            contractor: "globex".into(),
            source: "127.0.10.11".parse().unwrap(),
            target: "web01".into(),
            path: "internet-vpn".into(),
            console_session: None,
            started_at: Utc::now(),
            recording: Some(writer.location().to_owned()),
            detail: None,
        })
        .await
        .unwrap();
    (id, writer)
}

#[tokio::test]
async fn watching_is_for_staff_registers_the_watcher_and_shows_the_screen() {
    let f = fixture().await;
    let (live, _writer) = add_live_recorded_session(&f).await;
    let page = format!("/sessions/{live}/watch");
    for contractor in ["tanaka", "yamada"] {
        let (cookie, _) = login_as(&f, contractor);
        let (status, _) = get(&f, Some(&cookie), &page).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{contractor} may not watch");
    }
    // An auditor watches without the emergency stop; security staff have it.
    let (auditor, auditor_csrf) = login_as(&f, "suzuki");
    let (status, body) = get(&f, Some(&auditor), &page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(!body.contains("id=\"kill\""));
    let watcher = body
        .split("data-watcher=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let (security, _) = login_as(&f, "kobayashi");
    let (status, body) = get(&f, Some(&security), &page).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("id=\"kill\""));
    let present = f
        .state
        .services
        .catalogue()
        .present_watchers(Utc::now())
        .await
        .unwrap();
    let names: Vec<_> = present[&live].iter().map(|w| w.viewer.as_str()).collect();
    assert_eq!(names, ["kobayashi", "suzuki"]);
    // The screen now (once the writer has closed the chunk: at least every second), for the
    // watcher it was given to only.
    let mut body = String::new();
    for _ in 0..30 {
        let (status, b) = get(
            &f,
            Some(&auditor),
            &format!("/sessions/{live}/watch/screen?w={watcher}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        body = b;
        if body.contains("watched-4711") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(body.contains("watched-4711"), "{body}");
    let (status, _) = get(
        &f,
        Some(&security),
        &format!("/sessions/{live}/watch/screen?w={watcher}"),
    )
    .await;
    assert_eq!(status, StatusCode::GONE, "another's watcher id");
    let (status, _) = get(
        &f,
        Some(&auditor),
        &format!("/sessions/{live}/watch/screen?w=bogus"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    // Leaving needs the CSRF token; then the watcher is gone and its page is told.
    let leave = format!("/sessions/{live}/watch/leave");
    let resp = post(&f, Some(&auditor), &leave, &format!("csrf=x&w={watcher}")).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = post(
        &f,
        Some(&auditor),
        &leave,
        &format!("csrf={auditor_csrf}&w={watcher}"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let (status, _) = get(
        &f,
        Some(&auditor),
        &format!("/sessions/{live}/watch/screen?w={watcher}"),
    )
    .await;
    assert_eq!(status, StatusCode::GONE);
    // An ended session is not watched: its player instead.
    let (status, _) = get(
        &f,
        Some(&security),
        &format!("/sessions/{}/watch", f.tanaka),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}
