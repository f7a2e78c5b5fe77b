//! Fuzzes sekisho.toml, the secrets file, windows, endpoints and matrix cards.
//! The body is `sekisho_fuzz::bodies::config`, replayed by proxy/tests/fuzz_regressions.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sekisho_fuzz::bodies::config(data));
