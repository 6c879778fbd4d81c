//! The TOML config: `RawConfig` (serde, unknown keys refused) → validated [`Config`].
//!
//! Every error names the file, the key and what was expected; secrets are read from
//! their files here, so only checked values reach `run()`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cloud::credentials::ConfigCredentials;
use crate::cloud::{self, Endpoint, EndpointPolicy, Product};
use crate::redact::Secret;

/// The default config paths, in order.
pub(crate) const DEFAULT_PATHS: [&str; 2] = ["tcvnc.toml", "/etc/tcvnc/tcvnc.toml"];

/// A config problem: which file, which key, what was expected.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}: {message}")]
pub struct ConfigError {
    /// The config file (or `<command line>`).
    pub file: String,
    /// The key, dotted (`target[0].listen`).
    pub key: String,
    /// What is wrong and what was expected.
    pub message: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    cloud: RawCloud,
    credentials: Option<RawCredentials>,
    #[serde(default)]
    budget: RawBudget,
    #[serde(default)]
    upstream: RawUpstream,
    http: Option<RawHttp>,
    #[serde(default)]
    session: RawSession,
    #[serde(default)]
    target: Vec<RawTarget>,
    fleet: Option<crate::fleet::config::RawFleet>,
    discovery: Option<RawDiscovery>,
    recording: Option<RawRecording>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRecording {
    dir: Option<PathBuf>,
    #[serde(default)]
    input: bool,
    #[serde(default, with = "humantime_serde")]
    retention: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    keyframe_interval: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDiscovery {
    regions: Option<Vec<String>>,
    tags: Option<BTreeMap<String, String>>,
    names: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    refresh: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCloud {
    product: Option<Product>,
    region: Option<String>,
    endpoint: Option<String>,
    root_domain: Option<String>,
    regional_endpoint: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawCredentials {
    secret_id: Option<String>,
    secret_key: Option<String>,
    secret_key_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    metadata_endpoint: Option<String>,
    sts_endpoint: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    reconnects_per_minute: Option<u32>,
    api_requests_per_second: Option<u32>,
    allow_above_documented_limits: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    max_wait: Option<Duration>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    origin: Option<String>,
    subprotocols: Option<Vec<String>>,
    ca_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    keepalive: Option<Duration>,
    max_unanswered_pings: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Option<String>,
    allowed_origins: Option<Vec<String>>,
    allowed_hosts: Option<Vec<String>>,
    web_root: Option<PathBuf>,
    token_file: Option<PathBuf>,
    view_token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSession {
    max_sessions: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_duration: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    handshake_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    greeting_timeout: Option<Duration>,
    unauthenticated_per_peer: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    shutdown_grace: Option<Duration>,
    connections_per_peer_per_minute: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    type_interval: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    instance: String,
    region: Option<String>,
    listen: Option<String>,
    on_busy: Option<OnBusy>,
    password_file: Option<PathBuf>,
    upstream_password_file: Option<PathBuf>,
    view_password_file: Option<PathBuf>,
    transparent: Option<bool>,
    mode: Option<Mode>,
    #[serde(default, with = "humantime_serde")]
    linger: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    resume_timeout: Option<Duration>,
}

/// How a target's viewers reach its console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The RFB-aware byte bridge: tcvnc does both handshakes, then copies bytes; one
    /// upstream connection per viewer.
    #[default]
    Bridge,
    /// The console engine: tcvnc is an RFB client of the console and an RFB server to
    /// its viewers, with the screen in between; viewers survive upstream drops.
    Console,
    /// The pure byte bridge: no RFB handling at all.
    Transparent,
}

impl Mode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Bridge => "bridge",
            Mode::Console => "console",
            Mode::Transparent => "transparent",
        }
    }
}

/// `[session] type_interval` when not set: QEMU's and x11vnc's consoles keep up with
/// a key event every few milliseconds; a BIOS screen may need more.
pub const DEFAULT_TYPE_INTERVAL: Duration = Duration::from_millis(5);

/// `linger` when not set: a page reload or a viewer restart finds the upstream still open.
pub const DEFAULT_LINGER: Duration = Duration::from_secs(30);
/// `resume_timeout` when not set: long enough for an instance to reboot.
pub const DEFAULT_RESUME_TIMEOUT: Duration = Duration::from_secs(600);

/// What a new client gets when the instance's console is already in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum OnBusy {
    /// Refuse the newcomer with a reason naming the holder.
    #[default]
    Reject,
    /// Close the current session and serve the newcomer.
    Takeover,
    /// Console mode: every viewer joins the one console connection.
    Share,
}

impl OnBusy {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            OnBusy::Reject => "reject",
            OnBusy::Takeover => "takeover",
            OnBusy::Share => "share",
        }
    }
}

/// `[cloud]`.
#[derive(Debug, Clone)]
pub struct CloudConfig {
    /// CVM or Lighthouse.
    pub product: Product,
    /// Default region of targets.
    pub region: Option<String>,
    /// Endpoint choice.
    pub endpoints: EndpointPolicy,
    /// API connect timeout.
    pub connect_timeout: Duration,
    /// API request timeout.
    pub timeout: Duration,
    /// Extra trust anchor (PEM) for the API and STS, e.g. a TLS-intercepting proxy's CA;
    /// checked to hold certificates at load.
    pub ca_file: Option<PathBuf>,
}

/// `[credentials]`, with secret files read.
#[derive(Debug, Clone, Default)]
pub struct CredentialsConfig {
    /// Key pair and token from the config.
    pub given: ConfigCredentials,
    /// Metadata service override.
    pub metadata_endpoint: Option<String>,
    /// STS override.
    pub sts_endpoint: Option<String>,
    /// The SecretKey was written inline (`secret_key`), not read from a file.
    pub secret_key_inline: bool,
}

/// `[budget]`.
#[derive(Debug, Clone)]
pub struct BudgetConfig {
    /// URLs per instance in any 60 s window.
    pub reconnects_per_minute: NonZeroU32,
    /// API requests per second per action, endpoint and credential.
    pub api_requests_per_second: NonZeroU32,
    /// How long a client may wait for budget.
    pub max_wait: Duration,
}

/// The cloud's documented limits: 30 console URLs per instance per minute, 10 API
/// requests per second. Above them only with `allow_above_documented_limits`.
pub(crate) const DOCUMENTED_RECONNECTS_PER_MINUTE: u32 = 30;
/// See [`DOCUMENTED_RECONNECTS_PER_MINUTE`].
pub(crate) const DOCUMENTED_API_REQUESTS_PER_SECOND: u32 = 10;
/// The fewest bits of entropy an HTTP bearer token may have.
pub(crate) const MIN_TOKEN_BITS: f64 = 128.0;
/// VNC Authentication uses the first 8 bytes of a password.
pub(crate) const VNC_PASSWORD_MAX: usize = 8;

/// `[upstream]`.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// `Origin` sent to the gateway; `None` sends none.
    pub origin: Option<String>,
    /// Subprotocols offered.
    pub subprotocols: Vec<String>,
    /// Extra trust anchor.
    pub ca_file: Option<PathBuf>,
    /// TCP + TLS + websocket handshake timeout.
    pub connect_timeout: Duration,
    /// Ping interval (zero: no pings).
    pub keepalive: Duration,
    /// Unanswered pings before the upstream is declared dead.
    pub max_unanswered_pings: u32,
}

/// `[http]`.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Origins allowed besides same-origin.
    pub allowed_origins: Vec<String>,
    /// `Host` names accepted besides this server's address, localhost, 127.0.0.1 and
    /// [::1] (lowercased; `name` for any port, `name:port` for one).
    pub allowed_hosts: Vec<String>,
    /// noVNC files to serve at `/`.
    pub web_root: Option<PathBuf>,
    /// Bearer token required on every request (needed off loopback); it gives control.
    pub token: Option<Secret>,
    /// A second bearer token that gives the view-only role (console mode).
    pub view_token: Option<Secret>,
}

/// `[session]`.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Concurrent sessions across all listeners.
    pub max_sessions: usize,
    /// Close a session with no traffic for this long (zero: never).
    pub idle_timeout: Duration,
    /// Close a session after this long (zero: never).
    pub max_duration: Duration,
    /// Bound on each client handshake phase (local authentication included).
    pub handshake_timeout: Duration,
    /// Bound on the RFB version exchange, the first thing a client does.
    pub greeting_timeout: Duration,
    /// Connections one address may hold before they have greeted and authenticated.
    pub unauthenticated_per_peer: usize,
    /// How long shutdown waits for sessions to end.
    pub shutdown_grace: Duration,
    /// New connections one client address may open per minute (both listeners).
    pub connections_per_peer_per_minute: NonZeroU32,
    /// Console mode's typing (`/vnc/<instance>/type`, `tcvnc type`): the pause after each
    /// key event, so that consoles keep up.
    pub type_interval: Duration,
}

/// One `[[target]]`.
#[derive(Debug, Clone)]
pub struct Target {
    /// Instance id.
    pub instance: String,
    /// Region (own or `[cloud] region`).
    pub region: String,
    /// Raw TCP listener for native viewers.
    pub listen: Option<SocketAddr>,
    /// Busy policy.
    pub on_busy: OnBusy,
    /// Local VNC password.
    pub password: Option<Secret>,
    /// Upstream VNC password.
    pub upstream_password: Option<Secret>,
    /// Console mode: the VNC password of view-only viewers.
    pub view_password: Option<Secret>,
    /// How viewers reach the console.
    pub mode: Mode,
    /// `transparent = true` was used (the old spelling of `mode = "transparent"`).
    pub transparent_alias: bool,
    /// Console mode: how long the upstream stays open after the last viewer leaves.
    pub linger: Duration,
    /// Console mode: how long viewers wait for a lost console to come back.
    pub resume_timeout: Duration,
}

impl Target {
    /// A pure byte bridge (no RFB handling).
    pub fn transparent(&self) -> bool {
        self.mode == Mode::Transparent
    }
}

/// `[discovery]`: instances listed through `DescribeInstances`, refreshed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Regions listed, in order (`[cloud] region` when not set).
    pub regions: Vec<String>,
    /// Tags an instance must all carry (key → value).
    pub tags: BTreeMap<String, String>,
    /// Name patterns (`*` any run of characters, `?` one); an instance matching any is
    /// listed. Empty: every name.
    pub names: Vec<String>,
    /// How often the list is refreshed.
    pub refresh: Duration,
}

/// `[recording]`: console-mode sessions recorded to files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingConfig {
    /// Where recordings and their sidecars go (created 0700 when missing).
    pub dir: PathBuf,
    /// Also record what viewers send (keystrokes included): off by default.
    pub input: bool,
    /// Recordings older than this are deleted; `None` keeps them.
    pub retention: Option<Duration>,
    /// The most recording time between two keyframes (whole screens that `tcvnc play
    /// --from` seeks to); default [`DEFAULT_KEYFRAME_INTERVAL`].
    pub keyframe_interval: Duration,
}

/// `[recording] keyframe_interval` when left out: a seek decodes at most a minute.
pub const DEFAULT_KEYFRAME_INTERVAL: Duration = Duration::from_secs(60);

/// The most tags `[discovery]` may filter on: the cloud takes 10 filters per request and
/// one is kept for `instance-name`.
pub(crate) const MAX_DISCOVERY_TAGS: usize = 9;

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from.
    pub source: String,
    /// Files holding secrets (the config file itself when it has an inline key), with
    /// the key that names them, for the permission check at startup.
    pub secret_files: Vec<(String, PathBuf)>,
    /// `[cloud]`.
    pub cloud: CloudConfig,
    /// `[credentials]`.
    pub credentials: CredentialsConfig,
    /// `[budget]`.
    pub budget: BudgetConfig,
    /// `[upstream]`.
    pub upstream: UpstreamConfig,
    /// `[http]`, when configured.
    pub http: Option<HttpConfig>,
    /// `[session]`.
    pub session: SessionConfig,
    /// `[[target]]`s.
    pub targets: Vec<Target>,
    /// `[discovery]`, when configured.
    pub discovery: Option<DiscoveryConfig>,
    /// `[fleet]`: budgets and claims shared with other tcvnc processes through Redis.
    pub fleet: Option<crate::fleet::FleetConfig>,
    /// `[recording]`, when configured.
    pub recording: Option<RecordingConfig>,
}

struct Ctx<'a> {
    file: &'a str,
    base: &'a Path,
    secret_files: std::cell::RefCell<Vec<(String, PathBuf)>>,
}

impl Ctx<'_> {
    fn err(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_owned(),
            key: key.into(),
            message: message.into(),
        }
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base.join(p)
        }
    }

    fn read_secret(&self, key: &str, p: &Path) -> Result<Secret, ConfigError> {
        let path = self.path(p);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| self.err(key, format!("cannot read {}: {e}", path.display())))?;
        let value = text.trim_end_matches(['\n', '\r']);
        if value.is_empty() {
            return Err(self.err(key, format!("{} is empty", path.display())));
        }
        self.secret_files.borrow_mut().push((key.to_owned(), path));
        Ok(Secret::new(value))
    }

    fn addr(&self, key: &str, value: &str) -> Result<SocketAddr, ConfigError> {
        value.parse().map_err(|_| {
            self.err(
                key,
                format!("{value:?} is not an address; expected IP:PORT, e.g. 127.0.0.1:5901"),
            )
        })
    }
}

impl Config {
    /// Reads and validates `path`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file and key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: "-".into(),
            message: format!("cannot read the config file: {e}"),
        })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Self::parse(&text, &file, base)
    }

    /// Finds the config: `explicit`, else the first default path that exists.
    ///
    /// # Errors
    /// When `explicit` fails to load, or a default one exists and fails.
    pub(crate) fn locate(explicit: Option<&Path>) -> Result<Option<Config>, ConfigError> {
        if let Some(p) = explicit {
            return Self::load(p).map(Some);
        }
        for p in DEFAULT_PATHS {
            let p = Path::new(p);
            if p.exists() {
                return Self::load(p).map(Some);
            }
        }
        Ok(None)
    }

    /// Parses and validates config text; relative paths resolve against `base`.
    ///
    /// # Errors
    /// [`ConfigError`] naming the key.
    pub fn parse(text: &str, file: &str, base: &Path) -> Result<Config, ConfigError> {
        let ctx = Ctx {
            file,
            base,
            secret_files: Default::default(),
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|s| key_at(text, s.start))
                .unwrap_or_else(|| "-".into());
            ctx.err(key, e.message().to_owned())
        })?;
        Self::validate(raw, &ctx)
    }

    /// The config used when no file is given: no targets, defaults everywhere.
    pub(crate) fn defaults() -> Config {
        let ctx = Ctx {
            file: "<defaults>",
            base: Path::new("."),
            secret_files: Default::default(),
        };
        // Defaults always validate.
        Self::validate(RawConfig::default(), &ctx).unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn validate(raw: RawConfig, ctx: &Ctx<'_>) -> Result<Config, ConfigError> {
        let product = raw.cloud.product.unwrap_or(Product::Cvm);
        let override_endpoint: Option<Endpoint> = raw
            .cloud
            .endpoint
            .as_deref()
            .map(cloud::parse_endpoint)
            .transpose()
            .map_err(|m| ctx.err("cloud.endpoint", m))?;
        let root_domain = raw
            .cloud
            .root_domain
            .unwrap_or_else(|| cloud::ROOT_DOMAIN.to_owned());
        if root_domain.is_empty() || root_domain.contains(['/', ':']) {
            return Err(ctx.err(
                "cloud.root_domain",
                "expected a domain such as tencentcloudapi.com or intl.tencentcloudapi.com",
            ));
        }
        let cloud = CloudConfig {
            product,
            region: raw.cloud.region,
            endpoints: EndpointPolicy {
                override_endpoint,
                root_domain,
                regional: raw.cloud.regional_endpoint.unwrap_or(false),
            },
            connect_timeout: nonzero_dur(
                ctx,
                "cloud.connect_timeout",
                raw.cloud.connect_timeout,
                5,
            )?,
            timeout: nonzero_dur(ctx, "cloud.timeout", raw.cloud.timeout, 10)?,
            ca_file: raw.cloud.ca_file.map(|p| ctx.path(&p)),
        };
        if let Some(p) = &cloud.ca_file {
            crate::tls::read_certs(p).map_err(|e| ctx.err("cloud.ca_file", e.to_string()))?;
        }

        let credentials = match raw.credentials {
            None => CredentialsConfig::default(),
            Some(c) => {
                let secret_key_inline = c.secret_key.is_some();
                let secret_key = match (c.secret_key, &c.secret_key_file) {
                    (Some(_), Some(_)) => {
                        return Err(ctx.err(
                            "credentials.secret_key",
                            "set secret_key or secret_key_file, not both",
                        ))
                    }
                    (Some(k), None) if k.is_empty() => {
                        return Err(ctx.err("credentials.secret_key", "is empty"))
                    }
                    (Some(k), None) => Some(Secret::new(k)),
                    (None, Some(f)) => Some(ctx.read_secret("credentials.secret_key_file", f)?),
                    (None, None) => None,
                };
                if c.secret_id.is_some() != secret_key.is_some() {
                    return Err(ctx.err(
                        "credentials",
                        "secret_id and secret_key (or secret_key_file) go together; set both or neither",
                    ));
                }
                let token = c
                    .token_file
                    .as_deref()
                    .map(|f| ctx.read_secret("credentials.token_file", f))
                    .transpose()?;
                for (key, v) in [
                    ("credentials.metadata_endpoint", &c.metadata_endpoint),
                    ("credentials.sts_endpoint", &c.sts_endpoint),
                ] {
                    if let Some(v) = v {
                        cloud::parse_endpoint(v).map_err(|m| ctx.err(key, m))?;
                    }
                }
                CredentialsConfig {
                    given: ConfigCredentials {
                        secret_id: c.secret_id,
                        secret_key,
                        token,
                    },
                    metadata_endpoint: c.metadata_endpoint,
                    sts_endpoint: c.sts_endpoint,
                    secret_key_inline,
                }
            }
        };

        let nz = |key: &str, v: Option<u32>, default: u32| {
            NonZeroU32::new(v.unwrap_or(default)).ok_or_else(|| ctx.err(key, "must be at least 1"))
        };
        let budget = BudgetConfig {
            reconnects_per_minute: nz(
                "budget.reconnects_per_minute",
                raw.budget.reconnects_per_minute,
                30,
            )?,
            api_requests_per_second: nz(
                "budget.api_requests_per_second",
                raw.budget.api_requests_per_second,
                10,
            )?,
            max_wait: raw.budget.max_wait.unwrap_or(Duration::from_secs(15)),
        };
        if !raw.budget.allow_above_documented_limits.unwrap_or(false) {
            for (key, value, limit, unit) in [
                (
                    "budget.reconnects_per_minute",
                    budget.reconnects_per_minute.get(),
                    DOCUMENTED_RECONNECTS_PER_MINUTE,
                    "console URLs per instance per minute",
                ),
                (
                    "budget.api_requests_per_second",
                    budget.api_requests_per_second.get(),
                    DOCUMENTED_API_REQUESTS_PER_SECOND,
                    "API requests per second",
                ),
            ] {
                if value > limit {
                    return Err(ctx.err(
                        key,
                        format!("{value} is above Tencent Cloud's documented {limit} {unit}; the cloud would refuse the excess. Lower it, or, if your account's quota was raised, set budget.allow_above_documented_limits = true"),
                    ));
                }
            }
        }

        let subprotocols = raw
            .upstream
            .subprotocols
            .unwrap_or_else(|| vec!["binary".to_owned()]);
        for (i, p) in subprotocols.iter().enumerate() {
            if p.is_empty()
                || !p
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
            {
                return Err(ctx.err(
                    format!("upstream.subprotocols[{i}]"),
                    "a subprotocol is a non-empty token (RFC 7230): no spaces, control characters (CR, LF) or separators",
                ));
            }
        }
        let origin = match raw.upstream.origin {
            None => Some("https://img.qcloud.com".to_owned()),
            Some(o) if o.is_empty() => None,
            Some(o) => {
                if o.chars().any(char::is_control) {
                    return Err(ctx.err(
                        "upstream.origin",
                        "contains a control character (CR, LF, tab…), which would break the request header; expected an origin such as https://img.qcloud.com",
                    ));
                }
                if !(o.starts_with("https://") || o.starts_with("http://"))
                    || o.contains(char::is_whitespace)
                {
                    return Err(ctx.err(
                        "upstream.origin",
                        "expected an origin such as https://img.qcloud.com, or \"\" to send none",
                    ));
                }
                Some(o)
            }
        };
        let ca_file = raw.upstream.ca_file.map(|p| ctx.path(&p));
        if let Some(p) = &ca_file {
            crate::tls::read_certs(p).map_err(|e| ctx.err("upstream.ca_file", e.to_string()))?;
        }
        let upstream = UpstreamConfig {
            origin,
            subprotocols,
            ca_file,
            connect_timeout: nonzero_dur(
                ctx,
                "upstream.connect_timeout",
                raw.upstream.connect_timeout,
                10,
            )?,
            keepalive: raw.upstream.keepalive.unwrap_or(Duration::from_secs(25)),
            max_unanswered_pings: raw.upstream.max_unanswered_pings.unwrap_or(3).max(1),
        };

        let http = match raw.http {
            None => None,
            Some(h) => {
                let listen = ctx.addr(
                    "http.listen",
                    h.listen.as_deref().unwrap_or("127.0.0.1:6080"),
                )?;
                let allowed_origins = h.allowed_origins.unwrap_or_default();
                for (i, o) in allowed_origins.iter().enumerate() {
                    if !(o.starts_with("http://") || o.starts_with("https://")) || o.ends_with('/')
                    {
                        return Err(ctx.err(
                            format!("http.allowed_origins[{i}]"),
                            format!("{o:?} is not an origin; expected scheme://host[:port] with no path"),
                        ));
                    }
                }
                let allowed_hosts = h.allowed_hosts.unwrap_or_default();
                for (i, a) in allowed_hosts.iter().enumerate() {
                    let bare = a
                        .rsplit_once(':')
                        .filter(|(h, p)| {
                            !h.ends_with('[')
                                && !h.is_empty()
                                && p.parse::<u16>().is_ok()
                                && !a.ends_with(']')
                        })
                        .map_or(a.as_str(), |(h, _)| h);
                    let ok = !bare.is_empty()
                        && bare
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-.[]:".contains(&b))
                        && !a.contains("://");
                    if !ok {
                        return Err(ctx.err(
                            format!("http.allowed_hosts[{i}]"),
                            format!("{a:?} is not a host name; expected name or name:port, e.g. \"console.example.com\" (no scheme or path)"),
                        ));
                    }
                }
                let allowed_hosts = allowed_hosts
                    .into_iter()
                    .map(|a| a.to_ascii_lowercase())
                    .collect();
                let token = h
                    .token_file
                    .as_deref()
                    .map(|f| ctx.read_secret("http.token_file", f))
                    .transpose()?;
                if let Some(t) = &token {
                    let bits = token_bits(t.expose());
                    if bits < MIN_TOKEN_BITS {
                        return Err(ctx.err(
                            "http.token_file",
                            format!("the token has about {bits:.0} bits of entropy; at least {MIN_TOKEN_BITS:.0} are required. Make one with `openssl rand -hex 32 > FILE` or `head -c 32 /dev/urandom | base64 > FILE`"),
                        ));
                    }
                }
                let view_token = h
                    .view_token_file
                    .as_deref()
                    .map(|f| ctx.read_secret("http.view_token_file", f))
                    .transpose()?;
                if let Some(t) = &view_token {
                    let bits = token_bits(t.expose());
                    if bits < MIN_TOKEN_BITS {
                        return Err(ctx.err(
                            "http.view_token_file",
                            format!("the token has about {bits:.0} bits of entropy; at least {MIN_TOKEN_BITS:.0} are required. Make one with `openssl rand -hex 32 > FILE`"),
                        ));
                    }
                    match &token {
                        None => {
                            return Err(ctx.err(
                                "http.view_token_file",
                                "a view-only token needs http.token_file too (without it every client has control, so the view-only token would restrict no one)",
                            ))
                        }
                        Some(c) if c.expose() == t.expose() => {
                            return Err(ctx.err(
                                "http.view_token_file",
                                "the view-only token equals http.token_file's: use two different tokens",
                            ))
                        }
                        Some(_) => {}
                    }
                }
                if !listen.ip().is_loopback() && token.is_none() {
                    return Err(ctx.err(
                        "http.listen",
                        format!("{listen} is not a loopback address; set http.token_file so that clients must authenticate, or listen on 127.0.0.1"),
                    ));
                }
                Some(HttpConfig {
                    listen,
                    allowed_origins,
                    allowed_hosts,
                    web_root: h.web_root.map(|p| ctx.path(&p)),
                    token,
                    view_token,
                })
            }
        };

        let session = SessionConfig {
            max_sessions: match raw.session.max_sessions {
                Some(0) => return Err(ctx.err("session.max_sessions", "must be at least 1")),
                Some(n) => n,
                None => 256,
            },
            idle_timeout: raw.session.idle_timeout.unwrap_or(Duration::ZERO),
            max_duration: raw.session.max_duration.unwrap_or(Duration::ZERO),
            handshake_timeout: nonzero_dur(
                ctx,
                "session.handshake_timeout",
                raw.session.handshake_timeout,
                30,
            )?,
            // The greeting is a step of the handshake: never longer than its bound.
            greeting_timeout: nonzero_dur(
                ctx,
                "session.greeting_timeout",
                raw.session.greeting_timeout,
                10,
            )?
            .min(raw.session.handshake_timeout.unwrap_or(Duration::MAX)),
            unauthenticated_per_peer: match raw.session.unauthenticated_per_peer {
                Some(0) => {
                    return Err(ctx.err("session.unauthenticated_per_peer", "must be at least 1"))
                }
                Some(n) => n,
                None => 32,
            },
            shutdown_grace: raw
                .session
                .shutdown_grace
                .unwrap_or(Duration::from_secs(10)),
            connections_per_peer_per_minute: NonZeroU32::new(
                raw.session.connections_per_peer_per_minute.unwrap_or(600),
            )
            .ok_or_else(|| {
                ctx.err(
                    "session.connections_per_peer_per_minute",
                    "must be at least 1",
                )
            })?,
            type_interval: match raw.session.type_interval {
                Some(d) if d > Duration::from_secs(1) => {
                    return Err(ctx.err(
                        "session.type_interval",
                        "at most 1s between key events (typing 1,000 characters would take over half an hour)",
                    ))
                }
                Some(d) => d,
                None => DEFAULT_TYPE_INTERVAL,
            },
        };

        let mut targets: Vec<Target> = Vec::new();
        for (i, t) in raw.target.into_iter().enumerate() {
            let key = |k: &str| format!("target[{i}].{k}");
            if !cloud::instance_id_valid(product, &t.instance) {
                return Err(ctx.err(
                    key("instance"),
                    format!(
                        "{:?} is not a {} instance ID; expected {}xxxxxxxx (8 lowercase letters or digits)",
                        t.instance,
                        product.service(),
                        product.id_prefix()
                    ),
                ));
            }
            if targets.iter().any(|o| o.instance == t.instance) {
                return Err(ctx.err(key("instance"), format!("{} is listed twice", t.instance)));
            }
            let region = t.region.or_else(|| cloud.region.clone()).ok_or_else(|| {
                ctx.err(key("region"), "no region: set it here or in [cloud] region")
            })?;
            check_region(ctx, &key("region"), &region)?;
            let listen = t
                .listen
                .as_deref()
                .map(|l| ctx.addr(&key("listen"), l))
                .transpose()?;
            if let Some(l) = listen.filter(|l| l.port() != 0) {
                if targets.iter().any(|o| o.listen == Some(l))
                    || http
                        .as_ref()
                        .is_some_and(|h| h.listen == l && l.port() != 0)
                {
                    return Err(ctx.err(key("listen"), format!("{l} is used twice")));
                }
            }
            let vnc_password = |k: &str, f: &Path| -> Result<Secret, ConfigError> {
                let pw = ctx.read_secret(&key(k), f)?;
                if pw.expose().len() > VNC_PASSWORD_MAX {
                    return Err(ctx.err(
                        key(k),
                        format!("the password is {} bytes long; VNC Authentication uses only the first {VNC_PASSWORD_MAX}, so the rest would be silently ignored. Use a password of at most {VNC_PASSWORD_MAX} characters", pw.expose().len()),
                    ));
                }
                Ok(pw)
            };
            let password = t
                .password_file
                .as_deref()
                .map(|f| vnc_password("password_file", f))
                .transpose()?;
            let upstream_password = t
                .upstream_password_file
                .as_deref()
                .map(|f| vnc_password("upstream_password_file", f))
                .transpose()?;
            let mode = match (t.mode, t.transparent) {
                (Some(m), Some(true)) if m != Mode::Transparent => {
                    return Err(ctx.err(
                        key("transparent"),
                        format!("transparent = true contradicts mode = \"{}\": drop transparent (mode = \"transparent\" is its new spelling)", m.as_str()),
                    ));
                }
                (Some(m), _) => m,
                (None, Some(true)) => Mode::Transparent,
                (None, _) => Mode::default(),
            };
            let transparent_alias = t.transparent == Some(true);
            let view_password = t
                .view_password_file
                .as_deref()
                .map(|f| vnc_password("view_password_file", f))
                .transpose()?;
            if mode != Mode::Console {
                if view_password.is_some() {
                    return Err(ctx.err(
                        key("view_password_file"),
                        "view-only viewers exist in console mode only: set mode = \"console\" or drop view_password_file",
                    ));
                }
                if t.on_busy == Some(OnBusy::Share) {
                    return Err(ctx.err(
                        key("on_busy"),
                        "on_busy = \"share\" needs mode = \"console\" (in bridge mode each viewer has its own console connection, and a console takes one at a time)",
                    ));
                }
            }
            if let (Some(c), Some(v)) = (&password, &view_password) {
                if c.expose() == v.expose() {
                    return Err(ctx.err(
                        key("view_password_file"),
                        "the view-only password equals password_file's: a viewer giving it could not be told apart; use two different passwords",
                    ));
                }
            }
            if mode == Mode::Transparent && (password.is_some() || upstream_password.is_some()) {
                // Named as the user wrote it.
                return Err(ctx.err(
                    key(if transparent_alias { "transparent" } else { "mode" }),
                    "a transparent target is a pure byte bridge: it cannot check password_file or answer upstream_password_file",
                ));
            }
            if mode != Mode::Console {
                for (k, set) in [
                    ("linger", t.linger.is_some()),
                    ("resume_timeout", t.resume_timeout.is_some()),
                ] {
                    if set {
                        return Err(ctx.err(
                            key(k),
                            format!("{k} applies to console mode only: set mode = \"console\" or drop {k}"),
                        ));
                    }
                }
            }
            let linger = t.linger.unwrap_or(DEFAULT_LINGER);
            let resume_timeout = t.resume_timeout.unwrap_or(DEFAULT_RESUME_TIMEOUT);
            if mode == Mode::Console && resume_timeout.is_zero() {
                return Err(ctx.err(
                    key("resume_timeout"),
                    "resume_timeout must be above 0 (viewers would be closed at the first drop; use mode = \"bridge\" for that)",
                ));
            }
            if let Some(l) = listen {
                if !l.ip().is_loopback() && password.is_none() && view_password.is_none() {
                    return Err(ctx.err(
                        key("listen"),
                        format!("{l} is not a loopback address; set password_file so that viewers must authenticate, or listen on 127.0.0.1"),
                    ));
                }
            }
            targets.push(Target {
                instance: t.instance,
                region,
                listen,
                on_busy: t.on_busy.unwrap_or_default(),
                password,
                upstream_password,
                view_password,
                mode,
                transparent_alias,
                linger,
                resume_timeout,
            });
        }

        let discovery = raw
            .discovery
            .map(|d| discovery(ctx, d, cloud.region.as_deref()))
            .transpose()?;
        let fleet = raw
            .fleet
            .map(|f| {
                crate::fleet::config::validate(f, |key, p| {
                    ctx.read_secret(key, p).map_err(|e| (e.key, e.message))
                })
            })
            .transpose()
            .map_err(|(key, message)| ctx.err(key, message))?;

        let recording = raw.recording.map(|r| recording(ctx, r)).transpose()?;

        let mut secret_files = ctx.secret_files.take();
        if credentials.secret_key_inline && ctx.file.ends_with(".toml") {
            secret_files.push(("credentials.secret_key".into(), PathBuf::from(ctx.file)));
        }
        Ok(Config {
            source: ctx.file.to_owned(),
            secret_files,
            cloud,
            credentials,
            budget,
            upstream,
            http,
            session,
            targets,
            discovery,
            fleet,
            recording,
        })
    }

    /// Legal but odd settings worth a warning at start: limits raised above the cloud's
    /// documented ones, an inline key, secret files others can read.
    pub fn lints(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.budget.reconnects_per_minute.get() > DOCUMENTED_RECONNECTS_PER_MINUTE {
            out.push(format!(
                "budget.reconnects_per_minute = {} is above Tencent Cloud's documented {DOCUMENTED_RECONNECTS_PER_MINUTE} per minute (allowed by allow_above_documented_limits): make sure the account's quota was raised",
                self.budget.reconnects_per_minute
            ));
        }
        if self.budget.api_requests_per_second.get() > DOCUMENTED_API_REQUESTS_PER_SECOND {
            out.push(format!(
                "budget.api_requests_per_second = {} is above the API's documented {DOCUMENTED_API_REQUESTS_PER_SECOND} per second (allowed by allow_above_documented_limits): expect RequestLimitExceeded unless the quota was raised",
                self.budget.api_requests_per_second
            ));
        }
        out.extend(readable_secret_files(&self.secret_files));
        if self.credentials.secret_key_inline {
            out.push(
                "credentials.secret_key is written in the config file; prefer secret_key_file (or LoadCredential= under systemd) so the key lives in a file only tcvnc reads".into(),
            );
        }
        if self.recording.is_some() && !self.targets.iter().any(|t| t.mode == Mode::Console) {
            out.push(
                "[recording] is set but no [[target]] has mode = \"console\": only console-mode sessions are recorded, so nothing will be".into(),
            );
        }
        if let Some(f) = &self.fleet {
            let per_minute = self.budget.reconnects_per_minute.get();
            if f.on_unavailable == crate::fleet::OnUnavailable::Local
                && per_minute < f.replicas.get()
            {
                out.push(format!(
                    "fleet.on_unavailable = \"local\" with fleet.replicas = {} and budget.reconnects_per_minute = {per_minute}: the local share is 0, so new URLs are refused while Redis is away",
                    f.replicas
                ));
            }
        }
        for t in self.targets.iter().filter(|t| t.transparent_alias) {
            out.push(format!(
                "target {}: transparent = true is the old spelling of mode = \"transparent\"; it still works, but write mode = \"transparent\"",
                t.instance
            ));
        }
        if self.upstream.connect_timeout > Duration::from_secs(15) {
            out.push("upstream.connect_timeout is over 15 s, longer than a URL stays valid".into());
        }
        out
    }

    /// The target for `instance`.
    pub fn target(&self, instance: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.instance == instance)
    }
}

/// A warning for each secret file that its group or others can read.
fn readable_secret_files(files: &[(String, PathBuf)]) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (key, path) in files {
        if !seen.insert(path.clone()) {
            continue;
        }
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let mode = meta.permissions().mode();
        if mode & 0o044 != 0 {
            out.push(format!(
                "{key}: {} holds a secret and is readable by {} (mode {:o}): chmod 600 {}",
                path.display(),
                if mode & 0o004 != 0 {
                    "every user"
                } else {
                    "its group"
                },
                mode & 0o777,
                path.display()
            ));
        }
    }
    out
}

/// About how many bits of entropy `token` has: its length times the bits per character
/// of the smallest alphabet it fits (hex, base64, printable ASCII); a token made of
/// fewer than 8 distinct characters is judged by those alone.
pub(crate) fn token_bits(token: &str) -> f64 {
    let t = token.trim_end_matches('=');
    let alphabet: f64 = if t.bytes().all(|b| b.is_ascii_hexdigit()) {
        16.0
    } else if t
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"+/-_".contains(&b))
    {
        64.0
    } else {
        94.0
    };
    let distinct = t.chars().collect::<std::collections::HashSet<_>>().len() as f64;
    let per_char = if distinct < 8.0 {
        distinct.max(1.0).log2()
    } else {
        alphabet.log2()
    };
    t.chars().count() as f64 * per_char
}

/// `line N (key)` for the span toml gives an error: the line, and the key written on it
/// when there is one (toml's own message says what is wrong).
fn key_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..start].matches('\n').count() + 1;
    let line = text[start..].lines().next().unwrap_or_default();
    match line.split_once('=') {
        Some((k, _)) if !k.trim().is_empty() && !line.trim_start().starts_with('[') => {
            format!("line {line_no} ({})", k.trim())
        }
        _ => format!("line {line_no}"),
    }
}

/// A region name: lowercase letters, digits and dashes (`ap-guangzhou`).
fn check_region(ctx: &Ctx<'_>, key: &str, region: &str) -> Result<(), ConfigError> {
    if region.is_empty()
        || !region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(ctx.err(
            key,
            format!("{region:?} is not a region such as ap-guangzhou"),
        ));
    }
    Ok(())
}

/// Validates `[recording]`: `dir` is required (relative to the config file); a
/// retention of zero would delete every recording as it is written; keyframes come
/// between every second and every hour.
fn recording(ctx: &Ctx<'_>, r: RawRecording) -> Result<RecordingConfig, ConfigError> {
    let Some(dir) = r.dir else {
        return Err(ctx.err(
            "recording.dir",
            "required: the directory recordings are written to (e.g. \"/var/lib/tcvnc/recordings\")",
        ));
    };
    if dir.as_os_str().is_empty() {
        return Err(ctx.err("recording.dir", "must not be empty"));
    }
    if r.retention.is_some_and(|d| d < Duration::from_secs(60)) {
        return Err(ctx.err(
            "recording.retention",
            "must be at least 1 minute (recordings are deleted once older than this), or left out to keep them",
        ));
    }
    let keyframe_interval = r.keyframe_interval.unwrap_or(DEFAULT_KEYFRAME_INTERVAL);
    if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&keyframe_interval) {
        return Err(ctx.err(
            "recording.keyframe_interval",
            "must be between 1s and 1h (a whole screen is written at most this often while the screen changes; seeking decodes from the last one)",
        ));
    }
    Ok(RecordingConfig {
        dir: ctx.path(&dir),
        input: r.input,
        retention: r.retention,
        keyframe_interval,
    })
}

/// Validates `[discovery]`: regions (default `[cloud] region`), at most
/// [`MAX_DISCOVERY_TAGS`] tags, non-empty name patterns, a refresh of at least 1 s.
fn discovery(
    ctx: &Ctx<'_>,
    d: RawDiscovery,
    default_region: Option<&str>,
) -> Result<DiscoveryConfig, ConfigError> {
    let regions = match d.regions {
        Some(r) => r,
        None => vec![default_region
            .ok_or_else(|| {
                ctx.err(
                    "discovery.regions",
                    "no region: list regions here, e.g. regions = [\"ap-guangzhou\"], or set [cloud] region",
                )
            })?
            .to_owned()],
    };
    if regions.is_empty() {
        return Err(ctx.err(
            "discovery.regions",
            "is empty; list at least one region, e.g. regions = [\"ap-guangzhou\"]",
        ));
    }
    for (i, r) in regions.iter().enumerate() {
        let key = format!("discovery.regions[{i}]");
        check_region(ctx, &key, r)?;
        if regions[..i].contains(r) {
            return Err(ctx.err(key, format!("{r} is listed twice")));
        }
    }
    let tags = d.tags.unwrap_or_default();
    if tags.len() > MAX_DISCOVERY_TAGS {
        return Err(ctx.err(
            "discovery.tags",
            format!(
                "{} tags; the API filters on at most {MAX_DISCOVERY_TAGS} tags at once",
                tags.len()
            ),
        ));
    }
    for (k, v) in &tags {
        if k.is_empty() || k.chars().any(char::is_control) || v.chars().any(char::is_control) {
            return Err(ctx.err(
                "discovery.tags",
                format!(
                    "{k:?} = {v:?} is not a tag; expected a non-empty key, e.g. env = \"staging\""
                ),
            ));
        }
    }
    let names = d.names.unwrap_or_default();
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() || n.chars().any(char::is_control) {
            return Err(ctx.err(
                format!("discovery.names[{i}]"),
                format!("{n:?} is not a name pattern; expected e.g. \"web-*\" (* any characters, ? one)"),
            ));
        }
    }
    let refresh = d.refresh.unwrap_or(Duration::from_secs(60));
    if refresh < Duration::from_secs(1) {
        return Err(ctx.err(
            "discovery.refresh",
            "must be at least 1s (every refresh costs API requests), e.g. \"60s\"",
        ));
    }
    Ok(DiscoveryConfig {
        regions,
        tags,
        names,
        refresh,
    })
}

fn nonzero_dur(
    ctx: &Ctx<'_>,
    key: &str,
    v: Option<Duration>,
    default_secs: u64,
) -> Result<Duration, ConfigError> {
    match v {
        Some(d) if d.is_zero() => Err(ctx.err(key, "must be longer than zero")),
        Some(d) => Ok(d),
        None => Ok(Duration::from_secs(default_secs)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "t.toml", Path::new("/nonexistent"))
    }

    /// `mode`, its old `transparent = true` spelling (a warning), and the console-mode
    /// keys only where they mean something.
    #[test]
    fn target_modes() {
        let base = "[cloud]\nregion = \"ap-guangzhou\"\n[credentials]\nsecret_id = \"AKIDx\"\nsecret_key = \"k\"\n[[target]]\ninstance = \"ins-r9hr2upy\"\n";
        let c = parse(&format!(
            "{base}mode = \"console\"\nlinger = \"5s\"\nresume_timeout = \"2m\"\n"
        ))
        .expect("console");
        let t = &c.targets[0];
        assert_eq!(
            (t.mode, t.linger, t.resume_timeout),
            (
                Mode::Console,
                Duration::from_secs(5),
                Duration::from_secs(120)
            )
        );
        let c = parse(base).expect("default");
        assert_eq!(
            (c.targets[0].mode, c.targets[0].linger),
            (Mode::Bridge, DEFAULT_LINGER)
        );
        let c = parse(&format!("{base}transparent = true\n")).expect("alias");
        assert!(c.targets[0].transparent());
        assert!(
            c.lints()
                .iter()
                .any(|l| l.contains("old spelling of mode = \"transparent\"")),
            "{:?}",
            c.lints()
        );
        for (extra, want) in [
            (
                "mode = \"console\"\ntransparent = true\n",
                "contradicts mode = \"console\"",
            ),
            ("linger = \"5s\"\n", "linger applies to console mode only"),
            (
                "mode = \"bridge\"\nresume_timeout = \"5s\"\n",
                "resume_timeout applies to console mode only",
            ),
            (
                "mode = \"console\"\nresume_timeout = \"0s\"\n",
                "resume_timeout must be above 0",
            ),
            ("mode = \"mirror\"\n", "mode"),
        ] {
            let e = parse(&format!("{base}{extra}"))
                .expect_err(extra)
                .to_string();
            assert!(e.contains(want), "{extra}: {e}");
        }
    }

    #[test]
    fn design_example_parses() {
        let c = parse(
            r#"
[cloud]
product = "cvm"
region = "ap-guangzhou"
endpoint = "https://cvm.tencentcloudapi.com"
[budget]
reconnects_per_minute = 30
api_requests_per_second = 10
max_wait = "15s"
[upstream]
origin = "https://img.qcloud.com"
subprotocols = ["binary"]
connect_timeout = "10s"
[http]
listen = "127.0.0.1:6080"
allowed_origins = []
[[target]]
instance = "ins-r9hr2upy"
region = "ap-beijing"
listen = "127.0.0.1:5901"
"#,
        )
        .expect("valid");
        assert_eq!(c.targets[0].region, "ap-beijing");
        assert_eq!(c.budget.max_wait, Duration::from_secs(15));
        assert_eq!(
            c.cloud
                .endpoints
                .override_endpoint
                .as_ref()
                .map(|e| e.host.as_str()),
            Some("cvm.tencentcloudapi.com")
        );
    }

    #[test]
    fn errors_name_key_and_expectation() {
        let cases: &[(&str, &str)] = &[
            ("[cloud]\nbogus = 1\n", "unknown field"),
            ("[budget]\nreconnects_per_minute = 0\n", "budget.reconnects_per_minute"),
            ("[budget]\nmax_wait = \"soon\"\n", "line 2"),
            ("[[target]]\ninstance = \"ins-1122\"\nregion = \"ap-beijing\"\n", "target[0].instance"),
            ("[[target]]\ninstance = \"ins-r9hr2upy\"\n", "target[0].region"),
            ("[[target]]\ninstance = \"ins-r9hr2upy\"\nregion=\"ap-beijing\"\nlisten = \"0.0.0.0:5901\"\n", "password_file"),
            ("[[target]]\ninstance = \"ins-r9hr2upy\"\nregion=\"ap-beijing\"\nlisten = \"localhost:5901\"\n", "IP:PORT"),
            ("[http]\nlisten = \"0.0.0.0:6080\"\n", "token_file"),
            ("[cloud]\nendpoint = \"http://10.1.2.3\"\n", "cloud.endpoint"),
            ("[credentials]\nsecret_id = \"AKID\"\n", "go together"),
            ("[credentials]\nsecret_id = \"AKID\"\nsecret_key_file = \"missing\"\n", "credentials.secret_key_file"),
            ("[upstream]\nsubprotocols = [\"a b\"]\n", "upstream.subprotocols[0]"),
            ("[http]\nallowed_origins = [\"https://x/\"]\n", "http.allowed_origins[0]"),
            ("[discovery]\n", "discovery.regions"),
            ("[discovery]\nregions = []\n", "discovery.regions"),
            ("[discovery]\nregions = [\"AP\"]\n", "discovery.regions[0]"),
            ("[discovery]\nregions = [\"ap-beijing\", \"ap-beijing\"]\n", "listed twice"),
            ("[discovery]\nregions = [\"ap-beijing\"]\nrefresh = \"0s\"\n", "discovery.refresh"),
            ("[discovery]\nregions = [\"ap-beijing\"]\nnames = [\"\"]\n", "discovery.names[0]"),
            ("[discovery]\nregions = [\"ap-beijing\"]\ntags = { \"\" = \"x\" }\n", "discovery.tags"),
            ("[discovery]\nregion = \"ap-beijing\"\n", "unknown field"),
        ];
        for (text, want) in cases {
            let e = parse(text).expect_err(text).to_string();
            assert!(e.starts_with("t.toml: "), "{e}");
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn lints_flag_inline_keys_and_budgets_above_the_cloud() {
        let c = parse("[credentials]\nsecret_id = \"AKIDx\"\nsecret_key = \"k\"\n[budget]\nreconnects_per_minute = 40\nallow_above_documented_limits = true\n")
            .expect("legal");
        let lints = c.lints().join("\n");
        assert!(lints.contains("prefer secret_key_file"), "{lints}");
        assert!(
            lints.contains("above Tencent Cloud's documented 30 per minute"),
            "{lints}"
        );
        assert!(Config::defaults().lints().is_empty());
    }

    #[test]
    fn secret_key_file_is_read_and_trimmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("key"), "s3cret\n").expect("write");
        let c = Config::parse(
            "[credentials]\nsecret_id = \"AKIDx\"\nsecret_key_file = \"key\"\n",
            "t.toml",
            dir.path(),
        )
        .expect("valid");
        assert_eq!(
            c.credentials.given.secret_key.as_ref().map(Secret::expose),
            Some("s3cret")
        );
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}

#[cfg(test)]
mod example_tests {
    /// The shipped example documents every key and parses.
    #[test]
    fn example_config_parses() {
        let c = super::Config::parse(
            include_str!("../config/tcvnc.example.toml"),
            "tcvnc.example.toml",
            std::path::Path::new("."),
        )
        .expect("the example is valid");
        assert_eq!(c.targets.len(), 1);
        assert!(c.discovery.is_none(), "discovery is opt-in");
        assert!(c.recording.is_none(), "recording is opt-in");
    }

    /// The shipped example with its commented-out section starting at `header`
    /// uncommented (up to the first blank line: other commented sections follow), parsed.
    fn with_uncommented(header: &str) -> super::Config {
        let text = include_str!("../config/tcvnc.example.toml");
        let start = text
            .find(header)
            .unwrap_or_else(|| panic!("the example documents {header}"));
        let section: String = text[start..]
            .lines()
            .take_while(|l| !l.trim().is_empty())
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .filter(|l| !l.trim_start().starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        super::Config::parse(
            &format!("{}{section}", &text[..start]),
            "tcvnc.example.toml",
            std::path::Path::new("."),
        )
        .expect("the uncommented example is valid")
    }

    /// The example's commented-out `[recording]` parses once uncommented.
    #[test]
    fn example_recording_parses() {
        let r = with_uncommented("# [recording]")
            .recording
            .expect("[recording]");
        assert_eq!(r.dir, std::path::Path::new("/var/lib/tcvnc/recordings"));
        assert!(!r.input);
        assert_eq!(
            r.retention,
            Some(std::time::Duration::from_secs(30 * 86_400))
        );
        assert_eq!(r.keyframe_interval, super::DEFAULT_KEYFRAME_INTERVAL);
        for (bad, key) in [
            ("[recording]\n", "recording.dir"),
            (
                "[recording]\ndir = \"x\"\nretention = \"5s\"\n",
                "recording.retention",
            ),
            (
                "[recording]\ndir = \"x\"\nformat = \"fbs\"\n",
                "unknown field",
            ),
            (
                "[recording]\ndir = \"x\"\nkeyframe_interval = \"500ms\"\n",
                "recording.keyframe_interval",
            ),
            (
                "[recording]\ndir = \"x\"\nkeyframe_interval = \"2h\"\n",
                "recording.keyframe_interval",
            ),
        ] {
            let e = super::Config::parse(bad, "t.toml", std::path::Path::new("."))
                .expect_err(bad)
                .to_string();
            assert!(e.contains(key), "{bad}: {e}");
        }
    }

    /// The example's commented-out `[discovery]` parses once uncommented.
    #[test]
    fn example_discovery_parses() {
        let d = with_uncommented("# [discovery]")
            .discovery
            .expect("[discovery]");
        assert_eq!(d.regions, ["ap-guangzhou"]);
        assert_eq!(d.names, ["web-*"]);
        assert_eq!(d.tags.get("env").map(String::as_str), Some("staging"));
        assert_eq!(d.refresh, std::time::Duration::from_secs(60));
    }
}
