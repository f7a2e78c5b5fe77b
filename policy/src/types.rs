//! Small shared value types: session ids, protocols and rule ids.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A session's globally unique id (a UUIDv7).
///
/// Several Sekisho instances may share one catalogue, so ids must be unique across instances;
/// UUIDv7 gives that and sorts by creation time. `policy` only parses and holds ids: creating
/// one needs a clock and randomness, which the I/O crates provide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub uuid::Uuid);

impl SessionId {
    /// Wraps an existing UUID.
    pub const fn from_uuid(id: uuid::Uuid) -> Self {
        Self(id)
    }

    /// The wrapped UUID.
    pub const fn as_uuid(&self) -> &uuid::Uuid {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

/// The text was not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid session id {0:?}")]
pub struct InvalidSessionId(pub String);

impl FromStr for SessionId {
    type Err = InvalidSessionId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s)
            .map(Self)
            .map_err(|_| InvalidSessionId(s.to_owned()))
    }
}

/// What kind of connection is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Protocol {
    /// RDP to the target's own RDP service.
    #[serde(rename = "rdp")]
    Rdp,
    /// SSH to the target's own sshd.
    #[serde(rename = "ssh")]
    Ssh,
    /// The VM's text console on its hypervisor (serial, or an SSH console command).
    #[serde(rename = "console-serial")]
    ConsoleSerial,
    /// The VM's graphical (VNC) console on its hypervisor.
    #[serde(rename = "console-vnc")]
    ConsoleVnc,
    /// The web UI's login (auditors' and contractors' browsers). It reaches no target: it only
    /// appears on `auth.failed` denial rows of the web login, and [`evaluate`](crate::evaluate)
    /// denies it. Not in [`Protocol::ALL`], the protocols of sessions.
    #[serde(rename = "web")]
    Web,
}

impl Protocol {
    /// Every protocol, for menus and tests.
    pub const ALL: [Protocol; 4] = [
        Protocol::Rdp,
        Protocol::Ssh,
        Protocol::ConsoleSerial,
        Protocol::ConsoleVnc,
    ];

    /// The interface name: `rdp`, `ssh`, `console-serial`, `console-vnc`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Rdp => "rdp",
            Protocol::Ssh => "ssh",
            Protocol::ConsoleSerial => "console-serial",
            Protocol::ConsoleVnc => "console-vnc",
            Protocol::Web => "web",
        }
    }

    /// How a reason sentence names the protocol ("RDP", "serial console", ...).
    pub const fn describe(self) -> &'static str {
        match self {
            Protocol::Rdp => "RDP",
            Protocol::Ssh => "SSH",
            Protocol::ConsoleSerial => "Text console",
            Protocol::ConsoleVnc => "VNC console",
            Protocol::Web => "Web UI",
        }
    }

    /// True for the hypervisor console protocols.
    pub const fn is_console(self) -> bool {
        matches!(self, Protocol::ConsoleSerial | Protocol::ConsoleVnc)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not one of `rdp`, `ssh`, `console-serial`, `console-vnc`, `web`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?} (expected rdp, ssh, console-serial or console-vnc)")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Protocol::ALL
            .into_iter()
            .chain([Protocol::Web])
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProtocol(s.to_owned()))
    }
}

/// How much a denial matters to the people who review them, most serious first: a breach
/// of the My Number zone is not a mistyped target. The review dashboard sorts and filters by
/// it; the policy itself treats every deny alike (a deny is a deny).
///
/// INVARIANT: the variants are declared most serious first, so the derived `Ord` sorts
/// `Critical` before `Low`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// Someone reached for data the rules wall off: a path into a zone it may not reach.
    Critical,
    /// A way around the bastion's own controls was tried (a VM by RDP or SSH from the VDI, a
    /// hop without a console, forwarding, file transfer, a desktop used by another user, an
    /// unwatched supervised target), or a target's identity changed (a possible
    /// man-in-the-middle).
    High,
    /// Work outside what the contract allows, or failed authentication (a mistyped password
    /// looks like guessing until someone has looked).
    Medium,
    /// Mistakes and operational faults: an unknown name, a console that is not configured, a
    /// missing credential, Sekisho unable to decide; allow rules too (they are never denials).
    Low,
}

impl Severity {
    /// Every severity, most serious first.
    pub const ALL: [Severity; 4] = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];

    /// A short id for forms and CSS classes: `critical`, `high`, `medium`, `low`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = UnknownSeverity;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownSeverity(s.to_owned()))
    }
}

/// The text is not a severity id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown severity {0:?}")]
pub struct UnknownSeverity(pub String);

/// The rule that decided a request; `as_str` gives the id operators see (interfaces.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rule {
    /// Deny: the source is neither a VDI desktop nor a known server.
    SourceUnknown,
    /// Deny: a VDI desktop assigned to one user, but another user authenticated on it.
    SourceDesktopMismatch,
    /// Deny: no target of that name or address.
    TargetUnknown,
    /// Deny: no such user, no user could be resolved, or the user's role may not open sessions.
    UserUnknown,
    /// Deny: the access path may not reach the target's zone.
    ZonePath,
    /// Deny: no contract of the user's contractor names the target.
    ContractNone,
    /// Deny: the contract is not in force on this date (expired or not yet started).
    ContractExpired,
    /// Deny: the contract is in force but now is outside all its windows.
    ContractWindow,
    /// Deny: RDP from a VDI desktop to a virtual machine.
    RdpVdiToVm,
    /// Deny: RDP from a server without a live console session on that server.
    RdpHopNoConsole,
    /// Deny: a console asked for on a physical server.
    ConsolePhysical,
    /// Deny: the VM has no console of the asked kind configured.
    ConsoleUnavailable,
    /// Deny: direct SSH to a virtual machine.
    SshVdiToVm,
    /// Deny: SSH port forwarding (decided by the SSH proxy).
    SshForwarding,
    /// Deny: SSH file transfer (decided by the SSH proxy).
    SshFileTransfer,
    /// Deny: Sekisho cannot decide safely right now (the catalogue cannot be read or written),
    /// so it fails closed (decided by the proxies).
    SekishoUnavailable,
    /// Deny: the target needs a credential from the secrets file that is not there.
    CredentialMissing,
    /// Deny: the target refused the credential Sekisho injected from the secrets file (stale
    /// or wrong password there; the contractor cannot fix it).
    CredentialRefused,
    /// Deny: an RDP server presented a certificate other than the one pinned for it.
    RdpServerCertChanged,
    /// Deny: a console's SSH host key differs from the one pinned for its endpoint.
    ConsoleHostKeyChanged,
    /// Deny: a VNC console ticket was wrong, reused, expired or from another address.
    VncTicketInvalid,
    /// Deny: the user failed to authenticate at a front door.
    AuthFailed,
    /// Deny: a live session's target was changed in the configuration (its address, kind,
    /// zone, credential or the endpoint the session dialled), so the session no longer goes
    /// where the configuration says (decided by the proxies when they re-decide live
    /// sessions).
    TargetChanged,
    /// Deny: a user with a matrix card has not passed it from this desktop recently (within
    /// `auth.second_factor_ttl`), so a door without a card step of its own (VNC, RDP) refuses.
    AuthSecondFactor,
    /// Deny: a supervised target's session had no member of security staff watching it
    /// (four eyes), so it did not start (decided by the proxies).
    SupervisionAbsent,
    /// Allow: RDP to a physical server.
    RdpPhysical,
    /// Allow: RDP from a server reached through a live console session.
    RdpHopFromConsole,
    /// Allow: a hypervisor console of a VM.
    ConsoleVm,
    /// Allow: direct SSH to a physical server.
    SshPhysical,
}

impl Rule {
    /// Every rule, for documentation and tests.
    pub const ALL: [Rule; 29] = [
        Rule::SourceUnknown,
        Rule::SourceDesktopMismatch,
        Rule::TargetUnknown,
        Rule::UserUnknown,
        Rule::ZonePath,
        Rule::ContractNone,
        Rule::ContractExpired,
        Rule::ContractWindow,
        Rule::RdpVdiToVm,
        Rule::RdpHopNoConsole,
        Rule::ConsolePhysical,
        Rule::ConsoleUnavailable,
        Rule::SshVdiToVm,
        Rule::SshForwarding,
        Rule::SshFileTransfer,
        Rule::SekishoUnavailable,
        Rule::CredentialMissing,
        Rule::CredentialRefused,
        Rule::RdpServerCertChanged,
        Rule::ConsoleHostKeyChanged,
        Rule::VncTicketInvalid,
        Rule::AuthFailed,
        Rule::TargetChanged,
        Rule::AuthSecondFactor,
        Rule::SupervisionAbsent,
        Rule::RdpPhysical,
        Rule::RdpHopFromConsole,
        Rule::ConsoleVm,
        Rule::SshPhysical,
    ];

    /// Rules that the proxies decide (refusals inside a session, front-door failures), never
    /// [`evaluate`](crate::evaluate).
    pub const fn is_proxy_side(self) -> bool {
        matches!(
            self,
            Rule::SshForwarding
                | Rule::SshFileTransfer
                | Rule::SekishoUnavailable
                | Rule::CredentialMissing
                | Rule::CredentialRefused
                | Rule::RdpServerCertChanged
                | Rule::ConsoleHostKeyChanged
                | Rule::VncTicketInvalid
                | Rule::AuthFailed
                | Rule::TargetChanged
                | Rule::AuthSecondFactor
                | Rule::SupervisionAbsent
        )
    }

    /// The rule id of interfaces.md, e.g. `rdp.vdi-to-vm`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Rule::SourceUnknown => "source.unknown",
            Rule::SourceDesktopMismatch => "source.desktop-mismatch",
            Rule::TargetUnknown => "target.unknown",
            Rule::UserUnknown => "user.unknown",
            Rule::ZonePath => "zone.path",
            Rule::ContractNone => "contract.none",
            Rule::ContractExpired => "contract.expired",
            Rule::ContractWindow => "contract.window",
            Rule::RdpVdiToVm => "rdp.vdi-to-vm",
            Rule::RdpHopNoConsole => "rdp.hop-no-console",
            Rule::ConsolePhysical => "console.physical",
            Rule::ConsoleUnavailable => "console.unavailable",
            Rule::SshVdiToVm => "ssh.vdi-to-vm",
            Rule::SshForwarding => "ssh.forwarding",
            Rule::SshFileTransfer => "ssh.file-transfer",
            Rule::RdpPhysical => "rdp.physical",
            Rule::RdpHopFromConsole => "rdp.hop-from-console",
            Rule::ConsoleVm => "console.vm",
            Rule::SshPhysical => "ssh.physical",
            Rule::SekishoUnavailable => "sekisho.unavailable",
            Rule::CredentialMissing => "credential.missing",
            Rule::CredentialRefused => "credential.refused",
            Rule::RdpServerCertChanged => "rdp.server-cert-changed",
            Rule::ConsoleHostKeyChanged => "console.host-key-changed",
            Rule::VncTicketInvalid => "vnc.ticket-invalid",
            Rule::AuthFailed => "auth.failed",
            Rule::TargetChanged => "target.changed",
            Rule::AuthSecondFactor => "auth.second-factor",
            Rule::SupervisionAbsent => "supervision.absent",
        }
    }

    /// How much a denial by this rule matters to its reviewers ([`Severity`]).
    ///
    /// - Critical: `zone.path`, the zones hold what the prefecture must protect most (the My
    ///   Number zone); reaching for one from the wrong path is the breach the bastion exists to
    ///   stop.
    /// - High: attempts around the bastion's controls (`rdp.vdi-to-vm`, `ssh.vdi-to-vm`,
    ///   `rdp.hop-no-console`, `ssh.forwarding`, `ssh.file-transfer`,
    ///   `source.desktop-mismatch`, `supervision.absent`, `target.changed`) and a target whose
    ///   pinned identity changed (`rdp.server-cert-changed`, `console.host-key-changed`: a
    ///   possible man-in-the-middle). Each needs someone to look the same day.
    /// - Medium: work outside the contract (`contract.*`), failed authentication
    ///   (`auth.failed`, `auth.second-factor`, `vnc.ticket-invalid`): usually a mistake, but
    ///   repeated they are guessing.
    /// - Low: mistakes and faults of the setup (`target.unknown`, `user.unknown`,
    ///   `source.unknown`, `console.physical`, `console.unavailable`, `credential.*`,
    ///   `sekisho.unavailable`) and the allow rules, which never deny.
    pub const fn severity(self) -> Severity {
        match self {
            Rule::ZonePath => Severity::Critical,
            Rule::RdpVdiToVm
            | Rule::SshVdiToVm
            | Rule::RdpHopNoConsole
            | Rule::SshForwarding
            | Rule::SshFileTransfer
            | Rule::SourceDesktopMismatch
            | Rule::SupervisionAbsent
            | Rule::TargetChanged
            | Rule::RdpServerCertChanged
            | Rule::ConsoleHostKeyChanged => Severity::High,
            Rule::ContractNone
            | Rule::ContractExpired
            | Rule::ContractWindow
            | Rule::AuthFailed
            | Rule::AuthSecondFactor
            | Rule::VncTicketInvalid => Severity::Medium,
            Rule::SourceUnknown
            | Rule::TargetUnknown
            | Rule::UserUnknown
            | Rule::ConsolePhysical
            | Rule::ConsoleUnavailable
            | Rule::CredentialMissing
            | Rule::CredentialRefused
            | Rule::SekishoUnavailable
            | Rule::RdpPhysical
            | Rule::RdpHopFromConsole
            | Rule::ConsoleVm
            | Rule::SshPhysical => Severity::Low,
        }
    }

    /// True for the rules that allow.
    pub const fn is_allow(self) -> bool {
        matches!(
            self,
            Rule::RdpPhysical | Rule::RdpHopFromConsole | Rule::ConsoleVm | Rule::SshPhysical
        )
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text is not a known rule id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rule id {0:?}")]
pub struct UnknownRule(pub String);

impl FromStr for Rule {
    type Err = UnknownRule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Rule::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| UnknownRule(s.to_owned()))
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_round_trips() {
        for p in Protocol::ALL {
            assert_eq!(p.as_str().parse::<Protocol>().unwrap(), p);
            assert_eq!(p.to_string(), p.as_str());
        }
        assert!("telnet".parse::<Protocol>().is_err());
        // The web login's denial rows read back from the catalogue.
        assert_eq!("web".parse::<Protocol>().unwrap(), Protocol::Web);
    }

    #[test]
    fn rule_ids_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for r in Rule::ALL {
            assert!(seen.insert(r.as_str()));
            assert_eq!(r.as_str().parse::<Rule>().unwrap(), r);
        }
    }

    #[test]
    fn severities_sort_most_serious_first_and_rules_have_theirs() {
        let mut all = Severity::ALL;
        all.reverse();
        all.sort();
        assert_eq!(all, Severity::ALL);
        assert!(Severity::Critical < Severity::Low);
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>().unwrap(), s);
        }
        assert!("urgent".parse::<Severity>().is_err());
        // A My Number zone breach outranks a mistyped target.
        assert_eq!(Rule::ZonePath.severity(), Severity::Critical);
        assert_eq!(Rule::RdpVdiToVm.severity(), Severity::High);
        assert_eq!(Rule::AuthFailed.severity(), Severity::Medium);
        assert_eq!(Rule::TargetUnknown.severity(), Severity::Low);
        // Only zone.path is critical; every allow rule is low.
        for r in Rule::ALL {
            assert_eq!(
                r.severity() == Severity::Critical,
                r == Rule::ZonePath,
                "{r}"
            );
            if r.is_allow() {
                assert_eq!(r.severity(), Severity::Low, "{r}");
            }
        }
    }

    #[test]
    fn session_id_displays_hyphenated() {
        let s = "01890a5d-ac96-774b-bcce-b302099a8057";
        let id: SessionId = s.parse().unwrap();
        assert_eq!(id.to_string(), s);
        assert!("nope".parse::<SessionId>().is_err());
    }
}
