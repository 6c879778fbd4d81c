//! The credential provider chain: config → environment → profile file → TKE OIDC → CVM role.
//!
//! Long-term keys are fixed; temporary credentials (TKE OIDC, CVM role) are refreshed by
//! one background task per provider, which publishes them on a `watch` channel: callers
//! read the cache and never wait while it holds valid credentials, and a failing source
//! is asked once per backoff step however many callers there are. Secrets are
//! [`Secret`]s; `Debug` shows only a truncated SecretId.
//!
//! # Layout
//! - `mod.rs`: the shared types ([`Credential`], [`Error`], [`Env`], [`ChainOptions`]).
//! - `provider.rs`: [`Provider`], walking the chain and answering callers from the cache.
//! - `refresh.rs`: the background refresh task, its backoff and the published [`Status`].
//! - `sources.rs`: reading each source (environment, profile file, STS, metadata service).
//! - `proxy.rs`: [`Proxies`] from `HTTPS_PROXY` / `NO_PROXY`, and the HTTP clients.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::redact::{self, Secret};
use crate::shutdown::Shutdown;

mod provider;
mod proxy;
mod refresh;
mod sources;

pub use provider::Provider;
pub use proxy::Proxies;
pub use refresh::{Phase, Status};

/// Default CVM metadata service.
pub(crate) const METADATA_ENDPOINT: &str = "http://metadata.tencentyun.com";
/// Default STS endpoint for `AssumeRoleWithWebIdentity`.
pub(crate) const STS_ENDPOINT: &str = "https://sts.tencentcloudapi.com";
/// System-wide profile file.
pub(crate) const ETC_PROFILE: &str = "/etc/tencentcloud/credentials";

/// A usable key pair, with a session token when temporary.
#[derive(Clone)]
pub struct Credential {
    /// SecretId (safe to log truncated).
    pub secret_id: String,
    /// SecretKey.
    pub secret_key: Secret,
    /// Session token of temporary credentials (`X-TC-Token`).
    pub token: Option<Secret>,
    /// Unix time (server clock) at which the credentials expire.
    pub expires_at: Option<i64>,
    /// Unix time (server clock) from which a refresh is due.
    pub refresh_at: Option<i64>,
    /// Where they came from, for messages.
    pub source: String,
}

impl Credential {
    /// Long-term (or externally managed) credentials that are never refreshed here.
    pub fn fixed(
        secret_id: impl Into<String>,
        secret_key: Secret,
        token: Option<Secret>,
        source: impl Into<String>,
    ) -> Self {
        Credential {
            secret_id: secret_id.into(),
            secret_key,
            token,
            expires_at: None,
            refresh_at: None,
            source: source.into(),
        }
    }

    /// Whether a session token is used (only those can be fixed by a refresh).
    pub fn is_temporary(&self) -> bool {
        self.token.is_some()
    }

    /// Whether a refresh is due at `now` (server clock).
    pub(crate) fn needs_refresh(&self, now: i64) -> bool {
        self.refresh_at.is_some_and(|t| now >= t)
    }

    /// Whether the credentials are expired at `now` (server clock).
    pub fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("secret_id", &redact::secret_id(&self.secret_id))
            .field("secret_key", &self.secret_key)
            .field("token", &self.token)
            .field("expires_at", &self.expires_at)
            .field("source", &self.source)
            .finish()
    }
}

/// Why no credentials could be had.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// Nothing in the chain produced credentials.
    #[error("no Tencent Cloud credentials found (tried: {tried}); set TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY, or [credentials] in the config")]
    NotFound {
        /// What was tried and why each was skipped.
        tried: String,
    },
    /// A source is half configured.
    #[error("credentials in {source_name} are incomplete: {what}")]
    Incomplete {
        /// The source.
        source_name: String,
        /// What is missing.
        what: String,
    },
    /// A credentials file could not be read.
    #[error("cannot read credentials file {}: {cause}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        cause: String,
    },
    /// Fetching temporary credentials failed.
    #[error("cannot get temporary credentials from {source_name}: {cause}")]
    Fetch {
        /// TKE OIDC or CVM role.
        source_name: String,
        /// What went wrong (no secrets).
        cause: String,
    },
    /// Temporary credentials are needed now, nothing valid is cached, and the source
    /// failed (or did not answer in time).
    #[error("no valid credentials from {source_name}: {cause}; {fix}")]
    Unavailable {
        /// TKE OIDC or CVM role.
        source_name: String,
        /// The last fetch's error and when the next attempt is (no secrets).
        cause: String,
        /// What the operator can do.
        fix: String,
    },
    /// The cloud rejected credentials that tcvnc cannot refresh (a fixed key pair or
    /// session token): resending the same request would be refused again.
    #[error("Tencent Cloud rejected the credentials from {source_name}, and tcvnc cannot refresh them (a fixed key or session token); {fix}")]
    Rejected {
        /// The config file, the environment or a profile file.
        source_name: String,
        /// What the operator can do.
        fix: String,
    },
    /// A proxy variable holds something that is not a proxy URL.
    #[error("{variable} is not a usable proxy URL: {cause}")]
    Proxy {
        /// `HTTPS_PROXY`, `https_proxy`, `HTTP_PROXY` or `http_proxy`.
        variable: String,
        /// Why (the value is not repeated: it may hold a password).
        cause: String,
    },
}

/// A snapshot of the environment variables the chain reads. Tests build one by hand;
/// the daemon takes the process environment once at start.
#[derive(Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    /// The process environment.
    pub(crate) fn from_process() -> Self {
        Env(std::env::vars().collect())
    }

    /// An environment made of the given pairs.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env(pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }

    /// The value when set and not empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    /// Whether the variable is present at all (even empty).
    pub(crate) fn is_set(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }
}

/// Credentials given in the config file (already read from `secret_key_file`).
#[derive(Clone, Debug, Default)]
pub struct ConfigCredentials {
    /// `[credentials] secret_id`.
    pub secret_id: Option<String>,
    /// `[credentials] secret_key` or the contents of `secret_key_file`.
    pub secret_key: Option<Secret>,
    /// `[credentials] token` or `token_file`.
    pub token: Option<Secret>,
}

/// Where the chain looks and how it refreshes, overridable for tests and private
/// deployments.
#[derive(Clone, Debug)]
pub struct ChainOptions {
    /// Base URL of the metadata service (never reached through a proxy).
    pub metadata_endpoint: String,
    /// Base URL of STS (reached through `HTTPS_PROXY` when set).
    pub sts_endpoint: String,
    /// Connect and total timeout for the metadata probe.
    pub metadata_timeout: Duration,
    /// The system-wide profile file.
    pub etc_profile: PathBuf,
    /// TLS for STS (the `[cloud] ca_file` anchor included).
    pub tls: Arc<rustls::ClientConfig>,
    /// The refresh task runs on this token and tracker (and also stops when its
    /// [`Provider`] is dropped).
    pub shutdown: Shutdown,
    /// Longest a caller waits for an in-flight fetch when nothing valid is cached.
    pub fetch_wait: Duration,
    /// First backoff step after a failed refresh; doubled each further failure, plus
    /// up to 50 % jitter.
    pub refresh_backoff: Duration,
    /// Largest backoff step.
    pub refresh_backoff_max: Duration,
}

impl ChainOptions {
    /// Production endpoints with the given TLS config.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        ChainOptions {
            metadata_endpoint: METADATA_ENDPOINT.to_owned(),
            sts_endpoint: STS_ENDPOINT.to_owned(),
            metadata_timeout: Duration::from_secs(1),
            etc_profile: PathBuf::from(ETC_PROFILE),
            tls,
            shutdown: Shutdown::new(),
            fetch_wait: Duration::from_secs(12),
            refresh_backoff: Duration::from_secs(1),
            refresh_backoff_max: Duration::from_secs(60),
        }
    }
}

/// A reqwest error's text without the URL it carries.
pub(crate) fn without_url(e: &reqwest::Error) -> String {
    let mut cause = String::new();
    let mut src: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = src {
        cause = s.to_string();
        src = s.source();
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "bad body"
    } else {
        "request failed"
    };
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_secrets() {
        let c = Credential::fixed(
            "AKIDz8krbsJ5yKBZQpn74WFkmLPx3EXAMPLE",
            Secret::new("KEYVALUE"),
            Some(Secret::new("TOKENVALUE")),
            "test",
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("KEYVALUE"));
        assert!(!shown.contains("TOKENVALUE"));
        assert!(!shown.contains("EXAMPLE"));
    }
}
