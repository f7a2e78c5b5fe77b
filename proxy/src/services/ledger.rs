//! Signed checkpoints of the recordings ledger (`recorder::ledger`).
//!
//! The catalogue appends ledger entries itself, in the transactions that seal or delete
//! recordings. What an instance adds is its signature: at `recording.ledger_checkpoint_interval`
//! (default hourly) and once more at shutdown, after its last session was sealed, it signs the
//! head of the chain with its recording key. An auditor exports those checkpoints
//! (`sekisho ledger export`) and keeps them outside, where no one with the database can
//! rewrite them.

use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use recorder::ledger::{self, Checkpoint};
use tracing::{info, warn};

use super::{ErrorKind, Services};

impl Services {
    /// Signs a checkpoint of the ledger's current head and stores it.
    pub async fn sign_ledger_checkpoint(&self) -> Result<Checkpoint> {
        let (seq, head) = self
            .catalogue
            .ledger_head()
            .await
            .context("cannot read the ledger head")?;
        let cp = ledger::sign_checkpoint(
            &self.signing_key,
            seq,
            &head,
            Utc::now(),
            self.instance.as_str(),
        );
        self.catalogue
            .add_checkpoint(&cp)
            .await
            .context("cannot store the ledger checkpoint")?;
        info!(seq, head = %head, "Ledger checkpoint signed");
        Ok(cp)
    }

    /// Signs a checkpoint every `recording.ledger_checkpoint_interval` until shutdown (the
    /// interval is read again after each, so a reload applies). The shutdown checkpoint is
    /// `serve`'s, after the sessions have ended.
    pub async fn checkpoint_ledger(self: Arc<Self>) {
        loop {
            let every = self.inventory().recording().ledger_checkpoint_interval;
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            if let Err(e) = self.sign_ledger_checkpoint().await {
                self.metrics.error(ErrorKind::Catalogue);
                warn!(error = %format!("{e:#}"), "Cannot sign a ledger checkpoint; will try at the next interval");
            }
        }
    }
}
