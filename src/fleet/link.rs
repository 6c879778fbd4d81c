//! The connection to Redis and whether it can be used now: one multiplexed connection
//! (redis-rs `ConnectionManager`, reconnecting by itself), every call bounded by a short
//! timeout, a watcher that probes with backoff while Redis is away, and the *epoch*
//! protocol that rebuilds the shared state after Redis lost its data.
//!
//! The epoch is a key holding the Redis time at which it was created. When it is missing
//! (Redis restarted empty, or was flushed), the windows and claims of the last minute are
//! gone too. Each replica notices (every script compares the epoch it last synced with),
//! puts back what it holds itself (its URL entries of the last minute and its live
//! claims), and signs the epoch's `synced` set. Until `replicas` replicas have signed, or
//! a minute has passed, no URL is given and no console claimed: a replica whose entries
//! are not back yet could otherwise be spent over.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use tokio::sync::watch;

use super::config::FleetConfig;
use super::scripts;
use crate::metrics::Metrics;
use crate::redact::Secret;
use crate::shutdown::Shutdown;

/// Every Redis call is abandoned after this long (Redis answers in well under a ms).
pub(crate) const OP_TIMEOUT: Duration = Duration::from_secs(1);
/// The watcher's probe interval while Redis answers.
const PROBE: Duration = Duration::from_secs(1);
/// The longest pause between probes while it does not.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The URL window's length, which is also how long a rebuild can last.
pub(crate) const WINDOW_MS: i64 = 60_000;

/// Redis cannot be used now.
#[derive(Debug, Clone, thiserror::Error)]
#[error("Redis at {url} is unreachable ({cause})")]
pub struct Unavailable {
    /// The redacted URL.
    pub url: String,
    /// What failed (no password).
    pub cause: String,
}

/// A script's answer: `{status, redis time in ms, a number, a text}`.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: String,
    pub now_ms: i64,
    pub n: i64,
    pub text: String,
}

/// What this replica itself holds in Redis, to put back after Redis lost its data.
#[derive(Debug, Default)]
struct Own {
    /// URL-window entries: window key → (member, score in Redis ms).
    entries: HashMap<String, Vec<(String, i64)>>,
    /// Live claims: lease key → (value, lease ms).
    leases: HashMap<String, (String, u64)>,
}

/// The shared connection and its health.
pub(crate) struct Link {
    conn: ConnectionManager,
    /// The URL as it may be shown.
    pub(crate) shown: String,
    /// The password, to scrub from any error text a library might write.
    password: Option<Secret>,
    pub(crate) prefix: String,
    /// This process's name in claims and the synced sets.
    pub(crate) replica: String,
    pub(crate) replicas: u32,
    up: AtomicBool,
    health: watch::Sender<bool>,
    epoch: Mutex<Option<String>>,
    own: Mutex<Own>,
    pub(crate) metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("redis", &self.shown)
            .field("replica", &self.replica)
            .field("up", &self.is_up())
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link to `cfg.redis`; connects lazily (the daemon starts while Redis is away).
    ///
    /// # Errors
    /// When the URL cannot be used (checked at config load already).
    pub(crate) fn new(
        cfg: &FleetConfig,
        replica: String,
        metrics: Arc<Metrics>,
    ) -> Result<Link, Unavailable> {
        use redis::IntoConnectionInfo;
        let shown = cfg.redis_display();
        let password = cfg.password.clone().or_else(|| {
            cfg.redis
                .expose()
                .into_connection_info()
                .ok()
                .and_then(|i| i.redis_settings().password().map(Secret::new))
        });
        let fail = |cause: String| Unavailable {
            url: shown.clone(),
            cause,
        };
        let mut info = cfg
            .redis
            .expose()
            .into_connection_info()
            .map_err(|e| fail(format!("{:?}", e.kind())))?;
        if let Some(p) = &cfg.password {
            let settings = info.redis_settings().clone().set_password(p.expose());
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(|e| fail(format!("{:?}", e.kind())))?;
        let manager = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_secs(1))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_lazy_with_config(client, manager)
            .map_err(|e| fail(format!("{:?}", e.kind())))?;
        metrics.fleet_up(false);
        Ok(Link {
            conn,
            shown,
            password,
            prefix: cfg.key_prefix.clone(),
            replica,
            replicas: cfg.replicas.get(),
            up: AtomicBool::new(false),
            health: watch::channel(false).0,
            epoch: Mutex::new(None),
            own: Mutex::default(),
            metrics,
        })
    }

    /// Redis answered the last call or probe.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Whether Redis is usable, as a watch (tests and readiness).
    pub(crate) fn watch_health(&self) -> watch::Receiver<bool> {
        self.health.subscribe()
    }

    /// `prefix:rest`.
    pub(crate) fn key(&self, rest: &str) -> String {
        format!("{}:{rest}", self.prefix)
    }

    fn scrub(&self, text: String) -> String {
        match &self.password {
            Some(p) if !p.is_empty() => text.replace(p.expose(), "<redacted>"),
            _ => text,
        }
    }

    fn unavailable(&self, cause: String) -> Unavailable {
        Unavailable {
            url: self.shown.clone(),
            cause: self.scrub(cause),
        }
    }

    fn mark_down(&self, op: &'static str, cause: &str) {
        self.metrics.fleet_error(op);
        if self.up.swap(false, Ordering::Relaxed) {
            self.metrics.fleet_up(false);
            self.health.send_replace(false);
            tracing::warn!(redis = %self.shown, op, cause, "Redis stopped answering: no shared budget or claims until it does; check that Redis runs and is reachable from this host (tcvnc keeps retrying)");
        }
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            self.metrics.fleet_up(true);
            self.health.send_replace(true);
            tracing::info!(redis = %self.shown, replica = %self.replica, "Redis answers: budgets and console claims are shared");
        }
    }

    /// Runs `script` with `keys` and `args`, within [`OP_TIMEOUT`]. A failure marks Redis
    /// down (the watcher brings it back).
    pub(crate) async fn eval(
        &self,
        op: &'static str,
        script: &redis::Script,
        keys: &[&str],
        args: &[String],
    ) -> Result<Reply, Unavailable> {
        let started = tokio::time::Instant::now();
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(a.as_str());
        }
        let mut conn = self.conn.clone();
        let result = tokio::time::timeout(
            OP_TIMEOUT,
            inv.invoke_async::<(String, i64, i64, String)>(&mut conn),
        )
        .await;
        self.metrics.fleet_op(op, started.elapsed().as_secs_f64());
        match result {
            Ok(Ok((status, now_ms, n, text))) => Ok(Reply {
                status,
                now_ms,
                n,
                text,
            }),
            Ok(Err(e)) => {
                let cause = self.scrub(e.to_string());
                self.mark_down(op, &cause);
                Err(self.unavailable(cause))
            }
            Err(_) => {
                let cause = format!("no answer within {} ms", OP_TIMEOUT.as_millis());
                self.mark_down(op, &cause);
                Err(self.unavailable(cause))
            }
        }
    }

    /// The epoch this replica last synced (`""` before the first sync).
    pub(crate) fn epoch(&self) -> String {
        self.epoch.lock().clone().unwrap_or_default()
    }

    /// The arguments every script with the epoch prelude starts with.
    pub(crate) fn prelude_args(&self) -> Vec<String> {
        vec![
            self.epoch(),
            self.key("synced:"),
            self.replicas.to_string(),
            WINDOW_MS.to_string(),
        ]
    }

    /// Puts back what this replica holds (URL entries of the last minute, live claims)
    /// and signs the current epoch (creating it when Redis lost it).
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub(crate) async fn resync(&self) -> Result<(), Unavailable> {
        let (entries, leases) = {
            let own = self.own.lock();
            (own.entries.clone(), own.leases.clone())
        };
        let mut args = vec![
            self.key("synced:"),
            self.replica.clone(),
            WINDOW_MS.to_string(),
        ];
        let mut n_entries = 0usize;
        for (key, list) in &entries {
            for (member, score) in list {
                args.extend(["e".into(), key.clone(), member.clone(), score.to_string()]);
                n_entries += 1;
            }
        }
        for (key, (value, ms)) in &leases {
            args.extend(["l".into(), key.clone(), value.clone(), ms.to_string()]);
        }
        let epoch_key = self.key("epoch");
        let r = self
            .eval("resync", &scripts::RESYNC, &[&epoch_key], &args)
            .await?;
        let old = self.epoch.lock().replace(r.text.clone());
        if old.as_deref() != Some(r.text.as_str()) {
            if r.n == 1 {
                tracing::warn!(redis = %self.shown, url_entries = n_entries, claims = leases.len(), "Redis had lost the shared state (restarted empty or flushed): put back this replica's URLs of the last minute and its live claims; no URL is given until every replica has (fleet.replicas) or a minute has passed");
            } else {
                tracing::info!(redis = %self.shown, url_entries = n_entries, claims = leases.len(), "synced with the shared state");
            }
        }
        Ok(())
    }

    /// Probes Redis (its epoch), syncing when the epoch changed.
    async fn probe(&self) -> Result<(), Unavailable> {
        let epoch_key = self.key("epoch");
        let r = self
            .eval("probe", &scripts::PROBE, &[&epoch_key], &[])
            .await?;
        if r.text.is_empty() || r.text != self.epoch() {
            self.resync().await?;
        }
        self.mark_up();
        Ok(())
    }

    /// Watches Redis until `shutdown`: a probe a second while it answers, with backoff
    /// (0.1 s doubling to 2 s, jittered) while it does not.
    pub(crate) async fn watch(self: Arc<Self>, shutdown: Shutdown) {
        let mut failures = 0u32;
        let mut delay = Duration::ZERO;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
            match self.probe().await {
                Ok(()) => {
                    failures = 0;
                    delay = PROBE;
                }
                Err(e) => {
                    failures += 1;
                    let base = Duration::from_millis(100)
                        .saturating_mul(1 << failures.min(6))
                        .min(MAX_BACKOFF);
                    let jitter = rand::RngExt::random_range(&mut rand::rng(), 0.0..0.25);
                    delay = base + base.mul_f64(jitter);
                    tracing::debug!(error = %e, retry_in_ms = delay.as_millis() as u64, "Redis probe failed");
                }
            }
        }
    }

    /// Remembers a URL entry this replica wrote (`score` in Redis ms), for a resync.
    pub(crate) fn own_entry(&self, key: &str, member: &str, score: i64) {
        let mut own = self.own.lock();
        let list = own.entries.entry(key.to_owned()).or_default();
        // Entries older than a window (settled ones) are no use after a data loss.
        list.retain(|(m, s)| m != member && *s > score - 2 * WINDOW_MS);
        list.push((member.to_owned(), score));
    }

    /// Forgets a refunded entry.
    pub(crate) fn forget_entry(&self, key: &str, member: &str) {
        let mut own = self.own.lock();
        if let Some(list) = own.entries.get_mut(key) {
            list.retain(|(m, _)| m != member);
            if list.is_empty() {
                own.entries.remove(key);
            }
        }
    }

    /// Remembers a live claim, for a resync.
    pub(crate) fn own_lease(&self, key: &str, value: &str, lease_ms: u64) {
        self.own
            .lock()
            .leases
            .insert(key.to_owned(), (value.to_owned(), lease_ms));
    }

    /// Forgets a released claim.
    pub(crate) fn forget_lease(&self, key: &str) {
        self.own.lock().leases.remove(key);
    }
}
