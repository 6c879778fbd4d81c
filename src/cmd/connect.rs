//! `tcvnc connect INSTANCE`: a one-shot local listener for one instance (an id, or a name
//! resolved through `DescribeInstances`) and a viewer on it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;

use super::{is_name, target_by_id, target_by_name, CmdError};
use crate::cloud::credentials::Env;
use crate::config::Config;
use crate::listen::Listeners;

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
pub(super) async fn run(
    instance: &str,
    region: Option<String>,
    viewer: Option<String>,
    config: Option<&Path>,
) -> Result<(), CmdError> {
    let env = Env::from_process();
    let mut cfg = Config::locate(config)?.unwrap_or_else(Config::defaults);
    let target = if is_name(&cfg, instance) {
        let client = crate::app::cloud_client(&cfg, None, &env, None).await?;
        target_by_name(&cfg, instance, region, &env, &client).await?
    } else {
        target_by_id(&cfg, instance, region, &env)?
    };
    cfg.targets = vec![crate::config::Target {
        listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        ..target
    }];
    // One instance, resolved: nothing to discover while the viewer runs.
    cfg.discovery = None;
    cfg.http = None;
    let app = crate::app::build(cfg, &env).await?;
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
    crate::daemon::run(app, listeners, stop).await;
    Ok(())
}
