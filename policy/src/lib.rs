//! Sekisho policy: the inventory model and the decision engine.
//!
//! Pure by design (no tokio, sockets, filesystem or clock): callers pass configuration text,
//! the live console sessions and the time in, and get a [`Decision`] out. See [`engine`] for
//! the rules and their precedence, and [`config`] for the configuration model.

pub mod config;
mod diag;
pub mod engine;
pub mod limits;
pub mod reasons;
pub mod secrets;
pub mod storage;
mod types;
pub mod window;

pub use config::{
    AuthPolicy, Contract, Contractor, Endpoint, Hypervisor, Inventory, Listen, RdpPolicy,
    Recording, Recordings, Role, S3Recordings, Source, Storage, Target, TargetKind, Tls, User,
    VdiPool,
};
pub use diag::{ConfigError, ConfigErrors};
pub use engine::{Authorized, Decision, Denial, LiveConsole, Request, TargetRef, evaluate};
pub use secrets::{Credential, S3Keys, Secret, Secrets};
pub use types::{
    InvalidSessionId, Protocol, Rule, SessionId, Severity, UnknownProtocol, UnknownRule,
    UnknownSeverity,
};
pub use window::Window;
