//! The URL window of an instance shared by every replica: one sorted set per instance in
//! Redis (a sliding-window log, member per URL, score its time in Redis ms), checked and
//! taken in one script. A [`FleetTicket`] is settled or refunded exactly as the local
//! [`Ticket`] is (a refund removes the entry; a ticket dropped unsettled is settled).
//! While Redis cannot be reached, `on_unavailable` decides: refuse, or spend from a local
//! window of `reconnects_per_minute / replicas`.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use super::config::OnUnavailable;
use super::link::{Link, Unavailable, WINDOW_MS};
use super::scripts;
use crate::budget::{Budget, Exhausted, Ticket};

/// Why the fleet gave no URL.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Refusal {
    /// The shared window allows none within `max_wait` (the same words as locally).
    #[error(transparent)]
    Exhausted(#[from] Exhausted),
    /// Redis cannot be reached and `on_unavailable = "refuse"`.
    #[error("{0}: no new console URLs until it answers (fleet.on_unavailable = \"refuse\"); start Redis or make it reachable from this host, or set fleet.on_unavailable = \"local\" to fall back to a local budget")]
    Unavailable(Unavailable),
    /// Redis lost its data; the replicas are putting back what they spent.
    #[error("Redis lost the shared state (restarted empty or flushed) and the replicas are putting back what they spent in the last minute: no new console URLs for up to {} s (until every one of fleet.replicas has synced)", retry_after.as_secs().max(1))]
    Rebuilding {
        /// At most this long.
        retry_after: Duration,
    },
}

/// One URL taken through the fleet.
#[derive(Debug)]
#[must_use = "a ticket is settled on drop; refund it when nothing was sent"]
pub enum FleetTicket {
    /// From the shared window.
    Shared(SharedTicket),
    /// From the local fallback window (Redis was unreachable, `on_unavailable = "local"`).
    Local(Ticket),
}

impl FleetTicket {
    /// The API call has ended: the URL counts from now.
    pub fn settle(self) {
        match self {
            FleetTicket::Shared(t) => t.settle(),
            FleetTicket::Local(t) => t.settle(),
        }
    }

    /// Nothing left the host: the URL goes back.
    pub(crate) fn refund(self) {
        match self {
            FleetTicket::Shared(t) => t.refund(),
            FleetTicket::Local(t) => t.refund(),
        }
    }
}

/// An entry in an instance's shared window.
#[derive(Debug)]
pub struct SharedTicket {
    link: Arc<Link>,
    key: String,
    member: String,
    /// Redis time at the take, and the local instant then (to estimate the end's time
    /// when Redis cannot be told).
    taken_ms: i64,
    taken_at: Instant,
    done: bool,
}

impl SharedTicket {
    /// The API call has ended (or may have): restamp the entry with Redis's now.
    pub fn settle(mut self) {
        self.done = true;
        self.finish(true);
    }

    /// Nothing left the host: remove the entry.
    pub(crate) fn refund(mut self) {
        self.done = true;
        self.finish(false);
    }

    /// Tells Redis in the background (a settle or refund must not wait on a viewer's
    /// path). If Redis cannot be told, the entry keeps its pending score, which counts
    /// it until the latest its call could have ended: never less than the cloud counts.
    fn finish(&self, settle: bool) {
        let estimate = self.taken_ms
            + i64::try_from(self.taken_at.elapsed().as_millis()).unwrap_or(i64::MAX / 2);
        if settle {
            self.link.own_entry(&self.key, &self.member, estimate);
        } else {
            self.link.forget_entry(&self.key, &self.member);
        }
        let (link, key, member) = (self.link.clone(), self.key.clone(), self.member.clone());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let done = if settle {
                link.eval(
                    "settle",
                    &scripts::SETTLE,
                    &[&key],
                    &[member.clone(), WINDOW_MS.to_string()],
                )
                .await
            } else {
                link.eval("refund", &scripts::REFUND, &[&key], std::slice::from_ref(&member))
                    .await
            };
            match done {
                Ok(r) if settle => link.own_entry(&key, &member, r.now_ms),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, settle, "could not tell Redis how a URL request ended; its entry counts until its horizon"),
            }
        });
    }
}

impl Drop for SharedTicket {
    fn drop(&mut self) {
        if !self.done {
            self.finish(true);
        }
    }
}

/// The shared windows of every instance.
pub(crate) struct SharedWindows {
    link: Arc<Link>,
    mode: OnUnavailable,
    /// The latest a pending entry's call can end after its take.
    horizon: Duration,
    /// `reconnects_per_minute / replicas`, used while Redis is away in `local` mode.
    fallback: Budget,
    next_id: AtomicU64,
    /// URLs left per instance at the last take (for logs and metrics).
    left: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for SharedWindows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWindows")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// How often a waiting take asks again while the shared state is rebuilt.
const REBUILD_POLL: Duration = Duration::from_millis(250);

impl SharedWindows {
    pub(crate) fn new(link: Arc<Link>, mode: OnUnavailable, horizon: Duration) -> Self {
        SharedWindows {
            link,
            mode,
            horizon,
            fallback: Budget::new(NonZeroU32::MIN, Duration::ZERO),
            next_id: AtomicU64::new(0),
            left: Mutex::default(),
        }
    }

    fn key(&self, instance: &str) -> String {
        self.link.key(&format!("win:{instance}"))
    }

    /// URLs left for `instance` at the last take through this replica, if any.
    pub(crate) fn last_left(&self, instance: &str) -> Option<u32> {
        self.left.lock().get(instance).copied()
    }

    /// URLs left for `instance` now, from Redis.
    ///
    /// # Errors
    /// When Redis cannot be reached.
    pub(crate) async fn left(&self, instance: &str, per_minute: u32) -> Result<u32, Unavailable> {
        let key = self.key(instance);
        let r = self
            .link
            .eval(
                "left",
                &scripts::WINDOW_LEFT,
                &[&key],
                &[per_minute.to_string(), WINDOW_MS.to_string()],
            )
            .await?;
        Ok(u32::try_from(r.n).unwrap_or(0))
    }

    /// Takes one URL for `instance` from the shared window under `budget`'s limits
    /// (`reconnects_per_minute`, `max_wait`), waiting when `wait` (the first attempt of a
    /// client) up to `max_wait`. Cancel-safe: a cancelled wait takes nothing (an entry
    /// taken by a script whose answer is lost counts until its horizon).
    ///
    /// # Errors
    /// [`Refusal`] saying why no URL.
    pub(crate) async fn take(
        &self,
        instance: &str,
        budget: &Budget,
        wait: bool,
    ) -> Result<FleetTicket, Refusal> {
        let per_minute = budget.per_minute();
        let max_wait = if wait {
            budget.max_wait()
        } else {
            Duration::ZERO
        };
        let deadline = Instant::now() + max_wait;
        let key = self.key(instance);
        let horizon_ms = u64::try_from(self.horizon.as_millis()).unwrap_or(u64::MAX);
        let mut resynced = false;
        loop {
            if !self.link.is_up() {
                return self.unavailable(instance, budget, wait, None).await;
            }
            let member = format!(
                "{}#{}",
                self.link.replica,
                self.next_id.fetch_add(1, Ordering::Relaxed)
            );
            let mut args = self.link.prelude_args();
            args.extend([
                per_minute.to_string(),
                horizon_ms.to_string(),
                member.clone(),
            ]);
            let epoch_key = self.link.key("epoch");
            let r = match self
                .link
                .eval("take", &scripts::WINDOW_TAKE, &[&epoch_key, &key], &args)
                .await
            {
                Ok(r) => r,
                Err(e) => return self.unavailable(instance, budget, wait, Some(e)).await,
            };
            let now = Instant::now();
            match r.status.as_str() {
                "ok" => {
                    let left = u32::try_from(r.n).unwrap_or(0);
                    self.left.lock().insert(instance.to_owned(), left);
                    let pending = r.now_ms + i64::try_from(horizon_ms).unwrap_or(0);
                    self.link.own_entry(&key, &member, pending);
                    return Ok(FleetTicket::Shared(SharedTicket {
                        link: self.link.clone(),
                        key,
                        member,
                        taken_ms: r.now_ms,
                        taken_at: now,
                        done: false,
                    }));
                }
                "resync" if !resynced => {
                    resynced = true;
                    if let Err(e) = self.link.resync().await {
                        return self.unavailable(instance, budget, wait, Some(e)).await;
                    }
                }
                "rebuilding" => {
                    let retry_after = ms(r.n);
                    if now + REBUILD_POLL.min(retry_after) > deadline {
                        return Err(Refusal::Rebuilding { retry_after });
                    }
                    tokio::time::sleep(REBUILD_POLL.min(retry_after)).await;
                }
                "wait" => {
                    self.left.lock().insert(instance.to_owned(), 0);
                    let retry_after = ms(r.n);
                    if now + retry_after > deadline {
                        return Err(Refusal::Exhausted(Exhausted {
                            instance: instance.to_owned(),
                            per_minute,
                            retry_after,
                        }));
                    }
                    tokio::time::sleep(retry_after).await;
                }
                other => {
                    return self
                        .unavailable(
                            instance,
                            budget,
                            wait,
                            Some(Unavailable {
                                url: self.link.shown.clone(),
                                cause: format!(
                                    "unexpected answer {other:?} from the window script"
                                ),
                            }),
                        )
                        .await
                }
            }
        }
    }

    /// Redis is away: refuse, or take from the local fallback window.
    async fn unavailable(
        &self,
        instance: &str,
        budget: &Budget,
        wait: bool,
        error: Option<Unavailable>,
    ) -> Result<FleetTicket, Refusal> {
        let error = error.unwrap_or_else(|| Unavailable {
            url: self.link.shown.clone(),
            cause: "not answering since the last call or probe".into(),
        });
        match self.mode {
            OnUnavailable::Refuse => {
                self.link.metrics.fleet_fallback("url_refused");
                Err(Refusal::Unavailable(error))
            }
            OnUnavailable::Local => {
                let share = budget.per_minute() / self.link.replicas;
                let Some(share) = NonZeroU32::new(share) else {
                    self.link.metrics.fleet_fallback("url_refused");
                    return Err(Refusal::Unavailable(error));
                };
                self.fallback.set_limits(share, budget.max_wait());
                self.link.metrics.fleet_fallback("url_local");
                let taken = if wait {
                    self.fallback.take(instance).await
                } else {
                    self.fallback.try_take(instance)
                };
                tracing::debug!(%error, share = share.get(), "Redis away: spending from the local fallback window");
                taken.map(FleetTicket::Local).map_err(Refusal::Exhausted)
            }
        }
    }
}

fn ms(n: i64) -> Duration {
    Duration::from_millis(u64::try_from(n).unwrap_or(0).max(1))
}
