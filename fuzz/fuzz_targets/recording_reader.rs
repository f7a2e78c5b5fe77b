//! Fuzzes The recording reader, verifier, info and seal (same body as recorder/tests/fuzz_regression.rs).
//! The body is `sekisho_fuzz::bodies::recording_reader`, replayed by proxy/tests/fuzz_regressions.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sekisho_fuzz::bodies::recording_reader(data));
