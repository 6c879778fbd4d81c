//! The exit codes every command and the daemon's start-up map their failures to: 0 ok,
//! 64 bad usage or config, 69 the cloud refused (credentials, instance) or a daemon asked
//! through `--via` could not do it, 77 that daemon refused the token, 1 anything else.

use crate::cloud;
use crate::cloud::credentials;
use crate::config::ConfigError;

/// A command failure: the message and the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// Bad usage or config: exit 64.
    #[error("{0}")]
    Usage(String),
    /// The cloud refused (credentials, instance), or a daemon asked through `--via` is
    /// unreachable or could not do it: exit 69 (EX_UNAVAILABLE).
    #[error("{0}")]
    Refused(String),
    /// A daemon asked through `--via` refused the bearer token or the role it gives
    /// (HTTP 401, 403): exit 77 (EX_NOPERM).
    #[error("{0}")]
    Denied(String),
    /// Anything else: exit 1.
    #[error("{0}")]
    Other(String),
}

impl CmdError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CmdError::Usage(_) => 64,
            CmdError::Refused(_) => 69,
            CmdError::Denied(_) => 77,
            CmdError::Other(_) => 1,
        }
    }
}

impl From<ConfigError> for CmdError {
    fn from(e: ConfigError) -> Self {
        CmdError::Usage(format!("config error: {e}"))
    }
}

impl From<cloud::Error> for CmdError {
    fn from(e: cloud::Error) -> Self {
        if e.is_cloud_refusal() {
            CmdError::Refused(e.to_string())
        } else {
            CmdError::Other(e.to_string())
        }
    }
}

impl From<credentials::Error> for CmdError {
    fn from(e: credentials::Error) -> Self {
        CmdError::Refused(e.to_string())
    }
}
