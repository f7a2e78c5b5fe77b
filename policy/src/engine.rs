//! The decision engine: may this connection happen, and whose is it?
//!
//! [`evaluate`] is a pure function of the inventory, the live console sessions, the request
//! and the time. Checks run in this order; the first that fails decides:
//!
//! 1. **source**: a VDI desktop (inside a `vdi_pool` network), a farm server (a target's
//!    address) or unknown → `source.unknown`.
//! 2. **target**: by name, or by address for transparent RDP → `target.unknown`.
//! 3. **user**:
//!    - VDI desktop: the desktop's assigned user. If the protocol authenticated someone else
//!      → `source.desktop-mismatch`; an authenticated user not in the inventory, or an
//!      unassigned desktop with no authenticated user → `user.unknown`. An unassigned desktop
//!      with an authenticated inventory user is that user's.
//!    - Farm server S: the user of a live console session on S (if the protocol authenticated
//!      a user, only consoles of that user's contractor count). None → `rdp.hop-no-console`
//!      for RDP, `user.unknown` for other protocols.
//!    - Only role `contractor` opens sessions: auditors, security staff and admins review
//!      sessions but may not open them → `user.unknown`.
//! 4. **zone**: the access path (the pool's, or for a hop the console session's) must be
//!    listed in `[zones]` for the target's zone → `zone.path`.
//! 5. **protocol**: RDP to a VM from a VDI desktop → `rdp.vdi-to-vm`; SSH to a VM →
//!    `ssh.vdi-to-vm`; a console of a physical server → `console.physical`; a console the VM
//!    lacks → `console.unavailable`.
//! 6. **contract**: a contract of the user's contractor naming the target (`contract.none`),
//!    in force today (`contract.expired`; also for not-yet-started contracts), with now inside
//!    one of its windows if it has any (`contract.window`). Dates and windows are local to the
//!    configured timezone; dates are inclusive; windows include their start minute and exclude
//!    their end minute.
//!
//! Then the allow rule: `rdp.physical`, `rdp.hop-from-console`, `console.vm` or
//! `ssh.physical`. Protocol comes before contract so that a structural mistake (RDP to a VM)
//! is reported as such at any hour, with advice on the right way in.
//!
//! Any request from a farm server rides on a console session and carries its id; if several
//! consoles are live on S the first (in `live` order, the authenticated user's own first) whose
//! evaluation allows is used, else the first one's denial is returned.

use std::fmt::Write as _;
use std::net::IpAddr;

use chrono::{DateTime, Datelike, Utc};

use crate::config::{Contract, Inventory, Role, Source, Target, TargetKind, User};
use crate::types::{Protocol, Rule, SessionId};

/// What a connection asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The protocol.
    pub protocol: Protocol,
    /// The connecting client's address.
    pub source: IpAddr,
    /// The target, by name or (transparent RDP) by address.
    pub target: TargetRef,
    /// The user the protocol authenticated, if it did.
    pub user: Option<String>,
}

/// How a request names its target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetRef {
    /// By target name.
    Name(String),
    /// By the target's address (transparent RDP knows only the original destination).
    Address(IpAddr),
}

impl std::fmt::Display for TargetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetRef::Name(n) => f.write_str(n),
            TargetRef::Address(a) => write!(f, "{a}"),
        }
    }
}

/// A live console session (SSH text console or VNC console) on `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConsole {
    /// The console session's id.
    pub session_id: SessionId,
    /// The target whose console it is.
    pub target: String,
    /// The user who opened it.
    pub user: String,
    /// That user's contractor.
    pub contractor: String,
    /// The access path the console was opened through.
    pub path: String,
}

/// Proof that [`evaluate`] allowed a request; proxies need one to dial upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorized {
    rule: Rule,
    reason: String,
    protocol: Protocol,
    source: IpAddr,
    user: String,
    contractor: String,
    target: String,
    path: String,
    console_session: Option<SessionId>,
    /// Private so only this module can build an `Authorized`.
    _proof: (),
}

impl Authorized {
    /// The allow rule.
    pub fn rule(&self) -> Rule {
        self.rule
    }
    /// Why, as a sentence.
    pub fn reason(&self) -> &str {
        &self.reason
    }
    /// The protocol allowed.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }
    /// The client address.
    pub fn source(&self) -> IpAddr {
        self.source
    }
    /// The user the session belongs to.
    pub fn user(&self) -> &str {
        &self.user
    }
    /// The user's contractor.
    pub fn contractor(&self) -> &str {
        &self.contractor
    }
    /// The resolved target name (also for transparent RDP).
    pub fn target(&self) -> &str {
        &self.target
    }
    /// The access path the session comes through.
    pub fn path(&self) -> &str {
        &self.path
    }
    /// The console session this one hops from, if any.
    pub fn console_session(&self) -> Option<SessionId> {
        self.console_session
    }
}

/// A refusal, with who and what as far as they were resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    rule: Rule,
    reason: String,
    user: Option<String>,
    contractor: Option<String>,
    target: Option<String>,
}

impl Denial {
    /// Builds a denial (proxies use it for `ssh.forwarding`, `ssh.file-transfer`).
    pub fn new(
        rule: Rule,
        reason: impl Into<String>,
        user: Option<String>,
        contractor: Option<String>,
        target: Option<String>,
    ) -> Denial {
        Denial {
            rule,
            reason: reason.into(),
            user,
            contractor,
            target,
        }
    }
    /// The deny rule.
    pub fn rule(&self) -> Rule {
        self.rule
    }
    /// Why, as a sentence saying what to do instead.
    pub fn reason(&self) -> &str {
        &self.reason
    }
    /// The user, if resolved.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }
    /// The contractor, if resolved.
    pub fn contractor(&self) -> Option<&str> {
        self.contractor.as_deref()
    }
    /// The target name (or the address asked for, if unknown).
    pub fn target(&self) -> Option<&str> {
        self.target.as_deref()
    }
}

/// The outcome of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The connection may go ahead.
    Allow(Authorized),
    /// The connection is refused.
    Deny(Denial),
}

impl Decision {
    /// The deciding rule.
    pub fn rule(&self) -> Rule {
        match self {
            Decision::Allow(a) => a.rule,
            Decision::Deny(d) => d.rule,
        }
    }
    /// The reason sentence.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow(a) => &a.reason,
            Decision::Deny(d) => &d.reason,
        }
    }
    /// The user, if resolved.
    pub fn user(&self) -> Option<&str> {
        match self {
            Decision::Allow(a) => Some(&a.user),
            Decision::Deny(d) => d.user(),
        }
    }
    /// The contractor, if resolved.
    pub fn contractor(&self) -> Option<&str> {
        match self {
            Decision::Allow(a) => Some(&a.contractor),
            Decision::Deny(d) => d.contractor(),
        }
    }
    /// The target, if known.
    pub fn target(&self) -> Option<&str> {
        match self {
            Decision::Allow(a) => Some(&a.target),
            Decision::Deny(d) => d.target(),
        }
    }
    /// True for [`Decision::Allow`].
    pub fn is_allow(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
    /// The authorization, if allowed.
    pub fn authorized(&self) -> Option<&Authorized> {
        match self {
            Decision::Allow(a) => Some(a),
            Decision::Deny(_) => None,
        }
    }
}

/// Decides a request. Pure: the same inputs give the same decision.
pub fn evaluate(
    inv: &Inventory,
    live: &[LiveConsole],
    req: &Request,
    now: DateTime<Utc>,
) -> Decision {
    let ctx = Ctx { inv, req, now };
    let source = inv.classify(req.source);
    let src_text = match source {
        Source::VdiDesktop(_) => format!("VDI desktop {}", req.source),
        Source::FarmServer(t) => format!("server {} ({})", t.name, req.source),
        Source::Unknown => req.source.to_string(),
    };
    let target_text = req.target.to_string();

    // 1. source
    if source == Source::Unknown {
        return ctx.deny_bare(
            Rule::SourceUnknown,
            &src_text,
            &target_text,
            format!(
                "{} is neither a VDI desktop in a vdi_pool network nor a known server; connect from your assigned VDI desktop",
                req.source
            ),
        );
    }

    // 2. target
    let target = match &req.target {
        TargetRef::Name(n) => inv.target(n),
        TargetRef::Address(a) => inv.target_by_address(*a),
    };
    let Some(target) = target else {
        let why = match &req.target {
            TargetRef::Name(n) => format!("there is no target named {n:?}"),
            TargetRef::Address(a) => format!("no target has the address {a}"),
        };
        return ctx.deny_bare(
            Rule::TargetUnknown,
            &src_text,
            &target_text,
            format!(
                "{why}; check the name, or ask an administrator to add the server to the inventory"
            ),
        );
    };

    match source {
        Source::VdiDesktop(pool) => {
            let user = match ctx.vdi_user(&src_text, target) {
                Ok(u) => u,
                Err(d) => return Decision::Deny(d),
            };
            ctx.decide(&src_text, target, user, &pool.path, None)
        }
        Source::FarmServer(server) => ctx.hop(live, &src_text, server, target),
        // Handled above; kept total without a panic.
        Source::Unknown => {
            ctx.deny_bare(Rule::SourceUnknown, &src_text, &target_text, String::new())
        }
    }
}

struct Ctx<'a> {
    inv: &'a Inventory,
    req: &'a Request,
    now: DateTime<Utc>,
}

enum ContractCheck<'a> {
    Ok(&'a Contract),
    None,
    Expired(&'a Contract, chrono::NaiveDate),
    Window(&'a Contract, chrono::NaiveDateTime),
}

impl<'a> Ctx<'a> {
    fn head(&self, src: &str, who: Option<(&str, &str)>, target: &str, verdict: &str) -> String {
        let mut s = String::with_capacity(160);
        let _ = write!(s, "{} from {src}", self.req.protocol.describe());
        if let Some((u, c)) = who {
            let _ = write!(s, " ({u}, {c})");
        }
        let _ = write!(s, " to {target} {verdict}: ");
        s
    }

    fn deny_bare(&self, rule: Rule, src: &str, target: &str, why: String) -> Decision {
        let mut reason = self.head(src, None, target, "denied");
        reason.push_str(&why);
        let t = (rule != Rule::TargetUnknown || matches!(self.req.target, TargetRef::Name(_)))
            .then(|| target.to_owned());
        Decision::Deny(Denial::new(rule, reason, None, None, t))
    }

    fn deny_user(&self, rule: Rule, src: &str, user: &User, target: &str, why: &str) -> Denial {
        let contractor = user.contractor.as_deref().unwrap_or("-");
        let who = user.contractor.as_deref().map(|c| (user.name.as_str(), c));
        let mut reason = self.head(src, who, target, "denied");
        reason.push_str(why);
        Denial::new(
            rule,
            reason,
            Some(user.name.clone()),
            (contractor != "-").then(|| contractor.to_owned()),
            Some(target.to_owned()),
        )
    }

    fn vdi_user(&self, src: &str, target: &Target) -> Result<&'a User, Denial> {
        let owner = self.inv.desktop_owner(self.req.source);
        let user = match (&self.req.user, owner) {
            (Some(name), owner) => {
                let Some(user) = self.inv.user(name) else {
                    let mut reason = self.head(src, None, &target.name, "denied");
                    let _ = write!(
                        reason,
                        "user {name:?} is not in the inventory; log in with your own account, or ask an administrator to add it"
                    );
                    return Err(Denial::new(
                        Rule::UserUnknown,
                        reason,
                        Some(name.clone()),
                        None,
                        Some(target.name.clone()),
                    ));
                };
                if let Some(owner) = owner
                    && owner.name != user.name
                {
                    return Err(self.deny_user(
                        Rule::SourceDesktopMismatch,
                        src,
                        user,
                        &target.name,
                        &format!(
                            "VDI desktop {} is assigned to {}, not to {}; log in from your own assigned desktop",
                            self.req.source, owner.name, user.name
                        ),
                    ));
                }
                user
            }
            (None, Some(owner)) => owner,
            (None, None) => {
                let mut reason = self.head(src, None, &target.name, "denied");
                let _ = write!(
                    reason,
                    "VDI desktop {} is not assigned to any user and no user logged in; use your assigned desktop or log in with your own account",
                    self.req.source
                );
                return Err(Denial::new(
                    Rule::UserUnknown,
                    reason,
                    None,
                    None,
                    Some(target.name.clone()),
                ));
            }
        };
        self.check_role(src, user, &target.name)?;
        Ok(user)
    }

    fn check_role(&self, src: &str, user: &User, target: &str) -> Result<(), Denial> {
        if user.role == Role::Contractor && user.contractor.is_some() {
            return Ok(());
        }
        Err(self.deny_user(
            Rule::UserUnknown,
            src,
            user,
            target,
            &format!(
                "{} has the role {}, and only contractor users may open sessions; review sessions in the web UI instead",
                user.name, user.role
            ),
        ))
    }

    fn hop(
        &self,
        live: &[LiveConsole],
        src: &str,
        server: &Target,
        target: &'a Target,
    ) -> Decision {
        let authed = match &self.req.user {
            Some(name) => match self.inv.user(name) {
                Some(u) => {
                    if let Err(d) = self.check_role(src, u, &target.name) {
                        return Decision::Deny(d);
                    }
                    Some(u)
                }
                None => {
                    let mut reason = self.head(src, None, &target.name, "denied");
                    let _ = write!(
                        reason,
                        "user {name:?} is not in the inventory; log in with your own account, or ask an administrator to add it"
                    );
                    return Decision::Deny(Denial::new(
                        Rule::UserUnknown,
                        reason,
                        Some(name.clone()),
                        None,
                        Some(target.name.clone()),
                    ));
                }
            },
            None => None,
        };
        let mut consoles: Vec<&LiveConsole> = live
            .iter()
            .filter(|c| c.target == server.name)
            .filter(|c| {
                authed.is_none_or(|u| u.contractor.as_deref() == Some(c.contractor.as_str()))
            })
            .collect();
        if let Some(u) = authed {
            // The authenticated user's own console first.
            consoles.sort_by_key(|c| c.user != u.name);
        }
        let mut first_denial = None;
        for console in consoles {
            let user = match authed {
                Some(u) => u,
                None => match self.inv.user(&console.user) {
                    Some(u) => u,
                    None => continue,
                },
            };
            if let Err(d) = self.check_role(src, user, &target.name) {
                first_denial.get_or_insert(Decision::Deny(d));
                continue;
            }
            let d = self.decide(src, target, user, &console.path, Some((console, server)));
            if d.is_allow() {
                return d;
            }
            first_denial.get_or_insert(d);
        }
        if let Some(d) = first_denial {
            return d;
        }
        let whose = authed
            .and_then(|u| u.contractor.as_deref())
            .map(|c| format!(" by a user of {c}"))
            .unwrap_or_default();
        let rule = if self.req.protocol == Protocol::Rdp {
            Rule::RdpHopNoConsole
        } else {
            Rule::UserUnknown
        };
        let who = authed.and_then(|u| u.contractor.as_deref().map(|c| (u.name.as_str(), c)));
        let mut reason = self.head(src, who, &target.name, "denied");
        let _ = write!(
            reason,
            "no console session{whose} is live on {}; open {}'s console first, then connect from there",
            server.name, server.name
        );
        Decision::Deny(Denial::new(
            rule,
            reason,
            authed.map(|u| u.name.clone()),
            authed.and_then(|u| u.contractor.clone()),
            Some(target.name.clone()),
        ))
    }

    /// Zone, protocol and contract checks once user and path are known.
    fn decide(
        &self,
        src: &str,
        target: &Target,
        user: &User,
        path: &str,
        hop: Option<(&LiveConsole, &Target)>,
    ) -> Decision {
        let contractor = user.contractor.as_deref().unwrap_or_default();
        let deny = |rule: Rule, why: &str| {
            Decision::Deny(self.deny_user(rule, src, user, &target.name, why))
        };

        // 4. zone
        if !self.inv.zone_allows(&target.zone, path) {
            let allowed = self
                .inv
                .zones()
                .get(&target.zone)
                .filter(|p| !p.is_empty())
                .map_or_else(|| "no access path".to_owned(), |p| p.join(" or "));
            let via = match hop {
                Some((c, s)) => format!(
                    "the {path} access path (of console session {} on {}) may not reach it",
                    c.session_id, s.name
                ),
                None => format!("the {path} access path may not reach it"),
            };
            return deny(
                Rule::ZonePath,
                &format!(
                    "{} is in zone {} and {via}; only {allowed} may, so connect from a VDI desktop on that path",
                    target.name, target.zone
                ),
            );
        }

        // 5. protocol
        let is_vm = target.kind == TargetKind::Vm;
        let allow_rule = match self.req.protocol {
            Protocol::Rdp if is_vm && hop.is_none() => {
                return deny(
                    Rule::RdpVdiToVm,
                    &format!(
                        "{} is a virtual machine; use its console, or RDP from a server reached through its console",
                        target.name
                    ),
                );
            }
            Protocol::Rdp if hop.is_some() => Rule::RdpHopFromConsole,
            Protocol::Rdp => Rule::RdpPhysical,
            Protocol::Ssh if is_vm => {
                return deny(
                    Rule::SshVdiToVm,
                    &format!(
                        "{} is a virtual machine, and virtual machines are reached only through their console; open its console instead (ssh {}+{}@bastion)",
                        target.name, user.name, target.name
                    ),
                );
            }
            Protocol::Ssh => Rule::SshPhysical,
            Protocol::ConsoleSerial | Protocol::ConsoleVnc if !is_vm => {
                return deny(
                    Rule::ConsolePhysical,
                    &format!(
                        "{} is a physical server and has no hypervisor console; use RDP or SSH to it directly",
                        target.name
                    ),
                );
            }
            Protocol::ConsoleSerial if !target.has_text_console() => {
                return deny(
                    Rule::ConsoleUnavailable,
                    &format!(
                        "{} has no text console configured; use its VNC console (ssh {}@bastion console {})",
                        target.name, user.name, target.name
                    ),
                );
            }
            Protocol::ConsoleVnc if target.vnc_console.is_none() => {
                return deny(
                    Rule::ConsoleUnavailable,
                    &format!(
                        "{} has no VNC console configured; use its text console (ssh {}+{}@bastion)",
                        target.name, user.name, target.name
                    ),
                );
            }
            _ => Rule::ConsoleVm,
        };

        // 6. contract
        let tz = self.inv.timezone();
        let contract = match self.contract(contractor, target) {
            ContractCheck::Ok(c) => c,
            ContractCheck::None => {
                return deny(
                    Rule::ContractNone,
                    &format!(
                        "{contractor} has no contract covering {}; ask for {} to be added to {contractor}'s contract",
                        target.name, target.name
                    ),
                );
            }
            ContractCheck::Expired(c, today) => {
                let state = if today < c.valid_from {
                    "is not yet in force"
                } else {
                    "has expired"
                };
                return deny(
                    Rule::ContractExpired,
                    &format!(
                        "{contractor}'s contract for {} runs from {} to {} and {state} on {today} ({tz}); ask for the contract to be renewed or corrected",
                        target.name, c.valid_from, c.valid_until
                    ),
                );
            }
            ContractCheck::Window(c, local) => {
                let windows: Vec<String> = c.windows.iter().map(ToString::to_string).collect();
                return deny(
                    Rule::ContractWindow,
                    &format!(
                        "{contractor}'s contract for {} allows access only {} ({tz}), and it is {} {}; connect again inside the window",
                        target.name,
                        windows.join(", "),
                        local.weekday(),
                        local.format("%Y-%m-%d %H:%M")
                    ),
                );
            }
        };

        let why = match (allow_rule, hop) {
            (Rule::RdpHopFromConsole, Some((c, s))) => format!(
                "it rides on {}'s live console session {} on {}, and {contractor}'s contract covers {} until {}",
                c.user, c.session_id, s.name, target.name, contract.valid_until
            ),
            (Rule::RdpPhysical, _) => format!(
                "{} is a physical server and {contractor}'s contract covers it until {}",
                target.name, contract.valid_until
            ),
            (Rule::SshPhysical, _) => format!(
                "{} is a physical server and {contractor}'s contract covers it until {}",
                target.name, contract.valid_until
            ),
            _ => format!(
                "{} is a virtual machine reached through its hypervisor console, and {contractor}'s contract covers it until {}",
                target.name, contract.valid_until
            ),
        };
        let mut reason = self.head(src, Some((&user.name, contractor)), &target.name, "allowed");
        reason.push_str(&why);
        Decision::Allow(Authorized {
            rule: allow_rule,
            reason,
            protocol: self.req.protocol,
            source: self.req.source,
            user: user.name.clone(),
            contractor: contractor.to_owned(),
            target: target.name.clone(),
            path: path.to_owned(),
            console_session: hop.map(|(c, _)| c.session_id),
            _proof: (),
        })
    }

    /// The best contract: in force and open beats in force but closed beats not in force.
    fn contract(&self, contractor: &str, target: &Target) -> ContractCheck<'a> {
        let local = self.now.with_timezone(&self.inv.timezone()).naive_local();
        let today = local.date();
        let mut best = ContractCheck::None;
        for c in self.inv.contracts_for(contractor, &target.name) {
            if today < c.valid_from || today > c.valid_until {
                if matches!(best, ContractCheck::None) {
                    best = ContractCheck::Expired(c, today);
                }
                continue;
            }
            if c.windows.is_empty() || c.windows.iter().any(|w| w.contains(local)) {
                return ContractCheck::Ok(c);
            }
            best = ContractCheck::Window(c, local);
        }
        best
    }
}
