//! Per-address admission on the listeners: the rate of new connections (GCRA, against
//! scanners and reconnect storms), and how many connections one address may hold before
//! they have greeted and authenticated (so silent or slow clients cannot take the
//! session slots real viewers need).

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::time::Duration;

use governor::clock::Clock;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

/// governor's clock, reading tokio time so that paused tests control it.
#[derive(Clone, Debug, Default)]
pub(crate) struct TokioClock;

#[allow(clippy::disallowed_types)] // governor wants std Instant; the value is tokio time
impl Clock for TokioClock {
    type Instant = std::time::Instant;
    fn now(&self) -> Self::Instant {
        tokio::time::Instant::now().into_std()
    }
}

#[allow(clippy::disallowed_types)] // the middleware is parameterised by the clock's instant type
type NoOp = governor::middleware::NoOpMiddleware<std::time::Instant>;

type Keyed = RateLimiter<IpAddr, DefaultKeyedStateStore<IpAddr>, TokioClock, NoOp>;

/// New connections per client address: a GCRA limit (burst of a sixth of the minute's
/// allowance).
pub struct PeerLimiter {
    /// The limiter and its rate, replaced together when a reload changes the rate.
    inner: RwLock<(Arc<Keyed>, u32)>,
}

impl std::fmt::Debug for PeerLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerLimiter")
            .field("per_minute", &self.per_minute())
            .finish()
    }
}

fn keyed(per_minute: NonZeroU32) -> Arc<Keyed> {
    let burst = NonZeroU32::new((per_minute.get() / 6).max(1)).unwrap_or(NonZeroU32::MIN);
    let quota = Quota::per_minute(per_minute).allow_burst(burst);
    Arc::new(RateLimiter::new(
        quota,
        DefaultKeyedStateStore::default(),
        TokioClock,
    ))
}

impl PeerLimiter {
    /// `per_minute` connections per address, bursts of up to a sixth of that.
    pub fn new(per_minute: NonZeroU32) -> Self {
        PeerLimiter {
            inner: RwLock::new((keyed(per_minute), per_minute.get())),
        }
    }

    fn limiter(&self) -> Arc<Keyed> {
        self.inner.read().0.clone()
    }

    /// Admits one connection from `ip`, or says how long until the next is allowed.
    ///
    /// # Errors
    /// The wait, when over the limit.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.limiter()
            .check_key(&ip)
            .map_err(|nu| nu.wait_time_from(TokioClock.now()))
    }

    /// The configured rate.
    pub fn per_minute(&self) -> u32 {
        self.inner.read().1
    }

    /// A new rate (a reloaded config). A changed rate starts every address afresh.
    pub(crate) fn set_per_minute(&self, per_minute: NonZeroU32) {
        let mut inner = self.inner.write();
        if inner.1 != per_minute.get() {
            *inner = (keyed(per_minute), per_minute.get());
        }
    }

    /// Forgets addresses that are back within their allowance (bounded memory).
    pub(crate) fn shrink(&self) {
        let l = self.limiter();
        l.retain_recent();
        l.shrink_to_fit();
    }
}

/// Why a connection was not admitted to the unauthenticated phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crowded {
    /// This address already holds its share of unauthenticated connections.
    Address(usize),
    /// The server holds its limit of unauthenticated connections.
    Server(usize),
}

#[derive(Debug, Default)]
struct Counts {
    per_ip: HashMap<IpAddr, usize>,
    total: usize,
}

/// Connections that have not yet greeted and authenticated: at most `per_peer` per
/// address and `total` overall. Each admitted one holds a [`Pending`] until it has.
#[derive(Debug)]
pub struct Unauthenticated {
    per_peer: AtomicUsize,
    total: AtomicUsize,
    counts: Arc<Mutex<Counts>>,
}

/// One connection in its unauthenticated phase; released on drop.
#[derive(Debug)]
pub struct Pending {
    ip: IpAddr,
    counts: Arc<Mutex<Counts>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut c = self.counts.lock();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

impl Unauthenticated {
    /// At most `per_peer` per address and `total` overall.
    pub fn new(per_peer: usize, total: usize) -> Self {
        Unauthenticated {
            per_peer: AtomicUsize::new(per_peer),
            total: AtomicUsize::new(total),
            counts: Arc::default(),
        }
    }

    /// New limits (a reloaded config); connections already admitted keep their place.
    pub(crate) fn set_limits(&self, per_peer: usize, total: usize) {
        self.per_peer.store(per_peer, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
    }

    /// Admits one connection from `ip` to the unauthenticated phase.
    ///
    /// # Errors
    /// [`Crowded`] naming the limit reached.
    pub(crate) fn admit(&self, ip: IpAddr) -> Result<Pending, Crowded> {
        let mut c = self.counts.lock();
        let (per_peer, total) = (
            self.per_peer.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        );
        if c.total >= total {
            return Err(Crowded::Server(total));
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if *n >= per_peer {
            return Err(Crowded::Address(per_peer));
        }
        *n += 1;
        c.total += 1;
        Ok(Pending {
            ip,
            counts: self.counts.clone(),
        })
    }

    /// Unauthenticated connections held now.
    pub fn held(&self) -> usize {
        self.counts.lock().total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_address_and_total_caps() {
        let u = Unauthenticated::new(2, 3);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let p1 = u.admit(a).expect("1");
        let _p2 = u.admit(a).expect("2");
        assert_eq!(u.admit(a).expect_err("third"), Crowded::Address(2));
        let _p3 = u.admit(b).expect("other address");
        assert_eq!(u.admit(b).expect_err("total"), Crowded::Server(3));
        drop(p1);
        let again = u.admit(a).expect("released on drop");
        assert_eq!(u.held(), 3);
        drop(again);
        assert_eq!(u.held(), 2);
    }
}
