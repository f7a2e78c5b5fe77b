//! The ledger: an append-only, hash-chained list of what happened to recordings, across all
//! recordings and all instances, so that an auditor can prove none went missing.
//!
//! Each recording signs itself (its trailer), but a recording that is deleted, or replaced by
//! another validly signed one, leaves no trace in itself. The ledger closes that gap: every
//! sealed recording (its session, times, final hash, size and signer) and every deletion is
//! an [`Entry`] whose hash covers the previous entry's hash, and instances sign
//! [`Checkpoint`]s of the chain's head at a fixed interval. An auditor who keeps exported
//! checkpoints outside the system can then tell a row changed, a row dropped, a chain
//! rewritten, a recording deleted, replaced, truncated or added ([`verify_chain`] for the
//! chain; the command line compares the recordings).
//!
//! This module is pure: encoding, hashing, signing and checking. The rows live in the
//! catalogue (`catalogue::ledger`).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use ed25519_dalek::{Signature, Signer, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::signing::RecordingKey;

/// A BLAKE3-256 hash.
pub type Hash = [u8; 32];

/// The `prev_hash` of the first entry.
pub const GENESIS: Hash = [0; 32];

/// Domain separation of entry hashes (v1 of this encoding).
const ENTRY_DOMAIN: &[u8] = b"sekisho ledger entry v1\n";
/// Domain separation of checkpoint signatures.
const CHECKPOINT_DOMAIN: &[u8] = b"sekisho ledger checkpoint v1\n";

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryKind {
    /// A recording was sealed (at the end of its session, or after an interruption).
    RecordingSealed,
    /// Retention (or an operator) deleted a recording.
    RecordingDeleted,
    /// Security staff reviewed a denial or a policy event.
    Review,
}

impl EntryKind {
    /// Every kind.
    pub const ALL: [EntryKind; 3] = [
        EntryKind::RecordingSealed,
        EntryKind::RecordingDeleted,
        EntryKind::Review,
    ];

    /// The name stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            EntryKind::RecordingSealed => "recording-sealed",
            EntryKind::RecordingDeleted => "recording-deleted",
            EntryKind::Review => "review",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntryKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntryKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown ledger entry kind {s:?}"))
    }
}

/// What an entry says, before it is chained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryContent {
    /// When it was appended (microsecond precision: what the catalogue keeps).
    pub at: DateTime<Utc>,
    /// The instance that appended it.
    pub instance: String,
    /// What happened.
    pub kind: EntryKind,
    /// The session concerned.
    pub session_id: Option<Uuid>,
    /// Where its recording is (path or URL).
    pub location: Option<String>,
    /// The recording's final chain hash (hex), as its trailer signs it.
    pub recording_hash: Option<String>,
    /// The recording's size in bytes.
    pub size: Option<u64>,
    /// When the session started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the session ended.
    pub ended_at: Option<DateTime<Utc>>,
    /// The public key (hex) of the instance that signed the recording.
    pub signer: Option<String>,
    /// Free text (who deleted, a review's disposition and comment).
    pub detail: Option<String>,
}

/// One chained entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position, from 1, without gaps.
    pub seq: u64,
    /// What it says.
    #[serde(flatten)]
    pub content: EntryContent,
    /// The previous entry's hash ([`GENESIS`] for the first), hex.
    pub prev_hash: String,
    /// `H(domain ‖ seq ‖ prev_hash ‖ content)`, hex.
    pub hash: String,
}

/// Microseconds since the epoch: the precision both catalogue backends keep.
fn micros(t: &DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn put_text(h: &mut blake3::Hasher, s: Option<&str>) {
    match s {
        // u32::MAX marks "absent", which no present string's length can be.
        None => {
            h.update(&u32::MAX.to_le_bytes());
        }
        Some(s) => {
            let len = u32::try_from(s.len()).unwrap_or(u32::MAX - 1);
            h.update(&len.to_le_bytes());
            h.update(s.as_bytes());
        }
    }
}

fn put_opt_i64(h: &mut blake3::Hasher, v: Option<i64>) {
    match v {
        None => {
            h.update(&[0]);
        }
        Some(v) => {
            h.update(&[1]);
            h.update(&v.to_le_bytes());
        }
    }
}

/// The hash of entry `seq` with content `c`, chained to `prev`.
pub fn entry_hash(seq: u64, prev: &Hash, c: &EntryContent) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(ENTRY_DOMAIN);
    h.update(&seq.to_le_bytes());
    h.update(prev);
    h.update(&micros(&c.at).to_le_bytes());
    put_text(&mut h, Some(&c.instance));
    put_text(&mut h, Some(c.kind.as_str()));
    put_text(&mut h, c.session_id.map(|u| u.to_string()).as_deref());
    put_text(&mut h, c.location.as_deref());
    put_text(&mut h, c.recording_hash.as_deref());
    put_opt_i64(&mut h, c.size.map(|s| i64::try_from(s).unwrap_or(i64::MAX)));
    put_opt_i64(&mut h, c.started_at.as_ref().map(micros));
    put_opt_i64(&mut h, c.ended_at.as_ref().map(micros));
    put_text(&mut h, c.signer.as_deref());
    put_text(&mut h, c.detail.as_deref());
    *h.finalize().as_bytes()
}

/// Parses a hex hash.
pub fn parse_hash(hex_text: &str) -> Option<Hash> {
    let bytes = hex::decode(hex_text).ok()?;
    bytes.try_into().ok()
}

/// Chains `content` after `prev` as entry `seq`.
pub fn chain(seq: u64, prev: &Hash, content: EntryContent) -> Entry {
    let hash = entry_hash(seq, prev, &content);
    Entry {
        seq,
        content,
        prev_hash: hex::encode(prev),
        hash: hex::encode(hash),
    }
}

/// A signed statement "the ledger's entry `seq` has hash `head_hash`", which fixes every entry
/// up to `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The last entry covered.
    pub seq: u64,
    /// That entry's hash, hex ([`GENESIS`] for an empty ledger).
    pub head_hash: String,
    /// When it was signed.
    pub at: DateTime<Utc>,
    /// The instance that signed it.
    pub instance: String,
    /// Its public key, hex.
    pub public_key: String,
    /// ed25519 signature over the domain, seq, head hash, time and instance, hex.
    pub signature: String,
}

fn checkpoint_message(seq: u64, head_hash: &str, at: &DateTime<Utc>, instance: &str) -> Vec<u8> {
    let mut m = Vec::with_capacity(CHECKPOINT_DOMAIN.len() + 128);
    m.extend_from_slice(CHECKPOINT_DOMAIN);
    m.extend_from_slice(&seq.to_le_bytes());
    m.extend_from_slice(head_hash.as_bytes());
    m.extend_from_slice(&micros(at).to_le_bytes());
    m.extend_from_slice(instance.as_bytes());
    m
}

/// Signs a checkpoint of the head (`seq`, `head_hash`) with `key`.
pub fn sign_checkpoint(
    key: &RecordingKey,
    seq: u64,
    head_hash: &str,
    at: DateTime<Utc>,
    instance: &str,
) -> Checkpoint {
    // Truncated to what the catalogue keeps, so the signed time is the stored time.
    let at = DateTime::from_timestamp_micros(micros(&at)).unwrap_or(at);
    let signature = key
        .signing_key()
        .sign(&checkpoint_message(seq, head_hash, &at, instance));
    Checkpoint {
        seq,
        head_hash: head_hash.to_owned(),
        at,
        instance: instance.to_owned(),
        public_key: hex::encode(key.verifying_key().as_bytes()),
        signature: hex::encode(signature.to_bytes()),
    }
}

/// Why a checkpoint's signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The public key is not an ed25519 key.
    #[error("unreadable public key")]
    Key,
    /// The signature is malformed or does not match.
    #[error("bad signature")]
    Signature,
}

impl Checkpoint {
    /// Checks the signature against the checkpoint's own key (whether that key is trusted is
    /// the caller's question).
    pub fn check_signature(&self) -> Result<VerifyingKey, CheckpointError> {
        let key: [u8; 32] = hex::decode(&self.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(CheckpointError::Key)?;
        let key = VerifyingKey::from_bytes(&key).map_err(|_| CheckpointError::Key)?;
        let sig: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(CheckpointError::Signature)?;
        key.verify(
            &checkpoint_message(self.seq, &self.head_hash, &self.at, &self.instance),
            &Signature::from_bytes(&sig),
        )
        .map_err(|_| CheckpointError::Signature)?;
        Ok(key)
    }
}

/// One thing wrong with the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "kebab-case")]
pub enum ChainFinding {
    /// Entries are missing between two others.
    Gap {
        /// The first missing seq.
        from: u64,
        /// The last missing seq.
        to: u64,
    },
    /// An entry's content no longer matches its hash.
    RowChanged {
        /// The entry.
        seq: u64,
    },
    /// An entry's `prev_hash` is not its predecessor's hash (rows replaced or reordered).
    ChainBroken {
        /// The entry.
        seq: u64,
    },
    /// A checkpoint covers entries the ledger no longer has.
    RowsDropped {
        /// The last entry the ledger has.
        last: u64,
        /// The last entry the checkpoint covers.
        covered: u64,
    },
    /// A checkpoint's head hash is not the ledger's hash at that seq: the chain up to it was
    /// rewritten.
    RewrittenBeforeCheckpoint {
        /// The checkpoint's seq.
        seq: u64,
    },
    /// A checkpoint whose signature does not hold.
    BadCheckpoint {
        /// The checkpoint's seq.
        seq: u64,
        /// Why.
        reason: String,
    },
    /// A checkpoint signed by a key the verifier does not trust.
    UntrustedCheckpoint {
        /// The checkpoint's seq.
        seq: u64,
        /// The key, hex.
        public_key: String,
    },
}

impl fmt::Display for ChainFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChainFinding::Gap { from, to } if from == to => {
                write!(f, "ledger row {from} is missing")
            }
            ChainFinding::Gap { from, to } => write!(f, "ledger rows {from} to {to} are missing"),
            ChainFinding::RowChanged { seq } => {
                write!(
                    f,
                    "ledger row {seq} was changed (its hash no longer matches)"
                )
            }
            ChainFinding::ChainBroken { seq } => write!(
                f,
                "ledger row {seq} does not follow the row before it (rows replaced or reordered)"
            ),
            ChainFinding::RowsDropped { last, covered } => write!(
                f,
                "ledger rows after {last} were dropped: a checkpoint covers up to row {covered}"
            ),
            ChainFinding::RewrittenBeforeCheckpoint { seq } => write!(
                f,
                "the ledger up to row {seq} differs from what its signed checkpoint fixed (rewritten)"
            ),
            ChainFinding::BadCheckpoint { seq, reason } => {
                write!(f, "checkpoint of row {seq} is not valid: {reason}")
            }
            ChainFinding::UntrustedCheckpoint { seq, public_key } => write!(
                f,
                "checkpoint of row {seq} is signed by a key not trusted here ({public_key})"
            ),
        }
    }
}

/// Checks `entries` (in any order) as a chain from [`GENESIS`], and each checkpoint against it.
/// `trusted` decides which checkpoint keys count; an untrusted one is a finding and is not
/// used. Returns every finding, in ledger order.
pub fn verify_chain(
    entries: &[Entry],
    checkpoints: &[Checkpoint],
    trusted: impl Fn(&VerifyingKey) -> bool,
) -> Vec<ChainFinding> {
    let mut sorted: Vec<&Entry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.seq);
    let mut findings = Vec::new();
    let mut expected_seq = 1;
    let mut prev: Option<&Entry> = None;
    for e in &sorted {
        if e.seq > expected_seq {
            findings.push(ChainFinding::Gap {
                from: expected_seq,
                to: e.seq - 1,
            });
        }
        expected_seq = e.seq.saturating_add(1);
        let stored_prev = parse_hash(&e.prev_hash);
        let recomputed = stored_prev.map(|p| hex::encode(entry_hash(e.seq, &p, &e.content)));
        if recomputed.as_deref() != Some(e.hash.as_str()) {
            findings.push(ChainFinding::RowChanged { seq: e.seq });
        }
        let want_prev = match prev {
            // After a gap the predecessor is unknown: the gap is the finding.
            Some(p) if p.seq + 1 == e.seq => Some(p.hash.clone()),
            Some(_) => None,
            None if e.seq == 1 => Some(hex::encode(GENESIS)),
            None => None,
        };
        if want_prev.is_some_and(|w| w != e.prev_hash) {
            findings.push(ChainFinding::ChainBroken { seq: e.seq });
        }
        prev = Some(e);
    }
    let last = sorted.last().map_or(0, |e| e.seq);
    for cp in checkpoints {
        match cp.check_signature() {
            Err(e) => {
                findings.push(ChainFinding::BadCheckpoint {
                    seq: cp.seq,
                    reason: e.to_string(),
                });
                continue;
            }
            Ok(key) if !trusted(&key) => {
                findings.push(ChainFinding::UntrustedCheckpoint {
                    seq: cp.seq,
                    public_key: cp.public_key.clone(),
                });
                continue;
            }
            Ok(_) => {}
        }
        if cp.seq > last {
            findings.push(ChainFinding::RowsDropped {
                last,
                covered: cp.seq,
            });
            continue;
        }
        let at_seq = if cp.seq == 0 {
            Some(hex::encode(GENESIS))
        } else {
            sorted
                .binary_search_by_key(&cp.seq, |e| e.seq)
                .ok()
                .and_then(|i| sorted.get(i))
                .map(|e| e.hash.clone())
        };
        // A missing row at the checkpoint's seq is already a gap finding.
        if at_seq.is_some_and(|h| h != cp.head_hash) {
            findings.push(ChainFinding::RewrittenBeforeCheckpoint { seq: cp.seq });
        }
    }
    findings.dedup();
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(i: u64) -> EntryContent {
        EntryContent {
            at: DateTime::from_timestamp_micros(1_780_000_000_000_000 + i as i64).unwrap(),
            instance: "bastion-a".to_owned(),
            kind: EntryKind::RecordingSealed,
            session_id: Some(Uuid::now_v7()),
            location: Some(format!("data/recordings/{i}.skrec")),
            recording_hash: Some("ab".repeat(32)),
            size: Some(1000 + i),
            started_at: None,
            ended_at: None,
            signer: Some("cd".repeat(32)),
            detail: None,
        }
    }

    fn ledger(n: u64) -> Vec<Entry> {
        let mut out: Vec<Entry> = Vec::new();
        let mut prev = GENESIS;
        for seq in 1..=n {
            let e = chain(seq, &prev, content(seq));
            prev = parse_hash(&e.hash).unwrap();
            out.push(e);
        }
        out
    }

    fn key() -> RecordingKey {
        RecordingKey::generate().unwrap()
    }

    #[test]
    fn a_clean_chain_with_a_checkpoint_has_no_findings() {
        let k = key();
        let entries = ledger(5);
        let cp = sign_checkpoint(&k, 5, &entries[4].hash, Utc::now(), "bastion-a");
        assert_eq!(verify_chain(&entries, &[cp], |_| true), vec![]);
        assert_eq!(verify_chain(&[], &[], |_| true), vec![]);
    }

    #[test]
    fn each_kind_of_damage_is_named() {
        let k = key();
        let entries = ledger(6);
        let cp = sign_checkpoint(&k, 6, &entries[5].hash, Utc::now(), "bastion-a");

        let mut changed = entries.clone();
        changed[2].content.recording_hash = Some("ff".repeat(32));
        assert_eq!(
            verify_chain(&changed, std::slice::from_ref(&cp), |_| true),
            vec![ChainFinding::RowChanged { seq: 3 }]
        );

        let mut gap = entries.clone();
        gap.remove(3);
        assert_eq!(
            verify_chain(&gap, std::slice::from_ref(&cp), |_| true),
            vec![ChainFinding::Gap { from: 4, to: 4 }]
        );

        let dropped = &entries[..4];
        assert_eq!(
            verify_chain(dropped, std::slice::from_ref(&cp), |_| true),
            vec![ChainFinding::RowsDropped {
                last: 4,
                covered: 6
            }]
        );

        // Rewritten consistently (every hash recomputed from row 2 on): only the checkpoint
        // tells.
        let mut rewritten = entries[..1].to_vec();
        let mut prev = parse_hash(&entries[0].hash).unwrap();
        for seq in 2..=6 {
            let mut c = content(seq);
            c.location = Some("elsewhere".to_owned());
            let e = chain(seq, &prev, c);
            prev = parse_hash(&e.hash).unwrap();
            rewritten.push(e);
        }
        assert_eq!(
            verify_chain(&rewritten, std::slice::from_ref(&cp), |_| true),
            vec![ChainFinding::RewrittenBeforeCheckpoint { seq: 6 }]
        );
        // Without a checkpoint a consistent rewrite is invisible: hence exported checkpoints.
        assert_eq!(verify_chain(&rewritten, &[], |_| true), vec![]);

        let mut swapped = entries.clone();
        let replacement = chain(4, &GENESIS, content(40));
        swapped[3] = replacement;
        assert_eq!(
            verify_chain(&swapped, &[], |_| true),
            vec![
                ChainFinding::ChainBroken { seq: 4 },
                ChainFinding::ChainBroken { seq: 5 }
            ]
        );
    }

    #[test]
    fn checkpoints_must_be_signed_by_a_trusted_key() {
        let k = key();
        let entries = ledger(2);
        let mut cp = sign_checkpoint(&k, 2, &entries[1].hash, Utc::now(), "bastion-a");
        let mine = k.verifying_key();
        assert_eq!(
            verify_chain(&entries, std::slice::from_ref(&cp), |key| *key == mine),
            vec![]
        );
        let other = key().verifying_key();
        assert!(matches!(
            verify_chain(&entries, std::slice::from_ref(&cp), |key| *key == other)[..],
            [ChainFinding::UntrustedCheckpoint { seq: 2, .. }]
        ));
        cp.seq = 1;
        assert!(matches!(
            verify_chain(&entries, &[cp], |_| true)[..],
            [ChainFinding::BadCheckpoint { seq: 1, .. }]
        ));
    }

    #[test]
    fn the_hash_covers_every_field() {
        let base = content(1);
        let h = entry_hash(1, &GENESIS, &base);
        type Change = Box<dyn Fn(&mut EntryContent)>;
        let variants: Vec<Change> = vec![
            Box::new(|c| c.at += chrono::Duration::microseconds(1)),
            Box::new(|c| c.instance.push('x')),
            Box::new(|c| c.kind = EntryKind::RecordingDeleted),
            Box::new(|c| c.session_id = None),
            Box::new(|c| c.location = None),
            Box::new(|c| c.recording_hash = Some(String::new())),
            Box::new(|c| c.size = Some(0)),
            Box::new(|c| c.started_at = Some(c.at)),
            Box::new(|c| c.ended_at = Some(c.at)),
            Box::new(|c| c.signer = None),
            Box::new(|c| c.detail = Some(String::new())),
        ];
        for (i, change) in variants.iter().enumerate() {
            let mut c = base.clone();
            change(&mut c);
            assert_ne!(entry_hash(1, &GENESIS, &c), h, "field {i} is not covered");
        }
        assert_ne!(entry_hash(2, &GENESIS, &base), h);
        assert_ne!(entry_hash(1, &[1; 32], &base), h);
    }
}
