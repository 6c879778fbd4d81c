//! `tcvnc demo`: the simulator and the daemon in one process, no account needed.

use std::net::SocketAddr;
use std::path::Path;

use super::CmdError;
use crate::cloud::credentials::Env;
use crate::config::Config;

/// The config `tcvnc demo` runs with, pointed at a simulator.
pub(crate) fn demo_config(
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
pub(super) async fn run(
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
    let app = crate::app::build(cfg, &Env::default()).await?;
    let shown = backend.unwrap_or_else(|| "the built-in test pattern".into());
    let result = super::serve::bind_and_run(app, |addrs| {
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
