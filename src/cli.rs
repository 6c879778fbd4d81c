//! The command line (clap derive): `serve`, `demo`, `sim`, `url`, `check`, `connect`,
//! `screenshot`, `type`, `keys`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    /// Save the console's screen as a PNG.
    #[command(
        after_help = "With --via, the daemon uses its live console when it has one (no URL spent); otherwise it connects once, spends one URL and says so (the note on stderr). Exit codes: 0 ok, 64 usage, 69 the daemon is unreachable or could not take the picture, 77 the token was refused."
    )]
    Screenshot {
        /// Instance id or name.
        instance: String,
        /// Where to write the PNG (default: INSTANCE.png; `-` for stdout).
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// How to reach the console.
        #[command(flatten)]
        via: ViaArgs,
    },
    /// Type text into the console as key presses (US layout).
    #[command(
        after_help = "TEXT is printable ASCII; a newline is Enter and a tab is Tab (in bash: $'ls -l\\n'); anything else is refused before a key is sent. Text starting with - goes after --. For other keys use `tcvnc keys`. Exit codes: 0 ok, 64 untypable text, 69 the daemon is unreachable or could not type, 77 the token was refused or gives no control."
    )]
    Type {
        /// Instance id or name.
        instance: String,
        /// The text.
        text: String,
        /// How to reach the console.
        #[command(flatten)]
        via: ViaArgs,
    },
    /// Press key combinations on the console, one after another.
    #[command(
        after_help = "A COMBO is key names joined by - or +, case-insensitive: modifiers ctrl (control), alt, shift, super (win, meta), then one key: enter, tab, esc, backspace, delete, insert, home, end, pageup, pagedown, up, down, left, right, space, f1…f12, sysrq, print, pause, menu, or a single letter, digit or punctuation character. Examples: ctrl-alt-delete; alt-f2; alt-sysrq-b; shift-tab enter. Exit codes: 0 ok, 64 unknown names, 69 the daemon is unreachable or could not send them, 77 the token was refused or gives no control."
    )]
    Keys {
        /// Instance id or name.
        instance: String,
        /// Key combinations, pressed in order (e.g. ctrl-alt-delete, alt-f2, enter).
        #[arg(required = true, value_name = "COMBO")]
        combos: Vec<String>,
        /// How to reach the console.
        #[command(flatten)]
        via: ViaArgs,
    },
    /// Serve a recording read-only to any VNC viewer (native or noVNC).
    #[command(
        after_help = "FILE is a recording from [recording] dir (or a websockify --record file). Playback starts when the first viewer connects and restarts for the next one once every viewer left; at the end the last screen stays. The desktop name says when the recording ended. Listeners are on loopback unless given otherwise; nothing in a recording is a secret tcvnc holds, but its screen may be: other addresses need [http] auth through a config, so play refuses them. Exit codes: 0 ok, 64 usage or a file that is not a recording, 1 a listener could not bind."
    )]
    Play {
        /// The recording.
        file: PathBuf,
        /// Raw TCP listener for native viewers.
        #[arg(long, default_value = "127.0.0.1:5900")]
        tcp: SocketAddr,
        /// HTTP listener for noVNC (page at /, websocket at /vnc/INSTANCE).
        #[arg(long, default_value = "127.0.0.1:6080")]
        http: SocketAddr,
        /// Playback speed: 2 plays twice as fast, 0.5 at half speed.
        #[arg(long, default_value_t = 1.0, value_parser = parse_speed)]
        speed: f64,
        /// Start this far into the recording (e.g. 90s, 1h2m).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        from: Option<std::time::Duration>,
    },
    /// Turn a recording into a video (with ffmpeg) or PNG frames.
    #[command(
        after_help = "OUT ending in .mp4, .mkv, .webm, .mov or .avi is a video made by ffmpeg (frames piped to it at --fps); when ffmpeg is not installed, or OUT is anything else, OUT is a directory of PNG frames, one every --interval (frame-000001-000m01.000s.png …). Exit codes: 0 ok, 64 usage or a file that is not a recording, 1 writing failed."
    )]
    Export {
        /// The recording.
        file: PathBuf,
        /// The video file, or the directory for PNG frames.
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: PathBuf,
        /// Frames per second of a video.
        #[arg(long, default_value_t = 10)]
        fps: u32,
        /// Time between PNG frames.
        #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
    },
}

/// A playback speed: a positive number up to 1000.
fn parse_speed(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number (e.g. 2 or 0.5)"))?;
    if v.is_finite() && v > 0.0 && v <= 1000.0 {
        Ok(v)
    } else {
        Err(format!("{s} is out of range: more than 0, at most 1000"))
    }
}

/// How `screenshot`, `type` and `keys` reach a console: a running daemon (`--via`), or
/// one-shot (mint one URL, connect, act, leave) from the config and region.
#[derive(Debug, Clone, Args)]
pub struct ViaArgs {
    /// Ask the tcvnc daemon at this address (its [http] listen), e.g. http://127.0.0.1:6080.
    #[arg(long, value_name = "URL", conflicts_with_all = ["region", "config"])]
    pub via: Option<String>,
    /// File holding the daemon's bearer token (its [http] token_file); default: $TCVNC_TOKEN.
    #[arg(long, value_name = "FILE", requires = "via")]
    pub token_file: Option<PathBuf>,
    /// Region (one-shot mode; default: the target's, [cloud] region, or TENCENTCLOUD_REGION).
    #[arg(long)]
    pub region: Option<String>,
    /// Config file (one-shot mode).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
}
