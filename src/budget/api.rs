//! The API rate limit: at most N requests in any one-second window per action, API host
//! and account, counted the way the cloud counts (by arrival).
//!
//! The cloud sees a request somewhere between the moment it leaves and the moment its
//! answer comes back. A request is therefore admitted only when fewer than N others are
//! either still in flight or ended less than a second (plus a small margin) ago. Its
//! arrival is then at least a second after the latest possible arrival of the request N
//! places before it, whatever the network's jitter, a cold TLS handshake or a slow
//! answer did to either. Sends are also spaced `1/N` apart, so a burst of viewers is
//! smoothed. A [`ApiTicket`] is settled when its request ends (or on drop).
//! The key names the account, not the SecretId: a CVM role's SecretId changes at every
//! refresh, the account's limit does not. An [`ApiGate`] (the fleet's, through Redis)
//! can be set to also hold a request until every process sharing the account may send.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The cloud's counting window.
const SECOND: Duration = Duration::from_secs(1);
/// Added to the window for clock granularity at either end.
const MARGIN: Duration = Duration::from_millis(5);

/// What a limit is kept per.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ApiKey {
    /// `X-TC-Action`.
    pub action: &'static str,
    /// The API host (the access point; the cloud counts per access region).
    pub host: String,
    /// The account: the credential source for refreshable credentials, else the SecretId.
    pub account: String,
}

#[derive(Debug)]
struct Entry {
    id: u64,
    /// `None` while in flight; when it ended once settled.
    ended: Option<Instant>,
}

#[derive(Debug, Default)]
struct Window {
    entries: VecDeque<Entry>,
    /// No request leaves before this: sends are spaced `1/rate` apart, so a burst of
    /// viewers is smoothed (and never opens a connection per request at once).
    next_send: Option<Instant>,
}

#[derive(Debug, Default)]
struct KeyLog {
    window: Mutex<Window>,
    settled: Notify,
}

impl KeyLog {
    fn prune(entries: &mut VecDeque<Entry>, now: Instant) {
        entries.retain(|e| {
            e.ended
                .is_none_or(|t| now.duration_since(t) < SECOND + MARGIN)
        });
    }
}

/// A second admission shared with other processes (the fleet's, in Redis): asked after
/// the local one, with the same key and deadline.
pub trait ApiGate: Send + Sync + std::fmt::Debug {
    /// Waits until a request for `key` may leave, at most until `deadline`.
    ///
    /// # Errors
    /// The wait still needed when it would pass `deadline`.
    fn acquire<'a>(
        &'a self,
        key: &'a ApiKey,
        rate: u32,
        deadline: Option<Instant>,
    ) -> futures_util::future::BoxFuture<'a, Result<Box<dyn GateTicket>, Duration>>;
}

/// An admission from an [`ApiGate`]; dropped without either call, it is settled.
pub trait GateTicket: Send + Sync + std::fmt::Debug {
    /// The request has ended.
    fn settle(self: Box<Self>);
    /// The request never left the host.
    fn refund(self: Box<Self>);
}

/// Admission to send one request; settle it when the request has ended.
#[derive(Debug)]
#[must_use = "a ticket is settled on drop"]
pub struct ApiTicket {
    log: Arc<KeyLog>,
    id: u64,
    done: bool,
    /// The gate's admission, settled or refunded with this one.
    gate: Option<Box<dyn GateTicket>>,
}

impl ApiTicket {
    /// The request has ended (answered or failed): it counts until a second from now.
    pub fn settle(mut self) {
        self.done = true;
        if let Some(g) = self.gate.take() {
            g.settle();
        }
        self.mark();
    }

    /// The request never left the host (connect failure): it stops counting at once, and
    /// the next request need not keep its spacing.
    pub(crate) fn refund(mut self) {
        self.done = true;
        if let Some(g) = self.gate.take() {
            g.refund();
        }
        let mut w = self.log.window.lock();
        w.entries.retain(|e| e.id != self.id);
        w.next_send = None;
        drop(w);
        self.log.settled.notify_waiters();
    }

    fn mark(&self) {
        let now = Instant::now();
        if let Some(e) = self
            .log
            .window
            .lock()
            .entries
            .iter_mut()
            .find(|e| e.id == self.id)
        {
            e.ended = Some(now);
        }
        self.log.settled.notify_waiters();
    }
}

impl Drop for ApiTicket {
    fn drop(&mut self) {
        if !self.done {
            if let Some(g) = self.gate.take() {
                g.settle();
            }
            self.mark();
        }
    }
}

/// At most `per_second` requests per [`ApiKey`] in any second, at the cloud's count.
pub struct ApiLimiter {
    per_second: std::sync::atomic::AtomicU32,
    keys: Mutex<HashMap<ApiKey, Arc<KeyLog>>>,
    next_id: std::sync::atomic::AtomicU64,
    /// Asked after the local admission (the fleet's shared rate), when set.
    gate: parking_lot::RwLock<Option<Arc<dyn ApiGate>>>,
}

impl std::fmt::Debug for ApiLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiLimiter")
            .field("per_second", &self.per_second())
            .finish_non_exhaustive()
    }
}

impl ApiLimiter {
    /// A limiter allowing `per_second` requests a second per key.
    pub fn new(per_second: NonZeroU32) -> Self {
        ApiLimiter {
            per_second: std::sync::atomic::AtomicU32::new(per_second.get()),
            keys: Mutex::new(HashMap::new()),
            next_id: std::sync::atomic::AtomicU64::new(0),
            gate: parking_lot::RwLock::new(None),
        }
    }

    /// Also holds every request until `gate` admits it (the fleet's shared rate).
    pub(crate) fn set_gate(&self, gate: Option<Arc<dyn ApiGate>>) {
        *self.gate.write() = gate;
    }

    /// The allowed requests per second.
    pub(crate) fn per_second(&self) -> u32 {
        self.per_second.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A new rate (a reloaded config); requests already counted stay counted.
    pub(crate) fn set_rate(&self, per_second: NonZeroU32) {
        self.per_second
            .store(per_second.get(), std::sync::atomic::Ordering::Relaxed);
    }

    /// The keys with requests in their window or waiters (what the limiter holds).
    pub fn keys(&self) -> Vec<ApiKey> {
        self.keys.lock().keys().cloned().collect()
    }

    /// Forgets keys with nothing in their window (rotated keys, idle hosts).
    pub(crate) fn shrink(&self) {
        let now = Instant::now();
        self.keys.lock().retain(|_, log| {
            let mut w = log.window.lock();
            KeyLog::prune(&mut w.entries, now);
            !w.entries.is_empty() || Arc::strong_count(log) > 1
        });
    }

    /// Waits until a request for `key` may leave, and admits it. Cancel-safe: a
    /// cancelled wait admits nothing.
    ///
    /// # Errors
    /// The wait still needed when it would pass `deadline`.
    pub(crate) async fn acquire(
        &self,
        key: &ApiKey,
        deadline: Option<Instant>,
    ) -> Result<ApiTicket, Duration> {
        let mut ticket = self.acquire_local(key, deadline).await?;
        let gate = self.gate.read().clone();
        if let Some(gate) = gate {
            match gate.acquire(key, self.per_second(), deadline).await {
                Ok(g) => ticket.gate = Some(g),
                Err(wait) => {
                    ticket.refund();
                    return Err(wait);
                }
            }
        }
        Ok(ticket)
    }

    /// The local admission alone.
    async fn acquire_local(
        &self,
        key: &ApiKey,
        deadline: Option<Instant>,
    ) -> Result<ApiTicket, Duration> {
        let log = self.keys.lock().entry(key.clone()).or_default().clone();
        loop {
            let rate = self.per_second() as usize;
            let settled = log.settled.notified();
            let mut settled = std::pin::pin!(settled);
            settled.as_mut().enable();
            let now = Instant::now();
            // When the oldest entry that keeps the window full will have aged out; `None`
            // when it is still in flight (woken when it settles).
            let wake: Option<Instant> = {
                let mut w = log.window.lock();
                KeyLog::prune(&mut w.entries, now);
                let spaced = w.next_send.is_none_or(|t| now >= t);
                if w.entries.len() < rate && spaced {
                    let id = self
                        .next_id
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    w.entries.push_back(Entry { id, ended: None });
                    w.next_send =
                        Some(now + SECOND / u32::try_from(rate).unwrap_or(u32::MAX).max(1));
                    return Ok(ApiTicket {
                        log: log.clone(),
                        id,
                        done: false,
                        gate: None,
                    });
                }
                let entries = &w.entries;
                if entries.len() < rate {
                    // Only the spacing holds this one back.
                    w.next_send
                } else {
                    let mut ends: Vec<Option<Instant>> = entries.iter().map(|e| e.ended).collect();
                    // In-flight entries sort last (they end no earlier than now).
                    ends.sort_by_key(|e| e.map_or((1, now), |t| (0, t)));
                    let idx = entries.len() - rate;
                    ends.get(idx)
                        .copied()
                        .flatten()
                        .map(|t| (t + SECOND + MARGIN).max(w.next_send.unwrap_or(t)))
                }
            };
            match (wake, deadline) {
                (Some(w), Some(d)) if w > d => return Err(w - now),
                (None, Some(d)) if now >= d => return Err(SECOND),
                _ => {}
            }
            let limit = match (wake, deadline) {
                (Some(w), _) => Some(w),
                (None, d) => d,
            };
            match limit {
                Some(at) => {
                    let _ = tokio::time::timeout_at(at, settled).await;
                }
                None => settled.await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nz(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
    }

    fn key(account: &str) -> ApiKey {
        ApiKey {
            action: "DescribeInstanceVncUrl",
            host: "h".into(),
            account: account.into(),
        }
    }

    /// Requests that end at once: no 1 s window holds more than the rate.
    #[tokio::test(start_paused = true)]
    async fn instant_requests_are_spread() {
        let l = ApiLimiter::new(nz(10));
        let t0 = Instant::now();
        let mut times = Vec::new();
        for _ in 0..25 {
            l.acquire(&key("a"), None).await.expect("admitted").settle();
            times.push(Instant::now() - t0);
        }
        for w in times.windows(11) {
            assert!(w[10] - w[0] >= SECOND, "{w:?}");
        }
        // Other keys are not held back.
        let t1 = Instant::now();
        l.acquire(&key("other"), None)
            .await
            .expect("other")
            .settle();
        assert_eq!(Instant::now(), t1);
    }

    /// Jittered latency: with each request arriving anywhere between leaving and its
    /// answer, the 11th arrival is still at least a second after the 1st.
    #[tokio::test(start_paused = true)]
    async fn jitter_cannot_squeeze_eleven_arrivals() {
        let l = Arc::new(ApiLimiter::new(nz(10)));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        for i in 0..40u64 {
            let l = l.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                let t = l.acquire(&key("a"), None).await.expect("admitted");
                let left = Instant::now();
                // 30–80 ms away, plus a cold TLS handshake now and then.
                let latency =
                    Duration::from_millis(30 + (i * 37) % 50 + if i % 7 == 0 { 160 } else { 0 });
                tokio::time::sleep(latency).await;
                t.settle();
                let _ = tx.send((left, Instant::now()));
            });
        }
        drop(tx);
        let mut spans = Vec::new();
        while let Some(s) = rx.recv().await {
            spans.push(s);
        }
        assert_eq!(spans.len(), 40);
        spans.sort();
        // The cloud sees a request somewhere between it leaving and its answer. Eleven
        // requests can land in one second only if the last to leave left less than a
        // second after each of the ten others was answered: at most nine others may have
        // been answered less than a second before any request left.
        for (i, (left, _)) in spans.iter().enumerate() {
            let close = spans[..i]
                .iter()
                .filter(|(_, answered)| *answered + SECOND > *left)
                .count();
            assert!(close <= 9, "request {i}: {close} others within a second");
        }
    }

    /// A wait longer than the deadline is refused at once with the time it would take.
    #[tokio::test(start_paused = true)]
    async fn deadline_bounds_the_wait() {
        let l = ApiLimiter::new(nz(1));
        l.acquire(&key("a"), None).await.expect("first").settle();
        let t0 = Instant::now();
        let wait = l
            .acquire(&key("a"), Some(t0 + Duration::from_millis(100)))
            .await
            .expect_err("would wait a second");
        assert_eq!(Instant::now(), t0, "refused at once");
        assert_eq!(wait, SECOND + MARGIN);
        // A request in flight: waited for until the deadline, then refused.
        let held = l.acquire(&key("b"), None).await.expect("b");
        let t1 = Instant::now();
        l.acquire(&key("b"), Some(t1 + Duration::from_millis(300)))
            .await
            .expect_err("still in flight");
        assert_eq!(Instant::now(), t1 + Duration::from_millis(300));
        held.refund();
        l.acquire(&key("b"), Some(Instant::now()))
            .await
            .expect("refunded")
            .settle();
    }
}
