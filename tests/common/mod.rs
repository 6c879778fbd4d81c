//! Test harness: a simulator on port 0, API clients pointed at it, and helpers.
#![allow(dead_code, missing_docs)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tcvnc::budget::ApiLimiter;
use tcvnc::cloud::credentials::{ChainOptions, Credential, Provider};
use tcvnc::cloud::{ClientOptions, CloudClient, EndpointPolicy, Product};
use tcvnc::redact::Secret;
use tcvnc::sim::{SimHandle, SimOptions, DEMO_SECRET_ID, DEMO_SECRET_KEY};

pub mod redis;

/// Every test gets this long before it is failed.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn sim() -> SimHandle {
    SimHandle::start(SimOptions::default())
        .await
        .expect("simulator starts")
}

pub async fn sim_with(opts: SimOptions) -> SimHandle {
    SimHandle::start(opts).await.expect("simulator starts")
}

/// A simulator whose only instances are `n` running ones named `<prefix>0001`…, and
/// their ids (`prefix` is `ins-` and four letters, so the ids are valid).
pub async fn sim_with_running(prefix: &str, n: usize) -> (SimHandle, Vec<String>) {
    let ids: Vec<String> = (1..=n).map(|i| format!("{prefix}{i:04}")).collect();
    let sim = sim_with(SimOptions {
        instances: ids
            .iter()
            .map(|i| tcvnc::sim::SimInstance::running(i))
            .collect(),
        ..Default::default()
    })
    .await;
    (sim, ids)
}

pub fn tls() -> Arc<rustls::ClientConfig> {
    tcvnc::tls::client_config(None).expect("tls config")
}

pub fn chain_options(sim: &SimHandle) -> ChainOptions {
    let mut o = ChainOptions::new(tls());
    o.metadata_endpoint = sim.api_url.clone();
    o.sts_endpoint = sim.api_url.clone();
    o.etc_profile = "/nonexistent/tcvnc-test/credentials".into();
    o
}

pub fn demo_provider(sim: &SimHandle) -> Arc<Provider> {
    fixed_provider(sim, DEMO_SECRET_ID, DEMO_SECRET_KEY)
}

pub fn fixed_provider(sim: &SimHandle, id: &str, key: &str) -> Arc<Provider> {
    Arc::new(
        Provider::fixed(
            Credential::fixed(id, Secret::new(key), None, "test"),
            chain_options(sim),
        )
        .expect("provider"),
    )
}

pub fn fast_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        max_retries: 3,
        backoff: Duration::from_millis(1),
        ..ClientOptions::default()
    }
}

pub fn client_with(
    sim: &SimHandle,
    product: Product,
    provider: Arc<Provider>,
    rate: u32,
) -> CloudClient {
    let endpoints = EndpointPolicy {
        override_endpoint: Some(tcvnc::cloud::parse_endpoint(&sim.api_url).expect("endpoint")),
        ..EndpointPolicy::default()
    };
    CloudClient::new(
        product,
        endpoints,
        provider,
        Arc::new(ApiLimiter::new(NonZeroU32::new(rate).expect("nonzero"))),
        tls(),
        fast_options(),
    )
    .expect("client")
}

pub fn client(sim: &SimHandle) -> CloudClient {
    client_with(sim, Product::Cvm, demo_provider(sim), 10)
}

/// Runs `fut` with the test timeout (and, with `TCVNC_TRACE_ALL=1`, every log line at
/// trace level on stderr).
pub async fn within<F: std::future::Future>(fut: F) -> F::Output {
    if trace_all() {
        captured_logs(tracing::Level::TRACE);
    }
    tokio::time::timeout(TEST_TIMEOUT, fut)
        .await
        .expect("test timed out")
}

/// True when end-to-end tests should run (`TCVNC_E2E=1`); otherwise says loudly that
/// `name` was skipped.
pub fn e2e(name: &str) -> bool {
    if std::env::var("TCVNC_E2E").as_deref() == Ok("1") {
        true
    } else {
        // Straight to the process's stderr, past the test harness's capture: a skip is loud.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED end-to-end test {name}: set TCVNC_E2E=1 (bash .ci/run does) to run it"
        );
        false
    }
}

/// The venv's Python (`TCVNC_PYTHON`, else `.venv/bin/python`); a missing one fails the test.
pub fn python() -> std::path::PathBuf {
    let p = std::env::var_os("TCVNC_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
        });
    assert!(
        p.exists(),
        "end-to-end tests need {} (scripts/e2e-setup creates it)",
        p.display()
    );
    p
}

/// A file under tests/e2e.
/// Mints one URL the way `tcvnc url` does (no budget: one URL, plus one retry of an
/// unknown outcome), returning the cloud's error when there is none.
pub async fn mint(
    c: &tcvnc::cloud::CloudClient,
    instance: &str,
    region: &str,
) -> Result<tcvnc::cloud::Minted, tcvnc::cloud::Error> {
    match tcvnc::mint::mint(c, None, instance, region).await {
        Ok(got) => Ok(got.minted),
        Err(tcvnc::mint::MintError::Cloud(e)) => Err(e),
        Err(other) => panic!("no budget was given, yet: {other}"),
    }
}

pub fn e2e_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e")
        .join(name)
}

// ---- the daemon under test ----

use std::collections::HashMap;
use std::net::SocketAddr;

use tcvnc::app::App;
use tcvnc::listen::Listeners;
use tokio::net::TcpStream;

/// Sections of a test config; each string is the body of that section.
#[derive(Default, Clone)]
pub struct Opts {
    pub cloud: &'static str,
    pub budget: &'static str,
    pub session: &'static str,
    pub upstream: &'static str,
    pub http: Option<String>,
    pub targets: String,
}

impl Opts {
    /// One target per instance, each with its own TCP listener, and the HTTP listener.
    pub fn targets(instances: &[&str]) -> Opts {
        Opts {
            http: Some(String::new()),
            targets: instances
                .iter()
                .map(|i| format!("[[target]]\ninstance = \"{i}\"\nlisten = \"127.0.0.1:0\"\n"))
                .collect(),
            ..Opts::default()
        }
    }
}

pub fn config_text(sim: &SimHandle, o: &Opts) -> String {
    let mut t = format!(
        "[cloud]\nregion = \"ap-guangzhou\"\nendpoint = \"{}\"\n{}\n[credentials]\nsecret_id = \"{DEMO_SECRET_ID}\"\nsecret_key = \"{DEMO_SECRET_KEY}\"\n[budget]\n{}\n[upstream]\nca_file = \"{}\"\n{}\n[session]\n{}\n",
        sim.api_url,
        o.cloud,
        o.budget,
        sim.ca_file.display(),
        o.upstream,
        o.session
    );
    if let Some(h) = &o.http {
        t.push_str(&format!("[http]\nlisten = \"127.0.0.1:0\"\n{h}\n"));
    }
    t.push_str(&o.targets);
    t
}

pub struct TestDaemon {
    pub app: std::sync::Arc<App>,
    pub tcp: HashMap<String, SocketAddr>,
    pub http: Option<SocketAddr>,
    trigger: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<bool>>,
}

impl TestDaemon {
    pub async fn start(sim: &SimHandle, o: &Opts) -> TestDaemon {
        Self::from_text(&config_text(sim, o)).await
    }

    /// A daemon on port 0 from config text (for configs `Opts` cannot express).
    pub async fn from_text(text: &str) -> TestDaemon {
        let cfg = tcvnc::config::Config::parse(text, "test.toml", std::path::Path::new("."))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        let app = tcvnc::app::build(cfg, &tcvnc::cloud::credentials::Env::default())
            .await
            .expect("app");
        let listeners = Listeners::bind(&app.config()).await.expect("bind");
        let tcp = listeners
            .tcp
            .iter()
            .map(|(i, l)| (i.clone(), l.local_addr().expect("addr")))
            .collect();
        let http = listeners
            .http
            .as_ref()
            .map(|l| l.local_addr().expect("addr"));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(tcvnc::daemon::run(app.clone(), listeners, async move {
            let _ = rx.await;
        }));
        TestDaemon {
            app,
            tcp,
            http,
            trigger: Some(tx),
            task: Some(task),
        }
    }

    pub fn tcp(&self, instance: &str) -> SocketAddr {
        self.tcp[instance]
    }

    /// Triggers shutdown and returns whether every session drained in time.
    pub async fn stop(&mut self) -> bool {
        if let Some(t) = self.trigger.take() {
            let _ = t.send(());
        }
        match self.task.take() {
            Some(t) => t.await.expect("run task"),
            None => true,
        }
    }
}

// ---- clients ----

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tcvnc::client::ClientIo;
use tcvnc::rfb::handshake::RfbIo;
use tcvnc::ws::Recv;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

pub type TcpClient = ClientIo<TcpStream>;

pub async fn tcp_client(addr: SocketAddr) -> TcpClient {
    ClientIo::Tcp(TcpStream::connect(addr).await.expect("connect"))
}

/// A TCP client whose source address is `from` (any of 127.0.0.0/8): another "host".
pub async fn tcp_client_from(from: [u8; 4], addr: SocketAddr) -> TcpClient {
    ClientIo::Tcp(tcp_stream_from(from, addr).await)
}

/// A TCP stream from source address `from` (127.0.0.0/8).
pub async fn tcp_stream_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::from((from, 0))).expect("bind source");
    sock.connect(addr).await.expect("connect")
}

/// A viewer's websocket on tungstenite: an implementation independent of tcvnc's own
/// framing, so the two check each other.
#[derive(Debug)]
pub struct WsClient {
    ws: WebSocketStream<TcpStream>,
    pending: Bytes,
}

impl WsClient {
    /// The next bytes (pings are answered by tungstenite on the next read or write).
    pub async fn recv(&mut self) -> Recv {
        if !self.pending.is_empty() {
            return Recv::Data(std::mem::take(&mut self.pending));
        }
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Binary(b))) if !b.is_empty() => return Recv::Data(b),
                Some(Ok(Message::Close(f))) => {
                    return Recv::Closed(f.map(|f| (u16::from(f.code), f.reason.to_string())))
                }
                Some(Ok(Message::Text(_))) => return Recv::Failed("text message".into()),
                Some(Ok(_)) => {}
                Some(Err(tokio_tungstenite::tungstenite::Error::ConnectionClosed)) | None => {
                    return Recv::Closed(None)
                }
                Some(Err(e)) => return Recv::Failed(e.to_string()),
            }
        }
    }

    /// Sends one binary message.
    pub async fn send(&mut self, data: Bytes) -> Result<(), tokio_tungstenite::tungstenite::Error> {
        self.ws.send(Message::Binary(data)).await
    }

    /// Reads exactly `buf.len()` bytes across messages.
    pub async fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.recv().await {
                Recv::Data(d) => self.pending = tcvnc::ws::fill_from(buf, &mut filled, d),
                Recv::Closed(c) => {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("websocket closed {c:?}"),
                    ))
                }
                Recv::Failed(e) => return Err(std::io::Error::other(e)),
            }
        }
        Ok(())
    }

    /// Sends a close frame.
    pub async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        let _ = self.ws.send(Message::Close(Some(frame))).await;
    }

    /// The underlying tungstenite stream, for tests that send raw frames.
    pub fn raw(&mut self) -> &mut WebSocketStream<TcpStream> {
        &mut self.ws
    }
}

impl RfbIo for WsClient {
    async fn read_exact<'a>(&'a mut self, buf: &'a mut [u8]) -> std::io::Result<()> {
        WsClient::read_exact(self, buf).await
    }
    async fn write_all<'a>(&'a mut self, data: &'a [u8]) -> std::io::Result<()> {
        self.send(Bytes::copy_from_slice(data))
            .await
            .map_err(std::io::Error::other)
    }
}

/// Opens `ws://addr/path` with optional Origin and subprotocols.
pub async fn ws_connect(
    addr: SocketAddr,
    path: &str,
    origin: Option<&str>,
    protocols: Option<&str>,
) -> Result<(WsClient, Option<String>), tokio_tungstenite::tungstenite::Error> {
    let mut req = format!("ws://{addr}{path}").into_client_request()?;
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", o.parse().expect("header"));
    }
    if let Some(p) = protocols {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().expect("header"));
    }
    let tcp = TcpStream::connect(addr).await.expect("connect");
    let (ws, resp) =
        tokio_tungstenite::client_async_with_config(req, tcp, Some(tcvnc::ws::config())).await?;
    let proto = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok((
        WsClient {
            ws,
            pending: Bytes::new(),
        },
        proto,
    ))
}

/// A raw RFB client: `version` is what it claims; returns the desktop name, or the
/// failure reason the server sent (`"<no reason>"` when the protocol carries none).
pub async fn rfb_handshake<C: RfbIo>(
    c: &mut C,
    version: &[u8; 12],
    password: Option<&str>,
) -> Result<String, String> {
    let io = |e: std::io::Error| format!("io: {e}");
    let mut v = [0u8; 12];
    c.read_exact(&mut v).await.map_err(io)?;
    if &v == b"RFB 003.003\n" {
        // A refusal at admission: tcvnc picks 3.3 and the invalid security type.
        c.write_all(V33).await.map_err(io)?;
        let mut t = [0u8; 4];
        c.read_exact(&mut t).await.map_err(io)?;
        assert_eq!(t, [0; 4], "a 3.3 greeting only ever refuses");
        let mut len = [0u8; 4];
        c.read_exact(&mut len).await.map_err(io)?;
        let mut r = vec![0u8; u32::from_be_bytes(len) as usize];
        c.read_exact(&mut r).await.map_err(io)?;
        return Err(String::from_utf8_lossy(&r).into_owned());
    }
    assert_eq!(&v, b"RFB 003.008\n", "tcvnc speaks 3.8 first");
    c.write_all(version).await.map_err(io)?;
    // Normalise as tcvnc does: 3.3 (and odd 3.x), 3.7, else 3.8 (3.889, 4.x, 5.x).
    let minor: &[u8] = match (&version[4..7], &version[8..11]) {
        (b"003", b"007") => b"007",
        (b"003", b"008") | (b"003", b"889") => b"008",
        (b"003", _) => b"003",
        _ => b"008",
    };
    async fn reason<C: RfbIo>(c: &mut C) -> Result<String, String> {
        let mut len = [0u8; 4];
        c.read_exact(&mut len)
            .await
            .map_err(|e| format!("io: {e}"))?;
        let mut r = vec![0u8; u32::from_be_bytes(len) as usize];
        c.read_exact(&mut r).await.map_err(|e| format!("io: {e}"))?;
        Ok(String::from_utf8_lossy(&r).into_owned())
    }
    let chosen = if minor == b"003" {
        let mut t = [0u8; 4];
        c.read_exact(&mut t).await.map_err(io)?;
        match u32::from_be_bytes(t) {
            0 => return Err(reason(c).await?),
            n => n as u8,
        }
    } else {
        let mut n = [0u8];
        c.read_exact(&mut n).await.map_err(io)?;
        if n[0] == 0 {
            return Err(reason(c).await?);
        }
        let mut types = vec![0u8; n[0] as usize];
        c.read_exact(&mut types).await.map_err(io)?;
        let pick = if types.contains(&1) { 1 } else { 2 };
        c.write_all(&[pick]).await.map_err(io)?;
        pick
    };
    if chosen == 2 {
        let mut challenge = [0u8; 16];
        c.read_exact(&mut challenge).await.map_err(io)?;
        let pw = password.unwrap_or("");
        c.write_all(&tcvnc::rfb::auth::response(pw.as_bytes(), &challenge))
            .await
            .map_err(io)?;
    }
    if chosen == 2 || minor == b"008" {
        let mut r = [0u8; 4];
        c.read_exact(&mut r).await.map_err(io)?;
        if u32::from_be_bytes(r) != 0 {
            return Err(if minor == b"008" {
                reason(c).await?
            } else {
                "<no reason>".into()
            });
        }
    }
    c.write_all(&[1]).await.map_err(io)?;
    let mut head = [0u8; 24];
    c.read_exact(&mut head).await.map_err(io)?;
    let len = u32::from_be_bytes([head[20], head[21], head[22], head[23]]) as usize;
    let mut name = vec![0u8; len];
    c.read_exact(&mut name).await.map_err(io)?;
    Ok(String::from_utf8_lossy(&name).into_owned())
}

pub const V33: &[u8; 12] = b"RFB 003.003\n";
pub const V37: &[u8; 12] = b"RFB 003.007\n";
pub const V38: &[u8; 12] = b"RFB 003.008\n";

/// An echo server on loopback (a non-RFB backend for transparent targets).
pub async fn echo_backend() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Waits for the next gateway event matching `pred`.
pub async fn wait_event(
    rx: &mut tokio::sync::broadcast::Receiver<tcvnc::sim::GatewayEvent>,
    pred: impl Fn(&tcvnc::sim::GatewayEvent) -> bool,
) -> tcvnc::sim::GatewayEvent {
    within(async {
        loop {
            let e = rx.recv().await.expect("event");
            if pred(&e) {
                return e;
            }
        }
    })
    .await
}

// ---- paused time and raw API calls ----

/// Runs `body` on a current-thread runtime with paused time that moves only through
/// `tokio::time::advance`: a blocking task is held for the whole test, which keeps tokio
/// from auto-advancing while real loopback I/O to the fakes is in flight. A test that
/// hangs fails after 60 real seconds.
pub fn manual_time<F, Fut>(body: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    if std::env::var("TCVNC_TRACE_ALL").as_deref() == Ok("1") {
        captured_logs(tracing::Level::TRACE);
    }
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let runner = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let (hold_tx, hold_rx) = std::sync::mpsc::channel::<()>();
            let holder = tokio::task::spawn_blocking(move || {
                let _ = hold_rx.recv();
            });
            body().await;
            drop(hold_tx);
            holder.await.expect("holder");
        });
        let _ = done_tx.send(());
    });
    match done_rx.recv_timeout(TEST_TIMEOUT) {
        Ok(()) => runner.join().expect("test thread"),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match runner.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => panic!("test thread ended without finishing"),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("test timed out"),
    }
}

/// A reqwest client on tcvnc's TLS config (the public roots), for the simulator's API and
/// the daemon's HTTP listener.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured((*tls()).clone())
        .build()
        .expect("client")
}

/// One signed API call to the simulator with the demo key; the whole answer.
pub async fn signed_call(api: &str, action: &str, body: &serde_json::Value) -> serde_json::Value {
    let host = api.strip_prefix("http://").expect("http");
    let payload = body.to_string();
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let headers = [("content-type", "application/json"), ("host", host)];
    let sig = tcvnc::cloud::sign::sign(
        DEMO_SECRET_KEY,
        &tcvnc::cloud::sign::Request {
            method: "POST",
            uri: "/",
            query: "",
            headers: &headers,
            payload: payload.as_bytes(),
            service: "cvm",
            timestamp: ts,
        },
    );
    http_client()
        .post(format!("{api}/"))
        .header("content-type", "application/json")
        .header(
            "authorization",
            format!(
                "TC3-HMAC-SHA256 Credential={DEMO_SECRET_ID}/{}/cvm/tc3_request, SignedHeaders={}, Signature={}",
                sig.date, sig.signed_headers, sig.signature
            ),
        )
        .header("x-tc-action", action)
        .header("x-tc-version", "2017-03-12")
        .header("x-tc-region", "ap-guangzhou")
        .header("x-tc-timestamp", ts.to_string())
        .body(payload)
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json")
}

// ---- log capture ----

/// Every log line of this test binary, from the first call on (one global subscriber).
#[derive(Clone, Default)]
pub struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes to the capture and, with `TCVNC_TRACE_ALL=1`, to stderr too (for the
/// suite-wide secret scan in `.ci/run`).
#[derive(Clone)]
struct Tee(Capture, bool);

impl std::io::Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.1 {
            let _ = std::io::stderr().write_all(buf);
        }
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn trace_all() -> bool {
    std::env::var("TCVNC_TRACE_ALL").as_deref() == Ok("1")
}

/// Installs the capturing subscriber at `level` (first call wins; every level with
/// `TCVNC_TRACE_ALL=1`) and returns what it has captured so far.
pub fn captured_logs(level: tracing::Level) -> String {
    static CAP: std::sync::OnceLock<Capture> = std::sync::OnceLock::new();
    let cap = CAP.get_or_init(|| {
        let cap = Capture::default();
        let w = Tee(cap.clone(), trace_all());
        let level = if trace_all() {
            tracing::Level::TRACE
        } else {
            level
        };
        let _ = tracing_subscriber::fmt()
            .with_max_level(level)
            .with_writer(move || w.clone())
            .with_ansi(false)
            .try_init();
        cap
    });
    let text = cap
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    String::from_utf8_lossy(&text).into_owned()
}

// ---- how a server ends a TCP connection ----

/// How the other side ended a TCP connection.
#[derive(Debug, PartialEq, Eq)]
pub enum TcpEnd {
    /// An orderly close (FIN): it had read everything we sent.
    Eof,
    /// A reset: it closed with bytes of ours unread (Linux answers those with RST).
    Reset,
}

/// Reads `s` until the other side ends it: the bytes that came first and how it ended.
/// Linux still delivers bytes queued before a reset, so the bytes are complete either way.
pub async fn read_until_end(s: &mut TcpStream) -> (Vec<u8>, TcpEnd) {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) => return (got, TcpEnd::Eof),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (got, TcpEnd::Reset)
            }
            Err(e) => panic!("read after {} bytes: {e}", got.len()),
        }
    }
}

/// What a crowd of viewers got (the storm and fleet runs): a console, a refusal with a
/// reason (counted by the reason's stable prefix), or nothing said.
#[derive(Default)]
pub struct Tally {
    pub ok: std::sync::atomic::AtomicU64,
    pub refused: std::sync::atomic::AtomicU64,
    pub silent: std::sync::atomic::AtomicU64,
    pub reasons: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Tally {
    /// Counts a refusal under the first `prefix` characters of `reason` before any
    /// digit (numbers and holders vary).
    pub fn refusal(&self, reason: &str, prefix: usize) {
        use std::sync::atomic::Ordering;
        self.refused.fetch_add(1, Ordering::Relaxed);
        let cut = reason
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(reason.len())
            .min(prefix);
        *self
            .reasons
            .lock()
            .expect("reasons")
            .entry(reason[..cut].to_owned())
            .or_default() += 1;
    }
}

/// Runs the `tcvnc` binary with `args` in a clean environment: `HOME` at `home` and the
/// demo credentials in the environment, nothing on stdin.
pub fn tcvnc_cli(home: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("TENCENTCLOUD_SECRET_ID", DEMO_SECRET_ID)
        .env("TENCENTCLOUD_SECRET_KEY", DEMO_SECRET_KEY)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runs")
}
