//! The daemon: [`App`] (shared, read-mostly state), [`run`] (serve bound listeners until a
//! shutdown future resolves, then drain), and the `serve`, `demo` and `connect` commands.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Semaphore;

use crate::budget::Budget;
use crate::cloud::credentials::Env;
use crate::cloud::CloudClient;
use crate::cmd::CmdError;
use crate::config::Config;
use crate::listen::{self, Listeners};
use crate::rfb::auth::Throttle;
use crate::session::{Consoles, LiveSession};
use crate::shutdown::Shutdown;
use crate::upstream::Dialer;

/// Everything sessions share.
pub struct App {
    /// The validated config.
    pub config: Config,
    /// The API client.
    pub cloud: Arc<CloudClient>,
    /// The per-instance reconnect budget.
    pub budget: Budget,
    /// Opens console URLs.
    pub dialer: Dialer,
    /// Who holds each console.
    pub consoles: Consoles,
    /// One permit per concurrent session (`session.max_sessions`).
    pub sessions: Arc<Semaphore>,
    /// Failed-password back-off per peer.
    pub throttle: Throttle,
    /// New connections per client address.
    pub peer_limiter: crate::budget::PeerLimiter,
    /// Cancellation and task tracking for every session.
    pub shutdown: Shutdown,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Listeners bound and credentials loaded.
    pub ready: AtomicBool,
    next_id: AtomicU64,
    live: Mutex<HashMap<u64, Arc<LiveSession>>>,
    live_count: tokio::sync::watch::Sender<usize>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("config", &self.config.source)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Builds the shared state.
    ///
    /// # Errors
    /// When the upstream TLS configuration (`upstream.ca_file`) is unusable.
    pub fn new(
        config: Config,
        cloud: Arc<CloudClient>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<App, crate::tls::Error> {
        let tls = crate::tls::client_config(config.upstream.ca_file.as_deref())?;
        let dialer = Dialer::new(
            tls,
            config.upstream.origin.clone(),
            config.upstream.subprotocols.clone(),
            config.upstream.connect_timeout,
        );
        Ok(App {
            budget: Budget::new(config.budget.reconnects_per_minute, config.budget.max_wait),
            sessions: Arc::new(Semaphore::new(config.session.max_sessions)),
            peer_limiter: crate::budget::PeerLimiter::new(
                config.session.connections_per_peer_per_minute,
            ),
            config,
            cloud,
            dialer,
            consoles: Consoles::default(),
            throttle: Throttle::new(),
            shutdown: Shutdown::new(),
            metrics,
            ready: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            live: Mutex::new(HashMap::new()),
            live_count: tokio::sync::watch::channel(0).0,
        })
    }

    /// A fresh session id.
    pub fn next_session_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn register(&self, s: Arc<LiveSession>) {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.insert(s.id, s);
        self.live_count.send_replace(live.len());
    }

    pub(crate) fn unregister(&self, id: u64) {
        let mut live = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.remove(&id);
        self.live_count.send_replace(live.len());
    }

    /// The number of live sessions, as a watch (tests and metrics wait on it).
    pub fn watch_sessions(&self) -> tokio::sync::watch::Receiver<usize> {
        self.live_count.subscribe()
    }

    /// The sessions running now.
    pub fn live_sessions(&self) -> Vec<Arc<LiveSession>> {
        self.live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }
}

/// Serves `listeners` until `shutdown` resolves (or `app.shutdown` is triggered), then
/// stops accepting and drains sessions within `session.shutdown_grace`. Returns whether
/// every session ended in time.
pub async fn run(app: Arc<App>, listeners: Listeners, shutdown: impl Future<Output = ()>) -> bool {
    for (instance, l) in listeners.tcp {
        app.shutdown
            .spawn(listen::tcp::serve(app.clone(), instance, l));
    }
    if let Some(l) = listeners.http {
        app.shutdown.spawn(listen::http::serve(app.clone(), l));
    }
    let housekeeping = app.clone();
    app.shutdown.spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = housekeeping.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    housekeeping.peer_limiter.shrink();
                    housekeeping.cloud.housekeeping();
                }
            }
        }
    });
    app.ready.store(true, Ordering::Relaxed);
    crate::systemd::notify_ready(app.live_sessions().len());
    if let Some(interval) = crate::systemd::watchdog_interval() {
        let sd = app.shutdown.clone();
        app.shutdown.spawn(crate::systemd::watchdog(interval, sd));
    }
    tokio::select! {
        _ = shutdown => {}
        _ = app.shutdown.cancelled() => {}
    }
    app.ready.store(false, Ordering::Relaxed);
    crate::systemd::notify_stopping();
    let live = app.live_sessions().len();
    tracing::info!(
        sessions = live,
        grace_s = app.config.session.shutdown_grace.as_secs(),
        "draining"
    );
    let drained = app.shutdown.drain(app.config.session.shutdown_grace).await;
    if drained {
        tracing::info!("all sessions ended; bye");
    } else {
        tracing::warn!(
            still_running = app.shutdown.running(),
            "grace period over with sessions still running; exiting anyway"
        );
    }
    drained
}

/// Loads credentials, builds the client and the app.
///
/// # Errors
/// [`CmdError`] with the right exit code.
pub async fn build_app(cfg: Config, env: &Env) -> Result<Arc<App>, CmdError> {
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let cloud = crate::cmd::cloud_client(&cfg, None, env, Some(metrics.clone())).await?;
    let app = App::new(cfg, cloud, metrics)
        .map_err(|e| CmdError::Usage(format!("config error: upstream.ca_file: {e}")))?;
    Ok(Arc::new(app))
}

async fn bind_and_run(
    app: Arc<App>,
    extra: impl FnOnce(&[(String, SocketAddr)]),
) -> Result<(), CmdError> {
    let listeners = Listeners::inherit_or_bind(&app.config)
        .await
        .map_err(|e| CmdError::Other(e.to_string()))?;
    let addrs = listeners.addresses();
    if addrs.is_empty() {
        return Err(CmdError::Usage(
            "config error: nothing to listen on: add [http] or a [[target]] with listen".into(),
        ));
    }
    for (what, a) in &addrs {
        tracing::info!(listener = %what, address = %a, "listening");
    }
    extra(&addrs);
    run(app, listeners, crate::shutdown::signal()).await;
    Ok(())
}

/// `tcvnc serve`.
///
/// # Errors
/// Config (64), credentials (69) or listener (1) problems.
pub async fn serve_command(config: Option<&Path>) -> Result<(), CmdError> {
    let cfg = Config::locate(config)?.ok_or_else(|| {
        CmdError::Usage(format!(
            "no config file: pass -c FILE or create one of {} (see config/tcvnc.example.toml)",
            crate::config::DEFAULT_PATHS.join(", ")
        ))
    })?;
    for lint in cfg.lints() {
        tracing::warn!("{lint}");
    }
    let app = build_app(cfg, &Env::from_process()).await?;
    bind_and_run(app, |_| {}).await
}

/// The config `tcvnc demo` runs with, pointed at a simulator.
pub fn demo_config(
    sim: &crate::sim::SimHandle,
    tcp: SocketAddr,
    http: SocketAddr,
) -> Result<Config, CmdError> {
    let text = format!(
        r#"
[cloud]
region = "ap-guangzhou"
endpoint = "{api}"
[credentials]
secret_id = "{id}"
secret_key = "{key}"
[upstream]
ca_file = "{ca}"
[http]
listen = "{http}"
[[target]]
instance = "ins-demo0001"
listen = "{tcp}"
[[target]]
instance = "ins-demo0002"
[[target]]
instance = "ins-demo0003"
[[target]]
instance = "ins-stopped1"
"#,
        api = sim.api_url,
        id = crate::sim::DEMO_SECRET_ID,
        key = crate::sim::DEMO_SECRET_KEY,
        ca = sim.ca_file.display(),
    );
    Ok(Config::parse(&text, "<demo>", Path::new("."))?)
}

/// `tcvnc demo`: the simulator and the daemon in one process.
///
/// # Errors
/// When a listener cannot bind.
pub async fn demo_command(
    tcp: SocketAddr,
    http: SocketAddr,
    backend: Option<String>,
) -> Result<(), CmdError> {
    let sim = crate::sim::SimHandle::start(crate::sim::SimOptions {
        backend: backend.clone(),
        ..Default::default()
    })
    .await
    .map_err(|e| CmdError::Other(e.to_string()))?;
    let cfg = demo_config(&sim, tcp, http)?;
    let app = build_app(cfg, &Env::default()).await?;
    let shown = backend.unwrap_or_else(|| "the built-in test pattern".into());
    let result = bind_and_run(app, |addrs| {
        let find = |w: &str| addrs.iter().find(|(n, _)| n.starts_with(w)).map(|(_, a)| *a);
        let tcp = find("tcp").unwrap_or(tcp);
        let http = find("http").unwrap_or(http);
        println!("tcvnc demo: a simulated Tencent Cloud (API {}, gateway {}) showing {shown}", sim.api_url, sim.gateway_url);
        println!("  native viewer:  vncviewer {}::{}        (instance ins-demo0001)", tcp.ip(), tcp.port());
        println!("  screenshot:     vncdo -s {}::{} capture shot.png", tcp.ip(), tcp.port());
        println!("  browser:        http://{http}/");
        println!("  websocket:      ws://{http}/vnc/ins-demo0001   (also ins-demo0002, ins-demo0003, ins-stopped1)");
        println!("Press Ctrl-C to stop.");
    })
    .await;
    sim.shutdown().await;
    result
}

/// The viewer to start: `--viewer`, `$VNC_VIEWER`, else the first of TigerVNC
/// `vncviewer`, `gvncviewer`, `remmina` found on `PATH`.
fn pick_viewer(flag: Option<String>, env: &Env) -> Option<String> {
    if let Some(v) = flag.or_else(|| env.get("VNC_VIEWER").map(str::to_owned)) {
        return Some(v);
    }
    let path = env
        .get("PATH")
        .unwrap_or("/usr/local/bin:/usr/bin:/bin")
        .to_owned();
    for (bin, template) in [
        ("vncviewer", "vncviewer {}"),
        ("gvncviewer", "gvncviewer {}"),
        ("remmina", "remmina -c vnc://{}"),
    ] {
        if path.split(':').any(|d| Path::new(d).join(bin).is_file()) {
            return Some(template.to_owned());
        }
    }
    None
}

/// `tcvnc connect`: a one-shot local listener for one instance and a viewer on it; exits
/// when the viewer exits (or on Ctrl-C when no viewer was found).
///
/// # Errors
/// Config (64), credentials (69) or listener (1) problems.
pub async fn connect_command(
    instance: &str,
    region: Option<String>,
    viewer: Option<String>,
    config: Option<&Path>,
) -> Result<(), CmdError> {
    let env = Env::from_process();
    let mut cfg = Config::locate(config)?.unwrap_or_else(Config::defaults);
    if !crate::cloud::instance_id_valid(cfg.cloud.product, instance) {
        return Err(CmdError::Usage(format!(
            "'{instance}' is not a valid {} instance ID: expected {}xxxxxxxx",
            cfg.cloud.product.service(),
            cfg.cloud.product.id_prefix()
        )));
    }
    let region = region
        .or_else(|| cfg.target(instance).map(|t| t.region.clone()))
        .or_else(|| cfg.cloud.region.clone())
        .or_else(|| env.get("TENCENTCLOUD_REGION").map(str::to_owned))
        .ok_or_else(|| CmdError::Usage(format!("no region for {instance}: pass --region")))?;
    let base = cfg.target(instance).cloned();
    cfg.targets = vec![crate::config::Target {
        instance: instance.to_owned(),
        region,
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..base.unwrap_or(crate::config::Target {
            instance: String::new(),
            region: String::new(),
            listen: None,
            on_busy: crate::config::OnBusy::Reject,
            password: None,
            upstream_password: None,
            transparent: false,
        })
    }];
    cfg.http = None;
    let app = build_app(cfg, &env).await?;
    let listeners = Listeners::bind(&app.config)
        .await
        .map_err(|e| CmdError::Other(e.to_string()))?;
    let addr = listeners
        .addresses()
        .first()
        .map(|(_, a)| *a)
        .ok_or_else(|| CmdError::Other("no listener".into()))?;
    let target = format!("{}::{}", addr.ip(), addr.port());
    let command = pick_viewer(viewer, &env).map(|t| {
        if t.contains("{}") {
            t.replace("{}", &target)
        } else {
            format!("{t} {target}")
        }
    });
    let stop: std::pin::Pin<Box<dyn Future<Output = ()> + Send>> = match command {
        Some(cmd) => {
            println!("tcvnc connect: {instance} on {target}; starting: {cmd}");
            let mut child = tokio::process::Command::new("sh")
                .args(["-c", &cmd])
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| CmdError::Other(format!("cannot start the viewer {cmd:?}: {e}")))?;
            Box::pin(async move {
                tokio::select! {
                    status = child.wait() => {
                        tracing::info!(?status, "viewer exited");
                    }
                    _ = crate::shutdown::signal() => {}
                }
            })
        }
        None => {
            println!("tcvnc connect: no viewer found (set --viewer or VNC_VIEWER); point one at {target}; Ctrl-C to stop");
            Box::pin(crate::shutdown::signal())
        }
    };
    run(app, listeners, stop).await;
    Ok(())
}
