//! `tcvnc sim` and `tcvnc serve` as separate processes, as users run them: the simulator
//! bridges its gateway to a real VNC server (`--backend`), the daemon under test serves
//! the targets it is given, its JSON log kept for the test to wait on and assert.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{http_get_json, poll};
use crate::common::within;

/// The simulator and the daemon.
pub struct Tcvnc {
    _sim: Child,
    serve: Child,
    /// The simulator's API (and `/_sim/*` knobs).
    pub api: String,
    /// The simulator's gateway.
    pub gateway: String,
    /// The CA of the simulator's certificates.
    pub ca_file: String,
    listeners: Vec<(String, String)>,
    log: Arc<Mutex<Vec<String>>>,
    /// Holds the config; a place for a test's files.
    pub dir: tempfile::TempDir,
}

impl Tcvnc {
    /// Starts the simulator with its gateway bridged to `backend` (`HOST:PORT`) and the
    /// daemon with an HTTP listener and `targets` (`[[target]]` tables); returns once
    /// every listener is logged.
    pub async fn start(backend: &str, targets: &str) -> Tcvnc {
        Tcvnc::launch(Some(backend), targets).await
    }

    /// [`Tcvnc::start`] with the simulator's own console, the test pattern, whose input
    /// log (`GET /_sim/input`) records every key and pointer event that reaches it.
    pub async fn start_pattern(targets: &str) -> Tcvnc {
        Tcvnc::launch(None, targets).await
    }

    async fn launch(backend: Option<&str>, targets: &str) -> Tcvnc {
        let dir = tempfile::tempdir().expect("tmp");
        let mut sim = Command::new(env!("CARGO_BIN_EXE_tcvnc"));
        sim.arg("sim");
        if let Some(b) = backend {
            sim.args(["--backend", b]);
        }
        let mut sim = sim
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tcvnc sim");
        let mut lines = BufReader::new(sim.stdout.take().expect("stdout")).lines();
        let first: Value = serde_json::from_str(
            &within(lines.next_line())
                .await
                .expect("read")
                .expect("line"),
        )
        .expect("json");
        let api = first["api"].as_str().expect("api").to_owned();
        let ca_file = first["ca_file"].as_str().expect("ca").to_owned();
        let gateway = first["gateway"].as_str().expect("gw").to_owned();
        let cfg = dir.path().join("tcvnc.toml");
        std::fs::write(
            &cfg,
            format!(
                "[cloud]\nregion = \"ap-guangzhou\"\nendpoint = \"{api}\"\n[upstream]\nca_file = \"{ca_file}\"\n\
                 [http]\nlisten = \"127.0.0.1:0\"\nweb_root = \"/usr/share/novnc\"\n{targets}"
            ),
        )
        .expect("config");
        let mut serve = Command::new(env!("CARGO_BIN_EXE_tcvnc"))
            .args(["--log-format", "json", "serve", "-c"])
            .arg(&cfg)
            .env("TENCENTCLOUD_SECRET_ID", tcvnc::sim::DEMO_SECRET_ID)
            .env("TENCENTCLOUD_SECRET_KEY", tcvnc::sim::DEMO_SECRET_KEY)
            .env("RUST_LOG", "info")
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("tcvnc serve");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut err_lines = BufReader::new(serve.stderr.take().expect("stderr")).lines();
        let log2 = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(l)) = err_lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<Value>(&l) {
                    if v["message"] == "listening" {
                        let _ = tx.send((
                            v["listener"].as_str().unwrap_or("").to_owned(),
                            v["address"].as_str().unwrap_or("").to_owned(),
                        ));
                    }
                }
                log2.lock().expect("log").push(l);
            }
        });
        let mut listeners = Vec::new();
        let expected = 1 + targets.matches("listen").count();
        while listeners.len() < expected {
            listeners.push(within(rx.recv()).await.expect("a listening line"));
        }
        Tcvnc {
            _sim: sim,
            serve,
            api,
            gateway,
            ca_file,
            listeners,
            log,
            dir,
        }
    }

    /// The address a listener (`http`, `tcp <instance>`) logged.
    pub fn addr(&self, listener: &str) -> String {
        self.listeners
            .iter()
            .find(|(n, _)| n == listener)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| panic!("no {listener}"))
    }

    /// `instance`'s TCP listener as vncdotool names it (`HOST::PORT`).
    pub fn vnc(&self, instance: &str) -> String {
        self.addr(&format!("tcp {instance}")).replacen(':', "::", 1)
    }

    /// `GET /_sim/stats`.
    pub async fn sim_stats(&self) -> Value {
        http_get_json(&format!("{}/_sim/stats", self.api)).await
    }

    /// URLs the simulator minted for `instance`.
    pub async fn mints(&self, instance: &str) -> u64 {
        self.sim_stats().await["mints"][instance]
            .as_u64()
            .unwrap_or(0)
    }

    /// `GET /_sim/input`: the key and pointer events that reached `instance`'s test
    /// pattern (started with [`Tcvnc::start_pattern`]), oldest first.
    pub async fn sim_inputs(&self, instance: &str) -> Vec<Value> {
        let v = http_get_json(&format!("{}/_sim/input?instance={instance}", self.api)).await;
        v["inputs"].as_array().cloned().unwrap_or_default()
    }

    /// `GET /api/consoles` of the daemon: `instance`'s entry.
    pub async fn console(&self, instance: &str) -> Value {
        let all = http_get_json(&format!("http://{}/api/consoles", self.addr("http"))).await;
        all["consoles"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["instance"] == instance))
            .cloned()
            .unwrap_or_else(|| panic!("{instance} is not in /api/consoles: {all}"))
    }

    /// `GET /metrics` of the daemon: the value of the sample whose name and labels
    /// start with `sample` (0 when there is none).
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = crate::common::http_client()
            .get(format!("http://{}/metrics", self.addr("http")))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("body");
        text.lines()
            .filter(|l| l.starts_with(sample))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The daemon's log lines that contain `needle`.
    pub fn log_lines(&self, needle: &str) -> Vec<String> {
        self.log
            .lock()
            .expect("log")
            .iter()
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    /// Waits until the daemon has logged `count` lines containing `needle`.
    pub async fn wait_log(&self, needle: &str, count: usize, limit: Duration) -> Vec<String> {
        poll(&format!("{count} log lines with {needle:?}"), limit, || {
            let lines = self.log_lines(needle);
            async move {
                if lines.len() >= count {
                    Ok(lines)
                } else {
                    Err(format!("{} so far", lines.len()))
                }
            }
        })
        .await
    }

    /// Saves the daemon's log as `tests/e2e/artifacts/NAME` (for a failure's reader).
    pub fn save_log(&self, name: &str) -> std::path::PathBuf {
        let p = super::artifacts().join(name);
        let text = self.log.lock().expect("log").join("\n");
        std::fs::write(&p, text).expect("write log");
        p
    }
}

impl Drop for Tcvnc {
    /// Kills both processes; in a failing test, keeps the daemon's log as
    /// `tests/e2e/artifacts/<test>.tcvnc.log` first.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let test = std::thread::current()
                .name()
                .unwrap_or("e2e")
                .replace("::", "-");
            let p = self.save_log(&format!("{test}.tcvnc.log"));
            eprintln!("the daemon's log: {}", p.display());
        }
        let _ = self.serve.start_kill();
    }
}
