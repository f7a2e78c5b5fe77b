//! Fuzzes RDP frame splitting, the preconnection PDU, the X.224 Connection Request and Confirm.
//! The body is `sekisho_fuzz::bodies::rdp_framing`, replayed by proxy/tests/fuzz_regressions.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sekisho_fuzz::bodies::rdp_framing(data));
