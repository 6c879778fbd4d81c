//! The daemon: [`run`] (serve bound listeners until a shutdown future resolves, then
//! drain; [`run_reloading`] also reloads the config on SIGHUP, see [`reload`]), and the
//! `serve`, `demo` and `connect` commands.

pub mod reload;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::app::App;
use crate::cloud::credentials::Env;
use crate::cmd::CmdError;
use crate::config::Config;
use crate::listen::{self, ListenerRegistry, Listeners};
use crate::shutdown::Hangup;

pub use reload::{reload, reload_file, ReloadError, ReloadReport};

/// Where reloads come from: each SIGHUP re-reads `path`.
#[derive(Debug)]
pub struct ReloadOn {
    /// The config file to re-read.
    pub path: PathBuf,
    /// The SIGHUP handler, installed as early as possible.
    pub hangup: Hangup,
}

/// Serves `listeners` until `shutdown` resolves (or `app.shutdown` is triggered), then
/// stops accepting and drains sessions within `session.shutdown_grace`. Returns whether
/// every session ended in time.
pub async fn run(app: Arc<App>, listeners: Listeners, shutdown: impl Future<Output = ()>) -> bool {
    run_reloading(app, listeners, shutdown, None).await
}

/// [`run`], also reloading the configuration at every request `reload` brings (see
/// [`reload::on_request`]; a reload in progress finishes before shutdown is looked at).
pub async fn run_reloading(
    app: Arc<App>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()>,
    reload: Option<ReloadOn>,
) -> bool {
    let mut registry = ListenerRegistry::start(app.clone(), listeners);
    let housekeeping = app.clone();
    app.shutdown.spawn(async move {
        const SUMMARY_S: u64 = 10;
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(SUMMARY_S));
        let mut n = 0u64;
        loop {
            tokio::select! {
                _ = housekeeping.shutdown.cancelled() => return,
                _ = tick.tick() => {
                    housekeeping.summaries.flush(SUMMARY_S);
                    n += 1;
                    if n % 6 == 0 {
                        housekeeping.peer_limiter.shrink();
                        housekeeping.guard.shrink();
                        housekeeping.cloud.housekeeping();
                    }
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
    let (path, mut hangup) = match reload {
        Some(r) => (Some(r.path), r.hangup),
        None => (None, Hangup::none()),
    };
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = app.shutdown.cancelled() => break,
            () = hangup.recv() => {
                if let Some(p) = &path {
                    reload::on_request(&app, &mut registry, p).await;
                }
            }
        }
    }
    app.ready.store(false, Ordering::Relaxed);
    crate::systemd::notify_stopping();
    let live = app.live_sessions().len();
    tracing::info!(
        sessions = live,
        grace_s = app.config().session.shutdown_grace.as_secs(),
        "draining"
    );
    let drained = app
        .shutdown
        .drain(app.config().session.shutdown_grace)
        .await;
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
    let shutdown = crate::shutdown::Shutdown::new();
    let cloud =
        crate::cmd::cloud_client_on(&cfg, None, env, Some(metrics.clone()), shutdown.clone())
            .await?;
    let app = App::new(cfg, cloud, metrics, shutdown)
        .map_err(|e| CmdError::Usage(format!("config error: upstream.ca_file: {e}")))?;
    Ok(Arc::new(app))
}

async fn bind_and_run(
    app: Arc<App>,
    extra: impl FnOnce(&[(String, SocketAddr)]),
    reload: Option<ReloadOn>,
) -> Result<(), CmdError> {
    let listeners = Listeners::inherit_or_bind(&app.config())
        .await
        .map_err(|e| match e {
            listen::ListenError::Insecure(m) => CmdError::Usage(m),
            e => CmdError::Other(e.to_string()),
        })?;
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
    run_reloading(app, listeners, crate::shutdown::signal(), reload).await;
    Ok(())
}

/// `tcvnc serve`: SIGHUP reloads the config file (see [`reload`]).
///
/// # Errors
/// Config (64), credentials (69) or listener (1) problems.
pub async fn serve_command(config: Option<&Path>) -> Result<(), CmdError> {
    // First of all: from here on a SIGHUP is a reload request, never the default
    // action (terminate), whichever startup step it interrupts.
    let hangup = Hangup::install();
    let path = match config {
        Some(p) => p.to_owned(),
        None => crate::config::DEFAULT_PATHS
            .iter()
            .map(Path::new)
            .find(|p| p.exists())
            .ok_or_else(|| {
                CmdError::Usage(format!(
                    "no config file: pass -c FILE or create one of {} (see config/tcvnc.example.toml)",
                    crate::config::DEFAULT_PATHS.join(", ")
                ))
            })?
            .to_owned(),
    };
    let cfg = Config::load(&path)?;
    for lint in cfg.lints() {
        tracing::warn!("{lint}");
    }
    let app = build_app(cfg, &Env::from_process()).await?;
    bind_and_run(app, |_| {}, Some(ReloadOn { path, hangup })).await
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
    }, None)
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
    let listeners = Listeners::bind(&app.config())
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
