//! What is known of instances that were not running. When the cloud refuses a URL
//! because of the instance's state, the state is remembered; before another URL request
//! is spent on that instance, its state is asked through `DescribeInstancesStatus` (its
//! own rate limit, no URL spent), at most once per [`RECHECK`] and once at a time, so a
//! crowd of viewers retrying a stopped instance spends nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::CloudClient;

/// A remembered state is dropped after this long (the instance is then tried again).
const REMEMBER: Duration = Duration::from_secs(600);
/// The state asked of the cloud is reused for this long.
pub const RECHECK: Duration = Duration::from_secs(3);

/// The instance is known not to be running.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instance {instance} is {state}: start it, then reconnect")]
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
    checked: Instant,
}

/// The registry, shared by every session.
#[derive(Debug, Default)]
pub struct States {
    known: Mutex<HashMap<String, Known>>,
    /// One state check at a time per instance.
    checks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl States {
    /// The cloud refused a URL for `instance` because it is `state`.
    pub fn note_not_running(&self, instance: &str, state: &str) {
        let now = Instant::now();
        lock(&self.known).insert(
            instance.to_owned(),
            Known {
                state: state.to_ascii_lowercase(),
                noted: now,
                checked: now,
            },
        );
    }

    /// `instance` answered with a URL: nothing to remember.
    pub fn forget(&self, instance: &str) {
        lock(&self.known).remove(instance);
    }

    /// `None`: nothing known (go ahead); `Some(Err)`: known not running, checked
    /// recently; `Some(Ok)`: known not running, time to ask again.
    fn cached(&self, instance: &str, now: Instant) -> Option<Result<(), NotRunning>> {
        let mut known = lock(&self.known);
        let k = known.get(instance)?;
        if now.duration_since(k.noted) >= REMEMBER {
            known.remove(instance);
            return None;
        }
        if now.duration_since(k.checked) < RECHECK {
            Some(Err(NotRunning {
                instance: instance.to_owned(),
                state: k.state.clone(),
            }))
        } else {
            Some(Ok(()))
        }
    }

    /// Before a URL is spent on `instance`: `Ok` when it may be running (nothing known,
    /// or the cloud now says `RUNNING`), else the state it is in.
    ///
    /// # Errors
    /// [`NotRunning`] when the instance is known (or found) not to be running; when the
    /// state cannot be asked, the remembered one.
    pub async fn check(
        &self,
        cloud: &CloudClient,
        instance: &str,
        region: &str,
    ) -> Result<(), NotRunning> {
        match self.cached(instance, Instant::now()) {
            None => return Ok(()),
            Some(Err(e)) => return Err(e),
            Some(Ok(())) => {}
        }
        let gate = lock(&self.checks)
            .entry(instance.to_owned())
            .or_default()
            .clone();
        let _one = gate.lock().await;
        // Another caller may have asked while this one waited.
        match self.cached(instance, Instant::now()) {
            None => return Ok(()),
            Some(Err(e)) => return Err(e),
            Some(Ok(())) => {}
        }
        let asked = cloud.instance_states(&[instance.to_owned()], region).await;
        let now = Instant::now();
        let mut known = lock(&self.known);
        let state = match asked {
            Ok(states) => states
                .into_iter()
                .find(|(id, _)| id == instance)
                .map(|(_, s)| s)
                .unwrap_or_else(|| "not found".into()),
            Err(e) => {
                tracing::warn!(%instance, error = %e, "cannot ask the instance's state; keeping the last one known");
                match known.get_mut(instance) {
                    Some(k) => {
                        k.checked = now;
                        return Err(NotRunning {
                            instance: instance.to_owned(),
                            state: k.state.clone(),
                        });
                    }
                    None => return Ok(()),
                }
            }
        };
        if state == "RUNNING" {
            known.remove(instance);
            tracing::info!(%instance, "instance is running again");
            return Ok(());
        }
        let state = state.to_ascii_lowercase();
        let k = known.entry(instance.to_owned()).or_insert(Known {
            state: state.clone(),
            noted: now,
            checked: now,
        });
        k.state.clone_from(&state);
        k.checked = now;
        Err(NotRunning {
            instance: instance.to_owned(),
            state,
        })
    }
}
