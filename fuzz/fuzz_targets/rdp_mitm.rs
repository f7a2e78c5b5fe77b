//! Fuzzes The RDP MCS-phase MITM machine (X.224/MCS/GCC rewriting), from its first frame or its relay phase.
//! The body is `sekisho_fuzz::bodies::rdp_mitm`, replayed by proxy/tests/fuzz_regressions.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sekisho_fuzz::bodies::rdp_mitm(data));
