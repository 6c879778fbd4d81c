//! Dialing the one-time `wss://` console URL: TCP (nodelay, timeout), TLS (rustls,
//! webpki roots plus `ca_file`, always verified), and a websocket upgrade sent by hand so
//! that any subprotocol answer (none, `binary`, `base64`) is accepted instead of burning
//! the URL on a strict check. Origin and User-Agent are set.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use crate::cloud::VncUrl;
use crate::wsio::{Mode, Role, WsIo};

/// The `User-Agent` tcvnc sends.
pub const USER_AGENT: &str = concat!("tcvnc/", env!("CARGO_PKG_VERSION"));
/// Largest upgrade response head we read.
const MAX_HEAD: usize = 16 * 1024;

/// Why the upstream could not be opened. Messages name host and port, never the token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// TCP connect failed.
    #[error("cannot connect to the console gateway {addr}: {cause}")]
    Connect {
        /// host:port.
        addr: String,
        /// The I/O error.
        cause: String,
    },
    /// A phase did not finish in time.
    #[error("the console gateway {addr} did not answer in time ({phase})")]
    Timeout {
        /// host:port.
        addr: String,
        /// Which phase.
        phase: &'static str,
    },
    /// TLS failed, certificate problems included.
    #[error("TLS with the console gateway {addr} failed: {cause}{hint}")]
    Tls {
        /// host:port.
        addr: String,
        /// rustls' reason.
        cause: String,
        /// A fix, for certificate failures.
        hint: &'static str,
    },
    /// The gateway answered the upgrade with something other than 101.
    #[error("the console gateway {addr} refused the console URL (HTTP {status}{detail})")]
    Refused {
        /// host:port.
        addr: String,
        /// HTTP status.
        status: u16,
        /// `: <body snippet>` when there was one.
        detail: String,
    },
    /// The upgrade answer was not a valid websocket handshake.
    #[error("the console gateway {addr} sent an invalid websocket handshake: {cause}")]
    Handshake {
        /// host:port.
        addr: String,
        /// What was wrong.
        cause: String,
    },
}

/// TCP or TLS, whichever the URL asked for.
#[derive(Debug)]
pub enum MaybeTls {
    /// `ws://` (tests, private gateways).
    Plain(TcpStream),
    /// `wss://`.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for MaybeTls {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_read(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for MaybeTls {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write(cx, buf),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            MaybeTls::Plain(s) => s.is_write_vectored(),
            MaybeTls::Tls(s) => s.is_write_vectored(),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_flush(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            MaybeTls::Plain(s) => Pin::new(s).poll_shutdown(cx),
            MaybeTls::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// An open upstream console connection.
#[derive(Debug)]
pub struct Upstream {
    /// The websocket as a byte channel.
    pub io: WsIo<MaybeTls>,
    /// The subprotocol the gateway chose, if any.
    pub subprotocol: Option<String>,
}

/// Dials console URLs with fixed settings.
#[derive(Clone)]
pub struct Dialer {
    tls: TlsConnector,
    origin: Option<String>,
    subprotocols: Vec<String>,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer")
            .field("origin", &self.origin)
            .field("subprotocols", &self.subprotocols)
            .finish_non_exhaustive()
    }
}

impl Dialer {
    /// A dialer with `tls` trust, sending `origin` and offering `subprotocols`.
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        origin: Option<String>,
        subprotocols: Vec<String>,
        connect_timeout: Duration,
    ) -> Self {
        Dialer {
            tls: TlsConnector::from(tls),
            origin,
            subprotocols,
            connect_timeout,
        }
    }

    /// Opens `url` once. The whole dial (TCP, TLS, upgrade) is bounded by the connect timeout.
    ///
    /// # Errors
    /// [`Error`] naming the gateway and the phase.
    pub async fn dial(&self, url: &VncUrl) -> Result<Upstream, Error> {
        let addr = format!("{}:{}", url.host(), url.port());
        match tokio::time::timeout(self.connect_timeout, self.dial_inner(url, &addr)).await {
            Ok(r) => r,
            Err(_) => Err(Error::Timeout {
                addr,
                phase: "connect, TLS and websocket handshake",
            }),
        }
    }

    async fn dial_inner(&self, url: &VncUrl, addr: &str) -> Result<Upstream, Error> {
        let tcp = TcpStream::connect((url.host(), url.port()))
            .await
            .map_err(|e| Error::Connect {
                addr: addr.to_owned(),
                cause: e.to_string(),
            })?;
        crate::net::configure_socket(&tcp);
        let mut stream = if url.is_tls() {
            let name =
                rustls_pki_types::ServerName::try_from(url.host().to_owned()).map_err(|e| {
                    Error::Tls {
                        addr: addr.to_owned(),
                        cause: format!("invalid server name: {e}"),
                        hint: "",
                    }
                })?;
            let tls = self.tls.connect(name, tcp).await.map_err(|e| {
                let cause = e.to_string();
                let hint = if cause.contains("certificate") || cause.contains("Certificate") {
                    "; if the gateway uses a private CA, set upstream.ca_file"
                } else {
                    ""
                };
                Error::Tls {
                    addr: addr.to_owned(),
                    cause,
                    hint,
                }
            })?;
            MaybeTls::Tls(Box::new(tls))
        } else {
            MaybeTls::Plain(tcp)
        };
        let key = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>());
        let mut req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nUser-Agent: {USER_AGENT}\r\n",
            url.path_and_query(),
            url.host_header()
        );
        if !self.subprotocols.is_empty() {
            req.push_str(&format!(
                "Sec-WebSocket-Protocol: {}\r\n",
                self.subprotocols.join(", ")
            ));
        }
        if let Some(o) = &self.origin {
            req.push_str(&format!("Origin: {o}\r\n"));
        }
        req.push_str("\r\n");
        let io_err = |e: std::io::Error| Error::Handshake {
            addr: addr.to_owned(),
            cause: e.to_string(),
        };
        stream.write_all(req.as_bytes()).await.map_err(io_err)?;
        stream.flush().await.map_err(io_err)?;

        let mut buf = Vec::with_capacity(1024);
        let (head_len, status, accept, protocol) = loop {
            let mut chunk = [0u8; 2048];
            let n = stream.read(&mut chunk).await.map_err(io_err)?;
            if n == 0 {
                return Err(Error::Handshake {
                    addr: addr.to_owned(),
                    cause: "connection closed before the upgrade answer".into(),
                });
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let get = |name: &str| {
                        resp.headers
                            .iter()
                            .find(|h| h.name.eq_ignore_ascii_case(name))
                            .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
                    };
                    break (
                        len,
                        resp.code.unwrap_or(0),
                        get("sec-websocket-accept"),
                        get("sec-websocket-protocol"),
                    );
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                Ok(httparse::Status::Partial) => {
                    return Err(Error::Handshake {
                        addr: addr.to_owned(),
                        cause: format!("upgrade answer head larger than {MAX_HEAD} bytes"),
                    })
                }
                Err(e) => {
                    return Err(Error::Handshake {
                        addr: addr.to_owned(),
                        cause: format!("not an HTTP answer: {e}"),
                    })
                }
            }
        };
        if status != 101 {
            let body: String = crate::redact::text(&String::from_utf8_lossy(&buf[head_len..]))
                .chars()
                .filter(|c| !c.is_control())
                .take(200)
                .collect();
            let body = body.trim();
            return Err(Error::Refused {
                addr: addr.to_owned(),
                status,
                detail: if body.is_empty() {
                    String::new()
                } else {
                    format!(": {body}")
                },
            });
        }
        let want = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        if accept.as_deref() != Some(want.as_str()) {
            return Err(Error::Handshake {
                addr: addr.to_owned(),
                cause: "Sec-WebSocket-Accept does not match the key".into(),
            });
        }
        let mode = match protocol.as_deref() {
            None | Some("") => Mode::Binary,
            Some(p) if p.eq_ignore_ascii_case("binary") => Mode::Binary,
            Some(p) if p.eq_ignore_ascii_case("base64") => {
                tracing::info!("the gateway chose the base64 subprotocol; decoding text frames");
                Mode::Base64
            }
            Some(p) => {
                return Err(Error::Handshake {
                    addr: addr.to_owned(),
                    cause: format!(
                        "unsupported subprotocol {p:?} (expected none, binary or base64)"
                    ),
                })
            }
        };
        if protocol.is_none() && !self.subprotocols.is_empty() {
            tracing::debug!("the gateway answered no subprotocol; using binary frames");
        }
        let leftover = bytes::Bytes::from(buf.split_off(head_len));
        Ok(Upstream {
            io: WsIo::new(stream, Role::Client, mode, leftover),
            subprotocol: protocol,
        })
    }
}
