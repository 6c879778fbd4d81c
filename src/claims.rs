//! The console registry: which session holds each instance's console (a console is an
//! exclusive terminal). A claim is refused (`reject`), or the holder is cancelled and
//! awaited (`takeover`); a holder that is only closing is waited for, so a viewer that
//! reconnects right after its session ended is not refused by its own ghost.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::OnBusy;
use crate::outcome::Failure;

struct Holder {
    session: u64,
    /// The holder's client address: a newcomer from the same address is probably the
    /// same viewer reconnecting, and waits a moment for its old session to notice.
    ip: std::net::IpAddr,
    who: String,
    since: SystemTime,
    cancel: CancellationToken,
    released: Arc<Notify>,
    /// The holder's bridge has ended; it is only closing the connections.
    closing: bool,
}

/// Which session holds each instance's console (consoles are exclusive terminals).
#[derive(Default)]
pub struct Consoles {
    holders: Mutex<HashMap<String, Holder>>,
}

impl std::fmt::Debug for Consoles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Consoles")
    }
}

/// Holds an instance's console; released on drop.
pub(crate) struct ConsoleGuard<'a> {
    consoles: &'a Consoles,
    instance: String,
    session: u64,
}

impl ConsoleGuard<'_> {
    /// Marks the session as closing: a newcomer waits for it instead of being refused.
    pub(crate) fn closing(&self) {
        let mut h = self.consoles.holders.lock();
        if let Some(x) = h
            .get_mut(&self.instance)
            .filter(|x| x.session == self.session)
        {
            x.closing = true;
        }
    }
}

impl Drop for ConsoleGuard<'_> {
    fn drop(&mut self) {
        let mut h = self.consoles.holders.lock();
        if h.get(&self.instance)
            .is_some_and(|x| x.session == self.session)
        {
            if let Some(x) = h.remove(&self.instance) {
                x.released.notify_waiters();
            }
        }
    }
}

/// A taken-over holder gets this long to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);
/// A holder from the newcomer's own address gets this long to end before `reject`
/// refuses (its viewer just left and reconnected; the bridge is noticing).
const SAME_ADDRESS_WAIT: Duration = Duration::from_secs(2);

impl Consoles {
    /// Claims `instance` for `session` of a client at `ip`: refused when held (reject;
    /// after a short wait when the holder came from the same address), or the holder is
    /// cancelled and awaited (takeover). A holder that is only closing is waited for.
    ///
    /// # Errors
    /// [`Failure::Busy`] naming the holder (for the log) and since when.
    pub(crate) async fn claim<'a>(
        &'a self,
        instance: &str,
        session: u64,
        ip: std::net::IpAddr,
        who: String,
        cancel: CancellationToken,
        policy: OnBusy,
    ) -> Result<ConsoleGuard<'a>, Failure> {
        let started = Instant::now();
        let deadline = started + TAKEOVER_WAIT;
        loop {
            let (released, until) = {
                let mut h = self.holders.lock();
                match h.get(instance) {
                    None => {
                        h.insert(
                            instance.to_owned(),
                            Holder {
                                session,
                                ip,
                                who,
                                since: SystemTime::now(),
                                cancel,
                                released: Arc::new(Notify::new()),
                                closing: false,
                            },
                        );
                        return Ok(ConsoleGuard {
                            consoles: self,
                            instance: instance.to_owned(),
                            session,
                        });
                    }
                    Some(holder) => {
                        let busy = || Failure::Busy {
                            instance: instance.to_owned(),
                            holder: holder.who.clone(),
                            since: humantime::format_rfc3339_seconds(holder.since).to_string(),
                        };
                        if Instant::now() >= deadline {
                            return Err(busy());
                        }
                        let mut until = deadline;
                        if holder.closing {
                            // A viewer reconnecting right after its last session ended
                            // waits for that session to finish closing.
                            tracing::debug!(holder = %holder.who, "waiting for the previous session to close");
                        } else if policy == OnBusy::Reject
                            && (holder.ip != ip || Instant::now() >= started + SAME_ADDRESS_WAIT)
                        {
                            return Err(busy());
                        } else if policy == OnBusy::Reject {
                            tracing::debug!(holder = %holder.who, "waiting briefly for this address's previous session to end");
                            until = started + SAME_ADDRESS_WAIT;
                        } else {
                            tracing::info!(holder = %holder.who, "taking the console over");
                            holder.cancel.cancel();
                        }
                        (holder.released.clone(), until)
                    }
                }
            };
            let notified = released.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            // The holder may have gone between the lock and `enable`: re-check by looping.
            let still_held = self
                .holders
                .lock()
                .get(instance)
                .is_some_and(|h| Arc::ptr_eq(&h.released, &released));
            if still_held {
                let _ = tokio::time::timeout_at(until, notified).await;
            }
        }
    }
}
