//! The audit catalogue: decisions, sessions, events.
