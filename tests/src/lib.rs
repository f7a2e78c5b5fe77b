//! End-to-end tests live in `tests/`; this library holds what they share with tools: the
//! headless RDP client ([`rdp_client`]) used by the RDP load test and benchmark and by the
//! `sekisho-rdp-client` binary.

pub mod rdp_client;
