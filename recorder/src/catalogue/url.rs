//! Catalogue URLs: which backend, and how to show one without its password.

/// Which database a URL names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `sqlite://PATH` or `sqlite:PATH` (relative to the process's working directory).
    Sqlite,
    /// `postgres://…` or `postgresql://…`.
    Postgres,
}

/// Classifies a URL by its scheme (case-insensitive), or `None` for anything else.
pub(crate) fn scheme(url: &str) -> Option<Scheme> {
    let (scheme, _) = url.split_once(':')?;
    match scheme.to_ascii_lowercase().as_str() {
        "sqlite" => Some(Scheme::Sqlite),
        "postgres" | "postgresql" => Some(Scheme::Postgres),
        _ => None,
    }
}

/// Query parameters whose value is a secret.
const SECRET_PARAMS: [&str; 3] = ["password", "sslpassword", "passfile"];

/// The URL with the password of its user-info and any secret query parameter replaced by
/// `***`, safe for logs and error messages.
pub fn redact(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match head.split_once("://") {
        Some((scheme, rest)) => {
            // The authority ends at the first '/', the user-info at the last '@' before it.
            let (authority, path) = match rest.find('/') {
                Some(i) => rest.split_at(i),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((userinfo, host)) => match userinfo.split_once(':') {
                    Some((user, _password)) => format!("{user}:***@{host}"),
                    None => format!("{userinfo}@{host}"),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => head.to_owned(),
    };
    if let Some(query) = query {
        out.push('?');
        let params: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&params.join("&"));
    }
    out
}

/// Every secret in the URL (raw and percent-decoded), so that messages from the driver can
/// be scrubbed of them before they reach an error or a log.
pub(crate) fn secrets(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    if let Some((_, rest)) = head.split_once("://") {
        let authority = rest.split('/').next().unwrap_or_default();
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
        {
            found.push(password.to_owned());
        }
    }
    for pair in query.unwrap_or_default().split('&') {
        if let Some((k, v)) = pair.split_once('=')
            && SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str())
        {
            found.push(v.to_owned());
        }
    }
    let decoded: Vec<String> = found.iter().map(|s| percent_decode(s)).collect();
    found.extend(decoded);
    found.retain(|s| !s.is_empty());
    // Longest first, so that a secret containing another is replaced whole.
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found.dedup();
    found
}

/// Replaces every secret of `url` in `message` by `***`.
pub(crate) fn scrub(message: &str, url: &str) -> String {
    let mut out = message.to_owned();
    for secret in secrets(url) {
        out = out.replace(&secret, "***");
    }
    out
}

/// Decodes `%XX` escapes (and leaves malformed ones as they are).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(v) = hex {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(scheme("sqlite://data/x.db"), Some(Scheme::Sqlite));
        assert_eq!(scheme("sqlite::memory:"), Some(Scheme::Sqlite));
        assert_eq!(scheme("postgres://h/db"), Some(Scheme::Postgres));
        assert_eq!(scheme("PostgreSQL://h/db"), Some(Scheme::Postgres));
        assert_eq!(scheme("mysql://h/db"), None);
        assert_eq!(scheme("data/x.db"), None);
    }

    #[test]
    fn redacts_password_and_secret_params() {
        assert_eq!(
            redact("postgres://sekisho:s3cr%40t@db.example:5432/sekisho?sslmode=require"),
            "postgres://sekisho:***@db.example:5432/sekisho?sslmode=require"
        );
        assert_eq!(
            redact("postgres://u@h/db?password=hunter2&application_name=x"),
            "postgres://u@h/db?password=***&application_name=x"
        );
        assert_eq!(
            redact("sqlite://data/sekisho.db"),
            "sqlite://data/sekisho.db"
        );
        assert_eq!(redact("postgres://h"), "postgres://h");
    }

    #[test]
    fn scrubs_raw_and_decoded_secrets() {
        let url = "postgres://u:s3cr%40t@h/db?password=other";
        let msg = "failed for s3cr@t and s3cr%40t and other";
        assert_eq!(scrub(msg, url), "failed for *** and *** and ***");
    }
}
