//! Where URLs and API calls are spent: the per-instance reconnect budget (at most N
//! mints in any 60 s window, FIFO waiting up to `max_wait`) and the API rate limit
//! (per action, API host and credential, via governor). Both run on tokio time, so
//! paused-time tests drive them.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::Clock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use tokio::time::Instant;

/// The length of the reconnect window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// governor's clock, reading tokio time so that paused tests control it.
#[derive(Clone, Debug, Default)]
pub struct TokioClock;

#[allow(clippy::disallowed_types)] // governor wants std Instant; the value is tokio time
impl Clock for TokioClock {
    type Instant = std::time::Instant;
    fn now(&self) -> Self::Instant {
        Instant::now().into_std()
    }
}

#[allow(clippy::disallowed_types)] // the middleware is parameterised by the clock's instant type
type Keyed = RateLimiter<
    String,
    DefaultKeyedStateStore<String>,
    TokioClock,
    governor::middleware::NoOpMiddleware<std::time::Instant>,
>;

/// At most `rate` API requests per second for each (action, API host, SecretId).
///
/// GCRA with a burst of one: calls are spaced `1/rate` (plus 5 %: 5 ms at 10/s) apart, so no
/// one-second window, however placed, holds more than `rate` calls, even with up to 50 ms
/// of network jitter at rate 10.
pub struct ApiLimiter {
    limiter: Keyed,
    clock: TokioClock,
}

impl std::fmt::Debug for ApiLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiLimiter")
    }
}

impl ApiLimiter {
    /// A limiter allowing `per_second` calls a second per key.
    pub fn new(per_second: NonZeroU32) -> Self {
        // 5 % of slack per call (5 ms at the cloud's 10/s): the cloud counts by arrival, and
        // a request delayed on the way must not let the eleventh of a burst land inside the
        // same second. Proportional, so a raised quota is not capped by a fixed gap.
        let base = Duration::from_secs(1) / per_second.get();
        let period = base + base / 20;
        let quota = Quota::with_period(period)
            .unwrap_or_else(|| Quota::per_second(per_second))
            .allow_burst(NonZeroU32::MIN);
        ApiLimiter {
            limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), TokioClock),
            clock: TokioClock,
        }
    }

    /// Forgets keys that are back within their allowance (rotated temporary SecretIds).
    pub fn shrink(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Waits until a call for `(action, host, secret_id)` may go out, and takes it.
    pub async fn acquire(&self, action: &str, host: &str, secret_id: &str) {
        let key = format!("{action}\n{host}\n{secret_id}");
        loop {
            match self.limiter.check_key(&key) {
                Ok(()) => return,
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }
}

/// New connections per client address: a GCRA limit (burst of a sixth of the minute's
/// allowance) against scanners and reconnect storms from one host.
pub struct PeerLimiter {
    limiter:
        RateLimiter<std::net::IpAddr, DefaultKeyedStateStore<std::net::IpAddr>, TokioClock, NoOp>,
    per_minute: u32,
}

#[allow(clippy::disallowed_types)] // the middleware is parameterised by the clock's instant type
type NoOp = governor::middleware::NoOpMiddleware<std::time::Instant>;

impl std::fmt::Debug for PeerLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLimiter")
            .field("per_minute", &self.per_minute)
            .finish()
    }
}

impl PeerLimiter {
    /// `per_minute` connections per address, bursts of up to a sixth of that.
    pub fn new(per_minute: NonZeroU32) -> Self {
        let burst = NonZeroU32::new((per_minute.get() / 6).max(1)).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(per_minute).allow_burst(burst);
        PeerLimiter {
            limiter: RateLimiter::new(quota, DefaultKeyedStateStore::default(), TokioClock),
            per_minute: per_minute.get(),
        }
    }

    /// Admits one connection from `ip`, or says how long until the next is allowed.
    ///
    /// # Errors
    /// The wait, when over the limit.
    pub fn check(&self, ip: std::net::IpAddr) -> Result<(), Duration> {
        self.limiter
            .check_key(&ip)
            .map_err(|nu| nu.wait_time_from(TokioClock.now()))
    }

    /// The configured rate.
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    /// Forgets addresses that are back within their allowance (bounded memory).
    pub fn shrink(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }
}

/// One URL taken from an instance's budget; [`Budget::settle`] re-stamps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(u64);

/// A refusal: no URL for this instance within `max_wait`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reconnect budget for {instance} used up ({per_minute} per minute): next URL in {} s", retry_after.as_millis().div_ceil(1000).max(1))]
pub struct Exhausted {
    /// The instance.
    pub instance: String,
    /// The configured budget.
    pub per_minute: u32,
    /// When the next URL will be available.
    pub retry_after: Duration,
}

#[derive(Default)]
struct Log {
    /// `(ticket, time)` of the mints within the last window, oldest first. A time is
    /// first the moment the URL was taken and then, once the API call is over, the moment
    /// it ended: the cloud counts by arrival, which lies between the two, so the later
    /// stamp keeps our window at least as strict as the cloud's.
    mints: VecDeque<(u64, Instant)>,
}

impl Log {
    fn prune(&mut self, now: Instant) {
        while self
            .mints
            .front()
            .is_some_and(|(_, t)| now.duration_since(*t) >= WINDOW)
        {
            self.mints.pop_front();
        }
    }
}

struct Slot {
    log: Mutex<Log>,
    /// Fair (FIFO) queue of clients waiting for this instance.
    queue: tokio::sync::Mutex<()>,
}

/// The per-instance reconnect budget, shared by every client, retry and listener.
pub struct Budget {
    per_minute: u32,
    max_wait: Duration,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    next_ticket: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("per_minute", &self.per_minute)
            .field("max_wait", &self.max_wait)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Budget {
    /// At most `per_minute` URLs per instance in any 60 s window; clients wait at most `max_wait`.
    pub fn new(per_minute: NonZeroU32, max_wait: Duration) -> Self {
        Budget {
            per_minute: per_minute.get(),
            max_wait,
            slots: Mutex::new(HashMap::new()),
            next_ticket: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The configured number per minute.
    pub fn per_minute(&self) -> u32 {
        self.per_minute
    }

    fn slot(&self, instance: &str) -> Arc<Slot> {
        lock(&self.slots)
            .entry(instance.to_owned())
            .or_insert_with(|| {
                Arc::new(Slot {
                    log: Mutex::new(Log::default()),
                    queue: tokio::sync::Mutex::new(()),
                })
            })
            .clone()
    }

    /// URLs left for `instance` in the current window.
    pub fn remaining(&self, instance: &str) -> u32 {
        let slot = self.slot(instance);
        let mut log = lock(&slot.log);
        log.prune(Instant::now());
        self.per_minute
            .saturating_sub(u32::try_from(log.mints.len()).unwrap_or(u32::MAX))
    }

    /// How long until a URL is free for `instance` (zero when one is free now).
    pub fn next_available_in(&self, instance: &str) -> Duration {
        let slot = self.slot(instance);
        let mut log = lock(&slot.log);
        self.wait_needed(&mut log, Instant::now())
    }

    fn wait_needed(&self, log: &mut Log, now: Instant) -> Duration {
        log.prune(now);
        if log.mints.len() < self.per_minute as usize {
            return Duration::ZERO;
        }
        // The mint that has to age out is the one `per_minute` places back.
        let idx = log.mints.len() - self.per_minute as usize;
        log.mints.get(idx).map_or(Duration::ZERO, |(_, t)| {
            (*t + WINDOW).saturating_duration_since(now)
        })
    }

    /// Takes one URL for `instance` now if the window allows; never waits.
    ///
    /// # Errors
    /// [`Exhausted`] with the time until the next URL.
    pub fn try_take(&self, instance: &str) -> Result<Ticket, Exhausted> {
        let slot = self.slot(instance);
        let mut log = lock(&slot.log);
        let now = Instant::now();
        let wait = self.wait_needed(&mut log, now);
        if wait.is_zero() {
            Ok(self.record(&mut log, now))
        } else {
            Err(self.exhausted(instance, wait))
        }
    }

    fn record(&self, log: &mut Log, now: Instant) -> Ticket {
        let id = self
            .next_ticket
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        log.mints.push_back((id, now));
        Ticket(id)
    }

    /// Re-stamps `ticket` of `instance` with the current time: call it when the API call
    /// the URL was taken for has ended (answered or failed).
    pub fn settle(&self, instance: &str, ticket: Ticket) {
        let slot = self.slot(instance);
        let mut log = lock(&slot.log);
        if let Some(pos) = log.mints.iter().position(|(id, _)| *id == ticket.0) {
            log.mints.remove(pos);
            // `now` is no earlier than any stamp in the log: it stays sorted.
            log.mints.push_back((ticket.0, Instant::now()));
        }
    }

    fn exhausted(&self, instance: &str, retry_after: Duration) -> Exhausted {
        Exhausted {
            instance: instance.to_owned(),
            per_minute: self.per_minute,
            retry_after,
        }
    }

    /// Takes one URL for `instance`, waiting in FIFO order up to `max_wait`. A client that
    /// would have to wait longer is refused at once, saying when the next URL comes.
    ///
    /// # Errors
    /// [`Exhausted`] when no URL is available within `max_wait`.
    pub async fn take(&self, instance: &str) -> Result<Ticket, Exhausted> {
        let deadline = Instant::now() + self.max_wait;
        let slot = self.slot(instance);
        // Fast path: a free URL and nobody queued.
        if let Ok(_turn) = slot.queue.try_lock() {
            if let Ok(t) = self.try_take(instance) {
                return Ok(t);
            }
        }
        let Ok(_turn) = tokio::time::timeout_at(deadline, slot.queue.lock()).await else {
            let wait = self.next_available_in(instance);
            return Err(self.exhausted(instance, wait.max(Duration::from_secs(1))));
        };
        loop {
            let now = Instant::now();
            let wait = {
                let mut log = lock(&slot.log);
                let wait = self.wait_needed(&mut log, now);
                if wait.is_zero() {
                    return Ok(self.record(&mut log, now));
                }
                wait
            };
            if now + wait > deadline {
                return Err(self.exhausted(instance, wait));
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    /// 31 takes in a minute: 30 pass, the 31st is refused with the time to the next URL.
    #[tokio::test(start_paused = true)]
    async fn thirty_per_window_then_refused_with_time() {
        let b = Budget::new(nz(30), Duration::ZERO);
        for i in 0..30 {
            b.take("ins-a")
                .await
                .unwrap_or_else(|e| panic!("take {i}: {e}"));
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        let err = b.take("ins-a").await.expect_err("31st refused");
        // The first mint ages out 60 s after it was taken; 3 s have passed.
        assert_eq!(err.retry_after, Duration::from_secs(57));
        assert!(err.to_string().contains("next URL in 57 s"), "{err}");
        assert_eq!(b.remaining("ins-a"), 0);
        assert_eq!(b.remaining("ins-b"), 30);
    }

    /// A sliding window: 30 at the end of one minute and 30 at the start of the next
    /// do not both pass.
    #[tokio::test(start_paused = true)]
    async fn sliding_not_calendar() {
        let b = Budget::new(nz(30), Duration::ZERO);
        tokio::time::advance(Duration::from_secs(50)).await;
        for _ in 0..30 {
            b.try_take("i").expect("fits");
        }
        tokio::time::advance(Duration::from_secs(15)).await;
        assert!(b.try_take("i").is_err());
        tokio::time::advance(Duration::from_secs(45)).await;
        assert!(b.try_take("i").is_ok());
    }

    /// A waiting client gets the URL as soon as one ages out; waiters are served FIFO.
    #[tokio::test(start_paused = true)]
    async fn waiters_are_served_in_order() {
        let b = Arc::new(Budget::new(nz(2), Duration::from_secs(120)));
        b.take("i").await.expect("1");
        tokio::time::advance(Duration::from_secs(1)).await;
        b.take("i").await.expect("2");
        let start = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..2 {
            let b = b.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                b.take("i").await.expect("waits then gets one");
                let _ = tx.send((n, Instant::now()));
            });
            tokio::task::yield_now().await;
        }
        let (first, t1) = rx.recv().await.expect("first");
        let (second, t2) = rx.recv().await.expect("second");
        assert_eq!((first, second), (0, 1));
        assert_eq!(t1 - start, Duration::from_secs(59));
        assert_eq!(t2 - start, Duration::from_secs(60));
    }

    /// A first connect does not wait, and nothing waits longer than max_wait.
    #[tokio::test(start_paused = true)]
    async fn first_connect_immediate_and_wait_bounded() {
        let b = Budget::new(nz(1), Duration::from_secs(10));
        let t0 = Instant::now();
        b.take("i").await.expect("first");
        assert_eq!(Instant::now(), t0);
        let err = b.take("i").await.expect_err("would wait 60 s");
        assert_eq!(Instant::now(), t0, "refused at once, not after max_wait");
        assert_eq!(err.retry_after, Duration::from_secs(60));
    }

    /// A URL whose API call ended late counts from when it ended: the cloud saw the
    /// request arrive no earlier than it was sent, and no later than the answer.
    #[tokio::test(start_paused = true)]
    async fn settled_ticket_counts_from_the_answer() {
        let b = Budget::new(nz(1), Duration::ZERO);
        let t = b.try_take("i").expect("first");
        tokio::time::advance(Duration::from_secs(10)).await;
        b.settle("i", t);
        tokio::time::advance(Duration::from_secs(55)).await;
        let e = b
            .try_take("i")
            .expect_err("65 s after the take, 55 s after the answer");
        assert_eq!(e.retry_after, Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(5)).await;
        b.try_take("i").expect("60 s after the answer");
    }

    /// The API limiter spaces calls so no 1 s window holds more than the rate.
    #[tokio::test(start_paused = true)]
    async fn api_limiter_spacing() {
        let l = ApiLimiter::new(nz(10));
        let t0 = Instant::now();
        let mut times = Vec::new();
        for _ in 0..25 {
            l.acquire("DescribeInstanceVncUrl", "h", "id").await;
            times.push(Instant::now() - t0);
        }
        for w in times.windows(11) {
            assert!(w[10] - w[0] >= Duration::from_secs(1), "{w:?}");
        }
        // Other keys are not held back.
        let t1 = Instant::now();
        l.acquire("DescribeInstanceVncUrl", "h", "other").await;
        assert_eq!(Instant::now(), t1);
    }
}
