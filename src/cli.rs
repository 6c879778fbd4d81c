//! The command line (clap derive): `serve`, `demo`, `sim`, `url`, `check`, `connect`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Local VNC and noVNC endpoint for Tencent Cloud instance consoles.
#[derive(Debug, Parser)]
#[command(name = "tcvnc", version, about, long_about = None)]
pub struct Cli {
    /// Log format on stderr; the filter comes from RUST_LOG (default: info).
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, span fields included.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (default config: ./tcvnc.toml, then /etc/tcvnc/tcvnc.toml).
    Serve {
        /// Config file.
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Simulator and daemon in one process; no credentials needed.
    Demo {
        /// Raw TCP listener for native viewers.
        #[arg(long, default_value = "127.0.0.1:5901")]
        tcp: SocketAddr,
        /// HTTP listener (websocket at /vnc/ins-demo0001, web UI at /).
        #[arg(long, default_value = "127.0.0.1:6080")]
        http: SocketAddr,
        /// A real VNC server to show instead of the built-in test pattern.
        #[arg(long, value_name = "HOST:PORT")]
        backend: Option<String>,
    },
    /// The cloud simulator alone; prints one JSON line with its endpoints.
    Sim {
        /// API listen address (also STS and metadata).
        #[arg(long, default_value = "127.0.0.1:0")]
        api: SocketAddr,
        /// Gateway listen address.
        #[arg(long, default_value = "127.0.0.1:0")]
        gateway: SocketAddr,
        /// Backend VNC server; default: the built-in test pattern.
        #[arg(long, value_name = "HOST:PORT")]
        backend: Option<String>,
        /// SecretId the API accepts (default: the public demo key).
        #[arg(long, requires = "secret_key")]
        secret_id: Option<String>,
        /// SecretKey the API accepts.
        #[arg(long, requires = "secret_id")]
        secret_key: Option<String>,
        /// TOML file with [[instance]] tables (id, state, region, name, zone, tags) replacing the defaults.
        #[arg(long)]
        instances: Option<PathBuf>,
        /// Where to write the gateway's CA certificate (PEM).
        #[arg(long)]
        ca_file: Option<PathBuf>,
    },
    /// Mint a console URL and print the browser console address.
    Url {
        /// Instance id (ins-xxxxxxxx or lhins-xxxxxxxx).
        instance: String,
        /// Region (default: the target's, [cloud] region, or TENCENTCLOUD_REGION).
        #[arg(long)]
        region: Option<String>,
        /// Config file.
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
        /// API endpoint override (https://…, or http:// on loopback).
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Validate the config and credentials; report each target's state (mints nothing).
    Check {
        /// Config file.
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Probe a health URL (exit 0 when it answers 200): the container HEALTHCHECK.
    Health {
        /// e.g. http://127.0.0.1:6080/healthz
        #[arg(default_value = "http://127.0.0.1:6080/healthz")]
        url: String,
    },
    /// Print shell completions.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    Man,
    /// One-shot: listen on a free local port, start a viewer, exit after it.
    Connect {
        /// Instance id.
        instance: String,
        /// Region.
        #[arg(long)]
        region: Option<String>,
        /// Viewer command; `{}` is replaced by HOST::PORT (default: $VNC_VIEWER, vncviewer…).
        #[arg(long)]
        viewer: Option<String>,
        /// Config file.
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
}
