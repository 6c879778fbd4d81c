//! The one edge where a session failure becomes what each party sees. Every failure has
//! two renderings: [`Failure::viewer_text`], a fixed, secret-free phrase for the client
//! (RFB reason or websocket close reason: the state, the budget and when the next URL
//! comes, busy since when, a RequestId to quote), and `Display`, the full detail for the
//! log (credential source, file paths, the cloud's own message, addresses). Also the
//! close code and the log level.

use crate::budget::Exhausted;
use crate::cloud::states::NotRunning;
use crate::cloud::{self, Kind};
use crate::fleet::{ClaimRefusal, Refusal, RemoteHolder};
use crate::guard::Crowded;
use crate::logsum::Summaries;
use crate::rfb::handshake;
use crate::upstream;

/// How a client left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gone {
    /// It closed its end (TCP FIN, or a websocket close frame, answered).
    Closed,
    /// The connection failed.
    Lost(String),
}

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gone::Closed => f.write_str("the viewer closed the connection"),
            Gone::Lost(e) => write!(f, "the viewer's connection failed: {e}"),
        }
    }
}

/// Normal closure.
pub(crate) const CLOSE_NORMAL: u16 = 1000;
/// The server is going away.
pub(crate) const CLOSE_GOING_AWAY: u16 = 1001;
/// Policy violation (authentication).
pub(crate) const CLOSE_POLICY: u16 = 1008;
/// Internal error / upstream failure.
pub(crate) const CLOSE_ERROR: u16 = 1011;
/// Try again later (budget, capacity, busy).
pub(crate) const CLOSE_TRY_AGAIN: u16 = 1013;

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Failure {
    /// Too many concurrent sessions.
    #[error("tcvnc is at its limit of {max} concurrent sessions: try again later")]
    Capacity {
        /// The limit.
        max: usize,
    },
    /// Too many connections that have not greeted or authenticated yet.
    #[error("{}", match .0 {
        Crowded::Address(n) => format!("too many unauthenticated connections from this address (limit {n}): finish or close the others"),
        Crowded::Server(n) => format!("tcvnc holds its limit of {n} unauthenticated connections: try again shortly"),
    })]
    Crowded(Crowded),
    /// The client left before the bridge.
    #[error("{0} before the bridge")]
    Left(Gone),
    /// The instance is known not to be running; nothing was spent.
    #[error(transparent)]
    NotRunning(#[from] NotRunning),
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
    /// The instance's console is held through another tcvnc replica (`[fleet]`).
    #[error("the console of {instance} is in use by {} on replica {} since {}: close that viewer first (on_busy = \"takeover\" works only on the replica that holds the console)", holder.who, holder.replica, holder.since)]
    BusyElsewhere {
        /// The instance.
        instance: String,
        /// Who holds it, where, since when.
        holder: RemoteHolder,
    },
    /// No reconnect budget left within `max_wait`.
    #[error(transparent)]
    Budget(#[from] Exhausted),
    /// The budget or claims shared through Redis cannot be used (`[fleet]`).
    #[error(transparent)]
    Fleet(Refusal),
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
    /// Console mode: the console was lost and not had back within `resume_timeout`.
    #[error("the console of {instance} did not come back within {} s (resume_timeout; last: {last})", waited.as_secs())]
    ResumeTimeout {
        /// The instance.
        instance: String,
        /// The limit.
        waited: std::time::Duration,
        /// What the last wait was for.
        last: String,
    },
    /// A view-only viewer for a target that is not in console mode.
    #[error("view-only access to {instance} needs mode = \"console\" on its target (a bridged viewer holds the console itself)")]
    ViewOnlyNeedsConsoleMode {
        /// The instance.
        instance: String,
    },
    /// Console mode: the engine closed after its last viewer left and `linger` passed.
    #[error("the console engine closed after its last viewer left")]
    Lingered,
    /// `tcvnc play`: the recording cannot be played (the words say where and why).
    #[error("the recording cannot be played: {0}")]
    Recording(String),
}

impl Failure {
    /// The websocket close code for this failure.
    pub fn close_code(&self) -> u16 {
        match self {
            Failure::Capacity { .. }
            | Failure::Crowded(_)
            | Failure::PeerRate { .. }
            | Failure::Busy { .. }
            | Failure::BusyElsewhere { .. }
            | Failure::Fleet(_)
            | Failure::Budget(_) => CLOSE_TRY_AGAIN,
            Failure::Left(_) => CLOSE_NORMAL,
            Failure::NotRunning(_) => CLOSE_ERROR,
            Failure::Shutdown => CLOSE_GOING_AWAY,
            Failure::TakenOver { .. } => CLOSE_NORMAL,
            Failure::HandshakeTimeout { .. } => CLOSE_ERROR,
            Failure::ResumeTimeout { .. } => CLOSE_TRY_AGAIN,
            Failure::Lingered => CLOSE_NORMAL,
            Failure::Recording(_) => CLOSE_ERROR,
            Failure::ViewOnlyNeedsConsoleMode { .. } => CLOSE_POLICY,
            Failure::Cloud(_) | Failure::Dial(_) | Failure::Upstream(_) => CLOSE_ERROR,
        }
    }

    /// The short label used in logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Failure::Capacity { .. } => "capacity",
            Failure::Crowded(_) => "unauthenticated_limit",
            Failure::Left(_) => "viewer_left",
            Failure::NotRunning(_) => "not_running",
            Failure::PeerRate { .. } => "peer_rate",
            Failure::Busy { .. } | Failure::BusyElsewhere { .. } => "busy",
            Failure::Budget(_) => "budget",
            Failure::Fleet(Refusal::Rebuilding { .. }) => "fleet_rebuilding",
            Failure::Fleet(_) => "fleet_unavailable",
            Failure::Cloud(_) => "cloud",
            Failure::Dial(_) => "dial",
            Failure::Upstream(_) => "upstream_handshake",
            Failure::Shutdown => "shutdown",
            Failure::TakenOver { .. } => "taken_over",
            Failure::HandshakeTimeout { .. } => "upstream_handshake",
            Failure::ResumeTimeout { .. } => "resume_timeout",
            Failure::Lingered => "lingered",
            Failure::Recording(_) => "recording",
            Failure::ViewOnlyNeedsConsoleMode { .. } => "view_only_unavailable",
        }
    }

    /// The words the client is shown: fixed phrases that carry no credential source, file
    /// path, address or raw cloud message, with what the viewer can act on.
    pub(crate) fn viewer_text(&self) -> String {
        match self {
            Failure::PeerRate { retry_after, .. } => format!(
                "too many connections from your address: wait {} s",
                retry_after.as_millis().div_ceil(1000).max(1)
            ),
            Failure::Busy {
                instance, since, ..
            } => format!("the console of {instance} is in use by another viewer since {since}"),
            Failure::BusyElsewhere { instance, holder } => format!(
                "the console of {instance} is in use by another viewer since {} (on tcvnc replica {})",
                holder.since, holder.replica
            ),
            Failure::Fleet(Refusal::Rebuilding { retry_after }) => format!(
                "tcvnc's replicas are rebuilding the budget they share: try again in {} s",
                retry_after.as_secs().max(1)
            ),
            Failure::Fleet(Refusal::Exhausted(e)) => e.to_string(),
            Failure::Fleet(Refusal::Unavailable(_)) => {
                "tcvnc cannot reach the budget its replicas share, so it gives no new console URL now: try again shortly".into()
            }
            Failure::Cloud(e) => cloud_viewer_text(e),
            Failure::Dial(upstream::Error::Tls { .. }) => {
                "the console gateway's TLS certificate was not accepted: the operator must check tcvnc's log".into()
            }
            Failure::Upstream(handshake::Error::UpstreamNeedsPassword) => {
                "the console asks for a VNC password that tcvnc was not given: ask the operator".into()
            }
            other => other.to_string(),
        }
    }

    /// Logs the failure (the full detail) at a level that fits: operator problems
    /// (credentials, TLS) at error, expected refusals at info, the rest at warn. Repeats of
    /// a kind for one instance are summarised per interval by `summaries`; operator
    /// problems are always written.
    pub fn log(&self, summaries: &Summaries, instance: &str) {
        let operator = self.operator_problem();
        let key = match self {
            Failure::Cloud(e) => format!("{instance} {}", e.label()),
            _ => instance.to_owned(),
        };
        if !operator && !summaries.first(self.label(), &key) {
            tracing::debug!(outcome = self.label(), error = %self, "session refused");
            return;
        }
        match self {
            _ if operator => match self {
                Failure::Cloud(cloud::Error::Api(api)) => {
                    tracing::error!(outcome = self.label(), code = %api.code, request_id = %api.request_id, error = %self, "session refused")
                }
                _ => tracing::error!(outcome = self.label(), error = %self, "session refused"),
            },
            Failure::Cloud(cloud::Error::Api(api)) => {
                tracing::warn!(outcome = self.label(), code = %api.code, request_id = %api.request_id, error = %self, "session refused")
            }
            Failure::Capacity { .. }
            | Failure::Crowded(_)
            | Failure::PeerRate { .. }
            | Failure::Busy { .. }
            | Failure::BusyElsewhere { .. }
            | Failure::Fleet(Refusal::Rebuilding { .. })
            | Failure::Budget(_)
            | Failure::NotRunning(_)
            | Failure::Left(_)
            | Failure::TakenOver { .. }
            | Failure::Shutdown => {
                tracing::info!(outcome = self.label(), error = %self, "session refused")
            }
            _ => tracing::warn!(outcome = self.label(), error = %self, "session refused"),
        }
    }

    /// Failures only the operator can fix (credentials, trust): never summarised away.
    fn operator_problem(&self) -> bool {
        match self {
            Failure::Cloud(cloud::Error::Credentials(_)) => true,
            Failure::Cloud(cloud::Error::Api(api)) => matches!(
                api.classify().1,
                Kind::SignatureRejected
                    | Kind::CredentialsRejected
                    | Kind::CredentialsCannotCall
                    | Kind::AccessDenied
                    | Kind::ClockSkew
            ),
            Failure::Dial(upstream::Error::Tls { .. }) => true,
            _ => false,
        }
    }
}

impl Failure {
    /// The failure for a fleet claim refused for `instance`.
    pub(crate) fn from_claim(instance: &str, r: ClaimRefusal) -> Self {
        match r {
            ClaimRefusal::Busy(holder) => Failure::BusyElsewhere {
                instance: instance.to_owned(),
                holder,
            },
            ClaimRefusal::Unavailable(e) => Failure::Fleet(Refusal::Unavailable(e)),
            ClaimRefusal::Rebuilding(d) => Failure::Fleet(Refusal::Rebuilding { retry_after: d }),
        }
    }
}

/// The viewer's words for a cloud failure: the kind of problem, the instance, the error
/// code and the RequestId to quote; never the credential source or the cloud's message.
fn cloud_viewer_text(e: &cloud::Error) -> String {
    match e {
        cloud::Error::Api(api) => {
            let code = &api.code;
            let rid = &api.request_id;
            let id = api.instance.as_deref().unwrap_or("the instance");
            let quote = if rid.is_empty() {
                String::new()
            } else {
                format!(", RequestId {rid}")
            };
            match api.classify().1 {
                Kind::RateLimited => {
                    format!("Tencent Cloud API rate limit hit ({code}): try again in a few seconds")
                }
                Kind::Unavailable => {
                    format!("Tencent Cloud is temporarily unavailable ({code}): try again shortly")
                }
                Kind::Internal => format!(
                    "Tencent Cloud internal error ({code}{quote}): try again; quote the RequestId if it persists"
                ),
                Kind::CredentialsRejected
                | Kind::SignatureRejected
                | Kind::CredentialsCannotCall
                | Kind::ClockSkew => format!(
                    "Tencent Cloud refused tcvnc's credentials ({code}{quote}): the operator must fix them"
                ),
                Kind::AccessDenied => format!(
                    "tcvnc's cloud identity may not open the console of {id} ({code}{quote}): ask the operator"
                ),
                Kind::MalformedInstanceId => format!(
                    "'{id}' is not a valid instance ID ({code}): use ins-xxxxxxxx or lhins-xxxxxxxx"
                ),
                Kind::InstanceNotFound => format!(
                    "instance {id} not found in {} for this account ({code}): check the instance ID and region",
                    api.region
                ),
                // The same words as when the state is already known (no request then).
                Kind::InstanceState => NotRunning {
                    instance: id.to_owned(),
                    state: api.state(),
                }
                .to_string(),
                Kind::OperationInProgress => format!(
                    "an operation on {id} is in progress ({code}): retry when it ends"
                ),
                Kind::NotSupported => format!("VNC is not supported for {id} ({code})"),
                Kind::Refused => format!("Tencent Cloud refused the console URL ({code}{quote})"),
                Kind::RequestRejected => format!(
                    "Tencent Cloud rejected tcvnc's request ({code}{quote}): the operator should check the region and endpoint"
                ),
            }
        }
        cloud::Error::Credentials(_) => {
            "tcvnc has no usable Tencent Cloud credentials: the operator must fix them".into()
        }
        cloud::Error::Connect { .. } => {
            "tcvnc cannot reach the Tencent Cloud API: try again later".into()
        }
        cloud::Error::ApiBusy { retry_after, .. } => format!(
            "Tencent Cloud API rate limit: try again in {} s",
            retry_after.as_millis().div_ceil(1000).max(1)
        ),
        cloud::Error::Transport { .. }
        | cloud::Error::Status { .. }
        | cloud::Error::Parse { .. }
        | cloud::Error::BadUrl(_) => {
            "no usable answer from the Tencent Cloud API: try again in a few seconds".into()
        }
    }
}
