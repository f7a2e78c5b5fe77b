//! Staff watching live sessions: who is watching which session, as the web UI of any
//! instance registers it and the instance running the session reads it.
//!
//! A watcher is *present* from joining while it beats (every picture the live page fetches
//! refreshes `last_seen`) and until it leaves; a page closed without saying so stops beating
//! and stops counting after [`WATCHER_STALE_AFTER`]. Presence is read by the instance that
//! runs the session, so a watcher on instance B is seen by a session on instance A.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use policy::SessionId;
use sqlx::FromRow;

use super::ts::Ts;
use super::{Backend, Catalogue, CatalogueError, InstanceId, parse_session_id, text};

/// A watcher that has not beaten for this long no longer counts as present (its page was
/// closed, its browser lost the network). The live page beats several times a second.
pub const WATCHER_STALE_AFTER: chrono::Duration = chrono::Duration::seconds(5);

/// One watcher's presence on one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WatcherId(pub uuid::Uuid);

impl std::fmt::Display for WatcherId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl std::str::FromStr for WatcherId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s).map(WatcherId)
    }
}

/// Someone watching, as the contractor is told and the recording keeps it: "kobayashi
/// (security)".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Watcher {
    /// The Sekisho user.
    pub viewer: String,
    /// Their role (security, auditor, admin).
    pub role: String,
}

impl std::fmt::Display for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.viewer, self.role)
    }
}

#[derive(FromRow)]
struct RawPresent {
    session_id: String,
    viewer: String,
    role: String,
}

impl Catalogue {
    /// Registers `watcher` as watching `session` from now; the web UI of `instance` serves
    /// them. Returns `None` if the session is not live (ended, or unknown).
    pub async fn watch_join(
        &self,
        session: SessionId,
        watcher: &Watcher,
        instance: &InstanceId,
        now: DateTime<Utc>,
    ) -> Result<Option<WatcherId>, CatalogueError> {
        let id = WatcherId(uuid::Uuid::now_v7());
        let at = Ts::new(now);
        let done = on_backend!(self, |pool| {
            sqlx::query(
                "INSERT INTO watchers (id, session_id, viewer, role, instance_id, joined_at, \
                 last_seen) SELECT $1, id, $2, $3, $4, $5, $5 FROM sessions \
                 WHERE id = $6 AND ended_at IS NULL",
            )
            .bind(id.to_string())
            .bind(text(&watcher.viewer))
            .bind(text(&watcher.role))
            .bind(instance.as_str().to_owned())
            .bind(at)
            .bind(session.to_string())
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok((done == 1).then_some(id))
    }

    /// Refreshes the presence of `viewer`'s watcher. Returns `false` if it has left (or
    /// never joined, or is someone else's), or its session has ended: the page stops.
    pub async fn watch_beat(
        &self,
        watcher: WatcherId,
        viewer: &str,
        now: DateTime<Utc>,
    ) -> Result<bool, CatalogueError> {
        let done = on_backend!(self, |pool| {
            sqlx::query(
                "UPDATE watchers SET last_seen = $1 WHERE id = $2 AND viewer = $3 \
                 AND left_at IS NULL \
                 AND session_id IN (SELECT id FROM sessions WHERE ended_at IS NULL)",
            )
            .bind(Ts::new(now))
            .bind(watcher.to_string())
            .bind(text(viewer))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(done == 1)
    }

    /// Ends the presence of `viewer`'s watcher (the page was left).
    pub async fn watch_leave(
        &self,
        watcher: WatcherId,
        viewer: &str,
        now: DateTime<Utc>,
    ) -> Result<(), CatalogueError> {
        on_backend!(self, |pool| {
            sqlx::query(
                "UPDATE watchers SET left_at = $1 WHERE id = $2 AND viewer = $3 \
                 AND left_at IS NULL",
            )
            .bind(Ts::new(now))
            .bind(watcher.to_string())
            .bind(text(viewer))
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Who is watching each watched session now: watchers that have not left and beat
    /// within [`WATCHER_STALE_AFTER`]. Sessions nobody watches are absent.
    pub async fn present_watchers(
        &self,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<SessionId, BTreeSet<Watcher>>, CatalogueError> {
        let raw: Vec<RawPresent> = on_backend!(self, |pool| {
            sqlx::query_as(
                "SELECT session_id, viewer, role FROM watchers \
                 WHERE left_at IS NULL AND last_seen >= $1",
            )
            .bind(Ts::new(now - WATCHER_STALE_AFTER))
            .fetch_all(pool)
            .await?
        });
        let mut out: BTreeMap<SessionId, BTreeSet<Watcher>> = BTreeMap::new();
        for r in raw {
            out.entry(parse_session_id(&r.session_id)?)
                .or_default()
                .insert(Watcher {
                    viewer: r.viewer,
                    role: r.role,
                });
        }
        Ok(out)
    }
}
