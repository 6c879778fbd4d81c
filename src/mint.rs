//! One console URL for one client, decided attempt by attempt on typed outcomes:
//!
//! | outcome of an attempt | the budget ticket | tried again |
//! |---|---|---|
//! | minted | settled | — |
//! | not minted (the cloud answered with a code) | settled | by the code's class: rate limit and unavailable with backoff, internal error once, rejected temporary credentials once after a refresh, clock skew once re-signed |
//! | never sent (no credentials, API limit not in time, DNS/TCP/TLS) | refunded | connect failures with backoff (they cost nothing) |
//! | unknown (sent, no usable answer) | settled | once per client |
//! | cancelled (takeover, the viewer left, shutdown) | refunded if nothing was sent, else settled | — |
//!
//! With `[fleet]`, the ticket comes from the instance's window shared through Redis
//! (settled and refunded the same way), or a refusal saying Redis is away.
//!
//! An instance the cloud said was not running is not asked for a URL again until its
//! state, asked without spending one, says it runs ([`crate::cloud::states`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::budget::{Budget, Exhausted, Ticket};
use crate::cloud::states::{NotRunning, States};
use crate::cloud::{self, Class, CloudClient, Kind, MintOutcome, Minted};
use crate::fleet::{Fleet, FleetTicket, Refusal};
use crate::metrics::Metrics;

/// Why no URL was had.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// The instance's budget allows no URL within `max_wait`.
    #[error(transparent)]
    Budget(#[from] Exhausted),
    /// The instance is known not to be running (nothing was spent).
    #[error(transparent)]
    NotRunning(#[from] NotRunning),
    /// The cloud, the network or the credentials failed.
    #[error(transparent)]
    Cloud(#[from] cloud::Error),
    /// The fleet's shared budget cannot be used (Redis away, or rebuilding).
    #[error(transparent)]
    Fleet(Refusal),
}

/// What the loop spends from: the instance's budget and what is known of its state.
#[derive(Debug, Clone, Copy)]
pub struct Spend<'a> {
    /// The per-instance window.
    pub budget: &'a Budget,
    /// Remembered states of instances that were not running.
    pub states: &'a States,
    /// Where outcomes are counted.
    pub metrics: &'a Metrics,
    /// The window shared with other replicas, which replaces `budget`'s when set
    /// (`budget` still gives the limits).
    pub fleet: Option<&'a Fleet>,
}

/// A URL taken from the local window or the fleet's.
enum Taken {
    Local(Ticket),
    Fleet(FleetTicket),
}

impl Taken {
    fn settle(self) {
        match self {
            Taken::Local(t) => t.settle(),
            Taken::Fleet(t) => t.settle(),
        }
    }

    fn refund(self) {
        match self {
            Taken::Local(t) => t.refund(),
            Taken::Fleet(t) => t.refund(),
        }
    }
}

/// A URL of the budget taken for one attempt: refunded on drop while nothing was sent,
/// settled once something may have been.
struct Charge {
    ticket: Option<Taken>,
    sent: AtomicBool,
}

impl Charge {
    fn settle(mut self) {
        if let Some(t) = self.ticket.take() {
            t.settle();
        }
    }

    fn refund(mut self) {
        if let Some(t) = self.ticket.take() {
            t.refund();
        }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            if self.sent.load(Ordering::Relaxed) {
                t.settle();
            } else {
                t.refund();
            }
        }
    }
}

/// A minted URL and how many attempts reached (or may have reached) the cloud for it.
#[derive(Debug)]
pub struct Got {
    /// The URL, to dial at once.
    pub minted: Minted,
    /// Attempts sent, this one included.
    pub sent: u32,
}

/// How long a caller without a budget (`tcvnc url`) waits for the API limit.
const UNBUDGETED_WAIT: Duration = Duration::from_secs(15);

/// Mints one console URL for `instance`, spending from `spend` when given (the daemon),
/// or with no budget (`tcvnc url`: at most one URL, plus one retry of an unknown
/// outcome). Cancel-safe: a cancelled call refunds what it had not sent.
///
/// # Errors
/// [`MintError`] saying why no URL was had.
pub async fn mint(
    cloud: &CloudClient,
    spend: Option<Spend<'_>>,
    instance: &str,
    region: &str,
) -> Result<Got, MintError> {
    let count = |result: &'static str| {
        if let Some(s) = spend {
            s.metrics.url_mint(instance, result);
        }
    };
    if let Some(s) = spend {
        if let Err(e) = s.states.check(cloud, instance, region).await {
            count("not_running");
            return Err(e.into());
        }
    }
    let max_wait = spend.map_or(UNBUDGETED_WAIT, |s| s.budget.max_wait());
    let deadline = Instant::now() + max_wait;
    let mut first = true;
    let mut sent = 0u32;
    let (mut retries, mut connect_retries) = (0u32, 0u32);
    let (mut unknown_retried, mut internal_retried, mut refreshed, mut skew_fixed) =
        (false, false, false, false);
    loop {
        let ticket = match spend {
            None => None,
            Some(s) => {
                let t0 = Instant::now();
                let taken = match s.fleet {
                    Some(f) => f.take(instance, s.budget, first).await.map(Taken::Fleet),
                    None if first => s
                        .budget
                        .take(instance)
                        .await
                        .map(Taken::Local)
                        .map_err(Refusal::Exhausted),
                    None => s
                        .budget
                        .try_take(instance)
                        .map(Taken::Local)
                        .map_err(Refusal::Exhausted),
                };
                s.metrics.budget_waited(t0.elapsed().as_secs_f64());
                match taken {
                    Ok(t) => Some(t),
                    Err(Refusal::Exhausted(e)) => {
                        count("budget_exhausted");
                        return Err(e.into());
                    }
                    Err(r) => {
                        count("fleet_refused");
                        return Err(MintError::Fleet(r));
                    }
                }
            }
        };
        first = false;
        let charge = Charge {
            ticket,
            sent: AtomicBool::new(false),
        };
        let limit = Some(deadline.max(Instant::now() + Duration::from_secs(1)));
        let outcome = cloud.mint_once(instance, region, limit, &charge.sent).await;
        let error = match outcome {
            MintOutcome::Minted(m) => {
                charge.settle();
                count("minted");
                if let Some(s) = spend {
                    s.states.forget(instance);
                }
                return Ok(Got {
                    minted: m,
                    sent: sent + 1,
                });
            }
            MintOutcome::NeverSent(e) => {
                charge.refund();
                count("never_sent");
                if matches!(e, cloud::Error::Connect { .. })
                    && connect_retries < cloud.max_retries()
                {
                    tracing::debug!(error = %e, "API not reachable; nothing was sent, trying again");
                    tokio::time::sleep(cloud.backoff(connect_retries)).await;
                    connect_retries += 1;
                    continue;
                }
                return Err(e.into());
            }
            MintOutcome::Unknown(e) => {
                charge.settle();
                sent += 1;
                count("unknown");
                if !unknown_retried {
                    unknown_retried = true;
                    tracing::info!(error = %e, "no usable answer to a URL request (a URL may have been spent); trying once more");
                    continue;
                }
                return Err(e.into());
            }
            MintOutcome::NotMinted { error, used } => {
                charge.settle();
                sent += 1;
                count("not_minted");
                if let (Some(s), cloud::Error::Api(api)) = (spend, &error) {
                    if api.classify().1 == Kind::InstanceState {
                        s.states.note_not_running(instance, &api.state());
                    }
                }
                match error.class() {
                    Class::Retry if retries < cloud.max_retries() => {
                        tokio::time::sleep(cloud.backoff(retries)).await;
                        retries += 1;
                        continue;
                    }
                    Class::RetryOnce if !internal_retried => {
                        internal_retried = true;
                        tokio::time::sleep(cloud.backoff(0)).await;
                        continue;
                    }
                    Class::RefreshCredentials if !refreshed => {
                        refreshed = true;
                        tracing::info!(
                            "credentials rejected; refreshing them and trying once more"
                        );
                        cloud.refresh_rejected(&used).await?;
                        continue;
                    }
                    Class::ClockSkew
                        if !skew_fixed
                            && matches!(&error, cloud::Error::Api(a) if a.clock_offset.is_some()) =>
                    {
                        skew_fixed = true;
                        continue;
                    }
                    _ => error,
                }
            }
        };
        return Err(error.into());
    }
}
