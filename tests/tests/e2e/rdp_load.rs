//! The headless RDP client (ironrdp-connector) through Sekisho: automation, load and the RDP benchmark.
