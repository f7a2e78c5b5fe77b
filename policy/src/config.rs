//! The configuration model (`sekisho.toml`) and its validation.
//!
//! Every table and key of `examples/sekisho.toml` is accepted; unknown keys are errors. An
//! empty file is valid and gives the built-in defaults (see [`Inventory::default`]).
//! Validation collects every error it finds, each naming file, line, column and key.
//!
//! Keys added beyond the shipped example (all optional):
//! - `user.nt_hash`: 32 hex digits, the NT hash for NLA on the RDP contractor leg.
//! - `user.ssh_keys`: OpenSSH public key lines (`ssh-ed25519 AAAA… comment`).
//! - `user.matrix_card`: the user's matrix card for the SSH helper, one string per row of
//!   digits, all rows the same length; rows are numbered 1, 2, … and columns lettered A, B, …
//!   (at most [`MAX_MATRIX_SIDE`] of each), e.g. `["3829", "1047", "5561"]`.
//! - `target.ssh_port` (default 22), `target.rdp_port` (default 3389), `target.credential`.
//! - `target.serial_console`, `target.vnc_console`: `host:port` on the hypervisor.
//! - `target.vnc_qmp`: `host:port` of the QEMU monitor (QMP over TCP) of the VM, next to
//!   `vnc_console`: Sekisho sets a one-time VNC password through it right before connecting
//!   (instead of a stored password); needs `vnc_console`.
//! - `target.ssh_console`: `host:port` of an SSH endpoint on the hypervisor giving the VM's
//!   text console, with `target.console_command` (e.g. `"virsh console {vm}"`, `{vm}` being the
//!   target name) run there; `console_command` needs `ssh_console`.
//! - `hypervisor.credential`: a `[credential.NAME]` of the secrets file.
//! - `[auth]`: `max_failures` (default 10) failed logons per user name, and per source
//!   address, within `failure_window` (default 15 min) lock that name or address out for
//!   `lockout` (default 15 min); `second_factor_ttl` (default 8 h) is how long a matrix card
//!   passed at the web or SSH login counts for the VNC (and RDP) doors; `supervision_wait`
//!   (default 5 min) is how long a session to a `supervised` target waits for a member of
//!   security staff to watch it before it is refused (`supervision.absent`). Durations are seconds
//!   (`900`) or digits with a unit (`"30s"`, `"15m"`, `"8h"`, `"1d"`), 1 s to 30 days.
//!
//! Decisions taken here: only `role = "contractor"` users have a `contractor` and `desktops`
//! (other roles may not open sessions at all); a VM needs a hypervisor and at least one console
//! endpoint; a physical server has neither; pool networks may not overlap and may not contain a
//! target's address, so a source address classifies one way only. Contract dates may be
//! quoted (`"2026-04-01"`, as in the example) or bare TOML dates; windows are described in
//! [`crate::window`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;
use chrono_tz::Tz;
use ipnet::IpNet;
use serde::Deserialize;

use crate::diag::{ConfigErrors, Diag, S};
pub use crate::limits::Limits;
use crate::secrets::{Secret, Secrets};
pub use crate::storage::{Recordings, S3Recordings};
use crate::window::Window;

/// Largest matrix card, in rows and in columns: columns are lettered A..Z.
pub const MAX_MATRIX_SIDE: usize = 26;

/// `[storage]`: where Sekisho keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Storage {
    /// `sqlite://path` or `postgres://…`.
    pub database: String,
    /// Where recordings go: a directory, or `s3://BUCKET/PREFIX` with `[storage.s3]`.
    pub recordings: Recordings,
    /// Ed25519 signing key file.
    pub signing_key: PathBuf,
    /// The secrets file.
    pub secrets: PathBuf,
}

/// `[tls]`: the certificate of the RDP and web front doors.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

/// `[listen]`: the front-door addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Listen {
    /// RDP front door.
    pub rdp: SocketAddr,
    /// SSH front door.
    pub ssh: SocketAddr,
    /// VNC front door.
    pub vnc: SocketAddr,
    /// Web UI (and `/metrics` there only with a bearer token from the secrets file).
    pub web: SocketAddr,
    /// `/metrics` on a listener of its own, plain HTTP (`None`: not served apart). Meant for
    /// loopback or a management network that only the scraper reaches.
    pub metrics: Option<SocketAddr>,
}

/// `[recording]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recording {
    /// Fail closed: without a working recording no session may run.
    pub required: bool,
    /// Delete the recordings of sessions that ended more than this many days ago (the
    /// deletion is written to the catalogue). `None`: keep recordings for ever.
    pub retention_days: Option<u32>,
    /// How often `serve` signs a checkpoint of the recordings ledger (also at shutdown).
    pub ledger_checkpoint_interval: Duration,
}

/// Built-in `recording.ledger_checkpoint_interval`.
pub const DEFAULT_LEDGER_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(3600);

/// `[auth]`: how the front doors stop password and card guessing, and how long a passed
/// matrix card counts for the doors without a card step of their own (VNC, RDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthPolicy {
    /// Failed logons (per user name, and per source address) within `failure_window` that
    /// start a lockout.
    pub max_failures: u32,
    /// The window over which failed logons count.
    pub failure_window: Duration,
    /// How long a user name or address stays locked out.
    pub lockout: Duration,
    /// How long a matrix card passed at the web or SSH login counts for a VNC console (or an
    /// RDP connection) of the same user from the same desktop.
    pub second_factor_ttl: Duration,
    /// Time from accepting a connection to the person's authentication, on every door; a
    /// client that stays silent or stalls before it is closed then.
    pub preauth_timeout: Duration,
    /// How long a session to a `supervised` target waits for a watcher (four eyes).
    pub supervision_wait: Duration,
}

/// Longest duration an `[auth]` key accepts: longer lockouts are a denial of service, and a
/// cap keeps every `Instant + duration` far from overflow.
pub const MAX_AUTH_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Largest `auth.max_failures`.
pub const MAX_AUTH_FAILURES: u32 = 10_000;

/// `[rdp]`: virtual channel filtering.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RdpPolicy {
    /// Static virtual channels that may pass; all others are stripped.
    pub allow_static_channels: Vec<String>,
    /// Dynamic virtual channels that may be opened; every other name is refused at creation.
    pub allow_dynamic_channels: Vec<String>,
    /// Dynamic virtual channels that are refused, even when the allow list names them.
    pub deny_dynamic_channels: Vec<String>,
}

/// `[[vdi_pool]]`: VDI desktops behind one access path.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VdiPool {
    /// Unique pool name.
    pub name: String,
    /// The access path (`internet-vpn`, `ip-vpn`, …) named in `[zones]`.
    pub path: String,
    /// The desktops' networks.
    pub networks: Vec<IpNet>,
}

/// `[[contractor]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Contractor {
    /// Short unique id users and contracts refer to.
    pub id: String,
    /// Display name.
    pub name: String,
}

/// A user's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Works for a contractor; the only role that opens sessions.
    Contractor,
    /// Reviews recordings and decisions.
    Auditor,
    /// Security staff: review, emergency stop.
    Security,
    /// Administers Sekisho.
    Admin,
}

impl Role {
    /// The config name of the role.
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Contractor => "contractor",
            Role::Auditor => "auditor",
            Role::Security => "security",
            Role::Admin => "admin",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        [Role::Contractor, Role::Auditor, Role::Security, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[[user]]`: a person.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct User {
    /// Unique login name.
    pub name: String,
    /// The contractor's id; `Some` exactly for role contractor.
    pub contractor: Option<String>,
    /// The role.
    pub role: Role,
    /// Argon2 PHC string.
    pub password_hash: Option<String>,
    /// NT hash (MD4 of the UTF-16LE password) for NLA; password-equivalent, hence secret.
    pub nt_hash: Option<Secret<[u8; 16]>>,
    /// OpenSSH public key lines.
    pub ssh_keys: Vec<String>,
    /// VDI desktops assigned to the user (contractors only).
    pub desktops: Vec<IpAddr>,
    /// Matrix card rows of digits (see the module docs).
    pub matrix_card: Option<Vec<String>>,
}

/// `[[hypervisor]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Hypervisor {
    /// Unique name VMs refer to.
    pub name: String,
    /// Management address.
    pub address: IpAddr,
    /// A `[credential.NAME]` for console access.
    pub credential: Option<String>,
}

/// A target's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TargetKind {
    /// A virtual machine: reached through its hypervisor console.
    Vm,
    /// A physical server: RDP and SSH directly.
    Physical,
}

impl TargetKind {
    /// The config name.
    pub const fn as_str(self) -> &'static str {
        match self {
            TargetKind::Vm => "vm",
            TargetKind::Physical => "physical",
        }
    }
}

/// A `host:port` endpoint (host is an IP address or a DNS name).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// IP address or name (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `host:port` or `[v6]:port`.
    pub fn parse(s: &str) -> Result<Endpoint, String> {
        if let Ok(sa) = s.parse::<SocketAddr>() {
            return Ok(Endpoint {
                host: sa.ip().to_string(),
                port: sa.port(),
            });
        }
        let bad = || format!("bad address {s:?} (expected host:port)");
        let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let valid_name = !host.is_empty()
            && host.len() <= 253
            && host
                .split('.')
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        if !valid_name || port == 0 {
            return Err(bad());
        }
        Ok(Endpoint {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `[[target]]`: a server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Target {
    /// Unique name.
    pub name: String,
    /// The server's own address (unique; transparent RDP resolves by it).
    pub address: IpAddr,
    /// VM or physical.
    pub kind: TargetKind,
    /// Network zone, a key of `[zones]`.
    pub zone: String,
    /// The VM's hypervisor (VMs only).
    pub hypervisor: Option<String>,
    /// Graphical console on the hypervisor (VMs only).
    pub vnc_console: Option<Endpoint>,
    /// QMP (QEMU monitor, TCP) of the VM, for one-time VNC passwords (VMs with `vnc_console`).
    pub vnc_qmp: Option<Endpoint>,
    /// Raw TCP serial console on the hypervisor (VMs only).
    pub serial_console: Option<Endpoint>,
    /// SSH endpoint on the hypervisor giving a text console (VMs only).
    pub ssh_console: Option<Endpoint>,
    /// Command run on `ssh_console`; `{vm}` is replaced by the target name.
    pub console_command: Option<String>,
    /// The server's RDP port.
    pub rdp_port: u16,
    /// The server's SSH port.
    pub ssh_port: u16,
    /// A `[credential.NAME]` Sekisho injects.
    pub credential: Option<String>,
    /// Four eyes: a session runs only while a member of security staff watches it
    /// (`supervised = true`; rule `supervision.absent`).
    pub supervised: bool,
}

impl Target {
    /// True if the VM has a text console (serial or SSH console).
    pub fn has_text_console(&self) -> bool {
        self.serial_console.is_some() || self.ssh_console.is_some()
    }
}

/// `[[contract]]`: which targets a contractor may maintain, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Contract {
    /// Contractor id.
    pub contractor: String,
    /// Target names.
    pub targets: Vec<String>,
    /// First day in force (inclusive, local to the timezone).
    pub valid_from: NaiveDate,
    /// Last day in force (inclusive).
    pub valid_until: NaiveDate,
    /// Windows inside which access is allowed; empty = any time.
    pub windows: Vec<Window>,
    /// Four eyes for every target of the contract (`supervised = true`).
    pub supervised: bool,
}

/// Where a connection comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// Inside a `vdi_pool` network.
    VdiDesktop(&'a VdiPool),
    /// The address of a target (a server in the farm).
    FarmServer(&'a Target),
    /// Neither.
    Unknown,
}

/// The validated configuration with lookup indexes. Build it with [`Inventory::from_toml`].
#[derive(Debug, Clone)]
pub struct Inventory {
    timezone: Tz,
    storage: Storage,
    tls: Tls,
    listen: Listen,
    recording: Recording,
    rdp: RdpPolicy,
    auth: AuthPolicy,
    limits: Limits,
    pools: Vec<VdiPool>,
    zones: BTreeMap<String, Vec<String>>,
    contractors: Vec<Contractor>,
    users: Vec<User>,
    hypervisors: Vec<Hypervisor>,
    targets: Vec<Target>,
    contracts: Vec<Contract>,
    idx: Index,
}

/// Precomputed lookups so a decision is a handful of hash probes.
#[derive(Debug, Clone, Default)]
struct Index {
    users: HashMap<String, usize>,
    desktops: HashMap<IpAddr, usize>,
    targets: HashMap<String, usize>,
    target_addrs: HashMap<IpAddr, usize>,
    contractors: HashMap<String, usize>,
    hypervisors: HashMap<String, usize>,
    /// (network, pool index), most specific first.
    nets: Vec<(IpNet, usize)>,
    /// (contractor index, target index) → contract indexes.
    contracts: HashMap<(usize, usize), Vec<usize>>,
}

// ---- raw serde model ----

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    timezone: Option<S<String>>,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    tls: RawTls,
    #[serde(default)]
    listen: RawListen,
    #[serde(default)]
    recording: RawRecording,
    #[serde(default)]
    vdi_pool: Vec<S<RawPool>>,
    #[serde(default)]
    zones: BTreeMap<String, S<Vec<S<String>>>>,
    #[serde(default)]
    contractor: Vec<S<RawContractor>>,
    #[serde(default)]
    user: Vec<S<RawUser>>,
    #[serde(default)]
    hypervisor: Vec<S<RawHypervisor>>,
    #[serde(default)]
    target: Vec<S<RawTarget>>,
    #[serde(default)]
    contract: Vec<S<RawContract>>,
    #[serde(default)]
    rdp: RawRdp,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    limits: crate::limits::RawLimits,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    max_failures: Option<S<i64>>,
    failure_window: Option<S<DurationValue>>,
    lockout: Option<S<DurationValue>>,
    second_factor_ttl: Option<S<DurationValue>>,
    preauth_timeout: Option<S<DurationValue>>,
    supervision_wait: Option<S<DurationValue>>,
}

/// A duration as written: a number of seconds, or a string of digits with a unit (`"30s"`,
/// `"15m"`, `"8h"`, `"1d"`).
#[derive(Deserialize)]
#[serde(untagged)]
enum DurationValue {
    Seconds(i64),
    Text(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    database: Option<S<String>>,
    recordings: Option<S<String>>,
    s3: Option<S<crate::storage::RawS3>>,
    signing_key: Option<String>,
    secrets: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert: Option<String>,
    key: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawListen {
    rdp: Option<S<String>>,
    ssh: Option<S<String>>,
    vnc: Option<S<String>>,
    web: Option<S<String>>,
    metrics: Option<S<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRecording {
    required: Option<bool>,
    retention_days: Option<S<i64>>,
    ledger_checkpoint_interval: Option<S<DurationValue>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRdp {
    allow_static_channels: Option<Vec<String>>,
    allow_dynamic_channels: Option<Vec<String>>,
    deny_dynamic_channels: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: Option<S<String>>,
    path: Option<S<String>>,
    #[serde(default)]
    networks: Vec<S<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContractor {
    id: Option<S<String>>,
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Option<S<String>>,
    contractor: Option<S<String>>,
    role: Option<S<String>>,
    password_hash: Option<S<String>>,
    nt_hash: Option<S<String>>,
    #[serde(default)]
    ssh_keys: Vec<S<String>>,
    desktops: Option<S<Vec<S<String>>>>,
    matrix_card: Option<S<Vec<S<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHypervisor {
    name: Option<S<String>>,
    address: Option<S<String>>,
    credential: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Option<S<String>>,
    address: Option<S<String>>,
    kind: Option<S<String>>,
    zone: Option<S<String>>,
    hypervisor: Option<S<String>>,
    vnc_console: Option<S<String>>,
    vnc_qmp: Option<S<String>>,
    serial_console: Option<S<String>>,
    ssh_console: Option<S<String>>,
    console_command: Option<S<String>>,
    rdp_port: Option<S<u16>>,
    ssh_port: Option<S<u16>>,
    credential: Option<String>,
    supervised: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawContract {
    contractor: Option<S<String>>,
    #[serde(default)]
    targets: Vec<S<String>>,
    valid_from: Option<S<DateText>>,
    valid_until: Option<S<DateText>>,
    #[serde(default)]
    windows: Vec<S<String>>,
    supervised: Option<bool>,
}

/// A date written as a string (`"2026-04-01"`, as in the example) or as a bare TOML date
/// (`2026-04-01`); both are kept as text and parsed during validation.
struct DateText(String);

impl<'de> Deserialize<'de> for DateText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = DateText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a date YYYY-MM-DD")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<DateText, E> {
                Ok(DateText(v.to_owned()))
            }
            // toml hands a bare date/time over as a one-entry map holding its text.
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<DateText, A::Error> {
                let Some((_, text)) = map.next_entry::<String, String>()? else {
                    return Err(serde::de::Error::custom("expected a date YYYY-MM-DD"));
                };
                Ok(DateText(text))
            }
        }
        d.deserialize_any(V)
    }
}

// ---- defaults ----

/// Built-in default timezone.
pub const DEFAULT_TIMEZONE: Tz = chrono_tz::Asia::Tokyo;
/// Built-in default database.
pub const DEFAULT_DATABASE: &str = "sqlite://data/sekisho.db";
const DEFAULT_LISTEN: [(&str, [u8; 4], u16); 4] = [
    ("rdp", [127, 0, 0, 1], 13389),
    ("ssh", [127, 0, 0, 1], 12222),
    ("vnc", [127, 0, 0, 1], 15900),
    ("web", [127, 0, 0, 1], 18080),
];
/// Built-in static channel allow list.
pub const DEFAULT_ALLOW_STATIC: [&str; 2] = ["rdpsnd", "drdynvc"];
/// Built-in dynamic channel deny list.
/// Dynamic virtual channels opened by default: display, input, audio output and keep-alive.
/// Everything else (USB, cameras, drives, smart cards, microphones, clipboard-like channels of
/// third parties) is refused unless `rdp.allow_dynamic_channels` names it.
pub const DEFAULT_ALLOW_DYNAMIC: [&str; 9] = [
    "Microsoft::Windows::RDS::DisplayControl",
    "Microsoft::Windows::RDS::Graphics",
    "Microsoft::Windows::RDS::Input",
    "Microsoft::Windows::RDS::Geometry::v08.01",
    "Microsoft::Windows::RDS::Video::Control::v08.01",
    "Microsoft::Windows::RDS::Video::Data::v08.01",
    "AUDIO_PLAYBACK_DVC",
    "AUDIO_PLAYBACK_LOSSY_DVC",
    "ECHO",
];
pub const DEFAULT_DENY_DYNAMIC: [&str; 4] = [
    "URBDRC",
    "RDCamera_Device_Enumerator",
    "FileRedirectorChannel",
    "Microsoft::Windows::RDS::Graphics",
];
const DEFAULT_RDP_PORT: u16 = 3389;
const DEFAULT_SSH_PORT: u16 = 22;

fn default_listen(which: &str) -> SocketAddr {
    DEFAULT_LISTEN
        .iter()
        .find(|(n, _, _)| *n == which)
        .map_or(SocketAddr::from(([127, 0, 0, 1], 0)), |&(_, ip, port)| {
            SocketAddr::from((ip, port))
        })
}

impl Default for Storage {
    fn default() -> Self {
        Storage {
            database: DEFAULT_DATABASE.to_owned(),
            recordings: Recordings::Local(PathBuf::from("data/recordings")),
            signing_key: PathBuf::from("data/signing.key"),
            secrets: PathBuf::from("data/secrets.toml"),
        }
    }
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            cert: PathBuf::from("data/tls/cert.pem"),
            key: PathBuf::from("data/tls/key.pem"),
        }
    }
}

impl Default for Listen {
    fn default() -> Self {
        Listen {
            rdp: default_listen("rdp"),
            ssh: default_listen("ssh"),
            vnc: default_listen("vnc"),
            web: default_listen("web"),
            metrics: None,
        }
    }
}

impl Default for Recording {
    fn default() -> Self {
        Recording {
            required: true,
            retention_days: None,
            ledger_checkpoint_interval: DEFAULT_LEDGER_CHECKPOINT_INTERVAL,
        }
    }
}

/// Built-in `auth.max_failures`.
pub const DEFAULT_MAX_FAILURES: u32 = 10;
/// Built-in `auth.failure_window`.
pub const DEFAULT_FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Built-in `auth.lockout`.
pub const DEFAULT_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Built-in `auth.second_factor_ttl`.
pub const DEFAULT_SECOND_FACTOR_TTL: Duration = Duration::from_secs(8 * 3600);
/// Default `auth.preauth_timeout`: long enough for a person typing a password at a prompt,
/// short enough that silent connections do not pile up.
pub const DEFAULT_PREAUTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `auth.supervision_wait`: time to ring security staff and for them to open the
/// live view.
pub const DEFAULT_SUPERVISION_WAIT: Duration = Duration::from_secs(300);

impl Default for AuthPolicy {
    fn default() -> Self {
        AuthPolicy {
            max_failures: DEFAULT_MAX_FAILURES,
            failure_window: DEFAULT_FAILURE_WINDOW,
            lockout: DEFAULT_LOCKOUT,
            second_factor_ttl: DEFAULT_SECOND_FACTOR_TTL,
            preauth_timeout: DEFAULT_PREAUTH_TIMEOUT,
            supervision_wait: DEFAULT_SUPERVISION_WAIT,
        }
    }
}

impl Default for RdpPolicy {
    fn default() -> Self {
        RdpPolicy {
            allow_static_channels: DEFAULT_ALLOW_STATIC
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            allow_dynamic_channels: DEFAULT_ALLOW_DYNAMIC
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            deny_dynamic_channels: DEFAULT_DENY_DYNAMIC
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }
}

impl Default for Inventory {
    /// The built-in defaults: what an empty `sekisho.toml` means.
    fn default() -> Self {
        Inventory {
            timezone: DEFAULT_TIMEZONE,
            storage: Storage::default(),
            tls: Tls::default(),
            listen: Listen::default(),
            recording: Recording::default(),
            rdp: RdpPolicy::default(),
            auth: AuthPolicy::default(),
            limits: Limits::default(),
            pools: Vec::new(),
            zones: BTreeMap::new(),
            contractors: Vec::new(),
            users: Vec::new(),
            hypervisors: Vec::new(),
            targets: Vec::new(),
            contracts: Vec::new(),
            idx: Index::default(),
        }
    }
}

// ---- accessors ----

impl Inventory {
    /// The timezone contract dates and windows are evaluated in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }
    /// `[storage]`.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }
    /// `[tls]`.
    pub fn tls(&self) -> &Tls {
        &self.tls
    }
    /// `[listen]`.
    pub fn listen(&self) -> &Listen {
        &self.listen
    }
    /// `[recording]`.
    pub fn recording(&self) -> &Recording {
        &self.recording
    }
    /// `[rdp]`.
    pub fn rdp(&self) -> &RdpPolicy {
        &self.rdp
    }
    /// `[auth]`.
    pub fn auth(&self) -> &AuthPolicy {
        &self.auth
    }
    /// `[limits]`.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    /// `[[vdi_pool]]`s in file order.
    pub fn vdi_pools(&self) -> &[VdiPool] {
        &self.pools
    }
    /// `[zones]`: zone → access paths that may reach it.
    pub fn zones(&self) -> &BTreeMap<String, Vec<String>> {
        &self.zones
    }
    /// `[[contractor]]`s in file order.
    pub fn contractors(&self) -> &[Contractor] {
        &self.contractors
    }
    /// The contractor with this id.
    pub fn contractor(&self, id: &str) -> Option<&Contractor> {
        self.idx
            .contractors
            .get(id)
            .and_then(|&i| self.contractors.get(i))
    }
    /// `[[user]]`s in file order.
    pub fn users(&self) -> &[User] {
        &self.users
    }
    /// The user with this name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.idx.users.get(name).and_then(|&i| self.users.get(i))
    }
    /// The user a VDI desktop is assigned to.
    pub fn desktop_owner(&self, ip: IpAddr) -> Option<&User> {
        self.idx.desktops.get(&ip).and_then(|&i| self.users.get(i))
    }
    /// `[[hypervisor]]`s in file order.
    pub fn hypervisors(&self) -> &[Hypervisor] {
        &self.hypervisors
    }
    /// The hypervisor with this name.
    pub fn hypervisor(&self, name: &str) -> Option<&Hypervisor> {
        self.idx
            .hypervisors
            .get(name)
            .and_then(|&i| self.hypervisors.get(i))
    }
    /// `[[target]]`s in file order.
    pub fn targets(&self) -> &[Target] {
        &self.targets
    }
    /// The target with this name.
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.idx
            .targets
            .get(name)
            .and_then(|&i| self.targets.get(i))
    }
    /// The target with this address.
    pub fn target_by_address(&self, ip: IpAddr) -> Option<&Target> {
        self.idx
            .target_addrs
            .get(&ip)
            .and_then(|&i| self.targets.get(i))
    }
    /// `[[contract]]`s in file order.
    pub fn contracts(&self) -> &[Contract] {
        &self.contracts
    }
    /// The contracts of `contractor` that name `target`.
    pub fn contracts_for<'a>(
        &'a self,
        contractor: &str,
        target: &str,
    ) -> impl Iterator<Item = &'a Contract> + 'a {
        let key = self
            .idx
            .contractors
            .get(contractor)
            .zip(self.idx.targets.get(target))
            .map(|(&c, &t)| (c, t));
        key.and_then(|k| self.idx.contracts.get(&k))
            .into_iter()
            .flatten()
            .filter_map(|&i| self.contracts.get(i))
    }
    /// The VDI pool whose network contains `ip`.
    pub fn pool_of(&self, ip: IpAddr) -> Option<&VdiPool> {
        self.idx
            .nets
            .iter()
            .find(|(net, _)| net.contains(&ip))
            .and_then(|&(_, i)| self.pools.get(i))
    }
    /// Classifies a source address.
    pub fn classify(&self, ip: IpAddr) -> Source<'_> {
        if let Some(pool) = self.pool_of(ip) {
            Source::VdiDesktop(pool)
        } else if let Some(t) = self.target_by_address(ip) {
            Source::FarmServer(t)
        } else {
            Source::Unknown
        }
    }
    /// The access path of the pool holding `user`'s first desktop; the CLI uses it to stand in
    /// for a console session's path (`policy check --active-console`).
    pub fn user_path(&self, user: &str) -> Option<&str> {
        let ip = *self.user(user)?.desktops.first()?;
        self.pool_of(ip).map(|p| p.path.as_str())
    }
    /// May access path `path` reach zone `zone`?
    pub fn zone_allows(&self, zone: &str, path: &str) -> bool {
        self.zones
            .get(zone)
            .is_some_and(|paths| paths.iter().any(|p| p == path))
    }

    /// `(credential name, referring key)` pairs that `secrets` lacks; the CLI reports them.
    pub fn missing_credentials(&self, secrets: &Secrets) -> Vec<(String, String)> {
        let targets = self.targets.iter().filter_map(|t| {
            t.credential
                .as_ref()
                .map(|c| (c, format!("target {}", t.name)))
        });
        let hvs = self.hypervisors.iter().filter_map(|h| {
            h.credential
                .as_ref()
                .map(|c| (c, format!("hypervisor {}", h.name)))
        });
        targets
            .chain(hvs)
            .filter(|(c, _)| secrets.credential(c).is_none())
            .map(|(c, w)| (c.clone(), w))
            .collect()
    }
}

// ---- validation ----

/// Records a duplicate-name error, returns true if `name` is new.
fn unique(
    diag: &mut Diag<'_>,
    seen: &mut HashMap<String, usize>,
    name: &S<String>,
    idx: usize,
    key: &str,
    what: &str,
) -> bool {
    if seen.contains_key(name.get_ref()) {
        diag.error(
            name.span(),
            key,
            format!("duplicate {what} {:?}", name.get_ref()),
        );
        false
    } else {
        seen.insert(name.get_ref().clone(), idx);
        true
    }
}

/// `[auth]`: each bad value is an error naming its key; the default stays for it.
fn parse_auth(diag: &mut Diag<'_>, raw: &RawAuth, out: &mut AuthPolicy) {
    if let Some(n) = &raw.max_failures {
        match u32::try_from(*n.get_ref()) {
            Ok(v) if (1..=MAX_AUTH_FAILURES).contains(&v) => out.max_failures = v,
            _ => diag.error(
                n.span(),
                "auth.max_failures",
                format!(
                    "{} is not a number of failed logons (1 to {MAX_AUTH_FAILURES})",
                    n.get_ref()
                ),
            ),
        }
    }
    for (value, key, slot) in [
        (
            &raw.failure_window,
            "auth.failure_window",
            &mut out.failure_window,
        ),
        (&raw.lockout, "auth.lockout", &mut out.lockout),
        (
            &raw.second_factor_ttl,
            "auth.second_factor_ttl",
            &mut out.second_factor_ttl,
        ),
        (
            &raw.preauth_timeout,
            "auth.preauth_timeout",
            &mut out.preauth_timeout,
        ),
        (
            &raw.supervision_wait,
            "auth.supervision_wait",
            &mut out.supervision_wait,
        ),
    ] {
        let Some(value) = value else { continue };
        match parse_duration(value.get_ref()) {
            Some(d) => *slot = d,
            None => diag.error(
                value.span(),
                key,
                format!(
                    "{} is not a duration (seconds, or digits with a unit: \"30s\", \"15m\", \"8h\", \"1d\"; at least 1 s and at most 30 days)",
                    match value.get_ref() {
                        DurationValue::Seconds(n) => n.to_string(),
                        DurationValue::Text(t) => format!("{t:?}"),
                    }
                ),
            ),
        }
    }
}

/// A duration of 1 s to [`MAX_AUTH_DURATION`], or `None`.
fn parse_duration(value: &DurationValue) -> Option<Duration> {
    let secs = match value {
        DurationValue::Seconds(n) => u64::try_from(*n).ok()?,
        DurationValue::Text(t) => {
            let t = t.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (digits, unit) = t.split_at(split);
            // More digits than a u64 holds is not a duration anyone means.
            let n: u64 = digits.parse().ok()?;
            let scale = match unit {
                "" | "s" => 1,
                "m" => 60,
                "h" => 3600,
                "d" => 86_400,
                _ => return None,
            };
            n.checked_mul(scale)?
        }
    };
    let d = Duration::from_secs(secs);
    (secs >= 1 && d <= MAX_AUTH_DURATION).then_some(d)
}

fn parse_ip(diag: &mut Diag<'_>, s: &S<String>, key: &str) -> Option<IpAddr> {
    match s.get_ref().parse::<IpAddr>() {
        Ok(ip) => Some(ip),
        Err(_) => {
            diag.error(
                s.span(),
                key,
                format!("bad address {:?} (expected an IP address)", s.get_ref()),
            );
            None
        }
    }
}

fn parse_endpoint(diag: &mut Diag<'_>, s: &Option<S<String>>, key: &str) -> Option<Endpoint> {
    let s = s.as_ref()?;
    match Endpoint::parse(s.get_ref()) {
        Ok(e) => Some(e),
        Err(m) => {
            diag.error(s.span(), key, m);
            None
        }
    }
}

fn parse_date(
    diag: &mut Diag<'_>,
    s: &Option<S<DateText>>,
    key: &str,
    whole: &S<RawContract>,
) -> Option<NaiveDate> {
    let Some(s) = s else {
        diag.error(whole.span(), key, "missing (expected a date YYYY-MM-DD)");
        return None;
    };
    let text = &s.get_ref().0;
    match NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        Ok(d) if text.len() == 10 => Some(d),
        _ => {
            diag.error(
                s.span(),
                key,
                format!("bad date {text:?} (expected YYYY-MM-DD)"),
            );
            None
        }
    }
}

fn required<'r>(
    diag: &mut Diag<'_>,
    v: &'r Option<S<String>>,
    whole: std::ops::Range<usize>,
    key: &str,
) -> Option<&'r S<String>> {
    match v {
        Some(s) if !s.get_ref().is_empty() => Some(s),
        Some(s) => {
            diag.error(s.span(), key, "must not be empty");
            None
        }
        None => {
            diag.error(whole, key, "missing");
            None
        }
    }
}

fn parse_listen(diag: &mut Diag<'_>, v: &Option<S<String>>, which: &str) -> SocketAddr {
    match v {
        None => default_listen(which),
        Some(s) => match s.get_ref().parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                diag.error(
                    s.span(),
                    &format!("listen.{which}"),
                    format!("bad address {:?} (expected IP:PORT)", s.get_ref()),
                );
                default_listen(which)
            }
        },
    }
}

/// `listen.metrics` must not share an address with a front door: the scraper's listener is
/// kept apart so that `/metrics` is not reachable from the web port (port 0 picks a free port
/// at start, so it never collides).
fn check_listen_distinct(diag: &mut Diag<'_>, raw: &RawListen, listen: &Listen) {
    let (Some(metrics), Some(span)) = (listen.metrics, raw.metrics.as_ref().map(S::span)) else {
        return;
    };
    if metrics.port() == 0 {
        return;
    }
    for (which, addr) in [
        ("rdp", listen.rdp),
        ("ssh", listen.ssh),
        ("vnc", listen.vnc),
        ("web", listen.web),
    ] {
        if addr == metrics {
            diag.error(
                span.clone(),
                "listen.metrics",
                format!("same address as listen.{which} ({addr})"),
            );
        }
    }
}

fn parse_nt_hash(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, slot) in out.iter_mut().enumerate() {
        let byte = s.get(i * 2..i * 2 + 2)?;
        *slot = u8::from_str_radix(byte, 16).ok()?;
    }
    Some(out)
}

fn valid_ssh_key(line: &str) -> bool {
    let mut parts = line.split_whitespace();
    let (Some(kind), Some(blob)) = (parts.next(), parts.next()) else {
        return false;
    };
    let known = kind.starts_with("ssh-")
        || kind.starts_with("ecdsa-sha2-")
        || kind.starts_with("sk-ssh-")
        || kind.starts_with("sk-ecdsa-");
    known
        && blob.len() >= 16
        && blob
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=')
}

impl Inventory {
    /// Parses and validates `sekisho.toml`. `file_name` only labels errors; nothing is read.
    ///
    /// On failure every error found is returned, one per line as `FILE:LINE:COL: KEY: message`.
    pub fn from_toml(text: &str, file_name: &str) -> Result<Inventory, ConfigErrors> {
        let mut diag = Diag::new(text, file_name);
        let raw: Option<RawConfig> = diag.load();
        let inv = match raw {
            Some(raw) => build(&mut diag, raw),
            None => None,
        };
        diag.finish()?;
        // `build` returns None only after recording an error, so this is unreachable in
        // practice; fail closed with a generic error rather than panic.
        inv.ok_or_else(|| {
            let mut d = Diag::new(text, file_name);
            d.error(0..0, "(document)", "invalid configuration");
            d.finish().err().unwrap_or(ConfigErrors(Vec::new()))
        })
    }
}

/// Names declared anywhere in the file, valid or not, so that one broken `[[target]]` does
/// not also produce "unknown target" errors at every reference to it.
struct Declared {
    targets: HashSet<String>,
    hypervisors: HashSet<String>,
    contractors: HashSet<String>,
}

impl Declared {
    fn of(raw: &RawConfig) -> Declared {
        fn names<T>(items: &[S<T>], name: impl Fn(&T) -> &Option<S<String>>) -> HashSet<String> {
            items
                .iter()
                .filter_map(|i| name(i.get_ref()).as_ref().map(|n| n.get_ref().clone()))
                .collect()
        }
        Declared {
            targets: names(&raw.target, |t| &t.name),
            hypervisors: names(&raw.hypervisor, |h| &h.name),
            contractors: names(&raw.contractor, |c| &c.id),
        }
    }
}

fn build(diag: &mut Diag<'_>, raw: RawConfig) -> Option<Inventory> {
    let mut inv = Inventory::default();
    let declared = Declared::of(&raw);

    if let Some(tz) = &raw.timezone {
        match tz.get_ref().parse::<Tz>() {
            Ok(t) => inv.timezone = t,
            Err(_) => diag.error(
                tz.span(),
                "timezone",
                format!(
                    "unknown timezone {:?} (expected an IANA name such as \"Asia/Tokyo\")",
                    tz.get_ref()
                ),
            ),
        }
    }

    // storage, tls, listen, recording, rdp
    if let Some(db) = &raw.storage.database {
        let url = db.get_ref();
        let ok = ["sqlite://", "sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| url.starts_with(p));
        if ok {
            inv.storage.database = url.clone();
        } else {
            diag.error(
                db.span(),
                "storage.database",
                format!(
                    "unsupported database URL {url:?} (expected sqlite://PATH or postgres://…)"
                ),
            );
        }
    }
    if let Some(r) = crate::storage::parse(
        diag,
        raw.storage.recordings.as_ref(),
        raw.storage.s3.as_ref(),
    ) {
        inv.storage.recordings = r;
    }
    if let Some(p) = raw.storage.signing_key {
        inv.storage.signing_key = PathBuf::from(p);
    }
    if let Some(p) = raw.storage.secrets {
        inv.storage.secrets = PathBuf::from(p);
    }
    if let Some(p) = raw.tls.cert {
        inv.tls.cert = PathBuf::from(p);
    }
    if let Some(p) = raw.tls.key {
        inv.tls.key = PathBuf::from(p);
    }
    inv.listen = Listen {
        rdp: parse_listen(diag, &raw.listen.rdp, "rdp"),
        ssh: parse_listen(diag, &raw.listen.ssh, "ssh"),
        vnc: parse_listen(diag, &raw.listen.vnc, "vnc"),
        web: parse_listen(diag, &raw.listen.web, "web"),
        metrics: raw
            .listen
            .metrics
            .as_ref()
            .map(|m| parse_listen(diag, &Some(m.clone()), "metrics")),
    };
    check_listen_distinct(diag, &raw.listen, &inv.listen);
    if let Some(r) = raw.recording.required {
        inv.recording.required = r;
    }
    if let Some(days) = &raw.recording.retention_days {
        match u32::try_from(*days.get_ref()) {
            Ok(d) if d >= 1 => inv.recording.retention_days = Some(d),
            _ => diag.error(
                days.span(),
                "recording.retention_days",
                format!(
                    "{} is not a number of days (at least 1; leave the key out to keep recordings for ever)",
                    days.get_ref()
                ),
            ),
        }
    }
    if let Some(value) = &raw.recording.ledger_checkpoint_interval {
        match parse_duration(value.get_ref()) {
            Some(d) => inv.recording.ledger_checkpoint_interval = d,
            None => diag.error(
                value.span(),
                "recording.ledger_checkpoint_interval",
                format!(
                    "{} is not a duration (seconds, or digits with a unit: \"10m\", \"1h\"; at least 1 s and at most 30 days)",
                    match value.get_ref() {
                        DurationValue::Seconds(n) => n.to_string(),
                        DurationValue::Text(t) => format!("{t:?}"),
                    }
                ),
            ),
        }
    }
    parse_auth(diag, &raw.auth, &mut inv.auth);
    crate::limits::parse(diag, &raw.limits, &mut inv.limits);
    if let Some(a) = raw.rdp.allow_static_channels {
        inv.rdp.allow_static_channels = a;
    }
    if let Some(a) = raw.rdp.allow_dynamic_channels {
        inv.rdp.allow_dynamic_channels = a;
    }
    if let Some(d) = raw.rdp.deny_dynamic_channels {
        inv.rdp.deny_dynamic_channels = d;
    }

    // vdi pools
    let mut pool_names = HashMap::new();
    let mut pool_paths: Vec<String> = Vec::new();
    let mut nets: Vec<(IpNet, usize, std::ops::Range<usize>)> = Vec::new();
    for rp in &raw.vdi_pool {
        let span = rp.span();
        let p = rp.get_ref();
        let name = required(diag, &p.name, span.clone(), "vdi_pool.name");
        let path = required(diag, &p.path, span.clone(), "vdi_pool.path");
        let (Some(name), Some(path)) = (name, path) else {
            continue;
        };
        let idx = inv.pools.len();
        if !unique(
            diag,
            &mut pool_names,
            name,
            idx,
            "vdi_pool.name",
            "vdi_pool name",
        ) {
            continue;
        }
        let mut networks = Vec::new();
        for n in &p.networks {
            match n.get_ref().parse::<IpNet>() {
                Ok(net) if net.trunc() == net => {
                    if let Some((other, oi, _)) = nets
                        .iter()
                        .find(|(o, _, _)| o.contains(&net.network()) || net.contains(&o.network()))
                    {
                        let other_name = inv
                            .pools
                            .get(*oi)
                            .map_or(name.get_ref().as_str(), |p| p.name.as_str());
                        diag.error(
                            n.span(),
                            "vdi_pool.networks",
                            format!("network {net} overlaps {other} of vdi_pool {other_name:?}"),
                        );
                    } else {
                        nets.push((net, idx, n.span()));
                        networks.push(net);
                    }
                }
                Ok(net) => diag.error(
                    n.span(),
                    "vdi_pool.networks",
                    format!(
                        "network {net} has host bits set; did you mean {}?",
                        net.trunc()
                    ),
                ),
                Err(_) => diag.error(
                    n.span(),
                    "vdi_pool.networks",
                    format!("bad CIDR {:?} (expected e.g. 10.0.0.0/24)", n.get_ref()),
                ),
            }
        }
        if !pool_paths.contains(path.get_ref()) {
            pool_paths.push(path.get_ref().clone());
        }
        inv.pools.push(VdiPool {
            name: name.get_ref().clone(),
            path: path.get_ref().clone(),
            networks,
        });
    }
    inv.idx.nets = nets.into_iter().map(|(n, i, _)| (n, i)).collect();
    inv.idx
        .nets
        .sort_by_key(|n| std::cmp::Reverse(n.0.prefix_len()));

    // zones
    for (zone, paths) in &raw.zones {
        let mut list = Vec::new();
        for p in paths.get_ref() {
            if pool_paths.contains(p.get_ref()) {
                list.push(p.get_ref().clone());
            } else {
                let known = if pool_paths.is_empty() {
                    "no vdi_pool declares any path".to_owned()
                } else {
                    format!("vdi_pool paths are: {}", pool_paths.join(", "))
                };
                diag.error(
                    p.span(),
                    &format!("zones.{zone}"),
                    format!("unknown access path {:?}; {known}", p.get_ref()),
                );
            }
        }
        inv.zones.insert(zone.clone(), list);
    }

    // contractors
    for rc in &raw.contractor {
        let c = rc.get_ref();
        let Some(id) = required(diag, &c.id, rc.span(), "contractor.id") else {
            continue;
        };
        let idx = inv.contractors.len();
        if unique(
            diag,
            &mut inv.idx.contractors,
            id,
            idx,
            "contractor.id",
            "contractor id",
        ) {
            inv.contractors.push(Contractor {
                id: id.get_ref().clone(),
                name: c.name.clone().unwrap_or_else(|| id.get_ref().clone()),
            });
        }
    }

    // hypervisors
    for rh in &raw.hypervisor {
        let h = rh.get_ref();
        let name = required(diag, &h.name, rh.span(), "hypervisor.name");
        let addr = required(diag, &h.address, rh.span(), "hypervisor.address")
            .and_then(|a| parse_ip(diag, a, "hypervisor.address"));
        let (Some(name), Some(address)) = (name, addr) else {
            continue;
        };
        let idx = inv.hypervisors.len();
        if unique(
            diag,
            &mut inv.idx.hypervisors,
            name,
            idx,
            "hypervisor.name",
            "hypervisor name",
        ) {
            inv.hypervisors.push(Hypervisor {
                name: name.get_ref().clone(),
                address,
                credential: h.credential.clone(),
            });
        }
    }

    // targets
    // Index entries are only trusted when there are no errors, and then every target is
    // pushed, so registering names before knowing the target is valid is fine.
    for rt in &raw.target {
        let built = build_target(diag, &inv, &declared, rt);
        let idx = inv.targets.len();
        let name_ok = match &rt.get_ref().name {
            Some(n) => unique(
                diag,
                &mut inv.idx.targets,
                n,
                idx,
                "target.name",
                "target name",
            ),
            None => false,
        };
        let Some(t) = built.filter(|_| name_ok) else {
            continue;
        };
        if let Some(&other) = inv.idx.target_addrs.get(&t.address) {
            let other = inv.targets.get(other).map_or("?", |o| o.name.as_str());
            if let Some(a) = &rt.get_ref().address {
                diag.error(
                    a.span(),
                    "target.address",
                    format!("address {} is already used by target {other:?}", t.address),
                );
            }
            continue;
        }
        inv.idx.target_addrs.insert(t.address, idx);
        inv.targets.push(t);
    }

    // users
    for ru in &raw.user {
        if let Some(u) = build_user(diag, &mut inv, &declared, ru) {
            inv.users.push(u);
        }
    }

    // contracts
    for rc in &raw.contract {
        if let Some(c) = build_contract(diag, &declared, rc) {
            let ci = inv.idx.contractors.get(&c.contractor).copied();
            let idx = inv.contracts.len();
            for t in &c.targets {
                if let (Some(ci), Some(&ti)) = (ci, inv.idx.targets.get(t)) {
                    let list = inv.idx.contracts.entry((ci, ti)).or_default();
                    if !list.contains(&idx) {
                        list.push(idx);
                    }
                }
            }
            inv.contracts.push(c);
        }
    }

    if diag.has_errors() { None } else { Some(inv) }
}

fn build_target(
    diag: &mut Diag<'_>,
    inv: &Inventory,
    declared: &Declared,
    rt: &S<RawTarget>,
) -> Option<Target> {
    let span = rt.span();
    let t = rt.get_ref();
    let name = required(diag, &t.name, span.clone(), "target.name");
    let address = required(diag, &t.address, span.clone(), "target.address")
        .and_then(|a| parse_ip(diag, a, "target.address"));
    if let (Some(ip), Some(a)) = (address, &t.address)
        && let Some(pool) = inv.pool_of(ip)
    {
        diag.error(
            a.span(),
            "target.address",
            format!(
                "address {ip} is inside vdi_pool {:?}; a server cannot be a VDI desktop",
                pool.name
            ),
        );
    }
    let kind = required(diag, &t.kind, span.clone(), "target.kind").and_then(|k| {
        match k.get_ref().as_str() {
            "vm" => Some(TargetKind::Vm),
            "physical" => Some(TargetKind::Physical),
            other => {
                diag.error(
                    k.span(),
                    "target.kind",
                    format!("unknown kind {other:?} (expected \"vm\" or \"physical\")"),
                );
                None
            }
        }
    });
    let zone = required(diag, &t.zone, span.clone(), "target.zone");
    if let Some(z) = zone
        && !inv.zones.contains_key(z.get_ref())
    {
        let known: Vec<&str> = inv.zones.keys().map(String::as_str).collect();
        diag.error(
            z.span(),
            "target.zone",
            format!(
                "unknown zone {:?} (zones are: {})",
                z.get_ref(),
                if known.is_empty() {
                    "none declared".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        );
    }
    let vnc = parse_endpoint(diag, &t.vnc_console, "target.vnc_console");
    let vnc_qmp = parse_endpoint(diag, &t.vnc_qmp, "target.vnc_qmp");
    if let (Some(qmp), None) = (&t.vnc_qmp, &t.vnc_console) {
        diag.error(qmp.span(), "target.vnc_qmp", "vnc_qmp needs vnc_console");
    }
    let serial = parse_endpoint(diag, &t.serial_console, "target.serial_console");
    let ssh_console = parse_endpoint(diag, &t.ssh_console, "target.ssh_console");
    if let (Some(cmd), None) = (&t.console_command, &t.ssh_console) {
        diag.error(
            cmd.span(),
            "target.console_command",
            "console_command needs ssh_console",
        );
    }
    for (port, key) in [
        (&t.rdp_port, "target.rdp_port"),
        (&t.ssh_port, "target.ssh_port"),
    ] {
        if let Some(p) = port
            && *p.get_ref() == 0
        {
            diag.error(p.span(), key, "port 0 is not a valid port");
        }
    }
    match kind {
        Some(TargetKind::Vm) => match &t.hypervisor {
            None => diag.error(
                name.map_or(span.clone(), |n| n.span()),
                "target.hypervisor",
                "a vm needs a hypervisor",
            ),
            Some(h) if !declared.hypervisors.contains(h.get_ref()) => diag.error(
                h.span(),
                "target.hypervisor",
                format!("unknown hypervisor {:?}", h.get_ref()),
            ),
            Some(_) => {
                if t.vnc_console.is_none() && t.serial_console.is_none() && t.ssh_console.is_none()
                {
                    diag.error(
                        name.map_or(span.clone(), |n| n.span()),
                        "target.vnc_console",
                        "a vm needs at least one of vnc_console, serial_console or ssh_console",
                    );
                }
            }
        },
        Some(TargetKind::Physical) => {
            for (v, key) in [
                (&t.hypervisor, "target.hypervisor"),
                (&t.vnc_console, "target.vnc_console"),
                (&t.vnc_qmp, "target.vnc_qmp"),
                (&t.serial_console, "target.serial_console"),
                (&t.ssh_console, "target.ssh_console"),
                (&t.console_command, "target.console_command"),
            ] {
                if let Some(v) = v {
                    diag.error(
                        v.span(),
                        key,
                        "a physical server has no hypervisor or console",
                    );
                }
            }
        }
        None => {}
    }
    Some(Target {
        name: name?.get_ref().clone(),
        address: address?,
        kind: kind?,
        zone: zone?.get_ref().clone(),
        hypervisor: t.hypervisor.as_ref().map(|h| h.get_ref().clone()),
        vnc_console: vnc,
        vnc_qmp,
        serial_console: serial,
        ssh_console,
        console_command: t.console_command.as_ref().map(|c| c.get_ref().clone()),
        rdp_port: t
            .rdp_port
            .as_ref()
            .map_or(DEFAULT_RDP_PORT, |p| *p.get_ref()),
        ssh_port: t
            .ssh_port
            .as_ref()
            .map_or(DEFAULT_SSH_PORT, |p| *p.get_ref()),
        credential: t.credential.clone(),
        supervised: t.supervised.unwrap_or(false),
    })
}

fn build_user(
    diag: &mut Diag<'_>,
    inv: &mut Inventory,
    declared: &Declared,
    ru: &S<RawUser>,
) -> Option<User> {
    let span = ru.span();
    let u = ru.get_ref();
    let name = required(diag, &u.name, span.clone(), "user.name");
    let role = required(diag, &u.role, span.clone(), "user.role").and_then(|r| {
        let parsed = Role::parse(r.get_ref());
        if parsed.is_none() {
            diag.error(
                r.span(),
                "user.role",
                format!(
                    "bad role {:?} (expected contractor, auditor, security or admin)",
                    r.get_ref()
                ),
            );
        }
        parsed
    });
    let at_name = name.map_or(span.clone(), |n| n.span());
    match (role, &u.contractor) {
        (Some(Role::Contractor), None) => {
            diag.error(
                at_name.clone(),
                "user.contractor",
                "a contractor-role user needs a contractor",
            );
        }
        (Some(r), Some(c)) if r != Role::Contractor => diag.error(
            c.span(),
            "user.contractor",
            format!("only contractor-role users belong to a contractor (this user is {r})"),
        ),
        (_, Some(c)) if !declared.contractors.contains(c.get_ref()) => diag.error(
            c.span(),
            "user.contractor",
            format!("unknown contractor {:?}", c.get_ref()),
        ),
        _ => {}
    }
    if let (Some(r), Some(d)) = (role, &u.desktops)
        && r != Role::Contractor
        && !d.get_ref().is_empty()
    {
        diag.error(
            d.span(),
            "user.desktops",
            format!("only contractor-role users have VDI desktops (this user is {r})"),
        );
    }
    if let Some(h) = &u.password_hash
        && !h.get_ref().starts_with("$argon2")
    {
        diag.error(
            h.span(),
            "user.password_hash",
            "expected an argon2 PHC string ($argon2id$…)",
        );
    }
    let nt_hash = u.nt_hash.as_ref().and_then(|h| {
        let parsed = parse_nt_hash(h.get_ref());
        if parsed.is_none() {
            diag.error(h.span(), "user.nt_hash", "expected 32 hex digits");
        }
        parsed.map(Secret::new)
    });
    for k in &u.ssh_keys {
        if !valid_ssh_key(k.get_ref()) {
            diag.error(
                k.span(),
                "user.ssh_keys",
                "expected an OpenSSH public key line (e.g. \"ssh-ed25519 AAAA… comment\")",
            );
        }
    }
    let matrix_card = u.matrix_card.as_ref().and_then(|m| {
        let rows: Vec<String> = m.get_ref().iter().map(|r| r.get_ref().clone()).collect();
        let width = rows.first().map_or(0, String::len);
        let ok = !rows.is_empty()
            && rows.len() <= MAX_MATRIX_SIDE
            && width > 0
            && width <= MAX_MATRIX_SIDE
            && rows
                .iter()
                .all(|r| r.len() == width && r.bytes().all(|b| b.is_ascii_digit()));
        if !ok {
            diag.error(
                m.span(),
                "user.matrix_card",
                format!("expected 1 to {MAX_MATRIX_SIDE} rows of digits, all the same length (1 to {MAX_MATRIX_SIDE})"),
            );
            return None;
        }
        Some(rows)
    });
    let idx = inv.users.len();
    let mut desktops = Vec::new();
    for d in u.desktops.iter().flat_map(|d| d.get_ref()) {
        let Some(ip) = parse_ip(diag, d, "user.desktops") else {
            continue;
        };
        if inv.pool_of(ip).is_none() {
            diag.error(
                d.span(),
                "user.desktops",
                format!("desktop {ip} is not inside any vdi_pool network"),
            );
            continue;
        }
        if let Some(&other) = inv.idx.desktops.get(&ip) {
            let other = inv.users.get(other).map_or("?", |o| o.name.as_str());
            let msg = if other == name.map_or("", |n| n.get_ref().as_str()) {
                format!("desktop {ip} is listed twice")
            } else {
                format!("desktop {ip} is already assigned to user {other:?}")
            };
            diag.error(d.span(), "user.desktops", msg);
            continue;
        }
        desktops.push(ip);
    }
    let name = name?;
    if !unique(
        diag,
        &mut inv.idx.users,
        name,
        idx,
        "user.name",
        "user name",
    ) {
        return None;
    }
    for &ip in &desktops {
        inv.idx.desktops.insert(ip, idx);
    }
    Some(User {
        name: name.get_ref().clone(),
        contractor: u.contractor.as_ref().map(|c| c.get_ref().clone()),
        role: role?,
        password_hash: u.password_hash.as_ref().map(|h| h.get_ref().clone()),
        nt_hash,
        ssh_keys: u.ssh_keys.iter().map(|k| k.get_ref().clone()).collect(),
        desktops,
        matrix_card,
    })
}

fn build_contract(
    diag: &mut Diag<'_>,
    declared: &Declared,
    rc: &S<RawContract>,
) -> Option<Contract> {
    let span = rc.span();
    let c = rc.get_ref();
    let contractor = required(diag, &c.contractor, span.clone(), "contract.contractor");
    if let Some(ct) = contractor
        && !declared.contractors.contains(ct.get_ref())
    {
        diag.error(
            ct.span(),
            "contract.contractor",
            format!("unknown contractor {:?}", ct.get_ref()),
        );
    }
    if c.targets.is_empty() {
        diag.error(
            contractor.map_or(span.clone(), |ct| ct.span()),
            "contract.targets",
            "a contract needs at least one target",
        );
    }
    for t in &c.targets {
        if !declared.targets.contains(t.get_ref()) {
            diag.error(
                t.span(),
                "contract.targets",
                format!("unknown target {:?}", t.get_ref()),
            );
        }
    }
    let from = parse_date(diag, &c.valid_from, "contract.valid_from", rc);
    let until = parse_date(diag, &c.valid_until, "contract.valid_until", rc);
    if let (Some(f), Some(u), Some(us)) = (from, until, &c.valid_until)
        && u < f
    {
        diag.error(
            us.span(),
            "contract.valid_until",
            format!("valid_until {u} is before valid_from {f}"),
        );
    }
    let mut windows = Vec::new();
    for w in &c.windows {
        match Window::parse(w.get_ref()) {
            Ok(win) => windows.push(win),
            Err(m) => diag.error(w.span(), "contract.windows", m),
        }
    }
    Some(Contract {
        contractor: contractor?.get_ref().clone(),
        targets: c.targets.iter().map(|t| t.get_ref().clone()).collect(),
        valid_from: from?,
        valid_until: until?,
        windows,
        supervised: c.supervised.unwrap_or(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../../examples/sekisho.toml");

    #[test]
    fn example_parses() {
        let inv = Inventory::from_toml(EXAMPLE, "examples/sekisho.toml").unwrap();
        assert_eq!(inv.timezone(), chrono_tz::Asia::Tokyo);
        assert_eq!(inv.targets().len(), 3);
        assert_eq!(inv.target("web01").unwrap().rdp_port, 13390);
        assert_eq!(inv.users().len(), 2);
        assert_eq!(inv.contracts_for("acme", "web01").count(), 1);
        assert_eq!(inv.user_path("tanaka"), Some("internet-vpn"));
        assert_eq!(inv.user_path("suzuki"), None);
        assert_eq!(
            inv.desktop_owner("127.0.10.11".parse().unwrap())
                .unwrap()
                .name,
            "tanaka"
        );
    }

    /// A valid base the error cases below break one way each.
    const BASE: &str = r#"
[[vdi_pool]]
name = "vdi-internet"
path = "internet-vpn"
networks = ["127.0.10.0/24"]

[zones]
business = ["internet-vpn"]

[[contractor]]
id = "acme"

[[user]]
name = "tanaka"
contractor = "acme"
role = "contractor"
desktops = ["127.0.10.11"]

[[hypervisor]]
name = "kvm01"
address = "127.0.0.1"

[[target]]
name = "web01"
address = "127.0.20.11"
kind = "vm"
zone = "business"
hypervisor = "kvm01"
vnc_console = "127.0.0.1:15901"

[[target]]
name = "phys01"
address = "127.0.20.21"
kind = "physical"
zone = "business"

[[contract]]
contractor = "acme"
targets = ["web01"]
valid_from = "2026-04-01"
valid_until = "2027-03-31"
windows = ["mon-fri 08:30-20:00"]
"#;

    fn line_of(text: &str, needle: &str) -> usize {
        let at = text
            .rfind(needle)
            .unwrap_or_else(|| panic!("{needle:?} not in text"));
        text[..at].matches('\n').count() + 1
    }

    /// Applies `from → to` to BASE (or appends `to` if `from` is empty), and asserts one error
    /// line is at the line of `at` (in the changed text), names `key` and contains `msg`.
    fn assert_error(from: &str, to: &str, at: &str, key: &str, msg: &str) {
        let text = if from.is_empty() {
            format!("{BASE}{to}")
        } else {
            assert!(BASE.contains(from), "{from:?} not in BASE");
            BASE.replacen(from, to, 1)
        };
        let errs = Inventory::from_toml(&text, "c.toml")
            .unwrap_err()
            .to_string();
        let line = line_of(&text, at);
        let prefix = format!("c.toml:{line}:");
        assert!(
            errs.lines().any(|l| l.starts_with(&prefix)
                && l.contains(&format!(": {key}: "))
                && l.contains(msg)),
            "want {prefix} {key}: …{msg}…, got:\n{errs}"
        );
    }

    #[test]
    fn base_is_valid_and_empty_gives_defaults() {
        Inventory::from_toml(BASE, "c.toml").unwrap();
        let inv = Inventory::from_toml("", "empty.toml").unwrap();
        assert_eq!(inv.storage().database, "sqlite://data/sekisho.db");
        assert_eq!(
            inv.storage().recordings,
            Recordings::Local(PathBuf::from("data/recordings"))
        );
        assert_eq!(inv.storage().signing_key, PathBuf::from("data/signing.key"));
        assert_eq!(inv.storage().secrets, PathBuf::from("data/secrets.toml"));
        assert_eq!(inv.tls().cert, PathBuf::from("data/tls/cert.pem"));
        assert_eq!(inv.tls().key, PathBuf::from("data/tls/key.pem"));
        assert_eq!(inv.listen().rdp.to_string(), "127.0.0.1:13389");
        assert_eq!(inv.listen().ssh.to_string(), "127.0.0.1:12222");
        assert_eq!(inv.listen().vnc.to_string(), "127.0.0.1:15900");
        assert_eq!(inv.listen().web.to_string(), "127.0.0.1:18080");
        assert_eq!(inv.listen().metrics, None);
        assert!(inv.recording().required);
        assert_eq!(inv.rdp().allow_static_channels, ["rdpsnd", "drdynvc"]);
        assert_eq!(inv.rdp().deny_dynamic_channels.len(), 4);
        assert_eq!(inv.timezone(), chrono_tz::Asia::Tokyo);
        assert_eq!(
            Inventory::from_toml("", "e").unwrap().listen(),
            Inventory::default().listen()
        );
    }

    #[test]
    fn recording_ledger_checkpoint_interval() {
        assert_eq!(
            Inventory::default().recording().ledger_checkpoint_interval,
            DEFAULT_LEDGER_CHECKPOINT_INTERVAL
        );
        let inv = Inventory::from_toml(
            "[recording]\nledger_checkpoint_interval = \"10m\"\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(
            inv.recording().ledger_checkpoint_interval,
            Duration::from_secs(600)
        );
        let err = Inventory::from_toml(
            "[recording]\nledger_checkpoint_interval = \"often\"\n",
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("recording.ledger_checkpoint_interval"),
            "{err}"
        );
    }

    #[test]
    fn limits_default_set_and_refused() {
        let d = Inventory::default();
        assert_eq!(
            d.limits().ssh_connections,
            crate::limits::DEFAULT_SSH_CONNECTIONS
        );
        let inv = Inventory::from_toml(
            "[limits]\nssh_connections = 6000\nrdp_connections = 1200\nvnc_connections = 64\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(
            (
                inv.limits().ssh_connections,
                inv.limits().rdp_connections,
                inv.limits().vnc_connections
            ),
            (6000, 1200, 64)
        );
        let err = Inventory::from_toml(
            "[limits]\nrdp_connections = 0\nvnc_connections = -3\n",
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("limits.rdp_connections"), "{err}");
        assert!(err.contains("limits.vnc_connections"), "{err}");
        assert!(err.contains("1 to 1000000"), "{err}");
        let err = Inventory::from_toml("[limits]\nsessions = 5\n", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("sessions"), "{err}");
    }

    #[test]
    fn recording_retention_days() {
        assert_eq!(Inventory::default().recording().retention_days, None);
        let inv = Inventory::from_toml("[recording]\nretention_days = 365\n", "c.toml").unwrap();
        assert_eq!(inv.recording().retention_days, Some(365));
        for bad in ["0", "-3"] {
            let text = format!("[recording]\nretention_days = {bad}\n");
            let errs = Inventory::from_toml(&text, "c.toml")
                .unwrap_err()
                .to_string();
            assert!(
                errs.contains("c.toml:2:") && errs.contains("recording.retention_days"),
                "{errs}"
            );
        }
    }

    #[test]
    fn auth_table_defaults_units_and_located_errors() {
        let d = Inventory::default();
        assert_eq!(d.auth().max_failures, 10);
        assert_eq!(d.auth().failure_window, Duration::from_secs(900));
        assert_eq!(d.auth().lockout, Duration::from_secs(900));
        assert_eq!(d.auth().second_factor_ttl, Duration::from_secs(8 * 3600));
        assert_eq!(d.auth().supervision_wait, Duration::from_secs(300));
        let inv = Inventory::from_toml(
            "[auth]\nmax_failures = 3\nfailure_window = \"2m\"\nlockout = 45\nsecond_factor_ttl = \"1d\"\nsupervision_wait = \"10m\"\n",
            "c.toml",
        )
        .unwrap();
        assert_eq!(inv.auth().max_failures, 3);
        assert_eq!(inv.auth().failure_window, Duration::from_secs(120));
        assert_eq!(inv.auth().lockout, Duration::from_secs(45));
        assert_eq!(inv.auth().second_factor_ttl, Duration::from_secs(86_400));
        assert_eq!(inv.auth().supervision_wait, Duration::from_secs(600));
        for (line, key) in [
            ("max_failures = 0", "auth.max_failures"),
            ("max_failures = -1", "auth.max_failures"),
            ("failure_window = 0", "auth.failure_window"),
            ("lockout = \"15 minutes\"", "auth.lockout"),
            ("lockout = \"31d\"", "auth.lockout"),
            ("second_factor_ttl = \"h\"", "auth.second_factor_ttl"),
            (
                "second_factor_ttl = \"99999999999999999999h\"",
                "auth.second_factor_ttl",
            ),
            ("lockout = true", "auth.lockout"),
            ("supervision_wait = 0", "auth.supervision_wait"),
            ("lockouts = 60", "auth.lockouts"),
        ] {
            let text = format!("[auth]\n{line}\n");
            let errs = Inventory::from_toml(&text, "c.toml")
                .unwrap_err()
                .to_string();
            assert!(
                errs.contains("c.toml:2:") && errs.contains(key),
                "{line}: {errs}"
            );
        }
    }

    #[test]
    fn example_extra_keys_parse() {
        let text = format!(
            "{BASE}{}",
            r#"
[[user]]
name = "sato"
contractor = "acme"
role = "contractor"
nt_hash = "8846F7EAEE8FB117AD06BDD830B7586C"
ssh_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0fakefakefakefake sato@vdi"]
matrix_card = ["1234", "5678"]

[[target]]
name = "txt03"
address = "127.0.20.13"
kind = "vm"
zone = "business"
hypervisor = "kvm01"
ssh_console = "kvm01.example:22"
console_command = "virsh console {vm}"
serial_console = "[::1]:4555"
ssh_port = 2222
rdp_port = 3390
credential = "x"
"#
        );
        let inv = Inventory::from_toml(&text, "c.toml").unwrap();
        let u = inv.user("sato").unwrap();
        assert_eq!(u.nt_hash.as_ref().unwrap().expose()[0], 0x88);
        assert_eq!(format!("{:?}", u.nt_hash), "Some(<secret>)");
        assert_eq!(u.matrix_card.as_ref().unwrap().len(), 2);
        let t = inv.target("txt03").unwrap();
        assert_eq!(
            t.ssh_console.as_ref().unwrap().to_string(),
            "kvm01.example:22"
        );
        assert_eq!(t.serial_console.as_ref().unwrap().to_string(), "[::1]:4555");
        assert_eq!((t.ssh_port, t.rdp_port), (2222, 3390));
        assert_eq!(inv.target("phys01").unwrap().rdp_port, 3389);
        assert_eq!(
            inv.target_by_address("127.0.20.13".parse().unwrap())
                .unwrap()
                .name,
            "txt03"
        );
    }

    #[test]
    fn syntax_and_unknown_keys() {
        assert_error(
            "\n[[vdi_pool]]",
            "\nbogus = 1\n[[vdi_pool]]",
            "bogus",
            "bogus",
            "unknown field `bogus`",
        );
        assert_error(
            "kind = \"physical\"",
            "kind = \"physical\"\nsize = 3",
            "size",
            "target.size",
            "unknown field `size`",
        );
        assert_error(
            "",
            "\n[rdp]\nallow = []\n",
            "allow =",
            "rdp.allow",
            "unknown field",
        );
        assert_error(
            "",
            "\n[listen]\nrdp = 5\n",
            "rdp = 5",
            "listen.rdp",
            "invalid type",
        );
        assert_error("", "\nx = = 3\n", "x = =", "(document)", "");
        // Several at once: all reported.
        let text = format!("bogus = 1\n{BASE}\n[storage]\nfoo = 1\nbar = 2\n");
        let errs = Inventory::from_toml(&text, "c.toml").unwrap_err();
        assert_eq!(errs.errors().len(), 3, "{errs}");
    }

    #[test]
    fn reference_errors() {
        assert_error(
            "targets = [\"web01\"]",
            "targets = [\"web01\", \"nope\"]",
            "targets",
            "contract.targets",
            "unknown target \"nope\"",
        );
        assert_error(
            "contractor = \"acme\"\ntargets",
            "contractor = \"acme-x\"\ntargets",
            "acme-x",
            "contract.contractor",
            "unknown contractor",
        );
        assert_error(
            "contractor = \"acme\"\nrole",
            "contractor = \"zeta\"\nrole",
            "zeta",
            "user.contractor",
            "unknown contractor",
        );
        assert_error(
            "hypervisor = \"kvm01\"",
            "hypervisor = \"kvm09\"",
            "kvm09",
            "target.hypervisor",
            "unknown hypervisor",
        );
        assert_error(
            "zone = \"business\"\nhypervisor",
            "zone = \"dmz\"\nhypervisor",
            "dmz",
            "target.zone",
            "unknown zone \"dmz\"",
        );
        assert_error(
            "business = [\"internet-vpn\"]",
            "business = [\"internet-vpm\"]",
            "internet-vpm",
            "zones.business",
            "unknown access path",
        );
    }

    #[test]
    fn address_errors() {
        assert_error(
            "networks = [\"127.0.10.0/24\"]",
            "networks = [\"127.0.10.0/33\"]",
            "networks",
            "vdi_pool.networks",
            "bad CIDR",
        );
        assert_error(
            "networks = [\"127.0.10.0/24\"]",
            "networks = [\"127.0.10.5/24\"]",
            "networks",
            "vdi_pool.networks",
            "host bits",
        );
        assert_error(
            "address = \"127.0.20.11\"",
            "address = \"127.0.20.311\"",
            "127.0.20.311",
            "target.address",
            "bad address",
        );
        assert_error(
            "address = \"127.0.0.1\"",
            "address = \"kvm\"",
            "\"kvm\"",
            "hypervisor.address",
            "bad address",
        );
        assert_error(
            "vnc_console = \"127.0.0.1:15901\"",
            "vnc_console = \"127.0.0.1\"",
            "vnc_console",
            "target.vnc_console",
            "bad address",
        );
        assert_error(
            "desktops = [\"127.0.10.11\"]",
            "desktops = [\"10.9.9.9\"]",
            "desktops",
            "user.desktops",
            "not inside any vdi_pool",
        );
        assert_error(
            "address = \"127.0.20.21\"",
            "address = \"127.0.20.11\"",
            "address = \"127.0.20.11\"\nkind = \"physical\"",
            "target.address",
            "already used by target \"web01\"",
        );
        assert_error(
            "address = \"127.0.20.21\"",
            "address = \"127.0.10.50\"",
            "127.0.10.50",
            "target.address",
            "inside vdi_pool",
        );
        assert_error(
            "",
            "\n[listen]\nweb = \"localhost\"\n",
            "localhost",
            "listen.web",
            "bad address",
        );
        assert_error(
            "",
            "\n[listen]\nmetrics = \"127.0.0.1\"\n",
            "metrics =",
            "listen.metrics",
            "bad address",
        );
        assert_error(
            "",
            "\n[listen]\nweb = \"127.0.0.1:18080\"\nmetrics = \"127.0.0.1:18080\"\n",
            "metrics =",
            "listen.metrics",
            "same address as listen.web",
        );
        assert_error(
            "",
            "\n[[vdi_pool]]\nname = \"p2\"\npath = \"internet-vpn\"\nnetworks = [\"127.0.0.0/16\"]\n",
            "127.0.0.0/16",
            "vdi_pool.networks",
            "overlaps",
        );
    }

    #[test]
    fn date_and_window_errors() {
        assert_error(
            "valid_from = \"2026-04-01\"",
            "valid_from = \"2026-4-1\"",
            "2026-4-1",
            "contract.valid_from",
            "bad date",
        );
        assert_error(
            "valid_until = \"2027-03-31\"",
            "valid_until = \"2027-02-30\"",
            "2027-02-30",
            "contract.valid_until",
            "bad date",
        );
        assert_error(
            "valid_until = \"2027-03-31\"",
            "valid_until = \"2026-03-31\"",
            "2026-03-31",
            "contract.valid_until",
            "before valid_from",
        );
        assert_error(
            "windows = [\"mon-fri 08:30-20:00\"]",
            "windows = [\"mon-fri 08:30-20:00\",\n  \"sun 10:00-10:00\"]",
            "\"sun",
            "contract.windows",
            "empty",
        );
        assert_error(
            "windows = [\"mon-fri 08:30-20:00\"]",
            "windows = [\"mon-fry 08:30-20:00\"]",
            "windows",
            "contract.windows",
            "unknown day",
        );
        assert_error(
            "windows = [\"mon-fri 08:30-20:00\"]",
            "windows = [\"mon-fri 8:30-20:00\"]",
            "windows",
            "contract.windows",
            "bad time",
        );
        assert_error(
            "",
            "\n[[contract]]\ncontractor = \"acme\"\ntargets = [\"web01\"]\nvalid_from = \"2026-04-01\"\n",
            "[[contract]]\ncontractor = \"acme\"\ntargets = [\"web01\"]\nvalid_from = \"2026-04-01\"\n",
            "contract.valid_until",
            "missing",
        );
    }

    #[test]
    fn bare_toml_dates_are_accepted() {
        let text = BASE
            .replace("valid_from = \"2026-04-01\"", "valid_from = 2026-04-01")
            .replace("valid_until = \"2027-03-31\"", "valid_until = 2027-03-31");
        let inv = Inventory::from_toml(&text, "c.toml").unwrap();
        assert_eq!(inv.contracts()[0].valid_until.to_string(), "2027-03-31");
        assert_error(
            "valid_from = \"2026-04-01\"",
            "valid_from = 2026-04-01T10:00:00",
            "2026-04-01T",
            "contract.valid_from",
            "bad date",
        );
        assert_error(
            "valid_from = \"2026-04-01\"",
            "valid_from = 20260401",
            "20260401",
            "contract.valid_from",
            "expected a date",
        );
    }

    #[test]
    fn duplicate_errors() {
        assert_error(
            "",
            "\n[[user]]\nname = \"tanaka\"\nrole = \"auditor\"\n",
            "\"tanaka\"\nrole = \"auditor\"",
            "user.name",
            "duplicate user name",
        );
        assert_error(
            "",
            "\n[[target]]\nname = \"web01\"\naddress = \"127.0.20.99\"\nkind = \"physical\"\nzone = \"business\"\n",
            "\"web01\"\naddress = \"127.0.20.99\"",
            "target.name",
            "duplicate target name",
        );
        assert_error(
            "",
            "\n[[contractor]]\nid = \"acme\"\n",
            "\"acme\"",
            "contractor.id",
            "duplicate contractor",
        );
        assert_error(
            "",
            "\n[[vdi_pool]]\nname = \"vdi-internet\"\npath = \"ip-vpn\"\n",
            "\"vdi-internet\"\npath = \"ip-vpn\"",
            "vdi_pool.name",
            "duplicate vdi_pool",
        );
        assert_error(
            "",
            "\n[[hypervisor]]\nname = \"kvm01\"\naddress = \"127.0.0.2\"\n",
            "\"kvm01\"\naddress = \"127.0.0.2\"",
            "hypervisor.name",
            "duplicate hypervisor",
        );
        assert_error(
            "",
            "\n[[user]]\nname = \"sato\"\ncontractor = \"acme\"\nrole = \"contractor\"\ndesktops = [\"127.0.10.11\"]\n",
            "[\"127.0.10.11\"]",
            "user.desktops",
            "already assigned to user \"tanaka\"",
        );
    }

    #[test]
    fn role_and_kind_errors() {
        assert_error(
            "",
            "\n[[user]]\nname = \"sato\"\nrole = \"contractor\"\n",
            "\"sato\"",
            "user.contractor",
            "needs a contractor",
        );
        assert_error(
            "",
            "\n[[user]]\nname = \"sato\"\nrole = \"auditor\"\ncontractor = \"acme\"\n",
            "\"acme\"",
            "user.contractor",
            "only contractor-role users",
        );
        assert_error(
            "",
            "\n[[user]]\nname = \"sato\"\nrole = \"admin\"\ndesktops = [\"127.0.10.12\"]\n",
            "[\"127.0.10.12\"]",
            "user.desktops",
            "only contractor-role users",
        );
        assert_error(
            "role = \"contractor\"",
            "role = \"boss\"",
            "boss",
            "user.role",
            "bad role",
        );
        assert_error(
            "hypervisor = \"kvm01\"\n",
            "",
            "name = \"web01\"",
            "target.hypervisor",
            "a vm needs a hypervisor",
        );
        assert_error(
            "vnc_console = \"127.0.0.1:15901\"\n",
            "",
            "name = \"web01\"",
            "target.vnc_console",
            "at least one of",
        );
        assert_error(
            "kind = \"physical\"",
            "kind = \"physical\"\nhypervisor = \"kvm01\"",
            "hypervisor = \"kvm01\"\nzone",
            "target.hypervisor",
            "physical server",
        );
        assert_error(
            "kind = \"physical\"",
            "kind = \"physical\"\nserial_console = \"127.0.0.1:1\"",
            "serial_console",
            "target.serial_console",
            "physical server",
        );
        assert_error(
            "kind = \"physical\"",
            "kind = \"metal\"",
            "metal",
            "target.kind",
            "unknown kind",
        );
        assert_error(
            "vnc_console = \"127.0.0.1:15901\"",
            "vnc_console = \"127.0.0.1:15901\"\nconsole_command = \"x\"",
            "console_command",
            "target.console_command",
            "needs ssh_console",
        );
        assert_error(
            "vnc_console = \"127.0.0.1:15901\"",
            "vnc_console = \"127.0.0.1:15901\"\nvnc_qmp = \"127.0.0.1\"",
            "vnc_qmp",
            "target.vnc_qmp",
            "bad address",
        );
        assert_error(
            "vnc_console = \"127.0.0.1:15901\"",
            "vnc_qmp = \"127.0.0.1:4444\"",
            "vnc_qmp",
            "target.vnc_qmp",
            "needs vnc_console",
        );
    }

    #[test]
    fn vnc_qmp_is_an_endpoint_next_to_vnc_console() {
        let text = BASE.replacen(
            "vnc_console = \"127.0.0.1:15901\"",
            "vnc_console = \"127.0.0.1:15901\"\nvnc_qmp = \"127.0.0.1:4444\"",
            1,
        );
        let inv = Inventory::from_toml(&text, "c.toml").unwrap();
        let with = inv.targets().iter().find(|t| t.vnc_qmp.is_some()).unwrap();
        assert_eq!(with.vnc_qmp.as_ref().unwrap().to_string(), "127.0.0.1:4444");
        let base = Inventory::from_toml(BASE, "c.toml").unwrap();
        assert!(base.targets().iter().all(|t| t.vnc_qmp.is_none()));
    }

    #[test]
    fn other_value_errors() {
        let top = "\n[[vdi_pool]]\nname = \"vdi-internet\"";
        let tz = "\ntimezone = \"Mars/Olympus\"\n[[vdi_pool]]\nname = \"vdi-internet\"";
        assert_error(top, tz, "Mars", "timezone", "unknown timezone");
        let db = "\n[storage]\ndatabase = \"mysql://x\"\n[[vdi_pool]]\nname = \"vdi-internet\"";
        assert_error(top, db, "mysql", "storage.database", "unsupported database");
        let u = "role = \"contractor\"";
        assert_error(
            u,
            "role = \"contractor\"\nnt_hash = \"abc\"",
            "nt_hash",
            "user.nt_hash",
            "32 hex",
        );
        assert_error(
            u,
            "role = \"contractor\"\nmatrix_card = [\"12\", \"3\"]",
            "matrix_card",
            "user.matrix_card",
            "rows of digits",
        );
        assert_error(
            u,
            "role = \"contractor\"\nssh_keys = [\"not a key\"]",
            "ssh_keys",
            "user.ssh_keys",
            "OpenSSH public key",
        );
        assert_error(
            u,
            "role = \"contractor\"\npassword_hash = \"plain\"",
            "password_hash",
            "user.password_hash",
            "argon2",
        );
    }

    proptest::proptest! {
        /// Damaged configurations never panic, and every error has the documented shape.
        #[test]
        fn damaged_example_reports_well_formed_errors(
            cut in 0usize..EXAMPLE.len(),
            len in 0usize..40,
            insert in "[a-z =\"\\[\\]\n0-9.:/-]{0,12}",
        ) {
            let end = (cut + len).min(EXAMPLE.len());
            let (Some(a), Some(b)) = (EXAMPLE.get(..cut), EXAMPLE.get(end..)) else {
                return Ok(());
            };
            let text = format!("{a}{insert}{b}");
            if let Err(errs) = Inventory::from_toml(&text, "d.toml") {
                proptest::prop_assert!(!errs.errors().is_empty());
                for line in errs.to_string().lines() {
                    let mut parts = line.splitn(5, ':');
                    proptest::prop_assert_eq!(parts.next(), Some("d.toml"), "{}", line);
                    let l: usize = parts.next().unwrap_or("").parse().unwrap_or(0);
                    let c: usize = parts.next().unwrap_or("").parse().unwrap_or(0);
                    proptest::prop_assert!(l >= 1 && c >= 1, "{}", line);
                    proptest::prop_assert!(l <= text.lines().count() + 1, "{}", line);
                }
            }
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = Inventory::from_toml(&text, "x.toml");
            let _ = crate::Secrets::from_toml(&text, "x.toml");
        }
    }
}
