//! `InstanceVncUrl` decoding and the browser console address.
//!
//! The API returns the `wss://` URL percent-encoded (sometimes raw). It is decoded exactly
//! once and its query is kept byte for byte: `s` is base64 and must not be re-encoded.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::redact::{self, Secret};

/// The official browser console page.
pub(crate) const CONSOLE_PAGE: &str = "https://img.qcloud.com/qcloud/app/active_vnc/index.html";

/// Characters left alone when encoding a query component (RFC 3986 unreserved), as the
/// API and the console page do.
pub const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why an `InstanceVncUrl` value cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Neither `ws(s)://` nor its percent-encoded form.
    #[error("InstanceVncUrl is not a ws:// or wss:// URL (starts with {prefix:?})")]
    Scheme {
        /// The first few characters, safe to show.
        prefix: String,
    },
    /// Percent-decoding produced invalid UTF-8.
    #[error("InstanceVncUrl is not valid UTF-8 after percent-decoding")]
    Utf8,
    /// No host after the scheme.
    #[error("InstanceVncUrl has no host")]
    NoHost,
    /// The port is not a number from 1 to 65535.
    #[error("InstanceVncUrl has an invalid port {port:?}")]
    Port {
        /// What stood after the colon (never the token: it is in the query).
        port: String,
    },
}

/// A decoded one-time console URL. Its `Debug` hides the token.
#[derive(Clone, PartialEq, Eq)]
pub struct VncUrl {
    url: Secret,
    tls: bool,
    host: String,
    port: u16,
}

impl std::fmt::Debug for VncUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl VncUrl {
    /// Parses an `InstanceVncUrl` value as the API returns it.
    ///
    /// # Errors
    /// [`Error`] when the value is not a websocket URL in either form.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let raw = raw.trim();
        let lower: String = raw.chars().take(8).collect::<String>().to_ascii_lowercase();
        let decoded = if lower.starts_with("ws://") || lower.starts_with("wss://") {
            raw.to_owned()
        } else if lower.starts_with("ws%3a") || lower.starts_with("wss%3a") {
            percent_decode_str(raw)
                .decode_utf8()
                .map_err(|_| Error::Utf8)?
                .into_owned()
        } else {
            return Err(Error::Scheme {
                prefix: raw.chars().take(6).collect(),
            });
        };
        let (scheme, rest) = decoded.split_once("://").ok_or(Error::NoHost)?;
        let tls = scheme.eq_ignore_ascii_case("wss");
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
        let (host, port) = split_host_port(authority, if tls { 443 } else { 80 })?;
        if host.is_empty() {
            return Err(Error::NoHost);
        }
        Ok(VncUrl {
            url: Secret::new(decoded),
            tls,
            host,
            port,
        })
    }

    /// The full URL, for the dial only.
    pub fn expose(&self) -> &str {
        self.url.expose()
    }

    /// `wss` (true) or `ws`.
    pub(crate) fn is_tls(&self) -> bool {
        self.tls
    }

    /// Host name or address (IPv6 without brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Path and query as sent in the request line, byte for byte (a fragment is not
    /// sent). `wss://host?s=…` has an empty path: the request line is `/?s=…`. The value
    /// holds the token: never log it.
    pub(crate) fn path_and_query(&self) -> String {
        let (_, rest) = self.url.expose().split_once("://").unwrap_or(("", ""));
        let rest = rest.split('#').next().unwrap_or_default();
        match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => rest[i..].to_owned(),
            Some(i) => format!("/{}", &rest[i..]),
            None => "/".to_owned(),
        }
    }

    /// The `Host` header value.
    pub(crate) fn host_header(&self) -> String {
        let default = if self.tls { 443 } else { 80 };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The loggable form (`s` and `password` hidden).
    pub fn redacted(&self) -> String {
        redact::url(self.url.expose())
    }

    /// The browser console address for this URL, as documented by Tencent Cloud.
    pub fn console_url(&self) -> Secret {
        Secret::new(format!(
            "{CONSOLE_PAGE}?InstanceVncUrl={}",
            utf8_percent_encode(self.url.expose(), COMPONENT)
        ))
    }
}

/// Host and port of an authority; an empty port (`host:`) is the default, one that does
/// not parse (or is 0) is an error, never silently the default.
fn split_host_port(authority: &str, default: u16) -> Result<(String, u16), Error> {
    let port = |p: &str| -> Result<u16, Error> {
        if p.is_empty() {
            return Ok(default);
        }
        match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
            _ => Err(Error::Port {
                port: p.chars().take(16).collect(),
            }),
        }
    };
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            let p = match after.strip_prefix(':') {
                Some(p) => port(p)?,
                None if after.is_empty() => default,
                None => {
                    return Err(Error::Port {
                        port: after.chars().take(16).collect(),
                    })
                }
            };
            return Ok((host.to_owned(), p));
        }
    }
    match authority.rsplit_once(':') {
        Some((host, p)) if !host.contains(':') => Ok((host.to_owned(), port(p)?)),
        _ => Ok((authority.to_owned(), default)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ENCODED: &str = "wss%3A%2F%2Fbjvnc.qcloud.com%3A26789%2Fvnc%3Fs%3DaHpjWnRVMFNhYmxKdDM5MjRHNlVTSVQwajNUSW0wb2tBbmFtREFCTmFrcy8vUUNPMG0wSHZNOUUxRm5PMmUzWmFDcWlOdDJIbUJxSTZDL0RXcHZxYnZZMmRkWWZWcEZia2lyb09XMzdKNmM9";

    #[test]
    fn decodes_official_example_once() {
        let url = VncUrl::parse(ENCODED).expect("parses");
        assert!(url
            .expose()
            .starts_with("wss://bjvnc.qcloud.com:26789/vnc?s=aHpj"));
        assert!(url.expose().ends_with("NmM9"));
        assert_eq!(url.host(), "bjvnc.qcloud.com");
        assert_eq!(url.port(), 26789);
        assert!(url.is_tls());
        assert!(url.path_and_query().starts_with("/vnc?s=aHpj"));
        assert_eq!(url.host_header(), "bjvnc.qcloud.com:26789");
    }

    #[test]
    fn console_url_matches_documented_example() {
        let url = VncUrl::parse(ENCODED).expect("parses");
        assert_eq!(
            url.console_url().expose(),
            format!("{CONSOLE_PAGE}?InstanceVncUrl={ENCODED}")
        );
    }

    #[test]
    fn raw_url_kept_byte_for_byte() {
        let raw = "wss://gzvnc.qcloud.com:26789/vnc?s=ab+c/d%2F==&password=&isWindows=false&isUbuntu=true";
        let url = VncUrl::parse(raw).expect("parses");
        assert_eq!(url.expose(), raw);
        // A plus and an encoded slash inside `s` survive: decoding happens only for the encoded form.
        let encoded = "wss%3A%2F%2Fh%3A443%2Fvnc%3Fs%3Dab%2Bc%252F%3D";
        let url = VncUrl::parse(encoded).expect("parses");
        assert_eq!(url.expose(), "wss://h:443/vnc?s=ab+c%2F=");
        assert_eq!(url.host_header(), "h");
    }

    #[test]
    fn empty_path_keeps_the_query() {
        let url = VncUrl::parse("wss://h:8443?s=TOKEN&password=").expect("parses");
        assert_eq!(url.path_and_query(), "/?s=TOKEN&password=");
        assert_eq!(url.port(), 8443);
        let url = VncUrl::parse("wss://h").expect("parses");
        assert_eq!(url.path_and_query(), "/");
        assert_eq!(url.port(), 443);
        let url = VncUrl::parse("wss://h/vnc?s=a#frag").expect("parses");
        assert_eq!(url.path_and_query(), "/vnc?s=a");
    }

    #[test]
    fn bad_ports_are_errors_not_443() {
        for bad in [
            "wss://h:99999/vnc?s=x",
            "wss://h:0/vnc",
            "wss://h:44a/vnc",
            "wss://h:+443/vnc",
            "wss://[::1]:x/vnc",
            "wss://[::1]junk/vnc",
        ] {
            assert!(
                matches!(VncUrl::parse(bad), Err(Error::Port { .. })),
                "{bad}"
            );
        }
        let v6 = VncUrl::parse("wss://[::1]:8443/vnc").expect("parses");
        assert_eq!((v6.host(), v6.port()), ("::1", 8443));
    }

    #[test]
    fn rejects_other_schemes() {
        for bad in ["https://x/vnc", "", "vnc://x", "wss%3A%2F%2F", "%77ss://x"] {
            assert!(VncUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn debug_and_redacted_hide_token() {
        let url = VncUrl::parse("wss://h:1/vnc?s=SECRETTOKEN&password=pw&isWindows=false")
            .expect("parses");
        let shown = format!("{url:?} {}", url.redacted());
        assert!(!shown.contains("SECRETTOKEN"));
        assert!(!shown.contains("pw&"));
        assert!(shown.contains("isWindows=false"));
    }
}
