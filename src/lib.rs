//! tcvnc: a local VNC (TCP) and noVNC (websocket) endpoint for Tencent Cloud instance
//! consoles.
//!
//! When a client connects, tcvnc spends one unit of the instance's reconnect budget,
//! calls `DescribeInstanceVncUrl`, dials the one-time `wss://` URL at once and bridges
//! the RFB byte stream.
//!
//! # Data flow
//!
//! ```text
//! listen ─ guard ─ session ─ claims ─ mint ─ budget ─ cloud      (one URL)
//!                     │                                 └──── upstream   (dial the gateway)
//!                     └─ rfb (both handshakes) ─ bridge ─ client ⇄ ws   (bytes both ways)
//! ```
//!
//! # Layout
//!
//! - [`cmd`]: one file per subcommand; [`cli`] the command line; [`exit`] the exit codes.
//! - [`daemon`]: the serve loop, draining and SIGHUP reload; [`app`] the shared state.
//! - [`config`]: the TOML file → a validated `Config`.
//! - [`listen`]: TCP listeners and the HTTP server (Host, token, Origin, websocket upgrade, web UI).
//! - [`guard`]: who may come in: per-address rates, unauthenticated slots, guessing ceilings.
//! - [`session`]: one client from accept to close; [`mint`] decides on each API outcome.
//! - [`claims`]: which session holds each console.
//! - [`discovery`]: instances found through `DescribeInstances` (`[discovery]`), refreshed; ids and names resolved to targets.
//! - [`budget`]: the per-instance URL window and the API rate limit.
//! - [`fleet`]: what replicas share through Redis (`[fleet]`): URL windows, the API rate, console claims.
//! - [`cloud`]: signing, credentials, the API client and its errors, the console URL, instance states.
//! - [`upstream`]: dialling the console URL (TLS, upgrade, checks); [`tls`] the crypto
//!   provider, client configs and the upstream's TLS stream (rustls's unbuffered API).
//! - [`rfb`]: the RFB handshake on both sides, VNC authentication, messages.
//! - [`bridge`]: the two pumps; [`client`] the viewer's stream (TCP or websocket); [`ws`] RFC 6455 framing.
//! - [`console`]: console mode's codec layer so far (framebuffer, decoders, per-viewer
//!   encoders), its status banner, screenshots as PNG and text and keys as key events; not
//!   wired into sessions yet.
//! - [`outcome`]: what each party is told when a session fails; [`logsum`] summarised repeats.
//! - `sim` (cargo feature `sim`, on by default): the cloud simulator.
//! - [`metrics`], [`systemd`], [`shutdown`], [`redact`], [`tls`], [`net`], [`http_util`]: plumbing.

pub mod app;
pub mod bridge;
pub mod budget;
pub mod claims;
pub mod cli;
pub mod client;
pub mod cloud;
pub mod cmd;
pub mod config;
pub mod console;
pub mod daemon;
pub mod discovery;
pub mod engine;
pub mod exit;
pub mod fleet;
pub mod guard;
pub mod http_util;
pub mod listen;
pub mod logsum;
pub mod metrics;
pub mod mint;
pub mod net;
pub mod outcome;
pub mod record;
pub mod redact;
pub mod rfb;
pub mod session;
pub mod shutdown;
#[cfg(feature = "sim")]
pub mod sim;
pub mod systemd;
pub mod tls;
pub mod upstream;
pub mod ws;
