//! The catalogue's records (what callers write), rows (what they read) and filters.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::{Protocol, SessionId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::CatalogueError;

/// Longest instance id accepted: ids appear in every row and in logs.
pub const MAX_INSTANCE_ID_LEN: usize = 128;

/// Which Sekisho instance wrote a row.
///
/// Several instances may share one PostgreSQL catalogue; each row records its writer so an
/// instance can find (and, after a crash, clean up) its own live sessions and kill requests.
/// Any short printable name works (a host name, a configured name, a UUID).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct InstanceId(String);

impl InstanceId {
    /// Checks the id: 1..=[`MAX_INSTANCE_ID_LEN`] characters, none of them control characters.
    pub fn new(id: impl Into<String>) -> Result<Self, CatalogueError> {
        let id = id.into();
        if id.is_empty()
            || id.chars().count() > MAX_INSTANCE_ID_LEN
            || id.chars().any(char::is_control)
        {
            return Err(CatalogueError::InvalidInstanceId(id));
        }
        Ok(InstanceId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for InstanceId {
    type Err = CatalogueError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InstanceId::new(s)
    }
}

impl<'de> Deserialize<'de> for InstanceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        InstanceId::new(s).map_err(serde::de::Error::custom)
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub uuid::Uuid);

        impl $name {
            /// A fresh UUIDv7 (time-ordered, unique across instances).
            pub fn new_v7() -> Self {
                $name(uuid::Uuid::now_v7())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map($name)
            }
        }
    };
}

uuid_id!(
    /// The id of one recorded decision.
    DecisionId
);
uuid_id!(
    /// The id of one catalogue-level audit event.
    AuditEventId
);
uuid_id!(
    /// The id of one review of a denial or of a policy event.
    ReviewId
);
uuid_id!(
    /// The id of one event inside a session.
    SessionEventId
);

macro_rules! text_enum {
    (
        $(#[$doc:meta])* $name:ident, $what:literal {
            $($(#[$vdoc:meta])* $variant:ident = $text:literal,)*
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[non_exhaustive]
        pub enum $name {
            $($(#[$vdoc])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The stored and displayed name.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = CatalogueError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| CatalogueError::corrupt($what, s))
            }
        }
    };
}

text_enum!(
    /// What a decision said.
    Verdict, "verdict" {
        /// The connection was allowed.
        Allow = "allow",
        /// The connection was refused.
        Deny = "deny",
    }
);

text_enum!(
    /// How a session ended (or `Live` while it runs).
    Outcome, "outcome" {
        /// Still running.
        Live = "live",
        /// Ended normally by either side.
        Completed = "completed",
        /// Refused after the session row was written (e.g. a later policy check).
        Denied = "denied",
        /// Ended by `sekisho sessions kill`.
        Killed = "killed",
        /// Its instance stopped (crash, power loss) while it ran; found and closed later.
        Interrupted = "interrupted",
        /// Ended by an error (upstream failure, recording failure: fail closed).
        Failed = "failed",
        /// Ended because the contract window closed.
        WindowClosed = "window-closed",
        /// Ended because the instance shut down in an orderly way.
        Shutdown = "shutdown",
        /// Ended because a re-decision under the current configuration denies it (user or
        /// target removed or changed, contract gone, ...); the rule and reason are in the
        /// session's events.
        Revoked = "revoked",
    }
);

text_enum!(
    /// What security staff concluded about a denial.
    Disposition, "disposition" {
        /// Policy worked as meant (a contractor tried what is not allowed, and was stopped).
        Expected = "expected",
        /// A mistake: a wrong target typed, a stale bookmark, a configuration slip.
        Mistake = "mistake",
        /// An incident to follow up.
        Incident = "incident",
    }
);

text_enum!(
    /// Where a session's recording stands.
    RecordingState, "recording state" {
        /// Being written.
        Live = "live",
        /// Finished and signed.
        Complete = "complete",
        /// Cut short (crash, storage failure); readable up to its last whole chunk.
        Incomplete = "incomplete",
        /// An incomplete recording whose recovered prefix has since been signed.
        Sealed = "sealed",
        /// Deleted by the retention policy; the row keeps its location, size and final hash
        /// as evidence of what was deleted.
        Deleted = "deleted",
    }
);

/// Well-known `kind`s of session events and audit events. Others may be used freely.
pub mod event_kind {
    /// A clipboard channel was stripped from an RDP session.
    pub const CLIPBOARD_STRIPPED: &str = "clipboard stripped";
    /// An SFTP/SCP request was refused.
    pub const SFTP_REFUSED: &str = "sftp refused";
    /// A port/agent/X11 forwarding request was refused.
    pub const FORWARDING_REFUSED: &str = "forwarding refused";
    /// Someone asked for the session to be killed (detail: who).
    pub const KILL_REQUESTED: &str = "kill requested";
    /// The session was killed.
    pub const KILLED: &str = "killed";
    /// Writing the recording failed.
    pub const RECORDING_FAILED: &str = "recording failed";
    /// The session's instance stopped while it was live.
    pub const INTERRUPTED: &str = "interrupted";
    /// The contract window is about to close.
    pub const WINDOW_WARNING: &str = "window closing";
    /// A re-decision under the current configuration denied the live session, which was
    /// ended (detail: the rule and the reason).
    pub const REVOKED: &str = "revoked";
    /// Audit: a recording storage failed.
    pub const RECORDING_STORAGE_FAILED: &str = "recording storage failed";
    /// Audit: an interrupted session's recording was sealed.
    pub const INTERRUPTED_SESSION_SEALED: &str = "interrupted session sealed";
    /// Audit: retention deleted old recordings.
    pub const RETENTION_DELETED: &str = "retention deleted";
    /// Audit: the configuration was reloaded (SIGHUP).
    pub const CONFIG_RELOADED: &str = "config reloaded";
    /// Audit: a configuration reload was refused; the previous configuration stays.
    pub const CONFIG_RELOAD_FAILED: &str = "config reload failed";
    /// Audit: too many failed logons locked a user name or a source address out (`[auth]`).
    pub const AUTH_LOCKOUT: &str = "auth lockout";
    /// A member of staff began watching the live session (detail: who, and their role).
    pub const WATCHER_JOINED: &str = "watcher joined";
    /// A watcher stopped watching (left the page, or their page stopped answering).
    pub const WATCHER_LEFT: &str = "watcher left";
    /// Audit: security staff reviewed a denial or a policy event (detail: the disposition,
    /// who, the comment).
    pub const REVIEW: &str = "review";
    /// Audit: an evidence bundle of the session was exported (detail: by whom, from where).
    pub const EVIDENCE_EXPORTED: &str = "evidence exported";

    /// The session events security staff review like denials: the policy acting inside an
    /// allowed session where no door refused anything (a channel stripped, clipboard data
    /// dropped, a session revoked). An SFTP or forwarding request refused inside a session is
    /// a denial too, and is reviewed as that. The recorder's event names
    /// (`recorder::format::EventKind::as_str`) and the catalogue's own.
    pub const REVIEWABLE: &[&str] = &[
        "channel-stripped",
        "clipboard-dropped",
        CLIPBOARD_STRIPPED,
        REVOKED,
    ];
}

/// One allow/deny decision to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DecisionRecord {
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// The instance that decided.
    pub instance: InstanceId,
    /// The protocol asked for.
    pub protocol: Protocol,
    /// The client's address.
    pub source: IpAddr,
    /// The target as resolved, or as given when unknown (`None` when none was given).
    pub target: Option<String>,
    /// The user, when known.
    pub user: Option<String>,
    /// The user's contractor, when known.
    pub contractor: Option<String>,
    /// Allow or deny.
    pub verdict: Verdict,
    /// The rule id (`policy::Rule::as_str`), e.g. `rdp.vdi-to-vm`.
    pub rule: String,
    /// The reason sentence shown to people.
    pub reason: String,
    /// The reason as a template and its parameters, for other languages (`None` when the
    /// refusal was worded by a proxy without one).
    pub explanation: Option<policy::reasons::Explanation>,
    /// The session the decision started (allow), or that it ended (e.g. `ssh.forwarding`).
    pub session_id: Option<SessionId>,
}

impl DecisionRecord {
    /// The record of `decision`, made by `instance` at `at` for `request`.
    ///
    /// The target is the resolved name when policy found one, else the target as the client
    /// gave it (name or address), so a denial for an unknown target still says what was asked.
    pub fn from_decision(
        at: DateTime<Utc>,
        instance: &InstanceId,
        request: &policy::Request,
        decision: &policy::Decision,
        session_id: Option<SessionId>,
    ) -> Self {
        DecisionRecord {
            at,
            instance: instance.clone(),
            protocol: request.protocol,
            source: request.source,
            target: Some(
                decision
                    .target()
                    .map_or_else(|| request.target.to_string(), str::to_owned),
            ),
            user: decision
                .user()
                .map(str::to_owned)
                .or_else(|| request.user.clone()),
            contractor: decision.contractor().map(str::to_owned),
            verdict: if decision.is_allow() {
                Verdict::Allow
            } else {
                Verdict::Deny
            },
            rule: decision.rule().as_str().to_owned(),
            reason: decision.reason().to_owned(),
            explanation: decision.explanation().cloned(),
            session_id,
        }
    }
}

/// A stored decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DecisionRow {
    /// Its id.
    pub id: DecisionId,
    /// When it was decided.
    pub at: DateTime<Utc>,
    /// The instance that decided.
    pub instance_id: InstanceId,
    /// The protocol asked for.
    pub protocol: Protocol,
    /// The client's address.
    pub source: IpAddr,
    /// The target (resolved, or as given).
    pub target: Option<String>,
    /// The user, when known.
    pub user: Option<String>,
    /// The contractor, when known.
    pub contractor: Option<String>,
    /// Allow or deny.
    pub verdict: Verdict,
    /// The rule id.
    pub rule: String,
    /// The reason sentence.
    pub reason: String,
    /// The reason as a template and its parameters, when stored with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<policy::reasons::Explanation>,
    /// The related session, if any.
    pub session_id: Option<SessionId>,
}

/// A stored deny decision, shaped as `sekisho denials list --json` prints it
/// (`started_at` is the decision time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DenialRow {
    /// The decision's id.
    pub id: DecisionId,
    /// The protocol asked for.
    pub protocol: Protocol,
    /// The user, when known.
    pub user: Option<String>,
    /// The contractor, when known.
    pub contractor: Option<String>,
    /// The client's address.
    pub source: IpAddr,
    /// The target (resolved, or as given).
    pub target: Option<String>,
    /// The decision time.
    pub started_at: DateTime<Utc>,
    /// The rule id.
    pub rule: String,
    /// The reason sentence.
    pub reason: String,
    /// The reason as a template and its parameters, when stored with one (the web UI renders
    /// it in the reader's language).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub explanation: Option<policy::reasons::Explanation>,
    /// The instance that decided.
    pub instance_id: InstanceId,
    /// The related session, if any.
    pub session_id: Option<SessionId>,
}

impl From<DecisionRow> for DenialRow {
    fn from(d: DecisionRow) -> Self {
        DenialRow {
            id: d.id,
            protocol: d.protocol,
            user: d.user,
            contractor: d.contractor,
            source: d.source,
            target: d.target,
            started_at: d.at,
            rule: d.rule,
            reason: d.reason,
            explanation: d.explanation,
            instance_id: d.instance_id,
            session_id: d.session_id,
        }
    }
}

/// Which decisions to list (newest first). `None` fields do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecisionFilter {
    /// At or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only this user.
    pub user: Option<String>,
    /// Only this rule id.
    pub rule: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only allows or only denials.
    pub verdict: Option<Verdict>,
    /// At most this many rows (capped at [`MAX_PAGE`](super::MAX_PAGE); `None` = the cap).
    pub limit: Option<u32>,
    /// Skip this many rows first.
    pub offset: Option<u64>,
}

/// Which denials to list (newest first). `None` fields do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DenialFilter {
    /// At or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Before this time (exclusive), so a period and the one before it never share a row.
    pub until: Option<DateTime<Utc>>,
    /// Only this user.
    pub user: Option<String>,
    /// Only users whose name starts with this, ignoring ASCII case (a typed, partial name).
    pub user_prefix: Option<String>,
    /// Only this rule id.
    pub rule: Option<String>,
    /// Only these rule ids (e.g. every rule of one severity). `Some` of an empty list matches
    /// nothing.
    pub rules: Option<Vec<String>>,
    /// Only this contractor.
    pub contractor: Option<String>,
    /// Only contractors whose id starts with this, ignoring ASCII case.
    pub contractor_prefix: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only targets whose name starts with this, ignoring ASCII case.
    pub target_prefix: Option<String>,
    /// Only this client address.
    pub source: Option<IpAddr>,
    /// Only client addresses whose text starts with this (`127.0.10.`), ignoring ASCII case
    /// (IPv6 hex digits).
    pub source_prefix: Option<String>,
    /// Only this protocol (the door: `web`, `ssh`, `rdp`, `console-vnc`, ...).
    pub protocol: Option<Protocol>,
    /// At most this many rows (capped at [`MAX_PAGE`](super::MAX_PAGE); `None` = the cap).
    pub limit: Option<u32>,
    /// Skip this many rows first.
    pub offset: Option<u64>,
}

/// A session about to start (its decision allowed it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    /// Its id (UUIDv7, made by the proxy).
    pub id: SessionId,
    /// The instance running it.
    pub instance: InstanceId,
    /// The protocol.
    pub protocol: Protocol,
    /// The user.
    pub user: String,
    /// The user's contractor.
    pub contractor: String,
    /// The client's address.
    pub source: IpAddr,
    /// The target's name.
    pub target: String,
    /// The access path the session came through (`internet-vpn`, `ip-vpn`, ...); a hop
    /// inherits its console's. Live consoles report it to the policy engine.
    pub path: String,
    /// For an RDP hop: the live console session it rides on.
    pub console_session: Option<SessionId>,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Where its recording is written (file path or storage URL), when known already.
    /// Setting it marks the recording `live`.
    pub recording: Option<String>,
    /// Free text (e.g. the RDP channels negotiated).
    pub detail: Option<String>,
}

impl NewSession {
    /// The session `authorized` allows, with every field policy resolved (user, contractor,
    /// target, access path, and for a hop the console it rides on).
    pub fn from_authorized(
        id: SessionId,
        instance: &InstanceId,
        authorized: &policy::Authorized,
        started_at: DateTime<Utc>,
        recording: Option<String>,
    ) -> Self {
        NewSession {
            id,
            instance: instance.clone(),
            protocol: authorized.protocol(),
            user: authorized.user().to_owned(),
            contractor: authorized.contractor().to_owned(),
            source: authorized.source(),
            target: authorized.target().to_owned(),
            path: authorized.path().to_owned(),
            console_session: authorized.console_session(),
            started_at,
            recording,
            detail: None,
        }
    }
}

/// Where a session's recording ended up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RecordingSummary {
    /// File path or storage URL.
    pub location: String,
    /// Its state.
    pub state: RecordingState,
    /// Its size in bytes.
    pub size: u64,
    /// The final hash of its chain (hex), when it has one.
    pub hash: Option<String>,
}

/// A stored session, shaped as `sekisho sessions list --json` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionRow {
    /// Its id.
    pub id: SessionId,
    /// The protocol.
    pub protocol: Protocol,
    /// The user.
    pub user: String,
    /// The user's contractor.
    pub contractor: String,
    /// The client's address.
    pub source: IpAddr,
    /// The target's name.
    pub target: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// When it ended; `None` while live.
    pub ended_at: Option<DateTime<Utc>>,
    /// How it ended (`live` while it runs).
    pub outcome: Outcome,
    /// The recording's file path or storage URL.
    pub recording: Option<String>,
    /// The recording's state.
    pub recording_state: Option<RecordingState>,
    /// For an RDP hop: the console session it rode on.
    pub console_session: Option<SessionId>,
    /// The recording's size in bytes, once known.
    pub recording_size: Option<u64>,
    /// The recording's final hash (hex), once known.
    pub recording_hash: Option<String>,
    /// The access path the session came through.
    pub path: String,
    /// The instance running (or that ran) it.
    pub instance_id: InstanceId,
    /// Free text.
    pub detail: Option<String>,
}

/// A position in the session list (newest first): keyset paging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionCursor {
    /// The start time of the last row seen.
    pub started_at: DateTime<Utc>,
    /// Its id (breaks ties between sessions that started in the same microsecond).
    pub id: SessionId,
}

impl SessionRow {
    /// Where the next page after this row starts.
    pub fn cursor(&self) -> SessionCursor {
        SessionCursor {
            started_at: self.started_at,
            id: self.id,
        }
    }
}

/// Which sessions to list (newest first). `None` fields do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Started at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Started before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only this user.
    pub user: Option<String>,
    /// Only this contractor.
    pub contractor: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only users whose name starts with this, ignoring ASCII case (the web UI's forgiving
    /// filter; `user` stays exact, for a contractor's own sessions).
    pub user_prefix: Option<String>,
    /// Only contractors whose id starts with this, ignoring ASCII case.
    pub contractor_prefix: Option<String>,
    /// Only targets whose name starts with this, ignoring ASCII case.
    pub target_prefix: Option<String>,
    /// Only this protocol.
    pub protocol: Option<Protocol>,
    /// Only this outcome (`Live` = still running).
    pub outcome: Option<Outcome>,
    /// Only sessions of this instance.
    pub instance: Option<InstanceId>,
    /// Only sessions after this one in list order (older, or as old with a smaller id): the
    /// last row's [`SessionRow::cursor`] gives the next page without counting an offset,
    /// so deep pages cost as little as the first.
    pub after: Option<SessionCursor>,
    /// At most this many rows (capped at [`MAX_PAGE`](super::MAX_PAGE); `None` = the cap).
    pub limit: Option<u32>,
    /// Skip this many rows first.
    pub offset: Option<u64>,
}

/// A stored session event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionEventRow {
    /// Its id.
    pub id: SessionEventId,
    /// The session.
    pub session_id: SessionId,
    /// When.
    pub at: DateTime<Utc>,
    /// What (see [`event_kind`]).
    pub kind: String,
    /// Details.
    pub detail: Option<String>,
    /// The instance that wrote it.
    pub instance_id: InstanceId,
}

/// A policy event (one of [`event_kind::REVIEWABLE`]) with the session it happened in, as
/// the review dashboard lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PolicyEventRow {
    /// The event's id.
    pub id: SessionEventId,
    /// The session.
    pub session_id: SessionId,
    /// When.
    pub at: DateTime<Utc>,
    /// What.
    pub kind: String,
    /// Details.
    pub detail: Option<String>,
    /// The session's protocol.
    pub protocol: Protocol,
    /// The session's user.
    pub user: String,
    /// The user's contractor.
    pub contractor: String,
    /// The client's address.
    pub source: IpAddr,
    /// The session's target.
    pub target: String,
}

/// A catalogue-level event without (or beyond) a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// The instance that writes it.
    pub instance: InstanceId,
    /// What (see [`event_kind`]).
    pub kind: String,
    /// Details.
    pub detail: Option<String>,
    /// The session concerned, if any.
    pub session_id: Option<SessionId>,
}

/// A stored audit event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditEventRow {
    /// Its id.
    pub id: AuditEventId,
    /// When.
    pub at: DateTime<Utc>,
    /// The instance that wrote it.
    pub instance_id: InstanceId,
    /// What.
    pub kind: String,
    /// Details.
    pub detail: Option<String>,
    /// The session concerned, if any.
    pub session_id: Option<SessionId>,
}

/// Which audit events to list (newest first). `None` fields do not filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// At or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this instance.
    pub instance: Option<InstanceId>,
    /// At most this many rows (capped at [`MAX_PAGE`](super::MAX_PAGE); `None` = the cap).
    pub limit: Option<u32>,
    /// Skip this many rows first.
    pub offset: Option<u64>,
}

/// Which live sessions [`Catalogue::mark_interrupted`](super::Catalogue::mark_interrupted)
/// closes.
#[derive(Clone, Copy, Debug)]
pub enum Interrupted<'a> {
    /// Every live session of this instance (at its start, after a crash).
    Instance(&'a InstanceId),
    /// These sessions (e.g. those whose recordings were just sealed).
    Sessions(&'a [SessionId]),
}

/// An instance known to the catalogue through its heartbeats.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceRow {
    /// The instance.
    pub instance_id: InstanceId,
    /// Its first heartbeat.
    pub started_at: DateTime<Utc>,
    /// Its latest heartbeat.
    pub last_seen: DateTime<Utc>,
}

/// Which backend a catalogue uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// A local SQLite file.
    Sqlite,
    /// A PostgreSQL server, possibly shared by several instances.
    Postgres,
}

impl RecordingState {
    /// Complete or sealed: the recording ends with a signed trailer, so it goes into the
    /// ledger.
    pub fn is_signed(self) -> bool {
        matches!(self, RecordingState::Complete | RecordingState::Sealed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_ids_are_checked() {
        assert!(InstanceId::new("bastion-a").is_ok());
        assert!(InstanceId::new("").is_err());
        assert!(InstanceId::new("a\nb").is_err());
        assert!(InstanceId::new("x".repeat(MAX_INSTANCE_ID_LEN + 1)).is_err());
    }

    #[test]
    fn enums_round_trip_through_text() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>().unwrap(), *o);
            assert_eq!(
                serde_json::to_string(o).unwrap(),
                format!("\"{}\"", o.as_str())
            );
        }
        for s in RecordingState::ALL {
            assert_eq!(s.as_str().parse::<RecordingState>().unwrap(), *s);
        }
        assert_eq!(
            "window-closed".parse::<Outcome>().unwrap(),
            Outcome::WindowClosed
        );
        assert_eq!("revoked".parse::<Outcome>().unwrap(), Outcome::Revoked);
        assert!("exploded".parse::<Outcome>().is_err());
    }
}
