//! `storage.recordings`: a local directory, or an S3-compatible object store
//! (`s3://BUCKET/PREFIX`) with its `[storage.s3]` table. The keys to the store are in the
//! secrets file (`[s3]`, see [`crate::secrets`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::diag::{Diag, S};

/// Default `[storage.s3] ship_interval`: at most this much of a live session exists only on
/// the local disk.
pub const DEFAULT_SHIP_INTERVAL: Duration = Duration::from_secs(10);
/// Longest `ship_interval`: beyond an hour "crash safety" means little.
pub const MAX_SHIP_INTERVAL: Duration = Duration::from_secs(3600);
/// Default `[storage.s3] spool_limit`: 1 GiB of recordings not yet in the store, hours of
/// terminal sessions or minutes of many RDP desktops.
pub const DEFAULT_SPOOL_LIMIT: u64 = 1024 * 1024 * 1024;
/// Default spool directory.
pub const DEFAULT_SPOOL: &str = "data/spool";
/// Default region (Garage's default name; AWS users set theirs).
pub const DEFAULT_REGION: &str = "garage";

/// Where recordings are written.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recordings {
    /// A local directory (`<dir>/<YYYY>/<MM>/<DD>/<session-id>.skrec`).
    Local(PathBuf),
    /// An S3-compatible object store.
    S3(S3Recordings),
}

impl Recordings {
    /// The local directory, when recordings are local.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        match self {
            Recordings::Local(p) => Some(p),
            Recordings::S3(_) => None,
        }
    }
}

impl std::fmt::Display for Recordings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Recordings::Local(p) => write!(f, "{}", p.display()),
            Recordings::S3(s) if s.prefix.is_empty() => write!(f, "s3://{}", s.bucket),
            Recordings::S3(s) => write!(f, "s3://{}/{}", s.bucket, s.prefix),
        }
    }
}

/// `storage.recordings = "s3://BUCKET/PREFIX"` and `[storage.s3]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct S3Recordings {
    /// The bucket.
    pub bucket: String,
    /// Key prefix, without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// `endpoint`: `http(s)://HOST:PORT` of a self-hosted server; `None`: AWS S3.
    pub endpoint: Option<String>,
    /// `region`.
    pub region: String,
    /// `path_style`: requests as `endpoint/bucket/key` (Garage, MinIO, Ceph RGW).
    pub path_style: bool,
    /// `spool`: the local directory where recordings are written before they ship.
    pub spool: PathBuf,
    /// `ship_interval`: how often a live recording's new bytes are sent to the store.
    pub ship_interval: Duration,
    /// `spool_limit`: bytes not yet in the store above which new sessions are refused.
    pub spool_limit: u64,
}

/// `[storage.s3]` as written.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawS3 {
    endpoint: Option<S<String>>,
    region: Option<S<String>>,
    path_style: Option<bool>,
    spool: Option<String>,
    ship_interval: Option<S<NumberOrText>>,
    spool_limit: Option<S<NumberOrText>>,
}

/// A number, or a string of digits with a unit.
#[derive(Deserialize)]
#[serde(untagged)]
pub(crate) enum NumberOrText {
    Number(i64),
    Text(String),
}

impl std::fmt::Display for NumberOrText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NumberOrText::Number(n) => write!(f, "{n}"),
            NumberOrText::Text(t) => write!(f, "{t:?}"),
        }
    }
}

/// Parses `storage.recordings` (with its span) and `[storage.s3]`.
pub(crate) fn parse(
    diag: &mut Diag<'_>,
    recordings: Option<&S<String>>,
    s3: Option<&S<RawS3>>,
) -> Option<Recordings> {
    let Some(value) = recordings else {
        if let Some(s3) = s3 {
            diag.error(
                s3.span(),
                "storage.s3",
                "applies only when storage.recordings is an s3://BUCKET/PREFIX URL",
            );
        }
        return None;
    };
    let text = value.get_ref();
    let Some(rest) = text.strip_prefix("s3://") else {
        if text.contains("://") {
            diag.error(
                value.span(),
                "storage.recordings",
                format!("unsupported URL {text:?} (expected a directory or s3://BUCKET/PREFIX)"),
            );
            return None;
        }
        if let Some(s3) = s3 {
            diag.error(
                s3.span(),
                "storage.s3",
                "applies only when storage.recordings is an s3://BUCKET/PREFIX URL",
            );
        }
        return Some(Recordings::Local(PathBuf::from(text)));
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if !valid_bucket(bucket) {
        diag.error(
            value.span(),
            "storage.recordings",
            format!(
                "{bucket:?} is not a bucket name (3 to 63 lowercase letters, digits, '.' and '-', starting and ending with a letter or digit)"
            ),
        );
        return None;
    }
    let prefix = prefix.trim_matches('/');
    if prefix.split('/').any(|p| p == "." || p == "..")
        || prefix.contains("//")
        || prefix.chars().any(char::is_control)
    {
        diag.error(
            value.span(),
            "storage.recordings",
            format!("{prefix:?} is not a key prefix (no empty, '.' or '..' parts)"),
        );
        return None;
    }
    let default = RawS3::default();
    let raw = s3.map_or(&default, |s| s.get_ref());
    let endpoint = raw.endpoint.as_ref().and_then(|e| {
        let url = e.get_ref().trim_end_matches('/');
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && url.split_once("://").is_some_and(|(_, host)| !host.is_empty() && !host.contains('/'));
        if ok {
            Some(url.to_owned())
        } else {
            diag.error(
                e.span(),
                "storage.s3.endpoint",
                format!("{url:?} is not an endpoint (expected http://HOST:PORT or https://HOST:PORT, without a path)"),
            );
            None
        }
    });
    let region = match &raw.region {
        Some(r) if r.get_ref().is_empty() => {
            diag.error(r.span(), "storage.s3.region", "must not be empty");
            DEFAULT_REGION.to_owned()
        }
        Some(r) => r.get_ref().clone(),
        None => DEFAULT_REGION.to_owned(),
    };
    let ship_interval = raw.ship_interval.as_ref().map_or(DEFAULT_SHIP_INTERVAL, |v| {
        interval(v.get_ref()).unwrap_or_else(|| {
            diag.error(
                v.span(),
                "storage.s3.ship_interval",
                format!(
                    "{} is not an interval (seconds, or digits with a unit: \"10s\", \"1m\"; 1 s to 1 h)",
                    v.get_ref()
                ),
            );
            DEFAULT_SHIP_INTERVAL
        })
    });
    let spool_limit = raw.spool_limit.as_ref().map_or(DEFAULT_SPOOL_LIMIT, |v| {
        size(v.get_ref()).unwrap_or_else(|| {
            diag.error(
                v.span(),
                "storage.s3.spool_limit",
                format!(
                    "{} is not a size (bytes, or digits with a unit: \"512MiB\", \"2GiB\", \"500MB\"; at least 1 MiB)",
                    v.get_ref()
                ),
            );
            DEFAULT_SPOOL_LIMIT
        })
    });
    Some(Recordings::S3(S3Recordings {
        bucket: bucket.to_owned(),
        prefix: prefix.to_owned(),
        endpoint,
        region,
        // Self-hosted servers want path style; AWS wants virtual-hosted style.
        path_style: raw.path_style.unwrap_or(raw.endpoint.is_some()),
        spool: raw
            .spool
            .as_ref()
            .map_or_else(|| PathBuf::from(DEFAULT_SPOOL), PathBuf::from),
        ship_interval,
        spool_limit,
    }))
}

/// S3 bucket naming rules (the subset every S3-compatible server accepts).
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.bytes().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.bytes().last().is_some_and(|c| c.is_ascii_alphanumeric())
}

fn interval(v: &NumberOrText) -> Option<Duration> {
    let secs = match v {
        NumberOrText::Number(n) => u64::try_from(*n).ok()?,
        NumberOrText::Text(t) => {
            let (n, unit) = split_unit(t)?;
            let scale = match unit {
                "" | "s" => 1,
                "m" => 60,
                "h" => 3600,
                _ => return None,
            };
            n.checked_mul(scale)?
        }
    };
    let d = Duration::from_secs(secs);
    (secs >= 1 && d <= MAX_SHIP_INTERVAL).then_some(d)
}

fn size(v: &NumberOrText) -> Option<u64> {
    let bytes = match v {
        NumberOrText::Number(n) => u64::try_from(*n).ok()?,
        NumberOrText::Text(t) => {
            let (n, unit) = split_unit(t)?;
            let scale: u64 = match unit {
                "" | "B" => 1,
                "KiB" => 1 << 10,
                "MiB" => 1 << 20,
                "GiB" => 1 << 30,
                "TiB" => 1 << 40,
                "KB" => 1_000,
                "MB" => 1_000_000,
                "GB" => 1_000_000_000,
                "TB" => 1_000_000_000_000,
                _ => return None,
            };
            n.checked_mul(scale)?
        }
    };
    (bytes >= 1 << 20).then_some(bytes)
}

fn split_unit(t: &str) -> Option<(u64, &str)> {
    let t = t.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    Some((digits.parse().ok()?, unit.trim()))
}

#[cfg(test)]
mod tests {
    use crate::Inventory;

    use super::*;

    fn parse_config(text: &str) -> Result<Inventory, String> {
        Inventory::from_toml(text, "s.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn local_stays_the_default() {
        let inv = parse_config("").unwrap();
        assert_eq!(
            inv.storage().recordings,
            Recordings::Local(PathBuf::from("data/recordings"))
        );
        let inv = parse_config("[storage]\nrecordings = \"/srv/rec\"\n").unwrap();
        assert_eq!(
            inv.storage().recordings.local_dir(),
            Some(std::path::Path::new("/srv/rec"))
        );
    }

    #[test]
    fn s3_form_with_its_table() {
        let inv = parse_config(
            "[storage]\nrecordings = \"s3://sekisho-rec/site-a/\"\n[storage.s3]\nendpoint = \"http://127.0.0.1:3900\"\nspool = \"/var/spool/sekisho\"\nship_interval = \"5s\"\nspool_limit = \"256MiB\"\n",
        )
        .unwrap();
        let Recordings::S3(s) = &inv.storage().recordings else {
            panic!("s3 expected")
        };
        assert_eq!(
            (s.bucket.as_str(), s.prefix.as_str()),
            ("sekisho-rec", "site-a")
        );
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:3900"));
        assert_eq!(s.region, "garage");
        assert!(
            s.path_style,
            "an endpoint means a self-hosted server: path style"
        );
        assert_eq!(s.spool, PathBuf::from("/var/spool/sekisho"));
        assert_eq!(s.ship_interval, Duration::from_secs(5));
        assert_eq!(s.spool_limit, 256 << 20);
        assert_eq!(
            inv.storage().recordings.to_string(),
            "s3://sekisho-rec/site-a"
        );

        let inv = parse_config("[storage]\nrecordings = \"s3://rec\"\n").unwrap();
        let Recordings::S3(s) = &inv.storage().recordings else {
            panic!("s3 expected")
        };
        assert_eq!(s.prefix, "");
        assert!(!s.path_style, "AWS: virtual-hosted style");
        assert_eq!(s.ship_interval, DEFAULT_SHIP_INTERVAL);
        assert_eq!(s.spool_limit, DEFAULT_SPOOL_LIMIT);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        let e = parse_config("[storage]\nrecordings = \"s3://Bad_Bucket/x\"\n").unwrap_err();
        assert!(
            e.contains("s.toml:2:14: storage.recordings: \"Bad_Bucket\" is not a bucket name"),
            "{e}"
        );
        let e = parse_config(
            "[storage]\nrecordings = \"s3://rec/p\"\n[storage.s3]\nendpoint = \"ftp://x\"\nship_interval = \"0s\"\nspool_limit = \"10KiB\"\nregions = \"x\"\n",
        )
        .unwrap_err();
        assert!(e.contains("storage.s3.regions: unknown field"), "{e}");
        let e = parse_config(
            "[storage]\nrecordings = \"s3://rec/p\"\n[storage.s3]\nendpoint = \"ftp://x\"\nship_interval = \"0s\"\nspool_limit = \"10KiB\"\n",
        )
        .unwrap_err();
        assert!(
            e.contains("s.toml:4:12: storage.s3.endpoint: \"ftp://x\" is not an endpoint"),
            "{e}"
        );
        assert!(
            e.contains("s.toml:5:17: storage.s3.ship_interval: \"0s\" is not an interval"),
            "{e}"
        );
        assert!(
            e.contains("s.toml:6:15: storage.s3.spool_limit: \"10KiB\" is not a size"),
            "{e}"
        );
        let e =
            parse_config("[storage]\nrecordings = \"/srv/rec\"\n[storage.s3]\nregion = \"x\"\n")
                .unwrap_err();
        assert!(e.contains("storage.s3: applies only when"), "{e}");
        let e = parse_config("[storage]\nrecordings = \"gs://rec\"\n").unwrap_err();
        assert!(e.contains("storage.recordings: unsupported URL"), "{e}");
    }
}
