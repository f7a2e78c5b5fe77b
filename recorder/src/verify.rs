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
    self, ChunkHistory, FLAG_SEALED_AFTER_INTERRUPTION, Frame, Hash, HeaderFrame, IndexBuilder,
    IndexEntry, TrailerBody, decode_frame, decode_header,
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
    /// Chunk offsets, first times and whether each is a seek point, by sequence, to check
    /// the trailer's index (24 bytes a chunk, not the chunks themselves).
    offsets: Vec<ChunkPlace>,
    /// The tail of the current segment, which the next chunk may refer back to.
    history: ChunkHistory,
    signer: Option<SignerInfo>,
    state: VerifyState,
}

/// Verification as a sans-IO machine: the caller feeds the recording's bytes in order and
/// the verifier consumes whole frames, so no more than one frame (at most
/// [`MAX_VERIFY_FRAME`] bytes) has to be in memory at a time, whatever the file's size.
/// [`verify`] feeds a whole slice at once; [`verify_reader`] streams a file through it.
pub struct Verifier {
    /// Keys a trailer may be signed by; empty: any (self-consistency only).
    trusted: Vec<VerifyingKey>,
    s: Scan,
    /// File offset of the next byte to feed.
    pos: u64,
    /// The verdict of a trailer that checked out: only the end of the input may follow it.
    sealed: Option<VerifyState>,
    /// A verdict reached before the end (tampered): later bytes change nothing.
    failed: Option<VerifyState>,
}

/// The largest frame a verifier may need whole before it can consume it: a trailer with a
/// full seek index (the largest chunk, [`format::MAX_CHUNK_COMPRESSED`] plus its prefix and
/// hash, is smaller). Longer declared lengths are refused from the frame's prefix alone.
pub const MAX_VERIFY_FRAME: usize =
    format::TRAILER_PREFIX_LEN + format::MAX_TRAILER_BODY + format::TRAILER_SUFFIX_LEN;

impl Verifier {
    /// A verifier that will accept only a trailer signed by `trusted` (see [`verify`]).
    pub fn new(trusted: Option<&VerifyingKey>) -> Self {
        Self::trusting(trusted.map(std::slice::from_ref).unwrap_or_default())
    }

    /// A verifier that will accept a trailer signed by any of `keys` (the instances sharing
    /// a catalogue each sign their own recordings); none: any key, as [`Verifier::new`]
    /// without one.
    pub fn trusting(keys: &[VerifyingKey]) -> Self {
        Verifier {
            trusted: keys.to_vec(),
            s: Scan {
                header: None,
                chunks: 0,
                records: 0,
                last_us: 0,
                end_us: 0,
                prev: None,
                prefix_end: 0,
                index: IndexBuilder::new(),
                offsets: Vec::new(),
                history: ChunkHistory::new(),
                signer: None,
                state: VerifyState::Intact,
            },
            pos: 0,
            sealed: None,
            failed: None,
        }
    }

    /// Whether the verdict is already known (tampered): feeding more changes nothing.
    pub fn is_done(&self) -> bool {
        self.failed.is_some()
    }

    /// Verifies the whole frames at the start of `buf`, which holds the bytes that follow
    /// those consumed so far, and returns how many bytes it consumed. The rest (a frame not
    /// yet whole) must be fed again, with more bytes after it.
    pub fn feed(&mut self, buf: &[u8]) -> usize {
        let mut used = 0;
        loop {
            if self.failed.is_some() {
                return used;
            }
            let rest = buf.get(used..).unwrap_or_default();
            if rest.is_empty() {
                return used;
            }
            if self.sealed.is_some() {
                self.failed = Some(tampered(self.pos, "bytes after trailer"));
                return used;
            }
            match self.step(rest) {
                Some(n) => {
                    used += n;
                    self.pos += n as u64;
                }
                None => return used,
            }
        }
    }

    /// The verdict, once the input has ended: `rest` is what was fed last and not consumed,
    /// `size` the input's length.
    pub fn finish(mut self, rest: &[u8], size: u64) -> VerifyReport {
        let used = self.feed(rest);
        let rest = rest.get(used..).unwrap_or_default();
        let s = self.end(rest);
        VerifyReport {
            state: s.state.clone(),
            size,
            chunks: s.chunks,
            records: s.records,
            end_us: s.end_us,
            header_hash: s.header.as_ref().map(|h| hex::encode(h.hash)),
            final_hash: s.prev.map(hex::encode),
            signer: s.signer,
        }
    }

    /// The scan at the end of the input; `rest` is the unconsumed tail (less than a frame).
    fn end(mut self, rest: &[u8]) -> Scan {
        let incomplete = |s: &Scan, reason: &str| VerifyState::Incomplete {
            last_good_chunk: s.chunks.checked_sub(1),
            offset: s.prefix_end,
            reason: reason.to_string(),
        };
        self.s.state = if let Some(state) = self.failed.take() {
            state
        } else if let Some(state) = self.sealed.take() {
            if rest.is_empty() {
                state
            } else {
                tampered(self.pos, "bytes after trailer")
            }
        } else if self.s.header.is_none() {
            incomplete(&self.s, "header truncated")
        } else if rest.is_empty() {
            incomplete(&self.s, "trailer missing")
        } else if rest.starts_with(b"SKT") {
            incomplete(&self.s, "trailer truncated")
        } else {
            incomplete(&self.s, "chunk truncated")
        };
        self.s
    }

    /// Checks the frame at the start of `rest` (at file offset `self.pos`): `Some(length)`
    /// once consumed, `None` when it is not whole yet or a verdict was reached.
    fn step(&mut self, rest: &[u8]) -> Option<usize> {
        let pos = self.pos;
        let Some(prev) = self.s.prev else {
            return match decode_header(rest) {
                Ok(Some((header, used))) => {
                    self.s.prev = Some(header.hash);
                    self.s.header = Some(header);
                    self.s.prefix_end = used as u64;
                    Some(used)
                }
                Ok(None) => None,
                Err(e) => {
                    self.failed = Some(tampered(0, format!("header: {e}")));
                    None
                }
            };
        };
        let header_hash = self.s.header.as_ref().map(|h| h.hash).unwrap_or(prev);
        let (frame, used) = match decode_frame(rest) {
            Ok(Some(f)) => f,
            Ok(None) => return None,
            Err(e) => {
                self.failed = Some(tampered(pos, e.to_string()));
                return None;
            }
        };
        let s = &mut self.s;
        let verdict = match frame {
            Frame::Chunk(c) => {
                let hash = c.expected_hash(&prev);
                if c.seq != s.chunks {
                    let how = if c.seq < s.chunks {
                        "repeated or reordered"
                    } else {
                        "missing or reordered"
                    };
                    Err(format!(
                        "chunk sequence {} where {} expected ({how} chunk)",
                        c.seq, s.chunks
                    ))
                } else if !c.check_matches(&hash) {
                    Err(format!("hash chain mismatch at chunk {}", c.seq))
                } else if c.first_us < s.last_us {
                    Err(format!("chunk {} goes back in time", c.seq))
                } else if s.header.as_ref().map(|h| h.version) != Some(c.version) {
                    Err(format!(
                        "chunk {} is of format version {}, the header of another",
                        c.seq, c.version
                    ))
                } else {
                    match s.history.records(&c) {
                        Err(e) => Err(format!("chunk {}: {e}", c.seq)),
                        Ok(records)
                            if records
                                .iter()
                                .any(|r| r.at_us < c.first_us || r.at_us > c.last_us)
                                || records.first().map(|r| r.at_us) != Some(c.first_us)
                                || records.last().map(|r| r.at_us) != Some(c.last_us) =>
                        {
                            Err(format!("chunk {} time range mismatch", c.seq))
                        }
                        Ok(_) => {
                            if c.is_seek_point() {
                                s.index.push(IndexEntry {
                                    seq: c.seq,
                                    first_us: c.first_us,
                                    offset: pos,
                                });
                            }
                            s.offsets.push(ChunkPlace {
                                offset: pos,
                                first_us: c.first_us,
                                seek_point: c.is_seek_point(),
                            });
                            s.prev = Some(hash);
                            s.chunks += 1;
                            s.records += u64::from(c.record_count);
                            s.last_us = c.last_us;
                            s.end_us = c.last_us;
                            s.prefix_end = pos + used as u64;
                            Ok(None)
                        }
                    }
                }
            }
            Frame::Trailer(t) => {
                check_trailer(s, &t, header_hash, prev, pos, &self.trusted).map(Some)
            }
        };
        match verdict {
            Ok(None) => Some(used),
            Ok(Some(state)) => {
                self.sealed = Some(state);
                Some(used)
            }
            Err(reason) => {
                self.failed = Some(tampered(pos, reason));
                None
            }
        }
    }
}

/// Checks a trailer at `pos` against everything scanned before it: the verdict, or why it
/// is tampered.
fn check_trailer(
    s: &mut Scan,
    t: &format::TrailerFrame,
    header_hash: Hash,
    prev: Hash,
    pos: u64,
    trusted: &[VerifyingKey],
) -> Result<VerifyState, String> {
    let key = t
        .verify_signature(&header_hash)
        .map_err(|_| "trailer signature invalid".to_string())?;
    let trusted_ok = (!trusted.is_empty()).then(|| trusted.contains(&key));
    s.signer = Some(SignerInfo {
        public_key: hex::encode(key.to_bytes()),
        fingerprint: fingerprint_bytes(&key.to_bytes()),
        trusted: trusted_ok,
    });
    if trusted_ok == Some(false) {
        return Err(format!(
            "signed by another key ({})",
            fingerprint_bytes(&key.to_bytes())
        ));
    }
    let b = &t.body;
    if b.chunk_count != s.chunks {
        return Err(format!(
            "trailer counts {} chunks, file has {} (chunks dropped or added)",
            b.chunk_count, s.chunks
        ));
    }
    if t.trailer_offset != pos {
        return Err("trailer offset mismatch".into());
    }
    if b.final_hash != prev {
        return Err("trailer final hash mismatch".into());
    }
    if b.record_count != s.records {
        return Err("trailer record count mismatch".into());
    }
    if b.end_us < s.last_us {
        return Err("trailer end time before last record".into());
    }
    if let Some(reason) = check_index(&b.index, &s.offsets) {
        return Err(reason);
    }
    s.end_us = b.end_us;
    Ok(if b.flags & FLAG_SEALED_AFTER_INTERRUPTION != 0 {
        VerifyState::Interrupted
    } else {
        VerifyState::Intact
    })
}

fn scan(bytes: &[u8], trusted: Option<&VerifyingKey>) -> Scan {
    let mut v = Verifier::new(trusted);
    let used = v.feed(bytes);
    v.end(bytes.get(used..).unwrap_or_default())
}

fn tampered(offset: u64, reason: impl Into<String>) -> VerifyState {
    VerifyState::Tampered {
        offset,
        reason: reason.into(),
    }
}

/// Where a verified chunk is, for checking the trailer's seek index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ChunkPlace {
    offset: u64,
    first_us: u64,
    seek_point: bool,
}

/// Every entry must name a seek point (a chunk readable alone: every chunk in version 1) by
/// its real offset and first time, in ascending order.
fn check_index(index: &[IndexEntry], offsets: &[ChunkPlace]) -> Option<String> {
    let mut last: Option<u32> = None;
    for e in index {
        if last.is_some_and(|l| e.seq <= l) {
            return Some("seek index out of order".into());
        }
        last = Some(e.seq);
        let actual = offsets.get(usize::try_from(e.seq).unwrap_or(usize::MAX));
        let expected = ChunkPlace {
            offset: e.offset,
            first_us: e.first_us,
            seek_point: true,
        };
        if actual != Some(&expected) {
            return Some(format!("seek index entry for chunk {} is wrong", e.seq));
        }
    }
    None
}

/// Verifies a whole recording. With `trusted`, a trailer signed by any other key is
/// [`VerifyState::Tampered`]; without it the signature is checked against the key in the
/// trailer, which only proves the file was not altered after signing by *someone*: auditors
/// should pass the instance's public key.
pub fn verify(bytes: &[u8], trusted: Option<&VerifyingKey>) -> VerifyReport {
    let mut v = Verifier::new(trusted);
    let used = v.feed(bytes);
    v.finish(bytes.get(used..).unwrap_or_default(), bytes.len() as u64)
}

/// How much [`verify_reader`] asks its reader for at a time.
const READ_BLOCK: usize = 256 * 1024;

/// A [`Verifier`] fed blocks of any size, in order (a file read a block at a time, the range
/// reads of an object): it keeps the tail that is not yet a whole frame.
pub struct StreamVerifier {
    v: Verifier,
    /// INVARIANT: less than one frame: `feed` consumes every whole frame, and refuses a frame
    /// whose prefix declares more than [`MAX_VERIFY_FRAME`] bytes.
    pending: Vec<u8>,
}

impl StreamVerifier {
    /// See [`Verifier::new`].
    pub fn new(trusted: Option<&VerifyingKey>) -> Self {
        StreamVerifier {
            v: Verifier::new(trusted),
            pending: Vec::new(),
        }
    }

    /// See [`Verifier::trusting`].
    pub fn trusting(keys: &[VerifyingKey]) -> Self {
        StreamVerifier {
            v: Verifier::trusting(keys),
            pending: Vec::new(),
        }
    }

    /// Whether the verdict is already known (tampered): later bytes change nothing.
    pub fn is_done(&self) -> bool {
        self.v.is_done()
    }

    /// Feeds the next bytes of the recording.
    pub fn push(&mut self, block: &[u8]) {
        if self.v.is_done() {
            return;
        }
        if self.pending.is_empty() {
            // The usual case: whole frames straight from the block, only the tail is kept.
            let used = self.v.feed(block);
            self.pending
                .extend_from_slice(block.get(used..).unwrap_or_default());
        } else {
            self.pending.extend_from_slice(block);
            let used = self.v.feed(&self.pending);
            self.pending.drain(..used);
        }
    }

    /// The verdict; `size` is the recording's whole length (bytes after a tampered frame are
    /// counted, not fed).
    pub fn finish(self, size: u64) -> VerifyReport {
        self.v.finish(&self.pending, size)
    }

    /// Plans sealing what was fed, as [`seal`] does for a slice. Build the verifier without
    /// a trusted key.
    pub fn seal_plan(mut self, key: &RecordingKey) -> Result<SealPlan, SealError> {
        let used = self.v.feed(&self.pending);
        let s = self.v.end(self.pending.get(used..).unwrap_or_default());
        plan(s, key)
    }
}

/// Like [`verify`], reading the recording from `reader` a block at a time: memory stays
/// under one frame ([`MAX_VERIFY_FRAME`]) plus one block and the scan's 16 bytes a chunk,
/// whatever the recording's size. After a tampered frame the rest is only counted.
pub fn verify_reader<R: std::io::Read>(
    reader: R,
    trusted: Option<&VerifyingKey>,
) -> std::io::Result<VerifyReport> {
    verify_reader_trusting(
        reader,
        trusted.map(std::slice::from_ref).unwrap_or_default(),
    )
}

/// [`verify_reader`] accepting a trailer signed by any of `keys` (see [`Verifier::trusting`]).
pub fn verify_reader_trusting<R: std::io::Read>(
    mut reader: R,
    keys: &[VerifyingKey],
) -> std::io::Result<VerifyReport> {
    let mut v = StreamVerifier::trusting(keys);
    let mut block = vec![0u8; READ_BLOCK];
    let mut size = 0u64;
    loop {
        if v.is_done() {
            size += std::io::copy(&mut reader, &mut std::io::sink())?;
            break;
        }
        let n = match reader.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        size += n as u64;
        v.push(block.get(..n).unwrap_or_default());
    }
    Ok(v.finish(size))
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
    plan(scan(bytes, None), key)
}

/// The seal plan for a finished scan (see [`seal`]).
fn plan(s: Scan, key: &RecordingKey) -> Result<SealPlan, SealError> {
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
/// trailer, fsyncs. Returns the new summary and the plan's reason. The file is read a block at
/// a time, so sealing a long recording needs no more memory than verifying it.
pub fn seal_file(path: &Path, key: &RecordingKey) -> Result<(RecordingSummary, String), SealError> {
    use std::io::{Read, Write};
    let io = |e: std::io::Error| SealError::Io(format!("{}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut v = StreamVerifier::new(None);
    let mut block = vec![0u8; READ_BLOCK];
    loop {
        let n = match file.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io(e)),
        };
        v.push(block.get(..n).unwrap_or_default());
        if v.is_done() {
            break;
        }
    }
    drop(file);
    let plan = v.seal_plan(key)?;
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
    Ok(info_of(&frame, verify(bytes, None)))
}

/// The metadata of a recording from its header frame and its verification report (the way a
/// reader of an object store builds it: a range read of the header, a streamed verification).
pub fn info_of(frame: &HeaderFrame, report: VerifyReport) -> RecordingInfo {
    let h = &frame.header;
    let rfc = |us: i64| {
        chrono::DateTime::from_timestamp_micros(us)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
    };
    let end = h
        .start_unix_us
        .saturating_add(i64::try_from(report.end_us).unwrap_or(i64::MAX));
    RecordingInfo {
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
        size: report.size,
        chunks: report.chunks,
        records: report.records,
        verification: report,
    }
}
