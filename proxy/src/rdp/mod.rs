//! RDP inline proxy.
//!
//! Layout (house style 2, 15, 16): the sans-IO core — [`framing`], [`negotiation`],
//! [`channels`], [`mitm`] — has no tokio and is unit- and property-tested; the async relay
//! drives it over sockets.

pub mod channels;
pub mod error;
pub mod framing;
pub mod mitm;
pub mod negotiation;
