//! Secret-bearing values and the one redactor every log line uses.
//!
//! [`Secret`] wraps keys, session tokens and one-time console URLs: its `Debug` prints
//! `<redacted>` and it has no `Display`, so it cannot reach a log line by accident.
//! [`url`] turns any URL into a loggable form (query values hidden, flags kept).

use std::fmt;

/// A string that must never be logged: secret keys, session tokens, one-time URLs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The raw value, for the one place that must send it (a signature, a dial).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `given` equals the secret, in time that depends on neither value nor on
    /// either length: both sides are hashed first and the digests compared.
    pub fn matches(&self, given: &[u8]) -> bool {
        ct_eq(self.0.as_bytes(), given)
    }
}

/// Constant-time equality of two byte strings of any length: compares their SHA-256
/// digests with a fold that never exits early, so neither the position of the first
/// difference nor the length of either side shows in the timing.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Query keys whose values are harmless hints and may be logged.
const SAFE_QUERY_KEYS: &[&str] = &["isWindows", "isUbuntu"];

/// A loggable form of a URL: scheme, host, port, path and query keys; every query value
/// other than known flags becomes `***`, and any userinfo is dropped.
pub fn url(raw: &str) -> String {
    let (before_query, query) = match raw.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (raw, None),
    };
    let before_query = before_query.split('#').next().unwrap_or_default();
    let mut out = match before_query.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
        }
        None => before_query.to_owned(),
    };
    if let Some(query) = query {
        let query = query.split('#').next().unwrap_or_default();
        out.push('?');
        let parts: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) if SAFE_QUERY_KEYS.contains(&k) => format!("{k}={v}"),
                Some((k, _)) => format!("{k}=***"),
                // A bare query part may be a token on its own.
                None if pair.is_empty() => String::new(),
                None => "***".to_owned(),
            })
            .collect();
        out.push_str(&parts.join("&"));
    }
    out
}

/// Free text (e.g. an error page a gateway sent back) with the values of `s=`,
/// `password=` and `token=` masked, in case it echoes the request.
pub fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(pos) = ["s=", "password=", "token="]
        .iter()
        .filter_map(|k| rest.find(k).map(|p| (p, k.len())))
        .min()
    {
        let (p, klen) = pos;
        // Only at a word start: `s=` inside `ids=` is not a token.
        let at_start = p == 0 || !rest.as_bytes()[p - 1].is_ascii_alphanumeric();
        out.push_str(&rest[..p + klen]);
        rest = &rest[p + klen..];
        if at_start {
            let end = rest
                .find(|c: char| c == '&' || c.is_whitespace() || "\"'<>".contains(c))
                .unwrap_or(rest.len());
            if end > 0 {
                out.push_str("***");
            }
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
    out
}

/// A SecretId shortened for logs: the first 8 characters and an ellipsis.
pub fn secret_id(id: &str) -> String {
    let prefix: String = id.chars().take(8).collect();
    if prefix.len() < id.len() {
        format!("{prefix}…")
    } else {
        prefix
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_hides_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"), "a prefix is not equal");
        assert!(!ct_eq(b"", b"a"));
        assert!(ct_eq(b"", b""));
        assert!(Secret::new("tok").matches(b"tok"));
        assert!(!Secret::new("tok").matches(b"to"));
    }

    #[test]
    fn url_hides_token_and_password() {
        let raw = "wss://bjvnc.qcloud.com:26789/vnc?s=aHpj+/Zk==&password=pw&isWindows=false&isUbuntu=true";
        assert_eq!(
            url(raw),
            "wss://bjvnc.qcloud.com:26789/vnc?s=***&password=***&isWindows=false&isUbuntu=true"
        );
        assert_eq!(url("https://u:p@h/x?a=b#frag"), "https://h/x?a=***");
        assert_eq!(url("http://127.0.0.1:80/"), "http://127.0.0.1:80/");
    }

    #[test]
    fn text_masks_echoed_tokens() {
        assert_eq!(
            text("bad request GET /vnc?s=AbC+/9==&password=x HTTP/1.1 ids=3"),
            "bad request GET /vnc?s=***&password=*** HTTP/1.1 ids=3"
        );
        assert_eq!(text("no secrets here"), "no secrets here");
        assert_eq!(url("wss://h/vnc?TOKENALONE"), "wss://h/vnc?***");
    }

    #[test]
    fn secret_id_is_truncated() {
        assert_eq!(
            secret_id("AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE"),
            "AKIDz8kr…"
        );
        assert_eq!(secret_id("short"), "short");
    }
}
