//! Console claims shared by every replica: a lease per instance in Redis (`SET NX PX`,
//! renewed while the session lives, released by a compare-and-delete script), so a
//! console held on one replica is busy on the others, and a replica that dies blocks it
//! for at most the lease. The local registry (`claims`) still orders the sessions of
//! one replica (reject, takeover, waiting for a closing holder); this adds the others.
//! A session already bridged never depends on Redis: a renewal that fails is logged and
//! retried, never a reason to end it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use tokio::time::Instant;

use super::config::OnUnavailable;
use super::link::{Link, Unavailable};
use super::scripts;

/// A newcomer from the holder's own address, or a holder that is closing, is waited
/// for this long (the same viewer reconnecting through another replica).
const SAME_ADDRESS_WAIT: Duration = Duration::from_secs(2);
/// How often such a wait asks Redis again.
const POLL: Duration = Duration::from_millis(100);

/// Who holds a console on another replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHolder {
    /// The replica's name (host/pid).
    pub replica: String,
    /// The holder as that replica describes it (address and session).
    pub who: String,
    /// Since when (RFC 3339, Redis's clock).
    pub since: String,
}

/// Why no claim.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClaimRefusal {
    /// Another replica holds the console.
    #[error("held by {} on replica {} since {}", .0.who, .0.replica, .0.since)]
    Busy(RemoteHolder),
    /// Redis cannot be reached (`on_unavailable = "refuse"`).
    #[error(transparent)]
    Unavailable(Unavailable),
    /// Redis lost its data and the replicas are putting their claims back.
    #[error("Redis lost the shared state and the replicas are putting their claims back (up to {} s)", .0.as_secs().max(1))]
    Rebuilding(Duration),
}

/// The parts of a lease value: `token\nsince\nreplica\nwho\nip\nclosing`.
struct Value<'a> {
    since_ms: i64,
    replica: &'a str,
    who: &'a str,
    ip: &'a str,
    closing: bool,
}

fn parse(v: &str) -> Option<Value<'_>> {
    let mut it = v.split('\n');
    let _token = it.next()?;
    Some(Value {
        since_ms: it.next()?.parse().ok()?,
        replica: it.next()?,
        who: it.next()?,
        ip: it.next()?,
        closing: it.next()? == "1",
    })
}

fn rfc3339(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The shared claims.
#[derive(Debug)]
pub(crate) struct SharedClaims {
    link: Arc<Link>,
    mode: OnUnavailable,
    lease: Duration,
}

impl SharedClaims {
    pub(crate) fn new(link: Arc<Link>, mode: OnUnavailable, lease: Duration) -> Self {
        SharedClaims { link, mode, lease }
    }

    /// The lease key of `instance`.
    pub(crate) fn key(&self, instance: &str) -> String {
        self.link.key(&format!("claim:{instance}"))
    }

    /// Claims `instance` for the fleet on behalf of `who` (a client at `ip`). A holder
    /// from the same address, or one that is closing, is waited for a moment. `Ok(None)`:
    /// Redis is away and `on_unavailable = "local"` (the local claim alone holds).
    /// Cancel-safe: a claim taken by a script whose answer is lost expires with its lease.
    ///
    /// # Errors
    /// [`ClaimRefusal`].
    pub(crate) async fn claim(
        &self,
        instance: &str,
        who: &str,
        ip: IpAddr,
    ) -> Result<Option<Lease>, ClaimRefusal> {
        let started = Instant::now();
        let key = self.key(instance);
        let lease_ms = u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX);
        let mut resynced = false;
        let who = who.replace('\n', " ");
        let ip_s = ip.to_string();
        loop {
            if !self.link.is_up() {
                return self.unavailable(None);
            }
            let token = format!("{:032x}", rand::random::<u128>());
            let mut args = self.link.prelude_args();
            args.extend([
                token.clone(),
                format!("{}\n{who}\n{ip_s}", self.link.replica),
                lease_ms.to_string(),
            ]);
            let epoch_key = self.link.key("epoch");
            let r = match self
                .link
                .eval("claim", &scripts::CLAIM, &[&epoch_key, &key], &args)
                .await
            {
                Ok(r) => r,
                Err(e) => return self.unavailable(Some(e)),
            };
            match r.status.as_str() {
                "ok" => {
                    return Ok(Some(Lease::start(
                        self.link.clone(),
                        key,
                        token,
                        r.text,
                        lease_ms,
                    )))
                }
                "resync" if !resynced => {
                    resynced = true;
                    if let Err(e) = self.link.resync().await {
                        return self.unavailable(Some(e));
                    }
                }
                "rebuilding" => {
                    return Err(ClaimRefusal::Rebuilding(Duration::from_millis(
                        u64::try_from(r.n).unwrap_or(0),
                    )))
                }
                "retry" => {}
                "busy" => {
                    let Some(held) = parse(&r.text) else {
                        return Err(ClaimRefusal::Busy(RemoteHolder {
                            replica: "?".into(),
                            who: "?".into(),
                            since: "?".into(),
                        }));
                    };
                    let holder = RemoteHolder {
                        replica: held.replica.to_owned(),
                        who: held.who.to_owned(),
                        since: rfc3339(held.since_ms),
                    };
                    let wait = held.closing || held.ip == ip_s;
                    if !wait || started.elapsed() + POLL > SAME_ADDRESS_WAIT {
                        return Err(ClaimRefusal::Busy(holder));
                    }
                    tracing::debug!(holder = %holder.who, replica = %holder.replica, "waiting briefly for the previous session on another replica to end");
                    tokio::time::sleep(POLL).await;
                }
                other => {
                    return self.unavailable(Some(Unavailable {
                        url: self.link.shown.clone(),
                        cause: format!("unexpected answer {other:?} from the claim script"),
                    }))
                }
            }
        }
    }

    fn unavailable(&self, e: Option<Unavailable>) -> Result<Option<Lease>, ClaimRefusal> {
        let e = e.unwrap_or_else(|| Unavailable {
            url: self.link.shown.clone(),
            cause: "not answering since the last call or probe".into(),
        });
        match self.mode {
            OnUnavailable::Refuse => Err(ClaimRefusal::Unavailable(e)),
            OnUnavailable::Local => {
                self.link.metrics.fleet_fallback("claim_local");
                tracing::debug!(error = %e, "Redis away: the console is claimed on this replica only");
                Ok(None)
            }
        }
    }
}

/// A console held for the fleet: renewed every third of the lease while it lives,
/// released (compare-and-delete) when dropped.
#[derive(Debug)]
pub struct Lease {
    link: Arc<Link>,
    key: String,
    token: String,
    /// The renewal task, stopped on drop.
    renew: tokio::task::AbortHandle,
    /// Tells the renewal task to rewrite the value as closing.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Lease {
    fn start(link: Arc<Link>, key: String, token: String, value: String, lease_ms: u64) -> Lease {
        link.own_lease(&key, &value, lease_ms);
        let (closing, mut closing_rx) = tokio::sync::watch::channel(false);
        let (l, k, prefix) = (link.clone(), key.clone(), format!("{token}\n"));
        let renew = tokio::spawn(async move {
            let every = Duration::from_millis(lease_ms / 3).max(Duration::from_millis(100));
            let mut value = value;
            let mut failing = false;
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    changed = closing_rx.changed() => {
                        if changed.is_err() { return; }
                        if let Some(v) = value.strip_suffix("\n0") {
                            value = format!("{v}\n1");
                            l.own_lease(&k, &value, lease_ms);
                        }
                    }
                }
                let r = l
                    .eval("renew", &scripts::RENEW, &[&k], &[prefix.clone(), value.clone(), lease_ms.to_string()])
                    .await;
                match r {
                    Ok(r) if r.status == "ok" => {
                        if failing || r.n == 2 {
                            tracing::info!(claim = %k, retaken = r.n == 2, "console claim renewed again");
                        }
                        failing = false;
                    }
                    Ok(r) => {
                        // Only if Redis lost the claim and another replica took it: the
                        // session goes on (it never depends on Redis), but say so.
                        if !failing {
                            tracing::warn!(claim = %k, holder = %r.text.split('\n').nth(2).unwrap_or("?"), "another replica claimed this console while this session still holds it (Redis lost the claim)");
                        }
                        l.metrics.fleet_error("renew_lost");
                        failing = true;
                    }
                    Err(e) => {
                        if !failing {
                            tracing::warn!(claim = %k, error = %e, "cannot renew the console claim; the session goes on, and the claim is renewed once Redis answers");
                        }
                        failing = true;
                    }
                }
            }
        })
        .abort_handle();
        Lease {
            link,
            key,
            token,
            renew,
            closing,
        }
    }

    /// The holder's bridge has ended: a newcomer from any replica waits for it.
    pub(crate) fn closing(&self) {
        let _ = self.closing.send(true);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renew.abort();
        self.link.forget_lease(&self.key);
        let (link, key, prefix) = (
            self.link.clone(),
            self.key.clone(),
            format!("{}\n", self.token),
        );
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            if let Err(e) = link
                .eval("release", &scripts::RELEASE, &[&key], &[prefix])
                .await
            {
                tracing::debug!(error = %e, "could not release the console claim; it expires with its lease");
            }
        });
    }
}
