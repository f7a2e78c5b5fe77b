//! Sekisho player: decoders and export.

pub mod export;
mod packed;
pub mod rdp;
pub mod rfb;
pub mod terminal;
pub mod typed;
