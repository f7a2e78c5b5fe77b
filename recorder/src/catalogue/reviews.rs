//! Reviews of denials and of policy events: security staff close the loop on each refused
//! connection, and on each time the policy acted inside an allowed session (a channel
//! stripped, a transfer refused), with a disposition (expected, mistake, incident) and a
//! comment.
//!
//! A review is written with an audit event and a ledger row in one transaction, so what was
//! concluded, by whom and when cannot be changed afterwards without the ledger saying so. A
//! subject may be reviewed again; the newest review stands, the older ones remain history.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;

use super::ts::Ts;
use super::{
    AssertSqlSafe, AuditEventId, Backend, Catalogue, CatalogueError, DecisionId, Disposition,
    InstanceId, PolicyEventRow, ReviewId, SessionEventId, event_kind, parse_ip, parse_protocol,
    parse_session_id, size_to_db, text,
};
use crate::ledger::{EntryContent, EntryKind};

/// Longest review comment kept (characters); longer ones are cut.
pub const MAX_COMMENT_LEN: usize = 2000;

/// The subject kind of a denial in the `reviews` table.
const DECISION: &str = "decision";
/// The subject kind of a policy event (a row of `session_events`) in the `reviews` table.
const SESSION_EVENT: &str = "session_event";

/// What a review concludes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum ReviewSubject {
    /// A denial (a deny decision).
    Denial(DecisionId),
    /// A policy event inside a session (one of [`event_kind::REVIEWABLE`]).
    PolicyEvent(SessionEventId),
}

impl ReviewSubject {
    fn kind(self) -> &'static str {
        match self {
            ReviewSubject::Denial(_) => DECISION,
            ReviewSubject::PolicyEvent(_) => SESSION_EVENT,
        }
    }

    /// The subject's own id (a decision's or a session event's), as text.
    pub fn id(self) -> String {
        match self {
            ReviewSubject::Denial(id) => id.to_string(),
            ReviewSubject::PolicyEvent(id) => id.to_string(),
        }
    }

    fn parse(kind: &str, id: &str) -> Result<ReviewSubject, CatalogueError> {
        let corrupt = || CatalogueError::corrupt("review subject", &format!("{kind} {id}"));
        match kind {
            DECISION => id.parse().map(ReviewSubject::Denial).map_err(|_| corrupt()),
            SESSION_EVENT => id
                .parse()
                .map(ReviewSubject::PolicyEvent)
                .map_err(|_| corrupt()),
            _ => Err(corrupt()),
        }
    }
}

/// A review to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReview {
    /// The denial or policy event reviewed.
    pub subject: ReviewSubject,
    /// The conclusion.
    pub disposition: Disposition,
    /// Why, in the reviewer's words.
    pub comment: Option<String>,
    /// Who reviewed (a Sekisho user with the security or admin role).
    pub reviewer: String,
    /// When.
    pub at: DateTime<Utc>,
    /// The instance writing it.
    pub instance: InstanceId,
}

/// A stored review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewRow {
    /// Its id.
    pub id: ReviewId,
    /// The denial or policy event reviewed.
    pub subject: ReviewSubject,
    /// The conclusion.
    pub disposition: Disposition,
    /// The comment.
    pub comment: Option<String>,
    /// Who.
    pub reviewer: String,
    /// When.
    pub at: DateTime<Utc>,
}

#[derive(FromRow)]
struct RawReview {
    id: String,
    subject_kind: String,
    subject_id: String,
    disposition: String,
    comment: Option<String>,
    reviewer: String,
    at: Ts,
}

impl RawReview {
    fn parse(self) -> Result<ReviewRow, CatalogueError> {
        Ok(ReviewRow {
            id: self
                .id
                .parse()
                .map_err(|_| CatalogueError::corrupt("review id", &self.id))?,
            subject: ReviewSubject::parse(&self.subject_kind, &self.subject_id)?,
            disposition: self
                .disposition
                .parse()
                .map_err(|_| CatalogueError::corrupt("disposition", &self.disposition))?,
            comment: self.comment,
            reviewer: self.reviewer,
            at: self.at.get(),
        })
    }
}

fn cut(comment: &str) -> String {
    let trimmed = comment.trim();
    if trimmed.chars().count() <= MAX_COMMENT_LEN {
        return trimmed.to_owned();
    }
    let mut out: String = trimmed.chars().take(MAX_COMMENT_LEN - 1).collect();
    out.push('…');
    out
}

/// What a review is about, as the audit event and the ledger row say it.
struct Reviewed {
    /// "denial 0190… (rule of user from source to target)".
    what: String,
    session_id: Option<policy::SessionId>,
}

#[derive(FromRow)]
struct RawPolicyEvent {
    id: String,
    session_id: String,
    at: Ts,
    kind: String,
    detail: Option<String>,
    protocol: String,
    user_name: String,
    contractor: String,
    source: String,
    target: String,
}

impl RawPolicyEvent {
    fn parse(self) -> Result<PolicyEventRow, CatalogueError> {
        Ok(PolicyEventRow {
            id: self
                .id
                .parse()
                .map_err(|_| CatalogueError::corrupt("session event id", &self.id))?,
            session_id: parse_session_id(&self.session_id)?,
            at: self.at.get(),
            kind: self.kind,
            detail: self.detail,
            protocol: parse_protocol(&self.protocol)?,
            user: self.user_name,
            contractor: self.contractor,
            source: parse_ip(&self.source)?,
            target: self.target,
        })
    }
}

const POLICY_EVENT_COLS: &str = "e.id AS id, e.session_id AS session_id, e.at AS at, \
     e.kind AS kind, e.detail AS detail, s.protocol AS protocol, s.user_name AS user_name, \
     s.contractor AS contractor, s.source AS source, s.target AS target";

/// `$first, $first+1, …` for the reviewable kinds.
fn reviewable_placeholders(first: usize) -> String {
    (first..first + event_kind::REVIEWABLE.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Catalogue {
    /// Writes a review of a denial or a policy event, with its audit event and ledger row.
    /// Returns `None` when the subject does not exist, or is not reviewable (an allow
    /// decision, a session event that is not a policy event).
    pub async fn add_review(&self, r: &NewReview) -> Result<Option<ReviewId>, CatalogueError> {
        let Some(reviewed) = self.reviewed(r.subject).await? else {
            return Ok(None);
        };
        let id = ReviewId::new_v7();
        let comment = r.comment.as_deref().map(cut).filter(|c| !c.is_empty());
        let at = Ts::new(r.at);
        let detail = text(&format!(
            "{} reviewed by {}: {}{}",
            reviewed.what,
            r.reviewer,
            r.disposition,
            comment
                .as_deref()
                .map(|c| format!(": {c}"))
                .unwrap_or_default()
        ));
        let content = EntryContent {
            at: at.get(),
            instance: r.instance.as_str().to_owned(),
            kind: EntryKind::Review,
            session_id: reviewed.session_id.map(|s| s.0),
            location: None,
            recording_hash: None,
            size: None,
            started_at: None,
            ended_at: None,
            signer: None,
            detail: Some(detail.clone()),
        };
        on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO reviews (id, subject_kind, subject_id, disposition, comment, \
                 reviewer, at, instance_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(id.to_string())
            .bind(r.subject.kind())
            .bind(r.subject.id())
            .bind(r.disposition.as_str())
            .bind(comment.clone())
            .bind(text(&r.reviewer))
            .bind(at)
            .bind(r.instance.as_str().to_owned())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO audit_events (id, at, instance_id, kind, detail, session_id) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(AuditEventId::new_v7().to_string())
            .bind(at)
            .bind(r.instance.as_str().to_owned())
            .bind(super::event_kind::REVIEW)
            .bind(Some(detail.clone()))
            .bind(reviewed.session_id.map(|s| s.to_string()))
            .execute(&mut *tx)
            .await?;
            append_ledger!(tx, content.clone());
            tx.commit().await?;
        });
        Ok(Some(id))
    }

    /// The subject of a review, described; `None` if it does not exist or is not reviewable.
    async fn reviewed(&self, subject: ReviewSubject) -> Result<Option<Reviewed>, CatalogueError> {
        match subject {
            ReviewSubject::Denial(id) => {
                let Some(d) = self.get_decision(id).await? else {
                    return Ok(None);
                };
                if d.verdict != super::Verdict::Deny {
                    return Ok(None);
                }
                Ok(Some(Reviewed {
                    what: format!(
                        "denial {id} ({} of {} from {} to {})",
                        d.rule,
                        d.user.as_deref().unwrap_or("an unknown user"),
                        d.source,
                        d.target.as_deref().unwrap_or("-"),
                    ),
                    session_id: d.session_id,
                }))
            }
            ReviewSubject::PolicyEvent(id) => {
                let Some(e) = self.policy_event(id).await? else {
                    return Ok(None);
                };
                Ok(Some(Reviewed {
                    what: format!(
                        "policy event {id} ({} in session {} of {} from {} to {}: {})",
                        e.kind,
                        e.session_id,
                        e.user,
                        e.source,
                        e.target,
                        e.detail.as_deref().unwrap_or("-"),
                    ),
                    session_id: Some(e.session_id),
                }))
            }
        }
    }

    /// One policy event by id; `None` if there is none, or the event is not a policy event.
    pub async fn policy_event(
        &self,
        id: SessionEventId,
    ) -> Result<Option<PolicyEventRow>, CatalogueError> {
        let sql = AssertSqlSafe(format!(
            "SELECT {POLICY_EVENT_COLS} FROM session_events e JOIN sessions s \
             ON s.id = e.session_id WHERE e.id = $1 AND e.kind IN ({})",
            reviewable_placeholders(2)
        ));
        let raw: Option<RawPolicyEvent> = on_backend!(self, |pool| {
            let mut q = sqlx::query_as(sql).bind(id.to_string());
            for kind in event_kind::REVIEWABLE {
                q = q.bind(*kind);
            }
            q.fetch_optional(pool).await?
        });
        raw.map(RawPolicyEvent::parse).transpose()
    }

    /// The policy events at or after `since`, newest first, at most `limit`.
    pub async fn policy_events(
        &self,
        since: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<PolicyEventRow>, CatalogueError> {
        let sql = AssertSqlSafe(format!(
            "SELECT {POLICY_EVENT_COLS} FROM session_events e JOIN sessions s \
             ON s.id = e.session_id WHERE e.at >= $1 AND e.kind IN ({}) \
             ORDER BY e.at DESC, e.id DESC LIMIT {}",
            reviewable_placeholders(2),
            limit.min(super::MAX_PAGE)
        ));
        let raw: Vec<RawPolicyEvent> = on_backend!(self, |pool| {
            let mut q = sqlx::query_as(sql).bind(Ts::new(since));
            for kind in event_kind::REVIEWABLE {
                q = q.bind(*kind);
            }
            q.fetch_all(pool).await?
        });
        raw.into_iter().map(RawPolicyEvent::parse).collect()
    }

    /// The newest review of each denial and each policy event at or after `since`.
    pub async fn latest_reviews(
        &self,
        since: DateTime<Utc>,
    ) -> Result<HashMap<ReviewSubject, ReviewRow>, CatalogueError> {
        let sql = "SELECT r.id AS id, r.subject_kind AS subject_kind, r.subject_id AS subject_id, \
                   r.disposition AS disposition, r.comment AS comment, r.reviewer AS reviewer, \
                   r.at AS at FROM reviews r WHERE (r.subject_kind = $1 AND r.subject_id IN \
                   (SELECT id FROM decisions WHERE at >= $3)) OR (r.subject_kind = $2 AND \
                   r.subject_id IN (SELECT id FROM session_events WHERE at >= $3)) \
                   ORDER BY r.at, r.id";
        let raw: Vec<RawReview> = on_backend!(self, |pool| {
            sqlx::query_as(sql)
                .bind(DECISION)
                .bind(SESSION_EVENT)
                .bind(Ts::new(since))
                .fetch_all(pool)
                .await?
        });
        let mut out = HashMap::new();
        for r in raw {
            let r = r.parse()?;
            // Ordered by time: a later review replaces an earlier one.
            out.insert(r.subject, r);
        }
        Ok(out)
    }

    /// Every review of one subject, oldest first.
    pub async fn reviews_of(
        &self,
        subject: ReviewSubject,
    ) -> Result<Vec<ReviewRow>, CatalogueError> {
        let raw: Vec<RawReview> = on_backend!(self, |pool| {
            sqlx::query_as(
                "SELECT id, subject_kind, subject_id, disposition, comment, reviewer, at \
                 FROM reviews WHERE subject_kind = $1 AND subject_id = $2 ORDER BY at, id",
            )
            .bind(subject.kind())
            .bind(subject.id())
            .fetch_all(pool)
            .await?
        });
        raw.into_iter().map(RawReview::parse).collect()
    }
}
