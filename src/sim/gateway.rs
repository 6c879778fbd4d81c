//! The simulated VNC gateway: TLS with a generated certificate (its CA written to a
//! file), one-time tokens valid 15 s for a running instance, selectable subprotocol and
//! Origin behaviour, then a websocket ⇄ backend relay with drop, stall and idle-cut knobs
//! that a reboot of the instance drops at once.

use std::convert::Infallible;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use futures_util::{SinkExt, StreamExt};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::{SimError, SimState, SubprotocolMode};
use crate::http_util::{self, Body};
use crate::shutdown::Shutdown;

/// A gateway identity: a fresh CA and a leaf for one address and `localhost`.
#[derive(Debug)]
pub struct Identity {
    /// The CA certificate, PEM (what clients trust).
    pub ca_pem: String,
    /// The leaf certificate, PEM.
    pub cert_pem: String,
    /// The leaf's PKCS#8 private key, PEM.
    pub key_pem: String,
    ca_der: rustls_pki_types::CertificateDer<'static>,
    cert_der: rustls_pki_types::CertificateDer<'static>,
    key_der: Vec<u8>,
}

/// Generates a CA and a leaf for `ip` and `localhost` (also used by the benchmarks to
/// put a third-party TLS gateway in the simulator's place).
///
/// # Errors
/// [`SimError::Tls`].
pub fn identity(ip: IpAddr) -> Result<Identity, SimError> {
    let fail = |e: &dyn std::fmt::Display| SimError::Tls(e.to_string());
    let mut ca_params =
        rcgen::CertificateParams::new(Vec::<String>::new()).map_err(|e| fail(&e))?;
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tcvnc simulator CA");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate().map_err(|e| fail(&e))?;
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(|e| fail(&e))?;

    let mut names = vec!["localhost".to_owned()];
    names.push(ip.to_string());
    let mut leaf_params = rcgen::CertificateParams::new(names).map_err(|e| fail(&e))?;
    leaf_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "tcvnc simulator gateway");
    let leaf_key = rcgen::KeyPair::generate().map_err(|e| fail(&e))?;
    let leaf = leaf_params
        .signed_by(&leaf_key, &ca)
        .map_err(|e| fail(&e))?;
    Ok(Identity {
        ca_pem: ca.pem(),
        cert_pem: leaf.pem(),
        key_pem: leaf_key.serialize_pem(),
        ca_der: ca.der().clone(),
        cert_der: leaf.der().clone(),
        key_der: leaf_key.serialize_der(),
    })
}

/// Generates a CA and a leaf for `ip` and `localhost`, writes the CA to `ca_file`.
///
/// # Errors
/// [`SimError::Tls`].
pub fn tls_acceptor(ip: IpAddr, ca_file: &Path) -> Result<TlsAcceptor, SimError> {
    tls_acceptor_with(ip, ca_file, crate::tls::provider(), false)
}

/// The same with a chosen crypto provider and, with `server_order`, the server's order of
/// cipher suites deciding instead of the client's (tests play gateways with other
/// preferences, as OpenSSL servers that put ChaCha20 first).
///
/// # Errors
/// [`SimError::Tls`].
pub fn tls_acceptor_with(
    ip: IpAddr,
    ca_file: &Path,
    provider: Arc<rustls::crypto::CryptoProvider>,
    server_order: bool,
) -> Result<TlsAcceptor, SimError> {
    let fail = |e: &dyn std::fmt::Display| SimError::Tls(e.to_string());
    let id = identity(ip)?;
    std::fs::write(ca_file, &id.ca_pem)
        .map_err(|e| SimError::Tls(format!("cannot write CA file {}: {e}", ca_file.display())))?;
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(id.key_der.into());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| fail(&e))?
        .with_no_client_auth()
        .with_single_cert(vec![id.cert_der, id.ca_der], key)
        .map_err(|e| fail(&e))?;
    config.ignore_client_order = server_order;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Accepts gateway connections until shutdown.
pub async fn serve(
    listener: TcpListener,
    tls: TlsAcceptor,
    state: Arc<SimState>,
    backend: Option<String>,
    shutdown: Shutdown,
) {
    let backend = Arc::new(backend);
    loop {
        let Some((tcp, peer)) = crate::net::accept(&listener, &shutdown, "simulator gateway").await
        else {
            return;
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let state = state.clone();
        let backend = backend.clone();
        let sd = shutdown.clone();
        shutdown.spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "gateway TLS handshake failed");
                    state.count_refused("tls handshake failed");
                    return;
                }
                Err(_) => return,
            };
            let sd2 = sd.clone();
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                let backend = backend.clone();
                let sd = sd2.clone();
                async move { Ok::<_, Infallible>(upgrade(req, state, backend, sd)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                _ = conn => {}
                _ = sd.cancelled() => {}
            }
        });
    }
}

fn refuse(state: &SimState, status: StatusCode, reason: &str) -> Response<Body> {
    state.count_refused(reason);
    http_util::text(status, format!("{reason}\n"))
}

fn upgrade(
    req: Request<Incoming>,
    state: Arc<SimState>,
    backend: Arc<Option<String>>,
    shutdown: Shutdown,
) -> Response<Body> {
    let faults = state.faults();
    if req.uri().path() != "/vnc" {
        return refuse(&state, StatusCode::NOT_FOUND, "unknown path");
    }
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    if let Some(want) = &faults.require_origin {
        if header("origin") != Some(want.as_str()) {
            return refuse(&state, StatusCode::FORBIDDEN, "origin not allowed");
        }
    }
    let is_ws = header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"))
        && header("sec-websocket-version") == Some("13");
    let Some(key) = header("sec-websocket-key").filter(|_| is_ws) else {
        return refuse(&state, StatusCode::BAD_REQUEST, "not a websocket upgrade");
    };
    let offered: Vec<&str> = header("sec-websocket-protocol")
        .map(|p| p.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let answer = match faults.subprotocol {
        SubprotocolMode::EchoBinary => offered.contains(&"binary").then_some("binary"),
        SubprotocolMode::None => None,
        SubprotocolMode::RequireBinary if offered.contains(&"binary") => Some("binary"),
        SubprotocolMode::RequireBinary => {
            return refuse(
                &state,
                StatusCode::BAD_REQUEST,
                "subprotocol binary required",
            )
        }
        SubprotocolMode::Base64 => Some("base64"),
    };
    // The raw query, byte for byte: `s` is base64 and never percent-decoded.
    let token = req
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("s="))
        .unwrap_or_default()
        .to_owned();
    let super::power::Redeemed { instance, boot } = match state.redeem(&token) {
        Ok(r) => r,
        Err(reason) => return refuse(&state, StatusCode::FORBIDDEN, reason),
    };
    let live = LiveUpstream::open(state.clone(), &instance);
    state.emit(super::GatewayEvent::Accepted(instance.clone()));
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let base64_mode = answer == Some("base64");
    let task_state = state.clone();
    shutdown.clone().spawn(async move {
        let _live = live;
        let upgraded = match hyper::upgrade::on(req).await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!(error = %e, "gateway upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(
            TokioIo::new(upgraded),
            Role::Server,
            Some(ws_config()),
        )
        .await;
        let name = format!("tcvnc test pattern ({instance})");
        let ends = Ends {
            shutdown: &shutdown,
            boot: &boot,
            instance: &instance,
        };
        let result: Result<Option<Option<u16>>, String> = match backend.as_ref() {
            Some(addr) => {
                match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
                    Ok(Ok(tcp)) => {
                        let _ = tcp.set_nodelay(true);
                        relay(ws, tcp, &task_state, base64_mode, &ends).await
                    }
                    Ok(Err(e)) => Err(format!("backend {addr}: {e}")),
                    Err(_) => Err(format!("backend {addr}: connect timed out")),
                }
            }
            None => {
                let (ours, theirs) = tokio::io::duplex(256 * 1024);
                let password = task_state.backend_password.clone();
                let recorder = task_state.clone();
                let id = instance.clone();
                // A fresh server per session (frame 0, nothing kept): it ends when the
                // relay drops its end, as a reboot does.
                tokio::spawn(async move {
                    let record = |input| recorder.record_input(&id, input);
                    if let Err(e) = super::rfb_server::serve_recording(
                        theirs,
                        &name,
                        password.as_deref(),
                        record,
                    )
                    .await
                    {
                        tracing::debug!(error = %e, "test pattern session ended");
                    }
                });
                relay(ws, ours, &task_state, base64_mode, &ends).await
            }
        };
        match result {
            Ok(Some(code)) => task_state.emit(super::GatewayEvent::ClosedByClient(code)),
            Ok(None) => task_state.emit(super::GatewayEvent::Ended("backend closed".into())),
            Err(e) => {
                tracing::debug!(error = %e, "gateway relay ended");
                task_state.emit(super::GatewayEvent::Ended(e));
            }
        }
    });
    http_util::switching_protocols(&accept, answer)
}

/// One gateway session in the simulator's counts while it lives.
struct LiveUpstream {
    state: Arc<SimState>,
    instance: String,
}

impl LiveUpstream {
    fn open(state: Arc<SimState>, instance: &str) -> Self {
        {
            let mut stats = state.stats.lock();
            stats.gateway_accepted += 1;
            let n = stats.live_upstreams.entry(instance.to_owned()).or_default();
            *n += 1;
            let n = *n;
            stats.max_live_upstreams = stats.max_live_upstreams.max(n);
        }
        LiveUpstream {
            state,
            instance: instance.to_owned(),
        }
    }
}

impl Drop for LiveUpstream {
    fn drop(&mut self) {
        let mut stats = self.state.stats.lock();
        if let Some(n) = stats.live_upstreams.get_mut(&self.instance) {
            *n = n.saturating_sub(1);
        }
    }
}

const STALL: &str = "stall";
const IDLE: &str = "idle";

/// What ends a relay besides its two ends: the simulator's shutdown, and a reboot of the
/// instance (its boot token).
struct Ends<'a> {
    shutdown: &'a Shutdown,
    boot: &'a CancellationToken,
    instance: &'a str,
}

/// Resolves at `deadline`, never without one.
async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Frame and message limits of the simulated gateway.
pub(crate) fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_frame_size(Some(16 << 20))
        .max_message_size(Some(64 << 20))
}

async fn relay<W, B>(
    ws: WebSocketStream<W>,
    backend: B,
    state: &SimState,
    base64_mode: bool,
    ends: &Ends<'_>,
) -> Result<Option<Option<u16>>, String>
where
    W: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let faults = state.faults();
    let (mut br, mut bw) = tokio::io::split(backend);
    let (mut sink, mut stream) = ws.split();
    let drop_timer = async {
        match faults.drop_after {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let idle_deadline = || faults.idle_cut.map(|d| tokio::time::Instant::now() + d);
    // Client → backend and backend → client run concurrently: neither blocks the other.
    let to_backend = async {
        let mut idle_at = idle_deadline();
        loop {
            // Cancel-safe: a stream's next() loses nothing when the deadline wins.
            let next = tokio::select! {
                m = stream.next() => m,
                () = sleep_until(idle_at) => return Err(IDLE.to_owned()),
            };
            if matches!(next, Some(Ok(Message::Binary(_) | Message::Text(_)))) {
                // Only data frames are activity; pings, pongs are not.
                idle_at = idle_deadline();
            }
            match next {
                Some(Ok(Message::Binary(b))) => {
                    bw.write_all(&b).await.map_err(|e| e.to_string())?
                }
                Some(Ok(Message::Text(t))) if base64_mode => {
                    let b = base64::engine::general_purpose::STANDARD
                        .decode(t.as_str())
                        .map_err(|e| e.to_string())?;
                    bw.write_all(&b).await.map_err(|e| e.to_string())?;
                }
                Some(Ok(Message::Close(frame))) => {
                    let _ = bw.shutdown().await;
                    return Ok(Some(frame.map(|f| u16::from(f.code))));
                }
                None => {
                    let _ = bw.shutdown().await;
                    return Ok(Some(None));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e.to_string()),
            }
        }
    };
    let to_client = async {
        let mut buf = bytes::BytesMut::new();
        let mut sent: u64 = 0;
        let read_max = faults.frame_max.unwrap_or(64 * 1024).clamp(1, 64 * 1024);
        loop {
            buf.reserve(read_max);
            let n = br
                .read_buf(&mut bytes::BufMut::limit(&mut buf, read_max))
                .await
                .map_err(|e| e.to_string())?;
            if n == 0 {
                return Ok(None);
            }
            let mut n = n;
            if let Some(limit) = faults.drop_after_bytes.or(faults.stall_after_bytes) {
                let left = limit.saturating_sub(sent);
                n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
            }
            if n > 0 {
                // Handed over without a copy; bytes past a knob's limit are dropped.
                let data = buf.split().freeze().slice(..n);
                let msg = if base64_mode {
                    Message::text(base64::engine::general_purpose::STANDARD.encode(&data))
                } else {
                    Message::Binary(data)
                };
                sink.send(msg).await.map_err(|e| e.to_string())?;
                sent += n as u64;
            }
            if faults.stall_after_bytes.is_some_and(|l| sent >= l) {
                return Err(STALL.to_owned());
            }
            if faults.drop_after_bytes.is_some_and(|l| sent >= l) {
                // An abrupt drop: no close frame, as when a gateway dies.
                return Err("dropped by drop_after_bytes knob".to_owned());
            }
        }
    };
    let result = tokio::select! {
        _ = ends.shutdown.cancelled() => Ok(None),
        // Abrupt, as when the backend dies: no close frame.
        _ = ends.boot.cancelled() => Err(format!("dropped by reboot of {}", ends.instance)),
        _ = drop_timer => Err("dropped by drop_after knob".into()),
        r = to_backend => r,
        r = to_client => r,
    };
    if result.as_ref().err().map(String::as_str) == Some(STALL) {
        // Hold the connection without reading or writing anything, pings included: the
        // client's keepalive must notice.
        tokio::select! {
            _ = ends.shutdown.cancelled() => {}
            _ = ends.boot.cancelled() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(300)) => {}
        }
        drop((sink, stream));
        return Err("stalled by stall_after_bytes knob".into());
    }
    if result.as_ref().err().map(String::as_str) == Some(IDLE) {
        // A normal close with a reason, as a gateway's idle timer sends, then the drop.
        if let Ok(mut ws) = sink.reunite(stream) {
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "idle timeout".into(),
            };
            let _ = tokio::time::timeout(Duration::from_secs(5), ws.close(Some(frame))).await;
        }
        let idle = faults.idle_cut.unwrap_or_default();
        return Err(format!(
            "idle cut: no data from the client for {}",
            humantime::format_duration(idle)
        ));
    }
    if matches!(result, Ok(None)) {
        if let Ok(mut ws) = sink.reunite(stream) {
            let _ = ws.close(None).await;
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Faults, SimOptions};
    use tokio::time::Instant;

    /// The idle cut counts data frames only: a data frame at 20 s moves the cut from 30 s
    /// to 50 s, a ping at 40 s does not; at 50 s the client reads close 1000 "idle
    /// timeout" (its ping answered first) and the relay ends naming the cut.
    #[tokio::test(start_paused = true)]
    async fn idle_cut_counts_data_frames_only() {
        let state = SimState::build(&SimOptions::default(), Shutdown::new());
        state.set_faults(Faults {
            idle_cut: Some(Duration::from_secs(30)),
            ..Faults::default()
        });
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (ours, mut theirs) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, Some(ws_config()));
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let server = server.await;
        let (shutdown, boot) = (Shutdown::new(), CancellationToken::new());
        let ends = Ends {
            shutdown: &shutdown,
            boot: &boot,
            instance: "ins-demo0001",
        };
        let t0 = Instant::now();
        let viewer = async {
            tokio::time::sleep(Duration::from_secs(20)).await;
            client
                .send(Message::binary(vec![1, 2, 3]))
                .await
                .expect("data");
            tokio::time::sleep(Duration::from_secs(20)).await;
            client
                .send(Message::Ping(vec![9].into()))
                .await
                .expect("ping");
            loop {
                match client.next().await {
                    Some(Ok(Message::Pong(_))) => {}
                    Some(Ok(Message::Close(f))) => return (f, t0.elapsed()),
                    other => panic!("expected a close frame, got {other:?}"),
                }
            }
        };
        let (result, (frame, at)) = tokio::join!(relay(server, ours, &state, false, &ends), viewer);
        assert_eq!(
            result,
            Err("idle cut: no data from the client for 30s".to_owned())
        );
        let frame = frame.expect("a close frame with a code");
        assert_eq!(u16::from(frame.code), 1000);
        assert_eq!(frame.reason.as_str(), "idle timeout");
        assert_eq!(at, Duration::from_secs(50));
        let mut got = [0u8; 3];
        theirs.read_exact(&mut got).await.expect("relayed");
        assert_eq!(got, [1, 2, 3]);
    }

    /// A reboot (the boot token cancelled) drops the session at once, with no close
    /// frame, and the relay names the reboot.
    #[tokio::test(start_paused = true)]
    async fn reboot_drops_without_a_close_frame() {
        let state = SimState::build(&SimOptions::default(), Shutdown::new());
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (ours, _theirs) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, Some(ws_config()));
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let server = server.await;
        let (shutdown, boot) = (Shutdown::new(), CancellationToken::new());
        let ends = Ends {
            shutdown: &shutdown,
            boot: &boot,
            instance: "ins-demo0001",
        };
        boot.cancel();
        let result = relay(server, ours, &state, false, &ends).await;
        assert_eq!(result, Err("dropped by reboot of ins-demo0001".to_owned()));
        match client.next().await {
            None | Some(Err(_)) => {}
            other => panic!("expected an abrupt end, got {other:?}"),
        }
    }
}
