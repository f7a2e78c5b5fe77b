//! The audit catalogue: decisions, sessions, events.
//!
//! Every allow/deny decision, every session (with its recording's location and state), the
//! policy events inside sessions, kill requests and catalogue-level audit events are kept in
//! a SQL database through [`Catalogue`]:
//!
//! - SQLite by default (`sqlite://data/sekisho.db`, relative to the process's working
//!   directory; the file and its directory are created on first connect; WAL mode, so the
//!   CLI can read while `serve` writes).
//! - PostgreSQL for `postgres://…` / `postgresql://…` URLs. Several instances may share one
//!   database: every id is a UUIDv7 and every row records the [`InstanceId`] that wrote it.
//!
//! Both backends run their embedded migrations on connect (`recorder/migrations/sqlite`,
//! `recorder/migrations/postgres`) and answer the same queries. Timestamps are stored in UTC
//! with microsecond precision (see `ts.rs`).
//!
//! Fail closed: callers treat any [`CatalogueError`] as "deny / disconnect".

mod error;
mod ts;
mod types;
mod url;

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, FromRow};
use tracing::{debug, info};

pub use door_events::{DoorEvent, DoorEventKind};
pub use error::CatalogueError;
pub use pins::{PinCheck, PinKind, PinRow, Presented, UnknownPinKind};
pub use policy::{LiveConsole, Protocol, SessionId};
pub use reviews::{NewReview, ReviewRow, ReviewSubject};
pub use typed_text::{
    MAX_TYPED_HITS, MAX_TYPED_LINE_CHARS, MAX_TYPED_LINES, MAX_TYPED_QUERY_CHARS, TextKind,
    TextQuery, TypedLineRow, TypedTextHit, TypedTextQuery,
};
pub use types::{
    AuditEvent, AuditEventId, AuditEventRow, AuditFilter, BackendKind, DecisionFilter, DecisionId,
    DecisionRecord, DecisionRow, DenialFilter, DenialRow, Disposition, InstanceId, InstanceRow,
    Interrupted, MAX_INSTANCE_ID_LEN, NewSession, Outcome, PolicyEventRow, RecordingState,
    RecordingSummary, ReviewId, SessionCursor, SessionEventId, SessionEventRow, SessionFilter,
    SessionRow, Verdict, event_kind,
};
pub use url::redact as redact_url;
pub use watchers::{WATCHER_STALE_AFTER, Watcher, WatcherId};

use ts::Ts;

/// Most rows one list call returns: a page for the web UI or CLI, not an export. Bounds the
/// memory a single query can take whatever filter a user types.
pub const MAX_PAGE: u32 = 10_000;

/// Longest free text stored (characters), for reasons, details and targets "as given":
/// targets come from untrusted input (an RDP preconnection PDU, an SSH user name), and a
/// peer must not be able to grow the catalogue by megabytes per attempt. Longer text is
/// cut and marked with `…`.
pub const MAX_TEXT_LEN: usize = 4096;

/// How often an instance should poll [`Catalogue::pending_kills`]: a kill must take effect
/// within 1 s of `sekisho sessions kill`, and the query is an index lookup.
pub const KILL_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// How often an instance should call [`Catalogue::heartbeat`] while serving.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);

/// An instance whose last heartbeat is older than this is presumed dead: its live consoles
/// stop counting for RDP hops, and another instance marks its live sessions interrupted.
/// Four missed heartbeats, so a slow database does not flap hops on and off; short enough
/// that a dead instance's sessions are closed within half a minute.
pub const STALE_INSTANCE_AFTER: chrono::Duration = chrono::Duration::seconds(20);

/// How long an SQLite writer waits for another (e.g. the CLI) before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite serialises writers anyway; a few connections let readers run beside one writer.
const SQLITE_MAX_CONNECTIONS: u32 = 4;
/// Per instance; several instances share one PostgreSQL, so keep this modest.
const PG_MAX_CONNECTIONS: u32 = 8;
/// PostgreSQL `statement_timeout` (unless the URL sets one).
const PG_STATEMENT_TIMEOUT: &str = "15s";
/// How long a query waits for a pooled connection before failing (closed).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Rows per multi-row INSERT in [`Catalogue::session_started_batch`]: 14 parameters each,
/// well under both backends' parameter limits (SQLite 32766, PostgreSQL 65535).
const BATCH_ROWS: usize = 500;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static PG_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A handle on the catalogue database. Cheap to clone (a connection pool inside).
#[derive(Clone)]
pub struct Catalogue {
    backend: Backend,
    /// The URL it was opened with, password redacted: for logs and `Debug`.
    url: String,
}

impl fmt::Debug for Catalogue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Catalogue")
            .field("backend", &self.backend())
            .field("url", &self.url)
            .finish()
    }
}

/// Runs `$body` with `$pool` bound to whichever pool the catalogue has. The body is the
/// same text for both backends: SQL uses `$N` placeholders, which SQLite accepts too, and
/// every bound or read type implements both backends' traits.
macro_rules! on_backend {
    ($self:expr, |$pool:ident| $body:expr) => {
        match &$self.backend {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

/// Binds a list of [`Arg`]s, in order, to a query.
macro_rules! bind_args {
    ($query:expr, $args:expr) => {{
        let mut q = $query;
        for arg in $args {
            q = match arg {
                Arg::Text(v) => q.bind(v),
                Arg::OptText(v) => q.bind(v),
                Arg::Ts(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
            };
        }
        q
    }};
}

/// Appends a [`crate::ledger::EntryContent`] to the ledger inside transaction `$tx`, chained
/// to the head. A macro, not a function, for the same reason as [`insert_session_event!`].
/// The head is updated first: that takes the lock that serialises appenders.
macro_rules! append_ledger {
    ($tx:expr, $content:expr) => {{
        let content: crate::ledger::EntryContent = $content;
        let (seq, prev): (i64, String) =
            sqlx::query_as("UPDATE ledger_head SET seq = seq + 1 WHERE id = 1 RETURNING seq, hash")
                .fetch_one(&mut *$tx)
                .await?;
        let prev_hash = crate::ledger::parse_hash(&prev)
            .ok_or_else(|| CatalogueError::corrupt("ledger head", &prev))?;
        let seq_u = u64::try_from(seq)
            .map_err(|_| CatalogueError::corrupt("ledger seq", &seq.to_string()))?;
        let entry = crate::ledger::chain(seq_u, &prev_hash, content);
        sqlx::query("UPDATE ledger_head SET hash = $1 WHERE id = 1")
            .bind(entry.hash.clone())
            .execute(&mut *$tx)
            .await?;
        let c = &entry.content;
        sqlx::query(
            "INSERT INTO ledger (seq, at, instance_id, kind, session_id, location, \
             recording_hash, recording_size, started_at, ended_at, signer, detail, prev_hash, \
             hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(seq)
        .bind(Ts::new(c.at))
        .bind(c.instance.clone())
        .bind(c.kind.as_str())
        .bind(c.session_id.map(|u| u.to_string()))
        .bind(c.location.clone())
        .bind(c.recording_hash.clone())
        .bind(c.size.map(size_to_db).transpose()?)
        .bind(c.started_at.map(Ts::new))
        .bind(c.ended_at.map(Ts::new))
        .bind(c.signer.clone())
        .bind(c.detail.clone())
        .bind(entry.prev_hash.clone())
        .bind(entry.hash.clone())
        .execute(&mut *$tx)
        .await?;
    }};
}

/// Appends the ledger entry of session `$id`'s recording (`$summary`, sealed or complete, or
/// `$kind` deletion) inside `$tx`, with the session's instance, times and signer read in the
/// same transaction.
macro_rules! append_recording_ledger {
    ($tx:expr, $id:expr, $kind:expr, $location:expr, $hash:expr, $size:expr, $detail:expr) => {{
        let (instance, started, ended, signer): (String, Ts, Option<Ts>, Option<String>) =
            sqlx::query_as(
                "SELECT s.instance_id, s.started_at, s.ended_at, i.public_key FROM sessions s \
                 LEFT JOIN instances i ON i.instance_id = s.instance_id WHERE s.id = $1",
            )
            .bind($id.to_string())
            .fetch_one(&mut *$tx)
            .await?;
        append_ledger!(
            $tx,
            crate::ledger::EntryContent {
                at: Ts::new(Utc::now()).get(),
                instance,
                kind: $kind,
                session_id: Some($id.0),
                location: Some(text($location)),
                recording_hash: $hash,
                size: $size,
                started_at: Some(started.get()),
                ended_at: ended.map(|t| t.get()),
                signer,
                detail: $detail,
            }
        );
    }};
}

mod door_events;
// After the macros above, which they use.
mod ledger;
mod orphans;
mod pins;
mod reviews;
mod typed_text;
mod watchers;

/// Inserts a session event under the session's own instance; evaluates to `false` if there
/// is no such session. A macro, not a function, so it expands inside [`on_backend!`] for a
/// pool or a transaction of either backend (their result types share no trait).
macro_rules! insert_session_event {
    ($executor:expr, $id:expr, $at:expr, $kind:expr, $detail:expr) => {
        sqlx::query(
            "INSERT INTO session_events (id, session_id, instance_id, at, kind, detail) \
             SELECT $1, id, instance_id, $2, $3, $4 FROM sessions WHERE id = $5",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(Ts::new($at))
        .bind(text($kind))
        .bind(opt_text($detail))
        .bind($id.to_string())
        .execute($executor)
        .await?
        .rows_affected()
            > 0
    };
}

/// A value bound to a dynamically built query.
enum Arg {
    Text(String),
    OptText(Option<String>),
    Ts(Ts),
    Int(i64),
}

/// A `WHERE` clause built from filter fields, with numbered placeholders.
#[derive(Default)]
struct Where {
    clauses: Vec<String>,
    args: Vec<Arg>,
}

impl Where {
    /// Adds `column OP $n` with the next placeholder number.
    fn cmp(&mut self, column: &str, op: &str, arg: Arg) {
        self.args.push(arg);
        self.clauses
            .push(format!("{column} {op} ${}", self.args.len()));
    }

    /// Adds `column = $n` when a value is given (a filter field left empty matches all).
    fn equals(&mut self, column: &str, value: Option<impl ToString>) {
        if let Some(v) = value {
            self.cmp(column, "=", Arg::Text(v.to_string()));
        }
    }

    /// Adds "`column` starts with `prefix`, ignoring ASCII case" when a prefix is given. The
    /// prefix's own `%`, `_` and `\\` match themselves (escaped), and both sides are lowered
    /// so SQLite (whose LIKE ignores ASCII case) and PostgreSQL (whose LIKE does not) agree.
    fn starts_with(&mut self, column: &str, prefix: Option<&String>) {
        if let Some(p) = prefix {
            let mut pattern = String::with_capacity(p.len() + 1);
            for c in p.to_ascii_lowercase().chars() {
                if matches!(c, '%' | '_' | '\\') {
                    pattern.push('\\');
                }
                pattern.push(c);
            }
            pattern.push('%');
            self.args.push(Arg::Text(pattern));
            self.clauses.push(format!(
                "LOWER({column}) LIKE ${} ESCAPE '\\'",
                self.args.len()
            ));
        }
    }

    /// Adds `since <= column < until`, each end when given.
    fn period(&mut self, column: &str, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) {
        if let Some(t) = since {
            self.cmp(column, ">=", Arg::Ts(Ts::new(t)));
        }
        if let Some(t) = until {
            self.cmp(column, "<", Arg::Ts(Ts::new(t)));
        }
    }

    /// Adds a clause without parameters.
    fn raw(&mut self, clause: &str) {
        self.clauses.push(clause.to_owned());
    }

    /// ` WHERE a AND b` (or nothing), then the `ORDER BY`, then `LIMIT`/`OFFSET` placeholders.
    fn finish(
        mut self,
        select: &str,
        order: &str,
        limit: Option<u32>,
        offset: Option<u64>,
    ) -> Result<(String, Vec<Arg>), CatalogueError> {
        let mut sql = select.to_owned();
        if !self.clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.clauses.join(" AND "));
        }
        sql.push_str(" ORDER BY ");
        sql.push_str(order);
        let limit = limit.unwrap_or(MAX_PAGE).min(MAX_PAGE);
        let offset =
            i64::try_from(offset.unwrap_or(0)).map_err(|_| CatalogueError::OutOfRange("offset"))?;
        self.args.push(Arg::Int(i64::from(limit)));
        self.args.push(Arg::Int(offset));
        let n = self.args.len();
        sql.push_str(&format!(" LIMIT ${} OFFSET ${n}", n - 1));
        Ok((sql, self.args))
    }
}

/// Cuts caller text to [`MAX_TEXT_LEN`] characters.
fn text(s: &str) -> String {
    if s.chars().count() <= MAX_TEXT_LEN {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX_TEXT_LEN - 1).collect();
    out.push('…');
    out
}

fn opt_text(s: Option<&str>) -> Option<String> {
    s.map(text)
}

fn parse_session_id(s: &str) -> Result<SessionId, CatalogueError> {
    s.parse()
        .map_err(|_| CatalogueError::corrupt("session id", s))
}

fn parse_instance(s: &str) -> Result<InstanceId, CatalogueError> {
    InstanceId::new(s).map_err(|_| CatalogueError::corrupt("instance id", s))
}

fn parse_protocol(s: &str) -> Result<Protocol, CatalogueError> {
    s.parse()
        .map_err(|_| CatalogueError::corrupt("protocol", s))
}

fn parse_ip(s: &str) -> Result<IpAddr, CatalogueError> {
    s.parse()
        .map_err(|_| CatalogueError::corrupt("source address", s))
}

fn size_to_db(size: u64) -> Result<i64, CatalogueError> {
    i64::try_from(size).map_err(|_| CatalogueError::OutOfRange("recording size"))
}

const DECISION_COLS: &str = "id, at, instance_id, protocol, source, target, user_name, \
     contractor, verdict, rule, reason, explanation, session_id";

#[derive(FromRow)]
struct RawDecision {
    id: String,
    at: Ts,
    instance_id: String,
    protocol: String,
    source: String,
    target: Option<String>,
    user_name: Option<String>,
    contractor: Option<String>,
    verdict: String,
    rule: String,
    reason: String,
    explanation: Option<String>,
    session_id: Option<String>,
}

impl RawDecision {
    fn parse(self) -> Result<DecisionRow, CatalogueError> {
        Ok(DecisionRow {
            id: self
                .id
                .parse()
                .map_err(|_| CatalogueError::corrupt("decision id", &self.id))?,
            at: self.at.get(),
            instance_id: parse_instance(&self.instance_id)?,
            protocol: parse_protocol(&self.protocol)?,
            source: parse_ip(&self.source)?,
            target: self.target,
            user: self.user_name,
            contractor: self.contractor,
            verdict: self.verdict.parse()?,
            rule: self.rule,
            reason: self.reason,
            // A display aid beside the stored sentence: one that does not parse (written by
            // a later version, say) is shown as the sentence alone.
            explanation: self
                .explanation
                .as_deref()
                .and_then(|e| serde_json::from_str(e).ok()),
            session_id: self
                .session_id
                .as_deref()
                .map(parse_session_id)
                .transpose()?,
        })
    }
}

const SESSION_COLS: &str = "id, instance_id, protocol, user_name, contractor, source, target, \
     access_path, console_session, started_at, ended_at, outcome, recording, recording_state, \
     recording_size, recording_hash, detail";

#[derive(FromRow)]
struct RawSession {
    id: String,
    instance_id: String,
    protocol: String,
    user_name: String,
    contractor: String,
    source: String,
    target: String,
    access_path: String,
    console_session: Option<String>,
    started_at: Ts,
    ended_at: Option<Ts>,
    outcome: String,
    recording: Option<String>,
    recording_state: Option<String>,
    recording_size: Option<i64>,
    recording_hash: Option<String>,
    detail: Option<String>,
}

impl RawSession {
    fn parse(self) -> Result<SessionRow, CatalogueError> {
        Ok(SessionRow {
            id: parse_session_id(&self.id)?,
            protocol: parse_protocol(&self.protocol)?,
            user: self.user_name,
            contractor: self.contractor,
            source: parse_ip(&self.source)?,
            target: self.target,
            started_at: self.started_at.get(),
            ended_at: self.ended_at.map(Ts::get),
            outcome: self.outcome.parse()?,
            recording: self.recording,
            recording_state: self
                .recording_state
                .as_deref()
                .map(RecordingState::from_str)
                .transpose()?,
            console_session: self
                .console_session
                .as_deref()
                .map(parse_session_id)
                .transpose()?,
            recording_size: self
                .recording_size
                .map(|s| {
                    u64::try_from(s)
                        .map_err(|_| CatalogueError::corrupt("recording size", &s.to_string()))
                })
                .transpose()?,
            recording_hash: self.recording_hash,
            path: self.access_path,
            instance_id: parse_instance(&self.instance_id)?,
            detail: self.detail,
        })
    }
}

#[derive(FromRow)]
struct RawConsole {
    id: String,
    target: String,
    user_name: String,
    contractor: String,
    access_path: String,
}

#[derive(FromRow)]
struct RawInstance {
    instance_id: String,
    started_at: Ts,
    last_seen: Ts,
}

#[derive(FromRow)]
struct RawSessionEvent {
    id: String,
    session_id: String,
    at: Ts,
    kind: String,
    detail: Option<String>,
    instance_id: String,
}

const AUDIT_COLS: &str = "id, at, instance_id, kind, detail, session_id";

#[derive(FromRow)]
struct RawAudit {
    id: String,
    at: Ts,
    instance_id: String,
    kind: String,
    detail: Option<String>,
    session_id: Option<String>,
}

/// The arguments of one sessions row, in `INSERT` column order.
fn session_args(s: &NewSession) -> Vec<Arg> {
    vec![
        Arg::Text(s.id.to_string()),
        Arg::Text(s.instance.as_str().to_owned()),
        Arg::Text(s.protocol.to_string()),
        Arg::Text(text(&s.user)),
        Arg::Text(text(&s.contractor)),
        Arg::Text(s.source.to_string()),
        Arg::Text(text(&s.target)),
        Arg::Text(text(&s.path)),
        Arg::OptText(s.console_session.map(|c| c.to_string())),
        Arg::Ts(Ts::new(s.started_at)),
        Arg::Text(Outcome::Live.as_str().to_owned()),
        Arg::OptText(opt_text(s.recording.as_deref())),
        Arg::OptText(
            s.recording
                .as_ref()
                .map(|_| RecordingState::Live.as_str().to_owned()),
        ),
        Arg::OptText(opt_text(s.detail.as_deref())),
    ]
}

const SESSION_INSERT: &str = "INSERT INTO sessions (id, instance_id, protocol, user_name, \
     contractor, source, target, access_path, console_session, started_at, outcome, recording, \
     recording_state, detail) VALUES ";
/// Parameters per sessions row in [`SESSION_INSERT`].
const SESSION_INSERT_PARAMS: usize = 14;

/// `($1, …, $14), ($15, …)` for `rows` rows.
fn values_placeholders(rows: usize, per_row: usize) -> String {
    (0..rows)
        .map(|r| {
            let cols: Vec<String> = (1..=per_row)
                .map(|c| format!("${}", r * per_row + c))
                .collect();
            format!("({})", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Sets the recording to `incomplete` when it was still `live`: a session that ends without
/// a summary (or is interrupted) cannot have a finished recording.
const RECORDING_CUT: &str = "recording_state = CASE WHEN recording_state = 'live' \
     THEN 'incomplete' ELSE recording_state END";

impl Catalogue {
    /// Opens the catalogue at `url` and brings its schema up to date.
    ///
    /// `sqlite://PATH` (relative to the working directory; `sqlite:///abs/path` for an
    /// absolute one; `sqlite::memory:` for tests) creates the file and its directory if
    /// missing. `postgres://` / `postgresql://` connect to an existing database; the query
    /// parameter `options[search_path]=SCHEMA` puts the catalogue in its own schema.
    pub async fn connect(url: &str) -> Result<Catalogue, CatalogueError> {
        let shown = url::redact(url);
        let catalogue = match url::scheme(url) {
            Some(url::Scheme::Sqlite) => Self::connect_sqlite(url, &shown).await?,
            Some(url::Scheme::Postgres) => Self::connect_postgres(url, &shown).await?,
            None => return Err(CatalogueError::UnsupportedUrl { url: shown }),
        };
        info!(url = %catalogue.url, backend = ?catalogue.backend(), "Catalogue ready");
        Ok(catalogue)
    }

    async fn connect_sqlite(url: &str, shown: &str) -> Result<Catalogue, CatalogueError> {
        let invalid = |e: sqlx::Error| CatalogueError::InvalidUrl {
            url: shown.to_owned(),
            reason: url::scrub(&e.to_string(), url),
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(invalid)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed decision or session row survives a power cut too, not just
            // a crash of the process; commits are few (per session, not per packet).
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(SQLITE_BUSY_TIMEOUT)
            .foreign_keys(true);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory
            && let Some(dir) = options.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|source| CatalogueError::CreateDir {
                    path: dir.to_owned(),
                    source,
                })?;
        }
        let mut pool = SqlitePoolOptions::new().acquire_timeout(ACQUIRE_TIMEOUT);
        pool = if in_memory {
            // An in-memory database lives as long as its last connection: keep exactly one.
            pool.max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            pool.max_connections(SQLITE_MAX_CONNECTIONS)
        };
        let pool = pool
            .connect_with(options)
            .await
            .map_err(|e| CatalogueError::Connect {
                url: shown.to_owned(),
                reason: url::scrub(&e.to_string(), url),
            })?;
        SQLITE_MIGRATIONS
            .run(&pool)
            .await
            .map_err(CatalogueError::Migrate)?;
        Ok(Catalogue {
            backend: Backend::Sqlite(pool),
            url: shown.to_owned(),
        })
    }

    async fn connect_postgres(url: &str, shown: &str) -> Result<Catalogue, CatalogueError> {
        let mut options =
            PgConnectOptions::from_str(url).map_err(|e| CatalogueError::InvalidUrl {
                url: shown.to_owned(),
                reason: url::scrub(&e.to_string(), url),
            })?;
        // Unless the URL sets its own, bound every statement: a stuck lock or server must
        // turn into an error (deny) rather than a session set-up that hangs forever.
        if !url.contains("statement_timeout") {
            options = options.options([("statement_timeout", PG_STATEMENT_TIMEOUT)]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(PG_MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(|e| CatalogueError::Connect {
                url: shown.to_owned(),
                reason: url::scrub(&e.to_string(), url),
            })?;
        // Takes an advisory lock, so instances starting together migrate once.
        PG_MIGRATIONS
            .run(&pool)
            .await
            .map_err(CatalogueError::Migrate)?;
        Ok(Catalogue {
            backend: Backend::Postgres(pool),
            url: shown.to_owned(),
        })
    }

    /// Which backend this catalogue uses.
    pub fn backend(&self) -> BackendKind {
        match self.backend {
            Backend::Sqlite(_) => BackendKind::Sqlite,
            Backend::Postgres(_) => BackendKind::Postgres,
        }
    }

    /// The URL it was opened with, password redacted.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Waits for in-flight queries and closes every connection.
    pub async fn close(&self) {
        on_backend!(self, |pool| pool.close().await)
    }

    // ----- decisions -----

    /// Writes one decision; returns its new id.
    pub async fn record_decision(&self, d: &DecisionRecord) -> Result<DecisionId, CatalogueError> {
        let id = DecisionId::new_v7();
        let sql = "INSERT INTO decisions (id, at, instance_id, protocol, source, target, \
                   user_name, contractor, verdict, rule, reason, session_id, explanation) \
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
        let explanation = d
            .explanation
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| CatalogueError::corrupt("explanation", &e.to_string()))?;
        on_backend!(self, |pool| {
            sqlx::query(sql)
                .bind(id.to_string())
                .bind(Ts::new(d.at))
                .bind(d.instance.as_str().to_owned())
                .bind(d.protocol.to_string())
                .bind(d.source.to_string())
                .bind(opt_text(d.target.as_deref()))
                .bind(opt_text(d.user.as_deref()))
                .bind(opt_text(d.contractor.as_deref()))
                .bind(d.verdict.as_str())
                .bind(text(&d.rule))
                .bind(text(&d.reason))
                .bind(d.session_id.map(|s| s.to_string()))
                .bind(explanation.as_deref().map(text))
                .execute(pool)
                .await?;
        });
        Ok(id)
    }

    /// Decisions matching `filter`, newest first.
    pub async fn list_decisions(
        &self,
        filter: &DecisionFilter,
    ) -> Result<Vec<DecisionRow>, CatalogueError> {
        let mut w = Where::default();
        w.period("at", filter.since, filter.until);
        w.equals("user_name", filter.user.as_ref());
        w.equals("rule", filter.rule.as_ref());
        w.equals("target", filter.target.as_ref());
        w.equals("verdict", filter.verdict.map(|v| v.as_str()));
        let (sql, args) = w.finish(
            &format!("SELECT {DECISION_COLS} FROM decisions"),
            "at DESC, id DESC",
            filter.limit,
            filter.offset,
        )?;
        let raw: Vec<RawDecision> = on_backend!(self, |pool| {
            bind_args!(sqlx::query_as(AssertSqlSafe(sql)), args)
                .fetch_all(pool)
                .await?
        });
        raw.into_iter().map(RawDecision::parse).collect()
    }

    /// One decision by id.
    pub async fn get_decision(
        &self,
        id: DecisionId,
    ) -> Result<Option<DecisionRow>, CatalogueError> {
        let sql = AssertSqlSafe(format!(
            "SELECT {DECISION_COLS} FROM decisions WHERE id = $1"
        ));
        let raw: Option<RawDecision> = on_backend!(self, |pool| {
            sqlx::query_as(sql)
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        raw.map(RawDecision::parse).transpose()
    }

    /// Links the allow decision `decision` to the session it admitted (decisions are made
    /// before their session exists). A decision already linked is left as it is.
    pub async fn link_decision(
        &self,
        decision: DecisionId,
        session: SessionId,
    ) -> Result<(), CatalogueError> {
        on_backend!(self, |pool| {
            sqlx::query(
                "UPDATE decisions SET session_id = $1 WHERE id = $2 AND session_id IS NULL",
            )
            .bind(session.to_string())
            .bind(decision.to_string())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The decisions that admitted or refused `session` (and its re-decisions), oldest first.
    pub async fn decisions_of_session(
        &self,
        session: SessionId,
    ) -> Result<Vec<DecisionRow>, CatalogueError> {
        let sql = AssertSqlSafe(format!(
            "SELECT {DECISION_COLS} FROM decisions WHERE session_id = $1 ORDER BY at, id"
        ));
        let raw: Vec<RawDecision> = on_backend!(self, |pool| {
            sqlx::query_as(sql)
                .bind(session.to_string())
                .fetch_all(pool)
                .await?
        });
        raw.into_iter().map(RawDecision::parse).collect()
    }

    /// The `WHERE` clause of deny decisions matching `filter` (its limit and offset aside).
    fn denial_where(filter: &DenialFilter) -> Where {
        let mut w = Where::default();
        w.equals("verdict", Some(Verdict::Deny.as_str()));
        w.period("at", filter.since, filter.until);
        w.equals("user_name", filter.user.as_ref());
        w.starts_with("user_name", filter.user_prefix.as_ref());
        w.equals("rule", filter.rule.as_ref());
        if let Some(rules) = &filter.rules {
            if rules.is_empty() {
                // No rule asked for: nothing matches (not "any rule").
                w.raw("1 = 0");
            } else {
                let mut marks = Vec::with_capacity(rules.len());
                for r in rules {
                    w.args.push(Arg::Text(r.clone()));
                    marks.push(format!("${}", w.args.len()));
                }
                w.clauses.push(format!("rule IN ({})", marks.join(", ")));
            }
        }
        w.equals("contractor", filter.contractor.as_ref());
        w.starts_with("contractor", filter.contractor_prefix.as_ref());
        w.equals("target", filter.target.as_ref());
        w.starts_with("target", filter.target_prefix.as_ref());
        // Addresses are stored as `IpAddr`'s text, so the parsed address compares as text.
        w.equals("source", filter.source);
        w.starts_with("source", filter.source_prefix.as_ref());
        w.equals("protocol", filter.protocol);
        w
    }

    /// Deny decisions matching `filter`, newest first (`sekisho denials list`, the review
    /// dashboard).
    pub async fn list_denials(
        &self,
        filter: &DenialFilter,
    ) -> Result<Vec<DenialRow>, CatalogueError> {
        let (sql, args) = Self::denial_where(filter).finish(
            &format!("SELECT {DECISION_COLS} FROM decisions"),
            "at DESC, id DESC",
            filter.limit,
            filter.offset,
        )?;
        let raw: Vec<RawDecision> = on_backend!(self, |pool| {
            bind_args!(sqlx::query_as(AssertSqlSafe(sql)), args)
                .fetch_all(pool)
                .await?
        });
        raw.into_iter()
            .map(|r| RawDecision::parse(r).map(DenialRow::from))
            .collect()
    }

    /// How many deny decisions match `filter`, per rule id, by rule id (its `limit` and
    /// `offset` are ignored): the dashboard's counts for a period and the one before it,
    /// exact however many rows the list itself is capped at.
    pub async fn count_denials_by_rule(
        &self,
        filter: &DenialFilter,
    ) -> Result<Vec<(String, u64)>, CatalogueError> {
        let w = Self::denial_where(filter);
        let mut sql = "SELECT rule, COUNT(*) FROM decisions".to_owned();
        if !w.clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&w.clauses.join(" AND "));
        }
        sql.push_str(" GROUP BY rule ORDER BY rule");
        let args = w.args;
        let raw: Vec<(String, i64)> = on_backend!(self, |pool| {
            bind_args!(sqlx::query_as(AssertSqlSafe(sql)), args)
                .fetch_all(pool)
                .await?
        });
        raw.into_iter()
            .map(|(rule, n)| {
                u64::try_from(n)
                    .map(|n| (rule, n))
                    .map_err(|_| CatalogueError::corrupt("count", &n.to_string()))
            })
            .collect()
    }

    // ----- sessions -----

    /// Writes a new live session.
    pub async fn session_started(&self, s: &NewSession) -> Result<(), CatalogueError> {
        self.session_started_batch(std::slice::from_ref(s)).await
    }

    /// Writes many new sessions in one transaction (imports, tests): all or none.
    pub async fn session_started_batch(
        &self,
        sessions: &[NewSession],
    ) -> Result<(), CatalogueError> {
        on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            for chunk in sessions.chunks(BATCH_ROWS) {
                let sql = format!(
                    "{SESSION_INSERT}{}",
                    values_placeholders(chunk.len(), SESSION_INSERT_PARAMS)
                );
                let args = chunk.iter().flat_map(session_args);
                bind_args!(sqlx::query(AssertSqlSafe(sql)), args)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Records an event inside a session ("clipboard stripped", "sftp refused", ...), under
    /// the instance that runs the session.
    pub async fn session_event(
        &self,
        id: SessionId,
        at: DateTime<Utc>,
        kind: &str,
        detail: Option<&str>,
    ) -> Result<(), CatalogueError> {
        let done = on_backend!(self, |pool| {
            insert_session_event!(pool, id, at, kind, detail)
        });
        if done {
            Ok(())
        } else {
            Err(CatalogueError::UnknownSession(id))
        }
    }

    /// The events of one session, oldest first.
    pub async fn session_events(
        &self,
        id: SessionId,
    ) -> Result<Vec<SessionEventRow>, CatalogueError> {
        let sql = "SELECT id, session_id, at, kind, detail, instance_id FROM session_events \
                   WHERE session_id = $1 ORDER BY at, id";
        let raw: Vec<RawSessionEvent> = on_backend!(self, |pool| {
            sqlx::query_as(sql)
                .bind(id.to_string())
                .fetch_all(pool)
                .await?
        });
        raw.into_iter()
            .map(|r| {
                Ok(SessionEventRow {
                    id: r
                        .id
                        .parse()
                        .map_err(|_| CatalogueError::corrupt("session event id", &r.id))?,
                    session_id: parse_session_id(&r.session_id)?,
                    at: r.at.get(),
                    kind: r.kind,
                    detail: r.detail,
                    instance_id: parse_instance(&r.instance_id)?,
                })
            })
            .collect()
    }

    /// Ends a live session with `outcome` and, when given, its recording's final state.
    /// Without a summary, a recording still marked `live` becomes `incomplete`. Pending kill
    /// requests for the session count as handled.
    ///
    /// Returns `false` (and changes nothing) if the session had already ended, e.g. because
    /// it was marked interrupted.
    pub async fn session_ended(
        &self,
        id: SessionId,
        ended_at: DateTime<Utc>,
        outcome: Outcome,
        recording: Option<&RecordingSummary>,
    ) -> Result<bool, CatalogueError> {
        if outcome == Outcome::Live {
            return Err(CatalogueError::EndedLive);
        }
        let size = recording.map(|r| size_to_db(r.size)).transpose()?;
        let at = Ts::new(ended_at);
        let ended = on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            let done = match recording {
                Some(r) => sqlx::query(
                    "UPDATE sessions SET ended_at = $1, outcome = $2, recording = $3, \
                     recording_state = $4, recording_size = $5, recording_hash = $6 \
                     WHERE id = $7 AND ended_at IS NULL",
                )
                .bind(at)
                .bind(outcome.as_str())
                .bind(text(&r.location))
                .bind(r.state.as_str())
                .bind(size)
                .bind(opt_text(r.hash.as_deref()))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected(),
                None => sqlx::query(AssertSqlSafe(format!(
                    "UPDATE sessions SET ended_at = $1, outcome = $2, {RECORDING_CUT} \
                     WHERE id = $3 AND ended_at IS NULL"
                )))
                .bind(at)
                .bind(outcome.as_str())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected(),
            };
            if done > 0 {
                sqlx::query(
                    "UPDATE kill_requests SET handled_at = $1 \
                     WHERE session_id = $2 AND handled_at IS NULL",
                )
                .bind(at)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
                if let Some(r) = recording.filter(|r| r.state.is_signed()) {
                    append_recording_ledger!(
                        tx,
                        id,
                        crate::ledger::EntryKind::RecordingSealed,
                        &r.location,
                        r.hash.clone(),
                        Some(r.size),
                        None
                    );
                }
            }
            tx.commit().await?;
            done > 0
        });
        if !ended && self.get_session(id).await?.is_none() {
            return Err(CatalogueError::UnknownSession(id));
        }
        if ended {
            debug!(session = %id, %outcome, "Session ended in catalogue");
        }
        Ok(ended)
    }

    /// Sets where a session's recording is and what state it is in (e.g. `sealed` after
    /// recovery), live or not.
    pub async fn set_recording(
        &self,
        id: SessionId,
        recording: &RecordingSummary,
    ) -> Result<(), CatalogueError> {
        let size = size_to_db(recording.size)?;
        let n = on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE sessions SET recording = $1, recording_state = $2, recording_size = $3, \
                 recording_hash = $4 WHERE id = $5",
            )
            .bind(text(&recording.location))
            .bind(recording.state.as_str())
            .bind(size)
            .bind(opt_text(recording.hash.as_deref()))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 && recording.state.is_signed() {
                append_recording_ledger!(
                    tx,
                    id,
                    crate::ledger::EntryKind::RecordingSealed,
                    &recording.location,
                    recording.hash.clone(),
                    Some(recording.size),
                    None
                );
            }
            tx.commit().await?;
            n
        });
        if n == 0 {
            return Err(CatalogueError::UnknownSession(id));
        }
        Ok(())
    }

    fn session_where(filter: &SessionFilter) -> Where {
        let mut w = Where::default();
        w.period("started_at", filter.since, filter.until);
        w.equals("user_name", filter.user.as_ref());
        w.equals("contractor", filter.contractor.as_ref());
        w.equals("target", filter.target.as_ref());
        w.starts_with("user_name", filter.user_prefix.as_ref());
        w.starts_with("contractor", filter.contractor_prefix.as_ref());
        w.starts_with("target", filter.target_prefix.as_ref());
        w.equals("protocol", filter.protocol);
        match filter.outcome {
            // Live is "not ended": the partial index on live sessions answers it.
            Some(Outcome::Live) => w.raw("ended_at IS NULL"),
            o => w.equals("outcome", o.map(|o| o.as_str())),
        }
        w.equals("instance_id", filter.instance.as_ref().map(|i| i.as_str()));
        if let Some(c) = filter.after {
            // A row-value comparison in list order; both backends walk the
            // (started_at DESC, id DESC) index from there.
            w.args.push(Arg::Ts(Ts::new(c.started_at)));
            w.args.push(Arg::Text(c.id.to_string()));
            let n = w.args.len();
            w.clauses
                .push(format!("(started_at, id) < (${}, ${n})", n - 1));
        }
        w
    }

    /// Sessions matching `filter`, newest first (by start time, then id).
    pub async fn list_sessions(
        &self,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionRow>, CatalogueError> {
        let (sql, args) = Self::session_where(filter).finish(
            &format!("SELECT {SESSION_COLS} FROM sessions"),
            "started_at DESC, id DESC",
            filter.limit,
            filter.offset,
        )?;
        let raw: Vec<RawSession> = on_backend!(self, |pool| {
            bind_args!(sqlx::query_as(AssertSqlSafe(sql)), args)
                .fetch_all(pool)
                .await?
        });
        raw.into_iter().map(RawSession::parse).collect()
    }

    /// How many sessions match `filter` (its `limit` and `offset` are ignored).
    pub async fn count_sessions(&self, filter: &SessionFilter) -> Result<u64, CatalogueError> {
        let w = Self::session_where(filter);
        let mut sql = "SELECT COUNT(*) FROM sessions".to_owned();
        if !w.clauses.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&w.clauses.join(" AND "));
        }
        let args = w.args;
        let n: i64 = on_backend!(self, |pool| {
            bind_args!(sqlx::query_scalar(AssertSqlSafe(sql)), args)
                .fetch_one(pool)
                .await?
        });
        u64::try_from(n).map_err(|_| CatalogueError::corrupt("count", &n.to_string()))
    }

    /// One session by id.
    pub async fn get_session(&self, id: SessionId) -> Result<Option<SessionRow>, CatalogueError> {
        let sql = AssertSqlSafe(format!("SELECT {SESSION_COLS} FROM sessions WHERE id = $1"));
        let raw: Option<RawSession> = on_backend!(self, |pool| {
            sqlx::query_as(sql)
                .bind(id.to_string())
                .fetch_optional(pool)
                .await?
        });
        raw.map(RawSession::parse).transpose()
    }

    /// Every live console session (serial or VNC) of every instance: the policy engine's
    /// input for RDP hops from a server.
    ///
    /// Fail closed for shared catalogues: only consoles of an instance whose last
    /// [`heartbeat`](Catalogue::heartbeat) is at most [`STALE_INSTANCE_AFTER`] old count. A
    /// stale instance has probably died (its sessions are no longer watched or recorded), and
    /// an instance that never sent a heartbeat is not known to be running at all (`serve`
    /// writes its first heartbeat before it accepts a connection).
    pub async fn live_consoles(&self) -> Result<Vec<LiveConsole>, CatalogueError> {
        self.live_consoles_at(Utc::now()).await
    }

    /// [`live_consoles`](Catalogue::live_consoles) as of `now` (for tests and tools).
    pub async fn live_consoles_at(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Vec<LiveConsole>, CatalogueError> {
        let fresh_since = Ts::new(now - STALE_INSTANCE_AFTER);
        let sql = "SELECT s.id AS id, s.target AS target, s.user_name AS user_name, \
                   s.contractor AS contractor, s.access_path AS access_path \
                   FROM sessions s JOIN instances i ON i.instance_id = s.instance_id \
                   WHERE s.ended_at IS NULL AND s.protocol IN ('console-serial', 'console-vnc') \
                   AND i.last_seen >= $1 \
                   ORDER BY s.started_at, s.id";
        let raw: Vec<RawConsole> = on_backend!(self, |pool| {
            sqlx::query_as(sql)
                .bind(fresh_since)
                .fetch_all(pool)
                .await?
        });
        raw.into_iter()
            .map(|r| {
                Ok(LiveConsole {
                    session_id: parse_session_id(&r.id)?,
                    target: r.target,
                    user: r.user_name,
                    contractor: r.contractor,
                    path: r.access_path,
                })
            })
            .collect()
    }

    // ----- instances -----

    /// Records that `instance` is alive at `at` (call every [`HEARTBEAT_INTERVAL`] while
    /// serving). The first heartbeat registers the instance.
    pub async fn heartbeat(
        &self,
        instance: &InstanceId,
        at: DateTime<Utc>,
    ) -> Result<(), CatalogueError> {
        let at = Ts::new(at);
        on_backend!(self, |pool| {
            sqlx::query(
                "INSERT INTO instances (instance_id, started_at, last_seen) VALUES ($1, $2, $3) \
                 ON CONFLICT (instance_id) DO UPDATE SET last_seen = excluded.last_seen",
            )
            .bind(instance.as_str().to_owned())
            .bind(at)
            .bind(at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Every instance that ever sent a heartbeat, most recently seen first.
    pub async fn instances(&self) -> Result<Vec<InstanceRow>, CatalogueError> {
        let sql = "SELECT instance_id, started_at, last_seen FROM instances \
                   ORDER BY last_seen DESC, instance_id";
        let raw: Vec<RawInstance> =
            on_backend!(self, |pool| sqlx::query_as(sql).fetch_all(pool).await?);
        raw.into_iter()
            .map(|r| {
                Ok(InstanceRow {
                    instance_id: parse_instance(&r.instance_id)?,
                    started_at: r.started_at.get(),
                    last_seen: r.last_seen.get(),
                })
            })
            .collect()
    }

    /// The live sessions of one instance, oldest first (e.g. to find those a crash left
    /// behind, or to warn before a window closes).
    pub async fn live_sessions(
        &self,
        instance: &InstanceId,
    ) -> Result<Vec<SessionRow>, CatalogueError> {
        let sql = AssertSqlSafe(format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE ended_at IS NULL AND instance_id = $1 \
             ORDER BY started_at, id"
        ));
        let raw: Vec<RawSession> = on_backend!(self, |pool| {
            sqlx::query_as(sql)
                .bind(instance.as_str().to_owned())
                .fetch_all(pool)
                .await?
        });
        raw.into_iter().map(RawSession::parse).collect()
    }

    // ----- retention -----

    /// Sessions of `instance` (whose recordings are on its storage) that ended before
    /// `ended_before` and still have a recording to delete (any state but `deleted`), oldest
    /// first, at most `limit`. Live sessions are never returned, whatever their start time.
    pub async fn recordings_to_prune(
        &self,
        instance: &InstanceId,
        ended_before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<SessionRow>, CatalogueError> {
        let sql = AssertSqlSafe(format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE instance_id = $3 \
             AND ended_at IS NOT NULL AND ended_at < $1 AND recording IS NOT NULL \
             AND (recording_state IS NULL OR recording_state <> 'deleted') \
             ORDER BY ended_at, id LIMIT $2"
        ));
        let raw: Vec<RawSession> = on_backend!(self, |pool| {
            sqlx::query_as(sql)
                .bind(Ts::new(ended_before))
                .bind(i64::from(limit))
                .bind(instance.as_str().to_owned())
                .fetch_all(pool)
                .await?
        });
        raw.into_iter().map(RawSession::parse).collect()
    }

    /// Marks an ended session's recording deleted (by retention) and writes the audit event,
    /// in one transaction, so the catalogue never claims a deletion it has no event for.
    /// Returns `false` (and changes nothing) when the session is live, unknown or its
    /// recording already deleted.
    pub async fn recording_deleted(
        &self,
        id: SessionId,
        event: &AuditEvent,
    ) -> Result<bool, CatalogueError> {
        let event_id = AuditEventId::new_v7();
        let done = on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "UPDATE sessions SET recording_state = 'deleted' \
                 WHERE id = $1 AND ended_at IS NOT NULL \
                 AND (recording_state IS NULL OR recording_state <> 'deleted')",
            )
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                let (location, hash, size): (Option<String>, Option<String>, Option<i64>) =
                    sqlx::query_as(
                        "SELECT recording, recording_hash, recording_size FROM sessions \
                         WHERE id = $1",
                    )
                    .bind(id.to_string())
                    .fetch_one(&mut *tx)
                    .await?;
                append_recording_ledger!(
                    tx,
                    id,
                    crate::ledger::EntryKind::RecordingDeleted,
                    location.as_deref().unwrap_or_default(),
                    hash,
                    size.and_then(|s| u64::try_from(s).ok()),
                    Some(text(&format!(
                        "{}: {}",
                        event.kind,
                        event.detail.as_deref().unwrap_or_default()
                    )))
                );
                sqlx::query(
                    "INSERT INTO audit_events (id, at, instance_id, kind, detail, session_id) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(event_id.to_string())
                .bind(Ts::new(event.at))
                .bind(event.instance.as_str().to_owned())
                .bind(text(&event.kind))
                .bind(opt_text(event.detail.as_deref()))
                .bind(Some(id.to_string()))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            n > 0
        });
        Ok(done)
    }

    // ----- kills -----

    /// Asks the instance running session `id` to end it now. `by` says who asked (kept in
    /// the request and as a session event). Returns `false` if no such session is live.
    ///
    /// The instance sees the request through [`Catalogue::pending_kills`], which it polls.
    pub async fn request_kill(&self, id: SessionId, by: &str) -> Result<bool, CatalogueError> {
        self.request_kill_because(id, by, None).await
    }

    /// [`request_kill`](Catalogue::request_kill) with the reason the person gave (the web
    /// UI's emergency stop asks for one): the session event reads "BY: REASON", so the
    /// timeline and the audit trail say who stopped it and why.
    pub async fn request_kill_because(
        &self,
        id: SessionId,
        by: &str,
        reason: Option<&str>,
    ) -> Result<bool, CatalogueError> {
        let now = Ts::new(Utc::now());
        let detail = match reason.map(str::trim).filter(|r| !r.is_empty()) {
            Some(r) => format!("{by}: {r}"),
            None => by.to_owned(),
        };
        let requested = on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            let n = sqlx::query(
                "INSERT INTO kill_requests \
                 (id, session_id, instance_id, requested_at, requested_by) \
                 SELECT $1, id, instance_id, $2, $3 FROM sessions \
                 WHERE id = $4 AND ended_at IS NULL",
            )
            .bind(uuid::Uuid::now_v7().to_string())
            .bind(now)
            .bind(text(by))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if n > 0 {
                // The session row was just updated in this transaction, so it exists.
                let _ = insert_session_event!(
                    &mut *tx,
                    id,
                    now.get(),
                    event_kind::KILL_REQUESTED,
                    Some(detail.as_str())
                );
                tx.commit().await?;
            }
            n > 0
        });
        if requested {
            info!(session = %id, by, "Kill requested");
        }
        Ok(requested)
    }

    /// Sessions of `instance` with a kill request not yet handled.
    pub async fn pending_kills(
        &self,
        instance: &InstanceId,
    ) -> Result<Vec<SessionId>, CatalogueError> {
        let sql = "SELECT DISTINCT session_id FROM kill_requests \
                   WHERE instance_id = $1 AND handled_at IS NULL ORDER BY session_id";
        let raw: Vec<String> = on_backend!(self, |pool| {
            sqlx::query_scalar(sql)
                .bind(instance.as_str().to_owned())
                .fetch_all(pool)
                .await?
        });
        raw.iter().map(|s| parse_session_id(s)).collect()
    }

    /// Marks the kill requests for session `id` handled (the instance has acted on them).
    pub async fn kill_handled(&self, id: SessionId) -> Result<(), CatalogueError> {
        let now = Ts::new(Utc::now());
        on_backend!(self, |pool| {
            sqlx::query(
                "UPDATE kill_requests SET handled_at = $1 \
                 WHERE session_id = $2 AND handled_at IS NULL",
            )
            .bind(now)
            .bind(id.to_string())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    // ----- crash recovery -----

    /// Ends the selected live sessions as `interrupted` at `at` (their instance stopped
    /// while they ran): a recording still `live` becomes `incomplete`, each gets an
    /// "interrupted" event, and their kill requests count as handled. The caller decides
    /// which sessions are orphaned (its own at start-up, or ones whose recordings it sealed).
    ///
    /// Returns the sessions it changed; sessions already ended are left alone.
    pub async fn mark_interrupted(
        &self,
        which: Interrupted<'_>,
        at: DateTime<Utc>,
    ) -> Result<Vec<SessionId>, CatalogueError> {
        let at = Ts::new(at);
        let update = format!(
            "UPDATE sessions SET ended_at = $1, outcome = 'interrupted', {RECORDING_CUT} \
             WHERE ended_at IS NULL AND "
        );
        let marked: Vec<String> = on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            let mut marked: Vec<String> = Vec::new();
            match which {
                Interrupted::Instance(instance) => {
                    let sql = AssertSqlSafe(format!("{update}instance_id = $2 RETURNING id"));
                    marked = sqlx::query_scalar(sql)
                        .bind(at)
                        .bind(instance.as_str().to_owned())
                        .fetch_all(&mut *tx)
                        .await?;
                }
                Interrupted::Sessions(ids) => {
                    for id in ids {
                        let sql = AssertSqlSafe(format!("{update}id = $2 RETURNING id"));
                        let one: Option<String> = sqlx::query_scalar(sql)
                            .bind(at)
                            .bind(id.to_string())
                            .fetch_optional(&mut *tx)
                            .await?;
                        marked.extend(one);
                    }
                }
            }
            for raw in &marked {
                let id = parse_session_id(raw)?;
                // The session row was just updated in this transaction, so it exists.
                let _ =
                    insert_session_event!(&mut *tx, id, at.get(), event_kind::INTERRUPTED, None);
                sqlx::query(
                    "UPDATE kill_requests SET handled_at = $1 \
                     WHERE session_id = $2 AND handled_at IS NULL",
                )
                .bind(at)
                .bind(raw.as_str())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
            marked
        });
        let ids = marked
            .iter()
            .map(|s| parse_session_id(s))
            .collect::<Result<Vec<_>, _>>()?;
        if !ids.is_empty() {
            info!(count = ids.len(), "Sessions marked interrupted");
        }
        Ok(ids)
    }

    // ----- audit events -----

    /// Writes a catalogue-level event ("recording storage failed", "retention deleted", ...).
    pub async fn audit_event(&self, e: &AuditEvent) -> Result<AuditEventId, CatalogueError> {
        let id = AuditEventId::new_v7();
        on_backend!(self, |pool| {
            sqlx::query(
                "INSERT INTO audit_events (id, at, instance_id, kind, detail, session_id) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id.to_string())
            .bind(Ts::new(e.at))
            .bind(e.instance.as_str().to_owned())
            .bind(text(&e.kind))
            .bind(opt_text(e.detail.as_deref()))
            .bind(e.session_id.map(|s| s.to_string()))
            .execute(pool)
            .await?;
        });
        Ok(id)
    }

    /// Audit events matching `filter`, newest first.
    pub async fn list_audit_events(
        &self,
        filter: &AuditFilter,
    ) -> Result<Vec<AuditEventRow>, CatalogueError> {
        let mut w = Where::default();
        w.period("at", filter.since, None);
        w.equals("kind", filter.kind.as_ref());
        w.equals("instance_id", filter.instance.as_ref().map(|i| i.as_str()));
        let (sql, args) = w.finish(
            &format!("SELECT {AUDIT_COLS} FROM audit_events"),
            "at DESC, id DESC",
            filter.limit,
            filter.offset,
        )?;
        let raw: Vec<RawAudit> = on_backend!(self, |pool| {
            bind_args!(sqlx::query_as(AssertSqlSafe(sql)), args)
                .fetch_all(pool)
                .await?
        });
        raw.into_iter()
            .map(|r| {
                Ok(AuditEventRow {
                    id: r
                        .id
                        .parse()
                        .map_err(|_| CatalogueError::corrupt("audit event id", &r.id))?,
                    at: r.at.get(),
                    instance_id: parse_instance(&r.instance_id)?,
                    kind: r.kind,
                    detail: r.detail,
                    session_id: r.session_id.as_deref().map(parse_session_id).transpose()?,
                })
            })
            .collect()
    }
}
