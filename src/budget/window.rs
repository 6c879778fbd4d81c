//! The per-instance reconnect budget: at most N console URLs in any 60 s window, shared by
//! every client, retry and listener, with FIFO waiting up to `max_wait`.
//!
//! A [`Ticket`] is one URL taken from the window. It is settled (re-stamped with the time
//! the API call ended: the cloud counts by arrival, which lies between the take and the
//! answer) when its request may have reached the cloud, and refunded when nothing left
//! the host (cancelled before sending, connect failure). A ticket dropped unsettled is
//! settled: a request that was cut short may still have minted. Pending tickets are never
//! pruned from the window.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The length of the reconnect window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// A refusal: no URL for this instance within `max_wait`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reconnect budget for {instance} used up ({per_minute} per minute): next URL in {} s", self.retry_after_secs())]
pub struct Exhausted {
    /// The instance.
    pub instance: String,
    /// The configured budget.
    pub per_minute: u32,
    /// When the next URL will be available.
    pub retry_after: Duration,
}

impl Exhausted {
    /// Whole seconds until the next URL, at least 1.
    pub(crate) fn retry_after_secs(&self) -> u128 {
        self.retry_after.as_millis().div_ceil(1000).max(1)
    }
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// When taken while pending; when the call ended once settled.
    at: Instant,
    pending: bool,
}

#[derive(Debug, Default)]
struct Log {
    /// The URLs of the last window, sorted by `at`.
    mints: VecDeque<Entry>,
}

impl Log {
    fn prune(&mut self, now: Instant) {
        while self
            .mints
            .front()
            .is_some_and(|e| !e.pending && now.duration_since(e.at) >= WINDOW)
        {
            self.mints.pop_front();
        }
    }

    fn wait_needed(&mut self, per_minute: u32, now: Instant) -> Duration {
        self.prune(now);
        if self.mints.len() < per_minute as usize {
            return Duration::ZERO;
        }
        // The URL that has to age out is the one `per_minute` places back; a pending one
        // ages out no earlier than a minute after it was taken.
        let idx = self.mints.len() - per_minute as usize;
        self.mints.get(idx).map_or(Duration::ZERO, |e| {
            (e.at + WINDOW)
                .saturating_duration_since(now)
                .max(Duration::from_millis(if e.pending { 100 } else { 0 }))
        })
    }
}

#[derive(Debug)]
struct Slot {
    log: Mutex<Log>,
    /// Fair (FIFO) queue of clients waiting for this instance.
    queue: tokio::sync::Mutex<()>,
}

/// One URL taken from an instance's window.
#[derive(Debug)]
#[must_use = "a ticket is settled on drop; refund it when nothing was sent"]
pub struct Ticket {
    slot: Arc<Slot>,
    id: u64,
    done: bool,
}

impl Ticket {
    /// The API call has ended (answered, failed after sending, or cut short): the URL
    /// counts from now.
    pub fn settle(mut self) {
        self.done = true;
        self.restamp();
    }

    /// Nothing left the host (cancelled before sending, connect or TLS failure): the
    /// URL goes back.
    pub(crate) fn refund(mut self) {
        self.done = true;
        self.slot.log.lock().mints.retain(|e| e.id != self.id);
    }

    fn restamp(&self) {
        let mut log = self.slot.log.lock();
        if let Some(pos) = log.mints.iter().position(|e| e.id == self.id) {
            log.mints.remove(pos);
            // `now` is no earlier than any stamp in the log: it stays sorted.
            log.mints.push_back(Entry {
                id: self.id,
                at: Instant::now(),
                pending: false,
            });
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.restamp();
        }
    }
}

/// The per-instance reconnect budget.
pub struct Budget {
    per_minute: AtomicU32,
    /// Milliseconds.
    max_wait: AtomicU64,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    next_ticket: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("per_minute", &self.per_minute())
            .field("max_wait", &self.max_wait())
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// At most `per_minute` URLs per instance in any 60 s window; clients wait at most `max_wait`.
    pub fn new(per_minute: NonZeroU32, max_wait: Duration) -> Self {
        Budget {
            per_minute: AtomicU32::new(per_minute.get()),
            max_wait: AtomicU64::new(u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX)),
            slots: Mutex::new(HashMap::new()),
            next_ticket: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The configured number per minute.
    pub fn per_minute(&self) -> u32 {
        self.per_minute.load(Ordering::Relaxed)
    }

    /// The configured longest wait.
    pub fn max_wait(&self) -> Duration {
        Duration::from_millis(self.max_wait.load(Ordering::Relaxed))
    }

    /// New limits (a reloaded config); the windows' logs are kept, so URLs already
    /// spent still count.
    pub(crate) fn set_limits(&self, per_minute: NonZeroU32, max_wait: Duration) {
        self.per_minute.store(per_minute.get(), Ordering::Relaxed);
        self.max_wait.store(
            u64::try_from(max_wait.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn slot(&self, instance: &str) -> Arc<Slot> {
        self.slots
            .lock()
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
        let mut log = slot.log.lock();
        log.prune(Instant::now());
        self.per_minute()
            .saturating_sub(u32::try_from(log.mints.len()).unwrap_or(u32::MAX))
    }

    /// How long until a URL is free for `instance` (zero when one is free now).
    pub fn next_available_in(&self, instance: &str) -> Duration {
        let slot = self.slot(instance);
        let mut log = slot.log.lock();
        log.wait_needed(self.per_minute(), Instant::now())
    }

    fn record(&self, slot: &Arc<Slot>, log: &mut Log, now: Instant) -> Ticket {
        let id = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        log.mints.push_back(Entry {
            id,
            at: now,
            pending: true,
        });
        Ticket {
            slot: slot.clone(),
            id,
            done: false,
        }
    }

    /// Takes one URL for `instance` now if the window allows; never waits.
    ///
    /// # Errors
    /// [`Exhausted`] with the time until the next URL.
    pub(crate) fn try_take(&self, instance: &str) -> Result<Ticket, Exhausted> {
        let slot = self.slot(instance);
        let mut log = slot.log.lock();
        let now = Instant::now();
        let wait = log.wait_needed(self.per_minute(), now);
        if wait.is_zero() {
            Ok(self.record(&slot, &mut log, now))
        } else {
            Err(self.exhausted(instance, wait))
        }
    }

    fn exhausted(&self, instance: &str, retry_after: Duration) -> Exhausted {
        Exhausted {
            instance: instance.to_owned(),
            per_minute: self.per_minute(),
            retry_after,
        }
    }

    /// Takes one URL for `instance`, waiting in FIFO order up to `max_wait`. A client that
    /// would have to wait longer is refused at once, saying when the next URL comes.
    /// Cancel-safe: a cancelled wait takes nothing.
    ///
    /// # Errors
    /// [`Exhausted`] when no URL is available within `max_wait`.
    pub async fn take(&self, instance: &str) -> Result<Ticket, Exhausted> {
        let deadline = Instant::now() + self.max_wait();
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
                let mut log = slot.log.lock();
                let wait = log.wait_needed(self.per_minute(), now);
                if wait.is_zero() {
                    return Ok(self.record(&slot, &mut log, now));
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
                .unwrap_or_else(|e| panic!("take {i}: {e}"))
                .settle();
            tokio::time::advance(Duration::from_millis(100)).await;
        }
        let err = b.take("ins-a").await.expect_err("31st refused");
        // The first URL ages out 60 s after its call ended; 3 s have passed.
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
            b.try_take("i").expect("fits").settle();
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
        b.take("i").await.expect("1").settle();
        tokio::time::advance(Duration::from_secs(1)).await;
        b.take("i").await.expect("2").settle();
        let start = Instant::now();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..2 {
            let b = b.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let t = b.take("i").await.expect("waits then gets one");
                t.settle();
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
        b.take("i").await.expect("first").settle();
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
        t.settle();
        tokio::time::advance(Duration::from_secs(55)).await;
        let e = b
            .try_take("i")
            .expect_err("65 s after the take, 55 s after the answer");
        assert_eq!(e.retry_after, Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(5)).await;
        b.try_take("i").expect("60 s after the answer").settle();
    }

    /// Refunded tickets go back; dropped ones count; pending ones are never pruned, however
    /// long their call takes.
    #[tokio::test(start_paused = true)]
    async fn refund_drop_and_pending() {
        let b = Budget::new(nz(1), Duration::ZERO);
        b.try_take("i").expect("first").refund();
        assert_eq!(b.remaining("i"), 1, "refunded");
        drop(b.try_take("i").expect("again"));
        assert_eq!(b.remaining("i"), 0, "a dropped ticket counts");
        tokio::time::advance(WINDOW).await;
        let pending = b.try_take("i").expect("after a window");
        tokio::time::advance(WINDOW * 2).await;
        assert!(b.try_take("i").is_err(), "a pending ticket is never pruned");
        pending.settle();
        assert!(b.try_take("i").is_err(), "it counts from its answer");
        tokio::time::advance(WINDOW).await;
        assert!(b.try_take("i").is_ok());
    }
}
