//! Reviews of denials: security staff close the loop on each denial with a disposition
//! (expected, mistake, incident) and a comment.
//!
//! A review is written with an audit event and a ledger row in one transaction, so what was
//! concluded, by whom and when cannot be changed afterwards without the ledger saying so. A
//! denial may be reviewed again; the newest review stands, the older ones remain history.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::FromRow;

use super::ts::Ts;
use super::{
    AuditEventId, Backend, Catalogue, CatalogueError, DecisionId, Disposition, InstanceId,
    ReviewId, size_to_db, text,
};
use crate::ledger::{EntryContent, EntryKind};

/// Longest review comment kept (characters); longer ones are cut.
pub const MAX_COMMENT_LEN: usize = 2000;

/// The subject kind of a denial in the `reviews` table.
const DECISION: &str = "decision";

/// A review to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReview {
    /// The denial reviewed.
    pub decision: DecisionId,
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
    /// The denial reviewed.
    pub decision: DecisionId,
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
            decision: self
                .subject_id
                .parse()
                .map_err(|_| CatalogueError::corrupt("decision id", &self.subject_id))?,
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

impl Catalogue {
    /// Writes a review of a denial, with its audit event and ledger row. Returns `None` when
    /// the decision does not exist or was not a denial.
    pub async fn add_review(&self, r: &NewReview) -> Result<Option<ReviewId>, CatalogueError> {
        let Some(decision) = self.get_decision(r.decision).await? else {
            return Ok(None);
        };
        if decision.verdict != super::Verdict::Deny {
            return Ok(None);
        }
        let id = ReviewId::new_v7();
        let comment = r.comment.as_deref().map(cut).filter(|c| !c.is_empty());
        let at = Ts::new(r.at);
        let detail = text(&format!(
            "denial {} ({} of {} from {} to {}) reviewed by {}: {}{}",
            r.decision,
            decision.rule,
            decision.user.as_deref().unwrap_or("an unknown user"),
            decision.source,
            decision.target.as_deref().unwrap_or("-"),
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
            session_id: decision.session_id.map(|s| s.0),
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
            .bind(DECISION)
            .bind(r.decision.to_string())
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
            .bind(decision.session_id.map(|s| s.to_string()))
            .execute(&mut *tx)
            .await?;
            append_ledger!(tx, content.clone());
            tx.commit().await?;
        });
        Ok(Some(id))
    }

    /// The newest review of each denial decided at or after `since`, by decision.
    pub async fn latest_reviews(
        &self,
        since: DateTime<Utc>,
    ) -> Result<HashMap<DecisionId, ReviewRow>, CatalogueError> {
        let raw: Vec<RawReview> = on_backend!(self, |pool| {
            sqlx::query_as(
                "SELECT r.id AS id, r.subject_id AS subject_id, r.disposition AS disposition, \
                 r.comment AS comment, r.reviewer AS reviewer, r.at AS at \
                 FROM reviews r JOIN decisions d ON d.id = r.subject_id \
                 WHERE r.subject_kind = $1 AND d.at >= $2 ORDER BY r.at, r.id",
            )
            .bind(DECISION)
            .bind(Ts::new(since))
            .fetch_all(pool)
            .await?
        });
        let mut out = HashMap::new();
        for r in raw {
            let r = r.parse()?;
            // Ordered by time: a later review replaces an earlier one.
            out.insert(r.decision, r);
        }
        Ok(out)
    }

    /// Every review of one denial, oldest first.
    pub async fn reviews_of(&self, decision: DecisionId) -> Result<Vec<ReviewRow>, CatalogueError> {
        let raw: Vec<RawReview> = on_backend!(self, |pool| {
            sqlx::query_as(
                "SELECT id, subject_id, disposition, comment, reviewer, at FROM reviews \
                 WHERE subject_kind = $1 AND subject_id = $2 ORDER BY at, id",
            )
            .bind(DECISION)
            .bind(decision.to_string())
            .fetch_all(pool)
            .await?
        });
        raw.into_iter().map(RawReview::parse).collect()
    }
}
