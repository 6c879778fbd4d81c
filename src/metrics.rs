//! Prometheus metrics (prometheus-client), in one struct passed by `Arc`; names are
//! prefixed `tcvnc_`. Labels are bounded: instances come from the config, error codes
//! from a fixed set (anything else is `other`), outcomes and close reasons are enums.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::cloud::error::KNOWN_CODES;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Instance {
    instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceOutcome {
    instance: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceResult {
    instance: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionCode {
    action: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Action {
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct What {
    what: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn fast_histogram() -> Histogram {
    // 50 µs … ~0.8 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 15))
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~16 s
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Every metric tcvnc exports.
pub struct Metrics {
    registry: Registry,
    sessions_active: Family<Instance, Gauge>,
    sessions: Family<InstanceOutcome, Counter>,
    url_mints: Family<InstanceResult, Counter>,
    api_requests: Family<ActionCode, Counter>,
    api_duration: HistogramFamily<Action>,
    budget_remaining: Family<Instance, Gauge>,
    budget_wait: Histogram,
    url_age: Histogram,
    upstream_handshake: Histogram,
    bytes: Family<Direction, Counter>,
    closes: Family<Reason, Counter>,
    fleet: FleetMetrics,
    engine: EngineMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceCause {
    instance: String,
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EncodingLabel {
    encoding: String,
}

/// Console mode's metrics: engines, resumes, viewers, frames and bytes per encoding.
struct EngineMetrics {
    live: Family<Instance, Gauge>,
    resumes: Family<InstanceCause, Counter>,
    without_upstream: Family<Instance, Counter<f64, std::sync::atomic::AtomicU64>>,
    viewers: Family<Instance, Gauge>,
    frames: Family<Instance, Counter>,
    rects: Family<EncodingLabel, Counter>,
    encoded_bytes: Family<EncodingLabel, Counter>,
    input_dropped: Family<InstanceCause, Counter>,
    recordings: Family<Instance, Gauge>,
    recorded_bytes: Family<Instance, Counter>,
    recordings_stopped: Family<InstanceCause, Counter>,
}

/// The `[fleet]` metrics: Redis's health, its errors, what was done without it.
struct FleetMetrics {
    up: Gauge,
    errors: Family<Op, Counter>,
    fallbacks: Family<What, Counter>,
    duration: HistogramFamily<Op>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("tcvnc");
        let m = Metrics {
            sessions_active: Family::default(),
            sessions: Family::default(),
            url_mints: Family::default(),
            api_requests: Family::default(),
            api_duration: Family::new_with_constructor(latency_histogram),
            budget_remaining: Family::default(),
            budget_wait: latency_histogram(),
            url_age: latency_histogram(),
            upstream_handshake: latency_histogram(),
            bytes: Family::default(),
            closes: Family::default(),
            fleet: FleetMetrics {
                up: Gauge::default(),
                errors: Family::default(),
                fallbacks: Family::default(),
                duration: Family::new_with_constructor(fast_histogram),
            },
            engine: EngineMetrics {
                live: Family::default(),
                resumes: Family::default(),
                without_upstream: Family::default(),
                viewers: Family::default(),
                frames: Family::default(),
                rects: Family::default(),
                encoded_bytes: Family::default(),
                input_dropped: Family::default(),
                recordings: Family::default(),
                recorded_bytes: Family::default(),
                recordings_stopped: Family::default(),
            },
            registry: Registry::default(),
        };
        registry.register(
            "sessions_active",
            "Sessions open now, by instance",
            m.sessions_active.clone(),
        );
        registry.register(
            "sessions",
            "Sessions ended, by instance and outcome",
            m.sessions.clone(),
        );
        registry.register(
            "url_mints",
            "Attempts to get a console URL, by instance and what became of them (minted, not_minted, never_sent, unknown, budget_exhausted, not_running, cancelled)",
            m.url_mints.clone(),
        );
        registry.register(
            "api_requests",
            "Cloud API requests, by action and error code (ok when none)",
            m.api_requests.clone(),
        );
        registry.register(
            "api_request_duration_seconds",
            "Cloud API request latency, by action",
            m.api_duration.clone(),
        );
        registry.register(
            "budget_remaining",
            "Console URLs left in the current 60 s window, by instance",
            m.budget_remaining.clone(),
        );
        registry.register(
            "budget_wait_seconds",
            "Time clients waited for reconnect budget",
            m.budget_wait.clone(),
        );
        registry.register(
            "url_age_at_dial_seconds",
            "Age of a console URL when it was dialled (it expires at 15 s)",
            m.url_age.clone(),
        );
        registry.register(
            "upstream_handshake_seconds",
            "Time to open the console websocket (TCP, TLS, upgrade)",
            m.upstream_handshake.clone(),
        );
        registry.register("bytes", "Bytes relayed, by direction", m.bytes.clone());
        registry.register("closes", "Session ends, by reason", m.closes.clone());
        registry.register(
            "fleet_redis_up",
            "1 while the fleet's Redis answers ([fleet] only)",
            m.fleet.up.clone(),
        );
        registry.register(
            "fleet_redis_errors",
            "Redis calls that failed or timed out, by operation",
            m.fleet.errors.clone(),
        );
        registry.register(
            "fleet_fallbacks",
            "What was done without Redis: url_refused, url_local, api_local, claim_local",
            m.fleet.fallbacks.clone(),
        );
        registry.register(
            "fleet_redis_seconds",
            "Redis script latency, by operation",
            m.fleet.duration.clone(),
        );
        registry.register(
            "console_engines",
            "Console-mode engines running, by instance (1 while one runs)",
            m.engine.live.clone(),
        );
        registry.register(
            "console_recordings",
            "Console-mode recordings being written, by instance ([recording])",
            m.engine.recordings.clone(),
        );
        registry.register(
            "console_recorded_bytes",
            "Bytes written to recordings, by instance",
            m.engine.recorded_bytes.clone(),
        );
        registry.register(
            "console_recordings_stopped",
            "Recordings stopped before their session ended, by instance and cause (write_error: the disk failed or is full; slow_disk: the disk fell more than 64 MiB behind; open_error: the file could not be created)",
            m.engine.recordings_stopped.clone(),
        );
        registry.register(
            "console_resumes",
            "Console connections had back after a drop, by instance and cause (closed: a close frame; dropped: the connection ended without one; failed; unanswered_pings; decode_error)",
            m.engine.resumes.clone(),
        );
        registry.register(
            "console_without_upstream_seconds",
            "Time console-mode viewers spent without a console connection (drop to resume), by instance",
            m.engine.without_upstream.clone(),
        );
        registry.register(
            "console_viewers",
            "Viewers connected to a console engine now, by instance",
            m.engine.viewers.clone(),
        );
        registry.register(
            "console_frames",
            "Updates decoded from consoles, by instance",
            m.engine.frames.clone(),
        );
        registry.register(
            "console_rects",
            "Rectangles sent to console-mode viewers, by encoding",
            m.engine.rects.clone(),
        );
        registry.register(
            "console_encoded_bytes",
            "Bytes of rectangles sent to console-mode viewers, by encoding",
            m.engine.encoded_bytes.clone(),
        );
        registry.register(
            "console_input_dropped",
            "Viewer input not sent to a console, by instance and cause (view_only, no_console)",
            m.engine.input_dropped.clone(),
        );
        Metrics { registry, ..m }
    }

    /// A viewer's input was not sent to the console.
    pub(crate) fn engine_input_dropped(&self, instance: &str, cause: &str) {
        self.engine
            .input_dropped
            .get_or_create(&InstanceCause {
                instance: instance.into(),
                cause: cause.into(),
            })
            .inc();
    }

    /// A recording started (+1) or ended (−1).
    pub(crate) fn recording_live(&self, instance: &str, delta: i64) {
        self.engine
            .recordings
            .get_or_create(&Instance {
                instance: instance.into(),
            })
            .inc_by(delta);
    }

    /// `n` bytes were written to a recording.
    pub(crate) fn recorded(&self, instance: &str, n: u64) {
        self.engine
            .recorded_bytes
            .get_or_create(&Instance {
                instance: instance.into(),
            })
            .inc_by(n);
    }

    /// A recording stopped early (the session went on).
    pub(crate) fn recording_stopped(&self, instance: &str, cause: &str) {
        self.engine
            .recordings_stopped
            .get_or_create(&InstanceCause {
                instance: instance.into(),
                cause: cause.into(),
            })
            .inc();
    }

    /// A console engine started (+1) or ended (−1).
    pub(crate) fn engine_live(&self, instance: &str, delta: i64) {
        self.engine
            .live
            .get_or_create(&Instance {
                instance: instance.into(),
            })
            .inc_by(delta);
    }

    /// A console was had back after `seconds` without it.
    pub(crate) fn engine_resume(&self, instance: &str, cause: &str, seconds: f64) {
        self.engine
            .resumes
            .get_or_create(&InstanceCause {
                instance: instance.into(),
                cause: cause.into(),
            })
            .inc();
        self.engine
            .without_upstream
            .get_or_create(&Instance {
                instance: instance.into(),
            })
            .inc_by(seconds);
    }

    /// A viewer joined (+1) or left (−1) an engine.
    pub(crate) fn engine_viewers(&self, instance: &str, delta: i64) {
        self.engine
            .viewers
            .get_or_create(&Instance {
                instance: instance.into(),
            })
            .inc_by(delta);
    }

    /// `n` updates decoded from a console.
    pub(crate) fn engine_frames(&self, instance: &str, n: u64) {
        self.engine
            .frames
            .get_or_create(&Instance {
                instance: instance.into(),
            })
            .inc_by(n);
    }

    /// Rectangles and bytes sent to a viewer in `encoding`.
    pub(crate) fn engine_encoded(&self, encoding: &str, rects: u64, bytes: u64) {
        let l = EncodingLabel {
            encoding: encoding.into(),
        };
        self.engine.rects.get_or_create(&l).inc_by(rects);
        self.engine.encoded_bytes.get_or_create(&l).inc_by(bytes);
    }

    /// A session opened.
    pub(crate) fn session_open(&self, instance: &str) {
        self.sessions_active
            .get_or_create(&Instance {
                instance: instance.into(),
            })
            .inc();
    }

    /// A session ended with `outcome` (`ok`, or a refusal label) after moving bytes.
    pub(crate) fn session_end(
        &self,
        instance: &str,
        outcome: &str,
        to_upstream: u64,
        to_client: u64,
    ) {
        self.sessions_active
            .get_or_create(&Instance {
                instance: instance.into(),
            })
            .dec();
        self.sessions
            .get_or_create(&InstanceOutcome {
                instance: instance.into(),
                outcome: outcome.into(),
            })
            .inc();
        self.bytes
            .get_or_create(&Direction {
                direction: "to_upstream".into(),
            })
            .inc_by(to_upstream);
        self.bytes
            .get_or_create(&Direction {
                direction: "to_client".into(),
            })
            .inc_by(to_client);
    }

    /// What became of one attempt to get a URL for `instance`: `minted`, `not_minted`
    /// (the cloud answered with a code), `never_sent`, `unknown` (sent, no usable answer),
    /// `budget_exhausted` and `not_running` (nothing sent), `cancelled` (the viewer left,
    /// a takeover or shutdown).
    pub(crate) fn url_mint(&self, instance: &str, result: &str) {
        self.url_mints
            .get_or_create(&InstanceResult {
                instance: instance.into(),
                result: result.into(),
            })
            .inc();
    }

    /// Time spent waiting for budget.
    pub(crate) fn budget_waited(&self, seconds: f64) {
        self.budget_wait.observe(seconds);
    }

    /// A URL's age when dialled.
    pub(crate) fn url_age(&self, seconds: f64) {
        self.url_age.observe(seconds);
    }

    /// How long the upstream dial took.
    pub(crate) fn upstream_handshake(&self, seconds: f64) {
        self.upstream_handshake.observe(seconds);
    }

    /// Why a session ended (a fixed label).
    pub fn close(&self, reason: &'static str) {
        self.closes
            .get_or_create(&Reason {
                reason: reason.into(),
            })
            .inc();
    }

    /// Sets the budget gauge of `instance`.
    pub(crate) fn set_budget(&self, instance: &str, remaining: u32) {
        self.budget_remaining
            .get_or_create(&Instance {
                instance: instance.into(),
            })
            .set(i64::from(remaining));
    }

    /// Whether the fleet's Redis answers.
    pub(crate) fn fleet_up(&self, up: bool) {
        self.fleet.up.set(i64::from(up));
    }

    /// A Redis call (`op`) failed.
    pub(crate) fn fleet_error(&self, op: &'static str) {
        self.fleet.errors.get_or_create(&Op { op: op.into() }).inc();
    }

    /// Something done without Redis (`what`: a fixed label).
    pub(crate) fn fleet_fallback(&self, what: &'static str) {
        self.fleet
            .fallbacks
            .get_or_create(&What { what: what.into() })
            .inc();
    }

    /// One Redis call's latency.
    pub(crate) fn fleet_op(&self, op: &'static str, seconds: f64) {
        self.fleet
            .duration
            .get_or_create(&Op { op: op.into() })
            .observe(seconds);
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl crate::cloud::client::ApiObserver for Metrics {
    fn api_result(&self, action: &'static str, code: Option<&str>, seconds: f64) {
        let code = match code {
            None => "ok",
            Some(c) if KNOWN_CODES.contains(&c) => c,
            Some(c) if c.starts_with("UnsupportedOperation.InstanceState") => {
                "UnsupportedOperation.InstanceState"
            }
            Some(c) if c.starts_with("transport") || c.starts_with("http_") || c == "parse" => c,
            Some(_) => "other",
        };
        self.api_requests
            .get_or_create(&ActionCode {
                action: action.into(),
                code: code.into(),
            })
            .inc();
        self.api_duration
            .get_or_create(&Action {
                action: action.into(),
            })
            .observe(seconds);
    }
}
