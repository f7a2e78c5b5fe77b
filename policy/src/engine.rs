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
use crate::reasons::Explanation;
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
    explanation: Explanation,
    protocol: Protocol,
    source: IpAddr,
    user: String,
    contractor: String,
    target: String,
    path: String,
    console_session: Option<SessionId>,
    supervised: bool,
    /// Private so only this module can build an `Authorized`.
    _proof: (),
}

impl Authorized {
    /// Four eyes: the target (or the contract that allowed it) is `supervised`, so the
    /// session may run only while security staff watch it.
    pub fn supervised(&self) -> bool {
        self.supervised
    }
    /// The allow rule.
    pub fn rule(&self) -> Rule {
        self.rule
    }
    /// Why, as a sentence.
    pub fn reason(&self) -> &str {
        &self.reason
    }
    /// Why, as a template and its parameters (for other languages).
    pub fn explanation(&self) -> &Explanation {
        &self.explanation
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
    /// Boxed: a denial travels in `Result`s, and most paths never read this.
    explanation: Option<Box<Explanation>>,
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
            explanation: None,
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
    /// Why, as a template and its parameters, when the denial was built from one (the
    /// policy engine's always are; a proxy's may not be, and is then read by its rule).
    pub fn explanation(&self) -> Option<&Explanation> {
        self.explanation.as_deref()
    }
    /// This denial with `explanation` as the template of its reason.
    pub fn with_explanation(mut self, explanation: Explanation) -> Denial {
        self.explanation = Some(Box::new(explanation));
        self
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
    /// The reason as a template and its parameters, when there is one.
    pub fn explanation(&self) -> Option<&Explanation> {
        match self {
            Decision::Allow(a) => Some(&a.explanation),
            Decision::Deny(d) => d.explanation(),
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
        Source::FarmServer(t) => format!("server {} at {}", t.name, req.source),
        Source::Unknown => req.source.to_string(),
    };
    let target_text = req.target.to_string();

    // 0. The web UI's login reaches no target; its rows are only front-door refusals.
    if req.protocol == Protocol::Web {
        return ctx.deny_bare(
            Rule::TargetUnknown,
            &src_text,
            &target_text,
            Explanation::new("web.no-target", []),
        );
    }

    // 1. source
    if source == Source::Unknown {
        return ctx.deny_bare(
            Rule::SourceUnknown,
            &src_text,
            &target_text,
            Explanation::new("source.unknown", [("source", req.source.to_string())]),
        );
    }

    // 2. target
    let target = match &req.target {
        TargetRef::Name(n) => inv.target(n),
        TargetRef::Address(a) => inv.target_by_address(*a),
    };
    let Some(target) = target else {
        let why = match &req.target {
            TargetRef::Name(n) => Explanation::new("target.unknown.name", [("name", n.clone())]),
            TargetRef::Address(a) => {
                Explanation::new("target.unknown.address", [("address", a.to_string())])
            }
        };
        return ctx.deny_bare(Rule::TargetUnknown, &src_text, &target_text, why);
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
        Source::Unknown => ctx.deny_bare(
            Rule::SourceUnknown,
            &src_text,
            &target_text,
            Explanation::new("source.unknown", [("source", req.source.to_string())]),
        ),
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

    fn deny_bare(&self, rule: Rule, src: &str, target: &str, why: Explanation) -> Decision {
        let mut reason = self.head(src, None, target, "denied");
        reason.push_str(&why.english());
        let t = (rule != Rule::TargetUnknown || matches!(self.req.target, TargetRef::Name(_)))
            .then(|| target.to_owned());
        Decision::Deny(Denial::new(rule, reason, None, None, t).with_explanation(why))
    }

    fn deny_user(
        &self,
        rule: Rule,
        src: &str,
        user: &User,
        target: &str,
        why: Explanation,
    ) -> Denial {
        let who = user.contractor.as_deref().map(|c| (user.name.as_str(), c));
        let mut reason = self.head(src, who, target, "denied");
        reason.push_str(&why.english());
        Denial::new(
            rule,
            reason,
            Some(user.name.clone()),
            user.contractor.clone(),
            Some(target.to_owned()),
        )
        .with_explanation(why)
    }

    /// The denial of a user name the inventory does not have.
    fn deny_unknown_user(&self, src: &str, name: &str, target: &str) -> Denial {
        let why = Explanation::new("user.unknown.name", [("name", name.to_owned())]);
        let mut reason = self.head(src, None, target, "denied");
        reason.push_str(&why.english());
        Denial::new(
            Rule::UserUnknown,
            reason,
            Some(name.to_owned()),
            None,
            Some(target.to_owned()),
        )
        .with_explanation(why)
    }

    fn vdi_user(&self, src: &str, target: &Target) -> Result<&'a User, Denial> {
        let owner = self.inv.desktop_owner(self.req.source);
        let user = match (&self.req.user, owner) {
            (Some(name), owner) => {
                let Some(user) = self.inv.user(name) else {
                    return Err(self.deny_unknown_user(src, name, &target.name));
                };
                if let Some(owner) = owner
                    && owner.name != user.name
                {
                    return Err(self.deny_user(
                        Rule::SourceDesktopMismatch,
                        src,
                        user,
                        &target.name,
                        Explanation::new(
                            "source.desktop-mismatch",
                            [
                                ("desktop", self.req.source.to_string()),
                                ("owner", owner.name.clone()),
                                ("user", user.name.clone()),
                            ],
                        ),
                    ));
                }
                user
            }
            (None, Some(owner)) => owner,
            (None, None) => {
                let why = Explanation::new(
                    "user.unknown.unassigned",
                    [("desktop", self.req.source.to_string())],
                );
                let mut reason = self.head(src, None, &target.name, "denied");
                reason.push_str(&why.english());
                return Err(Denial::new(
                    Rule::UserUnknown,
                    reason,
                    None,
                    None,
                    Some(target.name.clone()),
                )
                .with_explanation(why));
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
            Explanation::new(
                "user.unknown.role",
                [("user", user.name.clone()), ("role", user.role.to_string())],
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
                    return Decision::Deny(self.deny_unknown_user(src, name, &target.name));
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
        let why = match authed.and_then(|u| u.contractor.as_deref()) {
            Some(c) => Explanation::new(
                "rdp.hop-no-console.contractor",
                [
                    ("contractor", c.to_owned()),
                    ("server", server.name.clone()),
                ],
            ),
            None => Explanation::new("rdp.hop-no-console", [("server", server.name.clone())]),
        };
        let rule = if self.req.protocol == Protocol::Rdp {
            Rule::RdpHopNoConsole
        } else {
            Rule::UserUnknown
        };
        let who = authed.and_then(|u| u.contractor.as_deref().map(|c| (u.name.as_str(), c)));
        let mut reason = self.head(src, who, &target.name, "denied");
        reason.push_str(&why.english());
        Decision::Deny(
            Denial::new(
                rule,
                reason,
                authed.map(|u| u.name.clone()),
                authed.and_then(|u| u.contractor.clone()),
                Some(target.name.clone()),
            )
            .with_explanation(why),
        )
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
        let deny = |rule: Rule, why: Explanation| {
            Decision::Deny(self.deny_user(rule, src, user, &target.name, why))
        };
        let name = || ("target", target.name.clone());

        // 4. zone
        if !self.inv.zone_allows(&target.zone, path) {
            let paths = self
                .inv
                .zones()
                .get(&target.zone)
                .filter(|p| !p.is_empty())
                .map(|p| p.join(" or "));
            let mut params = vec![
                name(),
                ("zone", target.zone.clone()),
                ("path", path.to_owned()),
            ];
            if let Some((c, s)) = hop {
                params.push(("console", c.session_id.to_string()));
                params.push(("server", s.name.clone()));
            }
            let id = match (hop.is_some(), &paths) {
                (false, Some(_)) => "zone.path",
                (true, Some(_)) => "zone.path.hop",
                (false, None) => "zone.path.closed",
                (true, None) => "zone.path.hop.closed",
            };
            if let Some(p) = paths {
                params.push(("paths", p));
            }
            return deny(Rule::ZonePath, Explanation::new(id, params));
        }

        // 5. protocol
        let is_vm = target.kind == TargetKind::Vm;
        let allow_rule = match self.req.protocol {
            Protocol::Rdp if is_vm && hop.is_none() => {
                return deny(
                    Rule::RdpVdiToVm,
                    Explanation::new("rdp.vdi-to-vm", [name()]),
                );
            }
            Protocol::Rdp if hop.is_some() => Rule::RdpHopFromConsole,
            Protocol::Rdp => Rule::RdpPhysical,
            Protocol::Ssh if is_vm => {
                let how = if target.has_text_console() {
                    format!("ssh {}+{}@bastion", user.name, target.name)
                } else {
                    format!("ssh {}@bastion console {}", user.name, target.name)
                };
                return deny(
                    Rule::SshVdiToVm,
                    Explanation::new("ssh.vdi-to-vm", [name(), ("how", how)]),
                );
            }
            Protocol::Ssh => Rule::SshPhysical,
            Protocol::ConsoleSerial | Protocol::ConsoleVnc if !is_vm => {
                return deny(
                    Rule::ConsolePhysical,
                    Explanation::new("console.physical", [name()]),
                );
            }
            Protocol::ConsoleSerial if !target.has_text_console() => {
                let how = format!("ssh {}@bastion console {}", user.name, target.name);
                return deny(
                    Rule::ConsoleUnavailable,
                    Explanation::new("console.unavailable.text", [name(), ("how", how)]),
                );
            }
            Protocol::ConsoleVnc if target.vnc_console.is_none() => {
                let how = format!("ssh {}+{}@bastion", user.name, target.name);
                return deny(
                    Rule::ConsoleUnavailable,
                    Explanation::new("console.unavailable.vnc", [name(), ("how", how)]),
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
                    Explanation::new(
                        "contract.none",
                        [name(), ("contractor", contractor.to_owned())],
                    ),
                );
            }
            ContractCheck::Expired(c, today) => {
                let id = if today < c.valid_from {
                    "contract.expired.not-yet"
                } else {
                    "contract.expired"
                };
                let why = Explanation::new(
                    id,
                    [
                        name(),
                        ("contractor", contractor.to_owned()),
                        ("from", c.valid_from.to_string()),
                        ("until", c.valid_until.to_string()),
                        ("today", today.to_string()),
                        ("tz", tz.to_string()),
                    ],
                );
                return deny(Rule::ContractExpired, why);
            }
            ContractCheck::Window(c, local) => {
                let windows: Vec<String> = c.windows.iter().map(ToString::to_string).collect();
                return deny(
                    Rule::ContractWindow,
                    Explanation::new(
                        "contract.window",
                        [
                            name(),
                            ("contractor", contractor.to_owned()),
                            ("windows", windows.join(", ")),
                            ("tz", tz.to_string()),
                            ("weekday", local.weekday().to_string()),
                            ("now", local.format("%Y-%m-%d %H:%M").to_string()),
                        ],
                    ),
                );
            }
        };

        let mut params = vec![
            name(),
            ("contractor", contractor.to_owned()),
            ("until", contract.valid_until.to_string()),
        ];
        let id = match (allow_rule, hop) {
            (Rule::RdpHopFromConsole, Some((c, s))) => {
                params.push(("console_user", c.user.clone()));
                params.push(("console", c.session_id.to_string()));
                params.push(("server", s.name.clone()));
                "rdp.hop-from-console"
            }
            (Rule::RdpPhysical | Rule::SshPhysical, _) => "physical",
            _ => "console.vm",
        };
        let why = Explanation::new(id, params);
        let mut reason = self.head(src, Some((&user.name, contractor)), &target.name, "allowed");
        reason.push_str(&why.english());
        Decision::Allow(Authorized {
            rule: allow_rule,
            reason,
            explanation: why,
            protocol: self.req.protocol,
            source: self.req.source,
            user: user.name.clone(),
            contractor: contractor.to_owned(),
            target: target.name.clone(),
            path: path.to_owned(),
            console_session: hop.map(|(c, _)| c.session_id),
            supervised: target.supervised || contract.supervised,
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const FIXTURE: &str = r#"
timezone = "Asia/Tokyo"

[[vdi_pool]]
name = "vdi-internet"
path = "internet-vpn"
networks = ["127.0.10.0/24"]

[[vdi_pool]]
name = "vdi-ipvpn"
path = "ip-vpn"
networks = ["127.0.11.0/24"]

[zones]
business = ["internet-vpn", "ip-vpn"]
mynumber = ["ip-vpn"]
isolated = []

[[contractor]]
id = "acme"
name = "ACME"

[[contractor]]
id = "beta"
name = "Beta"

[[user]]
name = "tanaka"
contractor = "acme"
role = "contractor"
desktops = ["127.0.10.11", "127.0.11.11"]

[[user]]
name = "kato"
contractor = "acme"
role = "contractor"

[[user]]
name = "sato"
contractor = "beta"
role = "contractor"
desktops = ["127.0.10.12"]

[[user]]
name = "suzuki"
role = "auditor"

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
serial_console = "127.0.0.1:14501"

[[target]]
name = "app02"
address = "127.0.20.12"
kind = "vm"
zone = "business"
hypervisor = "kvm01"
vnc_console = "127.0.0.1:15902"

[[target]]
name = "txt03"
address = "127.0.20.13"
kind = "vm"
zone = "business"
hypervisor = "kvm01"
ssh_console = "127.0.0.1:22"
console_command = "virsh console {vm}"

[[target]]
name = "db-phys01"
address = "127.0.20.21"
kind = "physical"
zone = "mynumber"

[[target]]
name = "file-phys02"
address = "127.0.20.22"
kind = "physical"
zone = "business"

[[target]]
name = "old-phys03"
address = "127.0.20.23"
kind = "physical"
zone = "business"

[[target]]
name = "beta-phys04"
address = "127.0.20.24"
kind = "physical"
zone = "business"

[[target]]
name = "iso-phys05"
address = "127.0.20.25"
kind = "physical"
zone = "isolated"

[[contract]]
contractor = "acme"
targets = ["web01", "app02", "txt03", "db-phys01", "file-phys02", "iso-phys05"]
valid_from = "2026-04-01"
valid_until = "2027-03-31"
windows = ["mon-fri 08:30-20:00"]

[[contract]]
contractor = "acme"
targets = ["old-phys03"]
valid_from = "2025-04-01"
valid_until = "2026-03-31"

[[contract]]
contractor = "beta"
targets = ["beta-phys04", "web01"]
valid_from = "2026-04-01"
valid_until = "2027-03-31"
"#;

    fn inv() -> Inventory {
        Inventory::from_toml(FIXTURE, "fixture.toml").unwrap()
    }

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Wednesday 2026-11-25 10:00 in Tokyo.
    const WED: &str = "2026-11-25T01:00:00Z";

    fn sid(n: u8) -> SessionId {
        SessionId::from_uuid(uuid::Uuid::from_bytes([n; 16]))
    }

    fn console(n: u8, target: &str, user: &str, contractor: &str, path: &str) -> LiveConsole {
        LiveConsole {
            session_id: sid(n),
            target: target.into(),
            user: user.into(),
            contractor: contractor.into(),
            path: path.into(),
        }
    }

    fn req(p: Protocol, src: &str, target: &str, user: Option<&str>) -> Request {
        Request {
            protocol: p,
            source: src.parse().unwrap(),
            target: match target.parse::<IpAddr>() {
                Ok(a) => TargetRef::Address(a),
                Err(_) => TargetRef::Name(target.into()),
            },
            user: user.map(str::to_owned),
        }
    }

    use Protocol::{ConsoleSerial as Ser, ConsoleVnc as Vnc, Rdp, Ssh};

    struct Case {
        name: &'static str,
        proto: Protocol,
        src: &'static str,
        target: &'static str,
        user: Option<&'static str>,
        at: &'static str,
        live: Vec<LiveConsole>,
        rule: Rule,
    }

    fn case(
        name: &'static str,
        proto: Protocol,
        src: &'static str,
        target: &'static str,
        user: Option<&'static str>,
        at: &'static str,
        rule: Rule,
    ) -> Case {
        Case {
            name,
            proto,
            src,
            target,
            user,
            at,
            live: Vec::new(),
            rule,
        }
    }

    fn with_live(mut c: Case, live: Vec<LiveConsole>) -> Case {
        c.live = live;
        c
    }

    #[test]
    fn table() {
        let inv = inv();
        let tanaka_ipvpn = || console(1, "web01", "tanaka", "acme", "ip-vpn");
        let tanaka_inet = || console(2, "web01", "tanaka", "acme", "internet-vpn");
        let sato_inet = || console(3, "web01", "sato", "beta", "internet-vpn");
        let cases = vec![
            // source
            case(
                "unknown source",
                Rdp,
                "192.0.2.1",
                "db-phys01",
                None,
                WED,
                Rule::SourceUnknown,
            ),
            // target
            case(
                "unknown target name",
                Rdp,
                "127.0.10.11",
                "nope",
                None,
                WED,
                Rule::TargetUnknown,
            ),
            case(
                "unknown target address",
                Rdp,
                "127.0.10.11",
                "127.0.20.99",
                None,
                WED,
                Rule::TargetUnknown,
            ),
            case(
                "transparent rdp by address",
                Rdp,
                "127.0.11.11",
                "127.0.20.21",
                None,
                WED,
                Rule::RdpPhysical,
            ),
            // user
            case(
                "unassigned desktop, nobody",
                Rdp,
                "127.0.10.99",
                "file-phys02",
                None,
                WED,
                Rule::UserUnknown,
            ),
            case(
                "unassigned desktop, authenticated",
                Rdp,
                "127.0.10.99",
                "file-phys02",
                Some("kato"),
                WED,
                Rule::RdpPhysical,
            ),
            case(
                "user not in inventory",
                Rdp,
                "127.0.10.11",
                "file-phys02",
                Some("mallory"),
                WED,
                Rule::UserUnknown,
            ),
            case(
                "auditor may not connect",
                Rdp,
                "127.0.10.99",
                "file-phys02",
                Some("suzuki"),
                WED,
                Rule::UserUnknown,
            ),
            case(
                "someone else's desktop",
                Rdp,
                "127.0.10.11",
                "file-phys02",
                Some("sato"),
                WED,
                Rule::SourceDesktopMismatch,
            ),
            case(
                "own desktop, authenticated",
                Rdp,
                "127.0.10.11",
                "file-phys02",
                Some("tanaka"),
                WED,
                Rule::RdpPhysical,
            ),
            // zone
            case(
                "mynumber from internet-vpn",
                Rdp,
                "127.0.10.11",
                "db-phys01",
                None,
                WED,
                Rule::ZonePath,
            ),
            case(
                "mynumber from ip-vpn",
                Rdp,
                "127.0.11.11",
                "db-phys01",
                None,
                WED,
                Rule::RdpPhysical,
            ),
            case(
                "zone nobody reaches",
                Rdp,
                "127.0.11.11",
                "iso-phys05",
                None,
                WED,
                Rule::ZonePath,
            ),
            case(
                "zone before protocol",
                Ssh,
                "127.0.10.11",
                "db-phys01",
                None,
                WED,
                Rule::ZonePath,
            ),
            // protocol
            case(
                "rdp vdi to vm",
                Rdp,
                "127.0.10.11",
                "web01",
                None,
                WED,
                Rule::RdpVdiToVm,
            ),
            case(
                "rdp vdi to vm outside window",
                Rdp,
                "127.0.10.11",
                "web01",
                None,
                "2026-11-28T01:00:00Z",
                Rule::RdpVdiToVm,
            ),
            case(
                "ssh to vm",
                Ssh,
                "127.0.10.11",
                "web01",
                None,
                WED,
                Rule::SshVdiToVm,
            ),
            case(
                "ssh to physical",
                Ssh,
                "127.0.10.11",
                "file-phys02",
                None,
                WED,
                Rule::SshPhysical,
            ),
            case(
                "serial console of vm",
                Ser,
                "127.0.10.11",
                "web01",
                None,
                WED,
                Rule::ConsoleVm,
            ),
            case(
                "ssh text console of vm",
                Ser,
                "127.0.10.11",
                "txt03",
                None,
                WED,
                Rule::ConsoleVm,
            ),
            case(
                "vnc console of vm",
                Vnc,
                "127.0.10.11",
                "app02",
                None,
                WED,
                Rule::ConsoleVm,
            ),
            case(
                "serial console missing",
                Ser,
                "127.0.10.11",
                "app02",
                None,
                WED,
                Rule::ConsoleUnavailable,
            ),
            case(
                "vnc console missing",
                Vnc,
                "127.0.10.11",
                "txt03",
                None,
                WED,
                Rule::ConsoleUnavailable,
            ),
            case(
                "console of physical",
                Ser,
                "127.0.11.11",
                "db-phys01",
                None,
                WED,
                Rule::ConsolePhysical,
            ),
            case(
                "vnc console of physical",
                Vnc,
                "127.0.10.11",
                "file-phys02",
                None,
                WED,
                Rule::ConsolePhysical,
            ),
            // contract
            case(
                "no contract",
                Rdp,
                "127.0.10.11",
                "beta-phys04",
                None,
                WED,
                Rule::ContractNone,
            ),
            case(
                "other contractor's server",
                Rdp,
                "127.0.10.12",
                "beta-phys04",
                None,
                WED,
                Rule::RdpPhysical,
            ),
            case(
                "expired contract",
                Rdp,
                "127.0.10.11",
                "old-phys03",
                None,
                WED,
                Rule::ContractExpired,
            ),
            case(
                "old contract's last day, Tokyo",
                Rdp,
                "127.0.10.11",
                "old-phys03",
                None,
                "2026-03-31T14:59:00Z",
                Rule::RdpPhysical,
            ),
            case(
                "day after old contract in Tokyo, still last day in UTC",
                Rdp,
                "127.0.10.11",
                "old-phys03",
                None,
                "2026-03-31T15:00:00Z",
                Rule::ContractExpired,
            ),
            case(
                "last day 23:59 Tokyo",
                Rdp,
                "127.0.10.12",
                "beta-phys04",
                None,
                "2027-03-31T14:59:00Z",
                Rule::RdpPhysical,
            ),
            case(
                "next day 00:00 Tokyo (UTC still 31st)",
                Rdp,
                "127.0.10.12",
                "beta-phys04",
                None,
                "2027-03-31T15:00:00Z",
                Rule::ContractExpired,
            ),
            case(
                "first day 00:00 Tokyo (UTC still day before)",
                Rdp,
                "127.0.10.12",
                "beta-phys04",
                None,
                "2026-03-31T15:00:00Z",
                Rule::RdpPhysical,
            ),
            case(
                "day before first day",
                Rdp,
                "127.0.10.12",
                "beta-phys04",
                None,
                "2026-03-31T14:59:00Z",
                Rule::ContractExpired,
            ),
            case(
                "window start minute",
                Rdp,
                "127.0.10.11",
                "file-phys02",
                None,
                "2026-11-24T23:30:00Z",
                Rule::RdpPhysical,
            ),
            case(
                "minute before window",
                Rdp,
                "127.0.10.11",
                "file-phys02",
                None,
                "2026-11-24T23:29:00Z",
                Rule::ContractWindow,
            ),
            case(
                "last minute of window",
                Rdp,
                "127.0.10.11",
                "file-phys02",
                None,
                "2026-11-25T10:59:00Z",
                Rule::RdpPhysical,
            ),
            case(
                "window end minute",
                Rdp,
                "127.0.10.11",
                "file-phys02",
                None,
                "2026-11-25T11:00:00Z",
                Rule::ContractWindow,
            ),
            case(
                "friday in utc, saturday in tokyo",
                Rdp,
                "127.0.10.11",
                "file-phys02",
                None,
                "2026-11-27T16:00:00Z",
                Rule::ContractWindow,
            ),
            case(
                "friday in tokyo",
                Rdp,
                "127.0.10.11",
                "file-phys02",
                None,
                "2026-11-27T02:00:00Z",
                Rule::RdpPhysical,
            ),
            case(
                "console outside window",
                Vnc,
                "127.0.10.11",
                "web01",
                None,
                "2026-11-28T01:00:00Z",
                Rule::ContractWindow,
            ),
            // hops
            case(
                "rdp from server without console",
                Rdp,
                "127.0.20.11",
                "file-phys02",
                None,
                WED,
                Rule::RdpHopNoConsole,
            ),
            case(
                "ssh from server without console",
                Ssh,
                "127.0.20.11",
                "file-phys02",
                None,
                WED,
                Rule::UserUnknown,
            ),
            with_live(
                case(
                    "hop to physical",
                    Rdp,
                    "127.0.20.11",
                    "file-phys02",
                    None,
                    WED,
                    Rule::RdpHopFromConsole,
                ),
                vec![tanaka_inet()],
            ),
            with_live(
                case(
                    "hop to vm",
                    Rdp,
                    "127.0.20.11",
                    "app02",
                    None,
                    WED,
                    Rule::RdpHopFromConsole,
                ),
                vec![tanaka_inet()],
            ),
            with_live(
                case(
                    "hop by transparent address",
                    Rdp,
                    "127.0.20.11",
                    "127.0.20.12",
                    None,
                    WED,
                    Rule::RdpHopFromConsole,
                ),
                vec![tanaka_inet()],
            ),
            with_live(
                case(
                    "console on another server",
                    Rdp,
                    "127.0.20.12",
                    "file-phys02",
                    None,
                    WED,
                    Rule::RdpHopNoConsole,
                ),
                vec![tanaka_inet()],
            ),
            with_live(
                case(
                    "hop path from console: internet-vpn to mynumber",
                    Rdp,
                    "127.0.20.11",
                    "db-phys01",
                    None,
                    WED,
                    Rule::ZonePath,
                ),
                vec![tanaka_inet()],
            ),
            with_live(
                case(
                    "hop path from console: ip-vpn to mynumber",
                    Rdp,
                    "127.0.20.11",
                    "db-phys01",
                    None,
                    WED,
                    Rule::RdpHopFromConsole,
                ),
                vec![tanaka_ipvpn()],
            ),
            with_live(
                case(
                    "hop contract must cover target",
                    Rdp,
                    "127.0.20.11",
                    "file-phys02",
                    None,
                    WED,
                    Rule::ContractNone,
                ),
                vec![sato_inet()],
            ),
            with_live(
                case(
                    "hop other contractor's console",
                    Rdp,
                    "127.0.20.11",
                    "file-phys02",
                    Some("tanaka"),
                    WED,
                    Rule::RdpHopNoConsole,
                ),
                vec![sato_inet()],
            ),
            with_live(
                case(
                    "hop same contractor's console",
                    Rdp,
                    "127.0.20.11",
                    "file-phys02",
                    Some("kato"),
                    WED,
                    Rule::RdpHopFromConsole,
                ),
                vec![sato_inet(), tanaka_inet()],
            ),
            with_live(
                case(
                    "hop picks the console that allows",
                    Rdp,
                    "127.0.20.11",
                    "beta-phys04",
                    None,
                    WED,
                    Rule::RdpHopFromConsole,
                ),
                vec![tanaka_inet(), sato_inet()],
            ),
            with_live(
                case(
                    "hop outside window",
                    Rdp,
                    "127.0.20.11",
                    "file-phys02",
                    None,
                    "2026-11-28T01:00:00Z",
                    Rule::ContractWindow,
                ),
                vec![tanaka_inet()],
            ),
            with_live(
                case(
                    "hop by unknown user",
                    Rdp,
                    "127.0.20.11",
                    "file-phys02",
                    Some("mallory"),
                    WED,
                    Rule::UserUnknown,
                ),
                vec![tanaka_inet()],
            ),
            with_live(
                case(
                    "hop by auditor",
                    Rdp,
                    "127.0.20.11",
                    "file-phys02",
                    Some("suzuki"),
                    WED,
                    Rule::UserUnknown,
                ),
                vec![tanaka_inet()],
            ),
            with_live(
                case(
                    "ssh from server with console",
                    Ssh,
                    "127.0.20.11",
                    "file-phys02",
                    None,
                    WED,
                    Rule::SshPhysical,
                ),
                vec![tanaka_inet()],
            ),
            with_live(
                case(
                    "ssh from server to vm",
                    Ssh,
                    "127.0.20.11",
                    "app02",
                    None,
                    WED,
                    Rule::SshVdiToVm,
                ),
                vec![tanaka_inet()],
            ),
        ];
        let mut seen = std::collections::HashSet::new();
        for c in &cases {
            let d = evaluate(
                &inv,
                &c.live,
                &req(c.proto, c.src, c.target, c.user),
                utc(c.at),
            );
            assert_eq!(d.rule(), c.rule, "{}: {}", c.name, d.reason());
            assert_eq!(d.is_allow(), c.rule.is_allow(), "{}", c.name);
            assert!(
                !d.reason().is_empty() && !d.reason().ends_with(' '),
                "{}",
                c.name
            );
            // The sentence is the head and the explanation's English, so any language can
            // render the same reason from the template id and its parameters.
            let e = d.explanation().expect("every engine decision is explained");
            assert!(
                crate::reasons::english_template(&e.id).is_some(),
                "{}: unknown template {}",
                c.name,
                e.id
            );
            assert!(
                d.reason().ends_with(&e.english()),
                "{}: {} does not end with {}",
                c.name,
                d.reason(),
                e.english()
            );
            for p in
                crate::reasons::placeholders(crate::reasons::english_template(&e.id).unwrap_or(""))
            {
                assert!(e.params.contains_key(p), "{}: {} lacks {p}", c.name, e.id);
            }
            seen.insert(c.rule);
        }
        // Every rule evaluate can produce is covered (the others are decided by the proxies).
        for r in Rule::ALL {
            if !r.is_proxy_side() {
                assert!(seen.contains(&r), "no case for {r}");
            }
        }
    }

    #[test]
    fn issue_example_message() {
        let d = evaluate(
            &inv(),
            &[],
            &req(Rdp, "127.0.10.11", "web01", None),
            utc(WED),
        );
        assert_eq!(
            d.reason(),
            "RDP from VDI desktop 127.0.10.11 (tanaka, acme) to web01 denied: web01 is a virtual machine; use its console, or RDP from a server reached through its console"
        );
        assert_eq!(d.user(), Some("tanaka"));
        assert_eq!(d.contractor(), Some("acme"));
        assert_eq!(d.target(), Some("web01"));
        // Same with the example config itself.
        let example =
            Inventory::from_toml(include_str!("../../examples/sekisho.toml"), "x").unwrap();
        let d = evaluate(
            &example,
            &[],
            &req(Rdp, "127.0.10.11", "web01", None),
            utc(WED),
        );
        assert_eq!(d.rule(), Rule::RdpVdiToVm);
        assert!(d.reason().starts_with("RDP from VDI desktop 127.0.10.11 (tanaka, acme) to web01 denied: web01 is a virtual machine"));
    }

    #[test]
    fn supervised_comes_from_the_target_or_the_contract() {
        let d = evaluate(
            &inv(),
            &[],
            &req(Protocol::ConsoleSerial, "127.0.10.11", "web01", None),
            utc(WED),
        );
        assert!(!d.authorized().unwrap().supervised());
        let target = FIXTURE.replacen(
            "name = \"web01\"\naddress = \"127.0.20.11\"",
            "name = \"web01\"\naddress = \"127.0.20.11\"\nsupervised = true",
            1,
        );
        let contract = FIXTURE.replacen(
            "windows = [\"mon-fri 08:30-20:00\"]\n",
            "windows = [\"mon-fri 08:30-20:00\"]\nsupervised = true\n",
            1,
        );
        for toml in [target, contract] {
            assert_ne!(toml, FIXTURE);
            let inv = Inventory::from_toml(&toml, "x").unwrap();
            let d = evaluate(
                &inv,
                &[],
                &req(Protocol::ConsoleSerial, "127.0.10.11", "web01", None),
                utc(WED),
            );
            assert!(d.authorized().unwrap().supervised());
        }
        // A supervised contract of another contractor does not supervise acme's sessions.
        let beta = FIXTURE.replacen(
            "targets = [\"beta-phys04\", \"web01\"]\n",
            "targets = [\"beta-phys04\", \"web01\"]\nsupervised = true\n",
            1,
        );
        let inv = Inventory::from_toml(&beta, "x").unwrap();
        let d = evaluate(
            &inv,
            &[],
            &req(Protocol::ConsoleSerial, "127.0.10.11", "web01", None),
            utc(WED),
        );
        assert!(!d.authorized().unwrap().supervised());
        // Not a boolean: the file, line and key are named.
        let bad = FIXTURE.replacen(
            "name = \"web01\"\naddress = \"127.0.20.11\"",
            "name = \"web01\"\naddress = \"127.0.20.11\"\nsupervised = \"yes\"",
            1,
        );
        assert!(Inventory::from_toml(&bad, "x").is_err());
    }

    #[test]
    fn hop_carries_console_session_and_path() {
        let live = [console(7, "web01", "tanaka", "acme", "ip-vpn")];
        let d = evaluate(
            &inv(),
            &live,
            &req(Rdp, "127.0.20.11", "127.0.20.21", None),
            utc(WED),
        );
        let a = d.authorized().unwrap();
        assert_eq!(a.rule(), Rule::RdpHopFromConsole);
        assert_eq!(a.console_session(), Some(sid(7)));
        assert_eq!(a.path(), "ip-vpn");
        assert_eq!(a.target(), "db-phys01");
        assert_eq!(a.user(), "tanaka");
        assert!(
            a.reason().contains("server web01 at 127.0.20.11"),
            "{}",
            a.reason()
        );
    }

    #[test]
    fn reasons_name_source_user_target_and_advice() {
        let inv = inv();
        let d = evaluate(
            &inv,
            &[],
            &req(Rdp, "127.0.10.11", "db-phys01", None),
            utc(WED),
        );
        assert_eq!(
            d.reason(),
            "RDP from VDI desktop 127.0.10.11 (tanaka, acme) to db-phys01 denied: db-phys01 is in zone mynumber and the internet-vpn access path may not reach it; only ip-vpn may, so connect from a VDI desktop on that path"
        );
        let d = evaluate(
            &inv,
            &[],
            &req(Rdp, "127.0.10.11", "file-phys02", None),
            utc("2026-11-27T16:00:00Z"),
        );
        assert!(
            d.reason()
                .contains("mon-fri 08:30-20:00 (Asia/Tokyo), and it is Sat 2026-11-28 01:00"),
            "{}",
            d.reason()
        );
        let d = evaluate(
            &inv,
            &[],
            &req(Rdp, "127.0.10.11", "old-phys03", None),
            utc(WED),
        );
        assert!(
            d.reason()
                .contains("is no longer in force (today is 2026-11-25 in Asia/Tokyo)"),
            "{}",
            d.reason()
        );
        let d = evaluate(
            &inv,
            &[],
            &req(Rdp, "127.0.10.11", "file-phys02", Some("sato")),
            utc(WED),
        );
        assert!(
            d.reason().contains("assigned to tanaka, not to sato"),
            "{}",
            d.reason()
        );
        let d = evaluate(
            &inv,
            &[],
            &req(Rdp, "127.0.20.11", "file-phys02", None),
            utc(WED),
        );
        assert!(
            d.reason().contains("server web01 at 127.0.20.11")
                && d.reason().contains("open web01's console first"),
            "{}",
            d.reason()
        );
    }

    #[test]
    fn denial_new_is_public_for_proxies() {
        let d = Denial::new(Rule::SshForwarding, "no", Some("u".into()), None, None);
        assert_eq!(d.rule().as_str(), "ssh.forwarding");
        assert_eq!(Decision::Deny(d).user(), Some("u"));
    }

    #[test]
    fn time_zone_conversion_is_tokyo() {
        // Sanity check of the fixture times used above.
        let t = utc("2026-11-27T16:00:00Z").with_timezone(&chrono_tz::Asia::Tokyo);
        assert_eq!(
            t,
            chrono_tz::Asia::Tokyo
                .with_ymd_and_hms(2026, 11, 28, 1, 0, 0)
                .unwrap()
        );
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        /// A random but valid inventory: pools, zones, users with desktops, VMs and physical
        /// servers, contracts with random dates and windows.
        fn inventory() -> impl Strategy<Value = (String, usize, usize)> {
            (
                1usize..4,  // pools
                1usize..6,  // targets
                1usize..4,  // users
                proptest::collection::vec(any::<bool>(), 6), // kind per target
                proptest::collection::vec((0u32..400, 0u32..800, any::<bool>()), 0..5), // contracts
                proptest::collection::vec(any::<bool>(), 9), // zone reachability
            )
                .prop_map(|(pools, targets, users, kinds, contracts, reach)| {
                    let mut t = String::from("timezone = \"Asia/Tokyo\"\n");
                    let paths = ["internet-vpn", "ip-vpn", "closed"];
                    for p in 0..pools {
                        t += &format!(
                            "[[vdi_pool]]\nname = \"p{p}\"\npath = \"{}\"\nnetworks = [\"10.{p}.0.0/16\"]\n",
                            paths[p % 3]
                        );
                    }
                    t += "[zones]\n";
                    for z in 0..3 {
                        let list: Vec<String> = (0..pools.min(3))
                            .filter(|&p| reach[z * 3 + p])
                            .map(|p| format!("\"{}\"", paths[p]))
                            .collect();
                        t += &format!("z{z} = [{}]\n", list.join(", "));
                    }
                    t += "[[contractor]]\nid = \"c0\"\n[[contractor]]\nid = \"c1\"\n";
                    for u in 0..users {
                        t += &format!(
                            "[[user]]\nname = \"u{u}\"\nrole = \"contractor\"\ncontractor = \"c{}\"\ndesktops = [\"10.{}.0.{}\"]\n",
                            u % 2,
                            u % pools,
                            u + 1
                        );
                    }
                    t += "[[hypervisor]]\nname = \"h\"\naddress = \"192.168.0.1\"\n";
                    for (i, &vm) in kinds.iter().enumerate().take(targets) {
                        if vm {
                            t += &format!(
                                "[[target]]\nname = \"t{i}\"\naddress = \"172.16.0.{}\"\nkind = \"vm\"\nzone = \"z{}\"\nhypervisor = \"h\"\nvnc_console = \"192.168.0.1:{}\"\n",
                                i + 1,
                                i % 3,
                                5900 + i
                            );
                        } else {
                            t += &format!(
                                "[[target]]\nname = \"t{i}\"\naddress = \"172.16.0.{}\"\nkind = \"physical\"\nzone = \"z{}\"\n",
                                i + 1,
                                i % 3
                            );
                        }
                    }
                    for (n, (start, len, windowed)) in contracts.iter().enumerate() {
                        let from = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).unwrap()
                            + chrono::Days::new(u64::from(*start));
                        let until = from + chrono::Days::new(u64::from(*len));
                        let all: Vec<String> = (0..targets).map(|i| format!("\"t{i}\"")).collect();
                        t += &format!(
                            "[[contract]]\ncontractor = \"c{}\"\ntargets = [{}]\nvalid_from = \"{from}\"\nvalid_until = \"{until}\"\n",
                            n % 2,
                            all.join(", ")
                        );
                        if *windowed {
                            t += "windows = [\"mon-sun 00:00-24:00\"]\n";
                        }
                    }
                    (t, pools, targets)
                })
        }

        proptest! {
            #[test]
            fn rdp_from_vdi_to_vm_is_never_allowed(
                (text, pools, targets) in inventory(),
                pool in 0usize..4,
                host in 0u8..=255,
                mid in 0u8..=255,
                target in 0usize..6,
                user in proptest::option::of(0usize..4),
                secs in 0i64..(3 * 365 * 86400),
            ) {
                let inv = Inventory::from_toml(&text, "gen.toml").map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
                let pool = pool % pools;
                let target = target % targets;
                let t = &inv.targets()[target];
                let src: IpAddr = format!("10.{pool}.{mid}.{host}").parse().unwrap();
                let live = vec![console(1, &t.name, "u0", "c0", "internet-vpn")];
                let now = utc("2026-01-01T00:00:00Z") + chrono::Duration::seconds(secs);
                for target_ref in [TargetRef::Name(t.name.clone()), TargetRef::Address(t.address)] {
                    let r = Request {
                        protocol: Protocol::Rdp,
                        source: src,
                        target: target_ref,
                        user: user.map(|u| format!("u{u}")),
                    };
                    let d = evaluate(&inv, &live, &r, now);
                    if t.kind == TargetKind::Vm {
                        prop_assert!(!d.is_allow(), "{}", d.reason());
                    }
                }
            }

            /// From a server, nothing is allowed unless a console session is live on that
            /// server, and whatever is allowed carries that session and its path.
            #[test]
            fn hops_need_a_console_on_the_source(
                (text, _pools, targets) in inventory(),
                from in 0usize..6,
                to in 0usize..6,
                proto in 0usize..4,
                with_console in any::<bool>(),
                secs in 0i64..(3 * 365 * 86400),
            ) {
                let inv = Inventory::from_toml(&text, "gen.toml").map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
                let s = &inv.targets()[from % targets];
                let t = &inv.targets()[to % targets];
                let others: Vec<LiveConsole> = inv
                    .targets()
                    .iter()
                    .filter(|o| o.name != s.name)
                    .map(|o| console(2, &o.name, "u0", "c0", "ip-vpn"))
                    .collect();
                let mut live = others.clone();
                if with_console {
                    live.push(console(9, &s.name, "u0", "c0", "internet-vpn"));
                }
                let r = Request {
                    protocol: Protocol::ALL[proto],
                    source: s.address,
                    target: TargetRef::Name(t.name.clone()),
                    user: None,
                };
                let now = utc("2026-01-01T00:00:00Z") + chrono::Duration::seconds(secs);
                let d = evaluate(&inv, &live, &r, now);
                if let Some(a) = d.authorized() {
                    prop_assert!(with_console, "{}", d.reason());
                    prop_assert_eq!(a.console_session(), Some(sid(9)));
                    prop_assert_eq!(a.path(), "internet-vpn");
                }
            }
        }
    }
}
