//! The ledger's rows and checkpoints in the catalogue (see [`crate::ledger`]).
//!
//! Entries are appended by the catalogue itself, in the same transaction as the change they
//! record (a session's recording sealed, a recording deleted), so the ledger cannot miss one
//! that the catalogue has. This module reads them back and stores checkpoints.

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::ts::Ts;
use super::{Backend, Catalogue, CatalogueError, InstanceId, SessionId, size_to_db, text};
use crate::ledger::{Checkpoint, Entry, EntryContent, EntryKind};

#[derive(FromRow)]
struct RawEntry {
    seq: i64,
    at: Ts,
    instance_id: String,
    kind: String,
    session_id: Option<String>,
    location: Option<String>,
    recording_hash: Option<String>,
    recording_size: Option<i64>,
    started_at: Option<Ts>,
    ended_at: Option<Ts>,
    signer: Option<String>,
    detail: Option<String>,
    prev_hash: String,
    hash: String,
}

impl RawEntry {
    fn parse(self) -> Result<Entry, CatalogueError> {
        let seq = self.seq.to_string();
        Ok(Entry {
            seq: u64::try_from(self.seq)
                .map_err(|_| CatalogueError::corrupt("ledger seq", &seq))?,
            content: EntryContent {
                at: self.at.get(),
                instance: self.instance_id,
                kind: self
                    .kind
                    .parse()
                    .map_err(|_| CatalogueError::corrupt("ledger kind", &self.kind))?,
                session_id: self
                    .session_id
                    .map(|s| {
                        s.parse()
                            .map_err(|_| CatalogueError::corrupt("ledger session id", &s))
                    })
                    .transpose()?,
                location: self.location,
                recording_hash: self.recording_hash,
                size: self
                    .recording_size
                    .map(|s| {
                        u64::try_from(s)
                            .map_err(|_| CatalogueError::corrupt("ledger size", &s.to_string()))
                    })
                    .transpose()?,
                started_at: self.started_at.map(|t| t.get()),
                ended_at: self.ended_at.map(|t| t.get()),
                signer: self.signer,
                detail: self.detail,
            },
            prev_hash: self.prev_hash,
            hash: self.hash,
        })
    }
}

#[derive(FromRow)]
struct RawCheckpoint {
    seq: i64,
    head_hash: String,
    at: Ts,
    instance_id: String,
    public_key: String,
    signature: String,
}

impl RawCheckpoint {
    fn parse(self) -> Result<Checkpoint, CatalogueError> {
        let seq = self.seq.to_string();
        Ok(Checkpoint {
            seq: u64::try_from(self.seq)
                .map_err(|_| CatalogueError::corrupt("checkpoint seq", &seq))?,
            head_hash: self.head_hash,
            at: self.at.get(),
            instance: self.instance_id,
            public_key: self.public_key,
            signature: self.signature,
        })
    }
}

const ENTRY_COLS: &str = "seq, at, instance_id, kind, session_id, location, recording_hash, \
     recording_size, started_at, ended_at, signer, detail, prev_hash, hash";

impl Catalogue {
    /// Records `instance`'s recording-signing public key (hex), so the ledger rows of its
    /// recordings name their signer. Call at start, before any session.
    pub async fn register_signer(
        &self,
        instance: &InstanceId,
        public_key: &str,
        at: DateTime<Utc>,
    ) -> Result<(), CatalogueError> {
        let at = Ts::new(at);
        on_backend!(self, |pool| {
            sqlx::query(
                "INSERT INTO instances (instance_id, started_at, last_seen, public_key) \
                 VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (instance_id) DO UPDATE SET public_key = excluded.public_key",
            )
            .bind(instance.as_str().to_owned())
            .bind(at)
            .bind(at)
            .bind(public_key.to_owned())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// The public keys (hex) instances registered, by instance.
    pub async fn signers(&self) -> Result<Vec<(InstanceId, String)>, CatalogueError> {
        let rows: Vec<(String, String)> = on_backend!(self, |pool| {
            sqlx::query_as(
                "SELECT instance_id, public_key FROM instances WHERE public_key IS NOT NULL \
                 ORDER BY instance_id",
            )
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(i, k)| {
                Ok((
                    InstanceId::new(&i).map_err(|_| CatalogueError::corrupt("instance id", &i))?,
                    k,
                ))
            })
            .collect()
    }

    /// The public keys instances registered, parsed (a key that does not parse is left out:
    /// it cannot have signed anything). The keys a recording of this catalogue may be signed
    /// by: each instance signs its own recordings and seals those of a dead one.
    pub async fn signer_keys(&self) -> Result<Vec<crate::signing::VerifyingKey>, CatalogueError> {
        Ok(self
            .signers()
            .await?
            .iter()
            .filter_map(|(_, k)| crate::signing::parse_public_key(k).ok())
            .collect())
    }

    /// Every ledger entry, by seq.
    pub async fn ledger_entries(&self) -> Result<Vec<Entry>, CatalogueError> {
        let sql = sqlx::AssertSqlSafe(format!("SELECT {ENTRY_COLS} FROM ledger ORDER BY seq"));
        let raw: Vec<RawEntry> =
            on_backend!(self, |pool| sqlx::query_as(sql).fetch_all(pool).await?);
        raw.into_iter().map(RawEntry::parse).collect()
    }

    /// The first and last ledger rows naming `session` (an evidence bundle carries the rows
    /// from the first to a checkpoint that covers the last).
    pub async fn ledger_span_of_session(
        &self,
        session: SessionId,
    ) -> Result<Option<(u64, u64)>, CatalogueError> {
        let (first, last): (Option<i64>, Option<i64>) = on_backend!(self, |pool| {
            sqlx::query_as("SELECT MIN(seq), MAX(seq) FROM ledger WHERE session_id = $1")
                .bind(session.to_string())
                .fetch_one(pool)
                .await?
        });
        let seq = |v: i64| {
            u64::try_from(v).map_err(|_| CatalogueError::corrupt("ledger seq", &v.to_string()))
        };
        match (first, last) {
            (Some(a), Some(b)) => Ok(Some((seq(a)?, seq(b)?))),
            _ => Ok(None),
        }
    }

    /// Ledger rows `first..=last`, by seq.
    pub async fn ledger_range(&self, first: u64, last: u64) -> Result<Vec<Entry>, CatalogueError> {
        let bound = |v: u64| i64::try_from(v).map_err(|_| CatalogueError::OutOfRange("ledger seq"));
        let (first, last) = (bound(first)?, bound(last)?);
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {ENTRY_COLS} FROM ledger WHERE seq >= $1 AND seq <= $2 ORDER BY seq"
        ));
        let raw: Vec<RawEntry> = on_backend!(self, |pool| {
            sqlx::query_as(sql)
                .bind(first)
                .bind(last)
                .fetch_all(pool)
                .await?
        });
        raw.into_iter().map(RawEntry::parse).collect()
    }

    /// The checkpoint with the lowest seq at or after `seq` (the one that fixes row `seq` with
    /// the fewest rows after it), if any.
    pub async fn checkpoint_covering(
        &self,
        seq: u64,
    ) -> Result<Option<Checkpoint>, CatalogueError> {
        let seq = i64::try_from(seq).map_err(|_| CatalogueError::OutOfRange("ledger seq"))?;
        let raw: Option<RawCheckpoint> = on_backend!(self, |pool| {
            sqlx::query_as(
                "SELECT seq, head_hash, at, instance_id, public_key, signature \
                 FROM ledger_checkpoints WHERE seq >= $1 ORDER BY seq, at LIMIT 1",
            )
            .bind(seq)
            .fetch_optional(pool)
            .await?
        });
        raw.map(RawCheckpoint::parse).transpose()
    }

    /// The head of the chain: the last seq appended and its hash (0 and the genesis hash for
    /// an empty ledger).
    pub async fn ledger_head(&self) -> Result<(u64, String), CatalogueError> {
        let (seq, hash): (i64, String) = on_backend!(self, |pool| {
            sqlx::query_as("SELECT seq, hash FROM ledger_head WHERE id = 1")
                .fetch_one(pool)
                .await?
        });
        let seq_text = seq.to_string();
        Ok((
            u64::try_from(seq).map_err(|_| CatalogueError::corrupt("ledger head", &seq_text))?,
            hash,
        ))
    }

    /// Stores a signed checkpoint.
    pub async fn add_checkpoint(&self, cp: &Checkpoint) -> Result<(), CatalogueError> {
        let seq = i64::try_from(cp.seq).map_err(|_| CatalogueError::OutOfRange("ledger seq"))?;
        on_backend!(self, |pool| {
            sqlx::query(
                "INSERT INTO ledger_checkpoints (seq, head_hash, at, instance_id, public_key, \
                 signature) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(seq)
            .bind(cp.head_hash.clone())
            .bind(Ts::new(cp.at))
            .bind(cp.instance.clone())
            .bind(cp.public_key.clone())
            .bind(cp.signature.clone())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Checkpoints signed at or after `since` (all when `None`), oldest first.
    pub async fn ledger_checkpoints(
        &self,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<Checkpoint>, CatalogueError> {
        // The epoch, not chrono's minimum, which PostgreSQL cannot store.
        let since = Ts::new(since.unwrap_or(DateTime::<Utc>::UNIX_EPOCH));
        let raw: Vec<RawCheckpoint> = on_backend!(self, |pool| {
            sqlx::query_as(
                "SELECT seq, head_hash, at, instance_id, public_key, signature \
                 FROM ledger_checkpoints WHERE at >= $1 ORDER BY at, instance_id",
            )
            .bind(since)
            .fetch_all(pool)
            .await?
        });
        raw.into_iter().map(RawCheckpoint::parse).collect()
    }

    /// Puts the signed recordings of a catalogue that predates the ledger into it, oldest
    /// first, each marked as adopted. Runs only while the ledger is empty, so it happens once
    /// per catalogue: afterwards a recording can enter the ledger only by being sealed.
    /// Returns how many were adopted.
    pub async fn adopt_into_empty_ledger(&self) -> Result<u64, CatalogueError> {
        if self.ledger_head().await?.0 > 0 {
            return Ok(0);
        }
        let rows: Vec<(String, String, Option<String>, Option<i64>)> = on_backend!(self, |pool| {
            sqlx::query_as(
                "SELECT id, recording, recording_hash, recording_size FROM sessions \
                 WHERE recording_state IN ('complete', 'sealed') AND recording IS NOT NULL \
                 ORDER BY ended_at, id",
            )
            .fetch_all(pool)
            .await?
        });
        let mut adopted = 0;
        for (id, location, hash, size) in rows {
            let id: SessionId = id
                .parse()
                .map_err(|_| CatalogueError::corrupt("session id", &id))?;
            on_backend!(self, |pool| {
                let mut tx = pool.begin().await?;
                append_recording_ledger!(
                    tx,
                    id,
                    EntryKind::RecordingSealed,
                    &location,
                    hash,
                    size.and_then(|s| u64::try_from(s).ok()),
                    Some("adopted: sealed before this catalogue kept a ledger".to_owned())
                );
                tx.commit().await?;
            });
            adopted += 1;
        }
        Ok(adopted)
    }
}
