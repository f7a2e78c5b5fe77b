//! Sekisho's listeners and protocol relays. The `sekisho` binary (`src/main.rs`) is a thin
//! command-line layer over this library.

pub mod rdp;
pub mod ssh;
