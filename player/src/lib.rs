//! Sekisho player: decoders and export.

pub mod rfb;
