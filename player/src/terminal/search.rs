//! Text search over what appeared on the terminal and what was typed.
//!
//! Raw output interleaves text with escape sequences (`ls --color` writes `\x1b[01;34metc`),
//! so searching the raw bytes misses most words. We index the *printed* characters instead:
//! output goes through avt's parser and only `Print` (and line feeds) are kept; typed keys
//! are cleaned of escape sequences (arrow keys) and line-edited (backspace, Ctrl-U), so a
//! command typed with a correction is found as it was run.

use avt::parser::{Function, Parser};

/// Cap on search hits returned: a one-letter query on an hour of output would otherwise
/// allocate millions of hits; a person pages through far fewer.
pub const MAX_SEARCH_RESULTS: usize = 10_000;
/// Cap on the query length (bytes): longer queries are a misuse, and the naive matcher's
/// cost grows with it.
pub const MAX_QUERY_LEN: usize = 1024;
/// Characters of context kept on each side of a hit.
const CONTEXT_CHARS: usize = 30;

/// Which stream a search hit is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Terminal output (server to client).
    Output,
    /// Typed keys (client to server).
    Input,
}

/// One search hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchHit {
    /// When the hit's last character appeared or was typed (µs since the start).
    pub at_us: u64,
    /// Output or input.
    pub source: Source,
    /// Some text around the hit, on one line.
    pub context: String,
}

/// Plain text with the time each part was added.
///
/// INVARIANT: `marks` is ascending by offset (strictly) and by time; every offset is a char
/// boundary of `text` and ≤ `text.len()`.
#[derive(Debug, Clone, Default)]
pub(crate) struct PlainText {
    text: String,
    marks: Vec<(usize, u64)>,
}

impl PlainText {
    /// Notes that what is pushed next arrives at `at_us`.
    fn mark(&mut self, at_us: u64) {
        let off = self.text.len();
        match self.marks.last_mut() {
            Some(last) if last.0 == off => last.1 = at_us,
            Some(last) if last.1 == at_us => {}
            _ => self.marks.push((off, at_us)),
        }
    }

    fn push(&mut self, c: char) {
        self.text.push(c);
    }

    /// Removes the last character of the current line (backspace).
    fn backspace(&mut self) {
        if self.text.ends_with('\n') {
            return;
        }
        self.text.pop();
        self.fix_marks();
    }

    /// Removes the current line's characters (Ctrl-U).
    fn kill_line(&mut self) {
        let keep = self.text.rfind('\n').map_or(0, |i| i + 1);
        self.text.truncate(keep);
        self.fix_marks();
    }

    /// After a deletion: marks past the end move to the end (what comes next arrives at the
    /// newest time), keeping one mark per offset.
    fn fix_marks(&mut self) {
        let len = self.text.len();
        for m in self.marks.iter_mut().rev() {
            if m.0 <= len {
                break;
            }
            m.0 = len;
        }
        while let [.., a, b] = self.marks.as_slice()
            && a.0 == b.0
        {
            let newest = *b;
            self.marks.pop();
            if let Some(last) = self.marks.last_mut() {
                *last = newest;
            }
        }
    }

    /// Time at which the byte at `offset` was added.
    fn time_of(&self, offset: usize) -> u64 {
        let i = self.marks.partition_point(|m| m.0 <= offset);
        i.checked_sub(1)
            .and_then(|i| self.marks.get(i))
            .map_or(0, |m| m.1)
    }

    fn search(&self, query: &str, source: Source, out: &mut Vec<SearchHit>) {
        if query.is_empty() || out.len() >= MAX_SEARCH_RESULTS {
            return;
        }
        // ASCII case folding keeps byte offsets identical, so hits map back to times.
        let hay = self.text.to_ascii_lowercase();
        let needle = query.to_ascii_lowercase();
        for (start, m) in hay.match_indices(&needle) {
            let last = start + m.len().saturating_sub(1);
            out.push(SearchHit {
                at_us: self.time_of(last),
                source,
                context: self.context(start, start + m.len()),
            });
            if out.len() >= MAX_SEARCH_RESULTS {
                return;
            }
        }
    }

    fn context(&self, start: usize, end: usize) -> String {
        let before = self.text.get(..start).unwrap_or_default();
        let hit = self.text.get(start..end).unwrap_or_default();
        let after = self.text.get(end..).unwrap_or_default();
        let before: String = {
            let line = before.rsplit('\n').next().unwrap_or_default();
            let n = line.chars().count();
            line.chars().skip(n.saturating_sub(CONTEXT_CHARS)).collect()
        };
        let after: String = after
            .split('\n')
            .next()
            .unwrap_or_default()
            .chars()
            .take(CONTEXT_CHARS)
            .collect();
        format!("{before}{}{after}", hit.replace('\n', " "))
    }

    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

/// Builds the printed text of the output stream.
#[derive(Default)]
pub(crate) struct OutputText {
    parser: Parser,
    plain: PlainText,
}

impl OutputText {
    pub(crate) fn push(&mut self, at_us: u64, text: &str) {
        self.plain.mark(at_us);
        for c in text.chars() {
            match self.parser.feed(c) {
                Some(Function::Print(c)) => self.plain.push(c),
                Some(Function::Lf | Function::Nel) => self.plain.push('\n'),
                Some(Function::Ht) => self.plain.push('\t'),
                _ => {}
            }
        }
    }

    pub(crate) fn finish(self) -> PlainText {
        self.plain
    }
}

/// Typed keys, cleaned: the state of a small escape-sequence skipper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum KeyState {
    #[default]
    Ground,
    /// After ESC.
    Escape,
    /// Inside `ESC [` or `ESC O` until the final byte.
    Sequence,
}

/// Builds the line-edited text of the typed keys.
#[derive(Default)]
pub(crate) struct InputText {
    state: KeyState,
    plain: PlainText,
}

impl InputText {
    pub(crate) fn push(&mut self, at_us: u64, text: &str) {
        self.plain.mark(at_us);
        for c in text.chars() {
            match self.state {
                KeyState::Escape => {
                    self.state = if c == '[' || c == 'O' {
                        KeyState::Sequence
                    } else {
                        KeyState::Ground
                    };
                }
                KeyState::Sequence => {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        self.state = KeyState::Ground;
                    }
                }
                KeyState::Ground => match c {
                    '\u{1b}' => self.state = KeyState::Escape,
                    '\r' | '\n' => self.plain.push('\n'),
                    '\u{7f}' | '\u{8}' => self.plain.backspace(),
                    '\u{15}' => self.plain.kill_line(),
                    '\t' => self.plain.push('\t'),
                    c if c.is_control() => {}
                    c => self.plain.push(c),
                },
            }
        }
    }

    pub(crate) fn finish(self) -> PlainText {
        self.plain
    }
}

/// Both streams, built once.
#[derive(Debug, Default)]
pub(crate) struct SearchIndex {
    pub(crate) output: PlainText,
    pub(crate) input: PlainText,
}

impl SearchIndex {
    /// Hits in output, then in input, each in time order; at most [`MAX_SEARCH_RESULTS`].
    pub(crate) fn search(&self, query: &str) -> Vec<SearchHit> {
        let mut hits = Vec::new();
        if query.len() > MAX_QUERY_LEN {
            return hits;
        }
        self.output.search(query, Source::Output, &mut hits);
        self.input.search(query, Source::Input, &mut hits);
        hits.sort_by_key(|h| h.at_us);
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_search_ignores_escape_sequences() {
        let mut o = OutputText::default();
        o.push(10, "\x1b[01;34met");
        o.push(20, "c\x1b[0m  \x1b[01;32mhosts\x1b[0m\r\n");
        let idx = SearchIndex {
            output: o.finish(),
            input: PlainText::default(),
        };
        assert_eq!(idx.output.text(), "etc  hosts\n");
        let hits = idx.search("ETC");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].at_us, 20, "the hit completes at the second record");
        assert_eq!(hits[0].source, Source::Output);
        assert_eq!(hits[0].context, "etc  hosts");
    }

    #[test]
    fn input_is_line_edited() {
        let mut i = InputText::default();
        i.push(1, "rm -rg");
        i.push(2, "\x7ff /tmp/x\x1b[A\r");
        i.push(3, "secret-typo\x15ls\r");
        let plain = i.finish();
        assert_eq!(plain.text(), "rm -rf /tmp/x\nls\n");
        let idx = SearchIndex {
            output: PlainText::default(),
            input: plain,
        };
        let hits = idx.search("rm -rf");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].at_us, 2);
        assert_eq!(idx.search("ls")[0].at_us, 3);
        assert!(idx.search("secret").is_empty());
    }

    #[test]
    fn empty_and_oversized_queries_find_nothing() {
        let mut o = OutputText::default();
        o.push(1, "aaaa");
        let idx = SearchIndex {
            output: o.finish(),
            input: PlainText::default(),
        };
        assert!(idx.search("").is_empty());
        assert!(idx.search(&"a".repeat(MAX_QUERY_LEN + 1)).is_empty());
        assert_eq!(idx.search("a").len(), 4);
    }
}
