//! The typed-text index of graphical sessions: the lines a contractor typed in an RDP or VNC
//! session, written once the session's recording is sealed, and searched by auditors across
//! sessions (case-insensitive substring, newest session first).
//!
//! The lines come from `player::typed`, which leaves out what was typed on logon screens;
//! this module only stores and searches them.

use chrono::{DateTime, Utc};
use policy::SessionId;
use sqlx::FromRow;

use super::ts::Ts;
use super::{Backend, Catalogue, CatalogueError, parse_protocol, parse_session_id};

/// Longest line stored, in characters (the decoder cuts lines at the same length).
pub const MAX_TYPED_LINE_CHARS: usize = 1024;
/// Lines stored per session at most (the decoder's own bound).
pub const MAX_TYPED_LINES: usize = 100_000;
/// Longest query accepted, in characters: a search names a word or a command, not a page.
pub const MAX_TYPED_QUERY_CHARS: usize = 200;
/// Hits returned by one search at most.
pub const MAX_TYPED_HITS: u32 = 500;

/// One line to index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedLineRow {
    /// When its first key was pressed, µs since the recording's start.
    pub at_us: u64,
    /// What was typed.
    pub text: String,
}

/// A search of the typed text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TypedTextQuery {
    /// Text to find, case-insensitive, anywhere in a line.
    pub text: String,
    /// Only sessions of this user.
    pub user: Option<String>,
    /// Only sessions to this target.
    pub target: Option<String>,
    /// Only this session.
    pub session: Option<SessionId>,
    /// Hits at most (capped by [`MAX_TYPED_HITS`]).
    pub limit: u32,
}

/// One line found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedTextHit {
    /// The session it was typed in.
    pub session: SessionId,
    /// The session's protocol.
    pub protocol: policy::Protocol,
    /// The session's user.
    pub user: String,
    /// The session's target.
    pub target: String,
    /// When the session started.
    pub started_at: DateTime<Utc>,
    /// When the line's first key was pressed, µs since the recording's start.
    pub at_us: u64,
    /// The line.
    pub text: String,
}

impl TypedTextHit {
    /// The wall-clock time of the line.
    pub fn at(&self) -> DateTime<Utc> {
        let us = i64::try_from(self.at_us).unwrap_or(i64::MAX);
        self.started_at + chrono::Duration::microseconds(us)
    }
}

/// The search, with the backend's substring function (`instr` in SQLite, `strpos` in
/// PostgreSQL, both `(haystack, needle)`): not `LIKE`, whose `%` and `_` would have to be
/// escaped in what auditors type.
macro_rules! search_sql {
    ($find:literal) => {
        concat!(
            "SELECT t.session_id, s.protocol, s.user_name, s.target, s.started_at, t.at_us, \
             t.text FROM typed_text t JOIN sessions s ON s.id = t.session_id WHERE ",
            $find,
            "(t.folded, $1) > 0 \
             AND ($2 IS NULL OR s.user_name = $2) \
             AND ($3 IS NULL OR s.target = $3) \
             AND ($4 IS NULL OR s.id = $4) \
             AND (s.recording_state IS NULL OR s.recording_state <> 'deleted') \
             ORDER BY s.started_at DESC, s.id DESC, t.at_us DESC, t.seq DESC LIMIT $5"
        )
    };
}
const SEARCH_SQLITE: &str = search_sql!("instr");
const SEARCH_POSTGRES: &str = search_sql!("strpos");

#[derive(FromRow)]
struct RawHit {
    session_id: String,
    protocol: String,
    user_name: String,
    target: String,
    started_at: Ts,
    at_us: i64,
    text: String,
}

/// Cuts `s` to [`MAX_TYPED_LINE_CHARS`] characters.
fn line(s: &str) -> String {
    s.chars().take(MAX_TYPED_LINE_CHARS).collect()
}

impl Catalogue {
    /// Replaces the typed text of `session` with `lines` (indexing twice keeps one copy).
    /// Returns the lines written.
    pub async fn index_typed_text(
        &self,
        session: SessionId,
        lines: &[TypedLineRow],
    ) -> Result<usize, CatalogueError> {
        let lines = lines.get(..MAX_TYPED_LINES).unwrap_or(lines);
        on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM typed_text WHERE session_id = $1")
                .bind(session.to_string())
                .execute(&mut *tx)
                .await?;
            for (seq, l) in lines.iter().enumerate() {
                let text = line(&l.text);
                sqlx::query(
                    "INSERT INTO typed_text (session_id, seq, at_us, text, folded) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(session.to_string())
                .bind(i64::try_from(seq).unwrap_or(i64::MAX))
                .bind(i64::try_from(l.at_us).unwrap_or(i64::MAX))
                .bind(&text)
                .bind(text.to_lowercase())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(lines.len())
    }

    /// Lines containing `q.text` (case-insensitive), newest session first and, within a
    /// session, latest line first. Sessions whose recording was deleted are left out: their
    /// hits could not be played. An empty query finds nothing.
    pub async fn search_typed_text(
        &self,
        q: &TypedTextQuery,
    ) -> Result<Vec<TypedTextHit>, CatalogueError> {
        let needle: String = q
            .text
            .chars()
            .take(MAX_TYPED_QUERY_CHARS)
            .collect::<String>()
            .to_lowercase();
        if needle.trim().is_empty() {
            return Ok(Vec::new());
        }
        let limit = i64::from(q.limit.min(MAX_TYPED_HITS));
        let rows: Vec<RawHit> = on_backend!(self, |pool| {
            sqlx::query_as(match &self.backend {
                Backend::Sqlite(_) => SEARCH_SQLITE,
                Backend::Postgres(_) => SEARCH_POSTGRES,
            })
            .bind(needle)
            .bind(q.user.clone())
            .bind(q.target.clone())
            .bind(q.session.map(|s| s.to_string()))
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(TypedTextHit {
                    session: parse_session_id(&r.session_id)?,
                    protocol: parse_protocol(&r.protocol)?,
                    user: r.user_name,
                    target: r.target,
                    started_at: r.started_at.get(),
                    at_us: u64::try_from(r.at_us).map_err(|_| {
                        CatalogueError::corrupt("typed text time", &r.at_us.to_string())
                    })?,
                    text: r.text,
                })
            })
            .collect()
    }
}
