//! Sekisho policy: the inventory model and the decision engine.
