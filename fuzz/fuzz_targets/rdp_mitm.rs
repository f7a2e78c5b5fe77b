//! Fuzzes the RDP machines of one connection in order (acceptor, connector, relay), from the
//! contractor's first MCS frame or from the relay phase.
//! The body is `sekisho_fuzz::bodies::rdp_mitm`, replayed by proxy/tests/fuzz_regressions.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sekisho_fuzz::bodies::rdp_mitm(data));
