//! Sessions whose instance is gone.
//!
//! Instances sharing a catalogue look after each other: a session stays "live" only while the
//! instance that runs it keeps beating. When an instance stops (a crash, `kill -9`, a host
//! that never comes back), another one finds its live sessions here, marks them interrupted
//! and seals what it can reach of their recordings, so nothing is left open. The instance that
//! ran them, if it comes back, finds its interrupted recordings that nobody could seal.

use chrono::{DateTime, Utc};
use sqlx::AssertSqlSafe;

use super::ts::Ts;
use super::{Backend, Catalogue, CatalogueError, InstanceId, RawSession, SESSION_COLS, SessionRow};

impl Catalogue {
    /// Live sessions of instances other than `me` that are presumed dead at `now`: their
    /// last heartbeat is older than `stale_after`, or they never beat and the session started
    /// longer ago than that. Oldest first.
    pub async fn orphaned_sessions(
        &self,
        me: &InstanceId,
        now: DateTime<Utc>,
        stale_after: chrono::Duration,
    ) -> Result<Vec<SessionRow>, CatalogueError> {
        let cutoff = Ts::new(now - stale_after);
        let sql = AssertSqlSafe(format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE ended_at IS NULL AND instance_id <> $1 \
             AND (EXISTS (SELECT 1 FROM instances i WHERE i.instance_id = sessions.instance_id \
                          AND i.last_seen < $2) \
                  OR (NOT EXISTS (SELECT 1 FROM instances i \
                                  WHERE i.instance_id = sessions.instance_id) \
                      AND started_at < $2)) \
             ORDER BY started_at, id"
        ));
        let raw: Vec<RawSession> = on_backend!(self, |pool| {
            sqlx::query_as(sql)
                .bind(me.as_str().to_owned())
                .bind(cutoff)
                .fetch_all(pool)
                .await?
        });
        raw.into_iter().map(RawSession::parse).collect()
    }

    /// Sessions of `instance` that were interrupted with a recording nobody has sealed yet
    /// (its state still `live` or `incomplete`): typically sessions another instance marked
    /// while this one was down, whose recordings only this one can reach. Oldest first.
    pub async fn interrupted_unsealed(
        &self,
        instance: &InstanceId,
    ) -> Result<Vec<SessionRow>, CatalogueError> {
        let sql = AssertSqlSafe(format!(
            "SELECT {SESSION_COLS} FROM sessions WHERE instance_id = $1 \
             AND outcome = 'interrupted' AND recording IS NOT NULL \
             AND recording_state IN ('live', 'incomplete') \
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
}
