//! Why a decision went the way it did, as a template and its parameters.
//!
//! A decision's reason is read by people in more than one language: the command line and the
//! logs show English, the web UI shows the reader's language. So the engine does not write
//! the sentence directly: it names a template ([`Explanation::id`]) and fills its parameters,
//! and [`Explanation::english`] renders the English sentence from [`ENGLISH`]. Other
//! languages render the same id and parameters from their own tables (the web UI's Japanese
//! one is tested against this table: same ids, same parameters). The catalogue stores the id
//! and the parameters beside the English sentence, so a reason can be rendered again later in
//! any language without parsing English.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A reason template's id and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    /// The template's id, a key of [`ENGLISH`] (e.g. `rdp.vdi-to-vm`).
    pub id: String,
    /// The values of the template's `{name}` placeholders.
    pub params: BTreeMap<String, String>,
}

impl Explanation {
    /// An explanation with template `id` and these parameters.
    pub fn new<'a>(id: &str, params: impl IntoIterator<Item = (&'a str, String)>) -> Explanation {
        Explanation {
            id: id.to_owned(),
            params: params.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    /// The English sentence: the template filled in. An unknown id renders as its
    /// parameters, so nothing is lost even then.
    pub fn english(&self) -> String {
        match english_template(&self.id) {
            Some(t) => fill(t, &self.params),
            None => self
                .params
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// The English template of `id`.
pub fn english_template(id: &str) -> Option<&'static str> {
    ENGLISH.iter().find(|(k, _)| *k == id).map(|(_, t)| *t)
}

/// `template` with each `{name}` replaced by its parameter; a placeholder without a value
/// stays as it is (a gap shows rather than breaks).
pub fn fill(template: &str, params: &BTreeMap<String, String>) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                let name = &after[..close];
                match params.get(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(name);
                        out.push('}');
                    }
                }
                rest = &after[close + 1..];
            }
            None => {
                out.push_str(&rest[open..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The placeholders of `template`, in order.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else { break };
        out.push(&after[..close]);
        rest = &after[close + 1..];
    }
    out
}

/// Every reason template of the policy engine, in English. The ids are the rule ids, with a
/// suffix where one rule has several reasons. The sentence says what happened and what to do
/// instead. Refusals the proxies word themselves (a failed logon, a refused port forward)
/// carry no template and are read by their rule.
pub const ENGLISH: &[(&str, &str)] = &[
    (
        "web.no-target",
        "the web UI reaches no target; use RDP, SSH or a console",
    ),
    (
        "source.unknown",
        "{source} is neither a VDI desktop in a vdi_pool network nor a known server; connect from your assigned VDI desktop",
    ),
    (
        "target.unknown.name",
        "there is no target named \"{name}\"; check the name, or ask an administrator to add the server to the inventory",
    ),
    (
        "target.unknown.address",
        "no target has the address {address}; check the name, or ask an administrator to add the server to the inventory",
    ),
    (
        "user.unknown.name",
        "user \"{name}\" is not in the inventory; log in with your own account, or ask an administrator to add it",
    ),
    (
        "user.unknown.unassigned",
        "VDI desktop {desktop} is not assigned to any user and no user logged in; use your assigned desktop or log in with your own account",
    ),
    (
        "user.unknown.role",
        "{user} has the role {role}, and only contractor users may open sessions; review sessions in the web UI instead",
    ),
    (
        "source.desktop-mismatch",
        "VDI desktop {desktop} is assigned to {owner}, not to {user}; log in from your own assigned desktop",
    ),
    (
        "rdp.hop-no-console",
        "no console session is live on {server}; open {server}'s console first, then connect from there",
    ),
    (
        "rdp.hop-no-console.contractor",
        "no console session by a user of {contractor} is live on {server}; open {server}'s console first, then connect from there",
    ),
    (
        "zone.path",
        "{target} is in zone {zone} and the {path} access path may not reach it; only {paths} may, so connect from a VDI desktop on that path",
    ),
    (
        "zone.path.hop",
        "{target} is in zone {zone} and the {path} access path (of console session {console} on {server}) may not reach it; only {paths} may, so connect from a VDI desktop on that path",
    ),
    (
        "zone.path.closed",
        "{target} is in zone {zone} and the {path} access path may not reach it; no access path may reach that zone; ask an administrator if this is wrong",
    ),
    (
        "zone.path.hop.closed",
        "{target} is in zone {zone} and the {path} access path (of console session {console} on {server}) may not reach it; no access path may reach that zone; ask an administrator if this is wrong",
    ),
    (
        "rdp.vdi-to-vm",
        "{target} is a virtual machine; use its console, or RDP from a server reached through its console",
    ),
    (
        "ssh.vdi-to-vm",
        "{target} is a virtual machine, and virtual machines are reached only through their console; open its console instead ({how})",
    ),
    (
        "console.physical",
        "{target} is a physical server and has no hypervisor console; use RDP or SSH to it directly",
    ),
    (
        "console.unavailable.text",
        "{target} has no text console configured; use its VNC console ({how})",
    ),
    (
        "console.unavailable.vnc",
        "{target} has no VNC console configured; use its text console ({how})",
    ),
    (
        "contract.none",
        "{contractor} has no contract covering {target}; ask for {target} to be added to {contractor}'s contract",
    ),
    (
        "contract.expired.not-yet",
        "{contractor}'s contract for {target} runs from {from} to {until} and is not yet in force (today is {today} in {tz}); wait until {from}, or ask for the start date to be corrected",
    ),
    (
        "contract.expired",
        "{contractor}'s contract for {target} ran from {from} to {until} and is no longer in force (today is {today} in {tz}); ask for the contract to be renewed",
    ),
    (
        "contract.window",
        "{contractor}'s contract for {target} allows access only {windows} ({tz}), and it is {weekday} {now}; connect again inside the window",
    ),
    (
        "rdp.hop-from-console",
        "it rides on {console_user}'s live console session {console} on {server}, and {contractor}'s contract covers {target} until {until}",
    ),
    (
        "physical",
        "{target} is a physical server and {contractor}'s contract covers it until {until}",
    ),
    (
        "console.vm",
        "{target} is a virtual machine reached through its hypervisor console, and {contractor}'s contract covers it until {until}",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_id_is_unique() {
        for (i, (id, t)) in ENGLISH.iter().enumerate() {
            assert!(!t.is_empty(), "{id}");
            assert!(ENGLISH.iter().skip(i + 1).all(|(o, _)| o != id), "{id}");
        }
    }

    #[test]
    fn templates_fill_their_parameters() {
        let e = Explanation::new("rdp.vdi-to-vm", [("target", "web01".to_owned())]);
        assert_eq!(
            e.english(),
            "web01 is a virtual machine; use its console, or RDP from a server reached through its console"
        );
        let mut p = BTreeMap::new();
        p.insert("a".to_owned(), "{b}".to_owned());
        // A value that looks like a placeholder is not filled again; a missing one shows.
        assert_eq!(fill("{a} and {b} and {", &p), "{b} and {b} and {");
        assert_eq!(placeholders("x {a} y {b}"), vec!["a", "b"]);
    }

    #[test]
    fn an_unknown_template_still_shows_its_parameters() {
        let e = Explanation::new("no.such", [("target", "web01".to_owned())]);
        assert_eq!(e.english(), "target=web01");
    }
}
