//! Listeners: one raw TCP listener per target for native viewers, and the HTTP server
//! (websocket console, health, readiness, `/api/consoles`, web UI). Callers bind
//! ([`Listeners`]); [`ListenerRegistry`] serves them and lets a reload add and stop TCP listeners as
//! targets come and go.

mod actions;
mod api;
pub mod http;
pub mod tcp;
pub mod web;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::config::Config;

/// Bound listeners, handed to the daemon's serve loop.
#[derive(Debug)]
pub struct Listeners {
    /// `(instance, listener)` for each target with `listen`.
    pub tcp: Vec<(String, TcpListener)>,
    /// The HTTP listener, when `[http]` is configured.
    pub http: Option<TcpListener>,
    /// Names (`http` or an instance id) of the listeners systemd passed: a reload never
    /// binds or closes those.
    pub inherited: Vec<String>,
}

/// Why the listeners could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// An address could not be bound.
    #[error("cannot listen on {addr} ({what}): {cause}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Which listener.
        what: String,
        /// The OS error, with a hint for the common ones.
        cause: String,
    },
    /// A socket passed by systemd is unusable or matches nothing.
    #[error("socket activation: {0}")]
    Inherited(String),
    /// A socket passed by systemd listens beyond loopback without authentication (a
    /// usage error: exit 64).
    #[error("{0}")]
    Insecure(String),
}

async fn bind(addr: SocketAddr, what: String) -> Result<TcpListener, ListenError> {
    TcpListener::bind(addr).await.map_err(|e| {
        let hint = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                "; another process uses that port: stop it or pick another port"
            }
            std::io::ErrorKind::PermissionDenied => {
                "; ports below 1024 need privileges: pick a higher port"
            }
            _ => "",
        };
        ListenError::Bind {
            addr,
            what,
            cause: format!("{e}{hint}"),
        }
    })
}

/// The loopback-unless-authenticated rule, for a socket whatever its origin: a listener
/// reachable from beyond this host must make its clients authenticate.
///
/// # Errors
/// [`ListenError::Insecure`] naming the socket and the fix.
fn check_exposure(cfg: &Config, name: &str, addr: SocketAddr) -> Result<(), ListenError> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    let (authenticated, fix) = if name == "http" {
        (
            cfg.http.as_ref().is_some_and(|h| h.token.is_some()),
            "set [http] token_file",
        )
    } else {
        (
            cfg.target(name).is_some_and(|t| t.password.is_some()),
            "set password_file on that [[target]]",
        )
    };
    if authenticated {
        Ok(())
    } else {
        Err(ListenError::Insecure(format!(
            "config error: the socket {name:?} passed by systemd listens on {addr}, which is not a loopback address, and its clients would not authenticate: {fix}, or use ListenStream=127.0.0.1:{}",
            addr.port()
        )))
    }
}

impl Listeners {
    /// Takes the listeners systemd passed (socket activation: `LISTEN_FDS`, matched by
    /// `LISTEN_FDNAMES` to a target's instance id or to `http`), and binds the rest.
    /// Inherited sockets obey the same loopback-unless-authenticated rule as
    /// configured addresses.
    ///
    /// # Errors
    /// An inherited socket that matches nothing or is exposed without authentication,
    /// or a listener that cannot be bound.
    pub(crate) async fn inherit_or_bind(cfg: &Config) -> Result<Listeners, ListenError> {
        let inherited = crate::systemd::inherited_listeners().map_err(ListenError::Inherited)?;
        let mut tcp = Vec::new();
        let mut http = None;
        let names: Vec<String> = inherited.iter().map(|(n, _)| n.clone()).collect();
        for (name, l) in inherited {
            let l = TcpListener::from_std(l)
                .map_err(|e| ListenError::Inherited(format!("socket {name}: {e}")))?;
            let addr = l
                .local_addr()
                .map_err(|e| ListenError::Inherited(format!("socket {name}: {e}")))?;
            if name == "http" && cfg.http.is_some() {
                check_exposure(cfg, &name, addr)?;
                http = Some(l);
            } else if cfg.target(&name).is_some() {
                check_exposure(cfg, &name, addr)?;
                tcp.push((name, l));
            } else {
                return Err(ListenError::Inherited(format!(
                    "socket {name:?} on {addr}: its FileDescriptorName= matches no [[target]] instance and is not \"http\" (with [http] configured)"
                )));
            }
        }
        let mut out = Self::bind_rest(cfg, tcp, http).await?;
        out.inherited = names;
        Ok(out)
    }

    /// Binds every listener the config asks for.
    ///
    /// # Errors
    /// The first listener that cannot be bound.
    pub async fn bind(cfg: &Config) -> Result<Listeners, ListenError> {
        Self::bind_rest(cfg, Vec::new(), None).await
    }

    /// Binds what the config asks for and `tcp`/`http` do not already hold.
    async fn bind_rest(
        cfg: &Config,
        mut tcp: Vec<(String, TcpListener)>,
        mut http: Option<TcpListener>,
    ) -> Result<Listeners, ListenError> {
        for t in &cfg.targets {
            if let Some(addr) = t.listen {
                if !tcp.iter().any(|(i, _)| i == &t.instance) {
                    tcp.push((
                        t.instance.clone(),
                        bind(addr, format!("target {}", t.instance)).await?,
                    ));
                }
            }
        }
        if let (None, Some(h)) = (&http, &cfg.http) {
            http = Some(bind(h.listen, "http".into()).await?);
        }
        Ok(Listeners {
            tcp,
            http,
            inherited: Vec::new(),
        })
    }

    /// Every bound address, for the startup log and tests.
    pub fn addresses(&self) -> Vec<(String, SocketAddr)> {
        let mut out: Vec<(String, SocketAddr)> = self
            .tcp
            .iter()
            .filter_map(|(i, l)| l.local_addr().ok().map(|a| (format!("tcp {i}"), a)))
            .collect();
        if let Some(a) = self.http.as_ref().and_then(|l| l.local_addr().ok()) {
            out.push(("http".into(), a));
        }
        out
    }
}

/// One TCP listener being served.
#[derive(Debug)]
struct Served {
    /// The target's `listen` it was bound from; `None` when systemd passed it.
    configured: Option<SocketAddr>,
    /// The address it is bound to.
    local: SocketAddr,
    /// Ends its accept loop; the sessions it started keep running.
    stop: CancellationToken,
    /// The accept loop, awaited when stopped so that the socket is closed by the time
    /// the reload returns.
    task: JoinHandle<()>,
}

/// The HTTP listener being served.
#[derive(Debug, Clone, Copy)]
struct ServedHttp {
    local: SocketAddr,
    inherited: bool,
}

/// The listeners being served, by target, so that a reload can start the TCP listeners
/// of new targets (or new addresses) and stop those of removed ones. Listeners systemd
/// passed are never closed or re-bound.
#[derive(Debug)]
pub struct ListenerRegistry {
    app: Arc<App>,
    tcp: BTreeMap<String, Served>,
    http: Option<ServedHttp>,
}

/// What a reload will do to the listeners: new ones already bound (so a bind failure
/// refuses the reload before anything changed), old ones to stop.
#[derive(Debug)]
pub(crate) struct ListenerPlan {
    /// `(instance, configured address, bound listener)`.
    start: Vec<(String, SocketAddr, TcpListener)>,
    /// Instances whose listener stops.
    stop: Vec<String>,
    /// Sockets passed by systemd whose target is gone: kept open, refusing connections.
    orphaned: Vec<String>,
}

/// What [`ListenerRegistry::commit`] changed.
#[derive(Debug, Default, Clone)]
pub struct ListenerChanges {
    /// `(instance, bound address)` of each listener started.
    pub started: Vec<(String, SocketAddr)>,
    /// `(instance, address)` of each listener stopped.
    pub stopped: Vec<(String, SocketAddr)>,
    /// Sockets passed by systemd that no target uses now (kept open; their connections
    /// are closed until a target of that name returns).
    pub orphaned: Vec<String>,
}

impl ListenerRegistry {
    /// Serves `listeners` for `app` (each through `app.shutdown`), with the config in
    /// force describing them.
    pub fn start(app: Arc<App>, listeners: Listeners) -> ListenerRegistry {
        let cfg = app.config();
        let mut reg = ListenerRegistry {
            app: app.clone(),
            tcp: BTreeMap::new(),
            http: None,
        };
        for (instance, l) in listeners.tcp {
            let configured = if listeners.inherited.contains(&instance) {
                None
            } else {
                cfg.target(&instance).and_then(|t| t.listen)
            };
            reg.serve_tcp(instance, configured, l);
        }
        if let Some(l) = listeners.http {
            if let Ok(local) = l.local_addr() {
                reg.http = Some(ServedHttp {
                    local,
                    inherited: listeners.inherited.iter().any(|n| n == "http"),
                });
            }
            app.shutdown.spawn(http::serve(app.clone(), l));
        }
        reg
    }

    fn serve_tcp(&mut self, instance: String, configured: Option<SocketAddr>, l: TcpListener) {
        let Ok(local) = l.local_addr() else {
            tracing::warn!(%instance, "listener has no local address; not served");
            return;
        };
        let stop = CancellationToken::new();
        let task = self.app.shutdown.spawn(tcp::serve(
            self.app.clone(),
            instance.clone(),
            l,
            stop.clone(),
        ));
        self.tcp.insert(
            instance,
            Served {
                configured,
                local,
                stop,
                task,
            },
        );
    }

    /// Every address served, named as at startup (`tcp <instance>`, `http`).
    pub fn addresses(&self) -> Vec<(String, SocketAddr)> {
        let mut out: Vec<(String, SocketAddr)> = self
            .tcp
            .iter()
            .map(|(i, s)| (format!("tcp {i}"), s.local))
            .collect();
        if let Some(h) = self.http {
            out.push(("http".into(), h.local));
        }
        out
    }

    /// The address of `instance`'s TCP listener.
    pub fn tcp_address(&self, instance: &str) -> Option<SocketAddr> {
        self.tcp.get(instance).map(|s| s.local)
    }

    /// The HTTP listener's address, and whether systemd passed it.
    pub fn http(&self) -> Option<(SocketAddr, bool)> {
        self.http.map(|h| (h.local, h.inherited))
    }

    /// Binds the listeners `new` adds or moves, and lists those it drops. Changes
    /// nothing that is served; dropping the plan closes what it bound.
    ///
    /// # Errors
    /// A listener that cannot be bound, or a socket passed by systemd that `new` would
    /// expose beyond loopback without authentication.
    pub(crate) async fn prepare(&self, new: &Config) -> Result<ListenerPlan, ListenError> {
        let mut plan = ListenerPlan {
            start: Vec::new(),
            stop: Vec::new(),
            orphaned: Vec::new(),
        };
        for t in &new.targets {
            let Some(want) = t.listen else { continue };
            match self.tcp.get(&t.instance) {
                Some(s) if s.configured.is_none() => check_exposure(new, &t.instance, s.local)?,
                Some(s) if s.configured == Some(want) => {}
                current => {
                    let l = bind(want, format!("target {}", t.instance)).await?;
                    if current.is_some() {
                        plan.stop.push(t.instance.clone());
                    }
                    plan.start.push((t.instance.clone(), want, l));
                }
            }
        }
        for (instance, s) in &self.tcp {
            if new.target(instance).and_then(|t| t.listen).is_some() {
                continue;
            }
            if s.configured.is_some() {
                plan.stop.push(instance.clone());
            } else if new.target(instance).is_none() {
                plan.orphaned.push(instance.clone());
            } else {
                check_exposure(new, instance, s.local)?;
            }
        }
        if let (Some(h), Some(_)) = (self.http, &new.http) {
            if h.inherited {
                check_exposure(new, "http", h.local)?;
            }
        }
        Ok(plan)
    }

    /// Carries out `plan`: stops the listeners it drops (waiting until each is closed)
    /// and serves the ones it bound. Call after the new config is in force, so that the
    /// new listeners find their targets.
    pub(crate) async fn commit(&mut self, plan: ListenerPlan) -> ListenerChanges {
        let mut changes = ListenerChanges {
            orphaned: plan.orphaned,
            ..ListenerChanges::default()
        };
        for instance in plan.stop {
            if let Some(s) = self.tcp.remove(&instance) {
                s.stop.cancel();
                if let Err(e) = s.task.await {
                    tracing::warn!(%instance, error = %e, "listener task failed");
                }
                changes.stopped.push((instance, s.local));
            }
        }
        for (instance, configured, l) in plan.start {
            self.serve_tcp(instance.clone(), Some(configured), l);
            if let Some(a) = self.tcp_address(&instance) {
                changes.started.push((instance, a));
            }
        }
        changes
    }
}
