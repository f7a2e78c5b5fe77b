//! Trust on first use for the keys of target endpoints, kept in the catalogue.
//!
//! The first time an instance dials an endpoint it records the fingerprint of the key the
//! endpoint presented (an RDP server's TLS certificate, a console's SSH host key); a later
//! dial that sees another key is refused until an administrator forgets the pin. The pins
//! live in the catalogue rather than in one instance's data directory, so instances that
//! share a catalogue share one answer: a changed key cannot pass by landing on an instance
//! that has not dialled the endpoint before.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::FromRow;

use super::ts::Ts;
use super::{Backend, Catalogue, CatalogueError, InstanceId, opt_text, text};

/// What kind of key a pin holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PinKind {
    /// The TLS certificate of an RDP server (the server leg's TLS).
    RdpCertificate,
    /// The SSH host key of a console endpoint.
    SshHostKey,
}

impl PinKind {
    /// Every kind, in display order.
    pub const ALL: [PinKind; 2] = [PinKind::RdpCertificate, PinKind::SshHostKey];

    /// The name stored in the catalogue and shown by `sekisho pins list`.
    pub const fn as_str(self) -> &'static str {
        match self {
            PinKind::RdpCertificate => "rdp-certificate",
            PinKind::SshHostKey => "ssh-host-key",
        }
    }
}

impl fmt::Display for PinKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pin kind name that is not one of [`PinKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown pin kind {0:?} (expected rdp-certificate or ssh-host-key)")]
pub struct UnknownPinKind(pub String);

impl FromStr for PinKind {
    type Err = UnknownPinKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PinKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownPinKind(s.to_owned()))
    }
}

/// What a dial presented, to compare with (or record as) the pin of its endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presented<'a> {
    /// The key's kind.
    pub kind: PinKind,
    /// `host:port` as dialled.
    pub endpoint: &'a str,
    /// The key's fingerprint, in the form operators compare with their tools' output.
    pub fingerprint: &'a str,
    /// The inventory target dialled, for the list (informative; the endpoint is the key).
    pub target: Option<&'a str>,
}

/// The outcome of comparing a presented key with its pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    /// No pin existed; the presented key is now pinned.
    FirstUse,
    /// The presented key is the pinned one.
    Match,
    /// Another key is pinned: refuse the dial.
    Changed {
        /// The fingerprint that stays pinned.
        pinned: String,
    },
}

/// One pin, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRow {
    /// The key's kind.
    pub kind: PinKind,
    /// `host:port`.
    pub endpoint: String,
    /// The pinned key's fingerprint.
    pub fingerprint: String,
    /// When it was pinned.
    pub pinned_at: DateTime<Utc>,
    /// The instance that pinned it.
    pub instance: InstanceId,
    /// The inventory target it was pinned for, if known.
    pub target: Option<String>,
}

#[derive(FromRow)]
struct RawPin {
    kind: String,
    endpoint: String,
    fingerprint: String,
    pinned_at: Ts,
    instance_id: String,
    target: Option<String>,
}

impl Catalogue {
    /// Compares `presented` with the pin of its endpoint, pinning it if there is none.
    ///
    /// Safe against instances racing on a first use: the insert is conditional, and whichever
    /// key got in first is the one every caller is compared with.
    pub async fn check_or_pin(
        &self,
        presented: &Presented<'_>,
        instance: &InstanceId,
        at: DateTime<Utc>,
    ) -> Result<PinCheck, CatalogueError> {
        let kind = presented.kind.as_str();
        let inserted = on_backend!(self, |pool| {
            sqlx::query(
                "INSERT INTO pins (kind, endpoint, fingerprint, pinned_at, instance_id, target) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (kind, endpoint) DO NOTHING",
            )
            .bind(kind)
            .bind(text(presented.endpoint))
            .bind(text(presented.fingerprint))
            .bind(Ts::new(at))
            .bind(instance.as_str().to_owned())
            .bind(opt_text(presented.target))
            .execute(pool)
            .await?
            .rows_affected()
        });
        if inserted > 0 {
            return Ok(PinCheck::FirstUse);
        }
        let pinned: Option<(String,)> = on_backend!(self, |pool| {
            sqlx::query_as("SELECT fingerprint FROM pins WHERE kind = $1 AND endpoint = $2")
                .bind(kind)
                .bind(text(presented.endpoint))
                .fetch_optional(pool)
                .await?
        });
        match pinned {
            Some((p,)) if p == presented.fingerprint => Ok(PinCheck::Match),
            Some((pinned,)) => Ok(PinCheck::Changed { pinned }),
            // Forgotten between the two statements: the next dial pins afresh; this one
            // was not compared with anything, so it does not go ahead.
            None => Err(CatalogueError::corrupt("pin", presented.endpoint)),
        }
    }

    /// Every pin, by kind and endpoint.
    pub async fn pins(&self) -> Result<Vec<PinRow>, CatalogueError> {
        let sql = "SELECT kind, endpoint, fingerprint, pinned_at, instance_id, target FROM pins \
                   ORDER BY kind, endpoint";
        let raw: Vec<RawPin> =
            on_backend!(self, |pool| sqlx::query_as(sql).fetch_all(pool).await?);
        raw.into_iter()
            .map(|r| {
                Ok(PinRow {
                    kind: r
                        .kind
                        .parse()
                        .map_err(|_| CatalogueError::corrupt("pin kind", &r.kind))?,
                    endpoint: r.endpoint,
                    fingerprint: r.fingerprint,
                    pinned_at: r.pinned_at.get(),
                    instance: InstanceId::new(&r.instance_id)
                        .map_err(|_| CatalogueError::corrupt("instance id", &r.instance_id))?,
                    target: r.target,
                })
            })
            .collect()
    }

    /// Forgets the pin of `endpoint` (of one kind, or of every kind), so the next dial pins
    /// what it is shown. Returns how many pins were removed.
    pub async fn forget_pin(
        &self,
        kind: Option<PinKind>,
        endpoint: &str,
    ) -> Result<u64, CatalogueError> {
        let removed = on_backend!(self, |pool| {
            match kind {
                Some(k) => {
                    sqlx::query("DELETE FROM pins WHERE kind = $1 AND endpoint = $2")
                        .bind(k.as_str())
                        .bind(endpoint.to_owned())
                        .execute(pool)
                        .await?
                }
                None => {
                    sqlx::query("DELETE FROM pins WHERE endpoint = $1")
                        .bind(endpoint.to_owned())
                        .execute(pool)
                        .await?
                }
            }
            .rows_affected()
        });
        Ok(removed)
    }
}
