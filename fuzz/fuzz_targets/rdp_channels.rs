//! Fuzzes Static and dynamic virtual channel filtering of the RDP MITM machine in its relay phase.
//! The body is `sekisho_fuzz::bodies::rdp_channels`, replayed by proxy/tests/fuzz_regressions.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sekisho_fuzz::bodies::rdp_channels(data));
