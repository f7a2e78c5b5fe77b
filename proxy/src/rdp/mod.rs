//! RDP inline proxy.
