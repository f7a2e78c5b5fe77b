//! Re-deciding a live session: the same [`policy::evaluate`] that admitted it, asked again on
//! its original request with the current inventory, the live consoles and the clock.
//!
//! Pure: no I/O, no clock, no locks. The supervisor calls [`redecide`] for every live session
//! on each pass and right after a configuration reload, and acts on the [`Verdict`].
//!
//! A session admitted under one configuration ends when the current one would not admit it:
//! - the decision is now a denial (user removed or their role changed, their desktops no
//!   longer include the source, target removed, zone or path no longer allowed, contract gone,
//!   expired or outside its windows, a hop's console gone);
//! - the decision still allows, but for someone or something else than the session was
//!   admitted for (another user on that desktop, another contractor, another access path,
//!   another target at that address);
//! - the target is still allowed but its definition changed where the session dialled it
//!   (address, kind, zone, credential, the protocol's endpoint).
//!
//! A denial that time alone explains (the inventory the session was last allowed under denies
//! it now too, by a contract rule) is a contract window closing ([`Verdict::WindowClosed`],
//! outcome `window-closed`); every other denial is a revocation (outcome `revoked`).

use chrono::{DateTime, Duration, Utc};
use policy::{
    Decision, Denial, Inventory, LiveConsole, Protocol, Request, Rule, SessionId, Target,
};

/// What a live session was admitted as: who, to what, through which path, and the original
/// request the decision was made on.
#[derive(Debug, Clone)]
pub(super) struct Admitted {
    /// The request as the front door made it (target by name or, for transparent RDP, by
    /// address; the user as the protocol authenticated it, if it did).
    pub request: Request,
    /// The user the session belongs to.
    pub user: String,
    /// Their contractor.
    pub contractor: String,
    /// The resolved target name.
    pub target: String,
    /// The access path.
    pub path: String,
    /// For an RDP hop: the console session it rides on.
    pub console: Option<SessionId>,
}

/// The live console sessions, as far as they could be read.
#[derive(Debug, Clone, Copy)]
pub(super) enum Consoles<'a> {
    /// Every instance's (from the catalogue, plus this instance's own).
    All(&'a [LiveConsole]),
    /// Only this instance's own: the catalogue could not be read. A hop on another instance's
    /// console cannot be confirmed and ends (fail closed).
    LocalOnly(&'a [LiveConsole]),
}

impl<'a> Consoles<'a> {
    fn list(self) -> &'a [LiveConsole] {
        match self {
            Consoles::All(l) | Consoles::LocalOnly(l) => l,
        }
    }
}

/// What to do with one live session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Still allowed as admitted.
    Keep,
    /// Still allowed, but a contract rule will deny it within the warning period.
    WarnWindow,
    /// The contract window closed or the contract expired since it was last allowed (time,
    /// not a configuration change): outcome `window-closed`.
    WindowClosed(Denial),
    /// The console session the hop rode on has ended.
    ConsoleEnded(SessionId),
    /// The current configuration (or, for a hop, the console it needs) no longer allows it:
    /// outcome `revoked`.
    Revoke(Denial),
}

/// Re-decides `session`, last allowed under `allowed_under`, with the `current` inventory at
/// `now`; `warn_ahead` is how long before a contract rule denies it the user is warned.
pub(super) fn redecide(
    session: &Admitted,
    allowed_under: &Inventory,
    current: &Inventory,
    consoles: Consoles<'_>,
    now: DateTime<Utc>,
    warn_ahead: Duration,
) -> Verdict {
    let live = consoles.list();
    if let Some(console) = session.console
        && !live.iter().any(|c| c.session_id == console)
    {
        return match consoles {
            Consoles::All(_) => Verdict::ConsoleEnded(console),
            Consoles::LocalOnly(_) => Verdict::Revoke(deny(
                session,
                Rule::SekishoUnavailable,
                format!(
                    "RDP from {} to {}: console session {console} it rode on cannot be confirmed live (catalogue unavailable)",
                    session.request.source, session.target
                ),
            )),
        };
    }
    let authorized = match policy::evaluate(current, live, &session.request, now) {
        Decision::Deny(denial) => {
            let time_alone = is_contract_rule(denial.rule())
                && matches!(
                    policy::evaluate(allowed_under, live, &session.request, now),
                    Decision::Deny(before) if before.rule() == denial.rule()
                );
            return if time_alone {
                Verdict::WindowClosed(denial)
            } else {
                Verdict::Revoke(denial)
            };
        }
        Decision::Allow(a) => a,
    };
    if authorized.user() != session.user {
        return Verdict::Revoke(deny(
            session,
            Rule::SourceDesktopMismatch,
            format!(
                "{} is now {}'s desktop, no longer {}'s",
                session.request.source,
                authorized.user(),
                session.user
            ),
        ));
    }
    if authorized.contractor() != session.contractor {
        return Verdict::Revoke(deny(
            session,
            Rule::ContractNone,
            format!(
                "{} now works for contractor {}; the session was admitted under {}'s contract for {}",
                session.user,
                authorized.contractor(),
                session.contractor,
                session.target
            ),
        ));
    }
    if authorized.target() != session.target {
        return Verdict::Revoke(deny(
            session,
            Rule::TargetChanged,
            format!(
                "{} is now target {}, no longer {}",
                session.request.target,
                authorized.target(),
                session.target
            ),
        ));
    }
    if authorized.path() != session.path {
        return Verdict::Revoke(deny(
            session,
            Rule::ZonePath,
            format!(
                "{} now comes through access path {}, no longer {}",
                session.request.source,
                authorized.path(),
                session.path
            ),
        ));
    }
    if let (Some(before), Some(after)) = (
        allowed_under.target(&session.target),
        current.target(&session.target),
    ) && let Some(key) = changed_key(session.request.protocol, before, after)
    {
        return Verdict::Revoke(deny(
            session,
            Rule::TargetChanged,
            format!(
                "target {} changed in the configuration ({key}); reconnect to use its new definition",
                session.target
            ),
        ));
    }
    let warn = matches!(
        policy::evaluate(current, live, &session.request, now + warn_ahead),
        Decision::Deny(d) if is_contract_rule(d.rule())
    );
    if warn {
        Verdict::WarnWindow
    } else {
        Verdict::Keep
    }
}

/// Rules that time alone can turn from allow to deny.
pub(super) fn is_contract_rule(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::ContractNone | Rule::ContractExpired | Rule::ContractWindow
    )
}

/// The first key of a target's definition that changed where a session of `protocol` uses
/// it: where the session connected, and what decided it. Keys the session does not use (the
/// VNC console of a target reached over SSH) may change without ending it.
fn changed_key(protocol: Protocol, before: &Target, after: &Target) -> Option<&'static str> {
    let common = [
        ("address", before.address != after.address),
        ("kind", before.kind != after.kind),
        ("zone", before.zone != after.zone),
        ("hypervisor", before.hypervisor != after.hypervisor),
        ("credential", before.credential != after.credential),
    ];
    let rdp = ("rdp_port", before.rdp_port != after.rdp_port);
    let ssh = ("ssh_port", before.ssh_port != after.ssh_port);
    let serial = [
        (
            "serial_console",
            before.serial_console != after.serial_console,
        ),
        ("ssh_console", before.ssh_console != after.ssh_console),
        (
            "console_command",
            before.console_command != after.console_command,
        ),
    ];
    let vnc = [
        ("vnc_console", before.vnc_console != after.vnc_console),
        ("vnc_qmp", before.vnc_qmp != after.vnc_qmp),
    ];
    let endpoint: Vec<(&'static str, bool)> = match protocol {
        Protocol::Rdp => vec![rdp],
        Protocol::Ssh => vec![ssh],
        Protocol::ConsoleSerial => serial.to_vec(),
        Protocol::ConsoleVnc => vnc.to_vec(),
        // A protocol this code does not know yet: any endpoint counts (fail closed).
        _ => [rdp, ssh].into_iter().chain(serial).chain(vnc).collect(),
    };
    common
        .iter()
        .chain(endpoint.iter())
        .find(|(_, changed)| *changed)
        .map(|(key, _)| *key)
}

fn deny(session: &Admitted, rule: Rule, reason: String) -> Denial {
    Denial::new(
        rule,
        reason,
        Some(session.user.clone()),
        Some(session.contractor.clone()),
        Some(session.target.clone()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::TargetRef;

    /// Tokyo time; tanaka (acme) on VDI desktop 127.0.10.11 (internet-vpn), sato (acme) on
    /// 127.0.11.21 (ip-vpn); web01 a VM with consoles, db-phys01 and file-phys02 physical.
    const BASE: &str = r#"timezone = "Asia/Tokyo"

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

[[contractor]]
id = "acme"
name = "ACME"

[[contractor]]
id = "globex"
name = "Globex"

[[user]]
name = "tanaka"
contractor = "acme"
role = "contractor"
password_hash = "x"
desktops = ["127.0.10.11"]

[[user]]
name = "sato"
contractor = "acme"
role = "contractor"
password_hash = "x"
desktops = ["127.0.11.21"]

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
name = "db-phys01"
address = "127.0.20.21"
kind = "physical"
zone = "business"

[[target]]
name = "file-phys02"
address = "127.0.20.22"
kind = "physical"
zone = "business"

[[contract]]
contractor = "acme"
targets = ["web01", "db-phys01", "file-phys02"]
valid_from = "2026-01-01"
valid_until = "2099-12-31"
"#;

    const TANAKA: &str = "127.0.10.11";
    /// Wednesday 2026-11-25 10:00 in Tokyo.
    const WED_10: &str = "2026-11-25T01:00:00Z";
    const WARN: Duration = Duration::minutes(5);

    /// An inventory from `text`, whose `password_hash = "x"` stand for a real hash (never
    /// checked here).
    fn inv(text: &str) -> Inventory {
        let text = text.replace(
            "password_hash = \"x\"",
            "password_hash = \"$argon2id$v=19$m=19456,t=2,p=1$IvBzMLDZyFbDrkZ3n1bk7w$8NW46C5ZNmNfiHNU+fwLLsnh9hyP7iNV8iEC4MEm5fU\"",
        );
        match Inventory::from_toml(&text, "test.toml") {
            Ok(i) => i,
            Err(e) => panic!("{e}"),
        }
    }

    fn edit(from: &str, to: &str) -> Inventory {
        assert!(BASE.contains(from), "{from}");
        inv(&BASE.replacen(from, to, 1))
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn request(protocol: Protocol, source: &str, target: &str, user: Option<&str>) -> Request {
        Request {
            protocol,
            source: source.parse().unwrap(),
            target: match target.parse() {
                Ok(a) => TargetRef::Address(a),
                Err(_) => TargetRef::Name(target.to_owned()),
            },
            user: user.map(str::to_owned),
        }
    }

    /// What the front door would register for `req`: it must be allowed by `inventory`.
    fn admit(inventory: &Inventory, live: &[LiveConsole], req: Request) -> Admitted {
        let a = match policy::evaluate(inventory, live, &req, at(WED_10)) {
            Decision::Allow(a) => a,
            Decision::Deny(d) => panic!("not admitted: {}", d.reason()),
        };
        Admitted {
            user: a.user().to_owned(),
            contractor: a.contractor().to_owned(),
            target: a.target().to_owned(),
            path: a.path().to_owned(),
            console: a.console_session(),
            request: req,
        }
    }

    fn ssh_tanaka() -> Admitted {
        admit(
            &inv(BASE),
            &[],
            request(Protocol::Ssh, TANAKA, "db-phys01", Some("tanaka")),
        )
    }

    fn console_tanaka() -> Admitted {
        admit(
            &inv(BASE),
            &[],
            request(Protocol::ConsoleSerial, TANAKA, "web01", Some("tanaka")),
        )
    }

    fn after_reload(session: &Admitted, current: &Inventory) -> Verdict {
        redecide(
            session,
            &inv(BASE),
            current,
            Consoles::All(&[]),
            at(WED_10),
            WARN,
        )
    }

    fn revoked_by(verdict: &Verdict) -> Option<Rule> {
        match verdict {
            Verdict::Revoke(d) => Some(d.rule()),
            _ => None,
        }
    }

    #[test]
    fn an_unchanged_configuration_keeps_every_session() {
        for s in [ssh_tanaka(), console_tanaka()] {
            assert_eq!(after_reload(&s, &inv(BASE)), Verdict::Keep);
        }
    }

    #[test]
    fn a_removed_user_is_revoked() {
        let without = BASE.replacen(
            "[[user]]\nname = \"tanaka\"\ncontractor = \"acme\"\nrole = \"contractor\"\npassword_hash = \"x\"\ndesktops = [\"127.0.10.11\"]\n",
            "",
            1,
        );
        assert_ne!(without, BASE);
        for s in [ssh_tanaka(), console_tanaka()] {
            let v = after_reload(&s, &inv(&without));
            assert_eq!(revoked_by(&v), Some(Rule::UserUnknown), "{v:?}");
        }
    }

    #[test]
    fn a_role_change_is_revoked() {
        let v = after_reload(
            &ssh_tanaka(),
            &edit(
                "name = \"tanaka\"\ncontractor = \"acme\"\nrole = \"contractor\"\npassword_hash = \"x\"\ndesktops = [\"127.0.10.11\"]",
                "name = \"tanaka\"\nrole = \"auditor\"\npassword_hash = \"x\"",
            ),
        );
        assert_eq!(revoked_by(&v), Some(Rule::UserUnknown), "{v:?}");
    }

    #[test]
    fn a_desktop_given_to_someone_else_is_revoked() {
        let moved = BASE
            .replacen(
                "desktops = [\"127.0.10.11\"]",
                "desktops = [\"127.0.10.13\"]",
                1,
            )
            .replacen(
                "desktops = [\"127.0.11.21\"]",
                "desktops = [\"127.0.11.21\", \"127.0.10.11\"]",
                1,
            );
        // Logged in as tanaka (SSH): the policy itself now denies.
        let v = after_reload(&ssh_tanaka(), &inv(&moved));
        assert_eq!(revoked_by(&v), Some(Rule::SourceDesktopMismatch), "{v:?}");
        // Transparent RDP without a user: the desktop now names sato, not tanaka.
        let rdp = admit(
            &inv(BASE),
            &[],
            request(Protocol::Rdp, TANAKA, "127.0.20.21", None),
        );
        assert_eq!(rdp.user, "tanaka");
        let v = after_reload(&rdp, &inv(&moved));
        assert_eq!(revoked_by(&v), Some(Rule::SourceDesktopMismatch), "{v:?}");
    }

    #[test]
    fn a_desktop_moved_to_another_access_path_is_revoked() {
        let v = after_reload(
            &ssh_tanaka(),
            &edit(
                "networks = [\"127.0.10.0/24\"]\n\n[[vdi_pool]]\nname = \"vdi-ipvpn\"\npath = \"ip-vpn\"\nnetworks = [\"127.0.11.0/24\"]",
                "networks = [\"127.0.12.0/24\"]\n\n[[vdi_pool]]\nname = \"vdi-ipvpn\"\npath = \"ip-vpn\"\nnetworks = [\"127.0.11.0/24\", \"127.0.10.0/24\"]",
            ),
        );
        assert_eq!(revoked_by(&v), Some(Rule::ZonePath), "{v:?}");
    }

    #[test]
    fn a_removed_or_changed_target_is_revoked() {
        let s = ssh_tanaka();
        let removed = inv(&BASE
            .replacen(
                "[[target]]\nname = \"db-phys01\"",
                "[[target]]\nname = \"db-phys03\"",
                1,
            )
            .replacen("\"db-phys01\", \"file", "\"db-phys03\", \"file", 1));
        assert_eq!(
            revoked_by(&after_reload(&s, &removed)),
            Some(Rule::TargetUnknown)
        );
        let moved = edit("address = \"127.0.20.21\"", "address = \"127.0.20.29\"");
        let v = after_reload(&s, &moved);
        assert_eq!(revoked_by(&v), Some(Rule::TargetChanged), "{v:?}");
        let Verdict::Revoke(d) = v else { return };
        assert!(d.reason().contains("(address)"), "{}", d.reason());
        // Now in a zone tanaka's path may not reach.
        let zoned = edit(
            "address = \"127.0.20.21\"\nkind = \"physical\"\nzone = \"business\"",
            "address = \"127.0.20.21\"\nkind = \"physical\"\nzone = \"mynumber\"",
        );
        assert_eq!(revoked_by(&after_reload(&s, &zoned)), Some(Rule::ZonePath));
    }

    #[test]
    fn only_the_endpoint_a_session_uses_matters() {
        let serial_moved = edit(
            "serial_console = \"127.0.0.1:14501\"",
            "serial_console = \"127.0.0.1:14599\"",
        );
        let v = after_reload(&console_tanaka(), &serial_moved);
        assert_eq!(revoked_by(&v), Some(Rule::TargetChanged), "{v:?}");
        let vnc_moved = edit(
            "vnc_console = \"127.0.0.1:15901\"",
            "vnc_console = \"127.0.0.1:15999\"",
        );
        assert_eq!(after_reload(&console_tanaka(), &vnc_moved), Verdict::Keep);
    }

    #[test]
    fn a_transparent_rdp_address_now_of_another_target_is_revoked() {
        let rdp = admit(
            &inv(BASE),
            &[],
            request(Protocol::Rdp, TANAKA, "127.0.20.21", None),
        );
        let swapped = BASE
            .replacen("address = \"127.0.20.21\"", "address = \"127.0.20.99\"", 1)
            .replacen("address = \"127.0.20.22\"", "address = \"127.0.20.21\"", 1);
        let v = after_reload(&rdp, &inv(&swapped));
        assert_eq!(revoked_by(&v), Some(Rule::TargetChanged), "{v:?}");
    }

    #[test]
    fn a_contract_gone_or_expired_by_reload_is_revoked() {
        let s = ssh_tanaka();
        let gone = edit(
            "targets = [\"web01\", \"db-phys01\", \"file-phys02\"]",
            "targets = [\"web01\", \"file-phys02\"]",
        );
        assert_eq!(
            revoked_by(&after_reload(&s, &gone)),
            Some(Rule::ContractNone)
        );
        let expired = edit(
            "valid_until = \"2099-12-31\"",
            "valid_until = \"2026-11-01\"",
        );
        assert_eq!(
            revoked_by(&after_reload(&s, &expired)),
            Some(Rule::ContractExpired)
        );
        let other = edit(
            "name = \"tanaka\"\ncontractor = \"acme\"",
            "name = \"tanaka\"\ncontractor = \"globex\"",
        );
        // globex has no contract: denied outright.
        assert_eq!(
            revoked_by(&after_reload(&s, &other)),
            Some(Rule::ContractNone)
        );
    }

    #[test]
    fn another_contractor_with_its_own_contract_is_still_revoked() {
        let text = BASE.replacen(
            "name = \"tanaka\"\ncontractor = \"acme\"",
            "name = \"tanaka\"\ncontractor = \"globex\"",
            1,
        ) + "\n[[contract]]\ncontractor = \"globex\"\ntargets = [\"db-phys01\"]\nvalid_from = \"2026-01-01\"\nvalid_until = \"2099-12-31\"\n";
        let v = after_reload(&ssh_tanaka(), &inv(&text));
        assert_eq!(revoked_by(&v), Some(Rule::ContractNone), "{v:?}");
    }

    #[test]
    fn a_window_closing_with_time_is_window_closed_not_revoked() {
        // 09:00-10:03 on Wednesdays, Tokyo.
        let windowed = BASE.replacen(
            "valid_until = \"2099-12-31\"\n",
            "valid_until = \"2099-12-31\"\nwindows = [\"wed 09:00-10:03\"]\n",
            1,
        );
        let inventory = inv(&windowed);
        let s = admit(
            &inventory,
            &[],
            request(Protocol::Ssh, TANAKA, "db-phys01", Some("tanaka")),
        );
        let pass = |now| redecide(&s, &inventory, &inventory, Consoles::All(&[]), now, WARN);
        assert_eq!(pass(at(WED_10)), Verdict::WarnWindow);
        assert_eq!(pass(at("2026-11-25T00:50:00Z")), Verdict::Keep);
        match pass(at("2026-11-25T01:03:00Z")) {
            Verdict::WindowClosed(d) => assert_eq!(d.rule(), Rule::ContractWindow),
            v => panic!("{v:?}"),
        }
        // The same window, but introduced by a reload while outside it: a revocation.
        let v = redecide(
            &ssh_tanaka(),
            &inv(BASE),
            &inventory,
            Consoles::All(&[]),
            at("2026-11-25T01:03:00Z"),
            WARN,
        );
        assert_eq!(revoked_by(&v), Some(Rule::ContractWindow), "{v:?}");
    }

    fn console(id: u8, user: &str, path: &str) -> LiveConsole {
        LiveConsole {
            session_id: SessionId::from_uuid(uuid::Uuid::from_bytes([id; 16])),
            target: "web01".to_owned(),
            user: user.to_owned(),
            contractor: "acme".to_owned(),
            path: path.to_owned(),
        }
    }

    #[test]
    fn a_hop_needs_its_console_and_the_full_policy() {
        let live = [console(7, "tanaka", "internet-vpn")];
        // RDP from web01's own address (reached through tanaka's console) to db-phys01.
        let hop = admit(
            &inv(BASE),
            &live,
            request(Protocol::Rdp, "127.0.20.11", "127.0.20.21", None),
        );
        assert_eq!(hop.console, Some(live[0].session_id));
        let pass = |current: &Inventory, consoles| {
            redecide(&hop, &inv(BASE), current, consoles, at(WED_10), WARN)
        };
        assert_eq!(pass(&inv(BASE), Consoles::All(&live)), Verdict::Keep);
        assert_eq!(
            pass(&inv(BASE), Consoles::All(&[])),
            Verdict::ConsoleEnded(live[0].session_id)
        );
        // Its console still live, but tanaka's contract no longer names db-phys01.
        let gone = edit(
            "targets = [\"web01\", \"db-phys01\", \"file-phys02\"]",
            "targets = [\"web01\", \"file-phys02\"]",
        );
        assert_eq!(
            revoked_by(&pass(&gone, Consoles::All(&live))),
            Some(Rule::ContractNone)
        );
        // The catalogue cannot be read and the console is not this instance's: fail closed.
        assert_eq!(
            revoked_by(&pass(&inv(BASE), Consoles::LocalOnly(&[]))),
            Some(Rule::SekishoUnavailable)
        );
        // ... but a console this instance holds is known without the catalogue.
        assert_eq!(pass(&inv(BASE), Consoles::LocalOnly(&live)), Verdict::Keep);
    }
}
