//! The denials dashboard in Chromium, in Japanese and English: filters, links, severity, the previous period, failed logins from every door.
