//! The denials dashboard's strings (key, English, Japanese), with the rules' names.

pub(super) const STRINGS: &[(&str, &str, &str)] = &[];
