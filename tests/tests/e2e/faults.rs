//! Fault tests: Sekisho under real faults (full disk, stopped PostgreSQL, vanishing targets,
//! slow and half-open connections, floods of garbage) keeps failing closed and keeps serving.
