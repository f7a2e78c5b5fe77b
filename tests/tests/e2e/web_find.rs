//! Finding what someone did across sessions in Chromium, in Japanese and English: the find page and the per-session command list.
