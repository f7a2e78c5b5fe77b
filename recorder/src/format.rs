//! Sans-IO codec for Sekisho recordings (`.skrec`): bytes ↔ header, chunks, records, trailer.
//!
//! No I/O, no clock: times are passed in. The byte layout is specified in
//! [`docs/recording-format.md`][spec]; this module is its reference implementation, and the
//! constants below are quoted there.
//!
//! A file is `Header Chunk* Trailer?`:
//! - the header carries the session's identity and the metadata a player needs, and ends with
//!   its BLAKE3 hash (the *header hash*, the seed of the hash chain);
//! - each chunk is a zstd frame of records with a sequence number, a time range and a chain
//!   hash `BLAKE3(previous hash ‖ chunk bytes)`;
//! - the trailer holds the seek index, the counts and an ed25519 signature.
//!
//! Decoders follow the house pattern: `Ok(None)` means "need more bytes", an error means the
//! bytes can never become valid.
//!
//! [spec]: ../../../docs/recording-format.md

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// File magic: PNG-style, so text-mode transfers (CR/LF mangling) and 7-bit channels break it
/// visibly instead of silently.
pub const FILE_MAGIC: [u8; 8] = *b"\x89SKREC\r\n";
/// The format version this crate writes. It reads this one and [`FORMAT_VERSION_1`].
pub const FORMAT_VERSION: u16 = 2;
/// The first format version: every chunk compressed on its own. Still read, never written
/// (except by [`Encoder::with_version`], for tests of old recordings).
pub const FORMAT_VERSION_1: u16 = 1;
/// Magic opening every chunk frame of a version-2 recording.
pub const CHUNK_MAGIC: [u8; 4] = *b"SKC2";
/// Magic opening every chunk frame of a version-1 recording.
pub const CHUNK_MAGIC_V1: [u8; 4] = *b"SKCK";
/// Magic opening the trailer frame.
pub const TRAILER_MAGIC: [u8; 4] = *b"SKTR";
/// Magic closing the file (after the trailer), so a reader of the last 16 bytes (an object
/// store range request) finds the trailer without scanning.
pub const END_MAGIC: [u8; 8] = *b"SKRECEND";
/// Domain separation for the trailer signature, so a Sekisho key signing anything else can
/// never produce a valid recording trailer.
pub const SIGNATURE_CONTEXT: &[u8] = b"sekisho-recording-trailer-v1\0";

/// Trailer flag: the trailer was written by `seal` over the recovered prefix of a recording
/// whose writer stopped without finishing (crash, power loss, disk full).
pub const FLAG_SEALED_AFTER_INTERRUPTION: u8 = 0x01;

/// Length of every hash in the format (BLAKE3).
pub const HASH_LEN: usize = 32;

/// Header body cap: the header holds a few names and a small metadata map; 64 KiB is ample and
/// keeps a hostile file from making us allocate before anything is checked.
pub const MAX_HEADER_SIZE: usize = 64 * 1024;
/// Cap on names in the header and event detail text (user, target, reasons): bytes of UTF-8.
pub const MAX_STRING_LEN: usize = 4096;
/// Cap on one metadata value (e.g. an RDP negotiated state summary or an RFB pixel format).
pub const MAX_METADATA_VALUE_LEN: usize = 16 * 1024;
/// Cap on metadata entries: players need a handful (terminal size, pixel format, …).
pub const MAX_METADATA_ENTRIES: usize = 256;
/// Cap on one record's payload (data, keyframe): the largest RDP fast-path PDU is far below,
/// and a full-screen keyframe of a 4K display at 4 bytes per pixel is 32 MiB, so keyframes
/// bigger than this must be split or compressed by the caller.
pub const MAX_RECORD_PAYLOAD: usize = 4 * 1024 * 1024;
/// Cap on a chunk's decompressed size: the writer closes a chunk at 1 MiB by default, plus one
/// record that may be up to [`MAX_RECORD_PAYLOAD`]; twice that leaves room.
pub const MAX_CHUNK_UNCOMPRESSED: usize = 8 * 1024 * 1024;
/// Cap on a chunk's compressed size: zstd's worst-case expansion of incompressible input is
/// well under 1/128.
pub const MAX_CHUNK_COMPRESSED: usize = MAX_CHUNK_UNCOMPRESSED + MAX_CHUNK_UNCOMPRESSED / 128;
/// Cap on records in one chunk: the smallest record is 13 bytes, so a full chunk holds fewer
/// than 650 000.
pub const MAX_RECORDS_PER_CHUNK: u32 = 1 << 20;
/// Cap on the number of chunks: about 194 days at one chunk per second.
pub const MAX_CHUNKS: u32 = 1 << 24;
/// Cap on seek index entries (20 bytes each, so a 20 MiB trailer at most). Longer recordings
/// get a sparser index (every 2nd, 4th, … chunk).
pub const MAX_INDEX_ENTRIES: usize = 1 << 20;
/// Fixed part of the trailer body.
pub const TRAILER_FIXED_LEN: usize = 1 + 4 + 8 + 8 + HASH_LEN + 32 + 4;
/// One index entry: seq u32, first time u64, file offset u64.
pub const INDEX_ENTRY_LEN: usize = 4 + 8 + 8;
/// Cap on the trailer body.
pub const MAX_TRAILER_BODY: usize = TRAILER_FIXED_LEN + MAX_INDEX_ENTRIES * INDEX_ENTRY_LEN;

/// Header frame prefix: magic, version u16, body length u32.
pub const HEADER_PREFIX_LEN: usize = 8 + 2 + 4;
/// Largest chunk frame prefix of version 2: magic, the fields' length (u8), then seven LEB128
/// fields (seq, first time, span, record count, uncompressed length, compressed length,
/// history length) of at most 10 bytes each.
pub const MAX_CHUNK_PREFIX_LEN: usize = 4 + 1 + 7 * 10;
/// Chunk frame prefix of version 1: magic, seq, first, last, record count, uncompressed and
/// compressed length, fixed width.
pub const CHUNK_PREFIX_LEN_V1: usize = 4 + 4 + 8 + 8 + 4 + 4 + 4;
/// The stored check of a version-2 chunk: the first bytes of its chain hash. The chain itself
/// is computed with whole hashes and the trailer signs the whole final one, so the check only
/// has to catch damage early and say which chunk; anyone able to alter a chunk could
/// recompute a stored hash of any length.
pub const CHUNK_CHECK_LEN: usize = 8;
/// Largest chunk frame of either version.
pub const MAX_CHUNK_FRAME: usize = MAX_CHUNK_PREFIX_LEN + MAX_CHUNK_COMPRESSED + HASH_LEN;
/// Cap on a chunk's history: the decompressed bytes of the chunks before it (in its segment)
/// that its zstd frame may refer back to. The writer uses far less (64 KiB for text).
pub const MAX_HISTORY: usize = 1024 * 1024;
/// zstd's dictionary magic. A history is raw content; one that starts with these bytes would
/// be read by zstd as a structured dictionary, so the writer never produces one and readers
/// refuse it.
pub const ZSTD_DICTIONARY_MAGIC: [u8; 4] = [0x37, 0xA4, 0x30, 0xEC];
/// Trailer frame prefix: magic, body length.
pub const TRAILER_PREFIX_LEN: usize = 4 + 4;
/// Trailer frame suffix: signature, trailer offset u64, end magic.
pub const TRAILER_SUFFIX_LEN: usize = 64 + 8 + 8;
/// Record prefix of version 1: tag u8, time u64, body length u32.
pub const RECORD_PREFIX_LEN: usize = 1 + 8 + 4;
/// Largest record prefix of either version (version 2: tag, LEB128 time distance of up to 10
/// bytes, LEB128 body length of up to 5).
pub const MAX_RECORD_PREFIX_LEN: usize = 1 + 10 + 5;

const TAG_DATA: u8 = 0x01;
const TAG_EVENT: u8 = 0x02;
const TAG_KEYFRAME: u8 = 0x03;

/// A BLAKE3 hash as stored in the format.
pub type Hash = [u8; HASH_LEN];

/// A bytes read from a recording can never form a valid frame (a hostile or damaged file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes do not start with the expected magic.
    #[error("bad {what} magic")]
    BadMagic {
        /// Which frame.
        what: &'static str,
    },
    /// A format version this reader does not know.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u16),
    /// A declared length or count exceeds its `MAX_*` limit.
    #[error("{what} {len} exceeds limit {max}")]
    LimitExceeded {
        /// Which length.
        what: &'static str,
        /// Declared value.
        len: u64,
        /// Limit.
        max: u64,
    },
    /// A structure ended before its declared content.
    #[error("{0} truncated")]
    Truncated(&'static str),
    /// Text that is not UTF-8.
    #[error("{0} is not utf-8")]
    InvalidUtf8(&'static str),
    /// The header's stored hash does not match its bytes.
    #[error("header hash mismatch")]
    HeaderHashMismatch,
    /// The zstd payload is invalid or does not match its declared size.
    #[error("chunk payload invalid: {0}")]
    Payload(String),
    /// A field holds a value the format forbids.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Caller misuse while encoding (a value the format cannot carry).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string, payload or count is over its `MAX_*` limit.
    #[error("{what} of {len} exceeds limit {max}")]
    TooLong {
        /// Which value.
        what: &'static str,
        /// Its length.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// zstd refused to compress (out of memory).
    #[error("compression failed: {0}")]
    Compression(String),
}

/// A logical channel inside a session: SSH channel number, RDP static/dynamic channel id, or 0
/// for single-stream protocols (serial console, VNC).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct ChannelId(pub u32);

impl fmt::Display for ChannelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<u32> for ChannelId {
    fn from(v: u32) -> Self {
        ChannelId(v)
    }
}

impl From<u16> for ChannelId {
    fn from(v: u16) -> Self {
        ChannelId(u32::from(v))
    }
}

/// Who sent the bytes of a data record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// From the contractor's client towards the target (keystrokes, input).
    ClientToServer,
    /// From the target towards the client (screen output).
    ServerToClient,
}

impl Direction {
    fn code(self) -> u8 {
        match self {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        }
    }
}

/// The typed kind of an event record. New kinds may be added; unknown codes decode as
/// [`EventKind::Other`] so older readers keep working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum EventKind {
    /// The display or terminal size changed (columns/rows for text, pixels for graphics).
    Resize {
        /// Columns or pixels.
        width: u32,
        /// Rows or pixels.
        height: u32,
    },
    /// A channel was removed from the negotiation (e.g. RDP clipboard, drive redirection).
    ChannelStripped,
    /// Clipboard data was dropped.
    ClipboardDropped,
    /// An SFTP/SCP subsystem request was refused.
    SftpRefused,
    /// A port/agent/X11 forwarding request was refused.
    ForwardingRefused,
    /// The session was killed (emergency stop).
    SessionKilled,
    /// Some data could not be recorded; the recording has a gap from here.
    RecordingTruncated,
    /// A policy decision or note during the session.
    Policy,
    /// Free-form annotation.
    Note,
    /// The user became known after the recording started (transparent RDP).
    UserIdentified,
    /// A kind this reader does not know: its code and raw parameters.
    Other {
        /// Wire code.
        code: u16,
        /// Raw parameters.
        params: Vec<u8>,
    },
}

impl EventKind {
    /// The wire code of this kind.
    pub fn code(&self) -> u16 {
        match self {
            EventKind::Resize { .. } => 1,
            EventKind::ChannelStripped => 2,
            EventKind::ClipboardDropped => 3,
            EventKind::SftpRefused => 4,
            EventKind::ForwardingRefused => 5,
            EventKind::SessionKilled => 6,
            EventKind::RecordingTruncated => 7,
            EventKind::Policy => 8,
            EventKind::Note => 9,
            EventKind::UserIdentified => 10,
            EventKind::Other { code, .. } => *code,
        }
    }

    /// A stable lowercase name (for catalogue events and JSON).
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::Resize { .. } => "resize",
            EventKind::ChannelStripped => "channel-stripped",
            EventKind::ClipboardDropped => "clipboard-dropped",
            EventKind::SftpRefused => "sftp-refused",
            EventKind::ForwardingRefused => "forwarding-refused",
            EventKind::SessionKilled => "session-killed",
            EventKind::RecordingTruncated => "recording-truncated",
            EventKind::Policy => "policy",
            EventKind::Note => "note",
            EventKind::UserIdentified => "user-identified",
            EventKind::Other { .. } => "other",
        }
    }

    fn params(&self) -> Vec<u8> {
        match self {
            EventKind::Resize { width, height } => {
                let mut p = Vec::with_capacity(8);
                p.extend_from_slice(&width.to_le_bytes());
                p.extend_from_slice(&height.to_le_bytes());
                p
            }
            EventKind::Other { params, .. } => params.clone(),
            _ => Vec::new(),
        }
    }

    fn from_wire(code: u16, params: &[u8]) -> Result<EventKind, DecodeError> {
        Ok(match code {
            1 => {
                let mut c = Cursor::new(params, "resize parameters");
                let width = c.u32()?;
                let height = c.u32()?;
                EventKind::Resize { width, height }
            }
            2 => EventKind::ChannelStripped,
            3 => EventKind::ClipboardDropped,
            4 => EventKind::SftpRefused,
            5 => EventKind::ForwardingRefused,
            6 => EventKind::SessionKilled,
            7 => EventKind::RecordingTruncated,
            8 => EventKind::Policy,
            9 => EventKind::Note,
            10 => EventKind::UserIdentified,
            code => EventKind::Other {
                code,
                params: params.to_vec(),
            },
        })
    }
}

/// An event record's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// Free text for people (never a secret), at most [`MAX_STRING_LEN`] bytes.
    pub detail: String,
}

/// What a record carries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecordKind {
    /// Bytes relayed in one direction on one channel.
    Data {
        /// Who sent them.
        direction: Direction,
        /// Which channel.
        channel: ChannelId,
        /// The bytes, at most [`MAX_RECORD_PAYLOAD`].
        bytes: Bytes,
    },
    /// Something happened (resize, policy event, …).
    Event(Event),
    /// A protocol snapshot a player can start from (terminal screen, framebuffer).
    Keyframe {
        /// Which channel it describes.
        channel: ChannelId,
        /// Protocol-specific snapshot, at most [`MAX_RECORD_PAYLOAD`].
        bytes: Bytes,
    },
    /// A record type this reader does not know (newer writer): kept raw.
    Unknown {
        /// Wire tag.
        tag: u8,
        /// Raw body.
        body: Bytes,
    },
}

impl RecordKind {
    /// The most bytes this record occupies once encoded, in either version (for memory
    /// accounting and chunk sizing).
    pub fn encoded_len(&self) -> usize {
        MAX_RECORD_PREFIX_LEN
            + match self {
                RecordKind::Data { bytes, .. } => 1 + 4 + bytes.len(),
                RecordKind::Event(e) => 2 + 2 + e.kind.params().len() + e.detail.len(),
                RecordKind::Keyframe { bytes, .. } => 4 + bytes.len(),
                RecordKind::Unknown { body, .. } => body.len(),
            }
    }
}

/// A timestamped record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Microseconds since the header's start time.
    pub at_us: u64,
    /// Content.
    pub kind: RecordKind,
}

/// The recording's header: who, what, when, and what a player needs to decode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The session (UUIDv7 in Sekisho).
    pub session_id: Uuid,
    /// Protocol name as in interfaces.md: `rdp`, `ssh`, `console-serial`, `console-vnc`.
    pub protocol: String,
    /// Sekisho user, if known at start (empty on the wire means unknown).
    pub user: Option<String>,
    /// Contractor, if known.
    pub contractor: Option<String>,
    /// Client address (VDI desktop or console-reached server).
    pub source: String,
    /// Target name (or address when unnamed).
    pub target: String,
    /// Start, microseconds since the Unix epoch, UTC. Record times are offsets from it.
    pub start_unix_us: i64,
    /// Protocol metadata for players: e.g. `term.cols`, `rfb.pixel-format`, `rdp.desktop-size`.
    pub metadata: BTreeMap<String, String>,
}

impl Header {
    /// The start time as a chrono value (`None` if out of chrono's range).
    pub fn start_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp_micros(self.start_unix_us)
    }
}

/// A decoded header frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderFrame {
    /// Format version of the file.
    pub version: u16,
    /// The header.
    pub header: Header,
    /// BLAKE3 of the header frame bytes before the hash: seed of the hash chain.
    pub hash: Hash,
}

/// A chunk frame, borrowed from the input; its payload is decompressed on demand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkFrame<'a> {
    /// Sequence number, 0 for the first chunk.
    pub seq: u32,
    /// Time of the first record (µs since start).
    pub first_us: u64,
    /// Time of the last record.
    pub last_us: u64,
    /// Records in the payload.
    pub record_count: u32,
    /// Decompressed payload size.
    pub uncompressed_len: u32,
    /// How many bytes of the segment's decompressed history (the chunks before this one,
    /// since the last seek point) the zstd frame refers back to; 0 = a seek point, readable
    /// alone. Always 0 in version 1.
    pub history_len: u32,
    /// Format version of the chunk frame (by its magic).
    pub version: u16,
    /// Bytes covered by the chain hash: prefix and compressed payload.
    pub covered: &'a [u8],
    /// The zstd frame.
    pub payload: &'a [u8],
    /// The stored check of the chain hash: all of it in version 1, its first
    /// [`CHUNK_CHECK_LEN`] bytes in version 2.
    pub check: &'a [u8],
}

impl ChunkFrame<'_> {
    /// The chain hash this chunk must carry if `prev` is the previous chunk's chain hash (or
    /// the header hash for chunk 0).
    pub fn expected_hash(&self, prev: &Hash) -> Hash {
        chain_hash(prev, self.covered)
    }

    /// Whether the stored check matches `hash`, this chunk's chain hash as computed.
    pub fn check_matches(&self, hash: &Hash) -> bool {
        hash.get(..self.check.len()) == Some(self.check)
    }

    /// Whether the chunk decodes alone: a place a reader can start from.
    pub fn is_seek_point(&self) -> bool {
        self.history_len == 0
    }

    /// Decompresses (bounded by [`MAX_CHUNK_UNCOMPRESSED`] and the declared size, checked
    /// before allocating) and decodes the records of a seek point. A chunk that depends on
    /// the ones before it is decoded through a [`ChunkHistory`] instead.
    pub fn records(&self) -> Result<Vec<Record>, DecodeError> {
        if !self.is_seek_point() {
            return Err(DecodeError::Invalid(
                "chunk read without the chunks before it",
            ));
        }
        ChunkHistory::new().records(self)
    }
}

/// What a reader keeps between the chunks of a segment: the tail of their decompressed
/// payloads, which a chunk's zstd frame may refer back to (`history_len`). Feed it every chunk
/// from a seek point on, in order.
///
/// INVARIANT: `bytes` holds at most 2 × [`MAX_HISTORY`] bytes, the newest last.
#[derive(Debug, Clone, Default)]
pub struct ChunkHistory {
    bytes: Vec<u8>,
}

impl ChunkHistory {
    /// An empty history, as at a seek point.
    pub fn new() -> Self {
        ChunkHistory::default()
    }

    /// Decompresses a chunk's payload: alone at a seek point, otherwise against the history
    /// it declares, which must be there (the chunks before it since the last seek point were
    /// fed). Then remembers the payload for the chunks after it.
    pub fn payload(&mut self, c: &ChunkFrame<'_>) -> Result<Vec<u8>, DecodeError> {
        let wanted = u32_len(c.history_len);
        if wanted == 0 {
            self.bytes.clear();
        }
        check_limit("chunk history", wanted, MAX_HISTORY)?;
        let from = self
            .bytes
            .len()
            .checked_sub(wanted)
            .ok_or(DecodeError::Invalid(
                "chunk history longer than the segment before it",
            ))?;
        let history = self.bytes.get(from..).unwrap_or_default();
        if history.starts_with(&ZSTD_DICTIONARY_MAGIC) {
            return Err(DecodeError::Invalid(
                "chunk history starts with the zstd dictionary magic",
            ));
        }
        let raw = decompress_payload_with(c.payload, c.uncompressed_len, history)?;
        if c.version != FORMAT_VERSION_1 {
            self.remember(&raw);
        }
        Ok(raw)
    }

    /// [`Self::payload`], decoded into records (their count checked).
    pub fn records(&mut self, c: &ChunkFrame<'_>) -> Result<Vec<Record>, DecodeError> {
        let raw = self.payload(c)?;
        let records = decode_chunk_records(&raw, c.version, c.first_us)?;
        if records.len() != c.record_count as usize {
            return Err(DecodeError::Invalid("chunk record count"));
        }
        Ok(records)
    }

    fn remember(&mut self, raw: &[u8]) {
        if raw.len() >= MAX_HISTORY {
            self.bytes.clear();
            self.bytes
                .extend_from_slice(raw.get(raw.len() - MAX_HISTORY..).unwrap_or_default());
            return;
        }
        self.bytes.extend_from_slice(raw);
        if self.bytes.len() > 2 * MAX_HISTORY {
            let drop = self.bytes.len() - MAX_HISTORY;
            self.bytes.drain(..drop);
        }
    }
}

/// One seek index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Chunk sequence number.
    pub seq: u32,
    /// Time of the chunk's first record (µs since start).
    pub first_us: u64,
    /// Byte offset of the chunk's magic in the file.
    pub offset: u64,
}

/// The signed content of the trailer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailerBody {
    /// Flags, see [`FLAG_SEALED_AFTER_INTERRUPTION`].
    pub flags: u8,
    /// Number of chunks in the file.
    pub chunk_count: u32,
    /// Number of records in all chunks.
    pub record_count: u64,
    /// End of the recording (µs since start).
    pub end_us: u64,
    /// Chain hash of the last chunk (the header hash when there is no chunk).
    pub final_hash: Hash,
    /// The ed25519 public key that signed this trailer.
    pub public_key: [u8; 32],
    /// Seek index, ascending by seq.
    pub index: Vec<IndexEntry>,
}

/// A decoded trailer frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrailerFrame {
    /// Signed content.
    pub body: TrailerBody,
    /// BLAKE3 of the encoded body.
    pub body_hash: Hash,
    /// ed25519 signature.
    pub signature: [u8; 64],
    /// Offset of the trailer magic, as written.
    pub trailer_offset: u64,
}

impl TrailerFrame {
    /// Checks the signature against the key embedded in the trailer.
    pub fn verify_signature(&self, header_hash: &Hash) -> Result<VerifyingKey, DecodeError> {
        let key = VerifyingKey::from_bytes(&self.body.public_key)
            .map_err(|_| DecodeError::Invalid("trailer public key"))?;
        let msg = signature_message(header_hash, &self.body_hash);
        let sig = Signature::from_bytes(&self.signature);
        // verify_strict: also rejects weak keys and malleable signatures.
        key.verify_strict(&msg, &sig)
            .map_err(|_| DecodeError::Invalid("trailer signature"))?;
        Ok(key)
    }
}

/// A frame after the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A chunk of records.
    Chunk(ChunkFrame<'a>),
    /// The trailer.
    Trailer(TrailerFrame),
}

/// `BLAKE3(prev ‖ covered)`.
pub fn chain_hash(prev: &Hash, covered: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(prev);
    h.update(covered);
    *h.finalize().as_bytes()
}

/// The message the trailer signature covers:
/// `SIGNATURE_CONTEXT ‖ header hash ‖ BLAKE3(trailer body)`.
pub fn signature_message(header_hash: &Hash, body_hash: &Hash) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNATURE_CONTEXT.len() + 2 * HASH_LEN);
    m.extend_from_slice(SIGNATURE_CONTEXT);
    m.extend_from_slice(header_hash);
    m.extend_from_slice(body_hash);
    m
}

// ---------------------------------------------------------------------------------------------
// Decoding

/// A bounds-checked reader over a complete structure; running out is an error.
struct Cursor<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8], what: &'static str) -> Self {
        Cursor { buf, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let (head, tail) = self
            .buf
            .split_at_checked(n)
            .ok_or(DecodeError::Truncated(self.what))?;
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// An unsigned LEB128 integer of at most 10 bytes that fits in 64 bits.
    fn leb128(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && bits > 1 {
                return Err(DecodeError::Invalid("integer over 64 bits"));
            }
            v |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Invalid("integer over 64 bits"))
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_le_bytes(self.array()?))
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    fn string(&mut self, what: &'static str, max: usize) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        check_limit(what, len, max)?;
        let b = self.take(len)?;
        String::from_utf8(b.to_vec()).map_err(|_| DecodeError::InvalidUtf8(what))
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

fn check_limit(what: &'static str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max {
        return Err(DecodeError::LimitExceeded {
            what,
            len: len as u64,
            max: max as u64,
        });
    }
    Ok(())
}

fn u32_len(v: u32) -> usize {
    // u32 always fits usize on the 32/64-bit targets Sekisho supports.
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// Decodes the header frame at the start of a file.
///
/// Returns `Ok(None)` while `buf` holds less than the whole header frame.
pub fn decode_header(buf: &[u8]) -> Result<Option<(HeaderFrame, usize)>, DecodeError> {
    // Check the magic on whatever prefix we have so garbage fails fast.
    let have = buf.len().min(FILE_MAGIC.len());
    if buf.get(..have) != FILE_MAGIC.get(..have) {
        return Err(DecodeError::BadMagic { what: "file" });
    }
    let Some(prefix) = buf.get(..HEADER_PREFIX_LEN) else {
        return Ok(None);
    };
    let mut c = Cursor::new(prefix, "header");
    let _magic: [u8; 8] = c.array()?;
    let version = c.u16()?;
    if version != FORMAT_VERSION && version != FORMAT_VERSION_1 {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let body_len = u32_len(c.u32()?);
    check_limit("header length", body_len, MAX_HEADER_SIZE)?;
    let total = HEADER_PREFIX_LEN + body_len + HASH_LEN;
    let Some(frame) = buf.get(..total) else {
        return Ok(None);
    };
    let (hashed, stored) = frame
        .split_at_checked(HEADER_PREFIX_LEN + body_len)
        .ok_or(DecodeError::Truncated("header"))?;
    let hash = *blake3::hash(hashed).as_bytes();
    if hash != stored {
        return Err(DecodeError::HeaderHashMismatch);
    }
    let body = hashed
        .get(HEADER_PREFIX_LEN..)
        .ok_or(DecodeError::Truncated("header"))?;
    let header = decode_header_body(body)?;
    Ok(Some((
        HeaderFrame {
            version,
            header,
            hash,
        },
        total,
    )))
}

fn opt(s: String) -> Option<String> {
    if s.is_empty() { None } else { Some(s) }
}

fn decode_header_body(body: &[u8]) -> Result<Header, DecodeError> {
    let mut c = Cursor::new(body, "header");
    let session_id = Uuid::from_bytes(c.array()?);
    let start_unix_us = c.i64()?;
    let protocol = c.string("protocol", MAX_STRING_LEN)?;
    let user = opt(c.string("user", MAX_STRING_LEN)?);
    let contractor = opt(c.string("contractor", MAX_STRING_LEN)?);
    let source = c.string("source", MAX_STRING_LEN)?;
    let target = c.string("target", MAX_STRING_LEN)?;
    let count = usize::from(c.u16()?);
    check_limit("metadata entries", count, MAX_METADATA_ENTRIES)?;
    let mut metadata = BTreeMap::new();
    for _ in 0..count {
        let k = c.string("metadata key", MAX_STRING_LEN)?;
        let v = c.string("metadata value", MAX_METADATA_VALUE_LEN)?;
        if metadata.insert(k, v).is_some() {
            return Err(DecodeError::Invalid("duplicate metadata key"));
        }
    }
    // Bytes after the known fields are reserved for compatible additions and ignored.
    Ok(Header {
        session_id,
        protocol,
        user,
        contractor,
        source,
        target,
        start_unix_us,
        metadata,
    })
}

/// Decodes the next chunk or trailer frame (after the header).
///
/// Returns `Ok(None)` while `buf` holds less than the whole frame. Chunk payloads are not
/// decompressed here (see [`ChunkFrame::records`]) so the hash can be checked first.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, DecodeError> {
    let have = buf.len().min(4);
    let head = buf.get(..have).unwrap_or_default();
    let magics = [CHUNK_MAGIC, CHUNK_MAGIC_V1, TRAILER_MAGIC];
    if have < 4 {
        // Every magic starts with "SK": a short prefix of one is not decided yet.
        return if magics.iter().any(|m| m.starts_with(head)) {
            Ok(None)
        } else {
            Err(DecodeError::BadMagic { what: "frame" })
        };
    }
    if head == CHUNK_MAGIC {
        decode_chunk(buf, FORMAT_VERSION)
    } else if head == CHUNK_MAGIC_V1 {
        decode_chunk(buf, FORMAT_VERSION_1)
    } else if head == TRAILER_MAGIC {
        decode_trailer(buf)
    } else {
        Err(DecodeError::BadMagic { what: "frame" })
    }
}

/// The fields of a chunk frame's prefix, in either version's encoding.
struct ChunkFields {
    seq: u32,
    first_us: u64,
    last_us: u64,
    record_count: u32,
    uncompressed_len: u32,
    compressed_len: usize,
    history_len: u32,
}

/// Version 1: fixed-width fields.
fn decode_chunk_fields_v1(prefix: &[u8]) -> Result<ChunkFields, DecodeError> {
    let mut c = Cursor::new(prefix, "chunk");
    let _magic: [u8; 4] = c.array()?;
    Ok(ChunkFields {
        seq: c.u32()?,
        first_us: c.u64()?,
        last_us: c.u64()?,
        record_count: c.u32()?,
        uncompressed_len: c.u32()?,
        compressed_len: u32_len(c.u32()?),
        history_len: 0,
    })
}

/// Version 2: a length byte, then LEB128 fields (time as first and span); the fields must
/// fill the declared length exactly.
fn decode_chunk_fields_v2(prefix: &[u8]) -> Result<ChunkFields, DecodeError> {
    let mut c = Cursor::new(prefix, "chunk");
    let _magic: [u8; 4] = c.array()?;
    let _len = c.u8()?;
    let narrow = |v: u64, what: &'static str| {
        u32::try_from(v).map_err(|_| DecodeError::LimitExceeded {
            what,
            len: v,
            max: u64::from(u32::MAX),
        })
    };
    let seq = narrow(c.leb128()?, "chunk sequence")?;
    let first_us = c.leb128()?;
    let span = c.leb128()?;
    let last_us = first_us
        .checked_add(span)
        .ok_or(DecodeError::Invalid("chunk time range"))?;
    let fields = ChunkFields {
        seq,
        first_us,
        last_us,
        record_count: narrow(c.leb128()?, "chunk record count")?,
        uncompressed_len: narrow(c.leb128()?, "chunk uncompressed length")?,
        compressed_len: u32_len(narrow(c.leb128()?, "chunk compressed length")?),
        history_len: narrow(c.leb128()?, "chunk history")?,
    };
    if !c.rest().is_empty() {
        return Err(DecodeError::Invalid("chunk prefix length"));
    }
    Ok(fields)
}

fn decode_chunk(buf: &[u8], version: u16) -> Result<Option<(Frame<'_>, usize)>, DecodeError> {
    let v1 = version == FORMAT_VERSION_1;
    let prefix_len = if v1 {
        CHUNK_PREFIX_LEN_V1
    } else {
        let Some(&len) = buf.get(CHUNK_MAGIC.len()) else {
            return Ok(None);
        };
        CHUNK_MAGIC.len() + 1 + usize::from(len)
    };
    let Some(prefix) = buf.get(..prefix_len) else {
        return Ok(None);
    };
    let ChunkFields {
        seq,
        first_us,
        last_us,
        record_count,
        uncompressed_len,
        compressed_len,
        history_len,
    } = if v1 {
        decode_chunk_fields_v1(prefix)?
    } else {
        decode_chunk_fields_v2(prefix)?
    };
    check_limit("chunk history", u32_len(history_len), MAX_HISTORY)?;
    check_limit("chunk sequence", seq as usize, MAX_CHUNKS as usize - 1)?;
    check_limit(
        "chunk record count",
        record_count as usize,
        MAX_RECORDS_PER_CHUNK as usize,
    )?;
    check_limit(
        "chunk uncompressed length",
        u32_len(uncompressed_len),
        MAX_CHUNK_UNCOMPRESSED,
    )?;
    check_limit(
        "chunk compressed length",
        compressed_len,
        MAX_CHUNK_COMPRESSED,
    )?;
    if first_us > last_us {
        return Err(DecodeError::Invalid("chunk time range"));
    }
    let covered_len = prefix_len + compressed_len;
    let check_len = if v1 { HASH_LEN } else { CHUNK_CHECK_LEN };
    let total = covered_len + check_len;
    let Some(frame) = buf.get(..total) else {
        return Ok(None);
    };
    let (covered, check) = frame
        .split_at_checked(covered_len)
        .ok_or(DecodeError::Truncated("chunk"))?;
    let payload = covered
        .get(prefix_len..)
        .ok_or(DecodeError::Truncated("chunk"))?;
    Ok(Some((
        Frame::Chunk(ChunkFrame {
            seq,
            first_us,
            last_us,
            record_count,
            uncompressed_len,
            history_len,
            version,
            covered,
            payload,
            check,
        }),
        total,
    )))
}

fn decode_trailer(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, DecodeError> {
    let Some(prefix) = buf.get(..TRAILER_PREFIX_LEN) else {
        return Ok(None);
    };
    let mut c = Cursor::new(prefix, "trailer");
    let _magic: [u8; 4] = c.array()?;
    let body_len = u32_len(c.u32()?);
    check_limit("trailer length", body_len, MAX_TRAILER_BODY)?;
    if body_len < TRAILER_FIXED_LEN {
        return Err(DecodeError::Truncated("trailer body"));
    }
    let total = TRAILER_PREFIX_LEN + body_len + TRAILER_SUFFIX_LEN;
    let Some(frame) = buf.get(..total) else {
        return Ok(None);
    };
    let mut c = Cursor::new(
        frame.get(TRAILER_PREFIX_LEN..).unwrap_or_default(),
        "trailer",
    );
    let body_bytes = c.take(body_len)?;
    let signature: [u8; 64] = c.array()?;
    let trailer_offset = c.u64()?;
    let end: [u8; 8] = c.array()?;
    if end != END_MAGIC {
        return Err(DecodeError::BadMagic { what: "end" });
    }
    let body = decode_trailer_body(body_bytes)?;
    Ok(Some((
        Frame::Trailer(TrailerFrame {
            body,
            body_hash: *blake3::hash(body_bytes).as_bytes(),
            signature,
            trailer_offset,
        }),
        total,
    )))
}

fn decode_trailer_body(b: &[u8]) -> Result<TrailerBody, DecodeError> {
    let mut c = Cursor::new(b, "trailer body");
    let flags = c.u8()?;
    let chunk_count = c.u32()?;
    let record_count = c.u64()?;
    let end_us = c.u64()?;
    let final_hash: Hash = c.array()?;
    let public_key: [u8; 32] = c.array()?;
    let n = u32_len(c.u32()?);
    check_limit("index entries", n, MAX_INDEX_ENTRIES)?;
    check_limit("chunk count", chunk_count as usize, MAX_CHUNKS as usize)?;
    if flags & !FLAG_SEALED_AFTER_INTERRUPTION != 0 {
        return Err(DecodeError::Invalid("trailer flags"));
    }
    // The entry count must match the bytes present: no allocation from the count alone.
    if c.buf.len() != n * INDEX_ENTRY_LEN {
        return Err(DecodeError::Invalid("index length"));
    }
    let mut index = Vec::with_capacity(n);
    for _ in 0..n {
        index.push(IndexEntry {
            seq: c.u32()?,
            first_us: c.u64()?,
            offset: c.u64()?,
        });
    }
    Ok(TrailerBody {
        flags,
        chunk_count,
        record_count,
        end_us,
        final_hash,
        public_key,
        index,
    })
}

thread_local! {
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::zstd_safe::DCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Decompresses a seek point's payload: see [`decompress_payload_with`].
pub fn decompress_payload(payload: &[u8], declared: u32) -> Result<Vec<u8>, DecodeError> {
    decompress_payload_with(payload, declared, &[])
}

/// Decompresses a chunk payload: a single zstd frame whose declared content size must equal
/// `declared` (itself ≤ [`MAX_CHUNK_UNCOMPRESSED`]), checked before allocating; decompression
/// is bounded by that size. `history` is the raw-content prefix the frame may refer back to
/// (empty at a seek point).
pub fn decompress_payload_with(
    payload: &[u8],
    declared: u32,
    history: &[u8],
) -> Result<Vec<u8>, DecodeError> {
    let declared = u32_len(declared);
    check_limit(
        "chunk uncompressed length",
        declared,
        MAX_CHUNK_UNCOMPRESSED,
    )?;
    let size = zstd::zstd_safe::get_frame_content_size(payload)
        .map_err(|_| DecodeError::Payload("bad zstd frame header".into()))?
        .ok_or_else(|| DecodeError::Payload("zstd frame without content size".into()))?;
    if size != declared as u64 {
        return Err(DecodeError::Payload(
            "zstd content size differs from chunk".into(),
        ));
    }
    let frame_len = zstd::zstd_safe::find_frame_compressed_size(payload)
        .map_err(|_| DecodeError::Payload("bad zstd frame".into()))?;
    if frame_len != payload.len() {
        return Err(DecodeError::Payload("bytes after zstd frame".into()));
    }
    let out = DECOMPRESSOR.with(|cell| {
        // A zstd context is costly to create; reuse one per thread. `try_borrow_mut` cannot
        // fail (no re-entrancy here) but is handled rather than assumed.
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| DecodeError::Payload("zstd context busy".into()))?;
        if slot.is_none() {
            *slot = Some(
                zstd::zstd_safe::DCtx::try_create()
                    .ok_or_else(|| DecodeError::Payload("zstd context: out of memory".into()))?,
            );
        }
        let d = slot
            .as_mut()
            .ok_or_else(|| DecodeError::Payload("zstd context".into()))?;
        // The output is bounded by `declared`, checked against the limit above.
        let mut out = Vec::with_capacity(declared);
        // The history is raw content: readers refuse one that zstd would parse as a
        // structured dictionary (see ZSTD_DICTIONARY_MAGIC), so auto-detection reads it raw.
        d.decompress_using_dict(&mut out, payload, history)
            .map_err(|code| {
                DecodeError::Payload(zstd::zstd_safe::get_error_name(code).to_lowercase())
            })?;
        Ok::<_, DecodeError>(out)
    })?;
    if out.len() != declared {
        return Err(DecodeError::Payload(
            "decompressed size differs from chunk".into(),
        ));
    }
    Ok(out)
}

/// Decodes the concatenated records of a decompressed chunk payload.
pub fn decode_records(mut buf: &[u8]) -> Result<Vec<Record>, DecodeError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (r, used) = decode_record(buf)?;
        out.push(r);
        buf = buf.get(used..).unwrap_or_default();
        if out.len() > MAX_RECORDS_PER_CHUNK as usize {
            return Err(DecodeError::LimitExceeded {
                what: "chunk record count",
                len: out.len() as u64,
                max: u64::from(MAX_RECORDS_PER_CHUNK),
            });
        }
    }
    Ok(out)
}

/// How a record's time is written: absolute (version 1: `u64`), or as the LEB128 distance
/// from the record before it in the chunk, the first one from the chunk's first time
/// (version 2, along with a LEB128 body length).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordTime {
    /// Version 1.
    Absolute,
    /// Version 2: the previous record's time (or the chunk's first time).
    After(u64),
}

/// Decodes the records of a decompressed chunk payload of format `version` whose first
/// record is at `first_us`.
pub fn decode_chunk_records(
    mut buf: &[u8],
    version: u16,
    first_us: u64,
) -> Result<Vec<Record>, DecodeError> {
    if version == FORMAT_VERSION_1 {
        return decode_records(buf);
    }
    let mut out = Vec::new();
    let mut prev = first_us;
    while !buf.is_empty() {
        let (r, used) = decode_record_with(buf, RecordTime::After(prev))?;
        prev = r.at_us;
        out.push(r);
        buf = buf.get(used..).unwrap_or_default();
        if out.len() > MAX_RECORDS_PER_CHUNK as usize {
            return Err(DecodeError::LimitExceeded {
                what: "chunk record count",
                len: out.len() as u64,
                max: u64::from(MAX_RECORDS_PER_CHUNK),
            });
        }
    }
    Ok(out)
}

/// Decodes one version-1 record from a complete payload.
pub fn decode_record(buf: &[u8]) -> Result<(Record, usize), DecodeError> {
    decode_record_with(buf, RecordTime::Absolute)
}

/// Decodes one record whose time is written as `time` says.
pub fn decode_record_with(buf: &[u8], time: RecordTime) -> Result<(Record, usize), DecodeError> {
    let mut c = Cursor::new(buf, "record");
    let tag = c.u8()?;
    let (at_us, len) = match time {
        RecordTime::Absolute => (c.u64()?, u32_len(c.u32()?)),
        RecordTime::After(prev) => {
            let at = prev
                .checked_add(c.leb128()?)
                .ok_or(DecodeError::Invalid("record time"))?;
            let len = usize::try_from(c.leb128()?).unwrap_or(usize::MAX);
            (at, len)
        }
    };
    let prefix_len = buf.len() - c.buf.len();
    // Body = payload plus at most a few bytes of fields (direction, channel, event code).
    check_limit(
        "record length",
        len,
        MAX_RECORD_PAYLOAD + 16 + MAX_STRING_LEN,
    )?;
    let body = c.take(len)?;
    let mut b = Cursor::new(body, "record body");
    let kind = match tag {
        TAG_DATA => {
            let direction = match b.u8()? {
                0 => Direction::ClientToServer,
                1 => Direction::ServerToClient,
                _ => return Err(DecodeError::Invalid("data direction")),
            };
            let channel = ChannelId(b.u32()?);
            let bytes = b.rest();
            check_limit("data length", bytes.len(), MAX_RECORD_PAYLOAD)?;
            RecordKind::Data {
                direction,
                channel,
                bytes: Bytes::copy_from_slice(bytes),
            }
        }
        TAG_EVENT => {
            let code = b.u16()?;
            let plen = usize::from(b.u16()?);
            let params = b.take(plen)?;
            let kind = EventKind::from_wire(code, params)?;
            let detail = b.rest();
            check_limit("event detail", detail.len(), MAX_STRING_LEN)?;
            let detail = String::from_utf8(detail.to_vec())
                .map_err(|_| DecodeError::InvalidUtf8("event detail"))?;
            RecordKind::Event(Event { kind, detail })
        }
        TAG_KEYFRAME => {
            let channel = ChannelId(b.u32()?);
            let bytes = b.rest();
            check_limit("keyframe length", bytes.len(), MAX_RECORD_PAYLOAD)?;
            RecordKind::Keyframe {
                channel,
                bytes: Bytes::copy_from_slice(bytes),
            }
        }
        0 => return Err(DecodeError::Invalid("record tag")),
        tag => RecordKind::Unknown {
            tag,
            body: Bytes::copy_from_slice(body),
        },
    };
    Ok((Record { at_us, kind }, prefix_len + len))
}

// ---------------------------------------------------------------------------------------------
// Encoding

fn put_str(out: &mut Vec<u8>, what: &'static str, s: &str, max: usize) -> Result<(), EncodeError> {
    if s.len() > max {
        return Err(EncodeError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    // max ≤ u16::MAX is asserted by the limits above (4096, 16384).
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::TooLong {
        what,
        len: s.len(),
        max: usize::from(u16::MAX),
    })?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Encodes the header frame of the current version; returns its bytes and the header hash.
pub fn encode_header(h: &Header) -> Result<(Vec<u8>, Hash), EncodeError> {
    encode_header_version(h, FORMAT_VERSION)
}

/// Encodes the header frame declaring `version` (tests write version 1 through this).
pub fn encode_header_version(h: &Header, version: u16) -> Result<(Vec<u8>, Hash), EncodeError> {
    let mut body = Vec::with_capacity(256);
    body.extend_from_slice(h.session_id.as_bytes());
    body.extend_from_slice(&h.start_unix_us.to_le_bytes());
    put_str(&mut body, "protocol", &h.protocol, MAX_STRING_LEN)?;
    put_str(
        &mut body,
        "user",
        h.user.as_deref().unwrap_or(""),
        MAX_STRING_LEN,
    )?;
    put_str(
        &mut body,
        "contractor",
        h.contractor.as_deref().unwrap_or(""),
        MAX_STRING_LEN,
    )?;
    put_str(&mut body, "source", &h.source, MAX_STRING_LEN)?;
    put_str(&mut body, "target", &h.target, MAX_STRING_LEN)?;
    if h.metadata.len() > MAX_METADATA_ENTRIES {
        return Err(EncodeError::TooLong {
            what: "metadata entries",
            len: h.metadata.len(),
            max: MAX_METADATA_ENTRIES,
        });
    }
    // Fits: MAX_METADATA_ENTRIES < u16::MAX.
    let n = u16::try_from(h.metadata.len()).unwrap_or(u16::MAX);
    body.extend_from_slice(&n.to_le_bytes());
    for (k, v) in &h.metadata {
        put_str(&mut body, "metadata key", k, MAX_STRING_LEN)?;
        put_str(&mut body, "metadata value", v, MAX_METADATA_VALUE_LEN)?;
    }
    if body.len() > MAX_HEADER_SIZE {
        return Err(EncodeError::TooLong {
            what: "header",
            len: body.len(),
            max: MAX_HEADER_SIZE,
        });
    }
    let mut out = Vec::with_capacity(HEADER_PREFIX_LEN + body.len() + HASH_LEN);
    out.extend_from_slice(&FILE_MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    let hash = *blake3::hash(&out).as_bytes();
    out.extend_from_slice(&hash);
    Ok((out, hash))
}

/// Appends `v` as unsigned LEB128 (7 bits a byte, low first, high bit = more).
fn put_leb128(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Checks that a record can be encoded (sizes within limits), without encoding it.
pub fn validate(kind: &RecordKind) -> Result<(), EncodeError> {
    record_tag_and_len(kind).map(|_| ())
}

fn record_tag_and_len(kind: &RecordKind) -> Result<(u8, usize), EncodeError> {
    let too_long = |what, len, max| EncodeError::TooLong { what, len, max };
    Ok(match kind {
        RecordKind::Data { bytes, .. } => {
            if bytes.len() > MAX_RECORD_PAYLOAD {
                return Err(too_long("data", bytes.len(), MAX_RECORD_PAYLOAD));
            }
            (TAG_DATA, 5 + bytes.len())
        }
        RecordKind::Event(e) => {
            if e.detail.len() > MAX_STRING_LEN {
                return Err(too_long("event detail", e.detail.len(), MAX_STRING_LEN));
            }
            let plen = e.kind.params().len();
            if plen > 256 {
                return Err(too_long("event parameters", plen, 256));
            }
            (TAG_EVENT, 4 + plen + e.detail.len())
        }
        RecordKind::Keyframe { bytes, .. } => {
            if bytes.len() > MAX_RECORD_PAYLOAD {
                return Err(too_long("keyframe", bytes.len(), MAX_RECORD_PAYLOAD));
            }
            (TAG_KEYFRAME, 4 + bytes.len())
        }
        RecordKind::Unknown { tag, body } => {
            if body.len() > MAX_RECORD_PAYLOAD || matches!(*tag, 0..=TAG_KEYFRAME) {
                return Err(too_long("unknown record", body.len(), MAX_RECORD_PAYLOAD));
            }
            (*tag, body.len())
        }
    })
}

/// Appends one version-1 record to `out`.
pub fn encode_record(r: &Record, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode_record_with(r, RecordTime::Absolute, out)
}

/// Appends one record to `out`, its time written as `time` says (`After(t)` needs
/// `r.at_us ≥ t`).
pub fn encode_record_with(
    r: &Record,
    time: RecordTime,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let (tag, body_len) = record_tag_and_len(&r.kind)?;
    out.reserve(MAX_RECORD_PREFIX_LEN + body_len);
    out.push(tag);
    match time {
        RecordTime::Absolute => {
            out.extend_from_slice(&r.at_us.to_le_bytes());
            // body_len ≤ MAX_RECORD_PAYLOAD + 5, far below u32::MAX.
            out.extend_from_slice(&(body_len as u32).to_le_bytes());
        }
        RecordTime::After(prev) => {
            let dt = r.at_us.checked_sub(prev).ok_or(EncodeError::TooLong {
                what: "record time before the previous one",
                len: 0,
                max: 0,
            })?;
            put_leb128(out, dt);
            put_leb128(out, body_len as u64);
        }
    }
    let start = out.len();
    match &r.kind {
        RecordKind::Data {
            direction,
            channel,
            bytes,
        } => {
            out.push(direction.code());
            out.extend_from_slice(&channel.0.to_le_bytes());
            out.extend_from_slice(bytes);
        }
        RecordKind::Event(e) => {
            let params = e.kind.params();
            out.extend_from_slice(&e.kind.code().to_le_bytes());
            out.extend_from_slice(&(params.len() as u16).to_le_bytes());
            out.extend_from_slice(&params);
            out.extend_from_slice(e.detail.as_bytes());
        }
        RecordKind::Keyframe { channel, bytes } => {
            out.extend_from_slice(&channel.0.to_le_bytes());
            out.extend_from_slice(bytes);
        }
        RecordKind::Unknown { body, .. } => out.extend_from_slice(body),
    }
    debug_assert_eq!(out.len() - start, body_len);
    Ok(())
}

/// A finished chunk ready to append.
#[derive(Debug, Clone)]
pub struct EncodedChunk {
    /// The frame bytes (prefix, payload, chain hash).
    pub bytes: Vec<u8>,
    /// Its chain hash.
    pub hash: Hash,
    /// Sequence number.
    pub seq: u32,
    /// First record time.
    pub first_us: u64,
    /// Last record time.
    pub last_us: u64,
    /// Records in it.
    pub record_count: u32,
    /// Payload size before compression.
    pub uncompressed_len: usize,
    /// Compressed alone: a reader can start here.
    pub seek_point: bool,
}

/// How a recording is compressed: chosen per protocol ([`Compression::for_protocol`]).
///
/// Text compresses far better with the chunks before it in view (a prompt, a `top` screen,
/// a log line repeat across seconds), and is small enough to afford a high level; bitmaps
/// are large, already dense, and arrive fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compression {
    /// zstd level.
    pub level: i32,
    /// How much of the segment's earlier decompressed bytes a chunk may refer back to (≤
    /// [`MAX_HISTORY`]); also what the writer keeps in memory for it. 0: every chunk alone.
    pub history_bytes: usize,
    /// A chunk becomes a seek point (compressed alone) once the segment since the last one
    /// holds this many decompressed bytes: the most a reader decodes to reach any chunk.
    pub segment_bytes: usize,
}

impl Compression {
    /// Terminal text (SSH, serial consoles).
    pub const TEXT: Compression = Compression {
        level: 9,
        history_bytes: 64 * 1024,
        // A seek reads (from an object store, by range) and decodes at most a segment:
        // 256 KiB of text is some 30 KB recorded; a seek point costs one chunk compressed
        // alone, a few hundred bytes.
        segment_bytes: 256 * 1024,
    };
    /// Screens (VNC, RDP): bitmaps, mostly compressed already by the protocol, arriving at
    /// tens of MB/s; level 1 keeps the recorder's share of a session's CPU small (level 3
    /// gains a few percent, `benches/ingest.rs`).
    pub const GRAPHICAL: Compression = Compression {
        level: 1,
        history_bytes: 64 * 1024,
        segment_bytes: 1024 * 1024,
    };

    /// The profile for a recording's `protocol` (its header's).
    pub fn for_protocol(protocol: &str) -> Compression {
        match protocol {
            "ssh" | "console-serial" => Compression::TEXT,
            _ => Compression::GRAPHICAL,
        }
    }

    fn check(&self) -> Result<(), EncodeError> {
        let levels = zstd::compression_level_range();
        if !levels.contains(&self.level) {
            return Err(EncodeError::Compression(format!(
                "zstd level {} outside {}..={}",
                self.level,
                levels.start(),
                levels.end()
            )));
        }
        if self.history_bytes > MAX_HISTORY {
            return Err(EncodeError::TooLong {
                what: "compression history",
                len: self.history_bytes,
                max: MAX_HISTORY,
            });
        }
        Ok(())
    }
}

/// Accumulates records for one chunk and compresses them, against the tail of the chunks
/// before it in the segment.
///
/// INVARIANT: `buf.len()` ≤ the caller's chunk limit + one record ≤ [`MAX_CHUNK_UNCOMPRESSED`]
/// as long as the limit given to [`ChunkBuilder::would_overflow`] is honoured; `history` holds
/// at most `compression.history_bytes`, the decompressed tail of the chunks written since the
/// last seek point.
pub struct ChunkBuilder {
    buf: Vec<u8>,
    first_us: u64,
    last_us: u64,
    count: u32,
    compression: Compression,
    version: u16,
    history: Vec<u8>,
    /// Chunks left to compress at [`INCOMPRESSIBLE_LEVEL`] before the profile's level is
    /// tried again (0: the profile's level).
    fast_chunks_left: u32,
}

/// The level for data the profile's level could not make smaller: a negative zstd level
/// leaves literals uncoded, and Huffman coding of literals that do not compress (random
/// pixels, payloads compressed or encrypted already) was most of the recorder's CPU in the
/// screen-heavy RDP bench. Matches are still found, so repeated content still shrinks.
const INCOMPRESSIBLE_LEVEL: i32 = -1;
/// A chunk the profile's level made less than 5 % smaller counts as incompressible.
const INCOMPRESSIBLE_RATIO: (usize, usize) = (19, 20);
/// Chunks compressed at [`INCOMPRESSIBLE_LEVEL`] before the profile's level is tried again:
/// a stream that turns compressible (the screen calms down) pays at most this many chunks of
/// weaker compression (eight seconds or 8 MiB of screen).
const INCOMPRESSIBLE_RUN: u32 = 8;

/// A builder keeps its buffer's capacity up to this when it goes idle
/// ([`ChunkBuilder::release_idle_memory`]); a larger buffer (a burst of output) is released
/// then, so an idle session does not hold its busiest chunk's memory. While busy it keeps the
/// buffer: allocating a fresh one for every megabyte screen cost more page faults than
/// compressing it.
const KEEP_BUFFER_CAPACITY: usize = 16 * 1024;

thread_local! {
    /// One zstd compression context per thread, shared by every recording that closes a
    /// chunk on this thread: a context keeps its tables after first use (about 1 MiB), and
    /// one per session was most of an idle session's memory. What a session carries from one
    /// chunk to the next is only its history bytes.
    static COMPRESSOR: std::cell::RefCell<Option<zstd::zstd_safe::CCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Compresses `src` as one zstd frame (with its content size) at `level`, referring back to
/// `history` (raw content; may be empty).
fn compress_chunk(level: i32, src: &[u8], history: &[u8]) -> Result<Vec<u8>, EncodeError> {
    COMPRESSOR.with(|cell| {
        // No re-entrancy here, so the borrow cannot fail; handled rather than assumed.
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| EncodeError::Compression("zstd context busy".into()))?;
        if slot.is_none() {
            *slot =
                Some(zstd::zstd_safe::CCtx::try_create().ok_or_else(|| {
                    EncodeError::Compression("zstd context: out of memory".into())
                })?);
        }
        let c = slot
            .as_mut()
            .ok_or_else(|| EncodeError::Compression("zstd context".into()))?;
        let mut out = Vec::with_capacity(zstd::zstd_safe::compress_bound(src.len()));
        c.compress_using_dict(&mut out, src, history, level)
            .map_err(|code| {
                EncodeError::Compression(zstd::zstd_safe::get_error_name(code).into())
            })?;
        Ok(out)
    })
}

impl fmt::Debug for ChunkBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChunkBuilder")
            .field("len", &self.buf.len())
            .field("count", &self.count)
            .field("history", &self.history.len())
            .finish_non_exhaustive()
    }
}

impl ChunkBuilder {
    /// A builder of version-2 chunks.
    pub fn new(compression: Compression) -> Result<Self, EncodeError> {
        Self::with_version(compression, FORMAT_VERSION)
    }

    /// A builder of chunks of format `version` (1: each alone, whatever the history setting).
    pub fn with_version(compression: Compression, version: u16) -> Result<Self, EncodeError> {
        compression.check()?;
        if version != FORMAT_VERSION && version != FORMAT_VERSION_1 {
            return Err(EncodeError::Compression(format!(
                "cannot write format version {version}"
            )));
        }
        Ok(ChunkBuilder {
            buf: Vec::new(),
            first_us: 0,
            last_us: 0,
            count: 0,
            compression,
            version,
            history: Vec::new(),
            fast_chunks_left: 0,
        })
    }

    /// The zstd level the next chunk is compressed at.
    pub fn next_level(&self) -> i32 {
        if self.fast_chunks_left > 0 {
            INCOMPRESSIBLE_LEVEL.min(self.compression.level)
        } else {
            self.compression.level
        }
    }

    /// Encoded bytes buffered.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// No record buffered.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Records buffered.
    pub fn record_count(&self) -> u32 {
        self.count
    }

    /// Drops the history and a buffer grown past [`KEEP_BUFFER_CAPACITY`] (an idle session
    /// holds neither); the next chunk is a seek point. Only between chunks.
    pub fn release_idle_memory(&mut self) {
        self.history = Vec::new();
        if self.buf.is_empty() && self.buf.capacity() > KEEP_BUFFER_CAPACITY {
            self.buf = Vec::new();
        }
    }

    /// Whether adding `record_len` encoded bytes would pass [`MAX_CHUNK_UNCOMPRESSED`] or the
    /// record cap: the chunk must be finished first.
    pub fn would_overflow(&self, record_len: usize) -> bool {
        self.buf.len() + record_len > MAX_CHUNK_UNCOMPRESSED || self.count >= MAX_RECORDS_PER_CHUNK
    }

    /// Adds a record. Times must not decrease (the writer clamps them); a smaller time is
    /// raised to the last one so the chunk's time range stays valid.
    pub fn push(&mut self, r: &Record) -> Result<(), EncodeError> {
        let at = r.at_us.max(self.last_us);
        let time = if self.version == FORMAT_VERSION_1 {
            RecordTime::Absolute
        } else if self.count == 0 {
            RecordTime::After(at)
        } else {
            RecordTime::After(self.last_us)
        };
        if at != r.at_us {
            let r = Record {
                at_us: at,
                kind: r.kind.clone(),
            };
            encode_record_with(&r, time, &mut self.buf)?;
        } else {
            encode_record_with(r, time, &mut self.buf)?;
        }
        if self.count == 0 {
            self.first_us = at;
        }
        self.last_us = at;
        self.count += 1;
        Ok(())
    }

    /// Compresses the buffered records into chunk `seq` chained to `prev`, and empties the
    /// builder (its time floor stays, so the next chunk starts no earlier). A `seek_point`
    /// chunk is compressed alone and starts a new segment.
    pub fn finish(
        &mut self,
        seq: u32,
        prev: &Hash,
        seek_point: bool,
    ) -> Result<EncodedChunk, EncodeError> {
        if self.buf.len() > MAX_CHUNK_UNCOMPRESSED {
            return Err(EncodeError::TooLong {
                what: "chunk",
                len: self.buf.len(),
                max: MAX_CHUNK_UNCOMPRESSED,
            });
        }
        let v1 = self.version == FORMAT_VERSION_1;
        if seek_point || v1 {
            self.history.clear();
        }
        let mut from = 0;
        // A history that opens with zstd's dictionary magic would not be read as raw content:
        // start one byte later (the magic cannot recur one byte on).
        while self
            .history
            .get(from..)
            .is_some_and(|h| h.starts_with(&ZSTD_DICTIONARY_MAGIC))
        {
            from += 1;
        }
        let history = self.history.get(from..).unwrap_or_default();
        let level = self.next_level();
        let compressed = compress_chunk(level, &self.buf, history)?;
        if self.fast_chunks_left > 0 {
            self.fast_chunks_left -= 1;
        } else if compressed.len() * INCOMPRESSIBLE_RATIO.1
            > self.buf.len() * INCOMPRESSIBLE_RATIO.0
        {
            self.fast_chunks_left = INCOMPRESSIBLE_RUN;
        }
        let mut out = Vec::with_capacity(MAX_CHUNK_PREFIX_LEN + compressed.len() + HASH_LEN);
        if v1 {
            out.extend_from_slice(&CHUNK_MAGIC_V1);
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&self.first_us.to_le_bytes());
            out.extend_from_slice(&self.last_us.to_le_bytes());
            out.extend_from_slice(&self.count.to_le_bytes());
            // Both ≤ MAX_CHUNK_COMPRESSED < u32::MAX (checked above; zstd's bound is below).
            out.extend_from_slice(&(self.buf.len() as u32).to_le_bytes());
            out.extend_from_slice(&(compressed.len() as u32).to_le_bytes());
        } else {
            let mut fields = Vec::with_capacity(MAX_CHUNK_PREFIX_LEN);
            for v in [
                u64::from(seq),
                self.first_us,
                self.last_us - self.first_us,
                u64::from(self.count),
                self.buf.len() as u64,
                compressed.len() as u64,
                history.len() as u64,
            ] {
                put_leb128(&mut fields, v);
            }
            out.extend_from_slice(&CHUNK_MAGIC);
            // ≤ 70 bytes: seven LEB128 integers of at most 10 bytes.
            out.push(fields.len() as u8);
            out.extend_from_slice(&fields);
        }
        out.extend_from_slice(&compressed);
        let hash = chain_hash(prev, &out);
        out.extend_from_slice(
            hash.get(..if v1 { HASH_LEN } else { CHUNK_CHECK_LEN })
                .unwrap_or(&hash),
        );
        let chunk = EncodedChunk {
            bytes: out,
            hash,
            seq,
            first_us: self.first_us,
            last_us: self.last_us,
            record_count: self.count,
            uncompressed_len: self.buf.len(),
            seek_point: history.is_empty(),
        };
        if !v1 {
            self.remember();
        }
        self.buf.clear();
        self.count = 0;
        self.first_us = self.last_us;
        Ok(chunk)
    }

    /// Keeps the tail of the chunk just written as history, up to the profile's size.
    fn remember(&mut self) {
        let cap = self.compression.history_bytes;
        if cap == 0 {
            return;
        }
        let keep_new = self.buf.len().min(cap);
        let keep_old = (cap - keep_new).min(self.history.len());
        self.history.drain(..self.history.len() - keep_old);
        self.history.extend_from_slice(
            self.buf
                .get(self.buf.len() - keep_new..)
                .unwrap_or_default(),
        );
    }
}

/// Encodes the trailer body.
pub fn encode_trailer_body(b: &TrailerBody) -> Vec<u8> {
    let mut out = Vec::with_capacity(TRAILER_FIXED_LEN + b.index.len() * INDEX_ENTRY_LEN);
    out.push(b.flags);
    out.extend_from_slice(&b.chunk_count.to_le_bytes());
    out.extend_from_slice(&b.record_count.to_le_bytes());
    out.extend_from_slice(&b.end_us.to_le_bytes());
    out.extend_from_slice(&b.final_hash);
    out.extend_from_slice(&b.public_key);
    let n = b.index.len().min(MAX_INDEX_ENTRIES);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    for e in b.index.iter().take(n) {
        out.extend_from_slice(&e.seq.to_le_bytes());
        out.extend_from_slice(&e.first_us.to_le_bytes());
        out.extend_from_slice(&e.offset.to_le_bytes());
    }
    out
}

/// Encodes and signs the trailer frame that will start at `trailer_offset`. The body's
/// `public_key` is set from `key`.
pub fn encode_trailer(
    header_hash: &Hash,
    body: &TrailerBody,
    key: &SigningKey,
    trailer_offset: u64,
) -> Vec<u8> {
    let mut body = body.clone();
    body.public_key = key.verifying_key().to_bytes();
    body.index.truncate(MAX_INDEX_ENTRIES);
    let enc = encode_trailer_body(&body);
    let body_hash = *blake3::hash(&enc).as_bytes();
    let sig = key.sign(&signature_message(header_hash, &body_hash));
    let mut out = Vec::with_capacity(TRAILER_PREFIX_LEN + enc.len() + TRAILER_SUFFIX_LEN);
    out.extend_from_slice(&TRAILER_MAGIC);
    out.extend_from_slice(&(enc.len() as u32).to_le_bytes());
    out.extend_from_slice(&enc);
    out.extend_from_slice(&sig.to_bytes());
    out.extend_from_slice(&trailer_offset.to_le_bytes());
    out.extend_from_slice(&END_MAGIC);
    out
}

/// Builds the seek index incrementally from the seek points, in order, thinning it (keeping
/// every 2nd entry and doubling the stride) when it reaches [`MAX_INDEX_ENTRIES`].
#[derive(Debug, Clone, Default)]
pub struct IndexBuilder {
    entries: Vec<IndexEntry>,
    /// Seek points offered so far.
    offered: u64,
    stride: u64,
}

impl IndexBuilder {
    /// An empty index.
    pub fn new() -> Self {
        IndexBuilder {
            entries: Vec::new(),
            offered: 0,
            stride: 1,
        }
    }

    /// Notes a seek point (in version 1, every chunk).
    pub fn push(&mut self, e: IndexEntry) {
        let n = self.offered;
        self.offered += 1;
        let stride = self.stride.max(1);
        if !n.is_multiple_of(stride) {
            return;
        }
        if self.entries.len() >= MAX_INDEX_ENTRIES {
            let mut i = 0usize;
            self.entries.retain(|_| {
                i += 1;
                (i - 1).is_multiple_of(2)
            });
            self.stride = stride.saturating_mul(2);
            if !n.is_multiple_of(self.stride) {
                return;
            }
        }
        self.entries.push(e);
    }

    /// The entries so far.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }
}

/// Largest chunk size an [`Encoder`] accepts: leaves room for one maximal record below
/// [`MAX_CHUNK_UNCOMPRESSED`], so closing at the size limit is the only way a chunk closes.
pub const MAX_CHUNK_TARGET: usize = MAX_CHUNK_UNCOMPRESSED - MAX_RECORD_PAYLOAD - 64 * 1024;

/// The whole-file encoder, sans-IO: header bytes, then chunks as they close, then the trailer.
/// The async writer drives it; tests and benchmarks use it directly.
///
/// INVARIANT: every chunk returned must be appended, in order, before the next one (the
/// encoder advances the hash chain and the file offset when it hands a chunk out).
#[derive(Debug)]
pub struct Encoder {
    builder: ChunkBuilder,
    chunk_bytes: usize,
    /// Decompressed bytes written since the last seek point.
    segment_bytes: usize,
    /// The chunk being built holds a keyframe: make it a seek point, so a player seeking to
    /// the keyframe decodes from its own chunk.
    keyframe_pending: bool,
    header_hash: Hash,
    prev: Hash,
    seq: u32,
    size: u64,
    records: u64,
    last_us: u64,
    index: IndexBuilder,
}

/// Counts of a finished encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderSummary {
    /// Total file size.
    pub size: u64,
    /// Final chain hash.
    pub final_hash: Hash,
    /// Chunks.
    pub chunks: u32,
    /// Records.
    pub records: u64,
}

impl Encoder {
    /// Starts a recording; returns the encoder and the header frame to write first.
    /// `chunk_bytes` is clamped to [`MAX_CHUNK_TARGET`].
    pub fn new(
        header: &Header,
        compression: Compression,
        chunk_bytes: usize,
    ) -> Result<(Encoder, Vec<u8>), EncodeError> {
        Self::with_version(header, compression, chunk_bytes, FORMAT_VERSION)
    }

    /// [`Encoder::new`] writing format `version`: 1 for tests that old recordings still read.
    pub fn with_version(
        header: &Header,
        compression: Compression,
        chunk_bytes: usize,
        version: u16,
    ) -> Result<(Encoder, Vec<u8>), EncodeError> {
        let builder = ChunkBuilder::with_version(compression, version)?;
        let (bytes, header_hash) = encode_header_version(header, version)?;
        let enc = Encoder {
            builder,
            chunk_bytes: chunk_bytes.clamp(1, MAX_CHUNK_TARGET),
            segment_bytes: 0,
            keyframe_pending: false,
            header_hash,
            prev: header_hash,
            seq: 0,
            size: bytes.len() as u64,
            records: 0,
            last_us: 0,
            index: IndexBuilder::new(),
        };
        Ok((enc, bytes))
    }

    /// Drops the compression history and a large chunk buffer (an idle session should hold
    /// neither): the next chunk is a seek point.
    pub fn release_idle_memory(&mut self) {
        self.builder.release_idle_memory();
    }

    /// Adds a record; returns a chunk when this record filled one.
    pub fn push(&mut self, r: &Record) -> Result<Option<EncodedChunk>, EncodeError> {
        if self.builder.would_overflow(r.kind.encoded_len()) {
            // Unreachable while chunk_bytes ≤ MAX_CHUNK_TARGET; refuse rather than overflow.
            return Err(EncodeError::TooLong {
                what: "chunk",
                len: self.builder.len() + r.kind.encoded_len(),
                max: MAX_CHUNK_UNCOMPRESSED,
            });
        }
        self.builder.push(r)?;
        if matches!(r.kind, RecordKind::Keyframe { .. }) {
            self.keyframe_pending = true;
        }
        self.records += 1;
        self.last_us = self.last_us.max(r.at_us);
        if self.builder.len() >= self.chunk_bytes {
            return self.flush();
        }
        Ok(None)
    }

    /// Closes the current chunk, if it holds any record (the 1 s timer).
    pub fn flush(&mut self) -> Result<Option<EncodedChunk>, EncodeError> {
        if self.builder.is_empty() {
            return Ok(None);
        }
        if self.seq >= MAX_CHUNKS {
            return Err(EncodeError::TooLong {
                what: "chunk count",
                len: self.seq as usize,
                max: MAX_CHUNKS as usize,
            });
        }
        let seek_point =
            self.keyframe_pending || self.segment_bytes >= self.builder.compression.segment_bytes;
        let chunk = self.builder.finish(self.seq, &self.prev, seek_point)?;
        self.keyframe_pending = false;
        if chunk.seek_point {
            self.segment_bytes = 0;
            self.index.push(IndexEntry {
                seq: chunk.seq,
                first_us: chunk.first_us,
                offset: self.size,
            });
        }
        self.segment_bytes += chunk.uncompressed_len;
        self.size += chunk.bytes.len() as u64;
        self.prev = chunk.hash;
        self.seq += 1;
        Ok(Some(chunk))
    }

    /// Bytes handed out so far (header and chunks).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Closes the last chunk and signs the trailer. `end_us` below the last record's time is
    /// raised to it. Write the returned chunk (if any), then the trailer.
    pub fn finish(
        mut self,
        end_us: u64,
        key: &SigningKey,
    ) -> Result<(Option<EncodedChunk>, Vec<u8>, EncoderSummary), EncodeError> {
        let last = self.flush()?;
        let body = TrailerBody {
            flags: 0,
            chunk_count: self.seq,
            record_count: self.records,
            end_us: end_us.max(self.last_us),
            final_hash: self.prev,
            public_key: [0; 32],
            index: self.index.entries().to_vec(),
        };
        let trailer = encode_trailer(&self.header_hash, &body, key, self.size);
        let summary = EncoderSummary {
            size: self.size + trailer.len() as u64,
            final_hash: self.prev,
            chunks: self.seq,
            records: self.records,
        };
        Ok((last, trailer, summary))
    }
}

/// Encodes a whole recording in memory (tests, tools).
pub fn encode_recording(
    header: &Header,
    records: &[Record],
    chunk_bytes: usize,
    end_us: u64,
    key: &SigningKey,
) -> Result<Vec<u8>, EncodeError> {
    let (mut enc, mut out) = Encoder::new(
        header,
        Compression::for_protocol(&header.protocol),
        chunk_bytes,
    )?;
    for r in records {
        if let Some(c) = enc.push(r)? {
            out.extend_from_slice(&c.bytes);
        }
    }
    let (last, trailer, _) = enc.finish(end_us, key)?;
    if let Some(c) = last {
        out.extend_from_slice(&c.bytes);
    }
    out.extend_from_slice(&trailer);
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn sample_header() -> Header {
        let mut metadata = BTreeMap::new();
        metadata.insert("term.cols".into(), "80".into());
        metadata.insert("term.rows".into(), "24".into());
        Header {
            session_id: Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0001),
            protocol: "ssh".into(),
            user: Some("tanaka".into()),
            contractor: Some("acme".into()),
            source: "127.0.10.11".into(),
            target: "web01".into(),
            start_unix_us: 1_764_000_000_000_000,
            metadata,
        }
    }

    #[test]
    fn header_round_trip_and_incremental() {
        let h = sample_header();
        let (bytes, hash) = encode_header(&h).unwrap();
        for n in 0..bytes.len() {
            assert_eq!(decode_header(&bytes[..n]).unwrap(), None, "prefix {n}");
        }
        let (f, used) = decode_header(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(f.header, h);
        assert_eq!(f.hash, hash);
    }

    #[test]
    fn header_rejects_bad_magic_and_version() {
        let (mut bytes, _) = encode_header(&sample_header()).unwrap();
        assert!(decode_header(b"GIF89a").is_err());
        bytes[8] = 9;
        assert_eq!(
            decode_header(&bytes),
            Err(DecodeError::UnsupportedVersion(9))
        );
    }

    #[test]
    fn header_length_limit_checked_before_reading() {
        let mut b = FILE_MAGIC.to_vec();
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_header(&b),
            Err(DecodeError::LimitExceeded { .. })
        ));
    }

    #[test]
    fn compression_bomb_refused() {
        // A chunk declaring a small size whose payload expands far beyond it.
        let big = vec![0u8; 1 << 20];
        let payload = zstd::bulk::compress(&big, 3).unwrap();
        assert!(decompress_payload(&payload, 1024).is_err());
        assert!(decompress_payload(&payload, 1 << 20).is_ok());
    }

    fn arb_kind() -> impl Strategy<Value = RecordKind> {
        let bytes = proptest::collection::vec(any::<u8>(), 0..300).prop_map(Bytes::from);
        prop_oneof![
            (any::<bool>(), any::<u32>(), bytes.clone()).prop_map(|(d, c, b)| {
                RecordKind::Data {
                    direction: if d {
                        Direction::ClientToServer
                    } else {
                        Direction::ServerToClient
                    },
                    channel: ChannelId(c),
                    bytes: b,
                }
            }),
            (any::<u32>(), any::<u32>(), ".{0,40}").prop_map(|(w, h, d)| {
                RecordKind::Event(Event {
                    kind: EventKind::Resize {
                        width: w,
                        height: h,
                    },
                    detail: d,
                })
            }),
            (2u16..2000, ".{0,40}").prop_map(|(code, d)| {
                RecordKind::Event(Event {
                    kind: EventKind::from_wire(code, &[]).unwrap(),
                    detail: d,
                })
            }),
            (any::<u32>(), bytes.clone()).prop_map(|(c, b)| RecordKind::Keyframe {
                channel: ChannelId(c),
                bytes: b
            }),
            (4u8..=255, bytes).prop_map(|(tag, body)| RecordKind::Unknown { tag, body }),
        ]
    }

    proptest! {
        #[test]
        fn records_round_trip(kinds in proptest::collection::vec((0u64..1_000_000, arb_kind()), 0..40)) {
            let mut t = 0;
            let recs: Vec<Record> = kinds.into_iter().map(|(dt, kind)| { t += dt; Record { at_us: t, kind } }).collect();
            let mut b = ChunkBuilder::new(Compression::TEXT).unwrap();
            for r in &recs { b.push(r).unwrap(); }
            let prev = [7u8; 32];
            let c = b.finish(0, &prev, true).unwrap();
            let (frame, used) = decode_frame(&c.bytes).unwrap().unwrap();
            prop_assert_eq!(used, c.bytes.len());
            let Frame::Chunk(ch) = frame else { panic!("not a chunk") };
            prop_assert!(ch.check_matches(&ch.expected_hash(&prev)));
            prop_assert_eq!(ch.expected_hash(&prev), c.hash);
            prop_assert_eq!(ch.records().unwrap(), recs);
            for n in 0..c.bytes.len() {
                prop_assert_eq!(decode_frame(&c.bytes[..n]).unwrap(), None);
            }
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_header(&data);
            let _ = decode_frame(&data);
            let _ = decode_records(&data);
            let _ = decode_chunk_records(&data, FORMAT_VERSION, 0);
        }
    }

    #[test]
    fn trailer_round_trip_and_signature() {
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let body = TrailerBody {
            flags: 0,
            chunk_count: 2,
            record_count: 10,
            end_us: 99,
            final_hash: [1; 32],
            public_key: [0; 32],
            index: vec![IndexEntry {
                seq: 0,
                first_us: 0,
                offset: 100,
            }],
        };
        let hh = [9u8; 32];
        let bytes = encode_trailer(&hh, &body, &key, 1234);
        let (Frame::Trailer(t), used) = decode_frame(&bytes).unwrap().unwrap() else {
            panic!("not a trailer")
        };
        assert_eq!(used, bytes.len());
        assert_eq!(t.trailer_offset, 1234);
        assert_eq!(t.body.index, body.index);
        assert!(t.verify_signature(&hh).is_ok());
        assert!(t.verify_signature(&[8u8; 32]).is_err());
    }

    #[test]
    fn builders_share_a_context_and_release_big_buffers() {
        let data = |n: usize, fill: u8| Record {
            at_us: 1,
            kind: RecordKind::Data {
                direction: Direction::ServerToClient,
                channel: ChannelId(0),
                bytes: Bytes::from(vec![fill; n]),
            },
        };
        // Interleaved builders at two levels on one thread: each chunk decodes to its own
        // records, and the same records give the same bytes whichever builder came first.
        let level = |level| Compression {
            level,
            ..Compression::GRAPHICAL
        };
        let mut a = ChunkBuilder::new(level(1)).unwrap();
        let mut b = ChunkBuilder::new(level(3)).unwrap();
        let mut a2 = ChunkBuilder::new(level(1)).unwrap();
        a.push(&data(200_000, b'a')).unwrap();
        b.push(&data(3_000, b'b')).unwrap();
        a2.push(&data(200_000, b'a')).unwrap();
        let ca = a.finish(0, &[0; 32], true).unwrap();
        let cb = b.finish(0, &[0; 32], true).unwrap();
        let ca2 = a2.finish(0, &[0; 32], true).unwrap();
        assert_eq!(ca.bytes, ca2.bytes);
        for (c, want) in [(&ca, data(200_000, b'a')), (&cb, data(3_000, b'b'))] {
            let (Frame::Chunk(ch), _) = decode_frame(&c.bytes).unwrap().unwrap() else {
                panic!("not a chunk")
            };
            assert_eq!(ch.records().unwrap(), vec![want]);
        }
        // A burst's buffer is kept while busy and let go once idle; a small one is kept.
        assert!(a.buf.capacity() > KEEP_BUFFER_CAPACITY);
        a.release_idle_memory();
        b.release_idle_memory();
        assert!(
            a.buf.capacity() <= KEEP_BUFFER_CAPACITY,
            "{}",
            a.buf.capacity()
        );
        assert!(b.buf.capacity() > 0 && b.buf.capacity() <= KEEP_BUFFER_CAPACITY);
        assert!(ChunkBuilder::new(level(i32::MAX)).is_err());
    }

    #[test]
    fn incompressible_chunks_skip_literal_coding_then_the_level_is_tried_again() {
        let data = |bytes: Vec<u8>| Record {
            at_us: 1,
            kind: RecordKind::Data {
                direction: Direction::ServerToClient,
                channel: ChannelId(0),
                bytes: Bytes::from(bytes),
            },
        };
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut noise = || {
            (0..65_536)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect::<Vec<u8>>()
        };
        let screen = |n: usize| (0..n).map(|i| (i / 64 % 7) as u8).collect::<Vec<u8>>();
        let mut b = ChunkBuilder::new(Compression::GRAPHICAL).unwrap();
        let chunk = |b: &mut ChunkBuilder, r: Record| {
            let level = b.next_level();
            b.push(&r).unwrap();
            let c = b.finish(0, &[0; 32], true).unwrap();
            // Whatever the level, the chunk decodes to what went in.
            let (Frame::Chunk(ch), _) = decode_frame(&c.bytes).unwrap().unwrap() else {
                panic!("not a chunk")
            };
            assert_eq!(ch.records().unwrap(), vec![r]);
            (level, c.bytes.len())
        };
        // Noise at the profile's level gains nothing: the next chunks skip literal coding.
        assert_eq!(chunk(&mut b, data(noise())).0, 1);
        for _ in 0..INCOMPRESSIBLE_RUN {
            assert_eq!(chunk(&mut b, data(noise())).0, INCOMPRESSIBLE_LEVEL);
        }
        // Then the profile's level is tried again, and a compressible screen keeps it.
        let (level, len) = chunk(&mut b, data(screen(65_536)));
        assert_eq!((level, len < 8_192), (1, true), "{len}");
        assert_eq!(b.next_level(), 1);
        // A compressible chunk during the fast run still shrinks (matches are kept).
        chunk(&mut b, data(noise()));
        let (level, len) = chunk(&mut b, data(screen(65_536)));
        assert_eq!((level, len < 16_384), (INCOMPRESSIBLE_LEVEL, true), "{len}");
    }

    fn text(at_us: u64, s: &str) -> Record {
        Record {
            at_us,
            kind: RecordKind::Data {
                direction: Direction::ServerToClient,
                channel: ChannelId(0),
                bytes: Bytes::copy_from_slice(s.as_bytes()),
            },
        }
    }

    fn decode_chunk_frame(bytes: &[u8]) -> ChunkFrame<'_> {
        match decode_frame(bytes).unwrap().unwrap() {
            (Frame::Chunk(c), used) => {
                assert_eq!(used, bytes.len());
                c
            }
            _ => panic!("not a chunk"),
        }
    }

    #[test]
    fn chunks_refer_back_within_a_segment_and_seek_points_stand_alone() {
        let screen = "top - 10:00:00 up 41 days, load average: 0.10, 0.20, 0.30\r\n\
                      Tasks: 213 total, 1 running, 212 sleeping, 0 stopped, 0 zombie\r\n"
            .repeat(3);
        let mut b = ChunkBuilder::new(Compression::TEXT).unwrap();
        let mut chunks = Vec::new();
        for i in 0..4u64 {
            b.push(&text(i, &screen)).unwrap();
            // The third chunk starts a new segment.
            chunks.push(b.finish(i as u32, &[0; 32], i == 2).unwrap());
        }
        let seek: Vec<bool> = chunks.iter().map(|c| c.seek_point).collect();
        assert_eq!(seek, [true, false, true, false]);
        // The same screen again is a few bytes when the chunk before is in view.
        let payload = |c: &EncodedChunk| decode_chunk_frame(&c.bytes).payload.len();
        assert!(
            payload(&chunks[1]) * 4 < payload(&chunks[0]),
            "{} vs {}",
            payload(&chunks[1]),
            payload(&chunks[0])
        );
        let frames: Vec<ChunkFrame<'_>> = chunks
            .iter()
            .map(|c| decode_chunk_frame(&c.bytes))
            .collect();
        assert!(frames[0].is_seek_point() && !frames[1].is_seek_point());
        assert!(frames[1].history_len > 0);
        // Read in order through a history: every chunk decodes.
        let mut history = ChunkHistory::new();
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(history.records(f).unwrap(), vec![text(i as u64, &screen)]);
        }
        // A dependent chunk alone, or after the wrong predecessor, is refused, not guessed.
        assert!(frames[1].records().is_err());
        assert!(ChunkHistory::new().records(&frames[3]).is_err());
        let mut other = ChunkHistory::new();
        other.records(&frames[0]).unwrap();
        let mut wrong = ChunkBuilder::new(Compression::TEXT).unwrap();
        wrong.push(&text(0, &"x".repeat(screen.len()))).unwrap();
        let wrong = wrong.finish(0, &[0; 32], true).unwrap();
        let mut h = ChunkHistory::new();
        h.records(&decode_chunk_frame(&wrong.bytes)).unwrap();
        assert_ne!(h.records(&frames[1]).ok(), Some(vec![text(1, &screen)]));
        // A seek point needs nothing before it.
        assert_eq!(frames[2].records().unwrap(), vec![text(2, &screen)]);
    }

    #[test]
    fn a_history_never_opens_with_the_dictionary_magic() {
        // Terminal output can hold any bytes, so a kept history can open with zstd's
        // dictionary magic; zstd would then parse it as a structured dictionary.
        let mut b = ChunkBuilder::new(Compression {
            history_bytes: 32,
            ..Compression::TEXT
        })
        .unwrap();
        b.push(&text(0, "0123456789")).unwrap();
        b.finish(0, &[0; 32], true).unwrap();
        // Forge the history to start with the magic.
        b.history = [ZSTD_DICTIONARY_MAGIC.as_slice(), b"rest of the history"].concat();
        b.push(&text(1, "rest of the history")).unwrap();
        let c = b.finish(1, &[0; 32], false).unwrap();
        let f = decode_chunk_frame(&c.bytes);
        assert_eq!(f.history_len as usize, b"rest of the history".len() + 3);
        // A reader holding that history decodes it (the magic's first byte is not referred
        // to), and refuses a chunk that claims a history starting with the magic.
        let mut h = ChunkHistory::new();
        h.bytes = [ZSTD_DICTIONARY_MAGIC.as_slice(), b"rest of the history"].concat();
        assert_eq!(h.records(&f).unwrap(), vec![text(1, "rest of the history")]);
        let mut forged = c.bytes.clone();
        // The history length is the prefix's last field, one byte here.
        let at = CHUNK_MAGIC.len() + usize::from(forged[CHUNK_MAGIC.len()]);
        assert!(f.history_len < 0x7f);
        forged[at] += 1;
        let mut h = ChunkHistory::new();
        h.bytes = [ZSTD_DICTIONARY_MAGIC.as_slice(), b"rest of the history"].concat();
        let err = h.records(&decode_chunk_frame(&forged)).unwrap_err();
        assert!(err.to_string().contains("dictionary magic"), "{err}");
    }

    #[test]
    fn version_1_chunks_still_decode_and_never_refer_back() {
        let (mut enc, head) =
            Encoder::with_version(&sample_header(), Compression::TEXT, 64, FORMAT_VERSION_1)
                .unwrap();
        let (hf, _) = decode_header(&head).unwrap().unwrap();
        assert_eq!(hf.version, FORMAT_VERSION_1);
        let mut seen = 0;
        for i in 0..20 {
            if let Some(c) = enc
                .push(&text(i, "the same line again and again\r\n"))
                .unwrap()
            {
                assert!(c.bytes.starts_with(&CHUNK_MAGIC_V1));
                let f = decode_chunk_frame(&c.bytes);
                assert_eq!((f.version, f.history_len), (FORMAT_VERSION_1, 0));
                assert!(!f.records().unwrap().is_empty());
                seen += 1;
            }
        }
        assert!(seen > 2);
    }

    #[test]
    fn index_builder_thins() {
        let mut ib = IndexBuilder::new();
        // Seek points at every third chunk: thinning keeps every 2nd, 4th … of them.
        for seq in (0..(3 * MAX_INDEX_ENTRIES as u32 + 30)).step_by(3) {
            ib.push(IndexEntry {
                seq,
                first_us: u64::from(seq),
                offset: u64::from(seq),
            });
        }
        assert!(ib.entries().len() <= MAX_INDEX_ENTRIES);
        assert!(ib.entries().windows(2).all(|w| w[0].seq < w[1].seq));
        assert_eq!(ib.entries()[0].seq, 0);
    }
}
