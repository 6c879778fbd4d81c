//! The cloud simulator: a strict stand-in for Tencent Cloud's API (TC3 verified, real
//! error codes and limits), STS and the metadata service, and the VNC gateway, all on
//! loopback, with fault knobs for tests.
//!
//! It replaces only the cloud: the daemon talks to it exactly as to the real service.
//!
//! # Knobs
//!
//! [`Faults`] (in process with [`SimState::set_faults`], from outside with
//! `POST /_sim/faults` and JSON, durations in humantime such as `"30s"`): API latency,
//! injected codes and answers, and for the gateway `drop_after`, `drop_after_bytes`,
//! `stall_after_bytes`, `frame_max`, subprotocol and Origin behaviour, and `idle_cut`
//! (end a session with close 1000 "idle timeout" once no data frame came from the client
//! for that long; pings are not activity, as on real gateways: Alibaba cuts at 300 s,
//! others at 60 to 270 s). A session takes the faults in force when it opens.
//!
//! Instances: [`SimState::set_state`], [`SimState::reboot`] (`POST /_sim/reboot` with
//! `{"instance": "ins-…", "stopped": "2s", "starting": "2s"}`: every gateway session of
//! the instance dropped at once, then `STOPPED`, `STARTING`, `RUNNING` on tokio time; a
//! non-`RUNNING` instance gets no URL and its tokens, even older ones, are refused) and
//! [`SimState::wait_state`]. The built-in test pattern logs what viewers send it besides
//! update requests: [`SimState::input_log`] (`GET /_sim/input?instance=ins-…`),
//! [`SimState::subscribe_input`], [`SimState::wait_inputs`]. Tests wait on these and on
//! [`SimState::events`], never on sleeps.

pub mod api;
pub mod gateway;
pub mod identity;
mod input;
mod power;
pub mod rfb_server;

pub use input::{SimInput, INPUT_LOG_MAX};
pub use power::InstanceError;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::shutdown::Shutdown;

/// The simulator's default demo key pair (public; it opens nothing real).
pub const DEMO_SECRET_ID: &str = "AKIDtcvncSimulatorDemoKey0000000000";
/// The simulator's default demo secret key.
pub const DEMO_SECRET_KEY: &str = "tcvnc-simulator-demo-secret-key-0";

/// An instance the simulator knows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SimInstance {
    /// `ins-…` or `lhins-…`.
    pub id: String,
    /// `RUNNING`, `STOPPED`, …
    #[serde(default = "running")]
    pub state: String,
    /// The instance's region; requests for another region get NotFound.
    #[serde(default)]
    pub region: Option<String>,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Availability zone (`ap-guangzhou-3`); `DescribeInstances` reports it and filters
    /// on it (`zone`).
    #[serde(default)]
    pub zone: Option<String>,
    /// Tags, key → value; `DescribeInstances` reports them and filters on them
    /// (`tag:<key>`, `tag-key`).
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

fn running() -> String {
    "RUNNING".to_owned()
}

impl SimInstance {
    /// A running instance in any region.
    pub fn running(id: &str) -> Self {
        SimInstance {
            id: id.to_owned(),
            state: running(),
            region: None,
            name: id.to_owned(),
            zone: None,
            tags: BTreeMap::new(),
        }
    }

    /// The same instance named `name`.
    pub fn named(self, name: &str) -> Self {
        SimInstance {
            name: name.to_owned(),
            ..self
        }
    }

    /// The same instance in `region` only (zone `<region>-1`).
    pub fn in_region(self, region: &str) -> Self {
        SimInstance {
            region: Some(region.to_owned()),
            zone: Some(format!("{region}-1")),
            ..self
        }
    }

    /// The same instance with the tag `key` = `value`.
    pub fn tagged(mut self, key: &str, value: &str) -> Self {
        self.tags.insert(key.to_owned(), value.to_owned());
        self
    }

    /// An instance in `state`.
    pub(crate) fn with_state(id: &str, state: &str) -> Self {
        SimInstance {
            state: state.to_owned(),
            ..Self::running(id)
        }
    }
}

/// The default instance set: `ins-demo0001`…`0003` and `lhins-demo0001` running,
/// `ins-stopped1` stopped.
pub(crate) fn default_instances() -> Vec<SimInstance> {
    vec![
        SimInstance::running("ins-demo0001"),
        SimInstance::running("ins-demo0002"),
        SimInstance::running("ins-demo0003"),
        SimInstance::running("lhins-demo0001"),
        SimInstance::with_state("ins-stopped1", "STOPPED"),
    ]
}

/// A key the simulated API accepts.
#[derive(Debug, Clone)]
pub struct SimKey {
    /// SecretId.
    pub secret_id: String,
    /// SecretKey.
    pub secret_key: String,
    /// Session token required with this key (temporary credentials).
    pub token: Option<String>,
    /// Unix time after which the key is refused.
    pub expires_at: Option<i64>,
}

/// How the gateway answers the websocket subprotocol offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SubprotocolMode {
    /// Echo `binary` when offered (websockify's behaviour).
    #[default]
    EchoBinary,
    /// Never answer a subprotocol.
    None,
    /// Refuse a client that does not offer `binary`.
    RequireBinary,
    /// Answer `base64` and send text frames.
    Base64,
}

/// Fault knobs. Counts are "next N requests"; `None`/zero means off.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Delay before every API answer.
    #[serde(with = "humantime_serde")]
    pub latency: Option<Duration>,
    /// Answer the next `error_count` API requests with this code (all, when count is 0).
    pub error_code: Option<String>,
    /// How many requests get `error_code`; 0 = every request while set.
    pub error_count: u32,
    /// Answer the next N API requests with HTTP 500.
    pub http_500: u32,
    /// Answer the next N API requests with a garbage body.
    pub garbage: u32,
    /// Answer the next N API requests with truncated JSON.
    pub truncated: u32,
    /// Random extra delay, up to this much, before every API answer (network jitter).
    #[serde(with = "humantime_serde")]
    pub latency_jitter: Option<Duration>,
    /// Mint a URL for the next N `DescribeInstanceVncUrl` requests, then never answer
    /// (the client times out: a URL spent, the answer lost).
    pub lose_after_mint: u32,
    /// Mint a URL for the next N `DescribeInstanceVncUrl` requests, then answer with a
    /// garbled 200 body.
    pub garble_after_mint: u32,
    /// Gateway: close each session after this many bytes from the backend.
    pub drop_after_bytes: Option<u64>,
    /// Gateway: close each session after this long.
    #[serde(with = "humantime_serde")]
    pub drop_after: Option<Duration>,
    /// Gateway: end a session once no data frame (binary or text) came from the client
    /// for this long, with close 1000 "idle timeout", then drop it. Pings and pongs are
    /// not activity. Real gateways cut idle sessions (Alibaba at 300 s, others at 60 to
    /// 270 s).
    #[serde(with = "humantime_serde")]
    pub idle_cut: Option<Duration>,
    /// Gateway: subprotocol behaviour.
    pub subprotocol: SubprotocolMode,
    /// Gateway: required Origin (refused with 403 otherwise).
    pub require_origin: Option<String>,
    /// Gateway: refuse every token (as if expired).
    pub refuse_tokens: bool,
    /// Benchmarks only: accept a token more than once and past its 15 s (a peer such
    /// as websocat cannot mint a URL per connection).
    pub reuse_tokens: bool,
    /// Benchmarks only: API requests per second per action and key instead of the
    /// cloud's 10 (opening 10,000 sessions at 10/s would take 17 minutes).
    pub api_rate_limit: Option<usize>,
    /// Gateway: after this many bytes to the client, stop reading and writing (pings
    /// included) while keeping the connection open.
    pub stall_after_bytes: Option<u64>,
    /// Gateway: at most this many bytes per frame to the client. Gateways frame what
    /// each read of the console gave (websockify and QEMU's own send a frame per read, often
    /// a few KiB); unset, a frame carries up to one 64 KiB read.
    pub frame_max: Option<usize>,
    /// Benchmarks only: minted URLs point at this `wss://host:port` instead of the
    /// simulator's gateway (a third-party gateway, such as websocat, in front of the
    /// same console).
    pub gateway_base: Option<String>,
}

/// What happened to a gateway session, for tests to wait on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayEvent {
    /// A token was accepted for this instance.
    Accepted(String),
    /// The client (tcvnc) closed the websocket, with this close code.
    ClosedByClient(Option<u16>),
    /// The session ended any other way (backend closed, drop knob, error), e.g.
    /// `"idle cut: no data from the client for 30s"` or `"dropped by reboot of ins-…"`.
    Ended(String),
}

/// Counters and logs tests read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// API requests received (all actions).
    pub api_requests: u64,
    /// Error codes answered, by code.
    pub errors: HashMap<String, u64>,
    /// URLs minted, by instance.
    pub mints: HashMap<String, u64>,
    /// Gateway connections accepted with a valid token.
    pub gateway_accepted: u64,
    /// Gateway connections refused, by reason.
    pub gateway_refused: HashMap<String, u64>,
    /// Gateway sessions open now, by instance.
    pub live_upstreams: HashMap<String, u64>,
    /// Most gateway sessions open at once for one instance (a console is exclusive).
    pub max_live_upstreams: u64,
    /// Largest number of mints for one instance in any 60 s window.
    pub max_mints_per_minute: u64,
    /// Largest number of API calls per (action, SecretId) in any 1 s window.
    pub max_api_per_second: u64,
    /// Signed API requests that passed verification, by action.
    pub actions: HashMap<String, u64>,
}

struct TokenEntry {
    instance: String,
    minted: Instant,
    uses: u32,
}

/// Identity fakes: STS (TKE OIDC) and the metadata service's CVM role.
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    /// Accepted `(ProviderId, RoleArn, WebIdentityToken)`.
    pub oidc: Option<(String, String, String)>,
    /// Role name the metadata service reports.
    pub cvm_role: Option<String>,
    /// Lifetime of issued temporary credentials.
    pub temp_lifetime: Duration,
}

/// Shared simulator state.
pub struct SimState {
    keys: Mutex<HashMap<String, SimKey>>,
    instances: Mutex<HashMap<String, SimInstance>>,
    api_windows: Mutex<HashMap<String, VecDeque<Instant>>>,
    mint_windows: Mutex<HashMap<String, VecDeque<Instant>>>,
    tokens: Mutex<HashMap<String, TokenEntry>>,
    faults: Mutex<Faults>,
    stats: Mutex<Stats>,
    gateway_base: Mutex<String>,
    /// Seconds added to the simulator's wall clock (to fake skew).
    clock_offset: AtomicI64,
    identity: Mutex<IdentityConfig>,
    identity_knobs: identity::IdentityKnobs,
    issued: AtomicU64,
    events: tokio::sync::broadcast::Sender<GatewayEvent>,
    /// Per instance, its current boot's token: every gateway session holds a clone, and a
    /// reboot cancels it. Taken and cancelled under the `instances` lock.
    boots: Mutex<HashMap<String, CancellationToken>>,
    /// Bumped on every state change, for [`SimState::wait_state`].
    state_changes: tokio::sync::watch::Sender<u64>,
    /// What viewers sent each instance's test pattern.
    inputs: Mutex<HashMap<String, input::InputLog>>,
    /// Inputs recorded, every instance together, for [`SimState::subscribe_input`].
    input_count: tokio::sync::watch::Sender<u64>,
    /// This state, for the reboot task it spawns.
    me: Weak<SimState>,
    /// The simulator's shutdown: tasks the state spawns (reboots) are tracked by it.
    shutdown: Shutdown,
    /// VNC password the built-in test pattern demands (None: security type None).
    pub backend_password: Option<String>,
    /// URLs per instance per minute the API hands out.
    pub url_limit: usize,
    /// API requests per second per action and SecretId.
    pub api_limit: usize,
}

/// Pushes `now` into a sliding window and returns how many entries lie within `window`
/// (including the new one) and whether that is within `limit`.
fn window_admit(
    q: &mut VecDeque<Instant>,
    now: Instant,
    window: Duration,
    limit: usize,
) -> (bool, usize) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
        q.pop_front();
    }
    if q.len() >= limit {
        return (false, q.len());
    }
    q.push_back(now);
    (true, q.len())
}

impl SimState {
    /// The state for `opts`; tasks it spawns (reboots) run under `shutdown`.
    fn build(opts: &SimOptions, shutdown: Shutdown) -> Arc<Self> {
        Arc::new_cyclic(|me| SimState::new(opts, me.clone(), shutdown))
    }

    fn new(opts: &SimOptions, me: Weak<SimState>, shutdown: Shutdown) -> Self {
        let keys = opts
            .keys
            .iter()
            .map(|k| (k.secret_id.clone(), k.clone()))
            .collect();
        let instances = opts
            .instances
            .iter()
            .map(|i| (i.id.clone(), i.clone()))
            .collect();
        SimState {
            keys: Mutex::new(keys),
            instances: Mutex::new(instances),
            api_windows: Mutex::default(),
            mint_windows: Mutex::default(),
            tokens: Mutex::default(),
            faults: Mutex::new(opts.faults.clone()),
            stats: Mutex::default(),
            gateway_base: Mutex::new(String::new()),
            clock_offset: AtomicI64::new(0),
            identity: Mutex::new(opts.identity.clone()),
            identity_knobs: identity::IdentityKnobs::default(),
            issued: AtomicU64::new(0),
            events: tokio::sync::broadcast::channel(1024).0,
            boots: Mutex::default(),
            state_changes: tokio::sync::watch::channel(0).0,
            inputs: Mutex::default(),
            input_count: tokio::sync::watch::channel(0).0,
            me,
            shutdown,
            backend_password: opts.backend_password.clone(),
            url_limit: 30,
            api_limit: 10,
        }
    }

    /// The simulator's wall clock (Unix seconds), skewed by the knob.
    pub(crate) fn now_unix(&self) -> i64 {
        crate::cloud::unix_now() + self.clock_offset.load(Ordering::Relaxed)
    }

    /// Skews the simulator's clock by `seconds` (tests of `SignatureExpire`).
    pub fn set_clock_offset(&self, seconds: i64) {
        self.clock_offset.store(seconds, Ordering::Relaxed);
    }

    /// Current faults.
    pub fn faults(&self) -> Faults {
        self.faults.lock().clone()
    }

    /// Replaces the faults.
    pub fn set_faults(&self, f: Faults) {
        *self.faults.lock() = f;
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.stats.lock().clone()
    }

    /// URLs minted for `instance` so far.
    pub fn mints(&self, instance: &str) -> u64 {
        self.stats.lock().mints.get(instance).copied().unwrap_or(0)
    }

    /// Adds or replaces a key.
    pub fn add_key(&self, key: SimKey) {
        self.keys.lock().insert(key.secret_id.clone(), key);
    }

    /// Adds or replaces an instance.
    pub fn put_instance(&self, inst: SimInstance) {
        self.instances.lock().insert(inst.id.clone(), inst);
        self.state_changed();
    }

    /// Sets an instance's state (sessions already open stay; see [`SimState::reboot`]).
    pub fn set_state(&self, id: &str, state: &str) {
        if let Some(i) = self.instances.lock().get_mut(id) {
            i.state = state.to_owned();
        }
        self.state_changed();
    }

    /// Makes every temporary key expire now (tests of refresh on `TokenFailure`).
    pub fn expire_temporary_keys(&self) {
        let now = self.now_unix();
        for k in self.keys.lock().values_mut() {
            if k.token.is_some() {
                k.expires_at = Some(now);
            }
        }
    }

    /// Makes every minted token `by` older (tests of the 15 s validity).
    pub fn age_tokens(&self, by: Duration) {
        for t in self.tokens.lock().values_mut() {
            t.minted = t.minted.checked_sub(by).unwrap_or(t.minted);
        }
    }

    /// Every token minted in the last two minutes (tests search logs for them).
    pub fn minted_tokens(&self) -> Vec<String> {
        self.tokens.lock().keys().cloned().collect()
    }

    /// Subscribes to gateway session events.
    pub fn events(&self) -> tokio::sync::broadcast::Receiver<GatewayEvent> {
        self.events.subscribe()
    }

    pub(crate) fn emit(&self, e: GatewayEvent) {
        let _ = self.events.send(e);
    }

    /// Replaces the identity fakes.
    pub fn set_identity(&self, identity: IdentityConfig) {
        *self.identity.lock() = identity;
    }

    fn count_error(&self, code: &str) {
        *self.stats.lock().errors.entry(code.to_owned()).or_default() += 1;
    }

    fn count_refused(&self, reason: &str) {
        *self
            .stats
            .lock()
            .gateway_refused
            .entry(reason.to_owned())
            .or_default() += 1;
    }

    /// Takes a fault "next N" counter: true when this request gets it.
    fn take_fault(&self, pick: impl FnOnce(&mut Faults) -> &mut u32) -> bool {
        let mut f = self.faults.lock();
        let n = pick(&mut f);
        if *n > 0 {
            *n -= 1;
            true
        } else {
            false
        }
    }

    /// The code to force on this request, if any.
    fn forced_code(&self) -> Option<String> {
        let mut f = self.faults.lock();
        let code = f.error_code.clone()?;
        match f.error_count {
            0 => Some(code),
            1 => {
                f.error_count = 0;
                f.error_code = None;
                Some(code)
            }
            _ => {
                f.error_count -= 1;
                Some(code)
            }
        }
    }

    fn api_admit(&self, action: &str, secret_id: &str) -> bool {
        let limit = self.faults.lock().api_rate_limit.unwrap_or(self.api_limit);
        let mut windows = self.api_windows.lock();
        let q = windows.entry(format!("{action}/{secret_id}")).or_default();
        let (ok, n) = window_admit(q, Instant::now(), Duration::from_secs(1), limit);
        let mut stats = self.stats.lock();
        stats.max_api_per_second = stats.max_api_per_second.max(n as u64);
        ok
    }

    fn mint_admit(&self, instance: &str) -> bool {
        let mut windows = self.mint_windows.lock();
        let q = windows.entry(instance.to_owned()).or_default();
        let (ok, n) = window_admit(q, Instant::now(), Duration::from_secs(60), self.url_limit);
        let mut stats = self.stats.lock();
        stats.max_mints_per_minute = stats.max_mints_per_minute.max(n as u64);
        ok
    }

    /// Mints a token for `instance` and returns the percent-encoded URL.
    fn mint_url(&self, instance: &str) -> String {
        use base64::Engine;
        let mut raw = [0u8; 48];
        rand::RngExt::fill(&mut rand::rng(), &mut raw[..]);
        let token = base64::engine::general_purpose::STANDARD.encode(raw);
        self.tokens.lock().insert(
            token.clone(),
            TokenEntry {
                instance: instance.to_owned(),
                minted: Instant::now(),
                uses: 0,
            },
        );
        *self
            .stats
            .lock()
            .mints
            .entry(instance.to_owned())
            .or_default() += 1;
        let base = self
            .faults()
            .gateway_base
            .unwrap_or_else(|| self.gateway_base.lock().clone());
        let url = format!("{base}/vnc?s={token}&password=&isWindows=false&isUbuntu=false");
        percent_encoding::utf8_percent_encode(&url, crate::cloud::vnc_url::COMPONENT).to_string()
    }

    /// Checks a token presented at the gateway: known, unused (unless reuse is on), at
    /// most 15 s old, and its instance `RUNNING` now (a token minted before a reboot is
    /// spent on a refusal). Returns the instance and its boot's token.
    pub(crate) fn redeem(&self, token: &str) -> Result<power::Redeemed, &'static str> {
        let instance = self.take_token(token)?;
        self.admit_session(instance)
    }

    /// The token checks of [`SimState::redeem`]; marks it used.
    fn take_token(&self, token: &str) -> Result<String, &'static str> {
        let faults = self.faults();
        if faults.refuse_tokens {
            return Err("token refused (fault knob)");
        }
        let mut tokens = self.tokens.lock();
        // Forget tokens long expired so the map stays bounded.
        if !faults.reuse_tokens {
            tokens.retain(|_, t| t.minted.elapsed() < Duration::from_secs(120));
        }
        let Some(entry) = tokens.get_mut(token) else {
            return Err("unknown token");
        };
        if entry.minted.elapsed() > Duration::from_secs(15) && !faults.reuse_tokens {
            return Err("token expired (older than 15 s)");
        }
        if entry.uses > 0 && !faults.reuse_tokens {
            return Err("token already used");
        }
        entry.uses += 1;
        Ok(entry.instance.clone())
    }
}

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// API listen address.
    pub api_addr: SocketAddr,
    /// Gateway listen address.
    pub gateway_addr: SocketAddr,
    /// Backend VNC server; `None` uses the built-in test pattern.
    pub backend: Option<String>,
    /// Accepted keys.
    pub keys: Vec<SimKey>,
    /// Known instances.
    pub instances: Vec<SimInstance>,
    /// Initial faults.
    pub faults: Faults,
    /// STS and metadata fakes.
    pub identity: IdentityConfig,
    /// Where to write the gateway CA (a temp file when `None`).
    pub ca_file: Option<PathBuf>,
    /// VNC password the built-in test pattern demands.
    pub backend_password: Option<String>,
}

impl Default for SimOptions {
    fn default() -> Self {
        let lo = SocketAddr::from(([127, 0, 0, 1], 0));
        SimOptions {
            api_addr: lo,
            gateway_addr: lo,
            backend: None,
            keys: vec![SimKey {
                secret_id: DEMO_SECRET_ID.to_owned(),
                secret_key: DEMO_SECRET_KEY.to_owned(),
                token: None,
                expires_at: None,
            }],
            instances: default_instances(),
            faults: Faults::default(),
            identity: IdentityConfig {
                temp_lifetime: Duration::from_secs(3600),
                ..IdentityConfig::default()
            },
            ca_file: None,
            backend_password: None,
        }
    }
}

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A listener could not bind.
    #[error("cannot listen on {addr}: {cause}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        cause: std::io::Error,
    },
    /// Certificate generation or writing failed.
    #[error("cannot set up the gateway's TLS: {0}")]
    Tls(String),
    /// The instances file is unusable.
    #[error("instances file {path}: {cause}")]
    Instances {
        /// The file.
        path: String,
        /// What is wrong.
        cause: String,
    },
}

/// Reads an instances file: TOML with `[[instance]]` tables (`id`, `state`, `region`,
/// `name`, `zone`, `tags = { key = "value" }`).
///
/// # Errors
/// [`SimError::Instances`].
pub(crate) fn load_instances(path: &std::path::Path) -> Result<Vec<SimInstance>, SimError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        instance: Vec<SimInstance>,
    }
    let fail = |cause: String| SimError::Instances {
        path: path.display().to_string(),
        cause,
    };
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let f: File = toml::from_str(&text).map_err(|e| fail(e.message().to_owned()))?;
    Ok(f.instance)
}

/// A running simulator.
pub struct SimHandle {
    /// Shared state, for knobs and counters.
    pub state: Arc<SimState>,
    /// `http://127.0.0.1:PORT` of the API (also STS and metadata).
    pub api_url: String,
    /// `wss://127.0.0.1:PORT` of the gateway.
    pub gateway_url: String,
    /// The gateway CA certificate (PEM) file.
    pub ca_file: PathBuf,
    /// The backend address, when not built in.
    pub backend: Option<String>,
    shutdown: Shutdown,
    _ca_dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("api_url", &self.api_url)
            .field("gateway_url", &self.gateway_url)
            .finish_non_exhaustive()
    }
}

impl SimHandle {
    /// Starts the API and the gateway.
    ///
    /// # Errors
    /// [`SimError`] when a listener cannot bind or TLS cannot be set up.
    pub async fn start(opts: SimOptions) -> Result<SimHandle, SimError> {
        let shutdown = Shutdown::new();
        let state = SimState::build(&opts, shutdown.clone());
        let api = TcpListener::bind(opts.api_addr)
            .await
            .map_err(|cause| SimError::Bind {
                addr: opts.api_addr,
                cause,
            })?;
        let gw = TcpListener::bind(opts.gateway_addr)
            .await
            .map_err(|cause| SimError::Bind {
                addr: opts.gateway_addr,
                cause,
            })?;
        let api_addr = api.local_addr().map_err(|cause| SimError::Bind {
            addr: opts.api_addr,
            cause,
        })?;
        let gw_addr = gw.local_addr().map_err(|cause| SimError::Bind {
            addr: opts.gateway_addr,
            cause,
        })?;
        let gateway_url = format!("wss://{gw_addr}");
        *state.gateway_base.lock() = gateway_url.clone();

        let (ca_dir, ca_file) = match &opts.ca_file {
            Some(p) => (None, p.clone()),
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("tcvnc-sim-")
                    .tempdir()
                    .map_err(|e| SimError::Tls(e.to_string()))?;
                let p = dir.path().join("sim-ca.pem");
                (Some(dir), p)
            }
        };
        let tls = gateway::tls_acceptor(gw_addr.ip(), &ca_file)?;

        let api_state = state.clone();
        shutdown.spawn(crate::http_util::serve(
            api,
            shutdown.clone(),
            move |req, _conn| api::handle(api_state.clone(), req),
            Duration::from_secs(10),
        ));
        let gw_state = state.clone();
        shutdown.spawn(gateway::serve(
            gw,
            tls,
            gw_state,
            opts.backend.clone(),
            shutdown.clone(),
        ));
        tracing::info!(api = %api_addr, gateway = %gw_addr, "simulator listening");
        Ok(SimHandle {
            state,
            api_url: format!("http://{api_addr}"),
            gateway_url,
            ca_file,
            backend: opts.backend,
            shutdown,
            _ca_dir: ca_dir,
        })
    }

    /// The one JSON line `tcvnc sim` prints.
    pub(crate) fn describe(&self) -> serde_json::Value {
        serde_json::json!({
            "api": self.api_url,
            "gateway": self.gateway_url,
            "ca_file": self.ca_file,
            "metadata": self.api_url,
            "sts": self.api_url,
            "backend": self.backend.as_deref().unwrap_or("built-in test pattern"),
        })
    }

    /// Stops every simulator task.
    pub async fn shutdown(&self) {
        self.shutdown.drain(Duration::from_secs(5)).await;
    }
}
