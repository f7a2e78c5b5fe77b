//! Configuration errors with file, line, column and key, and the TOML loading loop that
//! collects every error it can instead of stopping at the first.

use std::fmt;
use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// How many serde-level errors (unknown keys, wrong types) one load reports before giving up.
/// Each one costs a re-parse of the document, so this bounds the work a broken file causes.
const MAX_SERDE_ERRORS: usize = 64;

/// One configuration error: `FILE:LINE:COL: KEY: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name given to the loader.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// The key, as a dotted path such as `target.hypervisor`.
    pub key: String,
    /// What is wrong (lowercase, no final period).
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.col, self.key, self.message
        )
    }
}

/// Every error found in one configuration file, in file order. Displays one line per error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The individual errors.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Collects errors for one file and maps byte offsets to line and column.
pub(crate) struct Diag<'a> {
    file: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
}

impl<'a> Diag<'a> {
    pub(crate) fn new(text: &'a str, file: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            file,
            text,
            line_starts,
            errors: Vec::new(),
        }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let line = self.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = self.line_starts.get(line - 1).copied().unwrap_or(0);
        let col = self
            .text
            .get(start..offset.min(self.text.len()))
            .map_or(1, |s| s.chars().count() + 1);
        (line, col)
    }

    /// Records an error at the start of `span`.
    pub(crate) fn error(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let (line, col) = self.position(span.start);
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            col,
            key: key.to_owned(),
            message: message.into(),
        });
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// The collected errors in file order, or `Ok(())`.
    pub(crate) fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|e| (e.line, e.col));
        Err(ConfigErrors(self.errors))
    }

    /// Parses `T` from the document, reporting every unknown key and badly typed value: after
    /// each serde error the offending entry is removed and deserialization retried, so one
    /// mistake does not hide the next. Returns `None` if the document is not TOML at all or
    /// errors remain after [`MAX_SERDE_ERRORS`].
    pub(crate) fn load<T: DeserializeOwned>(&mut self) -> Option<T> {
        let mut doc = match DeTable::parse(self.text) {
            Ok(doc) => doc,
            Err(e) => {
                let span = e.span().unwrap_or(0..0);
                let key = key_at(self.text, span.start);
                self.error(span, &key, first_line(e.message()));
                return None;
            }
        };
        for _ in 0..MAX_SERDE_ERRORS {
            let de = toml::de::Deserializer::from(doc.clone());
            match T::deserialize(de) {
                Ok(v) => return Some(v),
                Err(e) => {
                    let Some(span) = e.span() else {
                        // Without a position nothing can be removed to look further.
                        self.error(0..0, "(document)", first_line(e.message()));
                        return None;
                    };
                    let mut path = Vec::new();
                    let removed = remove_at(doc.get_mut(), span.start, &mut path);
                    let key = if path.is_empty() {
                        "(document)".to_owned()
                    } else {
                        path.join(".")
                    };
                    self.error(span, &key, first_line(e.message()));
                    if !removed {
                        return None;
                    }
                }
            }
        }
        None
    }
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_owned()
}

fn contains(span: &Range<usize>, offset: usize) -> bool {
    span.start <= offset && offset < span.end.max(span.start + 1)
}

/// Removes the deepest table entry whose key or value covers `offset`, recording its key path.
///
/// Tables made by `[header]`s do not always have a value span covering their keys, so every
/// nested table is searched, not only those whose span contains `offset`.
fn remove_at(table: &mut DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    let mut hit = None;
    for (k, v) in table.iter_mut() {
        path.push(k.get_ref().to_string());
        if descend(v.get_mut(), offset, path) {
            return true;
        }
        if contains(&k.span(), offset) || contains(&v.span(), offset) {
            hit = Some(k.clone());
            break;
        }
        path.pop();
    }
    match hit {
        Some(key) => table.remove(&key).is_some(),
        None => false,
    }
}

fn descend(value: &mut DeValue<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    match value {
        DeValue::Table(t) => remove_at(t, offset, path),
        DeValue::Array(a) => a
            .iter_mut()
            .any(|item| descend(item.get_mut(), offset, path)),
        _ => false,
    }
}

/// The dotted key path at `offset`, for parse errors ("(document)" if none).
fn key_at(text: &str, offset: usize) -> String {
    let (doc, _) = DeTable::parse_recoverable(text);
    let mut path = Vec::new();
    find_path(doc.get_ref(), offset, &mut path);
    if path.is_empty() {
        "(document)".to_owned()
    } else {
        path.join(".")
    }
}

fn find_path(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
    for (k, v) in table.iter() {
        path.push(k.get_ref().to_string());
        let nested = match v.get_ref() {
            DeValue::Table(t) => find_path(t, offset, path),
            DeValue::Array(a) => a.iter().any(|item| match item.get_ref() {
                DeValue::Table(t) => find_path(t, offset, path),
                _ => false,
            }),
            _ => false,
        };
        if nested || contains(&k.span(), offset) || contains(&v.span(), offset) {
            return true;
        }
        path.pop();
    }
    false
}

/// Shorthand for spanned config values.
pub(crate) type S<T> = Spanned<T>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let d = Diag::new("a\nbc\n", "f.toml");
        assert_eq!(d.position(0), (1, 1));
        assert_eq!(d.position(2), (2, 1));
        assert_eq!(d.position(3), (2, 2));
        assert_eq!(d.position(5), (3, 1));
    }
}
