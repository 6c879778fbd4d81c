//! Dialing the one-time `wss://` console URL: TCP (nodelay, timeout), TLS (rustls,
//! webpki roots plus `ca_file`, always verified), and a websocket upgrade sent by hand so
//! that no subprotocol in the answer is accepted (binary frames) instead of burning the
//! URL on a strict check. A 101 without `Upgrade: websocket` / `Connection: Upgrade`, with
//! an extension, or with a subprotocol tcvnc did not offer is refused, naming what the
//! gateway answered. Origin and User-Agent are set. A `ws://` URL is dialed as plain
//! TCP (tests and the conformance harness on loopback), through the same handshake.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::either::Either;

use crate::cloud::VncUrl;
use crate::tls::stream::TlsClient;
use crate::ws::{Mode, Role, WsIo};

/// The `User-Agent` tcvnc sends.
pub(crate) const USER_AGENT: &str = concat!("tcvnc/", env!("CARGO_PKG_VERSION"));
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

/// TCP or TLS, whichever the URL asked for (`ws://` for tests and private gateways,
/// `wss://` for the cloud's); the TLS stream is boxed so both arms are small.
pub(crate) type MaybeTls = Either<TcpStream, Box<TlsClient>>;

/// The headers of a 101 answer that the handshake checks (RFC 6455 §4.1), each list
/// holding every value the gateway sent.
#[derive(Debug, Default)]
struct Answer {
    accept: Vec<String>,
    protocol: Vec<String>,
    upgrade: Vec<String>,
    connection: Vec<String>,
    extensions: Vec<String>,
}

impl Answer {
    fn from_headers(headers: &[httparse::Header<'_>]) -> Answer {
        let mut a = Answer::default();
        for h in headers {
            let list = match h.name.to_ascii_lowercase().as_str() {
                "sec-websocket-accept" => &mut a.accept,
                "sec-websocket-protocol" => &mut a.protocol,
                "upgrade" => &mut a.upgrade,
                "connection" => &mut a.connection,
                "sec-websocket-extensions" => &mut a.extensions,
                _ => continue,
            };
            // What a gateway answers is shown in errors: printable and short.
            let v: String = String::from_utf8_lossy(h.value)
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect();
            list.push(v.trim().to_owned());
        }
        a
    }

    /// Checks the answer against our `key` and `offered` subprotocols: the data mode and
    /// the subprotocol chosen (none is accepted; one we did not offer is not), or what
    /// was wrong, naming what the gateway answered.
    fn check(&self, key: &str, offered: &[String]) -> Result<(Mode, Option<String>), String> {
        let has_token = |values: &[String], token: &str| {
            values
                .iter()
                .flat_map(|v| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        if !has_token(&self.upgrade, "websocket") {
            return Err(format!(
                "the 101 answer lacks Upgrade: websocket (it sent {})",
                shown(&self.upgrade)
            ));
        }
        if !has_token(&self.connection, "upgrade") {
            return Err(format!(
                "the 101 answer lacks Connection: Upgrade (it sent {})",
                shown(&self.connection)
            ));
        }
        let want = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        if self.accept.len() != 1 || self.accept[0] != want {
            return Err(format!(
                "Sec-WebSocket-Accept does not match the key (it sent {})",
                shown(&self.accept)
            ));
        }
        if !self.extensions.is_empty() {
            return Err(format!(
                "the gateway chose the extension {} which tcvnc did not offer",
                shown(&self.extensions)
            ));
        }
        let protocol = match self.protocol.as_slice() {
            [] => None,
            [p] if p.is_empty() => None,
            [p] if offered.iter().any(|o| o == p) => Some(p.clone()),
            [p] if !p.contains(',') => {
                return Err(format!(
                "the gateway chose the subprotocol {p:?}, which tcvnc did not offer (offered: {})",
                offered.join(", ")
            ))
            }
            more => {
                return Err(format!(
                    "the gateway chose more than one subprotocol ({})",
                    shown(more)
                ))
            }
        };
        let mode = match protocol.as_deref() {
            None | Some("binary") => Mode::Binary,
            Some("base64") => Mode::Base64,
            Some(p) => {
                return Err(format!(
                    "unsupported subprotocol {p:?} (tcvnc speaks binary or base64)"
                ))
            }
        };
        Ok((mode, protocol))
    }
}

/// Header values as the gateway sent them, for an error message.
fn shown(values: &[String]) -> String {
    if values.is_empty() {
        "nothing".into()
    } else {
        values
            .iter()
            .map(|v| format!("{v:?}"))
            .collect::<Vec<_>>()
            .join(", ")
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
    tls: Arc<rustls::ClientConfig>,
    /// Tried first when set: AES-GCM suites only (see [`crate::tls::client_config_aes_only`]).
    tls_aes_only: Option<Arc<rustls::ClientConfig>>,
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
            tls,
            tls_aes_only: None,
            origin,
            subprotocols,
            connect_timeout,
        }
    }

    /// Offers `aes_only` first, and every suite only to a gateway that refuses it for
    /// want of a common cipher suite (before the URL is sent: nothing is spent).
    #[must_use]
    pub fn prefer(mut self, aes_only: Option<Arc<rustls::ClientConfig>>) -> Self {
        self.tls_aes_only = aes_only;
        self
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

    async fn tcp(&self, url: &VncUrl, addr: &str) -> Result<TcpStream, Error> {
        let tcp = TcpStream::connect((url.host(), url.port()))
            .await
            .map_err(|e| Error::Connect {
                addr: addr.to_owned(),
                cause: e.to_string(),
            })?;
        crate::net::configure_socket(&tcp);
        Ok(tcp)
    }

    async fn dial_inner(&self, url: &VncUrl, addr: &str) -> Result<Upstream, Error> {
        let tcp = self.tcp(url, addr).await?;
        let mut stream = if url.is_tls() {
            let name =
                rustls_pki_types::ServerName::try_from(url.host().to_owned()).map_err(|e| {
                    Error::Tls {
                        addr: addr.to_owned(),
                        cause: format!("invalid server name: {e}"),
                        hint: "",
                    }
                })?;
            let tls = match &self.tls_aes_only {
                Some(aes_only) => {
                    match TlsClient::connect(aes_only.clone(), name.clone(), tcp).await {
                        Err(e) if crate::tls::stream::no_common_suite(&e) => {
                            tracing::info!(
                                gateway = %addr,
                                "the console gateway has no AES-GCM cipher suite; retrying with ChaCha20-Poly1305"
                            );
                            let tcp = self.tcp(url, addr).await?;
                            TlsClient::connect(self.tls.clone(), name, tcp).await
                        }
                        other => other,
                    }
                }
                None => TlsClient::connect(self.tls.clone(), name, tcp).await,
            }
            .map_err(|e| {
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
            Either::Right(Box::new(tls))
        } else {
            Either::Left(tcp)
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
        let (head_len, status, answer) = loop {
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
                    break (
                        len,
                        resp.code.unwrap_or(0),
                        Answer::from_headers(resp.headers),
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
        let (mode, protocol) =
            answer
                .check(&key, &self.subprotocols)
                .map_err(|cause| Error::Handshake {
                    addr: addr.to_owned(),
                    cause,
                })?;
        if mode == Mode::Base64 {
            tracing::info!("the gateway chose the base64 subprotocol; decoding text frames");
        }
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

#[cfg(all(test, feature = "sim"))]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A TLS gateway offering `suites` only, answering one websocket upgrade; reports the
    /// suite each handshake settled on.
    async fn gateway(
        suites: &[rustls::SupportedCipherSuite],
        dir: &std::path::Path,
    ) -> (
        std::net::SocketAddr,
        tokio::sync::mpsc::UnboundedReceiver<String>,
    ) {
        let mut p = (*crate::tls::provider()).clone();
        p.cipher_suites = suites.to_vec();
        let acceptor = crate::sim::gateway::tls_acceptor_with(
            [127, 0, 0, 1].into(),
            &dir.join("ca.pem"),
            Arc::new(p),
            true,
        )
        .expect("acceptor");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    continue;
                };
                let suite = tls.get_ref().1.negotiated_cipher_suite();
                let _ = tx.send(format!("{:?}", suite.map(|s| s.suite())));
                let mut head = Vec::new();
                let mut b = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tls.read(&mut b).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(b[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let key = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                let accept =
                    tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
                let answer = format!("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n");
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.flush().await;
            }
        });
        (addr, rx)
    }

    fn dialer(dir: &std::path::Path) -> Dialer {
        let ca = dir.join("ca.pem");
        let all = crate::tls::client_config(Some(&ca)).expect("config");
        let aes_only = crate::tls::client_config_aes_only(Some(&ca)).expect("config");
        Dialer::new(all, None, Vec::new(), Duration::from_secs(5)).prefer(aes_only)
    }

    fn url(addr: std::net::SocketAddr) -> VncUrl {
        VncUrl::parse(&format!("wss://{addr}/vnc?s=t0ken&password=")).expect("url")
    }

    #[tokio::test]
    async fn a_gateway_preferring_chacha_gets_aes_gcm_where_the_cpu_has_aes() {
        use rustls::crypto::ring::cipher_suite as cs;
        let dir = tempfile::tempdir().expect("tempdir");
        // ChaCha20 first, as OpenSSL's "intermediate" servers order their own suites.
        let (addr, mut suites) = gateway(
            &[
                cs::TLS13_CHACHA20_POLY1305_SHA256,
                cs::TLS13_AES_128_GCM_SHA256,
            ],
            dir.path(),
        )
        .await;
        dialer(dir.path()).dial(&url(addr)).await.expect("dial");
        let chosen = suites.recv().await.expect("a handshake");
        if crate::tls::hardware_aes() {
            assert!(chosen.contains("AES_128_GCM"), "{chosen}");
        } else {
            assert!(chosen.contains("CHACHA20"), "{chosen}");
        }
    }

    #[tokio::test]
    async fn a_gateway_with_chacha_only_is_retried_with_every_suite() {
        use rustls::crypto::ring::cipher_suite as cs;
        let dir = tempfile::tempdir().expect("tempdir");
        let (addr, mut suites) = gateway(&[cs::TLS13_CHACHA20_POLY1305_SHA256], dir.path()).await;
        dialer(dir.path())
            .dial(&url(addr))
            .await
            .expect("dial after the retry");
        // One handshake completed (the refused offer never completes one), with ChaCha20.
        let chosen = suites.recv().await.expect("a handshake");
        assert!(chosen.contains("CHACHA20"), "{chosen}");
        assert!(suites.try_recv().is_err(), "one completed handshake");
    }
}
