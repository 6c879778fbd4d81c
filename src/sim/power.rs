//! Instance power: a reboot drops every gateway session of the instance at once, then
//! walks it through `STOPPED` and `STARTING` back to `RUNNING` on tokio time; tests wait
//! for a state with [`SimState::wait_state`] instead of sleeping.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::SimState;

/// Why the simulator refused an instance operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InstanceError {
    /// No such instance.
    #[error("unknown instance {0}")]
    Unknown(String),
    /// Only a running instance reboots (as `RebootInstances` on the cloud).
    #[error("instance {id} is {state}: only a RUNNING instance reboots")]
    NotRunning {
        /// The instance.
        id: String,
        /// Its state.
        state: String,
    },
}

/// A token the gateway accepted: the instance, and its current boot's token, cancelled
/// when the instance reboots (the session is then dropped).
#[derive(Debug)]
pub(crate) struct Redeemed {
    pub(crate) instance: String,
    pub(crate) boot: CancellationToken,
}

impl SimState {
    /// Reboots `instance`: every live gateway session of it is dropped at once (no close
    /// frame, as when the backend dies; each reported as
    /// `GatewayEvent::Ended("dropped by reboot of <id>")`), its state is `STOPPED` for
    /// `stopped`, then `STARTING` for `starting`, then `RUNNING` again. Meanwhile
    /// `DescribeInstanceVncUrl` refuses it and the gateway refuses its tokens, even those
    /// minted before. A state set by hand meanwhile ends the walk. Needs a tokio runtime.
    ///
    /// # Errors
    /// [`InstanceError`]: unknown instance, or not `RUNNING` (a reboot in progress
    /// included).
    pub fn reboot(
        &self,
        instance: &str,
        stopped: Duration,
        starting: Duration,
    ) -> Result<(), InstanceError> {
        {
            let mut instances = self.instances.lock();
            let inst = instances
                .get_mut(instance)
                .ok_or_else(|| InstanceError::Unknown(instance.to_owned()))?;
            if inst.state != "RUNNING" {
                return Err(InstanceError::NotRunning {
                    id: instance.to_owned(),
                    state: inst.state.clone(),
                });
            }
            inst.state = "STOPPED".to_owned();
            // Under the instances lock, as the gateway's redeem: no session can take
            // this boot's token after it is cancelled.
            if let Some(boot) = self.boots.lock().remove(instance) {
                boot.cancel();
            }
        }
        self.state_changed();
        tracing::info!(
            instance,
            ?stopped,
            ?starting,
            "simulator: instance rebooting"
        );
        let Some(me) = self.me.upgrade() else {
            return Ok(());
        };
        let id = instance.to_owned();
        let shutdown = self.shutdown.clone();
        self.shutdown.spawn(async move {
            let walk = async {
                tokio::time::sleep(stopped).await;
                if me.transition(&id, "STOPPED", "STARTING") {
                    tokio::time::sleep(starting).await;
                    me.transition(&id, "STARTING", "RUNNING");
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = walk => {}
            }
        });
        Ok(())
    }

    /// Sets `id` to `to` if it is in `from`; whether it was.
    fn transition(&self, id: &str, from: &str, to: &str) -> bool {
        let done = match self.instances.lock().get_mut(id) {
            Some(i) if i.state == from => {
                i.state = to.to_owned();
                true
            }
            _ => false,
        };
        if done {
            self.state_changed();
        }
        done
    }

    /// `instance`'s state now.
    pub fn instance_state(&self, instance: &str) -> Option<String> {
        self.instances.lock().get(instance).map(|i| i.state.clone())
    }

    /// Waits until `instance` is in `state` (at once when it is).
    ///
    /// # Errors
    /// [`InstanceError::Unknown`].
    pub async fn wait_state(&self, instance: &str, state: &str) -> Result<(), InstanceError> {
        let mut rx = self.state_changes.subscribe();
        loop {
            match self.instance_state(instance) {
                None => return Err(InstanceError::Unknown(instance.to_owned())),
                Some(s) if s == state => return Ok(()),
                Some(_) => {}
            }
            // The sender lives as long as `self`: this never fails while we are borrowed.
            let _ = rx.changed().await;
        }
    }

    /// Wakes [`SimState::wait_state`] waiters.
    pub(crate) fn state_changed(&self) {
        self.state_changes.send_modify(|n| *n += 1);
    }

    /// The gateway's check after the token's own: the instance must be `RUNNING`; the
    /// session then holds the current boot's token.
    pub(crate) fn admit_session(&self, instance: String) -> Result<Redeemed, &'static str> {
        let instances = self.instances.lock();
        if instances
            .get(&instance)
            .is_none_or(|i| i.state != "RUNNING")
        {
            return Err("instance not running");
        }
        let boot = self
            .boots
            .lock()
            .entry(instance.clone())
            .or_default()
            .clone();
        drop(instances);
        Ok(Redeemed { instance, boot })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shutdown::Shutdown;
    use crate::sim::SimOptions;
    use tokio::time::Instant;

    /// A reboot is STOPPED, then STARTING, then RUNNING after the durations given (paused
    /// time), refuses an instance it does not know or one not running, and a test can
    /// wait for each state.
    #[tokio::test(start_paused = true)]
    async fn reboot_walks_the_states() {
        let state = SimState::build(&SimOptions::default(), Shutdown::new());
        let t0 = Instant::now();
        let (two, three) = (Duration::from_secs(2), Duration::from_secs(3));
        state.reboot("ins-demo0001", two, three).expect("reboots");
        assert_eq!(
            state.instance_state("ins-demo0001").as_deref(),
            Some("STOPPED")
        );
        assert_eq!(
            state.reboot("ins-demo0001", two, three),
            Err(InstanceError::NotRunning {
                id: "ins-demo0001".into(),
                state: "STOPPED".into()
            })
        );
        assert_eq!(
            state.reboot("ins-nothere1", two, three),
            Err(InstanceError::Unknown("ins-nothere1".into()))
        );
        state
            .wait_state("ins-demo0001", "STARTING")
            .await
            .expect("starting");
        assert_eq!(t0.elapsed(), two);
        state
            .wait_state("ins-demo0001", "RUNNING")
            .await
            .expect("running");
        assert_eq!(t0.elapsed(), two + three);
        assert_eq!(
            state.wait_state("ins-nothere1", "RUNNING").await,
            Err(InstanceError::Unknown("ins-nothere1".into()))
        );
    }

    /// A session admitted before the reboot has its boot token cancelled by it; a token
    /// minted before it is refused while the instance is not running; after the reboot a
    /// new session gets a fresh token.
    #[tokio::test(start_paused = true)]
    async fn reboot_ends_sessions_and_refuses_old_tokens() {
        let state = SimState::build(&SimOptions::default(), Shutdown::new());
        state.mint_url("ins-demo0001");
        let first = state.minted_tokens().pop().expect("token");
        state.mint_url("ins-demo0001");
        let second = state
            .minted_tokens()
            .into_iter()
            .find(|t| *t != first)
            .expect("token");
        let live = state.redeem(&first).expect("admitted");
        assert_eq!(live.instance, "ins-demo0001");
        assert!(!live.boot.is_cancelled());
        state.mint_url("ins-demo0002");
        let other = state
            .minted_tokens()
            .into_iter()
            .find(|t| *t != first && *t != second)
            .expect("token");
        let bystander = state.redeem(&other).expect("admitted");
        state
            .reboot(
                "ins-demo0001",
                Duration::from_secs(2),
                Duration::from_secs(2),
            )
            .expect("reboots");
        assert!(live.boot.is_cancelled(), "the live session is dropped");
        assert!(!bystander.boot.is_cancelled(), "another instance's is not");
        assert_eq!(state.redeem(&second).err(), Some("instance not running"));
        state
            .wait_state("ins-demo0001", "RUNNING")
            .await
            .expect("running");
        state.mint_url("ins-demo0001");
        let third = state
            .minted_tokens()
            .into_iter()
            .find(|t| ![&first, &second, &other].contains(&t))
            .expect("token");
        let after = state.redeem(&third).expect("admitted after the reboot");
        assert!(!after.boot.is_cancelled());
    }

    /// A state set by hand during a reboot ends the walk there.
    #[tokio::test(start_paused = true)]
    async fn a_state_set_by_hand_wins() {
        let state = SimState::build(&SimOptions::default(), Shutdown::new());
        state
            .reboot(
                "ins-demo0001",
                Duration::from_secs(2),
                Duration::from_secs(2),
            )
            .expect("reboots");
        state.set_state("ins-demo0001", "TERMINATING");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(
            state.instance_state("ins-demo0001").as_deref(),
            Some("TERMINATING")
        );
    }
}
