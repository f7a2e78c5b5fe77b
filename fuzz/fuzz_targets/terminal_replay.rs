//! Fuzzes Terminal output cleaning and terminal recordings opened, seeked and searched by the player.
//! The body is `sekisho_fuzz::bodies::terminal_replay`, replayed by proxy/tests/fuzz_regressions.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sekisho_fuzz::bodies::terminal_replay(data));
