//! Failed-authentication accounting for VNC passwords and HTTP tokens, per client
//! address, per target and for the whole server.
//!
//! A VNC attempt is charged *before* its challenge is issued ([`Guard::begin`]): while it
//! is in flight the same address gets no second challenge, and it counts against the
//! target's and the server's windows, so parallel guesses cannot outrun the accounting.
//! A success refunds the charge; a failure (or a client that vanishes after the
//! challenge) keeps it and starts the address's back-off (1 s, 2 s, 4 s … 32 s). Nothing
//! sleeps: a refused attempt is told at once how long to wait, so a back-off never runs
//! into a handshake timeout unexplained. HTTP tokens are checked synchronously and
//! settled in one step ([`Guard::settle`]), per address only.

use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use tokio::time::Instant;

/// The window the per-target and server-wide ceilings count over.
pub const WINDOW: Duration = Duration::from_secs(60);
/// An address's failures are forgotten after this long without another.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// The longest back-off of one address.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(32);
/// Addresses tracked at most (the oldest idle ones are forgotten first).
const MAX_PEERS: usize = 4096;

/// Ceilings on failed (or unsettled) attempts in any [`WINDOW`].
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Per target (a `[[target]]`, or the HTTP token).
    pub per_target: u32,
    /// For the whole server.
    pub global: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_target: 10,
            global: 60,
        }
    }
}

/// Which ceiling refused an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Another attempt from the same address is still in flight.
    InProgress,
    /// The address is backing off after failures.
    Address,
    /// The target's window is full.
    Target,
    /// The server-wide window is full.
    Server,
}

/// An attempt refused before any secret was checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.phrase())]
pub struct Refused {
    /// Which ceiling.
    pub scope: Scope,
    /// How long until an attempt may succeed this ceiling.
    pub retry_after: Duration,
}

impl Refused {
    fn phrase(&self) -> String {
        let secs = self.retry_after.as_millis().div_ceil(1000).max(1);
        match self.scope {
            Scope::InProgress => {
                "another password attempt from your address is in progress: finish it first"
                    .to_owned()
            }
            Scope::Address => format!("too many wrong passwords from your address: wait {secs} s"),
            Scope::Target => {
                format!("too many wrong passwords for this console recently: wait {secs} s")
            }
            Scope::Server => {
                format!("too many wrong passwords on this server recently: wait {secs} s")
            }
        }
    }

    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self.scope {
            Scope::InProgress => "in_progress",
            Scope::Address => "address",
            Scope::Target => "target",
            Scope::Server => "server",
        }
    }
}

#[derive(Debug)]
struct Peer {
    failures: u32,
    in_flight: u32,
    last: Instant,
}

fn backoff(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    Duration::from_secs(1u64 << (failures - 1).min(5)).min(MAX_BACKOFF)
}

#[derive(Debug, Default)]
struct State {
    peers: HashMap<IpAddr, Peer>,
    /// `(attempt id, charged at)` per target, oldest first.
    targets: HashMap<String, VecDeque<(u64, Instant)>>,
    global: VecDeque<(u64, Instant)>,
    next_id: u64,
}

fn prune(log: &mut VecDeque<(u64, Instant)>, now: Instant) {
    while log
        .front()
        .is_some_and(|(_, t)| now.duration_since(*t) >= WINDOW)
    {
        log.pop_front();
    }
}

fn full(log: &VecDeque<(u64, Instant)>, cap: u32, now: Instant) -> Option<Duration> {
    if log.len() < cap as usize {
        return None;
    }
    let idx = log.len() - cap as usize;
    Some(
        log.get(idx)
            .map_or(Duration::ZERO, |(_, t)| {
                (*t + WINDOW).saturating_duration_since(now)
            })
            .max(Duration::from_millis(1)),
    )
}

impl State {
    fn peer(&mut self, ip: IpAddr, now: Instant) -> &mut Peer {
        if self.peers.len() >= MAX_PEERS && !self.peers.contains_key(&ip) {
            self.peers
                .retain(|_, p| p.in_flight > 0 || now.duration_since(p.last) < FORGET_AFTER);
            if self.peers.len() >= MAX_PEERS {
                let oldest = self
                    .peers
                    .iter()
                    .filter(|(_, p)| p.in_flight == 0)
                    .min_by_key(|(_, p)| p.last)
                    .map(|(ip, _)| *ip);
                if let Some(ip) = oldest {
                    self.peers.remove(&ip);
                }
            }
        }
        let p = self.peers.entry(ip).or_insert(Peer {
            failures: 0,
            in_flight: 0,
            last: now,
        });
        if p.in_flight == 0 && now.duration_since(p.last) >= FORGET_AFTER {
            p.failures = 0;
        }
        p
    }

    /// Why an attempt from `ip` (on `target`, when it has ceilings of its own) may not
    /// start now (in-flight attempts of the address count only when `exclusive`).
    fn refusal(
        &mut self,
        ip: IpAddr,
        target: Option<&str>,
        limits: Limits,
        exclusive: bool,
        now: Instant,
    ) -> Option<Refused> {
        let p = self.peer(ip, now);
        if exclusive && p.in_flight > 0 {
            return Some(Refused {
                scope: Scope::InProgress,
                retry_after: Duration::from_secs(1),
            });
        }
        let until = p.last + backoff(p.failures);
        if p.failures > 0 && now < until {
            return Some(Refused {
                scope: Scope::Address,
                retry_after: until - now,
            });
        }
        let target = target?;
        let log = self.targets.entry(target.to_owned()).or_default();
        prune(log, now);
        if let Some(wait) = full(log, limits.per_target, now) {
            return Some(Refused {
                scope: Scope::Target,
                retry_after: wait,
            });
        }
        prune(&mut self.global, now);
        full(&self.global, limits.global, now).map(|wait| Refused {
            scope: Scope::Server,
            retry_after: wait,
        })
    }

    fn charge(&mut self, target: &str, now: Instant) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.targets
            .entry(target.to_owned())
            .or_default()
            .push_back((id, now));
        self.global.push_back((id, now));
        id
    }

    fn refund(&mut self, target: &str, id: u64) {
        if let Some(log) = self.targets.get_mut(target) {
            log.retain(|(i, _)| *i != id);
        }
        self.global.retain(|(i, _)| *i != id);
    }
}

/// The accounting, shared by every listener.
#[derive(Debug, Default)]
pub struct Guard {
    state: Mutex<State>,
    limits: Limits,
}

/// One charged VNC attempt: settle it with [`Attempt::succeed`] or [`Attempt::fail`];
/// dropped unsettled (the client left after its challenge), it counts as a failure.
#[derive(Debug)]
pub struct Attempt<'a> {
    guard: &'a Guard,
    ip: IpAddr,
    target: String,
    id: u64,
    settled: bool,
}

impl Guard {
    /// A guard with these ceilings.
    pub fn new(limits: Limits) -> Self {
        Guard {
            state: Mutex::new(State::default()),
            limits,
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Charges an attempt from `ip` on `target` before its challenge is issued.
    ///
    /// # Errors
    /// [`Refused`] when the address has an attempt in flight or is backing off, or the
    /// target's or the server's window is full.
    pub(crate) fn begin(&self, ip: IpAddr, target: &str) -> Result<Attempt<'_>, Refused> {
        let now = Instant::now();
        let mut st = self.lock();
        if let Some(r) = st.refusal(ip, Some(target), self.limits, true, now) {
            return Err(r);
        }
        let id = st.charge(target, now);
        let p = st.peer(ip, now);
        p.in_flight += 1;
        p.last = now;
        Ok(Attempt {
            guard: self,
            ip,
            target: target.to_owned(),
            id,
            settled: false,
        })
    }

    /// Settles a check that happened at once (an HTTP token of at least 128 bits, which
    /// no ceiling of a target or the server needs to protect: only the address backs
    /// off, so failures from elsewhere cannot lock the rightful user out). Refused while
    /// the address backs off, whatever `ok` says, so a guess made then learns nothing;
    /// otherwise a failure is counted or a success clears the address.
    ///
    /// # Errors
    /// [`Refused`] while the address backs off.
    pub fn settle(&self, ip: IpAddr, ok: bool) -> Result<(), Refused> {
        let now = Instant::now();
        let mut st = self.lock();
        if let Some(r) = st.refusal(ip, None, self.limits, false, now) {
            return Err(r);
        }
        if ok {
            let p = st.peer(ip, now);
            p.failures = 0;
        } else {
            let p = st.peer(ip, now);
            p.failures = p.failures.saturating_add(1);
            p.last = now;
        }
        Ok(())
    }

    /// Failures recorded for `ip` and not yet forgotten.
    pub fn failures(&self, ip: IpAddr) -> u32 {
        let now = Instant::now();
        self.lock()
            .peers
            .get(&ip)
            .filter(|p| now.duration_since(p.last) < FORGET_AFTER)
            .map_or(0, |p| p.failures)
    }

    /// Forgets idle addresses (housekeeping).
    pub(crate) fn shrink(&self) {
        let now = Instant::now();
        let mut st = self.lock();
        st.peers
            .retain(|_, p| p.in_flight > 0 || now.duration_since(p.last) < FORGET_AFTER);
        st.targets.retain(|_, log| {
            prune(log, now);
            !log.is_empty()
        });
        prune(&mut st.global, now);
    }
}

impl Attempt<'_> {
    /// The secret was right: the charge is refunded and the address's failures cleared.
    pub(crate) fn succeed(mut self) {
        self.settled = true;
        let mut st = self.guard.lock();
        st.refund(&self.target, self.id);
        if let Some(p) = st.peers.get_mut(&self.ip) {
            p.in_flight = p.in_flight.saturating_sub(1);
            p.failures = 0;
        }
    }

    /// The secret was wrong: the charge stays and the address backs off. Returns the
    /// back-off now in force for it.
    pub fn fail(mut self) -> Duration {
        self.settled = true;
        self.record_failure()
    }

    fn record_failure(&self) -> Duration {
        let now = Instant::now();
        let mut st = self.guard.lock();
        let p = st.peer(self.ip, now);
        p.in_flight = p.in_flight.saturating_sub(1);
        p.failures = p.failures.saturating_add(1);
        p.last = now;
        backoff(p.failures)
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.record_failure();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        [127, 0, 0, n].into()
    }

    /// Parallel attempts from one address: the second is refused while the first is in
    /// flight, and after a failure the address backs off 1 s, 2 s, 4 s …
    #[tokio::test(start_paused = true)]
    async fn one_attempt_in_flight_per_address_then_backoff() {
        let g = Guard::new(Limits::default());
        let a = g.begin(ip(1), "t").expect("first");
        let e = g.begin(ip(1), "t").expect_err("parallel");
        assert_eq!(e.scope, Scope::InProgress);
        assert!(g.begin(ip(2), "t").is_ok(), "other addresses unaffected");
        assert_eq!(a.fail(), Duration::from_secs(1));
        let e = g.begin(ip(1), "t").expect_err("backing off");
        assert_eq!(
            (e.scope, e.retry_after),
            (Scope::Address, Duration::from_secs(1))
        );
        assert!(e.to_string().contains("wait 1 s"), "{e}");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            g.begin(ip(1), "t").expect("after 1 s").fail(),
            Duration::from_secs(2)
        );
        tokio::time::advance(Duration::from_secs(2)).await;
        let ok = g.begin(ip(1), "t").expect("after 2 s");
        ok.succeed();
        assert_eq!(g.failures(ip(1)), 0);
    }

    /// Rotating addresses: at most `per_target` unsettled or failed attempts on one target
    /// in any minute, and the server-wide ceiling across targets.
    #[tokio::test(start_paused = true)]
    async fn target_and_server_ceilings() {
        let g = Guard::new(Limits {
            per_target: 3,
            global: 5,
        });
        for n in 0..3 {
            g.begin(ip(10 + n), "a").expect("fits").fail();
        }
        let e = g.begin(ip(20), "a").expect_err("target full");
        assert_eq!((e.scope, e.retry_after), (Scope::Target, WINDOW));
        for n in 0..2 {
            g.begin(ip(30 + n), "b").expect("other target").fail();
        }
        let e = g.begin(ip(40), "c").expect_err("server full");
        assert_eq!(e.scope, Scope::Server);
        tokio::time::advance(WINDOW).await;
        assert!(g.begin(ip(20), "a").is_ok(), "window slid");
    }

    /// Successes refund their charge: a legitimate user never fills a window.
    #[tokio::test(start_paused = true)]
    async fn successes_refund() {
        let g = Guard::new(Limits {
            per_target: 2,
            global: 2,
        });
        for n in 0..10 {
            g.begin(ip(n), "a").expect("fits").succeed();
        }
        // An abandoned challenge counts as a failure.
        drop(g.begin(ip(50), "a").expect("fits"));
        assert_eq!(g.failures(ip(50)), 1);
    }

    /// Synchronous checks (HTTP tokens): refused while backing off even with the right
    /// token, so a lucky guess in that time learns nothing.
    #[tokio::test(start_paused = true)]
    async fn settle_counts_before_the_next_check() {
        let g = Guard::new(Limits::default());
        g.settle(ip(1), false).expect("counted");
        let e = g.settle(ip(1), true).expect_err("backing off");
        assert_eq!(e.scope, Scope::Address);
        tokio::time::advance(Duration::from_secs(1)).await;
        g.settle(ip(1), true).expect("ok after the back-off");
        assert_eq!(g.failures(ip(1)), 0);
        // Valid requests in parallel are never refused as "in progress".
        g.settle(ip(1), true).expect("again");
        // Failures from many addresses do not lock anyone else out.
        for n in 10..100 {
            let _ = g.settle(ip(n), false);
        }
        g.settle(ip(2), true).expect("another address");
    }
}
