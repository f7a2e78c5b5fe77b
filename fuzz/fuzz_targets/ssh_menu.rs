//! Fuzzes The SSH front door's login name, exec command, menu choice and line editor.
//! The body is `sekisho_fuzz::bodies::ssh_menu`, replayed by proxy/tests/fuzz_regressions.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sekisho_fuzz::bodies::ssh_menu(data));
