//! The catalogue test suite, run against both backends.
//!
//! Every test in `catalogue_tests!` runs twice: `sqlite::NAME` on a fresh file in a temporary
//! directory, and `postgres::NAME` in a fresh schema of the PostgreSQL named by
//! `SEKISHO_TEST_POSTGRES_URL` (start one with `eval "$(scripts/pg-test-server start)"`).
//! Without that variable the PostgreSQL tests fail, unless `SEKISHO_SKIP_PEERS=1` says to skip
//! them (a note is printed).

// Tests may unwrap and panic (the workspace lints deny them in library code only; clippy.toml
// exempts `#[test]` functions but not these shared helpers).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::IpAddr;
use std::time::Instant;

use chrono::{DateTime, Duration, TimeZone, Utc};
use recorder::catalogue::{
    AuditEvent, AuditFilter, BackendKind, Catalogue, CatalogueError, DecisionFilter,
    DecisionRecord, DenialFilter, Disposition, InstanceId, Interrupted, NewReview, NewSession,
    Outcome, PinCheck, PinKind, Presented, Protocol, RecordingState, RecordingSummary,
    ReviewSubject, SessionFilter, SessionId, SessionRow, TextKind, TextQuery, TypedLineRow,
    TypedTextQuery, Verdict, WATCHER_STALE_AFTER, Watcher, event_kind,
};

const PG_URL_VAR: &str = "SEKISHO_TEST_POSTGRES_URL";

/// A database for one test; PostgreSQL schemas are dropped at the end of a passing test.
struct TestDb {
    url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        // A directory that does not exist yet: connect must create it.
        let path = dir.path().join("data").join("sekisho.db");
        TestDb {
            url: format!("sqlite://{}", path.display()),
            _dir: Some(dir),
            pg: None,
        }
    }

    /// A fresh schema in the test PostgreSQL, or `None` when skipping is allowed.
    async fn postgres(test: &str) -> Option<TestDb> {
        let base = match std::env::var(PG_URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ => {
                if std::env::var("SEKISHO_SKIP_PEERS").as_deref() == Ok("1") {
                    eprintln!(
                        "note: skipping PostgreSQL catalogue test {test}: {PG_URL_VAR} is unset \
                         and SEKISHO_SKIP_PEERS=1"
                    );
                    return None;
                }
                panic!(
                    "{PG_URL_VAR} is not set, so the PostgreSQL catalogue tests cannot run: start a \
                     test server with `eval \"$(scripts/pg-test-server start)\"`, or set \
                     SEKISHO_SKIP_PEERS=1 to skip them"
                );
            }
        };
        let schema = format!("t_{}", uuid::Uuid::now_v7().simple());
        let admin = sqlx::PgPool::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("cannot reach {PG_URL_VAR}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        admin.close().await;
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(TestDb {
            url: format!("{base}{sep}options[search_path]={schema}"),
            _dir: None,
            pg: Some((base, schema)),
        })
    }

    async fn cleanup(self) {
        if let Some((base, schema)) = &self.pg {
            let admin = sqlx::PgPool::connect(base).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        }
    }
}

macro_rules! catalogue_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let db = super::TestDb::sqlite().await;
                    super::$name(&db.url, recorder::catalogue::BackendKind::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(db) = super::TestDb::postgres(stringify!($name)).await else {
                        return;
                    };
                    super::$name(&db.url, recorder::catalogue::BackendKind::Postgres).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

catalogue_tests!(
    decisions_round_trip,
    denial_filters,
    session_lifecycle,
    live_consoles,
    kill_requests,
    interrupted_marking,
    paging_over_20000_sessions,
    two_instances_share_one_database,
    audit_events,
    reconnect_keeps_data,
    consoles_count_only_while_their_instance_beats,
    revoked_sessions_are_stored_and_listed,
    records_from_policy_decisions,
    pins_are_first_use_and_shared_by_instances,
    orphans_are_the_live_sessions_of_silent_instances,
    ledger_chains_sealed_and_deleted_recordings_from_every_instance,
    denials_are_reviewed_with_history_audit_and_ledger,
    policy_events_are_listed_and_reviewed_like_denials,
    watchers_are_present_while_they_beat_and_until_they_leave,
    typed_text_is_indexed_and_searched_newest_first,
    session_text_is_found_by_kind_protocol_contractor_and_period,
    evidence_links_decisions_and_finds_the_nearest_covering_checkpoint,
);

// ----- helpers -----

fn t0() -> DateTime<Utc> {
    // Microseconds on purpose: both backends must keep them.
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap() + Duration::microseconds(123_456)
}

fn instance(name: &str) -> InstanceId {
    InstanceId::new(name).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn new_id() -> SessionId {
    SessionId(uuid::Uuid::now_v7())
}

async fn open(url: &str, kind: BackendKind) -> Catalogue {
    let c = Catalogue::connect(url).await.unwrap();
    assert_eq!(c.backend(), kind);
    c
}

fn session(inst: &InstanceId, protocol: Protocol, user: &str, target: &str) -> NewSession {
    NewSession {
        id: new_id(),
        instance: inst.clone(),
        protocol,
        user: user.to_owned(),
        contractor: "acme".to_owned(),
        source: ip("127.0.10.11"),
        target: target.to_owned(),
        path: "internet-vpn".to_owned(),
        console_session: None,
        started_at: t0(),
        recording: Some(format!("/var/lib/sekisho/recordings/{target}.skr")),
        detail: None,
    }
}

fn deny(inst: &InstanceId, at: DateTime<Utc>, user: &str, rule: &str) -> DecisionRecord {
    DecisionRecord {
        at,
        instance: inst.clone(),
        protocol: Protocol::Rdp,
        source: ip("127.0.10.11"),
        target: Some("web01".to_owned()),
        user: Some(user.to_owned()),
        contractor: Some("acme".to_owned()),
        verdict: Verdict::Deny,
        rule: rule.to_owned(),
        reason: format!("RDP from VDI desktop 127.0.10.11 ({user}, acme) to web01 denied"),
        session_id: None,
        explanation: None,
    }
}

// ----- tests -----

async fn decisions_round_trip(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let sid = new_id();
    let allow = DecisionRecord {
        at: t0(),
        instance: a.clone(),
        protocol: Protocol::ConsoleSerial,
        source: ip("127.0.10.12"),
        target: Some("web01".to_owned()),
        user: Some("tanaka".to_owned()),
        contractor: Some("acme".to_owned()),
        verdict: Verdict::Allow,
        rule: "console.vm".to_owned(),
        reason: "console of web01 allowed".to_owned(),
        session_id: Some(sid),
        explanation: Some(policy::reasons::Explanation::new(
            "console.vm",
            [
                ("target", "web01".to_owned()),
                ("contractor", "acme".to_owned()),
                ("until", "2027-03-31".to_owned()),
            ],
        )),
    };
    let unknown = DecisionRecord {
        at: t0() + Duration::seconds(1),
        instance: a.clone(),
        protocol: Protocol::Rdp,
        source: ip("::1"),
        target: Some("no-such-host\u{1f600}".to_owned()),
        user: None,
        contractor: None,
        verdict: Verdict::Deny,
        rule: "source.unknown".to_owned(),
        reason: "x".repeat(10_000),
        session_id: None,
        explanation: None,
    };
    let id1 = c.record_decision(&allow).await.unwrap();
    let id2 = c.record_decision(&unknown).await.unwrap();
    assert_ne!(id1, id2);

    let got = c.get_decision(id1).await.unwrap().unwrap();
    assert_eq!(got.id, id1);
    assert_eq!(got.at, allow.at);
    assert_eq!(got.instance_id, a);
    assert_eq!(got.protocol, Protocol::ConsoleSerial);
    assert_eq!(got.source, ip("127.0.10.12"));
    assert_eq!(got.target.as_deref(), Some("web01"));
    assert_eq!(got.user.as_deref(), Some("tanaka"));
    assert_eq!(got.contractor.as_deref(), Some("acme"));
    assert_eq!(got.verdict, Verdict::Allow);
    assert_eq!(got.rule, "console.vm");
    assert_eq!(got.session_id, Some(sid));
    // The reason's template and parameters come back as written, for other languages.
    assert_eq!(got.explanation, allow.explanation);

    let got = c.get_decision(id2).await.unwrap().unwrap();
    assert_eq!(got.user, None);
    assert_eq!(got.source, ip("::1"));
    assert_eq!(got.target.as_deref(), Some("no-such-host\u{1f600}"));
    // Untrusted text is capped.
    assert_eq!(
        got.reason.chars().count(),
        recorder::catalogue::MAX_TEXT_LEN
    );
    assert!(got.reason.ends_with('…'));

    let all = c.list_decisions(&DecisionFilter::default()).await.unwrap();
    assert_eq!(
        all.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![id2, id1],
        "newest first"
    );
    let allows = c
        .list_decisions(&DecisionFilter {
            verdict: Some(Verdict::Allow),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(allows.len(), 1);
    assert!(
        c.get_decision(recorder::catalogue::DecisionId::new_v7())
            .await
            .unwrap()
            .is_none()
    );
}

async fn denial_filters(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    for i in 0..10 {
        let user = if i % 2 == 0 { "tanaka" } else { "suzuki" };
        let rule = if i < 5 {
            "rdp.vdi-to-vm"
        } else {
            "contract.window"
        };
        c.record_decision(&deny(&a, t0() + Duration::minutes(i), user, rule))
            .await
            .unwrap();
    }
    // An allow never shows up as a denial.
    let mut allow = deny(&a, t0() + Duration::hours(1), "tanaka", "rdp.physical");
    allow.verdict = Verdict::Allow;
    c.record_decision(&allow).await.unwrap();

    let all = c.list_denials(&DenialFilter::default()).await.unwrap();
    assert_eq!(all.len(), 10);
    assert!(all.windows(2).all(|w| w[0].started_at > w[1].started_at));
    assert_eq!(all[0].started_at, t0() + Duration::minutes(9));

    let since = c
        .list_denials(&DenialFilter {
            since: Some(t0() + Duration::minutes(7)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(since.len(), 3, "since is inclusive");

    let tanaka = c
        .list_denials(&DenialFilter {
            user: Some("tanaka".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tanaka.len(), 5);
    assert!(tanaka.iter().all(|d| d.user.as_deref() == Some("tanaka")));

    let window = c
        .list_denials(&DenialFilter {
            rule: Some("contract.window".to_owned()),
            user: Some("suzuki".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(window.len(), 3); // minutes 5, 7, 9

    let page = c
        .list_denials(&DenialFilter {
            limit: Some(3),
            offset: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        page.iter().map(|d| d.id).collect::<Vec<_>>(),
        all[2..5].iter().map(|d| d.id).collect::<Vec<_>>()
    );

    // The JSON shape of `sekisho denials list --json`.
    let json = serde_json::to_value(&all[0]).unwrap();
    for key in [
        "id",
        "protocol",
        "user",
        "contractor",
        "source",
        "target",
        "started_at",
        "rule",
        "reason",
    ] {
        assert!(json.get(key).is_some(), "denial JSON lacks {key}: {json}");
    }
    assert_eq!(json["protocol"], "rdp");
    assert_eq!(json["rule"], "contract.window");
    assert_eq!(json["source"], "127.0.10.11");

    // The review dashboard's filters: a period with an exclusive end, so the period before it
    // shares no row with it.
    let until = c
        .list_denials(&DenialFilter {
            since: Some(t0() + Duration::minutes(2)),
            until: Some(t0() + Duration::minutes(5)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(until.len(), 3, "minutes 2, 3 and 4; until is exclusive");

    // Rows of other users, contractors, targets, sources and doors, an hour later.
    let later = t0() + Duration::hours(2);
    let mut odd = deny(&a, later, "Sato", "auth.failed");
    odd.protocol = Protocol::Ssh;
    odd.contractor = Some("Globex".to_owned());
    odd.target = Some("DB-phys01".to_owned());
    odd.source = ip("127.0.11.12");
    c.record_decision(&odd).await.unwrap();
    let mut web = deny(&a, later + Duration::minutes(1), "nobody", "auth.failed");
    web.protocol = Protocol::Web;
    web.contractor = None;
    web.target = None;
    web.source = ip("::1");
    c.record_decision(&web).await.unwrap();
    // Escaped: `_` in a prefix is not a wildcard.
    let mut zone = deny(&a, later + Duration::minutes(2), "tanaka", "zone.path");
    zone.target = Some("mn_db01".to_owned());
    c.record_decision(&zone).await.unwrap();

    let ids =
        |rows: &[recorder::catalogue::DenialRow]| rows.iter().map(|d| d.id).collect::<Vec<_>>();
    let by = |f: DenialFilter| {
        let c = &c;
        async move { c.list_denials(&f).await.unwrap() }
    };
    // Prefixes ignore case on both backends; exact names do not.
    let sato = by(DenialFilter {
        user_prefix: Some("sa".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(sato.len(), 1);
    assert_eq!(sato[0].user.as_deref(), Some("Sato"));
    let exact = by(DenialFilter {
        user: Some("sato".to_owned()),
        ..Default::default()
    })
    .await;
    assert!(exact.is_empty(), "an exact user name matched another case");
    let globex = by(DenialFilter {
        contractor_prefix: Some("glob".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&globex), ids(&sato));
    let acme = by(DenialFilter {
        contractor: Some("acme".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(acme.len(), 11, "the ten first and the zone breach");
    let db = by(DenialFilter {
        target_prefix: Some("db-".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&db), ids(&sato));
    let web01 = by(DenialFilter {
        target: Some("web01".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(web01.len(), 10);
    let underscore = by(DenialFilter {
        target_prefix: Some("mn_".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(underscore.len(), 1);
    let no_wildcard = by(DenialFilter {
        target_prefix: Some("m_".to_owned()),
        ..Default::default()
    })
    .await;
    assert!(no_wildcard.is_empty(), "`_` matched as a wildcard");
    // Addresses: exact, or a prefix of the text.
    let from_ip = by(DenialFilter {
        source: Some(ip("127.0.11.12")),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&from_ip), ids(&sato));
    let from_net = by(DenialFilter {
        source_prefix: Some("127.0.10.".to_owned()),
        ..Default::default()
    })
    .await;
    assert_eq!(from_net.len(), 11);
    let v6 = by(DenialFilter {
        source: Some(ip("::1")),
        ..Default::default()
    })
    .await;
    assert_eq!(v6.len(), 1);
    assert_eq!(v6[0].protocol, Protocol::Web);
    // The door.
    let ssh = by(DenialFilter {
        protocol: Some(Protocol::Ssh),
        ..Default::default()
    })
    .await;
    assert_eq!(ids(&ssh), ids(&sato));
    // A set of rules (one severity), and the empty set matches nothing.
    let rules = by(DenialFilter {
        rules: Some(vec!["zone.path".to_owned(), "auth.failed".to_owned()]),
        ..Default::default()
    })
    .await;
    assert_eq!(rules.len(), 3);
    assert!(rules.windows(2).all(|w| w[0].started_at > w[1].started_at));
    let none = by(DenialFilter {
        rules: Some(Vec::new()),
        ..Default::default()
    })
    .await;
    assert!(none.is_empty(), "an empty rule set matched");

    // Counts per rule, for a period and the one before it, ignore the page limit.
    let counts = c
        .count_denials_by_rule(&DenialFilter {
            limit: Some(1),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        counts,
        vec![
            ("auth.failed".to_owned(), 2),
            ("contract.window".to_owned(), 5),
            ("rdp.vdi-to-vm".to_owned(), 5),
            ("zone.path".to_owned(), 1),
        ]
    );
    let previous = c
        .count_denials_by_rule(&DenialFilter {
            until: Some(t0() + Duration::minutes(5)),
            user: Some("tanaka".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(previous, vec![("rdp.vdi-to-vm".to_owned(), 3)]);
    let nothing = c
        .count_denials_by_rule(&DenialFilter {
            since: Some(t0() + Duration::days(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(nothing.is_empty());
}

async fn session_lifecycle(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let mut s = session(&a, Protocol::ConsoleSerial, "tanaka", "web01");
    s.detail = Some("virsh console web01".to_owned());
    c.session_started(&s).await.unwrap();

    let row = c.get_session(s.id).await.unwrap().unwrap();
    assert_eq!(row.id, s.id);
    assert_eq!(row.instance_id, a);
    assert_eq!(row.protocol, Protocol::ConsoleSerial);
    assert_eq!(row.user, "tanaka");
    assert_eq!(row.contractor, "acme");
    assert_eq!(row.source, ip("127.0.10.11"));
    assert_eq!(row.target, "web01");
    assert_eq!(row.path, "internet-vpn");
    assert_eq!(row.started_at, t0());
    assert_eq!(row.ended_at, None);
    assert_eq!(row.outcome, Outcome::Live);
    assert_eq!(row.recording, s.recording);
    assert_eq!(row.recording_state, Some(RecordingState::Live));
    assert_eq!(row.detail.as_deref(), Some("virsh console web01"));

    let json = serde_json::to_value(&row).unwrap();
    for key in [
        "id",
        "protocol",
        "user",
        "contractor",
        "source",
        "target",
        "started_at",
        "ended_at",
        "outcome",
        "recording",
        "recording_state",
        "console_session",
    ] {
        assert!(json.get(key).is_some(), "session JSON lacks {key}: {json}");
    }
    assert!(json["ended_at"].is_null());
    assert_eq!(json["outcome"], "live");
    assert_eq!(json["protocol"], "console-serial");
    assert_eq!(json["id"], s.id.to_string());

    // A hop rides on the console.
    let mut hop = session(&a, Protocol::Rdp, "tanaka", "db01");
    hop.console_session = Some(s.id);
    hop.source = ip("127.0.20.5");
    hop.started_at = t0() + Duration::seconds(30);
    hop.recording = None;
    c.session_started(&hop).await.unwrap();
    let hop_row = c.get_session(hop.id).await.unwrap().unwrap();
    assert_eq!(hop_row.console_session, Some(s.id));
    assert_eq!(hop_row.recording_state, None);

    // Events.
    c.session_event(
        s.id,
        t0() + Duration::seconds(5),
        event_kind::SFTP_REFUSED,
        Some("scp -t /tmp"),
    )
    .await
    .unwrap();
    c.session_event(s.id, t0() + Duration::seconds(6), "window resized", None)
        .await
        .unwrap();
    let events = c.session_events(s.id).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].kind, "sftp refused");
    assert_eq!(events[0].detail.as_deref(), Some("scp -t /tmp"));
    assert_eq!(events[0].instance_id, a);
    assert_eq!(events[1].at, t0() + Duration::seconds(6));
    let missing = new_id();
    assert!(matches!(
        c.session_event(missing, t0(), "x", None).await,
        Err(CatalogueError::UnknownSession(id)) if id == missing
    ));

    // Recording progress, then the end.
    let live_rec = RecordingSummary {
        location: "/var/lib/sekisho/recordings/web01.skr".to_owned(),
        state: RecordingState::Live,
        size: 4096,
        hash: None,
    };
    c.set_recording(s.id, &live_rec).await.unwrap();
    assert_eq!(
        c.get_session(s.id).await.unwrap().unwrap().recording_size,
        Some(4096)
    );
    assert!(matches!(
        c.set_recording(missing, &live_rec).await,
        Err(CatalogueError::UnknownSession(_))
    ));
    assert!(matches!(
        c.session_ended(s.id, t0(), Outcome::Live, None).await,
        Err(CatalogueError::EndedLive)
    ));

    let end = t0() + Duration::minutes(10) + Duration::microseconds(7);
    let done = RecordingSummary {
        location: live_rec.location.clone(),
        state: RecordingState::Complete,
        size: 5_000_000_000, // larger than u32
        hash: Some("ab".repeat(32)),
    };
    assert!(
        c.session_ended(s.id, end, Outcome::Completed, Some(&done))
            .await
            .unwrap()
    );
    let row = c.get_session(s.id).await.unwrap().unwrap();
    assert_eq!(row.ended_at, Some(end));
    assert_eq!(row.outcome, Outcome::Completed);
    assert_eq!(row.recording_state, Some(RecordingState::Complete));
    assert_eq!(row.recording_size, Some(5_000_000_000));
    assert_eq!(row.recording_hash, done.hash);
    // Ending twice changes nothing.
    assert!(
        !c.session_ended(s.id, end + Duration::hours(1), Outcome::Killed, None)
            .await
            .unwrap()
    );
    assert_eq!(
        c.get_session(s.id).await.unwrap().unwrap().outcome,
        Outcome::Completed
    );
    assert!(matches!(
        c.session_ended(missing, end, Outcome::Completed, None)
            .await,
        Err(CatalogueError::UnknownSession(_))
    ));

    // Ending without a summary: a live recording is incomplete.
    let mut other = session(&a, Protocol::ConsoleVnc, "tanaka", "web02");
    other.started_at = t0() + Duration::minutes(1);
    c.session_started(&other).await.unwrap();
    assert!(
        c.session_ended(other.id, end, Outcome::Failed, None)
            .await
            .unwrap()
    );
    let row = c.get_session(other.id).await.unwrap().unwrap();
    assert_eq!(row.outcome, Outcome::Failed);
    assert_eq!(row.recording_state, Some(RecordingState::Incomplete));

    // Filters.
    let list = c.list_sessions(&SessionFilter::default()).await.unwrap();
    assert_eq!(
        list.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![other.id, hop.id, s.id]
    );
    let rdp = c
        .list_sessions(&SessionFilter {
            protocol: Some(Protocol::Rdp),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rdp.len(), 1);
    let live = c
        .list_sessions(&SessionFilter {
            outcome: Some(Outcome::Live),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(live.iter().map(|r| r.id).collect::<Vec<_>>(), vec![hop.id]);
    let completed = c
        .list_sessions(&SessionFilter {
            outcome: Some(Outcome::Completed),
            target: Some("web01".to_owned()),
            user: Some("tanaka".to_owned()),
            contractor: Some("acme".to_owned()),
            since: Some(t0()),
            until: Some(t0() + Duration::seconds(1)),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        completed.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![s.id]
    );

    // The forgiving filters: a prefix, in any case; `%` and `_` in it are plain characters.
    let by_prefix = |user: &str, target: &str| SessionFilter {
        user_prefix: Some(user.to_owned()),
        target_prefix: Some(target.to_owned()),
        ..Default::default()
    };
    let ids = |rows: Vec<SessionRow>| rows.iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(c.list_sessions(&by_prefix("TAN", "Web0")).await.unwrap()),
        vec![other.id, s.id]
    );
    assert_eq!(
        c.count_sessions(&by_prefix("tan", "WEB01")).await.unwrap(),
        1
    );
    assert!(
        c.list_sessions(&by_prefix("t_n", ""))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        c.list_sessions(&by_prefix("%", ""))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        c.count_sessions(&SessionFilter {
            contractor_prefix: Some("AC".to_owned()),
            ..Default::default()
        })
        .await
        .unwrap(),
        3
    );
    assert!(c.get_session(missing).await.unwrap().is_none());
}

async fn live_consoles(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let serial = session(&a, Protocol::ConsoleSerial, "tanaka", "web01");
    let mut vnc = session(&a, Protocol::ConsoleVnc, "sato", "web02");
    vnc.contractor = "beta".to_owned();
    vnc.path = "ip-vpn".to_owned();
    vnc.started_at = t0() + Duration::seconds(1);
    let rdp = session(&a, Protocol::Rdp, "tanaka", "phys01");
    let ssh = session(&a, Protocol::Ssh, "tanaka", "phys02");
    let ended = session(&a, Protocol::ConsoleSerial, "tanaka", "web03");
    c.session_started_batch(&[serial.clone(), vnc.clone(), rdp, ssh, ended.clone()])
        .await
        .unwrap();
    // Without a heartbeat of its instance, no console counts.
    assert!(c.live_consoles().await.unwrap().is_empty());
    c.heartbeat(&a, Utc::now()).await.unwrap();
    c.session_ended(
        ended.id,
        t0() + Duration::minutes(1),
        Outcome::Completed,
        None,
    )
    .await
    .unwrap();

    let consoles = c.live_consoles().await.unwrap();
    assert_eq!(consoles.len(), 2, "{consoles:?}");
    let web01 = consoles.iter().find(|l| l.target == "web01").unwrap();
    assert_eq!(web01.session_id, serial.id);
    assert_eq!(web01.user, "tanaka");
    assert_eq!(web01.contractor, "acme");
    assert_eq!(web01.path, "internet-vpn");
    let web02 = consoles.iter().find(|l| l.target == "web02").unwrap();
    assert_eq!(web02.session_id, vnc.id);
    assert_eq!(web02.contractor, "beta");
    assert_eq!(web02.path, "ip-vpn");

    c.session_ended(
        serial.id,
        t0() + Duration::minutes(2),
        Outcome::Killed,
        None,
    )
    .await
    .unwrap();
    let consoles = c.live_consoles().await.unwrap();
    assert_eq!(
        consoles.iter().map(|l| l.session_id).collect::<Vec<_>>(),
        vec![vnc.id]
    );
}

async fn kill_requests(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let b = instance("bastion-b");
    let s1 = session(&a, Protocol::ConsoleSerial, "tanaka", "web01");
    let s2 = session(&a, Protocol::Rdp, "tanaka", "phys01");
    let s3 = session(&b, Protocol::Rdp, "sato", "phys02");
    c.session_started_batch(&[s1.clone(), s2.clone(), s3.clone()])
        .await
        .unwrap();

    assert!(c.pending_kills(&a).await.unwrap().is_empty());
    assert!(c.request_kill(s1.id, "admin (cli)").await.unwrap());
    assert!(
        c.request_kill_because(s1.id, "web:kobayashi", Some(" copying data out "))
            .await
            .unwrap()
    );
    assert!(c.request_kill(s3.id, "admin").await.unwrap());
    assert_eq!(c.pending_kills(&a).await.unwrap(), vec![s1.id]);
    assert_eq!(c.pending_kills(&b).await.unwrap(), vec![s3.id]);
    let events = c.session_events(s1.id).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].kind, event_kind::KILL_REQUESTED);
    assert!(
        events
            .iter()
            .any(|e| e.detail.as_deref() == Some("web:kobayashi: copying data out")),
        "the reason is kept beside who asked: {events:?}"
    );

    // The instance acts: handled, then the session ends as killed.
    c.kill_handled(s1.id).await.unwrap();
    assert!(c.pending_kills(&a).await.unwrap().is_empty());
    c.session_ended(s1.id, t0() + Duration::seconds(1), Outcome::Killed, None)
        .await
        .unwrap();
    assert!(
        !c.request_kill(s1.id, "admin").await.unwrap(),
        "not live any more"
    );
    assert!(
        !c.request_kill(new_id(), "admin").await.unwrap(),
        "unknown session"
    );

    // Ending a session also settles its pending kills.
    assert!(c.request_kill(s2.id, "admin").await.unwrap());
    c.session_ended(s2.id, t0() + Duration::seconds(2), Outcome::Completed, None)
        .await
        .unwrap();
    assert!(c.pending_kills(&a).await.unwrap().is_empty());
    assert_eq!(c.pending_kills(&b).await.unwrap(), vec![s3.id]);

    // What a poll costs, printed (a speed figure, not asserted: the sub-second kill is asserted
    // end to end, in the e2e suite's kill tests).
    let start = Instant::now();
    for _ in 0..20 {
        c.pending_kills(&a).await.unwrap();
    }
    let per_poll = start.elapsed() / 20;
    eprintln!("{kind:?}: pending_kills poll takes {per_poll:?}");
}

async fn interrupted_marking(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let b = instance("bastion-b");
    let a1 = session(&a, Protocol::ConsoleSerial, "tanaka", "web01");
    let mut a2 = session(&a, Protocol::Rdp, "tanaka", "phys01");
    a2.recording = None;
    let a3 = session(&a, Protocol::Ssh, "tanaka", "phys02");
    let b1 = session(&b, Protocol::ConsoleVnc, "sato", "web02");
    let b2 = session(&b, Protocol::ConsoleVnc, "sato", "web03");
    c.session_started_batch(&[a1.clone(), a2.clone(), a3.clone(), b1.clone(), b2.clone()])
        .await
        .unwrap();
    c.session_ended(a3.id, t0() + Duration::seconds(1), Outcome::Completed, None)
        .await
        .unwrap();
    assert!(c.request_kill(a1.id, "admin").await.unwrap());

    let at = t0() + Duration::hours(1);
    let mut marked = c
        .mark_interrupted(Interrupted::Instance(&a), at)
        .await
        .unwrap();
    marked.sort();
    let mut want = vec![a1.id, a2.id];
    want.sort();
    assert_eq!(marked, want);
    let r1 = c.get_session(a1.id).await.unwrap().unwrap();
    assert_eq!(r1.outcome, Outcome::Interrupted);
    assert_eq!(r1.ended_at, Some(at));
    assert_eq!(r1.recording_state, Some(RecordingState::Incomplete));
    assert_eq!(
        c.get_session(a2.id).await.unwrap().unwrap().recording_state,
        None
    );
    assert_eq!(
        c.get_session(a3.id).await.unwrap().unwrap().outcome,
        Outcome::Completed,
        "ended sessions are left alone"
    );
    assert!(
        c.session_events(a1.id)
            .await
            .unwrap()
            .iter()
            .any(|e| e.kind == event_kind::INTERRUPTED)
    );
    assert!(c.pending_kills(&a).await.unwrap().is_empty());
    assert!(c.live_sessions(&a).await.unwrap().is_empty());
    assert_eq!(
        c.live_sessions(&b).await.unwrap().len(),
        2,
        "other instance untouched"
    );

    // By id, e.g. after sealing recordings; repeating is a no-op.
    let marked = c
        .mark_interrupted(Interrupted::Sessions(&[b1.id, a1.id, new_id()]), at)
        .await
        .unwrap();
    assert_eq!(marked, vec![b1.id]);
    assert!(
        c.mark_interrupted(Interrupted::Instance(&a), at)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        c.live_sessions(&b)
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![b2.id]
    );

    // Sealing the recovered recording later.
    c.set_recording(
        a1.id,
        &RecordingSummary {
            location: a1.recording.clone().unwrap(),
            state: RecordingState::Sealed,
            size: 1234,
            hash: Some("00ff".to_owned()),
        },
    )
    .await
    .unwrap();
    let r1 = c.get_session(a1.id).await.unwrap().unwrap();
    assert_eq!(r1.recording_state, Some(RecordingState::Sealed));
    assert_eq!(r1.outcome, Outcome::Interrupted);
}

async fn paging_over_20000_sessions(url: &str, kind: BackendKind) {
    const N: usize = 20_000;
    const PAGE: u32 = 1000;
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let users = ["tanaka", "suzuki", "sato", "ito"];
    let sessions: Vec<NewSession> = (0..N)
        .map(|i| {
            let mut s = session(
                &a,
                Protocol::ALL[i % 4],
                users[i % 4],
                &format!("host{:03}", i % 500),
            );
            // Pairs share a start time, so the id must break ties.
            s.started_at = t0() + Duration::seconds((i / 2) as i64);
            s
        })
        .collect();
    let start = Instant::now();
    c.session_started_batch(&sessions).await.unwrap();
    eprintln!("{kind:?}: inserted {N} sessions in {:?}", start.elapsed());
    assert_eq!(
        c.count_sessions(&SessionFilter::default()).await.unwrap(),
        N as u64
    );

    let start = Instant::now();
    let first = c
        .list_sessions(&SessionFilter {
            limit: Some(50),
            ..Default::default()
        })
        .await
        .unwrap();
    let first_page = start.elapsed();
    assert_eq!(first.len(), 50);
    let start = Instant::now();
    let deep = c
        .list_sessions(&SessionFilter {
            limit: Some(50),
            offset: Some(19_000),
            ..Default::default()
        })
        .await
        .unwrap();
    let deep_page = start.elapsed();
    assert_eq!(deep.len(), 50);
    let start = Instant::now();
    let filtered = c
        .list_sessions(&SessionFilter {
            user: Some("sato".to_owned()),
            since: Some(t0() + Duration::seconds(5000)),
            limit: Some(50),
            ..Default::default()
        })
        .await
        .unwrap();
    let filtered_page = start.elapsed();
    assert_eq!(filtered.len(), 50);
    assert!(filtered.iter().all(|r| r.user == "sato"));
    eprintln!(
        "{kind:?}: list_sessions over {N} rows: first page of 50 {first_page:?}, page at offset \
         19000 {deep_page:?}, user+since page {filtered_page:?}"
    );

    // Walk every page: newest first, each row once, ties broken by id.
    let mut seen = std::collections::HashSet::new();
    let mut prev: Option<(DateTime<Utc>, SessionId)> = None;
    let mut offset = 0u64;
    loop {
        let page = c
            .list_sessions(&SessionFilter {
                limit: Some(PAGE),
                offset: Some(offset),
                ..Default::default()
            })
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        for r in &page {
            let key = (r.started_at, r.id);
            if let Some(p) = prev {
                assert!(key < p, "not strictly newest first: {key:?} after {p:?}");
            }
            prev = Some(key);
            assert!(seen.insert(r.id));
        }
        offset += page.len() as u64;
    }
    assert_eq!(seen.len(), N);
    assert_eq!(prev.unwrap().0, t0(), "the oldest comes last");

    // The same walk by cursor (keyset paging): same rows, same order.
    let mut by_cursor = Vec::with_capacity(N);
    let mut after = None;
    let mut slowest = std::time::Duration::ZERO;
    loop {
        let start = Instant::now();
        let page = c
            .list_sessions(&SessionFilter {
                limit: Some(PAGE),
                after,
                ..Default::default()
            })
            .await
            .unwrap();
        slowest = slowest.max(start.elapsed());
        let Some(last) = page.last() else { break };
        after = Some(last.cursor());
        by_cursor.extend(page.iter().map(|r| r.id));
    }
    assert_eq!(by_cursor.len(), N);
    assert_eq!(
        by_cursor
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        N
    );
    let start = Instant::now();
    let deep_by_cursor = c
        .list_sessions(&SessionFilter {
            limit: Some(50),
            after: Some(deep[0].cursor()),
            ..Default::default()
        })
        .await
        .unwrap();
    let deep_cursor_page = start.elapsed();
    assert_eq!(
        deep_by_cursor.first().map(|r| r.id),
        deep.get(1).map(|r| r.id)
    );
    eprintln!(
        "{kind:?}: keyset paging: slowest page of {PAGE} {slowest:?}; page of 50 near the end \
         {deep_cursor_page:?}"
    );

    // The page cap holds.
    let capped = c
        .list_sessions(&SessionFilter {
            limit: Some(u32::MAX),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(capped.len(), recorder::catalogue::MAX_PAGE as usize);
}

async fn two_instances_share_one_database(url: &str, kind: BackendKind) {
    let ca = open(url, kind).await;
    let cb = open(url, kind).await; // a second instance: its own pool, same database
    let a = instance("bastion-a");
    let b = instance("bastion-b");

    let sa = session(&a, Protocol::ConsoleSerial, "tanaka", "web01");
    let mut sb = session(&b, Protocol::ConsoleVnc, "sato", "web02");
    sb.started_at = t0() + Duration::seconds(1);
    // Both write at the same time.
    let (ra, rb) = tokio::join!(ca.session_started(&sa), cb.session_started(&sb));
    ra.unwrap();
    rb.unwrap();
    let (ha, hb) = tokio::join!(ca.heartbeat(&a, Utc::now()), cb.heartbeat(&b, Utc::now()));
    ha.unwrap();
    hb.unwrap();
    let (deny_a, deny_b) = (
        deny(&a, t0(), "tanaka", "zone.path"),
        deny(&b, t0(), "sato", "zone.path"),
    );
    let (da, db) = tokio::join!(ca.record_decision(&deny_a), cb.record_decision(&deny_b));
    let (da, db) = (da.unwrap(), db.unwrap());

    // Each sees both.
    for c in [&ca, &cb] {
        let all = c.list_sessions(&SessionFilter::default()).await.unwrap();
        assert_eq!(
            all.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![sb.id, sa.id]
        );
        assert_eq!(c.live_consoles().await.unwrap().len(), 2);
        let denials = c.list_denials(&DenialFilter::default()).await.unwrap();
        let mut ids: Vec<_> = denials.iter().map(|d| d.id).collect();
        ids.sort();
        let mut want = vec![da, db];
        want.sort();
        assert_eq!(ids, want);
    }
    assert_eq!(
        ca.get_decision(db).await.unwrap().unwrap().instance_id,
        b,
        "rows record their writer"
    );
    let only_b = ca
        .list_sessions(&SessionFilter {
            instance: Some(b.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(only_b.iter().map(|r| r.id).collect::<Vec<_>>(), vec![sb.id]);

    // A kill asked on A for B's session reaches B only.
    assert!(ca.request_kill(sb.id, "admin@a").await.unwrap());
    assert!(ca.pending_kills(&a).await.unwrap().is_empty());
    assert_eq!(cb.pending_kills(&b).await.unwrap(), vec![sb.id]);
    cb.session_ended(sb.id, t0() + Duration::seconds(9), Outcome::Killed, None)
        .await
        .unwrap();
    assert_eq!(
        ca.get_session(sb.id).await.unwrap().unwrap().outcome,
        Outcome::Killed
    );

    // A restarting after a crash closes only its own.
    assert_eq!(
        ca.mark_interrupted(Interrupted::Instance(&a), t0() + Duration::minutes(1))
            .await
            .unwrap(),
        vec![sa.id]
    );
    assert!(cb.live_consoles().await.unwrap().is_empty());
    ca.close().await;
    cb.close().await;
}

async fn audit_events(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let b = instance("bastion-b");
    let sid = new_id();
    let e1 = c
        .audit_event(&AuditEvent {
            at: t0(),
            instance: a.clone(),
            kind: event_kind::RECORDING_STORAGE_FAILED.to_owned(),
            detail: Some("no space left on device".to_owned()),
            session_id: Some(sid),
        })
        .await
        .unwrap();
    let e2 = c
        .audit_event(&AuditEvent {
            at: t0() + Duration::seconds(1),
            instance: b.clone(),
            kind: event_kind::RETENTION_DELETED.to_owned(),
            detail: Some("12 recordings".to_owned()),
            session_id: None,
        })
        .await
        .unwrap();
    let all = c.list_audit_events(&AuditFilter::default()).await.unwrap();
    assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![e2, e1]);
    assert_eq!(all[1].session_id, Some(sid));
    assert_eq!(all[1].at, t0());
    assert_eq!(all[1].instance_id, a);
    let of_b = c
        .list_audit_events(&AuditFilter {
            instance: Some(b.clone()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_b.len(), 1);
    let storage = c
        .list_audit_events(&AuditFilter {
            kind: Some(event_kind::RECORDING_STORAGE_FAILED.to_owned()),
            since: Some(t0()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(storage.iter().map(|e| e.id).collect::<Vec<_>>(), vec![e1]);
}

async fn reconnect_keeps_data(url: &str, kind: BackendKind) {
    let a = instance("bastion-a");
    let s = session(&a, Protocol::ConsoleSerial, "tanaka", "web01");
    {
        let c = open(url, kind).await;
        c.session_started(&s).await.unwrap();
        c.close().await;
    }
    // Migrations run again (a no-op) and the data is still there.
    let c = open(url, kind).await;
    assert_eq!(c.get_session(s.id).await.unwrap().unwrap().id, s.id);
}

async fn pins_are_first_use_and_shared_by_instances(url: &str, kind: BackendKind) {
    let a = open(url, kind).await;
    let b = open(url, kind).await;
    let (ia, ib) = (instance("bastion-a"), instance("bastion-b"));
    let cert = |fingerprint| Presented {
        kind: PinKind::RdpCertificate,
        endpoint: "127.0.20.11:3389",
        fingerprint,
        target: Some("db-phys01"),
    };
    assert_eq!(
        a.check_or_pin(&cert("SHA256:AA"), &ia, t0()).await.unwrap(),
        PinCheck::FirstUse
    );
    assert_eq!(
        a.check_or_pin(&cert("SHA256:AA"), &ia, t0()).await.unwrap(),
        PinCheck::Match
    );
    // Another instance that never dialled the endpoint still sees the pin.
    assert_eq!(
        b.check_or_pin(&cert("SHA256:BB"), &ib, t0()).await.unwrap(),
        PinCheck::Changed {
            pinned: "SHA256:AA".to_owned()
        }
    );
    // The same endpoint's SSH host key is a pin of its own.
    let host_key = Presented {
        kind: PinKind::SshHostKey,
        endpoint: "127.0.20.11:3389",
        fingerprint: "SHA256:CC",
        target: None,
    };
    assert_eq!(
        b.check_or_pin(&host_key, &ib, t0()).await.unwrap(),
        PinCheck::FirstUse
    );
    let pins = a.pins().await.unwrap();
    assert_eq!(pins.len(), 2);
    assert_eq!(pins[0].kind, PinKind::RdpCertificate);
    assert_eq!(pins[0].fingerprint, "SHA256:AA");
    assert_eq!(pins[0].instance, ia);
    assert_eq!(pins[0].target.as_deref(), Some("db-phys01"));
    assert_eq!(pins[0].pinned_at, t0());
    assert_eq!(pins[1].kind, PinKind::SshHostKey);
    assert_eq!(pins[1].target, None);

    // Forgetting one kind keeps the other; the next dial pins afresh.
    assert_eq!(
        a.forget_pin(Some(PinKind::RdpCertificate), "127.0.20.11:3389")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        b.check_or_pin(&cert("SHA256:BB"), &ib, t0()).await.unwrap(),
        PinCheck::FirstUse
    );
    assert_eq!(a.forget_pin(None, "127.0.20.11:3389").await.unwrap(), 2);
    assert!(a.pins().await.unwrap().is_empty());
}

async fn orphans_are_the_live_sessions_of_silent_instances(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let (a, b, never) = (
        instance("bastion-a"),
        instance("bastion-b"),
        instance("never"),
    );
    let now = Utc::now();
    let stale = Duration::seconds(20);
    let mut a1 = session(&a, Protocol::ConsoleSerial, "tanaka", "web01");
    a1.started_at = now - Duration::minutes(5);
    let mut a2 = session(&a, Protocol::Rdp, "tanaka", "phys01");
    a2.started_at = now - Duration::minutes(4);
    let mut b1 = session(&b, Protocol::ConsoleVnc, "sato", "web02");
    b1.started_at = now - Duration::minutes(5);
    let mut n_old = session(&never, Protocol::Ssh, "sato", "phys02");
    n_old.started_at = now - Duration::minutes(1);
    let mut n_new = session(&never, Protocol::Ssh, "sato", "phys03");
    n_new.started_at = now - Duration::seconds(2);
    c.session_started_batch(&[
        a1.clone(),
        a2.clone(),
        b1.clone(),
        n_old.clone(),
        n_new.clone(),
    ])
    .await
    .unwrap();
    c.session_ended(a2.id, now, Outcome::Completed, None)
        .await
        .unwrap();
    c.heartbeat(&a, now - Duration::seconds(21)).await.unwrap();
    c.heartbeat(&b, now - Duration::seconds(5)).await.unwrap();

    // As b sees it: a is silent (its live session only), "never" never beat (only the session
    // older than the stale time: a newer one may belong to an instance still starting).
    let orphans = c.orphaned_sessions(&b, now, stale).await.unwrap();
    assert_eq!(
        orphans.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![a1.id, n_old.id]
    );
    // An instance never reaps itself, and a beating one is nobody's orphan.
    let seen_by_a = c.orphaned_sessions(&a, now, stale).await.unwrap();
    assert!(
        seen_by_a
            .iter()
            .all(|s| s.instance_id != a && s.id != b1.id)
    );

    // Once marked, a's session waits for a to seal its recording.
    c.mark_interrupted(Interrupted::Sessions(&[a1.id]), now)
        .await
        .unwrap();
    assert!(
        c.orphaned_sessions(&b, now, stale)
            .await
            .unwrap()
            .iter()
            .all(|s| s.id != a1.id)
    );
    let unsealed = c.interrupted_unsealed(&a).await.unwrap();
    assert_eq!(
        unsealed.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![a1.id]
    );
    assert_eq!(
        unsealed[0].recording_state,
        Some(RecordingState::Incomplete)
    );
    c.set_recording(
        a1.id,
        &RecordingSummary {
            location: unsealed[0].recording.clone().unwrap(),
            state: RecordingState::Sealed,
            size: 10,
            hash: Some("00".repeat(32)),
        },
    )
    .await
    .unwrap();
    assert!(c.interrupted_unsealed(&a).await.unwrap().is_empty());
}

async fn ledger_chains_sealed_and_deleted_recordings_from_every_instance(
    url: &str,
    kind: BackendKind,
) {
    use recorder::ledger::{self, EntryKind};
    let a = open(url, kind).await;
    let b = open(url, kind).await;
    let (ia, ib) = (instance("bastion-a"), instance("bastion-b"));
    a.register_signer(&ia, &"aa".repeat(32), t0())
        .await
        .unwrap();
    b.register_signer(&ib, &"bb".repeat(32), t0())
        .await
        .unwrap();
    assert_eq!(a.ledger_head().await.unwrap(), (0, "00".repeat(32)));
    let summary = |s: &NewSession, state| RecordingSummary {
        location: s.recording.clone().unwrap(),
        state,
        size: 4096,
        hash: Some("12".repeat(32)),
    };

    let sealed = session(&ia, Protocol::ConsoleSerial, "tanaka", "web01");
    let interrupted = session(&ib, Protocol::Rdp, "sato", "phys01");
    let failed = session(&ia, Protocol::Ssh, "tanaka", "phys02");
    a.session_started_batch(&[sealed.clone(), interrupted.clone(), failed.clone()])
        .await
        .unwrap();
    let ended = t0() + Duration::minutes(5);
    a.session_ended(
        sealed.id,
        ended,
        Outcome::Completed,
        Some(&summary(&sealed, RecordingState::Complete)),
    )
    .await
    .unwrap();
    // A recording that could not be finished is not in the ledger (nothing signed it).
    a.session_ended(
        failed.id,
        ended,
        Outcome::Failed,
        Some(&summary(&failed, RecordingState::Incomplete)),
    )
    .await
    .unwrap();
    b.mark_interrupted(Interrupted::Sessions(&[interrupted.id]), ended)
        .await
        .unwrap();
    b.set_recording(
        interrupted.id,
        &summary(&interrupted, RecordingState::Sealed),
    )
    .await
    .unwrap();
    a.recording_deleted(
        sealed.id,
        &AuditEvent {
            at: ended,
            instance: ia.clone(),
            kind: event_kind::RETENTION_DELETED.to_owned(),
            detail: Some("older than 90 days".to_owned()),
            session_id: Some(sealed.id),
        },
    )
    .await
    .unwrap();

    let entries = b.ledger_entries().await.unwrap();
    assert_eq!(
        entries
            .iter()
            .map(|e| (e.seq, e.content.kind, e.content.session_id))
            .collect::<Vec<_>>(),
        vec![
            (1, EntryKind::RecordingSealed, Some(sealed.id.0)),
            (2, EntryKind::RecordingSealed, Some(interrupted.id.0)),
            (3, EntryKind::RecordingDeleted, Some(sealed.id.0)),
        ]
    );
    let first = &entries[0].content;
    assert_eq!(first.instance, "bastion-a");
    assert_eq!(first.signer.as_deref(), Some("aa".repeat(32).as_str()));
    assert_eq!(
        first.recording_hash.as_deref(),
        Some("12".repeat(32).as_str())
    );
    assert_eq!(first.size, Some(4096));
    assert_eq!(first.started_at, Some(t0()));
    assert_eq!(first.ended_at, Some(ended));
    assert_eq!(
        entries[1].content.signer.as_deref(),
        Some("bb".repeat(32).as_str())
    );
    assert!(
        entries[2]
            .content
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("older than 90 days"))
    );
    assert_eq!(a.ledger_head().await.unwrap(), (3, entries[2].hash.clone()));

    // Signed checkpoint, stored and read back; the chain read back verifies.
    let key = recorder::RecordingKey::generate().unwrap();
    let cp = ledger::sign_checkpoint(&key, 3, &entries[2].hash, Utc::now(), "bastion-a");
    a.add_checkpoint(&cp).await.unwrap();
    let cps = b.ledger_checkpoints(None).await.unwrap();
    assert_eq!(cps, vec![cp.clone()]);
    assert!(ledger::verify_chain(&entries, &cps, |_| true).is_empty());
    assert!(
        b.ledger_checkpoints(Some(Utc::now() + Duration::hours(1)))
            .await
            .unwrap()
            .is_empty()
    );

    // Appenders on two handles at once still make one gapless chain.
    let many: Vec<NewSession> = (0..16)
        .map(|i| {
            session(
                if i % 2 == 0 { &ia } else { &ib },
                Protocol::Ssh,
                "sato",
                "x",
            )
        })
        .collect();
    a.session_started_batch(&many).await.unwrap();
    let mut ends = tokio::task::JoinSet::new();
    for (i, s) in many.iter().enumerate() {
        let c = if i % 2 == 0 { a.clone() } else { b.clone() };
        let r = summary(s, RecordingState::Complete);
        let id = s.id;
        ends.spawn(async move {
            c.session_ended(id, ended, Outcome::Completed, Some(&r))
                .await
        });
    }
    while let Some(r) = ends.join_next().await {
        assert!(r.unwrap().unwrap());
    }
    let entries = a.ledger_entries().await.unwrap();
    assert_eq!(entries.len(), 19);
    assert_eq!(
        entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=19).collect::<Vec<_>>()
    );
    assert!(ledger::verify_chain(&entries, &cps, |_| true).is_empty());
}

async fn denials_are_reviewed_with_history_audit_and_ledger(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let now = Utc::now();
    let denied = c
        .record_decision(&deny(
            &a,
            now - Duration::hours(1),
            "tanaka",
            "rdp.vdi-to-vm",
        ))
        .await
        .unwrap();
    let mut allow = deny(&a, now, "tanaka", "rdp.physical");
    allow.verdict = Verdict::Allow;
    let allowed = c.record_decision(&allow).await.unwrap();
    let review = |decision, disposition, comment: &str, minutes| NewReview {
        subject: ReviewSubject::Denial(decision),
        disposition,
        comment: Some(comment.to_owned()),
        reviewer: "kobayashi".to_owned(),
        at: now + Duration::minutes(minutes),
        instance: a.clone(),
    };
    assert!(
        c.add_review(&review(
            denied,
            Disposition::Mistake,
            "typed the VM's address",
            1
        ))
        .await
        .unwrap()
        .is_some()
    );
    // Reviewed again: the newest stands, the first stays as history.
    assert!(
        c.add_review(&review(
            denied,
            Disposition::Incident,
            "  tried twice more  ",
            2
        ))
        .await
        .unwrap()
        .is_some()
    );
    // Only denials are reviewed.
    assert!(
        c.add_review(&review(allowed, Disposition::Expected, "", 3))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        c.add_review(&review(
            recorder::catalogue::DecisionId::new_v7(),
            Disposition::Expected,
            "",
            3
        ))
        .await
        .unwrap()
        .is_none()
    );
    let latest = c.latest_reviews(now - Duration::days(1)).await.unwrap();
    assert_eq!(latest.len(), 1);
    let subject = ReviewSubject::Denial(denied);
    assert_eq!(latest[&subject].disposition, Disposition::Incident);
    assert_eq!(
        latest[&subject].comment.as_deref(),
        Some("tried twice more")
    );
    assert!(
        c.latest_reviews(now).await.unwrap().is_empty(),
        "decided before the period"
    );
    let history = c.reviews_of(subject).await.unwrap();
    assert_eq!(
        history.iter().map(|r| r.disposition).collect::<Vec<_>>(),
        vec![Disposition::Mistake, Disposition::Incident]
    );
    let events = c
        .list_audit_events(&AuditFilter {
            kind: Some(event_kind::REVIEW.to_owned()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    let entries = c.ledger_entries().await.unwrap();
    assert_eq!(entries.len(), 2);
    assert!(
        entries
            .iter()
            .all(|e| e.content.kind == recorder::ledger::EntryKind::Review)
    );
    assert!(
        entries[1]
            .content
            .detail
            .as_deref()
            .is_some_and(|d| d.contains("incident") && d.contains("kobayashi"))
    );
}

async fn policy_events_are_listed_and_reviewed_like_denials(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let s = session(&a, Protocol::Rdp, "tanaka", "app02");
    c.session_started(&s).await.unwrap();
    let at = Utc::now();
    c.session_event(
        s.id,
        at,
        "channel-stripped",
        Some("rdp.channel-stripped: cliprdr"),
    )
    .await
    .unwrap();
    // Also a denial of its own, reviewed as such: not listed twice.
    c.session_event(s.id, at, "sftp-refused", Some("sftp subsystem refused"))
        .await
        .unwrap();
    c.session_event(
        s.id,
        at + Duration::seconds(1),
        event_kind::WINDOW_WARNING,
        Some("10 minutes left"),
    )
    .await
    .unwrap();
    let events = c.session_events(s.id).await.unwrap();
    assert_eq!(events.len(), 3);
    let stripped = events
        .iter()
        .find(|e| e.kind == "channel-stripped")
        .unwrap()
        .id;
    let warning = events
        .iter()
        .find(|e| e.kind == event_kind::WINDOW_WARNING)
        .unwrap()
        .id;

    // Only the policy acting is listed and reviewable; a notice is not.
    let listed = c
        .policy_events(at - Duration::minutes(1), 100)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0].id, stripped);
    assert_eq!(listed[0].kind, "channel-stripped");
    assert_eq!(listed[0].user, "tanaka");
    assert_eq!(listed[0].target, "app02");
    assert!(
        c.policy_events(at + Duration::minutes(1), 100)
            .await
            .unwrap()
            .is_empty()
    );
    let review = |subject, disposition| NewReview {
        subject,
        disposition,
        comment: Some("tried to paste a log out".to_owned()),
        reviewer: "kobayashi".to_owned(),
        at: at + Duration::minutes(5),
        instance: a.clone(),
    };
    let subject = ReviewSubject::PolicyEvent(stripped);
    assert!(
        c.add_review(&review(subject, Disposition::Incident))
            .await
            .unwrap()
            .is_some()
    );
    assert!(
        c.add_review(&review(
            ReviewSubject::PolicyEvent(warning),
            Disposition::Expected
        ))
        .await
        .unwrap()
        .is_none(),
        "a notice is not a policy event"
    );
    let latest = c.latest_reviews(at - Duration::minutes(1)).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[&subject].disposition, Disposition::Incident);
    assert_eq!(c.reviews_of(subject).await.unwrap().len(), 1);
    // An audit event for the session, and a ledger row that names the event.
    let audit = c
        .list_audit_events(&AuditFilter {
            kind: Some(event_kind::REVIEW.to_owned()),
            ..AuditFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].session_id, Some(s.id));
    let entries = c.ledger_entries().await.unwrap();
    assert_eq!(entries.len(), 1);
    let detail = entries[0].content.detail.as_deref().unwrap_or_default();
    assert!(
        detail.contains(&stripped.to_string())
            && detail.contains("channel-stripped")
            && detail.contains("incident"),
        "{detail}"
    );
    assert_eq!(entries[0].content.session_id, Some(s.id.0));
}

async fn watchers_are_present_while_they_beat_and_until_they_leave(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let b = instance("bastion-b");
    let s = session(&a, Protocol::Ssh, "tanaka", "app02");
    c.session_started(&s).await.unwrap();
    let kobayashi = Watcher {
        viewer: "kobayashi".into(),
        role: "security".into(),
    };
    let ito = Watcher {
        viewer: "ito".into(),
        role: "auditor".into(),
    };
    let now = Utc::now();
    // Served by instance B's web UI; read by A, which runs the session.
    let w1 = c
        .watch_join(s.id, &kobayashi, &b, now)
        .await
        .unwrap()
        .unwrap();
    let w2 = c.watch_join(s.id, &ito, &b, now).await.unwrap().unwrap();
    let present = c.present_watchers(now).await.unwrap();
    assert_eq!(present[&s.id].len(), 2);
    // Someone else's watcher id does not beat or leave for them.
    assert!(!c.watch_beat(w1, "ito", now).await.unwrap());
    c.watch_leave(w1, "ito", now).await.unwrap();
    assert_eq!(c.present_watchers(now).await.unwrap()[&s.id].len(), 2);
    // ito leaves; kobayashi's page stops beating and goes stale.
    c.watch_leave(w2, "ito", now).await.unwrap();
    assert!(!c.watch_beat(w2, "ito", now).await.unwrap(), "left is left");
    let later = now + WATCHER_STALE_AFTER + Duration::seconds(1);
    assert!(c.present_watchers(later).await.unwrap().is_empty());
    // A beat brings kobayashi back.
    assert!(c.watch_beat(w1, "kobayashi", later).await.unwrap());
    let present = c.present_watchers(later).await.unwrap();
    assert_eq!(present[&s.id].iter().collect::<Vec<_>>(), vec![&kobayashi]);
    // An ended session is not watched: no join, no beat.
    c.session_ended(s.id, later, Outcome::Completed, None)
        .await
        .unwrap();
    assert!(!c.watch_beat(w1, "kobayashi", later).await.unwrap());
    assert!(
        c.watch_join(s.id, &kobayashi, &b, later)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        c.watch_join(new_id(), &kobayashi, &b, later)
            .await
            .unwrap()
            .is_none()
    );
}

async fn consoles_count_only_while_their_instance_beats(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let b = instance("bastion-b");
    let sa = session(&a, Protocol::ConsoleSerial, "tanaka", "web01");
    let sb = session(&b, Protocol::ConsoleVnc, "sato", "web02");
    c.session_started_batch(&[sa.clone(), sb.clone()])
        .await
        .unwrap();
    let now = Utc::now();

    // No heartbeats yet: neither instance is known to run, so neither console counts.
    assert!(c.live_consoles_at(now).await.unwrap().is_empty());
    assert!(c.instances().await.unwrap().is_empty());
    // a beats, b never has: only a's console counts.
    c.heartbeat(&a, now - Duration::seconds(2)).await.unwrap();
    assert_eq!(
        c.live_consoles_at(now)
            .await
            .unwrap()
            .iter()
            .map(|l| l.session_id)
            .collect::<Vec<_>>(),
        vec![sa.id],
        "b never sent a heartbeat"
    );

    c.heartbeat(&a, now - Duration::seconds(2)).await.unwrap();
    c.heartbeat(&b, now - Duration::minutes(10)).await.unwrap();
    c.heartbeat(&a, now).await.unwrap();
    let consoles = c.live_consoles_at(now).await.unwrap();
    assert_eq!(
        consoles.iter().map(|l| l.session_id).collect::<Vec<_>>(),
        vec![sa.id],
        "b's heartbeat is stale"
    );
    let instances = c.instances().await.unwrap();
    assert_eq!(instances.len(), 2);
    assert_eq!(instances[0].instance_id, a);
    assert_eq!(
        instances[0].started_at,
        Ts(now - Duration::seconds(2)).get()
    );
    assert_eq!(instances[0].last_seen, Ts(now).get());

    // b comes back.
    c.heartbeat(&b, now).await.unwrap();
    assert_eq!(c.live_consoles().await.unwrap().len(), 2);
}

async fn revoked_sessions_are_stored_and_listed(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let s = session(&a, Protocol::Ssh, "tanaka", "phys01");
    c.session_started(&s).await.unwrap();
    c.session_event(
        s.id,
        t0() + Duration::seconds(1),
        event_kind::REVOKED,
        Some("user.unknown: no user tanaka"),
    )
    .await
    .unwrap();
    c.session_ended(s.id, t0() + Duration::seconds(1), Outcome::Revoked, None)
        .await
        .unwrap();
    assert_eq!(
        c.get_session(s.id).await.unwrap().unwrap().outcome,
        Outcome::Revoked
    );
    let revoked = c
        .list_sessions(&SessionFilter {
            outcome: Some(Outcome::Revoked),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(revoked.iter().map(|r| r.id).collect::<Vec<_>>(), vec![s.id]);
    let events = c.session_events(s.id).await.unwrap();
    assert!(
        events.iter().any(|e| e.kind == event_kind::REVOKED
            && e.detail.as_deref() == Some("user.unknown: no user tanaka")),
        "{events:?}"
    );
}

/// Truncation to the microseconds the catalogue keeps.
struct Ts(DateTime<Utc>);

impl Ts {
    fn get(&self) -> DateTime<Utc> {
        use chrono::SubsecRound;
        self.0.trunc_subsecs(6)
    }
}

async fn records_from_policy_decisions(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let request = policy::Request {
        protocol: Protocol::Rdp,
        source: ip("127.0.10.11"),
        target: policy::TargetRef::Address(ip("10.1.2.3")),
        user: Some("tanaka".to_owned()),
    };
    let decision = policy::Decision::Deny(policy::Denial::new(
        policy::Rule::TargetUnknown,
        "no target has address 10.1.2.3",
        None,
        None,
        None,
    ));
    let record = DecisionRecord::from_decision(t0(), &a, &request, &decision, None);
    assert_eq!(record.verdict, Verdict::Deny);
    assert_eq!(
        record.target.as_deref(),
        Some("10.1.2.3"),
        "target as given"
    );
    assert_eq!(record.user.as_deref(), Some("tanaka"));
    let id = c.record_decision(&record).await.unwrap();
    let denials = c.list_denials(&DenialFilter::default()).await.unwrap();
    assert_eq!(denials.len(), 1);
    assert_eq!(denials[0].id, id);
    assert_eq!(denials[0].rule, "target.unknown");
    assert_eq!(denials[0].reason, "no target has address 10.1.2.3");
}

// ----- backend-specific -----

#[tokio::test]
async fn unsupported_url_is_rejected() {
    let err = Catalogue::connect("mysql://root:hunter2@db/sekisho")
        .await
        .unwrap_err();
    assert!(matches!(err, CatalogueError::UnsupportedUrl { .. }));
    let text = err.to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("mysql://root:***@db/sekisho"), "{text}");
}

#[tokio::test]
async fn sqlite_file_and_directory_are_created_in_wal_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("sekisho.db");
    let c = Catalogue::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert!(path.exists());
    c.close().await;
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(mode, "wal");
}

#[tokio::test]
async fn sqlite_in_memory_works() {
    let c = Catalogue::connect("sqlite::memory:").await.unwrap();
    let a = instance("mem");
    let s = session(&a, Protocol::Rdp, "tanaka", "phys01");
    c.session_started(&s).await.unwrap();
    assert_eq!(
        c.list_sessions(&SessionFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn postgres_connect_error_hides_the_password() {
    let Some(db) = TestDb::postgres("postgres_connect_error_hides_the_password").await else {
        return;
    };
    let (base, _) = db.pg.clone().unwrap();
    // Same server, wrong password.
    let (head, rest) = base.split_once('@').unwrap();
    let (user_part, _password) = head.rsplit_once(':').unwrap();
    let bad = format!("{user_part}:wrong-Secret-42@{rest}");
    let err = Catalogue::connect(&bad).await.unwrap_err();
    assert!(matches!(err, CatalogueError::Connect { .. }), "{err:?}");
    let text = format!("{err} {err:?}");
    assert!(!text.contains("wrong-Secret-42"), "{text}");
    assert!(text.contains(":***@"), "{text}");
    // A closed port is a connection error too, not a hang.
    let closed = "postgres://u:wrong-Secret-42@127.0.0.1:1/db";
    let err = Catalogue::connect(closed).await.unwrap_err();
    assert!(matches!(err, CatalogueError::Connect { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("wrong-Secret-42"));
    db.cleanup().await;
}

async fn typed_text_is_indexed_and_searched_newest_first(url: &str, kind: BackendKind) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let mut older = session(&a, Protocol::Rdp, "tanaka", "srv01");
    older.started_at = t0() - Duration::hours(1);
    let newer = session(&a, Protocol::ConsoleVnc, "sato", "web01");
    c.session_started(&older).await.unwrap();
    c.session_started(&newer).await.unwrap();
    let line = |at_us: u64, text: &str| TypedLineRow {
        at_us,
        text: text.to_owned(),
    };
    c.index_typed_text(
        older.id,
        &[
            line(1_000_000, "systemctl restart nginx"),
            line(5_000_000, "SYSTEMCTL status"),
        ],
    )
    .await
    .unwrap();
    // Indexing again replaces: one copy.
    c.index_typed_text(
        older.id,
        &[
            line(1_000_000, "systemctl restart nginx"),
            line(5_000_000, "SYSTEMCTL status"),
        ],
    )
    .await
    .unwrap();
    c.index_typed_text(newer.id, &[line(2_000_000, "Systemctl は日本語")])
        .await
        .unwrap();
    let q = |text: &str| TypedTextQuery {
        text: text.to_owned(),
        limit: 50,
        ..TypedTextQuery::default()
    };
    let hits = c.search_typed_text(&q("systemCTL")).await.unwrap();
    let got: Vec<_> = hits
        .iter()
        .map(|h| (h.session, h.at_us, h.text.as_str()))
        .collect();
    assert_eq!(
        got,
        vec![
            (newer.id, 2_000_000, "Systemctl は日本語"),
            (older.id, 5_000_000, "SYSTEMCTL status"),
            (older.id, 1_000_000, "systemctl restart nginx"),
        ]
    );
    assert_eq!(hits[0].user, "sato");
    assert_eq!(hits[0].protocol, Protocol::ConsoleVnc);
    assert_eq!(hits[1].at(), older.started_at + Duration::seconds(5));
    // Non-ASCII, a limit, and filters by user, target and session.
    assert_eq!(c.search_typed_text(&q("日本")).await.unwrap().len(), 1);
    let mut limited = q("systemctl");
    limited.limit = 2;
    assert_eq!(c.search_typed_text(&limited).await.unwrap().len(), 2);
    let mut by_user = q("systemctl");
    by_user.user = Some("tanaka".into());
    assert!(
        c.search_typed_text(&by_user)
            .await
            .unwrap()
            .iter()
            .all(|h| h.session == older.id)
    );
    let mut by_target = q("systemctl");
    by_target.target = Some("web01".into());
    assert_eq!(c.search_typed_text(&by_target).await.unwrap().len(), 1);
    let mut by_session = q("nginx");
    by_session.session = Some(newer.id);
    assert!(c.search_typed_text(&by_session).await.unwrap().is_empty());
    // Wildcards of LIKE are plain text here; blank queries find nothing.
    assert!(c.search_typed_text(&q("%")).await.unwrap().is_empty());
    assert!(c.search_typed_text(&q("  ")).await.unwrap().is_empty());
}

/// Find (issue #18): terminal sessions' commands (typed) and screen lines (screen) beside
/// graphical typed text, with the kind, protocol, terminal, contractor and period filters,
/// and one session's commands in time order.
async fn session_text_is_found_by_kind_protocol_contractor_and_period(
    url: &str,
    kind: BackendKind,
) {
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    let ssh = session(&a, Protocol::Ssh, "tanaka", "web01");
    let mut serial = session(&a, Protocol::ConsoleSerial, "sato", "db01");
    serial.contractor = "beta".to_owned();
    serial.started_at = t0() - Duration::hours(2);
    let mut rdp = session(&a, Protocol::Rdp, "tanaka", "srv01");
    rdp.started_at = t0() - Duration::hours(1);
    for s in [&ssh, &serial, &rdp] {
        c.session_started(s).await.unwrap();
    }
    let line = |at_us: u64, text: &str| TypedLineRow {
        at_us,
        text: text.to_owned(),
    };
    let written = c
        .index_text(
            ssh.id,
            &[
                line(3_000_000, "grep FindMe /var/log/syslog"),
                line(1_000_000, "uptime"),
            ],
            &[line(2_000_000, "load average: findme")],
        )
        .await
        .unwrap();
    assert_eq!(written, 3);
    c.index_text(serial.id, &[line(1_000_000, "echo findme")], &[])
        .await
        .unwrap();
    c.index_typed_text(rdp.id, &[line(1_000_000, "notepad findme")])
        .await
        .unwrap();

    let q = || TextQuery {
        text: "FINDME".to_owned(),
        limit: 50,
        ..TextQuery::default()
    };
    let texts = |hits: &[recorder::catalogue::TypedTextHit]| -> Vec<String> {
        hits.iter().map(|h| h.text.clone()).collect()
    };
    let all = c.search_text(&q()).await.unwrap();
    assert_eq!(
        texts(&all),
        vec![
            "grep FindMe /var/log/syslog",
            "load average: findme",
            "notepad findme",
            "echo findme",
        ]
    );
    assert_eq!(all[0].kind, TextKind::Typed);
    assert_eq!(all[1].kind, TextKind::Screen);
    assert_eq!(all[3].contractor, "beta");

    let mut screen = q();
    screen.kind = Some(TextKind::Screen);
    assert_eq!(
        texts(&c.search_text(&screen).await.unwrap()),
        vec!["load average: findme"]
    );
    let mut commands = q();
    commands.kind = Some(TextKind::Typed);
    commands.terminal = Some(true);
    assert_eq!(
        texts(&c.search_text(&commands).await.unwrap()),
        vec!["grep FindMe /var/log/syslog", "echo findme"]
    );
    let mut graphical = q();
    graphical.terminal = Some(false);
    assert_eq!(
        texts(&c.search_text(&graphical).await.unwrap()),
        vec!["notepad findme"]
    );
    let mut by_protocol = q();
    by_protocol.protocol = Some(Protocol::ConsoleSerial);
    assert_eq!(
        texts(&c.search_text(&by_protocol).await.unwrap()),
        vec!["echo findme"]
    );
    let mut by_contractor = q();
    by_contractor.contractor = Some("acme".to_owned());
    assert_eq!(c.search_text(&by_contractor).await.unwrap().len(), 3);
    let mut mine = q();
    mine.user = Some("sato".to_owned());
    assert_eq!(
        texts(&c.search_text(&mine).await.unwrap()),
        vec!["echo findme"]
    );

    // The period holds each line's own time: the ssh session's lines at 1 s, 2 s, 3 s.
    let mut period = q();
    period.since = Some(ssh.started_at + Duration::milliseconds(1500));
    period.until = Some(ssh.started_at + Duration::milliseconds(2500));
    assert_eq!(
        texts(&c.search_text(&period).await.unwrap()),
        vec!["load average: findme"]
    );
    let mut before = q();
    before.until = Some(t0() - Duration::minutes(30));
    assert_eq!(
        texts(&c.search_text(&before).await.unwrap()),
        vec!["notepad findme", "echo findme"]
    );

    // The player's typed-text search of one session sees typed lines only.
    let typed = c
        .search_typed_text(&TypedTextQuery {
            text: "findme".to_owned(),
            session: Some(ssh.id),
            limit: 10,
            ..TypedTextQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(texts(&typed), vec!["grep FindMe /var/log/syslog"]);

    // One session's commands, in time order; indexing again replaces them.
    let cmds = c.session_text(ssh.id, TextKind::Typed, 100).await.unwrap();
    assert_eq!(
        cmds,
        vec![
            line(1_000_000, "uptime"),
            line(3_000_000, "grep FindMe /var/log/syslog")
        ]
    );
    c.index_text(ssh.id, &[line(5, "id")], &[]).await.unwrap();
    assert_eq!(
        c.session_text(ssh.id, TextKind::Typed, 100).await.unwrap(),
        vec![line(5, "id")]
    );
    assert!(
        c.session_text(ssh.id, TextKind::Screen, 100)
            .await
            .unwrap()
            .is_empty()
    );

    // Terminal sessions sealed before they were indexed are found for the backfill; once
    // indexed, run by another instance, or graphical, they are not.
    let sealed = |location: &str| RecordingSummary {
        location: location.to_owned(),
        state: RecordingState::Sealed,
        size: 10,
        hash: None,
    };
    let end = t0() + Duration::minutes(5);
    let old = session(&a, Protocol::Ssh, "tanaka", "web02");
    let vnc = session(&a, Protocol::ConsoleVnc, "tanaka", "web02");
    let b = instance("bastion-b");
    let theirs = session(&b, Protocol::ConsoleSerial, "sato", "db01");
    for (s, location) in [
        (&old, "/r/old.skr"),
        (&vnc, "/r/vnc.skr"),
        (&theirs, "/r/b.skr"),
    ] {
        c.session_started(s).await.unwrap();
        c.session_ended(s.id, end, Outcome::Completed, Some(&sealed(location)))
            .await
            .unwrap();
    }
    assert_eq!(
        c.unindexed_terminal_sessions(&a, 10).await.unwrap(),
        vec![(old.id, "/r/old.skr".to_owned())]
    );
    c.index_text(old.id, &[line(1, "ls")], &[]).await.unwrap();
    assert!(
        c.unindexed_terminal_sessions(&a, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// What an evidence bundle reads: the decisions of a session (the allow decision is linked
/// once the session exists), the session's span of ledger rows, the rows in a range, and the
/// earliest checkpoint covering a row.
async fn evidence_links_decisions_and_finds_the_nearest_covering_checkpoint(
    url: &str,
    kind: BackendKind,
) {
    use recorder::ledger;
    let c = open(url, kind).await;
    let a = instance("bastion-a");
    c.register_signer(&a, &"aa".repeat(32), t0()).await.unwrap();
    let first = session(&a, Protocol::Rdp, "tanaka", "phys01");
    let second = session(&a, Protocol::Ssh, "sato", "web01");
    c.session_started_batch(&[first.clone(), second.clone()])
        .await
        .unwrap();

    let decision = |verdict, session_id| DecisionRecord {
        at: t0(),
        instance: a.clone(),
        protocol: Protocol::Rdp,
        source: ip("127.0.10.11"),
        target: Some("phys01".to_owned()),
        user: Some("tanaka".to_owned()),
        contractor: Some("acme".to_owned()),
        verdict,
        rule: "rdp.physical".to_owned(),
        reason: "allowed".to_owned(),
        session_id,
        explanation: None,
    };
    let allow = c
        .record_decision(&decision(Verdict::Allow, None))
        .await
        .unwrap();
    let inside = c
        .record_decision(&decision(Verdict::Deny, Some(first.id)))
        .await
        .unwrap();
    assert_eq!(c.decisions_of_session(first.id).await.unwrap().len(), 1);
    c.link_decision(allow, first.id).await.unwrap();
    // A decision already linked stays with its session.
    c.link_decision(allow, second.id).await.unwrap();
    let ids: Vec<_> = c
        .decisions_of_session(first.id)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&allow) && ids.contains(&inside));
    assert!(c.decisions_of_session(second.id).await.unwrap().is_empty());

    assert_eq!(c.ledger_span_of_session(first.id).await.unwrap(), None);
    let key = recorder::RecordingKey::generate().unwrap();
    let mut checkpoints = Vec::new();
    for s in [&first, &second] {
        c.session_ended(
            s.id,
            t0() + Duration::minutes(1),
            Outcome::Completed,
            Some(&RecordingSummary {
                location: s.recording.clone().unwrap(),
                state: RecordingState::Complete,
                size: 10,
                hash: Some("34".repeat(32)),
            }),
        )
        .await
        .unwrap();
        let (seq, head) = c.ledger_head().await.unwrap();
        let cp = ledger::sign_checkpoint(&key, seq, &head, Utc::now(), "bastion-a");
        c.add_checkpoint(&cp).await.unwrap();
        checkpoints.push(cp);
    }
    assert_eq!(
        c.ledger_span_of_session(first.id).await.unwrap(),
        Some((1, 1))
    );
    assert_eq!(
        c.ledger_span_of_session(second.id).await.unwrap(),
        Some((2, 2))
    );
    assert_eq!(
        c.checkpoint_covering(1).await.unwrap().as_ref(),
        checkpoints.first()
    );
    assert_eq!(
        c.checkpoint_covering(2).await.unwrap().as_ref(),
        checkpoints.get(1)
    );
    assert_eq!(c.checkpoint_covering(3).await.unwrap(), None);
    let range = c.ledger_range(1, 2).await.unwrap();
    assert_eq!(range, c.ledger_entries().await.unwrap());
    assert_eq!(c.ledger_range(2, 2).await.unwrap().len(), 1);
    assert!(c.ledger_range(3, 9).await.unwrap().is_empty());
}
