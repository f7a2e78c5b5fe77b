//! Fuzzes the contractor's side of the RDP connection before the logon: the acceptor that
//! answers the MCS sequence itself, and the lenient Client Info decoder.
//! The body is `sekisho_fuzz::bodies::rdp_accept`, replayed by proxy/tests/fuzz_regressions.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sekisho_fuzz::bodies::rdp_accept(data));
