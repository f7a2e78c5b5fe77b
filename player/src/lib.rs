//! Sekisho player: decoders and export.

pub mod export;
pub mod rdp;
pub mod rfb;
pub mod terminal;
