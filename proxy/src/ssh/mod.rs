//! SSH front door and text-console mediation.
