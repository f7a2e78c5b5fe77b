//! Sekisho player: decoders and export.
