//! Sekisho's listeners and protocol relays. The `sekisho` binary (`src/main.rs`) is a thin
//! command-line layer over this library.

pub mod auth;
pub mod cli;
pub mod evidence;
pub mod export;
pub mod fd_limit;
pub mod pins;
pub mod preauth;
pub mod rdp;
pub mod recordings;
pub mod recovery;
pub mod secrets;
pub mod services;
pub mod ssh;
pub mod tls;
pub mod vnc;
pub mod web;
