//! Listeners: one raw TCP listener per target for native viewers, and the HTTP server
//! (websocket console, health, readiness, web UI). Callers bind; [`crate::daemon::run`]
//! serves.

pub mod http;
pub mod tcp;
pub mod web;

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::config::Config;

/// Bound listeners, handed to [`crate::daemon::run`].
#[derive(Debug)]
pub struct Listeners {
    /// `(instance, listener)` for each target with `listen`.
    pub tcp: Vec<(String, TcpListener)>,
    /// The HTTP listener, when `[http]` is configured.
    pub http: Option<TcpListener>,
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
    pub async fn inherit_or_bind(cfg: &Config) -> Result<Listeners, ListenError> {
        let inherited = crate::systemd::inherited_listeners().map_err(ListenError::Inherited)?;
        let mut tcp = Vec::new();
        let mut http = None;
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
        Self::bind_rest(cfg, tcp, http).await
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
        Ok(Listeners { tcp, http })
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
