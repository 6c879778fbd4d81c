//! The processes a benchmark run starts (simulator, tcvnc, websocat, the pipes), and what
//! the kernel tells about them: CPU time and resident memory from `/proc`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

/// The tcvnc binary cargo built for this bench.
pub const TCVNC: &str = env!("CARGO_BIN_EXE_tcvnc");

/// A child process, killed when dropped.
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    /// Starts `cmd` with stderr appended to `log`; stdout is piped when `want_line`, and its
    /// first line is returned.
    pub fn start(
        name: &str,
        mut cmd: Command,
        log: &Path,
        want_line: bool,
    ) -> Result<(Proc, Option<String>)> {
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        cmd.stdin(Stdio::null()).stderr(err);
        cmd.stdout(if want_line {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let mut child = cmd.spawn().with_context(|| format!("start {name}"))?;
        let line = if want_line {
            let out = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
            let mut reader = BufReader::new(out);
            let mut line = String::new();
            reader.read_line(&mut line)?;
            if line.is_empty() {
                let _ = child.kill();
                bail!("{name} exited before it was ready; see {}", log.display());
            }
            // Keep draining stdout so the child never blocks on a full pipe.
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            Some(line.trim().to_owned())
        } else {
            None
        };
        Ok((
            Proc {
                name: name.to_owned(),
                child,
            },
            line,
        ))
    }

    /// [`Proc::start`] with stderr in `work`/`name`.log.
    pub fn start_in(
        work: &Path,
        name: &str,
        cmd: Command,
        want_line: bool,
    ) -> Result<(Proc, Option<String>)> {
        Proc::start(name, cmd, &work.join(format!("{name}.log")), want_line)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in KiB.
    pub fn rss_kib(&self) -> Result<u64> {
        rss_kib(self.pid())
    }

    /// Fails when the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status})", self.name);
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second for `/proc/*/stat` (USER_HZ; 100 on every Linux ABI we run on).
const USER_HZ: f64 = 100.0;

/// User + system CPU seconds of `pid` so far (all threads).
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    // Nanoseconds on CPU per thread (`/proc/PID/task/*/schedstat`): `stat`'s utime and
    // stime count 10 ms ticks, too coarse for the short, paced cases. Falls back to
    // `stat` where schedstat is missing.
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        let mut ns: u64 = 0;
        let mut seen = false;
        for t in tasks.flatten() {
            if let Ok(text) = std::fs::read_to_string(t.path().join("schedstat")) {
                if let Some(v) = text
                    .split_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                {
                    ns += v;
                    seen = true;
                }
            }
        }
        if seen {
            return Ok(ns as f64 / 1e9);
        }
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces) start at index 2 (state).
    let rest = stat
        .rsplit_once(')')
        .ok_or_else(|| anyhow!("odd /proc/{pid}/stat"))?
        .1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime is field 14, stime 15 (1-based in proc(5)); `rest` starts at field 3.
    let utime: f64 = f.get(11).ok_or_else(|| anyhow!("no utime"))?.parse()?;
    let stime: f64 = f.get(12).ok_or_else(|| anyhow!("no stime"))?.parse()?;
    Ok((utime + stime) / USER_HZ)
}

/// Resident set size of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))?
        .parse()
        .map_err(Into::into)
}

/// The soft limit on open files of this process (children inherit it).
pub fn nofile_limit() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3).map(str::to_owned))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024)
}

/// A loopback port free at the time of asking.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `n` distinct loopback addresses free at the time of asking (all held while choosing,
/// so none is handed out twice).
pub fn free_addrs(n: usize) -> Result<Vec<SocketAddr>> {
    let held = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    held.iter()
        .map(|l| l.local_addr().map_err(Into::into))
        .collect()
}

/// Waits until `addr` accepts a TCP connection.
pub async fn wait_listening(addr: SocketAddr, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} never listened on {addr}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until tcvnc's `/readyz` answers 200.
pub async fn wait_ready(http: SocketAddr, proc: &mut Proc, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if http_get(http, "/readyz").await.is_ok() {
            return Ok(());
        }
        if let Err(e) = proc.check_alive() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(5).collect();
            bail!("{e}: {}", tail.join("\n"));
        }
        if Instant::now() > deadline {
            bail!("tcvnc on {http} never became ready");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// GETs `path` from an HTTP/1.1 server on `addr` (tcvnc's listener): the body of a 200
/// answer.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    if !text.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", text.lines().next().unwrap_or("no answer"));
    }
    Ok(text
        .split_once("\r\n\r\n")
        .map_or_else(String::new, |(_, body)| body.to_owned()))
}

/// A running simulator (`tcvnc sim`).
pub struct Sim {
    pub proc: Proc,
    pub api: String,
    /// tcvnc's own API client for this simulator, built once: calls reuse its
    /// connection, as the daemon's do.
    api_client: std::sync::Arc<tcvnc::cloud::client::CloudClient>,
    pub ca_file: PathBuf,
}

impl Sim {
    /// Starts `tcvnc sim` with `instances` and, for the data cases, the bench backend.
    pub async fn start(
        work: &Path,
        tag: &str,
        instances: &Path,
        backend: Option<SocketAddr>,
    ) -> Result<Sim> {
        let ca = work.join(format!("sim-{tag}-ca.pem"));
        let mut cmd = Command::new(TCVNC);
        cmd.env("RUST_LOG", "warn")
            .arg("sim")
            .arg("--instances")
            .arg(instances)
            .arg("--ca-file")
            .arg(&ca);
        if let Some(b) = backend {
            cmd.arg("--backend").arg(b.to_string());
        }
        let (proc, line) = Proc::start_in(work, &format!("sim-{tag}"), cmd, true)?;
        let v: serde_json::Value =
            serde_json::from_str(&line.unwrap_or_default()).context("sim's JSON line")?;
        let field = |k: &str| {
            v.get(k)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| anyhow!("sim line has no {k}"))
        };
        let api = field("api")?;
        let sim = Sim {
            proc,
            api_client: api_client(&api).await?,
            api,
            ca_file: ca,
        };
        sim.knobs(None, None).await?;
        Ok(sim)
    }

    /// Sets the benchmark knobs: a token may be reused (websocat dials one fixed URL),
    /// the API takes more than 10 requests a second (10,000 sessions would take 17 min),
    /// the gateway's frames carry at most `frame_max` bytes, and minted URLs point at
    /// `gateway` instead of the simulator's own gateway.
    pub async fn knobs(&self, frame_max: Option<usize>, gateway: Option<SocketAddr>) -> Result<()> {
        self.faults(serde_json::json!({
            "frame_max": frame_max,
            "gateway_base": gateway.map(|g| format!("wss://{g}")),
        }))
        .await
    }

    /// Sets the simulator's fault knobs to `extra` (an object, such as
    /// `{"drop_after": "2s"}`) on top of the benchmark's own (`reuse_tokens`,
    /// `api_rate_limit`): every POST replaces the whole set.
    pub async fn faults(&self, extra: serde_json::Value) -> Result<()> {
        let mut v = serde_json::json!({
            "reuse_tokens": true,
            "api_rate_limit": 5000,
        });
        if let (Some(base), Some(more)) = (v.as_object_mut(), extra.as_object()) {
            base.extend(more.clone());
        }
        self.post("/_sim/faults", &v.to_string()).await?;
        Ok(())
    }

    /// Mints a console URL for `instance` (one signed `DescribeInstanceVncUrl`).
    pub async fn mint_url(&self, instance: &str) -> Result<String> {
        let got = tcvnc::mint::mint(&self.api_client, None, instance, "ap-guangzhou")
            .await
            .map_err(|e| anyhow!("{e}"))?;
        Ok(got.minted.url.expose().to_owned())
    }

    /// POSTs JSON to the simulator's control API.
    pub async fn post(&self, path: &str, body: &str) -> Result<String> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = self.api.trim_start_matches("http://");
        let mut s = tokio::net::TcpStream::connect(host).await?;
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await?;
        let mut answer = String::new();
        s.read_to_string(&mut answer).await?;
        if !answer.starts_with("HTTP/1.1 200") {
            bail!("simulator refused {path}: {answer}");
        }
        Ok(answer)
    }
}

/// Instance ids for the simulator and tcvnc (`ins-` and 8 hex digits).
pub fn instance_id(n: usize) -> String {
    format!("ins-{n:08x}")
}

/// Writes an instances file with `n` running instances.
pub fn write_instances(path: &Path, n: usize) -> Result<()> {
    let mut t = String::with_capacity(n * 40);
    for i in 0..n {
        t.push_str(&format!("[[instance]]\nid = \"{}\"\n", instance_id(i)));
    }
    std::fs::write(path, t)?;
    Ok(())
}

/// How tcvnc serves a target (its `mode` key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The pure byte bridge: no RFB handshake of its own.
    Transparent,
    /// The RFB-aware bridge: both handshakes, then bytes both ways.
    Bridge,
    /// The console engine: tcvnc decodes the console and serves each viewer itself.
    Console,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Transparent => "transparent",
            Mode::Bridge => "bridge",
            Mode::Console => "console",
        }
    }
}

/// A target in a tcvnc config.
pub struct Target {
    pub instance: String,
    pub listen: Option<SocketAddr>,
    pub mode: Mode,
    /// Console mode: how long the engine outlives its last viewer (tcvnc's default
    /// when `None`).
    pub linger: Option<Duration>,
}

/// A running tcvnc daemon.
pub struct Tcvnc {
    pub proc: Proc,
    pub http: SocketAddr,
}

impl Tcvnc {
    /// Writes a config for `targets` against `sim` and starts `tcvnc serve`.
    pub async fn start(work: &Path, tag: &str, sim: &Sim, targets: &[Target]) -> Result<Tcvnc> {
        Self::start_trusting(work, tag, sim, targets, &sim.ca_file).await
    }

    /// The same, trusting the gateway CAs in `ca` (the simulator's and a third party's).
    pub async fn start_trusting(
        work: &Path,
        tag: &str,
        sim: &Sim,
        targets: &[Target],
        ca: &Path,
    ) -> Result<Tcvnc> {
        Self::start_with(work, tag, sim, targets, ca, "").await
    }

    /// [`Tcvnc::start`] with `[session] type_interval` set (the pause after each key
    /// event that `POST /vnc/<instance>/type` sends).
    pub async fn start_typing(
        work: &Path,
        tag: &str,
        sim: &Sim,
        targets: &[Target],
        type_interval: Duration,
    ) -> Result<Tcvnc> {
        let line = format!("type_interval = \"{}us\"\n", type_interval.as_micros());
        Self::start_with(work, tag, sim, targets, &sim.ca_file, &line).await
    }

    /// [`Tcvnc::start`] with `[recording] dir` set: its console-mode engines record
    /// into `dir`.
    pub async fn start_recording(
        work: &Path,
        tag: &str,
        sim: &Sim,
        targets: &[Target],
        dir: &Path,
    ) -> Result<Tcvnc> {
        let table = format!("[recording]\ndir = \"{}\"\n", dir.display());
        Self::start_with(work, tag, sim, targets, &sim.ca_file, &table).await
    }

    /// The config's `[session]` section ends with `session_extra` (lines of TOML: more of
    /// its keys, then whole tables, which end it).
    async fn start_with(
        work: &Path,
        tag: &str,
        sim: &Sim,
        targets: &[Target],
        ca: &Path,
        session_extra: &str,
    ) -> Result<Tcvnc> {
        let http = loop {
            let a = SocketAddr::from(([127, 0, 0, 1], free_port()?));
            if !targets.iter().any(|t| t.listen == Some(a)) {
                break a;
            }
        };
        let key_file = work.join("secret_key");
        std::fs::write(&key_file, tcvnc::sim::DEMO_SECRET_KEY)?;
        let mut cfg = format!(
            r#"[cloud]
region = "ap-guangzhou"
endpoint = "{api}"
[credentials]
secret_id = "{id}"
secret_key_file = "{key}"
[budget]
api_requests_per_second = 2000
allow_above_documented_limits = true
[upstream]
ca_file = "{ca}"
[http]
listen = "{http}"
[session]
max_sessions = 100000
connections_per_peer_per_minute = 1000000
unauthenticated_per_peer = 100000
{session_extra}"#,
            api = sim.api,
            id = tcvnc::sim::DEMO_SECRET_ID,
            key = key_file.display(),
            ca = ca.display(),
        );
        for t in targets {
            cfg.push_str(&format!(
                "[[target]]\ninstance = \"{}\"\nmode = \"{}\"\n",
                t.instance,
                t.mode.as_str()
            ));
            if let Some(l) = t.listen {
                cfg.push_str(&format!("listen = \"{l}\"\n"));
            }
            if let Some(d) = t.linger {
                cfg.push_str(&format!("linger = \"{}ms\"\n", d.as_millis()));
            }
            if t.mode.as_str() == "console" {
                // Many viewers on one console (the fan-out and memory cases).
                cfg.push_str("on_busy = \"share\"\n");
            }
        }
        let path = work.join(format!("tcvnc-{tag}.toml"));
        std::fs::write(&path, cfg)?;
        let mut cmd = Command::new(TCVNC);
        cmd.env("RUST_LOG", "info")
            .arg("--log-format")
            .arg("json")
            .arg("serve")
            .arg("-c")
            .arg(&path);
        let log = work.join(format!("tcvnc-{tag}.log"));
        let (mut proc, _) = Proc::start(&format!("tcvnc-{tag}"), cmd, &log, false)?;
        wait_ready(http, &mut proc, &log).await?;
        Ok(Tcvnc { proc, http })
    }
}

/// Where websocat is (installed by `scripts/bench`).
pub fn websocat_bin() -> PathBuf {
    std::env::var_os("WEBSOCAT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-tools/bin/websocat"),
        PathBuf::from,
    )
}

/// Starts websocat in tcvnc's place: TCP listener → one wss connection per client.
pub async fn start_websocat(
    work: &Path,
    tag: &str,
    url: &str,
    ca: &Path,
) -> Result<(Proc, SocketAddr)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut cmd = Command::new(websocat_bin());
    cmd.env("SSL_CERT_FILE", ca)
        .arg("-b")
        .arg(format!("tcp-l:{addr}"))
        .arg(url);
    let (proc, _) = Proc::start_in(work, &format!("websocat-{tag}"), cmd, false)?;
    wait_listening(addr, "websocat").await?;
    Ok((proc, addr))
}

/// An identity for websocat's TLS server, issued for 127.0.0.1: writes its CA to `ca_out`
/// and returns the PKCS#12 file websocat reads (made by the `openssl` command).
pub fn websocat_identity(work: &Path, ca_out: &Path) -> Result<PathBuf> {
    let id = tcvnc::sim::gateway::identity([127, 0, 0, 1].into()).map_err(|e| anyhow!("{e}"))?;
    let (cert, key, p12) = (
        work.join("wsgw-cert.pem"),
        work.join("wsgw-key.pem"),
        work.join("wsgw.p12"),
    );
    std::fs::write(&cert, &id.cert_pem)?;
    std::fs::write(&key, &id.key_pem)?;
    std::fs::write(ca_out, &id.ca_pem)?;
    let made = Command::new("openssl")
        .args(["pkcs12", "-export", "-passout", "pass:bench", "-inkey"])
        .arg(&key)
        .arg("-in")
        .arg(&cert)
        .arg("-out")
        .arg(&p12)
        .output()
        .context("openssl (for websocat's PKCS#12 identity)")?;
    if !made.status.success() {
        bail!(
            "openssl pkcs12 failed: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    Ok(p12)
}

/// A third-party TLS websocket gateway: websocat's `wss-l:` (OpenSSL underneath, as
/// many real gateways) in front of `backend`, a frame per read of at most `frame` bytes,
/// with the identity in `p12` (see [`websocat_identity`]).
pub async fn start_websocat_gateway(
    work: &Path,
    frame: usize,
    backend: SocketAddr,
    p12: &Path,
) -> Result<(Proc, SocketAddr)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut cmd = Command::new(websocat_bin());
    cmd.arg("-b")
        .arg("-B")
        .arg(frame.to_string())
        .arg("--pkcs12-der")
        .arg(p12)
        .arg("--pkcs12-passwd")
        .arg("bench")
        .arg(format!("wss-l:{addr}"))
        .arg(format!("tcp:{backend}"));
    let (proc, _) = Proc::start_in(work, &format!("websocat-gateway-{frame}"), cmd, false)?;
    wait_listening(addr, "websocat gateway").await?;
    Ok((proc, addr))
}

/// Starts one of this binary's pipe roles; it prints its listen port first.
pub fn start_role(work: &Path, role: &str, args: &[String]) -> Result<(Proc, SocketAddr)> {
    let exe = std::env::current_exe()?;
    let mut cmd = Command::new(exe);
    cmd.arg("role").arg(role).args(args);
    let (proc, line) = Proc::start_in(work, role, cmd, true)?;
    let addr: SocketAddr = line
        .unwrap_or_default()
        .parse()
        .context("role's address line")?;
    Ok((proc, addr))
}

/// tcvnc's API client against the simulator at `api`, with the demo key. Its limiter is
/// raised like the daemon's, so a timed call never waits for a slot.
async fn api_client(api: &str) -> Result<std::sync::Arc<tcvnc::cloud::client::CloudClient>> {
    let text = format!(
        "[cloud]\nregion = \"ap-guangzhou\"\nendpoint = \"{api}\"\n[credentials]\nsecret_id = \"{}\"\nsecret_key = \"{}\"\n[budget]\napi_requests_per_second = 2000\nallow_above_documented_limits = true\n",
        tcvnc::sim::DEMO_SECRET_ID,
        tcvnc::sim::DEMO_SECRET_KEY
    );
    let cfg = tcvnc::config::Config::parse(&text, "bench.toml", Path::new("."))
        .map_err(|e| anyhow!("{e}"))?;
    tcvnc::app::cloud_client(&cfg, None, &tcvnc::cloud::credentials::Env::default(), None)
        .await
        .map_err(|e| anyhow!("{e}"))
}

/// Starts `x11vnc -reflect console`: a real VNC reflector (an RFB client of `console`
/// and a server to its own viewers), listening on a loopback port of its own.
pub async fn start_x11vnc(
    work: &Path,
    tag: &str,
    console: SocketAddr,
) -> Result<(Proc, SocketAddr)> {
    let port = free_port()?;
    let mut cmd = Command::new("x11vnc");
    cmd.arg("-reflect")
        .arg(console.to_string())
        .args(["-rfbport", &port.to_string()])
        .args(["-localhost", "-shared", "-forever", "-nopw", "-q"]);
    let (proc, _) = Proc::start_in(work, &format!("x11vnc-{tag}"), cmd, false)?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_listening(addr, "x11vnc").await?;
    Ok((proc, addr))
}

/// Where websockify is: `$WEBSOCKIFY`, or the project's `.venv` (`scripts/bench` installs
/// it there).
pub fn websockify_bin() -> PathBuf {
    std::env::var_os("WEBSOCKIFY").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/websockify"),
        PathBuf::from,
    )
}

/// Starts `websockify --record PREFIX PORT TARGET`: a websocket-to-TCP proxy in front of
/// `target` that records each session to `PREFIX.<n>`.
pub async fn start_websockify(
    work: &Path,
    tag: &str,
    target: SocketAddr,
    record: &Path,
) -> Result<(Proc, SocketAddr)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut cmd = Command::new(websockify_bin());
    cmd.arg("--record")
        .arg(record)
        .arg(addr.to_string())
        .arg(target.to_string());
    let (proc, _) = Proc::start_in(work, &format!("websockify-{tag}"), cmd, false)
        .context("websockify (scripts/bench installs it into .venv)")?;
    wait_listening(addr, "websockify").await?;
    Ok((proc, addr))
}

/// websockify's version, or why not.
pub fn websockify_version() -> String {
    let python = websockify_bin().with_file_name("python");
    Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m; print('websockify', m.version('websockify'))",
        ])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("unavailable: {e}"))
}

/// `x11vnc -version`, or why not.
pub fn x11vnc_version() -> String {
    Command::new("x11vnc")
        .arg("-version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|e| format!("unavailable: {e}"))
}
