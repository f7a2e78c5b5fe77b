//! The player's controls in Chromium, in Japanese and English.
