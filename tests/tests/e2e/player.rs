//! Player tests against recordings made through Sekisho with real peers: decoders, exports and
//! fidelity against the peers' own screens.
