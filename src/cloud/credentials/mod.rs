//! The credential provider chain: config → environment → profile file → TKE OIDC → CVM role.
//!
//! Long-term keys are fixed; temporary credentials (TKE OIDC, CVM role) are cached and
//! refreshed before expiry, one fetch at a time however many sessions ask. Secrets are
//! [`Secret`]s; `Debug` shows only a truncated SecretId.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use crate::redact::{self, Secret};

/// Default CVM metadata service.
pub const METADATA_ENDPOINT: &str = "http://metadata.tencentyun.com";
/// Default STS endpoint for `AssumeRoleWithWebIdentity`.
pub const STS_ENDPOINT: &str = "https://sts.tencentcloudapi.com";
/// System-wide profile file.
pub const ETC_PROFILE: &str = "/etc/tencentcloud/credentials";
/// Seconds before `ExpiredTime` at which CVM role credentials are refreshed.
const CVM_REFRESH_EARLY: i64 = 300;
/// Lifetime asked of STS for TKE OIDC credentials.
const TKE_DURATION: i64 = 7200;

/// A usable key pair, with a session token when temporary.
#[derive(Clone)]
pub struct Credential {
    /// SecretId (safe to log truncated).
    pub secret_id: String,
    /// SecretKey.
    pub secret_key: Secret,
    /// Session token of temporary credentials (`X-TC-Token`).
    pub token: Option<Secret>,
    /// Unix time at which the credentials expire.
    pub expires_at: Option<i64>,
    /// Unix time from which a refresh is due.
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

    fn needs_refresh(&self, now: i64) -> bool {
        self.refresh_at.is_some_and(|t| now >= t)
    }

    fn expired(&self, now: i64) -> bool {
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
#[derive(Debug, thiserror::Error)]
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
}

/// A snapshot of the environment variables the chain reads. Tests build one by hand;
/// the daemon takes the process environment once at start.
#[derive(Clone, Default)]
pub struct Env(HashMap<String, String>);

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
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
    pub fn is_set(&self, key: &str) -> bool {
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

/// Where the chain looks, overridable for tests and private deployments.
#[derive(Clone, Debug)]
pub struct ChainOptions {
    /// Base URL of the metadata service.
    pub metadata_endpoint: String,
    /// Base URL of STS.
    pub sts_endpoint: String,
    /// Connect and total timeout for the metadata probe.
    pub metadata_timeout: Duration,
    /// The system-wide profile file.
    pub etc_profile: PathBuf,
    /// TLS for STS.
    pub tls: Arc<rustls::ClientConfig>,
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
        }
    }
}

#[derive(Clone, Debug)]
struct Tke {
    region: String,
    provider_id: String,
    role_arn: String,
    token_file: PathBuf,
}

enum Fetcher {
    Fixed,
    Tke(Tke),
    CvmRole(String),
}

/// The resolved source of credentials, with a single-flight cache.
pub struct Provider {
    fetcher: Fetcher,
    http: reqwest::Client,
    opts: ChainOptions,
    /// Held across a fetch, so concurrent callers wait for that one fetch.
    cache: tokio::sync::Mutex<Option<Arc<Credential>>>,
    fetches: AtomicU64,
    description: String,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("source", &self.description)
            .finish_non_exhaustive()
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl Provider {
    /// A provider that always returns `cred`.
    pub fn fixed(cred: Credential, opts: ChainOptions) -> Result<Self, Error> {
        let description = cred.source.clone();
        Ok(Provider {
            fetcher: Fetcher::Fixed,
            http: http_client(&opts)?,
            opts,
            cache: tokio::sync::Mutex::new(Some(Arc::new(cred))),
            fetches: AtomicU64::new(0),
            description,
        })
    }

    /// Walks the chain and returns the first source that has credentials. Temporary
    /// credentials are fetched once here, so that a broken source fails at start.
    ///
    /// # Errors
    /// [`Error::NotFound`] listing what was tried, or the error of the first source that
    /// is present but broken.
    pub async fn resolve(
        cfg: &ConfigCredentials,
        env: &Env,
        opts: ChainOptions,
    ) -> Result<Self, Error> {
        let mut tried = Vec::new();
        // 1. config
        match (&cfg.secret_id, &cfg.secret_key) {
            (Some(id), Some(key)) => {
                let cred = Credential::fixed(
                    id,
                    key.clone(),
                    cfg.token.clone(),
                    "the config file ([credentials])",
                );
                return Self::fixed(cred, opts);
            }
            (None, None) => tried.push("config: no [credentials]".to_owned()),
            _ => {
                return Err(Error::Incomplete {
                    source_name: "the config file ([credentials])".into(),
                    what: "set both secret_id and secret_key (or secret_key_file)".into(),
                })
            }
        }
        // 2. environment
        if let Some(cred) = from_env(env)? {
            return Self::fixed(cred, opts);
        }
        tried.push("environment: TENCENTCLOUD_SECRET_ID not set".to_owned());
        // 3. profile file
        let (profile, explicit) = match env.get("TENCENTCLOUD_CREDENTIALS_FILE") {
            Some(p) => (Some(PathBuf::from(p)), true),
            None if env.is_set("TENCENTCLOUD_CREDENTIALS_FILE") => {
                return Err(Error::Incomplete {
                    source_name: "environment".into(),
                    what: "TENCENTCLOUD_CREDENTIALS_FILE is set but empty".into(),
                })
            }
            None => (None, false),
        };
        let candidates: Vec<PathBuf> = match profile {
            Some(p) => vec![p],
            None => env
                .get("HOME")
                .map(|h| Path::new(h).join(".tencentcloud/credentials"))
                .into_iter()
                .chain(std::iter::once(opts.etc_profile.clone()))
                .collect(),
        };
        for path in candidates {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let cred = from_profile(&text, &path)?;
                    return Self::fixed(cred, opts);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                    tried.push(format!("profile {}: absent", path.display()));
                }
                Err(e) => {
                    return Err(Error::File {
                        path,
                        cause: e.to_string(),
                    })
                }
            }
        }
        // 4. TKE OIDC, when all of it is configured
        if let Some(tke) = tke_from_env(env) {
            let description = format!("TKE OIDC ({})", tke.role_arn);
            let provider = Provider {
                fetcher: Fetcher::Tke(tke),
                http: http_client(&opts)?,
                opts,
                cache: tokio::sync::Mutex::new(None),
                fetches: AtomicU64::new(0),
                description,
            };
            provider.get().await?;
            return Ok(provider);
        }
        tried.push("TKE OIDC: TKE_* not set".to_owned());
        // 5. CVM role from the metadata service
        let http = http_client(&opts)?;
        match probe_role(&http, &opts).await {
            Ok(Some(role)) => {
                let provider = Provider {
                    description: format!("CVM role {role}"),
                    fetcher: Fetcher::CvmRole(role),
                    http,
                    opts,
                    cache: tokio::sync::Mutex::new(None),
                    fetches: AtomicU64::new(0),
                };
                provider.get().await?;
                Ok(provider)
            }
            Ok(None) => {
                tried.push("CVM role: none bound to this instance".to_owned());
                Err(Error::NotFound {
                    tried: tried.join("; "),
                })
            }
            Err(cause) => {
                tried.push(format!("CVM role: metadata service unreachable ({cause})"));
                Err(Error::NotFound {
                    tried: tried.join("; "),
                })
            }
        }
    }

    /// Where the credentials come from.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// How many times temporary credentials were fetched.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// Current credentials, refreshed first when due. Concurrent callers share one fetch.
    ///
    /// # Errors
    /// The fetch error, when no still-valid credentials are cached.
    pub async fn get(&self) -> Result<Arc<Credential>, Error> {
        let mut cache = self.cache.lock().await;
        let now = now_unix();
        if let Some(cred) = cache.as_ref() {
            if !cred.needs_refresh(now) {
                return Ok(cred.clone());
            }
        }
        match self.fetch().await {
            Ok(fresh) => {
                let fresh = Arc::new(fresh);
                *cache = Some(fresh.clone());
                Ok(fresh)
            }
            Err(e) => match cache.as_ref() {
                Some(old) if !old.expired(now) => {
                    tracing::warn!(error = %e, source = %self.description, "credential refresh failed; using the cached credentials until they expire");
                    Ok(old.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// Drops `rejected` from the cache (if still there) and fetches anew. Long-term
    /// credentials cannot be refreshed and are returned as they are.
    ///
    /// # Errors
    /// The fetch error.
    pub async fn refresh_after_rejection(
        &self,
        rejected: &Arc<Credential>,
    ) -> Result<Arc<Credential>, Error> {
        if matches!(self.fetcher, Fetcher::Fixed) {
            return self.get().await;
        }
        {
            let mut cache = self.cache.lock().await;
            if cache.as_ref().is_some_and(|c| Arc::ptr_eq(c, rejected)) {
                *cache = None;
            }
        }
        self.get().await
    }

    async fn fetch(&self) -> Result<Credential, Error> {
        match &self.fetcher {
            Fetcher::Fixed => Err(Error::Fetch {
                source_name: self.description.clone(),
                cause: "fixed credentials cannot be refreshed".into(),
            }),
            Fetcher::Tke(tke) => {
                self.fetches.fetch_add(1, Ordering::Relaxed);
                fetch_tke(&self.http, &self.opts, tke).await
            }
            Fetcher::CvmRole(role) => {
                self.fetches.fetch_add(1, Ordering::Relaxed);
                fetch_cvm_role(&self.http, &self.opts, role).await
            }
        }
    }
}

fn http_client(opts: &ChainOptions) -> Result<reqwest::Client, Error> {
    reqwest::Client::builder()
        .tls_backend_preconfigured((*opts.tls).clone())
        .connect_timeout(opts.metadata_timeout)
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .map_err(|e| Error::Fetch {
            source_name: "HTTP client".into(),
            cause: e.to_string(),
        })
}

fn from_env(env: &Env) -> Result<Option<Credential>, Error> {
    let id = env.get("TENCENTCLOUD_SECRET_ID");
    let key = env.get("TENCENTCLOUD_SECRET_KEY");
    let (id, key) = match (id, key) {
        (Some(id), Some(key)) => (id, key),
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(Error::Incomplete {
                source_name: "the environment".into(),
                what: "TENCENTCLOUD_SECRET_ID is set but TENCENTCLOUD_SECRET_KEY is not".into(),
            })
        }
        (None, Some(_)) => {
            return Err(Error::Incomplete {
                source_name: "the environment".into(),
                what: "TENCENTCLOUD_SECRET_KEY is set but TENCENTCLOUD_SECRET_ID is not".into(),
            })
        }
    };
    const TOKEN_VARS: [&str; 3] = [
        "TENCENTCLOUD_SESSION_TOKEN",
        "TENCENTCLOUD_TOKEN",
        "TENCENTCLOUD_SECURITY_TOKEN",
    ];
    let tokens: Vec<(&str, &str)> = TOKEN_VARS
        .iter()
        .filter_map(|k| env.get(k).map(|v| (*k, v)))
        .collect();
    if tokens.windows(2).any(|w| w[0].1 != w[1].1) {
        let names: Vec<&str> = tokens.iter().map(|(k, _)| *k).collect();
        tracing::warn!(
            variables = %names.join(", "),
            "several session token variables are set with different values; using {}",
            names[0]
        );
    }
    Ok(Some(Credential::fixed(
        id,
        Secret::new(key),
        tokens.first().map(|(_, v)| Secret::new(*v)),
        "the environment (TENCENTCLOUD_SECRET_ID, TENCENTCLOUD_SECRET_KEY)",
    )))
}

/// Reads `[default]` of an INI profile file: values trimmed, quotes kept.
fn from_profile(text: &str, path: &Path) -> Result<Credential, Error> {
    let mut section = String::new();
    let mut values: HashMap<&str, &str> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
            continue;
        }
        if section == "default" {
            if let Some((k, v)) = line.split_once('=') {
                values.insert(k.trim(), v.trim());
            }
        }
    }
    let source = format!("profile file {}", path.display());
    let get = |k: &str| values.get(k).copied().filter(|v| !v.is_empty());
    match (get("secret_id"), get("secret_key")) {
        (Some(id), Some(key)) => Ok(Credential::fixed(
            id,
            Secret::new(key),
            get("token").map(Secret::new),
            source,
        )),
        _ => Err(Error::Incomplete {
            source_name: source,
            what: "[default] needs secret_id and secret_key".into(),
        }),
    }
}

fn tke_from_env(env: &Env) -> Option<Tke> {
    let token_file = env
        .get("TKE_WEB_IDENTITY_TOKEN_FILE")
        .or_else(|| env.get("TKE_IDENTITY_TOKEN_FILE"))?;
    Some(Tke {
        region: env.get("TKE_REGION")?.to_owned(),
        provider_id: env.get("TKE_PROVIDER_ID")?.to_owned(),
        role_arn: env.get("TKE_ROLE_ARN")?.to_owned(),
        token_file: PathBuf::from(token_file),
    })
}

/// The `Response` envelope shared by STS answers.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(rename = "Response")]
    response: EnvelopeBody<T>,
}

#[derive(Deserialize)]
struct EnvelopeBody<T> {
    #[serde(rename = "Error")]
    error: Option<ApiErrorBody>,
    #[serde(flatten)]
    ok: Option<T>,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

#[derive(Deserialize)]
struct StsAnswer {
    #[serde(rename = "Credentials")]
    credentials: StsCredentials,
    #[serde(rename = "ExpiredTime")]
    expired_time: i64,
}

#[derive(Deserialize)]
struct StsCredentials {
    #[serde(rename = "Token")]
    token: String,
    #[serde(rename = "TmpSecretId")]
    tmp_secret_id: String,
    #[serde(rename = "TmpSecretKey")]
    tmp_secret_key: String,
}

async fn fetch_tke(
    http: &reqwest::Client,
    opts: &ChainOptions,
    tke: &Tke,
) -> Result<Credential, Error> {
    let source_name = format!("TKE OIDC ({})", tke.role_arn);
    let fail = |cause: String| Error::Fetch {
        source_name: source_name.clone(),
        cause,
    };
    // Re-read every time: the kubelet rotates the projected token.
    let web_token = tokio::fs::read_to_string(&tke.token_file)
        .await
        .map_err(|e| Error::File {
            path: tke.token_file.clone(),
            cause: e.to_string(),
        })?;
    let now = now_unix();
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let body = serde_json::json!({
        "ProviderId": tke.provider_id,
        "WebIdentityToken": web_token.trim(),
        "RoleArn": tke.role_arn,
        "RoleSessionName": format!("tcvnc-{micros}"),
        "DurationSeconds": TKE_DURATION,
    });
    let resp = http
        .post(format!("{}/", opts.sts_endpoint.trim_end_matches('/')))
        .header("Authorization", "SKIP")
        .header("Content-Type", "application/json")
        .header("X-TC-Action", "AssumeRoleWithWebIdentity")
        .header("X-TC-Version", "2018-08-13")
        .header("X-TC-Region", &tke.region)
        .header("X-TC-Timestamp", now.to_string())
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| fail(format!("request failed: {}", without_url(&e))))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP status {}", resp.status().as_u16())));
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| fail(format!("reading answer: {}", without_url(&e))))?;
    let env: Envelope<StsAnswer> =
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("unparsable answer: {e}")))?;
    if let Some(err) = env.response.error {
        return Err(fail(format!("{}: {}", err.code, err.message)));
    }
    let ans = env
        .response
        .ok
        .ok_or_else(|| fail("answer has no Credentials".into()))?;
    Ok(Credential {
        secret_id: ans.credentials.tmp_secret_id,
        secret_key: Secret::new(ans.credentials.tmp_secret_key),
        token: Some(Secret::new(ans.credentials.token)),
        expires_at: Some(ans.expired_time),
        refresh_at: Some(ans.expired_time - TKE_DURATION / 10),
        source: source_name,
    })
}

fn role_base(opts: &ChainOptions) -> String {
    format!(
        "{}/latest/meta-data/cam/security-credentials/",
        opts.metadata_endpoint.trim_end_matches('/')
    )
}

/// `Ok(None)`: the service answered 404 (no role). `Err`: not reachable.
async fn probe_role(http: &reqwest::Client, opts: &ChainOptions) -> Result<Option<String>, String> {
    let resp = http
        .get(role_base(opts))
        .timeout(opts.metadata_timeout)
        .send()
        .await
        .map_err(|e| without_url(&e))?;
    match resp.status().as_u16() {
        404 => Ok(None),
        200 => {
            let text = resp.text().await.map_err(|e| without_url(&e))?;
            let role = text.lines().next().unwrap_or_default().trim().to_owned();
            if role.is_empty() {
                Ok(None)
            } else {
                Ok(Some(role))
            }
        }
        s => Err(format!("HTTP status {s}")),
    }
}

#[derive(Deserialize)]
struct RoleAnswer {
    #[serde(rename = "TmpSecretId")]
    tmp_secret_id: Option<String>,
    #[serde(rename = "TmpSecretKey")]
    tmp_secret_key: Option<String>,
    #[serde(rename = "Token")]
    token: Option<String>,
    #[serde(rename = "ExpiredTime")]
    expired_time: Option<i64>,
    #[serde(rename = "Code")]
    code: String,
}

async fn fetch_cvm_role(
    http: &reqwest::Client,
    opts: &ChainOptions,
    role: &str,
) -> Result<Credential, Error> {
    let source_name = format!("CVM role {role}");
    let fail = |cause: String| Error::Fetch {
        source_name: source_name.clone(),
        cause,
    };
    let resp = http
        .get(format!("{}{role}", role_base(opts)))
        .send()
        .await
        .map_err(|e| fail(format!("metadata request failed: {}", without_url(&e))))?;
    if !resp.status().is_success() {
        return Err(fail(format!(
            "metadata HTTP status {}",
            resp.status().as_u16()
        )));
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| fail(format!("reading metadata: {}", without_url(&e))))?;
    let ans: RoleAnswer =
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("unparsable metadata: {e}")))?;
    if ans.code != "Success" {
        return Err(fail(format!("metadata Code is {:?}", ans.code)));
    }
    match (
        ans.tmp_secret_id,
        ans.tmp_secret_key,
        ans.token,
        ans.expired_time,
    ) {
        (Some(id), Some(key), Some(token), Some(exp)) => Ok(Credential {
            secret_id: id,
            secret_key: Secret::new(key),
            token: Some(Secret::new(token)),
            expires_at: Some(exp),
            refresh_at: Some(exp - CVM_REFRESH_EARLY),
            source: source_name,
        }),
        _ => Err(fail(
            "metadata answer lacks TmpSecretId, TmpSecretKey, Token or ExpiredTime".into(),
        )),
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
    fn profile_reads_default_only_and_keeps_quotes() {
        let text = "[other]\nsecret_id = nope\n[default]\n secret_id = AKIDabc \nsecret_key = \"quoted\"\ntoken = tok\n";
        let c = from_profile(text, Path::new("/p")).expect("parses");
        assert_eq!(c.secret_id, "AKIDabc");
        assert_eq!(c.secret_key.expose(), "\"quoted\"");
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("tok"));
        assert!(from_profile("[other]\nsecret_id=a\nsecret_key=b\n", Path::new("/p")).is_err());
    }

    #[test]
    fn env_token_order_and_half_pairs() {
        let env = Env::from_pairs([
            ("TENCENTCLOUD_SECRET_ID", "AKIDenv"),
            ("TENCENTCLOUD_SECRET_KEY", "k"),
            ("TENCENTCLOUD_TOKEN", "t2"),
            ("TENCENTCLOUD_SECURITY_TOKEN", "t3"),
        ]);
        let c = from_env(&env).expect("ok").expect("some");
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("t2"));
        let env = Env::from_pairs([
            ("TENCENTCLOUD_SECRET_ID", "AKIDenv"),
            ("TENCENTCLOUD_SECRET_KEY", ""),
        ]);
        assert!(matches!(from_env(&env), Err(Error::Incomplete { .. })));
        assert!(from_env(&Env::default()).expect("ok").is_none());
    }

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
