//! Incremental UTF-8 decoding across record boundaries.
//!
//! A relay records bytes as they arrive, so one character (e.g. `é`, 2 bytes, or a CJK
//! character, 3 bytes) can be split across two data records. Decoding each record on its own
//! would turn both halves into U+FFFD. [`Utf8Stream`] keeps the incomplete tail of one record
//! and completes it with the next; bytes that can never be UTF-8 become U+FFFD (visible, never
//! dropped silently, so an auditor sees that something was there).

/// Decodes a byte stream delivered in pieces.
///
/// INVARIANT: `pending` holds at most 3 bytes (a UTF-8 sequence is at most 4), a prefix
/// of a valid UTF-8 sequence.
#[derive(Debug, Clone, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// A decoder with nothing pending.
    pub fn new() -> Self {
        Utf8Stream::default()
    }

    /// Decodes `bytes` (after any held-back prefix) and appends the text to `out`. A trailing
    /// incomplete sequence is held back for the next call.
    pub fn push(&mut self, bytes: &[u8], out: &mut String) {
        if self.pending.is_empty() {
            self.decode(bytes, out);
        } else {
            // Rare (a character split across records): join and decode. The copy is one
            // record at most.
            let mut joined = std::mem::take(&mut self.pending);
            joined.extend_from_slice(bytes);
            self.decode(&joined, out);
        }
    }

    /// Flushes a held-back incomplete sequence as U+FFFD (end of stream).
    pub fn finish(&mut self, out: &mut String) {
        if !self.pending.is_empty() {
            self.pending.clear();
            out.push(char::REPLACEMENT_CHARACTER);
        }
    }

    /// Whether bytes are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    fn decode(&mut self, mut bytes: &[u8], out: &mut String) {
        loop {
            match std::str::from_utf8(bytes) {
                Ok(s) => {
                    out.push_str(s);
                    return;
                }
                Err(e) => {
                    let (valid, after) = bytes.split_at(e.valid_up_to());
                    // `valid` was just checked by from_utf8, so this never falls back.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            bytes = after.get(bad..).unwrap_or_default();
                        }
                        None => {
                            // An incomplete sequence at the end: keep it for the next record.
                            self.pending.clear();
                            self.pending.extend_from_slice(after);
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode_split(parts: &[&[u8]]) -> String {
        let mut d = Utf8Stream::new();
        let mut out = String::new();
        for p in parts {
            d.push(p, &mut out);
        }
        d.finish(&mut out);
        out
    }

    #[test]
    fn split_multibyte_is_joined() {
        let s = "é関所🚀".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                let got = decode_split(&[&s[..i], &s[i..j], &s[j..]]);
                assert_eq!(got, "é関所🚀", "split at {i},{j}");
            }
        }
    }

    #[test]
    fn invalid_bytes_are_replaced_not_dropped() {
        assert_eq!(decode_split(&[b"a\xffb"]), "a\u{fffd}b");
        assert_eq!(decode_split(&[b"a\xe6", b"b"]), "a\u{fffd}b");
        assert_eq!(decode_split(&[b"a\xe6\x96"]), "a\u{fffd}");
        assert_eq!(decode_split(&[b"\xe6", b"\x96", b"\xa2!"]), "斢!");
    }

    proptest! {
        #[test]
        fn chunked_equals_whole_lossy(data in proptest::collection::vec(any::<u8>(), 0..64),
                                       cuts in proptest::collection::vec(0usize..64, 0..6)) {
            let whole = String::from_utf8_lossy(&data).into_owned();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
            cuts.sort_unstable();
            let mut parts = Vec::new();
            let mut last = 0;
            for c in cuts { parts.push(&data[last..c]); last = c; }
            parts.push(&data[last..]);
            prop_assert_eq!(decode_split(&parts), whole);
        }
    }
}
