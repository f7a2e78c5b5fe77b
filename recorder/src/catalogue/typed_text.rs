//! The text index of sessions, written once a session's recording is sealed and searched
//! across sessions (case-insensitive substring, newest session first): the lines a contractor
//! typed in an RDP or VNC session, and the commands run (also [`TextKind::Typed`]) and the
//! text lines shown ([`TextKind::Screen`]) in a terminal session.
//!
//! The lines come from `player::typed`, which leaves out what was typed on logon screens and
//! with echo off; this module only stores and searches them.

use chrono::{DateTime, Utc};
use policy::SessionId;
use sqlx::FromRow;

use super::ts::Ts;
use super::{Backend, Catalogue, CatalogueError, InstanceId, parse_protocol, parse_session_id};

/// Longest line stored, in characters (the decoder cuts lines at the same length).
pub const MAX_TYPED_LINE_CHARS: usize = 1024;
/// Lines stored per session at most (the decoder's own bound).
pub const MAX_TYPED_LINES: usize = 100_000;
/// Longest query accepted, in characters: a search names a word or a command, not a page.
pub const MAX_TYPED_QUERY_CHARS: usize = 200;
/// Hits returned by one search at most.
pub const MAX_TYPED_HITS: u32 = 500;

/// What a line of the index is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TextKind {
    /// Typed: a line typed in a graphical session, or a command run in a terminal session.
    Typed,
    /// Shown: a text line a terminal session printed.
    Screen,
}

impl TextKind {
    /// The stored name: `typed`, `screen`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TextKind::Typed => "typed",
            TextKind::Screen => "screen",
        }
    }

    fn parse(s: &str) -> Result<Self, CatalogueError> {
        match s {
            "typed" => Ok(TextKind::Typed),
            "screen" => Ok(TextKind::Screen),
            other => Err(CatalogueError::corrupt("typed text kind", other)),
        }
    }
}

/// One line to index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypedLineRow {
    /// When its first key was pressed, µs since the recording's start.
    pub at_us: u64,
    /// What was typed.
    pub text: String,
}

/// A search of the index across sessions (the Find page). Every filter is optional; all that
/// are given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TextQuery {
    /// Text to find, case-insensitive, anywhere in a line.
    pub text: String,
    /// Only sessions of this user.
    pub user: Option<String>,
    /// Only sessions of this user's contractor.
    pub contractor: Option<String>,
    /// Only sessions to this target.
    pub target: Option<String>,
    /// Only sessions of this protocol.
    pub protocol: Option<policy::Protocol>,
    /// Only terminal sessions (`Some(true)`: SSH, serial console) or only graphical ones.
    pub terminal: Option<bool>,
    /// Only lines of this kind.
    pub kind: Option<TextKind>,
    /// Only lines at or after this moment.
    pub since: Option<DateTime<Utc>>,
    /// Only lines before this moment.
    pub until: Option<DateTime<Utc>>,
    /// Only this session.
    pub session: Option<SessionId>,
    /// Hits at most (capped by [`MAX_TYPED_HITS`]).
    pub limit: u32,
}

impl From<&TypedTextQuery> for TextQuery {
    fn from(q: &TypedTextQuery) -> Self {
        TextQuery {
            text: q.text.clone(),
            user: q.user.clone(),
            target: q.target.clone(),
            session: q.session,
            limit: q.limit,
            kind: Some(TextKind::Typed),
            ..TextQuery::default()
        }
    }
}

/// A search of the typed text (lines typed, commands run).
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
    /// The session's contractor.
    pub contractor: String,
    /// The session's target.
    pub target: String,
    /// When the session started.
    pub started_at: DateTime<Utc>,
    /// When the line's first key was pressed (or, on screen, began to appear), µs since the
    /// recording's start.
    pub at_us: u64,
    /// Typed or shown.
    pub kind: TextKind,
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
/// escaped in what auditors type. The period is checked here against the session (it must
/// overlap it) and, exactly, against each line's own time in [`Catalogue::search_text`]: a
/// line's wall-clock time is its session's start plus its offset, which the two backends
/// cannot add alike.
macro_rules! search_sql {
    ($find:literal) => {
        concat!(
            "SELECT t.session_id, s.protocol, s.user_name, s.contractor, s.target, s.started_at, \
             t.at_us, t.kind, t.text FROM typed_text t JOIN sessions s ON s.id = t.session_id \
             WHERE ",
            $find,
            "(t.folded, $1) > 0 \
             AND ($2 IS NULL OR s.user_name = $2) \
             AND ($3 IS NULL OR s.target = $3) \
             AND ($4 IS NULL OR s.id = $4) \
             AND ($5 IS NULL OR s.contractor = $5) \
             AND ($6 IS NULL OR s.protocol = $6) \
             AND ($7 IS NULL OR (s.protocol IN ('ssh', 'console-serial')) = $7) \
             AND ($8 IS NULL OR t.kind = $8) \
             AND ($9 IS NULL OR s.ended_at IS NULL OR s.ended_at >= $9) \
             AND ($10 IS NULL OR s.started_at < $10) \
             AND (s.recording_state IS NULL OR s.recording_state <> 'deleted') \
             ORDER BY s.started_at DESC, s.id DESC, t.at_us DESC, t.seq DESC LIMIT $11"
        )
    };
}
const SEARCH_SQLITE: &str = search_sql!("instr");
const SEARCH_POSTGRES: &str = search_sql!("strpos");

/// One session's lines of one kind, in time order.
const SESSION_LINES: &str = "SELECT at_us, text FROM typed_text WHERE session_id = $1 \
     AND kind = $2 ORDER BY at_us, seq LIMIT $3";

#[derive(FromRow)]
struct RawHit {
    session_id: String,
    protocol: String,
    user_name: String,
    contractor: String,
    target: String,
    started_at: Ts,
    at_us: i64,
    kind: String,
    text: String,
}

/// Terminal sessions of one instance whose sealed recording has no line in the index.
const UNINDEXED_TERMINAL: &str = "SELECT s.id, s.recording FROM sessions s \
     WHERE s.instance_id = $1 AND s.protocol IN ('ssh', 'console-serial') \
     AND s.recording IS NOT NULL AND s.recording_state IN ('complete', 'sealed') \
     AND NOT EXISTS (SELECT 1 FROM typed_text t WHERE t.session_id = s.id) \
     ORDER BY s.started_at, s.id LIMIT $2";

#[derive(FromRow)]
struct RawUnindexed {
    id: String,
    recording: String,
}

#[derive(FromRow)]
struct RawLine {
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
        self.index_text(session, lines, &[]).await
    }

    /// Replaces the index of `session` with `typed` lines (typed, or commands run) and
    /// `screen` lines (shown); indexing twice keeps one copy. At most [`MAX_TYPED_LINES`] in
    /// all, typed lines first (they are fewer and matter more). Returns the lines written.
    pub async fn index_text(
        &self,
        session: SessionId,
        typed: &[TypedLineRow],
        screen: &[TypedLineRow],
    ) -> Result<usize, CatalogueError> {
        let typed = typed.get(..MAX_TYPED_LINES).unwrap_or(typed);
        let room = MAX_TYPED_LINES - typed.len();
        let screen = screen.get(..room).unwrap_or(screen);
        let lines = typed
            .iter()
            .map(|l| (TextKind::Typed, l))
            .chain(screen.iter().map(|l| (TextKind::Screen, l)));
        on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM typed_text WHERE session_id = $1")
                .bind(session.to_string())
                .execute(&mut *tx)
                .await?;
            for (seq, (kind, l)) in lines.clone().enumerate() {
                let text = line(&l.text);
                sqlx::query(
                    "INSERT INTO typed_text (session_id, seq, at_us, text, folded, kind) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(session.to_string())
                .bind(i64::try_from(seq).unwrap_or(i64::MAX))
                .bind(i64::try_from(l.at_us).unwrap_or(i64::MAX))
                .bind(&text)
                .bind(text.to_lowercase())
                .bind(kind.as_str())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(typed.len() + screen.len())
    }

    /// The lines of `kind` indexed for `session`, in time order, at most `limit` (capped by
    /// [`MAX_TYPED_LINES`]): a terminal session's commands for its page.
    pub async fn session_text(
        &self,
        session: SessionId,
        kind: TextKind,
        limit: u32,
    ) -> Result<Vec<TypedLineRow>, CatalogueError> {
        let limit = i64::from(limit).min(i64::try_from(MAX_TYPED_LINES).unwrap_or(i64::MAX));
        let rows: Vec<RawLine> = on_backend!(self, |pool| {
            sqlx::query_as(SESSION_LINES)
                .bind(session.to_string())
                .bind(kind.as_str())
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|r| {
                Ok(TypedLineRow {
                    at_us: u64::try_from(r.at_us).map_err(|_| {
                        CatalogueError::corrupt("typed text time", &r.at_us.to_string())
                    })?,
                    text: r.text,
                })
            })
            .collect()
    }

    /// Terminal sessions that `instance` ran whose sealed recording has no line in the index
    /// (sealed before terminal sessions were indexed, migration 0012; or whose indexing
    /// failed), oldest first, at most `limit`: (session, recording location).
    pub async fn unindexed_terminal_sessions(
        &self,
        instance: &InstanceId,
        limit: u32,
    ) -> Result<Vec<(SessionId, String)>, CatalogueError> {
        let rows: Vec<RawUnindexed> = on_backend!(self, |pool| {
            sqlx::query_as(UNINDEXED_TERMINAL)
                .bind(instance.as_str())
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|r| Ok((parse_session_id(&r.id)?, r.recording)))
            .collect()
    }

    /// Typed lines containing `q.text` (case-insensitive), newest session first and, within a
    /// session, latest line first (see [`Catalogue::search_text`]).
    pub async fn search_typed_text(
        &self,
        q: &TypedTextQuery,
    ) -> Result<Vec<TypedTextHit>, CatalogueError> {
        self.search_text(&TextQuery::from(q)).await
    }

    /// Lines containing `q.text` (case-insensitive) that pass every filter of `q`, newest
    /// session first and, within a session, latest line first. Sessions whose recording was
    /// deleted are left out: their hits could not be played. An empty query finds nothing.
    /// The limit applies before the exact period check, so a period may return fewer.
    pub async fn search_text(&self, q: &TextQuery) -> Result<Vec<TypedTextHit>, CatalogueError> {
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
            .bind(q.contractor.clone())
            .bind(q.protocol.map(|p| p.as_str()))
            .bind(q.terminal)
            .bind(q.kind.map(TextKind::as_str))
            .bind(q.since.map(Ts::new))
            .bind(q.until.map(Ts::new))
            .bind(limit)
            .fetch_all(pool)
            .await?
        });
        let hits = rows
            .into_iter()
            .map(|r| {
                Ok(TypedTextHit {
                    session: parse_session_id(&r.session_id)?,
                    protocol: parse_protocol(&r.protocol)?,
                    user: r.user_name,
                    contractor: r.contractor,
                    target: r.target,
                    started_at: r.started_at.get(),
                    at_us: u64::try_from(r.at_us).map_err(|_| {
                        CatalogueError::corrupt("typed text time", &r.at_us.to_string())
                    })?,
                    kind: TextKind::parse(&r.kind)?,
                    text: r.text,
                })
            })
            .collect::<Result<Vec<_>, CatalogueError>>()?;
        Ok(hits
            .into_iter()
            .filter(|h| q.since.is_none_or(|t| h.at() >= t) && q.until.is_none_or(|t| h.at() < t))
            .collect())
    }
}
