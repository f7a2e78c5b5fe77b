//! Reading recordings: records in order, seeking by time, and reading what survives of a
//! truncated file (everything up to its last whole chunk).
//!
//! The reader checks framing and limits but not the hash chain or signature; call
//! [`crate::verify::verify`] for that. It never trusts the trailer's index for correctness:
//! the chunk list always comes from scanning the frames (cheap: no decompression), and the
//! trailer's index is only offered to callers that want it.

use crate::format::{
    ChunkHistory, DecodeError, Frame, HeaderFrame, IndexEntry, Record, TrailerFrame, decode_frame,
    decode_header,
};

/// Why a recording cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The header is invalid (not a recording, damaged, or a newer version).
    #[error("invalid recording header: {0}")]
    Header(#[from] DecodeError),
    /// The file ends inside the header.
    #[error("recording header incomplete")]
    HeaderIncomplete,
}

/// A whole chunk found while scanning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ChunkInfo {
    /// Sequence number as stored.
    pub seq: u32,
    /// Byte offset of its magic.
    pub offset: u64,
    /// Frame length in bytes.
    pub len: u64,
    /// First record time (µs since start).
    pub first_us: u64,
    /// Last record time.
    pub last_us: u64,
    /// Records in it.
    pub record_count: u32,
    /// Compressed alone: decoding can start here (every chunk of a version-1 recording).
    /// Other chunks are decoded from the seek point before them on.
    pub seek_point: bool,
}

/// Where the scan of frames stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// At a trailer that ends the file.
    Trailer,
    /// At the end of the bytes, after a whole chunk (no trailer: crash or still being written).
    Eof,
    /// Inside a frame cut short at `offset` (crash while writing).
    Truncated {
        /// Offset of the incomplete frame.
        offset: u64,
    },
    /// At bytes that can never be a valid frame.
    Invalid {
        /// Offset of the bad frame.
        offset: u64,
        /// Why.
        error: DecodeError,
    },
}

/// A parsed recording over borrowed bytes.
#[derive(Debug, Clone)]
pub struct Recording<'a> {
    bytes: &'a [u8],
    header: HeaderFrame,
    header_len: usize,
    chunks: Vec<ChunkInfo>,
    trailer: Option<TrailerFrame>,
    end: ScanEnd,
}

impl<'a> Recording<'a> {
    /// Parses the header and scans the frames.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ReadError> {
        let (header, header_len) = decode_header(bytes)?.ok_or(ReadError::HeaderIncomplete)?;
        let mut chunks = Vec::new();
        let mut trailer = None;
        let mut pos = header_len;
        let end = loop {
            let rest = bytes.get(pos..).unwrap_or_default();
            if rest.is_empty() {
                break ScanEnd::Eof;
            }
            match decode_frame(rest) {
                Ok(Some((Frame::Chunk(c), used))) => {
                    chunks.push(ChunkInfo {
                        seq: c.seq,
                        offset: pos as u64,
                        len: used as u64,
                        first_us: c.first_us,
                        last_us: c.last_us,
                        record_count: c.record_count,
                        seek_point: c.is_seek_point(),
                    });
                    pos += used;
                }
                Ok(Some((Frame::Trailer(t), used))) => {
                    trailer = Some(t);
                    pos += used;
                    if pos == bytes.len() {
                        break ScanEnd::Trailer;
                    }
                    break ScanEnd::Invalid {
                        offset: pos as u64,
                        error: DecodeError::Invalid("bytes after trailer"),
                    };
                }
                Ok(None) => {
                    break ScanEnd::Truncated { offset: pos as u64 };
                }
                Err(error) => {
                    break ScanEnd::Invalid {
                        offset: pos as u64,
                        error,
                    };
                }
            }
        };
        Ok(Recording {
            bytes,
            header,
            header_len,
            chunks,
            trailer,
            end,
        })
    }

    /// The header frame (header, version, header hash).
    pub fn header(&self) -> &HeaderFrame {
        &self.header
    }

    /// Length of the header frame.
    pub fn header_len(&self) -> usize {
        self.header_len
    }

    /// Whole chunks, in file order.
    pub fn chunks(&self) -> &[ChunkInfo] {
        &self.chunks
    }

    /// The trailer, if the file has one.
    pub fn trailer(&self) -> Option<&TrailerFrame> {
        self.trailer.as_ref()
    }

    /// Why the scan stopped.
    pub fn end(&self) -> &ScanEnd {
        &self.end
    }

    /// The seek index: the trailer's when present, otherwise rebuilt from the chunks.
    pub fn index(&self) -> Vec<IndexEntry> {
        match &self.trailer {
            Some(t) => t.body.index.clone(),
            None => self
                .chunks
                .iter()
                .filter(|c| c.seek_point)
                .map(|c| IndexEntry {
                    seq: c.seq,
                    first_us: c.first_us,
                    offset: c.offset,
                })
                .collect(),
        }
    }

    /// End of the recording in µs since start: the trailer's end time, else the last record's.
    pub fn end_us(&self) -> u64 {
        let last = self.chunks.last().map_or(0, |c| c.last_us);
        match &self.trailer {
            Some(t) => t.body.end_us.max(last),
            None => last,
        }
    }

    /// Decodes the records of chunk number `i` (position in [`Self::chunks`]), decoding the
    /// chunks from the seek point before it first when it is not one. To read chunks in
    /// order, [`Self::decoded_chunks`] decodes each once.
    pub fn chunk_records(&self, i: usize) -> Result<Vec<Record>, DecodeError> {
        if i >= self.chunks.len() {
            return Err(DecodeError::Invalid("chunk position"));
        }
        let from = self.seek_point_at_or_before(i);
        let mut chunks = self.decoded_chunks_from(from);
        for _ in from..i {
            chunks.decode_next()?;
        }
        chunks.decode_next()
    }

    /// The position of the last seek point at or before chunk `i` (0 when none: the first
    /// chunk of a recording is always one).
    fn seek_point_at_or_before(&self, i: usize) -> usize {
        self.chunks
            .get(..=i)
            .unwrap_or_default()
            .iter()
            .rposition(|c| c.seek_point)
            .unwrap_or(0)
    }

    /// Every whole chunk in order with its records, each decoded once.
    pub fn decoded_chunks(&self) -> DecodedChunks<'_, 'a> {
        self.decoded_chunks_from(0)
    }

    /// The chunks from position `from` on, which must be a seek point (0 always is).
    fn decoded_chunks_from(&self, from: usize) -> DecodedChunks<'_, 'a> {
        DecodedChunks {
            rec: self,
            next: from,
            history: ChunkHistory::new(),
        }
    }

    /// All records in order.
    pub fn records(&self) -> Records<'_, 'a> {
        Records {
            chunks: self.decoded_chunks(),
            current: Vec::new().into_iter(),
            from_us: 0,
            done: false,
        }
    }

    /// Records at or after `at_us`, decoding from the seek point before the chunk that
    /// covers it.
    pub fn records_from(&self, at_us: u64) -> Records<'_, 'a> {
        // Chunks are in time order: the first chunk whose last record is ≥ at_us.
        let covering = self.chunks.partition_point(|c| c.last_us < at_us);
        let start = if covering < self.chunks.len() {
            self.seek_point_at_or_before(covering)
        } else {
            covering
        };
        Records {
            chunks: self.decoded_chunks_from(start),
            current: Vec::new().into_iter(),
            from_us: at_us,
            done: false,
        }
    }
}

/// The whole chunks of a recording in order, each with its records; see
/// [`Recording::decoded_chunks`]. Stops after the first chunk that does not decode.
#[derive(Debug)]
pub struct DecodedChunks<'r, 'a> {
    rec: &'r Recording<'a>,
    next: usize,
    history: ChunkHistory,
}

impl DecodedChunks<'_, '_> {
    fn decode_next(&mut self) -> Result<Vec<Record>, DecodeError> {
        let info = self
            .rec
            .chunks
            .get(self.next)
            .ok_or(DecodeError::Invalid("chunk position"))?;
        self.next += 1;
        let start = usize::try_from(info.offset).unwrap_or(usize::MAX);
        let rest = self.rec.bytes.get(start..).unwrap_or_default();
        match decode_frame(rest)? {
            Some((Frame::Chunk(c), _)) => self.history.records(&c),
            _ => Err(DecodeError::Invalid("chunk position")),
        }
    }
}

impl Iterator for DecodedChunks<'_, '_> {
    type Item = (ChunkInfo, Result<Vec<Record>, DecodeError>);

    fn next(&mut self) -> Option<Self::Item> {
        let info = *self.rec.chunks.get(self.next)?;
        let records = self.decode_next();
        if records.is_err() {
            self.next = self.rec.chunks.len();
        }
        Some((info, records))
    }
}

/// Iterator over records; yields one error and stops at a chunk that does not decode.
#[derive(Debug)]
pub struct Records<'r, 'a> {
    chunks: DecodedChunks<'r, 'a>,
    current: std::vec::IntoIter<Record>,
    from_us: u64,
    done: bool,
}

impl Iterator for Records<'_, '_> {
    type Item = Result<Record, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            if let Some(r) = self.current.by_ref().find(|r| r.at_us >= self.from_us) {
                return Some(Ok(r));
            }
            match self.chunks.next() {
                None => {
                    self.done = true;
                    return None;
                }
                Some((_, Ok(v))) => self.current = v.into_iter(),
                Some((_, Err(e))) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}
