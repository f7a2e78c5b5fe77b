//! Static and dynamic virtual channel decisions: which names pass, and how a stripped
//! channel is described to a person.

/// The channel rules of `[rdp]` in the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelRules {
    /// Static virtual channels that may pass (`rdp.allow_static_channels`); every other is
    /// stripped from the Connect Initial.
    pub allow_static_channels: Vec<String>,
    /// Dynamic virtual channels that may be opened (`rdp.allow_dynamic_channels`); every
    /// other is refused at creation.
    pub allow_dynamic_channels: Vec<String>,
    /// Dynamic virtual channels refused at creation even when allowed
    /// (`rdp.deny_dynamic_channels`).
    pub deny_dynamic_channels: Vec<String>,
}

impl ChannelRules {
    /// Whether a static channel named `name` may pass. Channel names are case-insensitive
    /// ASCII in practice (clients send `CLIPRDR` or `cliprdr`).
    pub fn allows_static(&self, name: &str) -> bool {
        self.allow_static_channels
            .iter()
            .any(|a| a.eq_ignore_ascii_case(name))
    }

    /// Whether a dynamic channel named `name` is refused: it is not on the allow list, or it
    /// is on the deny list.
    pub fn denies_dynamic(&self, name: &str) -> bool {
        let allowed = self
            .allow_dynamic_channels
            .iter()
            .any(|a| a.eq_ignore_ascii_case(name));
        !allowed
            || self
                .deny_dynamic_channels
                .iter()
                .any(|d| d.eq_ignore_ascii_case(name))
    }

    /// The rules of `[rdp]`.
    pub fn from_policy(rdp: &policy::RdpPolicy) -> Self {
        Self {
            allow_static_channels: rdp.allow_static_channels.clone(),
            allow_dynamic_channels: rdp.allow_dynamic_channels.clone(),
            deny_dynamic_channels: rdp.deny_dynamic_channels.clone(),
        }
    }
}

/// What a static channel carries, in words an auditor reads in the event list.
pub fn describe_static(name: &str) -> &'static str {
    match name.to_ascii_lowercase().as_str() {
        "cliprdr" => "clipboard redirection",
        "rdpdr" => "device redirection (drives, printers, smart cards, ports)",
        "rdpsnd" => "audio output",
        "drdynvc" => "dynamic virtual channels",
        "rail" | "rail_wi" | "rail_ri" => "remote applications (RAIL)",
        "encomsp" => "multiparty (encomsp)",
        "remdesk" => "remote assistance (remdesk)",
        "tsmf" => "multimedia redirection",
        _ => "a static virtual channel",
    }
}

/// What a dynamic channel carries.
pub fn describe_dynamic(name: &str) -> &'static str {
    match name {
        "URBDRC" => "USB device redirection",
        "RDCamera_Device_Enumerator" => "camera redirection",
        "FileRedirectorChannel" => "file redirection",
        "Microsoft::Windows::RDS::Graphics" => "the graphics pipeline (GFX)",
        "AUDIO_INPUT" => "microphone redirection",
        "PNPDR" => "plug-and-play device redirection",
        "Microsoft::Windows::RDS::DisplayControl" => "display control",
        _ => "a dynamic virtual channel",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_case_insensitive() {
        let r = ChannelRules {
            allow_static_channels: vec!["rdpsnd".into(), "drdynvc".into()],
            allow_dynamic_channels: vec![
                "Microsoft::Windows::RDS::DisplayControl".into(),
                "URBDRC".into(),
            ],
            deny_dynamic_channels: vec!["URBDRC".into()],
        };
        assert!(r.allows_static("RDPSND"));
        assert!(!r.allows_static("cliprdr"));
        assert!(r.denies_dynamic("urbdrc"), "the deny list wins");
        assert!(r.denies_dynamic("PNPDR"), "not on the allow list");
        assert!(r.denies_dynamic("AUDIO_INPUT"), "not on the allow list");
        assert!(!r.denies_dynamic("Microsoft::Windows::RDS::DisplayControl"));
        assert_eq!(describe_static("CLIPRDR"), "clipboard redirection");
    }
}
