//! The inventories of the RDP tests, built from parts instead of copied TOML: acme's
//! contractors on VDI pools, targets under one contract, and the `[rdp]` channel lists.

/// The Argon2id hash of [`PASSWORD`], the Sekisho password of every test user.
pub const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$IvBzMLDZyFbDrkZ3n1bk7w$8NW46C5ZNmNfiHNU+fwLLsnh9hyP7iNV8iEC4MEm5fU";

/// The Sekisho password of every test user (the one [`HASH`] is of).
pub const PASSWORD: &str = "change-me-now";

/// The NT hash of [`PASSWORD`] (`winpr-hash -u tanaka -p change-me-now`), for users who log on
/// with NLA.
pub const NT_HASH: &str = "92CEABB25E2C174E131E9FA87BA5C22C";

/// One `[[target]]`; a VM is on hypervisor kvm01.
pub struct Target {
    name: String,
    address: String,
    kind: &'static str,
    zone: String,
    vnc_console: Option<String>,
    serial_console: Option<String>,
    rdp_port: Option<u16>,
    credential: bool,
}

impl Target {
    /// A target of `kind` ("physical" or "vm") at `address` in `zone`, with no port yet.
    pub fn new(name: &str, address: &str, kind: &'static str, zone: &str) -> Target {
        Target {
            name: name.to_owned(),
            address: address.to_owned(),
            kind,
            zone: zone.to_owned(),
            vnc_console: None,
            serial_console: None,
            rdp_port: None,
            credential: false,
        }
    }

    /// A physical RDP server on 127.0.0.1:`port` in the business zone, logged on to with its
    /// credential `NAME-maint`.
    pub fn rdp_server(name: &str, port: u16) -> Target {
        Target::new(name, "127.0.0.1", "physical", "business")
            .rdp_port(port)
            .credential()
    }

    pub fn rdp_port(mut self, port: u16) -> Target {
        self.rdp_port = Some(port);
        self
    }

    /// Sekisho injects the credential `NAME-maint` of the secrets file.
    pub fn credential(mut self) -> Target {
        self.credential = true;
        self
    }

    pub fn vnc_console(mut self, addr: &str) -> Target {
        self.vnc_console = Some(addr.to_owned());
        self
    }

    pub fn serial_console(mut self, addr: &str) -> Target {
        self.serial_console = Some(addr.to_owned());
        self
    }

    fn render(&self, out: &mut String) {
        let Target {
            name,
            address,
            kind,
            zone,
            ..
        } = self;
        out.push_str(&format!(
            "\n[[target]]\nname = \"{name}\"\naddress = \"{address}\"\nkind = \"{kind}\"\n\
             zone = \"{zone}\"\n"
        ));
        if *kind == "vm" {
            out.push_str("hypervisor = \"kvm01\"\n");
        }
        if let Some(c) = &self.vnc_console {
            out.push_str(&format!("vnc_console = \"{c}\"\n"));
        }
        if let Some(c) = &self.serial_console {
            out.push_str(&format!("serial_console = \"{c}\"\n"));
        }
        if let Some(p) = self.rdp_port {
            out.push_str(&format!("rdp_port = {p}\n"));
        }
        if self.credential {
            out.push_str(&format!("credential = \"{name}-maint\"\n"));
        }
    }
}

/// An inventory: Tokyo time, recording required, contractor acme whose one contract (from
/// 2026-01-01, until 2099-12-31 unless told) covers every target, and `[rdp]` allowing the
/// static channels rdpsnd and drdynvc.
#[derive(Default)]
pub struct Inventory {
    pools: Vec<(String, String, String)>,
    zones: Vec<(String, Vec<String>)>,
    users: Vec<(String, String, Option<String>)>,
    hypervisor: bool,
    targets: Vec<Target>,
    valid_until: Option<String>,
    deny_dynamic: Vec<String>,
}

impl Inventory {
    pub fn new() -> Inventory {
        Inventory::default()
    }

    /// A `[[vdi_pool]]` named `name` on access path `path` covering `network`.
    pub fn pool(mut self, name: &str, path: &str, network: &str) -> Inventory {
        self.pools
            .push((name.to_owned(), path.to_owned(), network.to_owned()));
        self
    }

    /// Zone `name`, reachable over the access paths `paths`.
    pub fn zone(mut self, name: &str, paths: &[&str]) -> Inventory {
        self.zones.push((
            name.to_owned(),
            paths.iter().map(|p| (*p).to_owned()).collect(),
        ));
        self
    }

    /// acme's contractor `name` on the VDI desktop `desktop`, with password [`PASSWORD`].
    pub fn user(mut self, name: &str, desktop: &str) -> Inventory {
        self.users.push((name.to_owned(), desktop.to_owned(), None));
        self
    }

    /// [`Inventory::user`] with an NT hash, so that the user may log on over NLA.
    pub fn user_with_nt_hash(mut self, name: &str, desktop: &str, nt_hash: &str) -> Inventory {
        self.users.push((
            name.to_owned(),
            desktop.to_owned(),
            Some(nt_hash.to_owned()),
        ));
        self
    }

    /// Hypervisor kvm01 at 127.0.0.1, which every VM target names.
    pub fn hypervisor(mut self) -> Inventory {
        self.hypervisor = true;
        self
    }

    /// A target, added to acme's contract.
    pub fn target(mut self, target: Target) -> Inventory {
        self.targets.push(target);
        self
    }

    /// The last day of acme's contract.
    pub fn valid_until(mut self, date: &str) -> Inventory {
        self.valid_until = Some(date.to_owned());
        self
    }

    /// `[rdp] deny_dynamic_channels`.
    pub fn deny_dynamic(mut self, channels: &[&str]) -> Inventory {
        self.deny_dynamic = channels.iter().map(|c| (*c).to_owned()).collect();
        self
    }

    /// The TOML text.
    pub fn render(&self) -> String {
        let quoted = |items: &mut dyn Iterator<Item = &String>| {
            items
                .map(|i| format!("\"{i}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = String::from("timezone = \"Asia/Tokyo\"\n\n[recording]\nrequired = true\n");
        for (name, path, network) in &self.pools {
            s.push_str(&format!(
                "\n[[vdi_pool]]\nname = \"{name}\"\npath = \"{path}\"\nnetworks = [\"{network}\"]\n"
            ));
        }
        s.push_str("\n[zones]\n");
        for (name, paths) in &self.zones {
            s.push_str(&format!("{name} = [{}]\n", quoted(&mut paths.iter())));
        }
        s.push_str("\n[[contractor]]\nid = \"acme\"\nname = \"ACME Systems K.K.\"\n");
        for (name, desktop, nt_hash) in &self.users {
            s.push_str(&format!(
                "\n[[user]]\nname = \"{name}\"\ncontractor = \"acme\"\nrole = \"contractor\"\n\
                 password_hash = \"{HASH}\"\ndesktops = [\"{desktop}\"]\n"
            ));
            if let Some(h) = nt_hash {
                s.push_str(&format!("nt_hash = \"{h}\"\n"));
            }
        }
        if self.hypervisor {
            s.push_str("\n[[hypervisor]]\nname = \"kvm01\"\naddress = \"127.0.0.1\"\n");
        }
        for t in &self.targets {
            t.render(&mut s);
        }
        s.push_str(&format!(
            "\n[[contract]]\ncontractor = \"acme\"\ntargets = [{}]\nvalid_from = \"2026-01-01\"\n\
             valid_until = \"{}\"\n",
            quoted(&mut self.targets.iter().map(|t| &t.name)),
            self.valid_until.as_deref().unwrap_or("2099-12-31")
        ));
        s.push_str("\n[rdp]\nallow_static_channels = [\"rdpsnd\", \"drdynvc\"]\n");
        if !self.deny_dynamic.is_empty() {
            s.push_str(&format!(
                "deny_dynamic_channels = [{}]\n",
                quoted(&mut self.deny_dynamic.iter())
            ));
        }
        s
    }
}

/// The matrix card the tests give card users: five rows of ten digits.
pub const CARD: [&str; 5] = [
    "3829104755",
    "1047382910",
    "5561029384",
    "0192837465",
    "5647382910",
];

/// [`CARD`]'s rows, as a test's askpass answers from them.
pub fn card() -> Vec<String> {
    CARD.iter().map(|r| (*r).to_owned()).collect()
}

/// `inventory` with [`CARD`] given to the user whose desktops are exactly `[desktop]`.
pub fn with_card(inventory: &str, desktop: &str) -> String {
    let line = format!("desktops = [\"{desktop}\"]");
    let rows = CARD.map(|r| format!("\"{r}\"")).join(", ");
    inventory.replace(&line, &format!("{line}\nmatrix_card = [{rows}]"))
}
