//! tcvnc: a local VNC (TCP) and noVNC (websocket) endpoint for Tencent Cloud instance
//! consoles.
//!
//! When a client connects, tcvnc spends one unit of the instance's reconnect budget,
//! calls `DescribeInstanceVncUrl`, dials the one-time `wss://` URL at once and bridges
//! the RFB byte stream.
//!
//! # Layout
//!
//! - [`config`], [`cli`], [`cmd`]: configuration and commands; [`daemon`] wires `serve` and `demo`.
//! - [`cloud`]: signing, credentials, the API client and its errors, the console URL.
//! - [`budget`]: per-instance reconnect budget and API rate limit.
//! - [`sim`]: the cloud simulator (API, STS, metadata, gateway, test-pattern server).
//! - [`rfb`]: RFB messages.
//! - [`redact`], [`tls`], [`http_util`], [`shutdown`]: shared plumbing.

pub mod app;
pub mod bridge;
pub mod budget;
pub mod claims;
pub mod cli;
pub mod client;
pub mod cloud;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod guard;
pub mod http_util;
pub mod listen;
pub mod logsum;
pub mod metrics;
pub mod net;
pub mod outcome;
pub mod redact;
pub mod rfb;
pub mod session;
pub mod shutdown;
pub mod sim;
pub mod systemd;
pub mod tls;
pub mod upstream;
pub mod ws;
