//! Reading a finished recording by byte ranges: the header, the trailer (two range reads: the
//! last 16 bytes say where it starts), then only the chunks from a moment on, found through
//! the trailer's seek index. Made for object stores, where a seek into a one-hour recording
//! should cost a few small GETs, not the whole object.
//!
//! Like [`crate::reader`], this checks framing and limits, not the hash chain or signature
//! (use [`super::verify_stored`] for that).

use bytes::Bytes;

use super::{Storage, StorageError};
use crate::format::{
    self, ChunkHistory, DecodeError, END_MAGIC, Frame, HeaderFrame, IndexEntry, Record,
    TrailerFrame, decode_frame, decode_header,
};
use crate::verify::MAX_VERIFY_FRAME;

/// Most bytes read at once when following the chunks: one whole chunk frame of the largest
/// size, so a read always holds at least one frame, and memory stays bounded whatever the gap
/// between two entries of a thinned index.
pub const MAX_READ: u64 = format::MAX_CHUNK_FRAME as u64;

/// Why a recording cannot be read by ranges.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangedError {
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A frame is invalid (a damaged or hostile object).
    #[error("invalid recording: {0}")]
    Decode(#[from] DecodeError),
    /// The recording has no trailer (live, or cut short and not sealed): it has no seek index,
    /// read it whole instead.
    #[error("recording has no trailer (live or not sealed)")]
    NoTrailer,
}

/// Header bytes read first: a header holds a few names and a small metadata map, so one small
/// read usually has it all; a larger one costs a second read of its declared size.
const HEADER_READ: u64 = 4096;

/// Reads and decodes the header frame of the object at `location` (`size` bytes).
pub async fn read_header(
    storage: &dyn Storage,
    location: &str,
    size: u64,
) -> Result<(HeaderFrame, usize), RangedError> {
    let head = storage
        .read_range(location, 0..size.min(HEADER_READ))
        .await?;
    if let Some(h) = decode_header(&head)? {
        return Ok(h);
    }
    // The body length was checked against MAX_HEADER_SIZE by `decode_header` above.
    let max = (format::HEADER_PREFIX_LEN + format::MAX_HEADER_SIZE + format::HASH_LEN) as u64;
    let head = storage.read_range(location, 0..size.min(max)).await?;
    Ok(decode_header(&head)?.ok_or(DecodeError::Invalid("header truncated"))?)
}

/// A finished recording in a store, opened by its header and trailer.
pub struct RangedRecording<'s> {
    storage: &'s dyn Storage,
    location: String,
    size: u64,
    header: HeaderFrame,
    trailer: TrailerFrame,
    trailer_offset: u64,
}

impl std::fmt::Debug for RangedRecording<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangedRecording")
            .field("location", &self.location)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl<'s> RangedRecording<'s> {
    /// Reads the header and the trailer: four requests (size, header, end, trailer).
    pub async fn open(storage: &'s dyn Storage, location: &str) -> Result<Self, RangedError> {
        let size = storage.size(location).await?;
        let header_max =
            (format::HEADER_PREFIX_LEN + format::MAX_HEADER_SIZE + format::HASH_LEN) as u64;
        let head = storage
            .read_range(location, 0..size.min(header_max))
            .await?;
        let (header, header_len) =
            decode_header(&head)?.ok_or(DecodeError::Invalid("header truncated"))?;
        let suffix = 16u64;
        if size < header_len as u64 + suffix {
            return Err(RangedError::NoTrailer);
        }
        let tail = storage.read_range(location, size - suffix..size).await?;
        let (offset_bytes, magic) = tail.split_at(tail.len().min(8));
        if magic != END_MAGIC {
            return Err(RangedError::NoTrailer);
        }
        let trailer_offset = u64::from_le_bytes(
            offset_bytes
                .try_into()
                .map_err(|_| DecodeError::Invalid("trailer offset"))?,
        );
        // The offset is read from the object: check it before using it as a length.
        if trailer_offset < header_len as u64
            || trailer_offset >= size
            || size - trailer_offset > MAX_VERIFY_FRAME as u64
        {
            return Err(DecodeError::Invalid("trailer offset out of range").into());
        }
        let bytes = storage.read_range(location, trailer_offset..size).await?;
        let trailer = match decode_frame(&bytes)? {
            Some((Frame::Trailer(t), used)) if used == bytes.len() => t,
            _ => return Err(DecodeError::Invalid("trailer").into()),
        };
        Ok(RangedRecording {
            storage,
            location: location.to_owned(),
            size,
            header,
            trailer,
            trailer_offset,
        })
    }

    /// The header frame.
    pub fn header(&self) -> &HeaderFrame {
        &self.header
    }

    /// The trailer (its index is the seek index).
    pub fn trailer(&self) -> &TrailerFrame {
        &self.trailer
    }

    /// The object's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Records from `at_us` on, a chunk at a time, starting at the last index entry at or
    /// before `at_us` (the index may be thinned, so a few chunks before may be read).
    pub fn records_from(&self, at_us: u64) -> ChunkCursor<'_, 's> {
        let index: &[IndexEntry] = &self.trailer.body.index;
        let i = index.partition_point(|e| e.first_us <= at_us);
        let offset = match i.checked_sub(1).and_then(|j| index.get(j)) {
            Some(e) => e.offset,
            None => index.first().map_or(self.trailer_offset, |e| e.offset),
        };
        ChunkCursor {
            rec: self,
            pos: offset,
            from_us: at_us,
            buf: Bytes::new(),
            buf_start: offset,
            history: ChunkHistory::new(),
        }
    }
}

/// Reads chunks in order from a position; see [`RangedRecording::records_from`]. Each read
/// spans from the position to the next entry of the seek index (one chunk, when the index is
/// not thinned), so no byte is fetched twice and none beyond what is wanted.
#[derive(Debug)]
pub struct ChunkCursor<'r, 's> {
    rec: &'r RangedRecording<'s>,
    pos: u64,
    from_us: u64,
    /// INVARIANT: at most [`MAX_READ`] bytes, read from `buf_start`.
    buf: Bytes,
    buf_start: u64,
    /// The segment's tail since the seek point the cursor started at.
    history: ChunkHistory,
}

impl ChunkCursor<'_, '_> {
    /// The records of the next chunk at or after the start time (`None` at the trailer).
    /// Chunks wholly before the start time are read and skipped.
    pub async fn next_chunk(&mut self) -> Option<Result<Vec<Record>, RangedError>> {
        loop {
            let end = self.rec.trailer_offset;
            if self.pos >= end {
                return None;
            }
            let records = match self.next_frame(end).await {
                Ok(r) => r,
                Err(e) => {
                    self.pos = end;
                    return Some(Err(e));
                }
            };
            let wanted: Vec<Record> = records
                .into_iter()
                .filter(|r| r.at_us >= self.from_us)
                .collect();
            if !wanted.is_empty() {
                return Some(Ok(wanted));
            }
        }
    }

    /// Decodes the chunk at `pos` from the buffer, refilling it first when the chunk is not
    /// whole in it; advances `pos`.
    async fn next_frame(&mut self, end: u64) -> Result<Vec<Record>, RangedError> {
        for refilled in [false, true] {
            let skip =
                usize::try_from(self.pos.saturating_sub(self.buf_start)).unwrap_or(usize::MAX);
            let rest = self.buf.get(skip..).unwrap_or_default();
            if self.pos >= self.buf_start {
                match decode_frame(rest)? {
                    Some((Frame::Chunk(c), used)) => {
                        let records = self.history.records(&c)?;
                        self.pos += used as u64;
                        return Ok(records);
                    }
                    Some(_) => return Err(DecodeError::Invalid("chunk expected").into()),
                    None if refilled => {
                        return Err(DecodeError::Invalid("chunk runs into the trailer").into());
                    }
                    None => {}
                }
            }
            let index = &self.rec.trailer.body.index;
            let next = index.partition_point(|e| e.offset <= self.pos);
            let until = index
                .get(next)
                .map_or(end, |e| e.offset)
                .min(end)
                .min(self.pos + MAX_READ);
            self.buf = self
                .rec
                .storage
                .read_range(&self.rec.location, self.pos..until)
                .await?;
            self.buf_start = self.pos;
        }
        Err(DecodeError::Invalid("chunk").into())
    }
}
