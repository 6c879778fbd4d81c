//! `tcvnc sim`: the simulated cloud alone, printing one JSON line with its endpoints.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::CmdError;
use crate::sim::{SimHandle, SimKey, SimOptions};

/// The command line of `tcvnc sim`.
#[derive(Debug)]
pub(super) struct Args {
    pub(super) api: SocketAddr,
    pub(super) gateway: SocketAddr,
    pub(super) backend: Option<String>,
    pub(super) secret_id: Option<String>,
    pub(super) secret_key: Option<String>,
    pub(super) instances: Option<PathBuf>,
    pub(super) ca_file: Option<PathBuf>,
}

/// Runs the simulator until SIGTERM or SIGINT.
pub(super) async fn run(a: Args) -> Result<(), CmdError> {
    let mut opts = SimOptions {
        api_addr: a.api,
        gateway_addr: a.gateway,
        backend: a.backend,
        ca_file: a.ca_file,
        ..SimOptions::default()
    };
    if let (Some(id), Some(key)) = (a.secret_id, a.secret_key) {
        opts.keys = vec![SimKey {
            secret_id: id,
            secret_key: key,
            token: None,
            expires_at: None,
        }];
    }
    if let Some(path) = a.instances {
        opts.instances =
            crate::sim::load_instances(&path).map_err(|e| CmdError::Usage(e.to_string()))?;
    }
    let sim = SimHandle::start(opts)
        .await
        .map_err(|e| CmdError::Other(e.to_string()))?;
    println!("{}", sim.describe());
    crate::shutdown::signal().await;
    sim.shutdown().await;
    Ok(())
}
