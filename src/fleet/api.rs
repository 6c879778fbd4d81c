//! The API rate shared by every replica: the same rule as the local limiter (a request
//! leaves only when fewer than N others are in flight or ended less than a second ago,
//! sends spaced `1/N` apart), kept in one sorted set per key in Redis and checked in one
//! script. While Redis is away, a local limiter at `N / replicas` stands in.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use tokio::time::Instant;

use super::link::Link;
use super::scripts;
use crate::budget::api::{ApiGate, GateTicket};
use crate::budget::{ApiKey, ApiLimiter, ApiTicket};

/// The cloud's window plus the local limiter's margin, in ms.
const WINDOW_MS: u64 = 1_005;
/// How often a request held by others in flight asks again.
const POLL: Duration = Duration::from_millis(20);

/// The shared API gate.
#[derive(Debug)]
pub(crate) struct SharedApi {
    link: Arc<Link>,
    /// The latest a request can end after it was admitted (the API timeout and more).
    horizon: Duration,
    /// `N / replicas`, used while Redis is away.
    fallback: ApiLimiter,
    next_id: AtomicU64,
}

impl SharedApi {
    pub(crate) fn new(link: Arc<Link>, horizon: Duration) -> Self {
        SharedApi {
            link,
            horizon,
            fallback: ApiLimiter::new(NonZeroU32::MIN),
            next_id: AtomicU64::new(0),
        }
    }

    /// The Redis keys of `key`: its log and its next-send time. The account is hashed:
    /// a SecretId has no business in Redis.
    fn keys(&self, key: &ApiKey) -> (String, String) {
        use sha2::Digest;
        let account = hex::encode(&sha2::Sha256::digest(key.account.as_bytes())[..8]);
        let base = self
            .link
            .key(&format!("api:{}:{}:{account}", key.action, key.host));
        (base.clone(), format!("{base}:next"))
    }

    async fn admit(
        &self,
        key: &ApiKey,
        rate: u32,
        deadline: Option<Instant>,
    ) -> Result<Box<dyn GateTicket>, Duration> {
        let (log, next) = self.keys(key);
        let spacing_ms = 1000 / u64::from(rate.max(1));
        let horizon_ms = u64::try_from(self.horizon.as_millis()).unwrap_or(u64::MAX);
        loop {
            if !self.link.is_up() {
                return self.local(key, rate, deadline).await;
            }
            let member = format!(
                "{}#{}",
                self.link.replica,
                self.next_id.fetch_add(1, Ordering::Relaxed)
            );
            let args = [
                rate.to_string(),
                WINDOW_MS.to_string(),
                horizon_ms.to_string(),
                member.clone(),
                spacing_ms.to_string(),
            ];
            let r = match self
                .link
                .eval("api", &scripts::API_ACQUIRE, &[&log, &next], &args)
                .await
            {
                Ok(r) => r,
                Err(_) => return self.local(key, rate, deadline).await,
            };
            if r.status == "ok" {
                return Ok(Box::new(SharedApiTicket {
                    link: self.link.clone(),
                    log,
                    next,
                    member,
                    done: false,
                }));
            }
            let now = Instant::now();
            let wait = if r.n < 0 {
                POLL
            } else {
                Duration::from_millis(u64::try_from(r.n).unwrap_or(0).max(1))
            };
            if let Some(d) = deadline {
                if now + wait > d {
                    return Err(if r.n < 0 {
                        Duration::from_secs(1)
                    } else {
                        wait
                    });
                }
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Redis is away: a local share of the rate.
    async fn local(
        &self,
        key: &ApiKey,
        rate: u32,
        deadline: Option<Instant>,
    ) -> Result<Box<dyn GateTicket>, Duration> {
        let share = NonZeroU32::new(rate / self.link.replicas).unwrap_or(NonZeroU32::MIN);
        self.fallback.set_rate(share);
        self.link.metrics.fleet_fallback("api_local");
        let t = self.fallback.acquire(key, deadline).await?;
        Ok(Box::new(LocalApiTicket(Some(t))))
    }
}

impl ApiGate for SharedApi {
    fn acquire<'a>(
        &'a self,
        key: &'a ApiKey,
        rate: u32,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, Result<Box<dyn GateTicket>, Duration>> {
        Box::pin(self.admit(key, rate, deadline))
    }
}

/// An admission from the shared log.
#[derive(Debug)]
struct SharedApiTicket {
    link: Arc<Link>,
    log: String,
    next: String,
    member: String,
    done: bool,
}

impl SharedApiTicket {
    /// Tells Redis in the background; if it cannot be told, the entry counts until its
    /// horizon (never less than the cloud counts).
    fn finish(&mut self, settle: bool) {
        self.done = true;
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (link, log, next, member) = (
            self.link.clone(),
            self.log.clone(),
            self.next.clone(),
            self.member.clone(),
        );
        rt.spawn(async move {
            let r = if settle {
                link.eval(
                    "api_settle",
                    &scripts::SETTLE,
                    &[&log],
                    &[member, WINDOW_MS.to_string()],
                )
                .await
            } else {
                link.eval("api_refund", &scripts::REFUND, &[&log, &next], &[member])
                    .await
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "could not tell Redis how an API request ended");
            }
        });
    }
}

impl GateTicket for SharedApiTicket {
    fn settle(mut self: Box<Self>) {
        self.finish(true);
    }

    fn refund(mut self: Box<Self>) {
        self.finish(false);
    }
}

impl Drop for SharedApiTicket {
    fn drop(&mut self) {
        if !self.done {
            self.finish(true);
        }
    }
}

/// An admission from the local stand-in.
#[derive(Debug)]
struct LocalApiTicket(Option<ApiTicket>);

impl GateTicket for LocalApiTicket {
    fn settle(mut self: Box<Self>) {
        if let Some(t) = self.0.take() {
            t.settle();
        }
    }

    fn refund(mut self: Box<Self>) {
        if let Some(t) = self.0.take() {
            t.refund();
        }
    }
}
