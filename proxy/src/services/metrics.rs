//! Counters for `/metrics`, kept in [`super::Services`] so every front door updates them on
//! the path it already takes (decide, open, record, finish) and none can forget.
//!
//! Only counts: no user, address or target appears in a label, so the endpoint can be scraped
//! by a monitoring system that must not hold personal data.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use policy::Protocol;

/// The protocols, in the order they are printed.
const PROTOCOLS: [Protocol; 4] = [
    Protocol::Rdp,
    Protocol::Ssh,
    Protocol::ConsoleSerial,
    Protocol::ConsoleVnc,
];

/// What went wrong, for `sekisho_errors_total{kind=…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ErrorKind {
    /// The catalogue could not be read or written (the request was denied: fail closed).
    Catalogue,
    /// A recording could not be opened or written (the session did not run or was ended).
    Recording,
    /// A recording could not be sealed at the end of its session.
    Seal,
    /// A configuration reload was refused.
    Reload,
    /// Retention could not delete a recording.
    Retention,
}

impl ErrorKind {
    const ALL: [ErrorKind; 5] = [
        ErrorKind::Catalogue,
        ErrorKind::Recording,
        ErrorKind::Seal,
        ErrorKind::Reload,
        ErrorKind::Retention,
    ];

    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Catalogue => "catalogue",
            ErrorKind::Recording => "recording",
            ErrorKind::Seal => "seal",
            ErrorKind::Reload => "reload",
            ErrorKind::Retention => "retention",
        }
    }
}

/// This instance's counters since it started.
#[derive(Debug, Default)]
pub struct Metrics {
    sessions_started: Mutex<BTreeMap<&'static str, u64>>,
    sessions_ended: Mutex<BTreeMap<(&'static str, &'static str), u64>>,
    decisions_allowed: AtomicU64,
    denials: Mutex<BTreeMap<&'static str, u64>>,
    bytes_to_server: AtomicU64,
    bytes_to_client: AtomicU64,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    reloads: AtomicU64,
    recordings_deleted: AtomicU64,
    bytes_deleted: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Metrics {
    pub(crate) fn session_started(&self, p: Protocol) {
        *lock(&self.sessions_started).entry(p.as_str()).or_default() += 1;
    }

    pub(crate) fn session_ended(&self, p: Protocol, outcome: recorder::catalogue::Outcome) {
        *lock(&self.sessions_ended)
            .entry((p.as_str(), outcome.as_str()))
            .or_default() += 1;
    }

    pub(crate) fn decision(&self, rule: Option<policy::Rule>) {
        match rule {
            None => {
                self.decisions_allowed.fetch_add(1, Ordering::Relaxed);
            }
            Some(rule) => *lock(&self.denials).entry(rule.as_str()).or_default() += 1,
        }
    }

    pub(crate) fn recorded(&self, to_server: bool, n: usize) {
        let counter = if to_server {
            &self.bytes_to_server
        } else {
            &self.bytes_to_client
        };
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn error(&self, kind: ErrorKind) {
        *lock(&self.errors).entry(kind.as_str()).or_default() += 1;
    }

    pub(crate) fn reloaded(&self) {
        self.reloads.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn recording_deleted(&self, size: u64) {
        self.recordings_deleted.fetch_add(1, Ordering::Relaxed);
        self.bytes_deleted.fetch_add(size, Ordering::Relaxed);
    }

    /// Denials counted so far for `rule` (for tests and the report).
    pub fn denials_of(&self, rule: policy::Rule) -> u64 {
        lock(&self.denials).get(rule.as_str()).copied().unwrap_or(0)
    }

    /// The Prometheus text exposition (format 0.0.4) of every counter, plus `live`: this
    /// instance's live sessions by protocol, and `spool`: the state of the object store's
    /// spool when recordings go to one.
    pub fn render(&self, live: &[(Protocol, u64)], spool: Option<recorder::SpoolStatus>) -> String {
        let mut w = Writer::default();
        w.family(
            "sekisho_instance_sessions_live",
            "gauge",
            "Live sessions of this instance, by protocol.",
        );
        for p in PROTOCOLS {
            let n: u64 = live.iter().filter(|(q, _)| *q == p).map(|(_, n)| n).sum();
            w.sample(
                "sekisho_instance_sessions_live",
                &[("protocol", p.as_str())],
                n,
            );
        }
        w.family(
            "sekisho_sessions_started_total",
            "counter",
            "Sessions this instance started, by protocol.",
        );
        let started = lock(&self.sessions_started).clone();
        for p in PROTOCOLS {
            w.sample(
                "sekisho_sessions_started_total",
                &[("protocol", p.as_str())],
                started.get(p.as_str()).copied().unwrap_or(0),
            );
        }
        w.family(
            "sekisho_sessions_ended_total",
            "counter",
            "Sessions this instance ended, by protocol and outcome.",
        );
        for ((p, outcome), n) in lock(&self.sessions_ended).iter() {
            w.sample(
                "sekisho_sessions_ended_total",
                &[("protocol", p), ("outcome", outcome)],
                *n,
            );
        }
        w.family(
            "sekisho_decisions_allowed_total",
            "counter",
            "Allow decisions this instance wrote.",
        );
        w.sample(
            "sekisho_decisions_allowed_total",
            &[],
            self.decisions_allowed.load(Ordering::Relaxed),
        );
        w.family(
            "sekisho_denials_total",
            "counter",
            "Deny decisions and refusals this instance wrote, by rule.",
        );
        for (rule, n) in lock(&self.denials).iter() {
            w.sample("sekisho_denials_total", &[("rule", rule)], *n);
        }
        w.family(
            "sekisho_recorded_bytes_total",
            "counter",
            "Session bytes written to recordings (before compression), by direction.",
        );
        for (dir, counter) in [
            ("client-to-server", &self.bytes_to_server),
            ("server-to-client", &self.bytes_to_client),
        ] {
            w.sample(
                "sekisho_recorded_bytes_total",
                &[("direction", dir)],
                counter.load(Ordering::Relaxed),
            );
        }
        w.family(
            "sekisho_errors_total",
            "counter",
            "Errors by kind (each one denied or ended a session, or refused a reload).",
        );
        let errors = lock(&self.errors).clone();
        for k in ErrorKind::ALL {
            w.sample(
                "sekisho_errors_total",
                &[("kind", k.as_str())],
                errors.get(k.as_str()).copied().unwrap_or(0),
            );
        }
        w.family(
            "sekisho_config_reloads_total",
            "counter",
            "Configuration reloads applied (SIGHUP).",
        );
        w.sample(
            "sekisho_config_reloads_total",
            &[],
            self.reloads.load(Ordering::Relaxed),
        );
        w.family(
            "sekisho_retention_deleted_recordings_total",
            "counter",
            "Recordings deleted by the retention policy.",
        );
        w.sample(
            "sekisho_retention_deleted_recordings_total",
            &[],
            self.recordings_deleted.load(Ordering::Relaxed),
        );
        w.family(
            "sekisho_retention_deleted_bytes_total",
            "counter",
            "Bytes of recordings deleted by the retention policy.",
        );
        w.sample(
            "sekisho_retention_deleted_bytes_total",
            &[],
            self.bytes_deleted.load(Ordering::Relaxed),
        );
        if let Some(spool) = spool {
            render_spool(&mut w, spool);
        }
        w.0
    }
}

/// The object store's families: present only when recordings go to one.
fn render_spool(w: &mut Writer, s: recorder::SpoolStatus) {
    for (name, kind, help, value) in [
        (
            "sekisho_recording_spool_bytes",
            "gauge",
            "Bytes of recordings in the local spool (live recordings, and finished ones not yet uploaded).",
            s.spool_bytes,
        ),
        (
            "sekisho_recording_spool_unshipped_bytes",
            "gauge",
            "Bytes of recordings that exist only in the local spool, not yet in the object store.",
            s.unshipped_bytes,
        ),
        (
            "sekisho_recording_spool_limit_bytes",
            "gauge",
            "storage.s3.spool_limit: new sessions are refused while the unshipped bytes are above it.",
            s.limit,
        ),
        (
            "sekisho_recording_uploads_pending",
            "gauge",
            "Finished recordings waiting in the spool for their upload to the object store.",
            s.pending_uploads,
        ),
        (
            "sekisho_object_store_failures_total",
            "counter",
            "Requests to the recordings' object store that failed.",
            s.store_failures,
        ),
        (
            "sekisho_object_store_up",
            "gauge",
            "1 when the last request to the recordings' object store succeeded, else 0.",
            u64::from(s.store_reachable),
        ),
    ] {
        w.family(name, kind, help);
        w.sample(name, &[], value);
    }
}

#[derive(Default)]
struct Writer(String);

impl Writer {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: u64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                // Label values here are rule ids, protocols and outcomes (fixed ASCII), but
                // escape anyway so a future label cannot break the exposition.
                let v = v
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(self.0, "{k}=\"{v}\"");
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_counts() {
        let m = Metrics::default();
        m.session_started(Protocol::Ssh);
        m.session_started(Protocol::Ssh);
        m.session_started(Protocol::Rdp);
        m.session_ended(Protocol::Ssh, recorder::catalogue::Outcome::Shutdown);
        m.decision(None);
        m.decision(Some(policy::Rule::RdpVdiToVm));
        m.decision(Some(policy::Rule::RdpVdiToVm));
        m.recorded(true, 10);
        m.recorded(false, 32);
        m.error(ErrorKind::Reload);
        m.recording_deleted(1000);
        assert!(
            !m.render(&[], None).contains("spool"),
            "no spool families for local recordings"
        );
        let spool = recorder::SpoolStatus {
            spool_bytes: 5000,
            unshipped_bytes: 300,
            limit: 1 << 30,
            pending_uploads: 2,
            store_failures: 7,
            store_reachable: false,
        };
        let text = m.render(&[(Protocol::Ssh, 1)], Some(spool));
        for line in [
            "sekisho_recording_spool_bytes 5000",
            "sekisho_recording_spool_unshipped_bytes 300",
            "sekisho_recording_spool_limit_bytes 1073741824",
            "sekisho_recording_uploads_pending 2",
            "sekisho_object_store_failures_total 7",
            "sekisho_object_store_up 0",
            "sekisho_instance_sessions_live{protocol=\"ssh\"} 1",
            "sekisho_instance_sessions_live{protocol=\"rdp\"} 0",
            "sekisho_sessions_started_total{protocol=\"ssh\"} 2",
            "sekisho_sessions_started_total{protocol=\"rdp\"} 1",
            "sekisho_sessions_ended_total{protocol=\"ssh\",outcome=\"shutdown\"} 1",
            "sekisho_decisions_allowed_total 1",
            "sekisho_denials_total{rule=\"rdp.vdi-to-vm\"} 2",
            "sekisho_recorded_bytes_total{direction=\"client-to-server\"} 10",
            "sekisho_recorded_bytes_total{direction=\"server-to-client\"} 32",
            "sekisho_errors_total{kind=\"reload\"} 1",
            "sekisho_errors_total{kind=\"catalogue\"} 0",
            "sekisho_retention_deleted_recordings_total 1",
            "sekisho_retention_deleted_bytes_total 1000",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing in:\n{text}"
            );
        }
        assert_eq!(m.denials_of(policy::Rule::RdpVdiToVm), 2);
        // Every sample belongs to the family declared last (no interleaving).
        let mut current = String::new();
        for l in text.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                current = rest.split(' ').next().unwrap_or_default().to_owned();
            } else if !l.starts_with('#') {
                assert!(l.starts_with(&current), "{l} outside its family {current}");
            }
        }
    }
}
