//! The background refresh of temporary credentials: one task per provider fetches
//! before expiry (or at once when a caller finds nothing valid), backs off with jitter
//! after a failure, and publishes every outcome as a [`Status`] on a `watch` channel.
//! Callers never fetch; they read the channel.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::RngExt;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::proxy::Clients;
use super::sources::Source;
use super::{ChainOptions, Credential, Error};
use crate::cloud::unix_now;

/// What the refresher is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the next refresh (never, for fixed credentials).
    Idle,
    /// A fetch is in flight.
    Fetching,
    /// The last fetch failed; the next one starts at `until` (tokio time).
    Backoff {
        /// When the next fetch starts.
        until: Instant,
        /// How many fetches in a row have failed.
        failures: u32,
    },
    /// The refresh task has stopped (shutdown): nothing will be fetched any more.
    Stopped,
}

/// A snapshot of a provider, published on its `watch` channel after every change.
#[derive(Clone, Debug)]
pub struct Status {
    /// The cached credentials, if any (possibly expired: check with the server clock).
    pub credential: Option<Arc<Credential>>,
    /// What the refresher is doing.
    pub phase: Phase,
    /// Fetches finished, successful or not.
    pub fetches: u64,
    /// The error of the last fetch while fetches fail; `None` after a success.
    pub last_error: Option<Error>,
}

/// State shared by a provider and its refresh task.
pub(super) struct Shared {
    /// Where temporary credentials come from; `None` for fixed credentials.
    pub(super) source: Option<Source>,
    /// HTTP clients for the source (absent for fixed credentials).
    pub(super) clients: Option<Clients>,
    pub(super) opts: ChainOptions,
    /// The cache and the refresher's phase. Only the task writes the phase; callers
    /// may drop a rejected credential.
    pub(super) status: watch::Sender<Status>,
    /// Callers ask the task to look again (nothing valid, or a refresh is due).
    pub(super) kick: Notify,
    /// Fetches started (tests and metrics).
    pub(super) fetches_started: AtomicU64,
    /// Seconds to add to the local clock to get the API server's; the API client writes
    /// it when the server says `AuthFailure.SignatureExpire`.
    pub(super) clock_offset: Arc<AtomicI64>,
    /// Where the credentials come from, for messages.
    pub(super) description: String,
    /// What an operator can do when they fail.
    pub(super) fix: String,
}

impl Shared {
    /// Now on the server-corrected clock the signer uses (Unix seconds).
    pub(super) fn now(&self) -> i64 {
        unix_now().saturating_add(self.clock_offset.load(Ordering::Relaxed))
    }

    /// Whether a caller's kick warrants a fetch now: nothing valid is cached. (A due
    /// refresh only moves the schedule: callers never add fetches to it.)
    fn due(&self) -> bool {
        let now = self.now();
        self.status
            .borrow()
            .credential
            .as_ref()
            .is_none_or(|c| c.expired(now))
    }

    /// One fetch from the source, counted.
    pub(super) async fn fetch_once(&self) -> Result<Credential, Error> {
        let (Some(source), Some(clients)) = (&self.source, &self.clients) else {
            return Err(Error::Fetch {
                source_name: self.description.clone(),
                cause: "fixed credentials cannot be fetched again".into(),
            });
        };
        self.fetches_started.fetch_add(1, Ordering::Relaxed);
        source.fetch(clients, &self.opts, self.now()).await
    }

    /// When the task should refresh `cred`, in tokio time: at its `refresh_at`; when
    /// that has passed already (a source handing out credentials shorter-lived than the
    /// refresh margin), halfway to expiry, and never sooner than one backoff step, so
    /// that such a source is not asked in a loop.
    fn deadline_for(&self, cred: &Credential) -> Option<Instant> {
        let now = self.now();
        let refresh_at = cred.refresh_at.or(cred.expires_at)?;
        let secs = if refresh_at > now {
            refresh_at - now
        } else {
            cred.expires_at.map_or(0, |e| (e - now) / 2)
        };
        let wait =
            Duration::from_secs(u64::try_from(secs).unwrap_or(0)).max(self.opts.refresh_backoff);
        Some(Instant::now() + wait)
    }

    /// The error for a caller that needs credentials while none is valid.
    pub(super) fn unavailable(&self, status: &Status) -> Error {
        let last = status
            .last_error
            .as_ref()
            .map_or_else(|| "the credentials expired".to_owned(), ToString::to_string);
        let cause = match status.phase {
            Phase::Backoff { until, failures } => {
                let secs = until
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
                    .ceil();
                format!("{last} ({failures} failed fetch(es) in a row; next attempt in {secs} s)")
            }
            Phase::Stopped => format!("{last} (tcvnc is shutting down)"),
            Phase::Idle | Phase::Fetching => last,
        };
        Error::Unavailable {
            source_name: self.description.clone(),
            cause,
            fix: self.fix.clone(),
        }
    }
}

/// The backoff before fetch attempt `failures + 1`: the first step doubled per failure,
/// capped, plus up to 50 % jitter.
fn backoff(opts: &ChainOptions, failures: u32) -> Duration {
    let base = opts
        .refresh_backoff
        .saturating_mul(1 << failures.saturating_sub(1).min(16))
        .min(opts.refresh_backoff_max);
    base + base.mul_f64(rand::rng().random_range(0.0..0.5))
}

/// The refresh loop of `shared`, until `stop` is cancelled. The first refresh is
/// planned here, when the task is created, not when it first runs.
pub(super) fn run(
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let first = shared
        .status
        .borrow()
        .credential
        .as_deref()
        .and_then(|c| shared.deadline_for(c));
    run_from(shared, stop, first)
}

async fn run_from(shared: Arc<Shared>, stop: CancellationToken, first: Option<Instant>) {
    let mut failures = 0u32;
    let mut next = first;
    loop {
        let sleep = async move {
            match next {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = stop.cancelled() => break,
            () = sleep => {}
            // A kick ends neither a backoff step nor a planned wait unless a fetch is
            // due on the server clock: callers never cause extra fetches.
            () = shared.kick.notified(), if failures == 0 => {
                if !shared.due() {
                    // The server clock may have moved (a learned offset): bring the
                    // planned refresh forward if it is due earlier now.
                    let cred = shared.status.borrow().credential.clone();
                    if let Some(t) = cred.as_deref().and_then(|c| shared.deadline_for(c)) {
                        next = Some(next.map_or(t, |n| n.min(t)));
                    }
                    continue;
                }
            }
        }
        shared.status.send_modify(|s| s.phase = Phase::Fetching);
        let result = tokio::select! {
            () = stop.cancelled() => break,
            r = shared.fetch_once() => r,
        };
        match result {
            Ok(cred) => {
                failures = 0;
                let cred = Arc::new(cred);
                next = shared.deadline_for(&cred);
                tracing::info!(source = %shared.description, expires_at = ?cred.expires_at, "temporary credentials refreshed");
                shared.status.send_modify(|s| {
                    s.credential = Some(cred);
                    s.phase = Phase::Idle;
                    s.fetches += 1;
                    s.last_error = None;
                });
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = backoff(&shared.opts, failures);
                let until = Instant::now() + wait;
                next = Some(until);
                let now = shared.now();
                let still_valid = shared
                    .status
                    .borrow()
                    .credential
                    .as_ref()
                    .is_some_and(|c| !c.expired(now));
                tracing::warn!(
                    source = %shared.description,
                    error = %e,
                    failures,
                    retry_in_ms = wait.as_millis(),
                    still_valid,
                    "credential refresh failed; {}",
                    if still_valid { "using the cached credentials until they expire" } else { "no valid credentials until a fetch succeeds" }
                );
                shared.status.send_modify(|s| {
                    s.phase = Phase::Backoff { until, failures };
                    s.fetches += 1;
                    s.last_error = Some(e);
                });
            }
        }
    }
    shared.status.send_modify(|s| s.phase = Phase::Stopped);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_bounded_jitter_and_a_cap() {
        let mut opts = ChainOptions::new(crate::tls::client_config(None).expect("tls"));
        opts.refresh_backoff = Duration::from_secs(1);
        opts.refresh_backoff_max = Duration::from_secs(60);
        for (failures, base) in [(1, 1), (2, 2), (3, 4), (4, 8), (7, 60), (40, 60)] {
            for _ in 0..50 {
                let d = backoff(&opts, failures);
                let base = Duration::from_secs(base);
                assert!(d >= base && d < base.mul_f64(1.5), "step {failures}: {d:?}");
            }
        }
    }
}
