//! [`App`]: the state every listener and session shares, built once from a `Config`
//! (cloud client, budget, consoles, guards, metrics, shutdown), and [`build`], which
//! loads the credentials and makes one. It sits below its readers:
//! listeners and sessions import it, it imports neither. The configuration is swapped
//! whole on reload; a session reads one snapshot for its whole life.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use tokio::sync::Semaphore;

use crate::budget::{ApiLimiter, Budget};
use crate::claims::Consoles;
use crate::cloud::credentials::{ChainOptions, Env, Provider, Proxies};
use crate::cloud::states::States;
use crate::cloud::CloudClient;
use crate::cloud::{ClientOptions, Endpoint};
use crate::config::Config;
use crate::exit::CmdError;
use crate::guard::Guard;
use crate::guard::{PeerLimiter, Unauthenticated};
use crate::logsum::Summaries;
use crate::shutdown::Shutdown;
use crate::upstream::Dialer;

/// What other parts may read about a live session.
#[derive(Debug)]
pub struct LiveSession {
    /// Session id, unique in this process.
    pub id: u64,
    /// The instance it serves.
    pub instance: String,
    /// The client's address.
    pub peer: std::net::SocketAddr,
    /// Byte counters, updated by the bridge.
    pub counters: crate::bridge::Counters,
}

/// Everything sessions share.
pub struct App {
    config: RwLock<Arc<Config>>,
    /// The API client.
    pub cloud: Arc<CloudClient>,
    /// The per-instance reconnect budget (limits follow the config on reload).
    pub budget: Budget,
    /// What is known of instances that were not running (no URL spent on them).
    pub states: States,
    /// Opens console URLs.
    pub dialer: Dialer,
    /// Who holds each console.
    pub consoles: Consoles,
    /// Console mode's engines, one per instance.
    pub engines: crate::engine::Engines,
    /// The instances `[discovery]` found (refreshed by the daemon's task).
    pub discovery: Arc<crate::discovery::Discovery>,
    /// One permit per concurrent session (`session.max_sessions`), taken only by
    /// clients that have greeted and authenticated.
    pub sessions: Arc<Semaphore>,
    /// Connections that have not yet greeted or authenticated, per address and overall.
    pub unauthenticated: Unauthenticated,
    /// Failed VNC passwords and HTTP tokens, per address, target and server.
    pub guard: Guard,
    /// New connections per client address.
    pub peer_limiter: PeerLimiter,
    /// Repeated log lines, summarised per interval.
    pub summaries: Summaries,
    /// Cancellation and task tracking for every session.
    pub shutdown: Shutdown,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Listeners bound and credentials loaded.
    pub ready: AtomicBool,
    /// What is shared with other tcvnc processes through Redis (`[fleet]`), fixed at
    /// start (a reload that changes `[fleet]` is refused).
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    /// `tcvnc play`: every console-mode target shows this recording, read-only.
    pub playback: Option<Arc<crate::engine::replay::Replay>>,
    next_id: AtomicU64,
    /// The size of `sessions`, which a reload may change.
    session_size: Arc<Mutex<SessionSize>>,
    live: Mutex<HashMap<u64, Arc<LiveSession>>>,
    live_count: tokio::sync::watch::Sender<usize>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config().source)
            .finish_non_exhaustive()
    }
}

/// The size of the session semaphore, tracked apart from the config: permits held by
/// sessions cannot be forgotten, so a lower `max_sessions` is reached as sessions end.
#[derive(Debug, Default)]
struct SessionSize {
    /// Permits the semaphore has in all: available, held by sessions, held by a shrink.
    total: usize,
    /// What it should have.
    target: usize,
    /// Bumped at every resize; a shrink task started by an older one gives up.
    generation: u64,
    /// The task claiming the permits sessions still hold beyond `target`.
    shrinking: Option<tokio::task::AbortHandle>,
}

/// The cap on unauthenticated connections overall, from `session.max_sessions`.
fn unauthenticated_total(max_sessions: usize) -> usize {
    max_sessions.saturating_mul(4).max(64)
}

impl App {
    /// Builds the shared state; `shutdown` is the one the cloud client's background
    /// work already watches.
    ///
    /// # Errors
    /// When the upstream TLS configuration (`upstream.ca_file`) or the Redis URL
    /// (`fleet.redis`) is unusable.
    pub fn new(
        config: Config,
        cloud: Arc<CloudClient>,
        metrics: Arc<crate::metrics::Metrics>,
        shutdown: Shutdown,
    ) -> Result<App, CmdError> {
        if let Some(r) = &config.recording {
            crate::record::sidecar::prepare_dir(&r.dir)
                .map_err(|e| CmdError::Usage(format!("config error: {e}")))?;
        }
        let tls = crate::tls::client_config(config.upstream.ca_file.as_deref())
            .map_err(|e| CmdError::Usage(format!("config error: upstream.ca_file: {e}")))?;
        let fleet = match &config.fleet {
            None => None,
            Some(f) => {
                let api_horizon =
                    config.cloud.connect_timeout + config.cloud.timeout + Duration::from_secs(2);
                let fleet = crate::fleet::Fleet::new(
                    f,
                    config.budget.max_wait + api_horizon + Duration::from_secs(3),
                    api_horizon,
                    metrics.clone(),
                )
                .map_err(|e| CmdError::Usage(format!("config error: fleet.redis: {e}")))?;
                let fleet = Arc::new(fleet);
                cloud.set_api_gate(Some(fleet.api_gate()));
                Some(fleet)
            }
        };
        let dialer = Dialer::new(
            tls,
            config.upstream.origin.clone(),
            config.upstream.subprotocols.clone(),
            config.upstream.connect_timeout,
        )
        .prefer(
            crate::tls::client_config_aes_only(config.upstream.ca_file.as_deref())
                .map_err(|e| CmdError::Usage(format!("config error: upstream.ca_file: {e}")))?,
        );
        let s = &config.session;
        let max_sessions = s.max_sessions;
        Ok(App {
            budget: Budget::new(config.budget.reconnects_per_minute, config.budget.max_wait),
            states: States::default(),
            sessions: Arc::new(Semaphore::new(s.max_sessions)),
            unauthenticated: Unauthenticated::new(
                s.unauthenticated_per_peer,
                unauthenticated_total(s.max_sessions),
            ),
            guard: Guard::new(crate::guard::Limits::default()),
            peer_limiter: PeerLimiter::new(s.connections_per_peer_per_minute),
            summaries: Summaries::default(),
            config: RwLock::new(Arc::new(config)),
            cloud,
            dialer,
            consoles: Consoles::default(),
            engines: crate::engine::Engines::default(),
            discovery: Arc::default(),
            shutdown,
            metrics,
            ready: AtomicBool::new(false),
            fleet,
            playback: None,
            next_id: AtomicU64::new(1),
            session_size: Arc::new(Mutex::new(SessionSize {
                total: max_sessions,
                target: max_sessions,
                generation: 0,
                shrinking: None,
            })),
            live: Mutex::new(HashMap::new()),
            live_count: tokio::sync::watch::channel(0).0,
        })
    }

    /// The configuration in force now (a session keeps the one it started with).
    pub fn config(&self) -> Arc<Config> {
        self.config.read().clone()
    }

    /// Puts `new` in force for everything that starts from now on; live sessions keep
    /// theirs. The budget's, API limit's and admission limits' numbers follow (the
    /// budget's windows are kept); the session limit shrinks as sessions end. Must run
    /// inside the runtime (a lower session limit may start a task).
    pub(crate) fn replace_config(&self, new: Config) {
        self.budget
            .set_limits(new.budget.reconnects_per_minute, new.budget.max_wait);
        self.cloud.set_rate(new.budget.api_requests_per_second);
        let s = &new.session;
        self.peer_limiter
            .set_per_minute(s.connections_per_peer_per_minute);
        self.unauthenticated.set_limits(
            s.unauthenticated_per_peer,
            unauthenticated_total(s.max_sessions),
        );
        self.resize_sessions(s.max_sessions);
        *self.config.write() = Arc::new(new);
    }

    /// Makes the session semaphore hold `target` permits: adds them at once, or forgets
    /// the free ones and claims the rest, as the sessions holding them end, ahead of any
    /// newcomer (the semaphore is fair), then forgets those too.
    fn resize_sessions(&self, target: usize) {
        use futures_util::FutureExt;
        let mut size = self.session_size.lock();
        size.generation += 1;
        size.target = target;
        if let Some(h) = size.shrinking.take() {
            h.abort(); // its claimed permits go back when it is dropped
        }
        if target >= size.total {
            self.sessions.add_permits(target - size.total);
            size.total = target;
            return;
        }
        let forgotten = self.sessions.forget_permits(size.total - target);
        size.total -= forgotten;
        let deficit = u32::try_from(size.total - target).unwrap_or(u32::MAX);
        if deficit == 0 {
            return;
        }
        // Polled once here, so the claim is queued before this returns and no permit
        // released from now on can reach a newcomer first.
        let mut claim = Box::pin(self.sessions.clone().acquire_many_owned(deficit));
        let generation = size.generation;
        if let Some(claimed) = (&mut claim).now_or_never() {
            if let Ok(permits) = claimed {
                size.total -= permits.num_permits();
                permits.forget();
            }
            return;
        }
        let (shared, shutdown) = (self.session_size.clone(), self.shutdown.clone());
        let task = self.shutdown.spawn(async move {
            // Cancel-safe: dropping the claim returns what it had gathered.
            let permits = tokio::select! {
                () = shutdown.cancelled() => return,
                p = claim => match p {
                    Ok(p) => p,
                    Err(_) => return,
                },
            };
            let mut size = shared.lock();
            if size.generation == generation {
                size.total -= permits.num_permits();
                permits.forget();
                size.shrinking = None;
            } // else a later resize counted these permits as present: they go back
        });
        size.shrinking = Some(task.abort_handle());
    }

    /// The session limit in force: permits the session semaphore holds in all, which
    /// reaches a lowered `max_sessions` once enough sessions have ended.
    pub fn session_limit(&self) -> usize {
        self.session_size.lock().total
    }

    /// A fresh session id.
    pub(crate) fn next_session_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn register(&self, s: Arc<LiveSession>) {
        let mut live = self.live.lock();
        live.insert(s.id, s);
        self.live_count.send_replace(live.len());
    }

    pub(crate) fn unregister(&self, id: u64) {
        let mut live = self.live.lock();
        live.remove(&id);
        self.live_count.send_replace(live.len());
    }

    /// The number of live sessions, as a watch (tests and metrics wait on it).
    pub fn watch_sessions(&self) -> tokio::sync::watch::Receiver<usize> {
        self.live_count.subscribe()
    }

    /// The sessions running now.
    pub fn live_sessions(&self) -> Vec<Arc<LiveSession>> {
        self.live.lock().values().cloned().collect()
    }
}

/// Loads credentials, builds the client and the app.
///
/// # Errors
/// [`CmdError`] with the right exit code.
pub async fn build(cfg: Config, env: &Env) -> Result<Arc<App>, CmdError> {
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let shutdown = Shutdown::new();
    let cloud = cloud_client_on(&cfg, None, env, Some(metrics.clone()), shutdown.clone()).await?;
    let app = App::new(cfg, cloud, metrics, shutdown)?;
    Ok(Arc::new(app))
}

/// Builds the credential chain and API client for `cfg`.
///
/// # Errors
/// Credential or TLS problems, as [`CmdError`].
pub async fn cloud_client(
    cfg: &Config,
    endpoint: Option<Endpoint>,
    env: &Env,
    observer: Option<Arc<dyn crate::cloud::client::ApiObserver>>,
) -> Result<Arc<CloudClient>, CmdError> {
    cloud_client_on(cfg, endpoint, env, observer, Shutdown::new()).await
}

/// [`cloud_client`] whose background work (the credential refresh task) ends with
/// `shutdown`: the daemon's own.
///
/// # Errors
/// Credential or TLS problems, as [`CmdError`].
pub(crate) async fn cloud_client_on(
    cfg: &Config,
    endpoint: Option<Endpoint>,
    env: &Env,
    observer: Option<Arc<dyn crate::cloud::client::ApiObserver>>,
    shutdown: Shutdown,
) -> Result<Arc<CloudClient>, CmdError> {
    let tls = crate::tls::client_config(cfg.cloud.ca_file.as_deref())
        .map_err(|e| CmdError::Usage(format!("config error: cloud.ca_file: {e}")))?;
    // Proxies come from the Env snapshot, never from reqwest reading the process.
    let proxies = Proxies::from_env(env).map_err(|e| CmdError::Usage(e.to_string()))?;
    if !proxies.is_empty() {
        tracing::info!(?proxies, "the API and STS are reached through a proxy");
    }
    let mut opts = ChainOptions::new(tls.clone());
    opts.shutdown = shutdown;
    if let Some(m) = &cfg.credentials.metadata_endpoint {
        opts.metadata_endpoint = m.trim_end_matches('/').to_owned();
    }
    if let Some(s) = &cfg.credentials.sts_endpoint {
        opts.sts_endpoint = s.trim_end_matches('/').to_owned();
    }
    let provider = Provider::resolve(&cfg.credentials.given, env, opts).await?;
    tracing::info!(source = %provider.description(), "credentials loaded");
    let mut endpoints = cfg.cloud.endpoints.clone();
    if endpoint.is_some() {
        endpoints.override_endpoint = endpoint;
    }
    let client = CloudClient::new(
        cfg.cloud.product,
        endpoints,
        Arc::new(provider),
        Arc::new(ApiLimiter::new(cfg.budget.api_requests_per_second)),
        tls,
        ClientOptions {
            connect_timeout: cfg.cloud.connect_timeout,
            timeout: cfg.cloud.timeout,
            proxies,
            ..ClientOptions::default()
        },
    )?;
    let client = match observer {
        Some(o) => client.with_observer(o),
        None => client,
    };
    Ok(Arc::new(client))
}
