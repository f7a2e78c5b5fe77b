//! Verification, sealing and metadata of recordings.
//!
//! States (see `docs/recording-format.md`, "States"):
//! - **intact**: header, every chunk (sequence, hash chain, payload), and a trailer signed by
//!   the expected key that matches them all; nothing after it.
//! - **interrupted**: intact, but the trailer was written by [`seal`] after the writer stopped
//!   without finishing (crash, disk full): the recording is authentic and complete *up to the
//!   interruption*.
//! - **incomplete**: no valid end: the file stops after a whole chunk (no trailer) or inside a
//!   frame. Everything before `offset` verified; what follows is missing. Typical of a crash;
//!   [`seal`] turns it into *interrupted*.
//! - **tampered**: something present is wrong: a bad hash, a sequence gap, repeat or swap, a
//!   bad signature or another signer, counts that disagree, bytes after the trailer.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::format::{
    self, FLAG_SEALED_AFTER_INTERRUPTION, Frame, Hash, HeaderFrame, IndexBuilder, IndexEntry,
    TrailerBody, decode_frame, decode_header,
};
use crate::signing::{RecordingKey, VerifyingKey, fingerprint_bytes};
use crate::writer::RecordingSummary;

/// The verdict on a recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum VerifyState {
    /// Complete and authentic.
    Intact,
    /// Authentic up to an interruption, sealed afterwards (see module docs).
    Interrupted,
    /// Cut short; verified up to `offset`.
    Incomplete {
        /// Sequence number of the last verified chunk (`None`: not even one).
        last_good_chunk: Option<u32>,
        /// Byte offset where verified content ends.
        offset: u64,
        /// Why it is incomplete.
        reason: String,
    },
    /// Altered.
    Tampered {
        /// Byte offset of the first frame found wrong.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
}

impl VerifyState {
    /// Short name: `intact`, `interrupted`, `incomplete`, `tampered`.
    pub fn as_str(&self) -> &'static str {
        match self {
            VerifyState::Intact => "intact",
            VerifyState::Interrupted => "interrupted",
            VerifyState::Incomplete { .. } => "incomplete",
            VerifyState::Tampered { .. } => "tampered",
        }
    }
}

/// Who signed the trailer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignerInfo {
    /// Public key, hex.
    pub public_key: String,
    /// Fingerprint (see [`crate::signing::fingerprint`]).
    pub fingerprint: String,
    /// Whether it is the trusted key given to `verify` (`None`: none was given, so the
    /// signature only proves self-consistency).
    pub trusted: Option<bool>,
}

/// The result of [`verify`]; JSON-serialisable (the state's fields are flattened in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// The verdict.
    #[serde(flatten)]
    pub state: VerifyState,
    /// Size of the input.
    pub size: u64,
    /// Chunks verified.
    pub chunks: u32,
    /// Records in the verified chunks.
    pub records: u64,
    /// End time (µs since start): the trailer's, else the last verified record's.
    pub end_us: u64,
    /// Header hash, hex (absent if the header is unreadable).
    pub header_hash: Option<String>,
    /// Chain hash of the last verified chunk, hex.
    pub final_hash: Option<String>,
    /// The signer, when a trailer was read.
    pub signer: Option<SignerInfo>,
}

impl VerifyReport {
    /// Intact or interrupted-and-sealed: authentic as far as it goes (`recording verify`
    /// exits 0).
    pub fn is_authentic(&self) -> bool {
        matches!(self.state, VerifyState::Intact | VerifyState::Interrupted)
    }
}

/// Everything learned by one pass over a recording.
struct Scan {
    header: Option<HeaderFrame>,
    chunks: u32,
    records: u64,
    last_us: u64,
    end_us: u64,
    prev: Option<Hash>,
    /// End of verified content (before any trailer).
    prefix_end: u64,
    index: IndexBuilder,
    /// Chunk offsets by sequence, to check the trailer's index.
    offsets: Vec<(u64, u64)>,
    signer: Option<SignerInfo>,
    state: VerifyState,
}

fn scan(bytes: &[u8], trusted: Option<&VerifyingKey>) -> Scan {
    let mut s = Scan {
        header: None,
        chunks: 0,
        records: 0,
        last_us: 0,
        end_us: 0,
        prev: None,
        prefix_end: 0,
        index: IndexBuilder::new(),
        offsets: Vec::new(),
        signer: None,
        state: VerifyState::Intact,
    };
    s.state = scan_into(bytes, trusted, &mut s);
    s
}

fn tampered(offset: usize, reason: impl Into<String>) -> VerifyState {
    VerifyState::Tampered {
        offset: offset as u64,
        reason: reason.into(),
    }
}

fn scan_into(bytes: &[u8], trusted: Option<&VerifyingKey>, s: &mut Scan) -> VerifyState {
    let incomplete = |s: &Scan, reason: &str| VerifyState::Incomplete {
        last_good_chunk: s.chunks.checked_sub(1),
        offset: s.prefix_end,
        reason: reason.to_string(),
    };
    let (header, mut pos) = match decode_header(bytes) {
        Ok(Some(h)) => h,
        Ok(None) => return incomplete(s, "header truncated"),
        Err(e) => return tampered(0, format!("header: {e}")),
    };
    let header_hash = header.hash;
    s.header = Some(header);
    s.prev = Some(header_hash);
    s.prefix_end = pos as u64;
    let mut prev = header_hash;
    loop {
        let rest = bytes.get(pos..).unwrap_or_default();
        if rest.is_empty() {
            return incomplete(s, "trailer missing");
        }
        let frame = match decode_frame(rest) {
            Ok(Some(f)) => f,
            Ok(None) => {
                let what = if rest.starts_with(b"SKT") {
                    "trailer truncated"
                } else {
                    "chunk truncated"
                };
                return incomplete(s, what);
            }
            Err(e) => return tampered(pos, e.to_string()),
        };
        match frame {
            (Frame::Chunk(c), used) => {
                if c.seq != s.chunks {
                    let how = if c.seq < s.chunks {
                        "repeated or reordered"
                    } else {
                        "missing or reordered"
                    };
                    return tampered(
                        pos,
                        format!(
                            "chunk sequence {} where {} expected ({how} chunk)",
                            c.seq, s.chunks
                        ),
                    );
                }
                if c.expected_hash(&prev) != c.chain_hash {
                    return tampered(pos, format!("hash chain mismatch at chunk {}", c.seq));
                }
                if c.first_us < s.last_us {
                    return tampered(pos, format!("chunk {} goes back in time", c.seq));
                }
                let records = match c.records() {
                    Ok(r) => r,
                    Err(e) => return tampered(pos, format!("chunk {}: {e}", c.seq)),
                };
                if records
                    .iter()
                    .any(|r| r.at_us < c.first_us || r.at_us > c.last_us)
                    || records.first().map(|r| r.at_us) != Some(c.first_us)
                    || records.last().map(|r| r.at_us) != Some(c.last_us)
                {
                    return tampered(pos, format!("chunk {} time range mismatch", c.seq));
                }
                s.index.push(IndexEntry {
                    seq: c.seq,
                    first_us: c.first_us,
                    offset: pos as u64,
                });
                s.offsets.push((pos as u64, c.first_us));
                prev = c.chain_hash;
                s.prev = Some(prev);
                s.chunks += 1;
                s.records += u64::from(c.record_count);
                s.last_us = c.last_us;
                s.end_us = c.last_us;
                pos += used;
                s.prefix_end = pos as u64;
            }
            (Frame::Trailer(t), used) => {
                let key = match t.verify_signature(&header_hash) {
                    Ok(k) => k,
                    Err(_) => return tampered(pos, "trailer signature invalid"),
                };
                let trusted_ok = trusted.map(|tk| *tk == key);
                s.signer = Some(SignerInfo {
                    public_key: hex::encode(key.to_bytes()),
                    fingerprint: fingerprint_bytes(&key.to_bytes()),
                    trusted: trusted_ok,
                });
                if trusted_ok == Some(false) {
                    return tampered(
                        pos,
                        format!(
                            "signed by another key ({})",
                            fingerprint_bytes(&key.to_bytes())
                        ),
                    );
                }
                let b = &t.body;
                if b.chunk_count != s.chunks {
                    return tampered(
                        pos,
                        format!(
                            "trailer counts {} chunks, file has {} (chunks dropped or added)",
                            b.chunk_count, s.chunks
                        ),
                    );
                }
                if t.trailer_offset != pos as u64 {
                    return tampered(pos, "trailer offset mismatch");
                }
                if b.final_hash != prev {
                    return tampered(pos, "trailer final hash mismatch");
                }
                if b.record_count != s.records {
                    return tampered(pos, "trailer record count mismatch");
                }
                if b.end_us < s.last_us {
                    return tampered(pos, "trailer end time before last record");
                }
                if let Some(reason) = check_index(&b.index, &s.offsets) {
                    return tampered(pos, reason);
                }
                s.end_us = b.end_us;
                if pos + used != bytes.len() {
                    return tampered(pos + used, "bytes after trailer");
                }
                return if b.flags & FLAG_SEALED_AFTER_INTERRUPTION != 0 {
                    VerifyState::Interrupted
                } else {
                    VerifyState::Intact
                };
            }
        }
    }
}

fn check_index(index: &[IndexEntry], offsets: &[(u64, u64)]) -> Option<String> {
    let mut last: Option<u32> = None;
    for e in index {
        if last.is_some_and(|l| e.seq <= l) {
            return Some("seek index out of order".into());
        }
        last = Some(e.seq);
        let actual = offsets.get(usize::try_from(e.seq).unwrap_or(usize::MAX));
        if actual != Some(&(e.offset, e.first_us)) {
            return Some(format!("seek index entry for chunk {} is wrong", e.seq));
        }
    }
    None
}

fn report(bytes: &[u8], s: &Scan) -> VerifyReport {
    VerifyReport {
        state: s.state.clone(),
        size: bytes.len() as u64,
        chunks: s.chunks,
        records: s.records,
        end_us: s.end_us,
        header_hash: s.header.as_ref().map(|h| hex::encode(h.hash)),
        final_hash: s.prev.map(hex::encode),
        signer: s.signer.clone(),
    }
}

/// Verifies a whole recording. With `trusted`, a trailer signed by any other key is
/// [`VerifyState::Tampered`]; without it the signature is checked against the key in the
/// trailer, which only proves the file was not altered after signing by *someone*: auditors
/// should pass the instance's public key.
pub fn verify(bytes: &[u8], trusted: Option<&VerifyingKey>) -> VerifyReport {
    let s = scan(bytes, trusted);
    report(bytes, &s)
}

/// Why a recording could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// It already has a valid trailer.
    #[error("recording is already {0}")]
    AlreadySealed(&'static str),
    /// It is tampered: sealing would sign altered content.
    #[error("recording is tampered at offset {offset}: {reason}")]
    Tampered {
        /// Where.
        offset: u64,
        /// What.
        reason: String,
    },
    /// The header itself is incomplete: nothing to seal.
    #[error("recording header incomplete")]
    NoHeader,
    /// Reading or writing the file failed.
    #[error("{0}")]
    Io(String),
}

/// What [`seal`] decided: keep the first `keep_len` bytes and append `trailer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealPlan {
    /// Bytes of verified content to keep (a partial last frame is cut off).
    pub keep_len: u64,
    /// The signed trailer (flagged sealed-after-interruption) to append.
    pub trailer: Vec<u8>,
    /// Why the recording was incomplete.
    pub reason: String,
    /// Chunks kept.
    pub chunks: u32,
    /// Records kept.
    pub records: u64,
    /// Final chain hash, hex.
    pub final_hash: String,
}

/// Plans sealing an incomplete recording: its verified prefix gets a trailer signed with
/// `key` and flagged [`FLAG_SEALED_AFTER_INTERRUPTION`]. Refuses intact, interrupted and
/// tampered recordings.
pub fn seal(bytes: &[u8], key: &RecordingKey) -> Result<SealPlan, SealError> {
    let s = scan(bytes, None);
    let reason = match &s.state {
        VerifyState::Intact => return Err(SealError::AlreadySealed("intact")),
        VerifyState::Interrupted => return Err(SealError::AlreadySealed("interrupted")),
        VerifyState::Tampered { offset, reason } => {
            return Err(SealError::Tampered {
                offset: *offset,
                reason: reason.clone(),
            });
        }
        VerifyState::Incomplete { reason, .. } => reason.clone(),
    };
    let (Some(header), Some(prev)) = (&s.header, s.prev) else {
        return Err(SealError::NoHeader);
    };
    let body = TrailerBody {
        flags: FLAG_SEALED_AFTER_INTERRUPTION,
        chunk_count: s.chunks,
        record_count: s.records,
        end_us: s.last_us,
        final_hash: prev,
        public_key: [0; 32],
        index: s.index.entries().to_vec(),
    };
    let trailer = format::encode_trailer(&header.hash, &body, key.signing_key(), s.prefix_end);
    Ok(SealPlan {
        keep_len: s.prefix_end,
        trailer,
        reason,
        chunks: s.chunks,
        records: s.records,
        final_hash: hex::encode(prev),
    })
}

/// Seals the recording file at `path` in place: truncates a partial last frame, appends the
/// trailer, fsyncs. Returns the new summary and the plan's reason.
pub fn seal_file(path: &Path, key: &RecordingKey) -> Result<(RecordingSummary, String), SealError> {
    use std::io::Write;
    let io = |e: std::io::Error| SealError::Io(format!("{}: {e}", path.display()));
    let bytes = std::fs::read(path).map_err(io)?;
    let plan = seal(&bytes, key)?;
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io)?;
    f.set_len(plan.keep_len).map_err(io)?;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io)?;
    f.write_all(&plan.trailer).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok((
        RecordingSummary {
            location: path.display().to_string(),
            size: plan.keep_len + plan.trailer.len() as u64,
            final_hash: plan.final_hash,
            chunks: plan.chunks,
            records: plan.records,
        },
        plan.reason,
    ))
}

/// Metadata of a recording, for `sekisho recording info`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordingInfo {
    /// Format version.
    pub format_version: u16,
    /// Session id.
    pub session_id: String,
    /// Protocol.
    pub protocol: String,
    /// User, if known.
    pub user: Option<String>,
    /// Contractor, if known.
    pub contractor: Option<String>,
    /// Client address.
    pub source: String,
    /// Target.
    pub target: String,
    /// Start, RFC 3339 UTC.
    pub start_time: Option<String>,
    /// End, RFC 3339 UTC (trailer end time, else last record).
    pub end_time: Option<String>,
    /// Duration in seconds.
    pub duration_seconds: f64,
    /// Protocol metadata from the header.
    pub metadata: BTreeMap<String, String>,
    /// Size in bytes.
    pub size: u64,
    /// Chunks verified.
    pub chunks: u32,
    /// Records verified.
    pub records: u64,
    /// Verification result.
    pub verification: VerifyReport,
}

/// Reads the header and verifies the rest (without a trusted key; pass one to [`verify`]).
pub fn info(bytes: &[u8]) -> Result<RecordingInfo, crate::reader::ReadError> {
    let (frame, _) = decode_header(bytes)?.ok_or(crate::reader::ReadError::HeaderIncomplete)?;
    let report = verify(bytes, None);
    let h = &frame.header;
    let rfc = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    };
    let end = h
        .start_unix_us
        .saturating_add(i64::try_from(report.end_us).unwrap_or(i64::MAX));
    Ok(RecordingInfo {
        format_version: frame.version,
        session_id: h.session_id.to_string(),
        protocol: h.protocol.clone(),
        user: h.user.clone(),
        contractor: h.contractor.clone(),
        source: h.source.clone(),
        target: h.target.clone(),
        start_time: rfc(h.start_unix_us),
        end_time: rfc(end),
        duration_seconds: report.end_us as f64 / 1e6,
        metadata: h.metadata.clone(),
        size: bytes.len() as u64,
        chunks: report.chunks,
        records: report.records,
        verification: report,
    })
}
