//! What is known of instances that were not running. When the cloud refuses a URL
//! because of the instance's state, the state is remembered; before another URL request
//! is spent on that instance, its state is asked through `DescribeInstancesStatus` (its
//! own rate limit, no URL spent). Viewers that arrive together share one answer, so a
//! crowd retrying a stopped instance costs one status request per round and no URL, and
//! the first viewer after the instance starts gets in at once.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use super::CloudClient;

/// A remembered state is dropped after this long (the instance is then tried again).
const REMEMBER: Duration = Duration::from_secs(600);

/// The instance is known not to be running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instance {instance} is {state}: {}", what_to_do(state))]
pub struct NotRunning {
    /// The instance.
    pub instance: String,
    /// Its state, lowercased (`stopped`, `starting`, …).
    pub state: String,
}

#[derive(Debug)]
struct Known {
    state: String,
    noted: Instant,
}

/// What the person can do about an instance in `state` (lowercase): start a stopped
/// one; wait for one on its way up.
pub(crate) fn what_to_do(state: &str) -> &'static str {
    match state {
        "starting" | "pending" | "rebooting" => "wait until it runs, then reconnect",
        "stopping" | "shutdown" | "terminating" => {
            "it is going down: start it again once it stopped, then reconnect"
        }
        _ => "start it, then reconnect",
    }
}

/// The last state check of one instance: when it ended and what it found.
#[derive(Debug, Default)]
struct Check {
    ended: Option<(Instant, Result<(), NotRunning>)>,
}

/// The registry, shared by every session.
#[derive(Debug, Default)]
pub struct States {
    known: Mutex<HashMap<String, Known>>,
    /// One state check at a time per instance; callers that waited for one share it.
    checks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Check>>>>,
}

impl States {
    /// The cloud refused a URL for `instance` because it is `state`.
    pub(crate) fn note_not_running(&self, instance: &str, state: &str) {
        self.known.lock().insert(
            instance.to_owned(),
            Known {
                state: state.to_ascii_lowercase(),
                noted: Instant::now(),
            },
        );
    }

    /// `instance` answered with a URL: nothing to remember.
    pub(crate) fn forget(&self, instance: &str) {
        self.known.lock().remove(instance);
    }

    /// The remembered state of `instance`, if it is still worth remembering.
    fn remembered(&self, instance: &str) -> Option<String> {
        let mut known = self.known.lock();
        let k = known.get(instance)?;
        if k.noted.elapsed() >= REMEMBER {
            known.remove(instance);
            return None;
        }
        Some(k.state.clone())
    }

    /// Before a URL is spent on `instance`: `Ok` when it may be running (nothing known,
    /// or the cloud now says `RUNNING`), else the state it is in.
    ///
    /// # Errors
    /// [`NotRunning`] when the instance is found not to be running; when the state
    /// cannot be asked, the remembered one.
    pub async fn check(
        &self,
        cloud: &CloudClient,
        instance: &str,
        region: &str,
    ) -> Result<(), NotRunning> {
        if self.remembered(instance).is_none() {
            return Ok(());
        }
        let arrived = Instant::now();
        let gate = self
            .checks
            .lock()
            .entry(instance.to_owned())
            .or_default()
            .clone();
        let mut check = gate.lock().await;
        // A check that ended after this caller arrived answers for it too.
        if let Some((ended, result)) = &check.ended {
            if *ended >= arrived {
                return result.clone();
            }
        }
        let result = self.ask(cloud, instance, region).await;
        check.ended = Some((Instant::now(), result.clone()));
        result
    }

    async fn ask(
        &self,
        cloud: &CloudClient,
        instance: &str,
        region: &str,
    ) -> Result<(), NotRunning> {
        let not_running = |state: String| NotRunning {
            instance: instance.to_owned(),
            state,
        };
        let state = match cloud.instance_states(&[instance.to_owned()], region).await {
            Ok(states) => states
                .into_iter()
                .find(|(id, _)| id == instance)
                .map_or_else(|| "not found".to_owned(), |(_, s)| s),
            Err(e) => {
                tracing::warn!(%instance, error = %e, "cannot ask the instance's state; keeping the last one known");
                return match self.remembered(instance) {
                    Some(state) => Err(not_running(state)),
                    None => Ok(()),
                };
            }
        };
        if state == "RUNNING" {
            self.forget(instance);
            tracing::info!(%instance, "instance is running again");
            return Ok(());
        }
        let state = state.to_ascii_lowercase();
        if let Some(k) = self.known.lock().get_mut(instance) {
            k.state.clone_from(&state);
        }
        Err(not_running(state))
    }
}
