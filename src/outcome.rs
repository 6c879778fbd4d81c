//! The one edge where a session failure becomes what each party sees: the text a viewer
//! reads (RFB reason or websocket close reason), the close code, and the log level.

use crate::budget::Exhausted;
use crate::cloud;
use crate::rfb::handshake;
use crate::upstream;

/// Normal closure.
pub const CLOSE_NORMAL: u16 = 1000;
/// The server is going away.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// The peer broke the websocket protocol (sent by `wsio` itself).
pub const CLOSE_PROTOCOL: u16 = crate::wsio::CLOSE_PROTOCOL;
/// A text message on the binary channel (sent by `wsio` itself).
pub const CLOSE_UNSUPPORTED: u16 = crate::wsio::CLOSE_UNSUPPORTED;
/// A close reason that is not UTF-8, or bad base64 (sent by `wsio` itself).
pub const CLOSE_INVALID_DATA: u16 = crate::wsio::CLOSE_INVALID_DATA;
/// A frame over the size limit (sent by `wsio` itself).
pub const CLOSE_TOO_BIG: u16 = crate::wsio::CLOSE_TOO_BIG;
/// Policy violation (authentication).
pub const CLOSE_POLICY: u16 = 1008;
/// Internal error / upstream failure.
pub const CLOSE_ERROR: u16 = 1011;
/// Try again later (budget, capacity, busy).
pub const CLOSE_TRY_AGAIN: u16 = 1013;

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Too many concurrent sessions.
    #[error("tcvnc is at its limit of {max} concurrent sessions: try again later")]
    Capacity {
        /// The limit.
        max: usize,
    },
    /// One client address opened too many connections.
    #[error("too many connections from {peer} (more than {per_minute} per minute): wait {} s", retry_after.as_millis().div_ceil(1000).max(1))]
    PeerRate {
        /// The address.
        peer: std::net::IpAddr,
        /// The configured limit.
        per_minute: u32,
        /// Until the next is allowed.
        retry_after: std::time::Duration,
    },
    /// The instance's console is held by another client.
    #[error("the console of {instance} is in use by {holder} since {since} (on_busy = \"reject\"): close that viewer first, or set on_busy = \"takeover\"")]
    Busy {
        /// The instance.
        instance: String,
        /// Who holds it.
        holder: String,
        /// Since when (RFC 3339).
        since: String,
    },
    /// No reconnect budget left within `max_wait`.
    #[error(transparent)]
    Budget(#[from] Exhausted),
    /// The cloud API failed.
    #[error(transparent)]
    Cloud(#[from] cloud::Error),
    /// The upstream could not be opened.
    #[error(transparent)]
    Dial(#[from] upstream::Error),
    /// The RFB handshake with the console failed.
    #[error(transparent)]
    Upstream(handshake::Error),
    /// tcvnc is shutting down.
    #[error("tcvnc is shutting down")]
    Shutdown,
    /// Another viewer took the console over (`on_busy = "takeover"`).
    #[error("the console of {instance} was taken over by another viewer")]
    TakenOver {
        /// The instance.
        instance: String,
    },
    /// A handshake step did not finish in time.
    #[error("the console handshake did not finish within {seconds} s: try again")]
    HandshakeTimeout {
        /// The limit.
        seconds: u64,
    },
}

impl Failure {
    /// The websocket close code for this failure.
    pub fn close_code(&self) -> u16 {
        match self {
            Failure::Capacity { .. }
            | Failure::PeerRate { .. }
            | Failure::Busy { .. }
            | Failure::Budget(_) => CLOSE_TRY_AGAIN,
            Failure::Shutdown => CLOSE_GOING_AWAY,
            Failure::TakenOver { .. } => CLOSE_NORMAL,
            Failure::HandshakeTimeout { .. } => CLOSE_ERROR,
            Failure::Cloud(_) | Failure::Dial(_) | Failure::Upstream(_) => CLOSE_ERROR,
        }
    }

    /// The short label used in logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Failure::Capacity { .. } => "capacity",
            Failure::PeerRate { .. } => "peer_rate",
            Failure::Busy { .. } => "busy",
            Failure::Budget(_) => "budget",
            Failure::Cloud(_) => "cloud",
            Failure::Dial(_) => "dial",
            Failure::Upstream(_) => "upstream_handshake",
            Failure::Shutdown => "shutdown",
            Failure::TakenOver { .. } => "taken_over",
            Failure::HandshakeTimeout { .. } => "upstream_handshake",
        }
    }

    /// Logs the failure at a level that fits: operator problems (credentials, TLS) at
    /// error, expected refusals at info, the rest at warn.
    pub fn log(&self) {
        match self {
            Failure::Cloud(cloud::Error::Credentials(_)) => {
                tracing::error!(outcome = self.label(), error = %self, "session refused")
            }
            Failure::Cloud(cloud::Error::Api(api))
                if matches!(
                    api.classify().1,
                    cloud::Kind::SignatureRejected
                        | cloud::Kind::CredentialsRejected
                        | cloud::Kind::CredentialsCannotCall
                        | cloud::Kind::AccessDenied
                        | cloud::Kind::ClockSkew
                ) =>
            {
                tracing::error!(outcome = self.label(), code = %api.code, request_id = %api.request_id, error = %self, "session refused")
            }
            Failure::Cloud(cloud::Error::Api(api)) => {
                tracing::warn!(outcome = self.label(), code = %api.code, request_id = %api.request_id, error = %self, "session refused")
            }
            Failure::Dial(upstream::Error::Tls { .. }) => {
                tracing::error!(outcome = self.label(), error = %self, "session refused")
            }
            Failure::Capacity { .. }
            | Failure::PeerRate { .. }
            | Failure::Busy { .. }
            | Failure::Budget(_)
            | Failure::TakenOver { .. }
            | Failure::Shutdown => {
                tracing::info!(outcome = self.label(), error = %self, "session refused")
            }
            _ => tracing::warn!(outcome = self.label(), error = %self, "session refused"),
        }
    }
}
