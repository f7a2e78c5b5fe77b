//! The review desk in Chromium, in Japanese and English: the session list, finding, denials and the emergency stop.
