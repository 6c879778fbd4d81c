//! Wiring for `serve`, `demo` and `connect` (the data path lands here).

use std::net::SocketAddr;
use std::path::Path;

use crate::cmd::CmdError;

/// `tcvnc serve`.
///
/// # Errors
/// Always, until the data path exists.
pub async fn serve_command(_config: Option<&Path>) -> Result<(), CmdError> {
    Err(CmdError::Other(
        "serve: the data path is not built yet".into(),
    ))
}

/// `tcvnc demo`.
///
/// # Errors
/// Always, until the data path exists.
pub async fn demo_command(
    _tcp: SocketAddr,
    _http: SocketAddr,
    _backend: Option<String>,
) -> Result<(), CmdError> {
    Err(CmdError::Other(
        "demo: the data path is not built yet".into(),
    ))
}

/// `tcvnc connect`.
///
/// # Errors
/// Always, until the data path exists.
pub async fn connect_command(
    _instance: &str,
    _region: Option<String>,
    _viewer: Option<String>,
    _config: Option<&Path>,
) -> Result<(), CmdError> {
    Err(CmdError::Other(
        "connect: the data path is not built yet".into(),
    ))
}
