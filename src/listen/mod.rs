//! Listeners: one raw TCP listener per target for native viewers, and the HTTP server
//! (websocket console, health, readiness, web UI). Callers bind; [`crate::daemon::run`] serves.

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

/// A listener that could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({what}): {cause}")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// Which listener.
    pub what: String,
    /// The OS error, with a hint for the common ones.
    pub cause: String,
}

async fn bind(addr: SocketAddr, what: String) -> Result<TcpListener, BindError> {
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
        BindError {
            addr,
            what,
            cause: format!("{e}{hint}"),
        }
    })
}

impl Listeners {
    /// Takes the listeners systemd passed (socket activation: `LISTEN_FDS`, matched by
    /// `LISTEN_FDNAMES` to a target's instance id or to `http`), and binds the rest.
    ///
    /// # Errors
    /// An inherited socket that matches nothing, or a listener that cannot be bound.
    pub async fn inherit_or_bind(cfg: &Config) -> Result<Listeners, BindError> {
        let inherited = crate::systemd::inherited_listeners().map_err(|cause| BindError {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            what: "socket activation".into(),
            cause,
        })?;
        let mut tcp = Vec::new();
        let mut http = None;
        for (name, l) in inherited {
            let l = TcpListener::from_std(l).map_err(|e| BindError {
                addr: SocketAddr::from(([0, 0, 0, 0], 0)),
                what: format!("inherited socket {name}"),
                cause: e.to_string(),
            })?;
            if name == "http" && cfg.http.is_some() {
                http = Some(l);
            } else if cfg.target(&name).is_some() {
                tcp.push((name, l));
            } else {
                return Err(BindError {
                    addr: l.local_addr().unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0))),
                    what: format!("inherited socket {name:?}"),
                    cause: "its FileDescriptorName= matches no [[target]] instance and is not \"http\" (with [http] configured)".into(),
                });
            }
        }
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

    /// Binds every listener the config asks for.
    ///
    /// # Errors
    /// The first listener that cannot be bound.
    pub async fn bind(cfg: &Config) -> Result<Listeners, BindError> {
        let mut tcp = Vec::new();
        for t in &cfg.targets {
            if let Some(addr) = t.listen {
                tcp.push((
                    t.instance.clone(),
                    bind(addr, format!("target {}", t.instance)).await?,
                ));
            }
        }
        let http = match &cfg.http {
            Some(h) => Some(bind(h.listen, "http".into()).await?),
            None => None,
        };
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
