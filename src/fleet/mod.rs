//! What several tcvnc processes share through Redis (`[fleet]`): each instance's URL
//! window ([`window`]), the API rate ([`api`]) and console claims ([`claims`]), over one
//! connection whose health is watched ([`link`]); the Lua they run is in [`scripts`].
//! Sessions, metrics and the local guards stay per process. Nothing here imports the
//! config or the sessions: [`Fleet`] is built from a [`FleetConfig`] and the numbers the
//! app gives it.

pub mod api;
pub mod claims;
pub mod config;
pub mod link;
pub mod scripts;
pub mod window;

use std::sync::Arc;
use std::time::Duration;

pub use claims::{ClaimRefusal, Lease, RemoteHolder};
pub use config::{FleetConfig, OnUnavailable};
pub use link::Unavailable;
pub use window::{FleetTicket, Refusal};

use crate::budget::Budget;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// The fleet: the link to Redis and what is shared over it.
#[derive(Debug)]
pub struct Fleet {
    link: Arc<link::Link>,
    windows: window::SharedWindows,
    api: Arc<api::SharedApi>,
    claims: claims::SharedClaims,
    mode: OnUnavailable,
}

/// This replica's name in claims and in Redis: the host name, the process id and a
/// random suffix (a restarted container keeps its host name and pid 1, and tests run
/// several replicas in one process; entries of two incarnations must never collide).
fn replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "tcvnc".to_owned());
    let host: String = host
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(64)
        .collect();
    format!(
        "{host}/{}-{:04x}",
        std::process::id(),
        rand::random::<u16>()
    )
}

impl Fleet {
    /// The fleet for `cfg`. `horizon` is the latest a URL request can end after its
    /// budget was taken (the budget's `max_wait` plus the API's timeouts); `api_horizon`
    /// the same for one API request. Connects lazily: the daemon starts while Redis is
    /// away (and refuses or falls back until it answers).
    ///
    /// # Errors
    /// When the Redis URL cannot be used.
    pub fn new(
        cfg: &FleetConfig,
        horizon: Duration,
        api_horizon: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Fleet, Unavailable> {
        let link = Arc::new(link::Link::new(cfg, replica_name(), metrics)?);
        tracing::info!(redis = %link.shown, replica = %link.replica, replicas = cfg.replicas.get(), on_unavailable = cfg.on_unavailable.as_str(), "sharing budgets and console claims through Redis");
        Ok(Fleet {
            windows: window::SharedWindows::new(link.clone(), cfg.on_unavailable, horizon),
            api: Arc::new(api::SharedApi::new(link.clone(), api_horizon)),
            claims: claims::SharedClaims::new(link.clone(), cfg.on_unavailable, cfg.claim_lease),
            mode: cfg.on_unavailable,
            link,
        })
    }

    /// Watches Redis until `shutdown` (probes, backoff, resync after a data loss).
    pub fn watch(
        &self,
        shutdown: Shutdown,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.link.clone().watch(shutdown)
    }

    /// The gate the API limiter asks after its own.
    pub(crate) fn api_gate(&self) -> Arc<dyn crate::budget::api::ApiGate> {
        self.api.clone()
    }

    /// This replica's name.
    pub fn replica(&self) -> &str {
        &self.link.replica
    }

    /// Redis answers now.
    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    /// Whether Redis answers, as a watch.
    pub fn watch_health(&self) -> tokio::sync::watch::Receiver<bool> {
        self.link.watch_health()
    }

    /// True while new URLs are refused (Redis away, `on_unavailable = "refuse"`): the
    /// replica is not ready.
    pub fn refusing(&self) -> bool {
        self.mode == OnUnavailable::Refuse && !self.link.is_up()
    }

    /// The policy while Redis is away.
    pub fn on_unavailable(&self) -> OnUnavailable {
        self.mode
    }

    /// Takes one URL for `instance` (see [`window::SharedWindows::take`]).
    ///
    /// # Errors
    /// [`Refusal`].
    pub(crate) async fn take(
        &self,
        instance: &str,
        budget: &Budget,
        wait: bool,
    ) -> Result<FleetTicket, Refusal> {
        self.windows.take(instance, budget, wait).await
    }

    /// URLs left for `instance` at this replica's last take, if it took one.
    pub(crate) fn last_left(&self, instance: &str) -> Option<u32> {
        self.windows.last_left(instance)
    }

    /// URLs left for `instance` now, asked from Redis.
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub async fn left(&self, instance: &str, per_minute: u32) -> Result<u32, Unavailable> {
        self.windows.left(instance, per_minute).await
    }

    /// Claims `instance`'s console for the fleet (see [`claims::SharedClaims::claim`]).
    ///
    /// # Errors
    /// [`ClaimRefusal`].
    pub(crate) async fn claim(
        &self,
        instance: &str,
        who: &str,
        ip: std::net::IpAddr,
    ) -> Result<Option<Lease>, ClaimRefusal> {
        self.claims.claim(instance, who, ip).await
    }
}
