//! `[fleet]`: the raw TOML table and its validated form. A leaf: `config` reads it, and
//! nothing here imports the rest of the crate but `redact`, so the fleet's settings stay
//! in one place (the Redis URL is a secret: only its redacted form is ever shown).

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::redact::Secret;

/// `[fleet]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFleet {
    #[serde(default, deserialize_with = "secret")]
    redis: Option<Secret>,
    password_file: Option<PathBuf>,
    key_prefix: Option<String>,
    on_unavailable: Option<OnUnavailable>,
    replicas: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    claim_lease: Option<Duration>,
}

/// Reads a string straight into a [`Secret`], so no `Debug` of the raw table shows it.
fn secret<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
    String::deserialize(d).map(|s| Some(Secret::new(s)))
}

/// What tcvnc does about new URLs while Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnUnavailable {
    /// Refuse new URLs with a reason (the cloud's limits hold whatever happens).
    #[default]
    Refuse,
    /// Spend from a local window of `reconnects_per_minute / replicas`.
    Local,
}

impl OnUnavailable {
    /// The word used in the config.
    pub fn as_str(self) -> &'static str {
        match self {
            OnUnavailable::Refuse => "refuse",
            OnUnavailable::Local => "local",
        }
    }
}

/// `[fleet]`, checked.
#[derive(Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// The Redis URL (may hold a password; never printed).
    pub redis: Secret,
    /// The password from `password_file`, which wins over one in the URL.
    pub password: Option<Secret>,
    /// Prefix of every key tcvnc writes.
    pub key_prefix: String,
    /// Refuse or fall back to a local window while Redis is unreachable.
    pub on_unavailable: OnUnavailable,
    /// The most tcvnc processes that share this Redis: sizes the local fallback and the
    /// rebuild of the shared windows after Redis lost its data.
    pub replicas: NonZeroU32,
    /// How long a console claim outlives a replica that stopped renewing it.
    pub claim_lease: Duration,
}

impl std::fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetConfig")
            .field("redis", &self.redis_display())
            .field("key_prefix", &self.key_prefix)
            .field("on_unavailable", &self.on_unavailable)
            .field("replicas", &self.replicas)
            .field("claim_lease", &self.claim_lease)
            .finish_non_exhaustive()
    }
}

impl FleetConfig {
    /// The URL as it may be logged: no user, no password.
    pub fn redis_display(&self) -> String {
        crate::redact::url(self.redis.expose())
    }
}

/// The default claim lease.
pub(crate) const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// Checks `raw`; `read_secret(key, path)` reads a secret file relative to the config.
/// Errors are `(key, message)`; no message holds the password.
pub(crate) fn validate(
    raw: RawFleet,
    read_secret: impl Fn(&str, &Path) -> Result<Secret, (String, String)>,
) -> Result<FleetConfig, (String, String)> {
    let err = |k: &str, m: String| (format!("fleet.{k}"), m);
    let redis = raw.redis.ok_or_else(|| {
        err(
            "redis",
            "missing: the Redis every replica shares, e.g. \"redis://127.0.0.1:6379/0\"".into(),
        )
    })?;
    let shown = crate::redact::url(redis.expose());
    let scheme = redis.expose().split_once("://").map(|(s, _)| s);
    match scheme {
        Some("redis" | "unix" | "redis+unix") => {}
        Some("rediss") => {
            return Err(err(
                "redis",
                format!("{shown}: TLS to Redis (rediss://) is not built in; reach Redis over a private network or a local TLS tunnel (stunnel, a sidecar) and use redis://"),
            ))
        }
        _ => {
            return Err(err(
                "redis",
                format!("{shown} is not a Redis URL; expected redis://[:PASSWORD@]HOST[:PORT][/DB]"),
            ))
        }
    }
    if let Err(e) = redis::Client::open(redis.expose()) {
        // redis-rs names the part it could not read, never the password.
        return Err(err(
            "redis",
            format!(
                "{shown} is not a usable Redis URL ({}); expected redis://[:PASSWORD@]HOST[:PORT][/DB]",
                format!("{:?}", e.kind()).to_lowercase()
            ),
        ));
    }
    let password = raw
        .password_file
        .as_deref()
        .map(|p| read_secret("fleet.password_file", p))
        .transpose()?;
    let key_prefix = raw.key_prefix.unwrap_or_else(|| "tcvnc".to_owned());
    if key_prefix.is_empty()
        || !key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(err(
            "key_prefix",
            format!(
                "{key_prefix:?}: expected letters, digits, '-', '_', '.' or ':', e.g. \"tcvnc\""
            ),
        ));
    }
    let replicas = raw.replicas.ok_or_else(|| {
        err("replicas", "missing: the most tcvnc processes that will share this Redis (it sizes the local fallback and how long the shared windows are rebuilt after Redis loses its data)".into())
    })?;
    let replicas =
        NonZeroU32::new(replicas).ok_or_else(|| err("replicas", "must be at least 1".into()))?;
    let claim_lease = raw.claim_lease.unwrap_or(DEFAULT_LEASE);
    if claim_lease < Duration::from_secs(1) || claim_lease > Duration::from_secs(600) {
        return Err(err(
            "claim_lease",
            "expected between 1s and 10m (a crashed replica blocks a console for at most this long)".into(),
        ));
    }
    Ok(FleetConfig {
        redis,
        password,
        key_prefix,
        on_unavailable: raw.on_unavailable.unwrap_or_default(),
        replicas,
        claim_lease,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<FleetConfig, (String, String)> {
        let raw: RawFleet = toml::from_str(text).map_err(|e| ("-".into(), e.to_string()))?;
        validate(raw, |k, _| Err((k.to_owned(), "no files here".into())))
    }

    /// The design's example parses; errors name the key and never the password.
    #[test]
    fn keys_defaults_and_errors() {
        let f = parse("redis = \"redis://:hunter2@10.0.0.5:6379/0\"\nreplicas = 3\n").expect("ok");
        assert_eq!(f.key_prefix, "tcvnc");
        assert_eq!(f.on_unavailable, OnUnavailable::Refuse);
        assert_eq!(f.claim_lease, DEFAULT_LEASE);
        assert!(!format!("{f:?}").contains("hunter2"), "{f:?}");
        for (text, key) in [
            ("replicas = 3\n", "fleet.redis"),
            (
                "redis = \"http://:hunter2@h\"\nreplicas = 3\n",
                "fleet.redis",
            ),
            (
                "redis = \"rediss://:hunter2@h\"\nreplicas = 3\n",
                "fleet.redis",
            ),
            ("redis = \"redis://:hunter2@h\"\n", "fleet.replicas"),
            (
                "redis = \"redis://:hunter2@h\"\nreplicas = 0\n",
                "fleet.replicas",
            ),
            (
                "redis = \"redis://:hunter2@h\"\nreplicas = 2\nkey_prefix = \"a b\"\n",
                "fleet.key_prefix",
            ),
            (
                "redis = \"redis://:hunter2@h\"\nreplicas = 2\nclaim_lease = \"1h\"\n",
                "fleet.claim_lease",
            ),
        ] {
            let (k, m) = parse(text).expect_err(text);
            assert_eq!(k, key, "{text}: {m}");
            assert!(!m.contains("hunter2"), "{m}");
        }
    }
}
