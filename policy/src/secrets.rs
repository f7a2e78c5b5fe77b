//! The secrets file: `[credential.NAME]` tables Sekisho injects toward targets and hypervisors.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

use crate::diag::{ConfigErrors, Diag, S};

/// A value that must never reach a log: `Debug` and `Display` print `<secret>`.
///
/// There is deliberately no `Serialize`; read the value with [`Secret::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps a value.
    pub const fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret value. Call only where it is used, never to log it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Secret)
    }
}

/// One credential of the secrets file.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Credential {
    /// The account name on the target.
    pub username: String,
    /// The password, if the credential uses one.
    pub password: Option<Secret<String>>,
    /// The Windows domain (empty or absent for none).
    pub domain: Option<String>,
    /// Path of an SSH private key file, instead of a password.
    pub private_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecrets {
    #[serde(default)]
    credential: BTreeMap<String, S<RawCredential>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    username: Option<String>,
    password: Option<Secret<String>>,
    domain: Option<String>,
    private_key: Option<String>,
}

/// The parsed secrets file.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    credentials: BTreeMap<String, Credential>,
}

impl Secrets {
    /// Parses the secrets file; every error names file, line and key.
    pub fn from_toml(text: &str, file_name: &str) -> Result<Secrets, ConfigErrors> {
        let mut diag = Diag::new(text, file_name);
        let raw: Option<RawSecrets> = diag.load();
        let mut credentials = BTreeMap::new();
        for (name, c) in raw.map(|r| r.credential).unwrap_or_default() {
            let span = c.span();
            let c = c.into_inner();
            let key = format!("credential.{name}");
            let Some(username) = c.username else {
                diag.error(span, &key, "missing username");
                continue;
            };
            if c.password.is_none() && c.private_key.is_none() {
                diag.error(span, &key, "needs a password or a private_key");
                continue;
            }
            credentials.insert(
                name,
                Credential {
                    username,
                    password: c.password,
                    domain: c.domain.filter(|d| !d.is_empty()),
                    private_key: c.private_key,
                },
            );
        }
        diag.finish()?;
        Ok(Secrets { credentials })
    }

    /// The credential called `name`.
    pub fn credential(&self, name: &str) -> Option<&Credential> {
        self.credentials.get(name)
    }

    /// All credential names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.credentials.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../testdata/secrets.example.toml");

    #[test]
    fn example_parses_and_hides_passwords() {
        let s = Secrets::from_toml(EXAMPLE, "secrets.toml").unwrap();
        let c = s.credential("web01-admin").unwrap();
        assert_eq!(c.username, "Administrator");
        assert_eq!(c.domain, None);
        assert_eq!(c.password.as_ref().unwrap().expose(), "example-only");
        let dbg = format!("{c:?}");
        assert!(
            dbg.contains("<secret>") && !dbg.contains("example-only"),
            "{dbg}"
        );
        assert!(s.credential("kvm01-console").is_some());
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let text = "[credential.a]\nusername = \"x\"\n\n[credential.b]\nusername = \"y\"\npasword = \"z\"\n";
        let e = Secrets::from_toml(text, "s.toml").unwrap_err().to_string();
        assert!(
            e.contains("s.toml:6:1: credential.b.pasword: unknown field"),
            "{e}"
        );
        assert!(
            e.contains("s.toml:1:1: credential.a: needs a password"),
            "{e}"
        );
    }
}
