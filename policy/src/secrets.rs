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
    metrics: Option<S<RawMetrics>>,
    s3: Option<S<RawS3Keys>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawS3Keys {
    access_key_id: Option<String>,
    secret_access_key: Option<Secret<String>>,
}

/// `[s3]`: the keys to the object store of `storage.recordings = "s3://…"`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct S3Keys {
    /// `access_key_id`.
    pub access_key_id: String,
    /// `secret_access_key`.
    pub secret_access_key: Secret<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    token: Option<Secret<String>>,
}

/// The shortest `[metrics] token` accepted: 16 characters is 96 bits or more of a random
/// base64 or hex string, out of reach of guessing over the network.
pub const MIN_METRICS_TOKEN_LEN: usize = 16;

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
    /// `[metrics] token`: the bearer token that opens `/metrics` on the web port.
    metrics_token: Option<Secret<String>>,
    /// `[s3]`: keys to the recordings' object store.
    s3: Option<S3Keys>,
}

impl Secrets {
    /// Parses the secrets file; every error names file, line and key.
    pub fn from_toml(text: &str, file_name: &str) -> Result<Secrets, ConfigErrors> {
        let mut diag = Diag::new(text, file_name);
        let raw: Option<RawSecrets> = diag.load();
        let mut credentials = BTreeMap::new();
        let (raw_credentials, raw_metrics, raw_s3) = match raw {
            Some(r) => (r.credential, r.metrics, r.s3),
            None => (BTreeMap::new(), None, None),
        };
        let mut s3 = None;
        if let Some(k) = raw_s3 {
            let span = k.span();
            // Neither value is ever quoted in an error.
            match k.into_inner() {
                RawS3Keys {
                    access_key_id: Some(id),
                    secret_access_key: Some(secret),
                } if !id.is_empty() && !secret.expose().is_empty() => {
                    s3 = Some(S3Keys {
                        access_key_id: id,
                        secret_access_key: secret,
                    });
                }
                _ => diag.error(
                    span,
                    "s3",
                    "needs access_key_id and secret_access_key, both non-empty",
                ),
            }
        }
        let mut metrics_token = None;
        if let Some(m) = raw_metrics {
            let span = m.span();
            // The value is never quoted in an error: it is a secret.
            match m.into_inner().token {
                None => diag.error(span, "metrics.token", "missing"),
                Some(t) if t.expose().chars().count() < MIN_METRICS_TOKEN_LEN => diag.error(
                    span,
                    "metrics.token",
                    format!("too short (at least {MIN_METRICS_TOKEN_LEN} characters)"),
                ),
                Some(t) => metrics_token = Some(t),
            }
        }
        for (name, c) in raw_credentials {
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
        Ok(Secrets {
            credentials,
            metrics_token,
            s3,
        })
    }

    /// `[metrics] token`: the bearer token that opens `/metrics` on the web port (`None`:
    /// `/metrics` is served only on `listen.metrics`). Compare it in constant time.
    pub fn metrics_token(&self) -> Option<&Secret<String>> {
        self.metrics_token.as_ref()
    }

    /// `[s3]`: the keys to the object store of `s3://` recordings.
    pub fn s3(&self) -> Option<&S3Keys> {
        self.s3.as_ref()
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
    fn s3_keys_parse_and_hide_the_secret() {
        let s = Secrets::from_toml(
            "[s3]\naccess_key_id = \"GK1\"\nsecret_access_key = \"s3-secret-value\"\n",
            "s.toml",
        )
        .unwrap();
        let k = s.s3().unwrap();
        assert_eq!(k.access_key_id, "GK1");
        assert_eq!(k.secret_access_key.expose(), "s3-secret-value");
        assert!(!format!("{s:?}").contains("s3-secret-value"));
        let e = Secrets::from_toml("[s3]\naccess_key_id = \"GK1\"\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("s.toml:1:1: s3: needs access_key_id"), "{e}");
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

    #[test]
    fn metrics_token_is_optional_hidden_and_long_enough() {
        let s = Secrets::from_toml(EXAMPLE, "secrets.toml").unwrap();
        assert!(s.metrics_token().is_none());
        let text = "[metrics]\ntoken = \"0123456789abcdef-metrics\"\n";
        let s = Secrets::from_toml(text, "s.toml").unwrap();
        let token = s.metrics_token().unwrap();
        assert_eq!(token.expose(), "0123456789abcdef-metrics");
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
        let e = Secrets::from_toml("[metrics]\ntoken = \"short-secret\"\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("metrics.token: too short"), "{e}");
        assert!(!e.contains("short-secret"), "{e}");
        let e = Secrets::from_toml("[metrics]\ntokn = \"x\"\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field"), "{e}");
    }
}
