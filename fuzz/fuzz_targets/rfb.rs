//! Fuzzes The RFB codec: client and server messages, rectangles, the framebuffer painter.
//! The body is `sekisho_fuzz::bodies::rfb`, replayed by proxy/tests/fuzz_regressions.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| sekisho_fuzz::bodies::rfb(data));
