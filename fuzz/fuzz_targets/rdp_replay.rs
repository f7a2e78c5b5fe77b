//! Fuzzes RDP recordings as the player opens and seeks them and reads their typed text
//! (hostile PDUs in a well-formed recording). The body is `sekisho_fuzz::bodies::rdp_replay`,
//! replayed by proxy/tests/fuzz_regressions.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sekisho_fuzz::bodies::rdp_replay(data));
