//! Authentication events shared by the instances of one catalogue (see the migration
//! `0008_auth_events.sql`): each instance writes what its doors saw and reads what the others
//! saw, so the failed-logon throttle and the matrix card passes hold across instances.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::ts::Ts;
use super::{Backend, Catalogue, CatalogueError, InstanceId, text};

/// What happened at a door.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DoorEventKind {
    /// A failed logon (wrong password, key or card answer).
    Failure,
    /// A successful logon (the user's failures are forgotten).
    Success,
    /// The matrix card was passed from `source`.
    CardPass,
    /// The user logged out of the web UI (their card passes end).
    Logout,
}

impl DoorEventKind {
    const fn as_str(self) -> &'static str {
        match self {
            DoorEventKind::Failure => "failure",
            DoorEventKind::Success => "success",
            DoorEventKind::CardPass => "card-pass",
            DoorEventKind::Logout => "logout",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "failure" => DoorEventKind::Failure,
            "success" => DoorEventKind::Success,
            "card-pass" => DoorEventKind::CardPass,
            "logout" => DoorEventKind::Logout,
            _ => return None,
        })
    }
}

/// One event, to write or as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoorEvent {
    /// Its id (a UUIDv7), unique across instances.
    pub id: uuid::Uuid,
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    pub kind: DoorEventKind,
    /// The user name given (for a failure, whatever was typed).
    pub user: String,
    /// The client's address.
    pub source: Option<IpAddr>,
}

#[derive(FromRow)]
struct RawDoorEvent {
    id: String,
    at: Ts,
    kind: String,
    user_name: String,
    source: Option<String>,
}

/// Most events one read returns; the rest come on the next read.
const MAX_READ: i64 = 10_000;

impl Catalogue {
    /// Writes `events`, seen by `instance`, in one transaction.
    pub async fn write_door_events(
        &self,
        instance: &InstanceId,
        events: &[DoorEvent],
    ) -> Result<(), CatalogueError> {
        if events.is_empty() {
            return Ok(());
        }
        on_backend!(self, |pool| {
            let mut tx = pool.begin().await?;
            for e in events {
                sqlx::query(
                    "INSERT INTO auth_events (id, at, instance_id, kind, user_name, source) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(e.id.to_string())
                .bind(Ts::new(e.at))
                .bind(instance.as_str().to_owned())
                .bind(e.kind.as_str())
                .bind(text(&e.user))
                .bind(e.source.map(|s| s.to_string()))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Events other instances than `me` wrote after `since`, oldest first (at most 10 000).
    pub async fn door_events_since(
        &self,
        me: &InstanceId,
        since: DateTime<Utc>,
    ) -> Result<Vec<DoorEvent>, CatalogueError> {
        let raw: Vec<RawDoorEvent> = on_backend!(self, |pool| {
            sqlx::query_as(
                "SELECT id, at, kind, user_name, source FROM auth_events \
                 WHERE instance_id <> $1 AND at > $2 ORDER BY at, id LIMIT $3",
            )
            .bind(me.as_str().to_owned())
            .bind(Ts::new(since))
            .bind(MAX_READ)
            .fetch_all(pool)
            .await?
        });
        raw.into_iter()
            .map(|r| {
                Ok(DoorEvent {
                    id: r
                        .id
                        .parse()
                        .map_err(|_| CatalogueError::corrupt("auth event id", &r.id))?,
                    at: r.at.get(),
                    kind: DoorEventKind::parse(&r.kind)
                        .ok_or_else(|| CatalogueError::corrupt("auth event kind", &r.kind))?,
                    user: r.user_name,
                    source: r.source.and_then(|s| s.parse().ok()),
                })
            })
            .collect()
    }

    /// Deletes events older than `before` (they can no longer start a lockout or count as a
    /// card pass). Returns how many.
    pub async fn prune_door_events(&self, before: DateTime<Utc>) -> Result<u64, CatalogueError> {
        let n = on_backend!(self, |pool| {
            sqlx::query("DELETE FROM auth_events WHERE at < $1")
                .bind(Ts::new(before))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(n)
    }
}
