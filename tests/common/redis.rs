//! A real Redis for the fleet tests: Debian's `redis-server`, started in the foreground
//! on a loopback port (no persistence: `--save '' --appendonly no`), killed at the end.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// True when `redis-server` can be run; otherwise says loudly that `name` was skipped.
pub fn available(name: &str) -> bool {
    let ok = std::process::Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {name}: redis-server is not installed (apt-get install redis-server; .ci/run does)"
        );
    }
    ok
}

/// A running `redis-server`.
pub struct RedisServer {
    pub port: u16,
    pub password: Option<String>,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free loopback port (another port is tried when the one picked
    /// was taken before Redis bound it).
    pub async fn start(password: Option<&str>) -> RedisServer {
        let mut last = String::new();
        for _ in 0..8 {
            let port = {
                let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                l.local_addr().expect("addr").port()
            };
            match spawn(port, password).await {
                Ok(child) => {
                    return RedisServer {
                        port,
                        password: password.map(str::to_owned),
                        child: Some(child),
                    }
                }
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not start: {last}");
    }

    /// `redis://[:password@]127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    /// Kills it with SIGKILL (its data is lost: no persistence) and waits for the end.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill().await;
        }
    }

    /// Starts it again on the same port, empty.
    pub async fn restart(&mut self) {
        self.kill().await;
        let mut last = String::new();
        for _ in 0..20 {
            match spawn(self.port, self.password.as_deref()).await {
                Ok(c) => {
                    self.child = Some(c);
                    return;
                }
                // The old socket may linger a moment.
                Err(e) => last = e,
            }
        }
        panic!("redis-server did not restart on {}: {last}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.start_kill();
        }
    }
}

/// Starts `redis-server` on `port` and waits for "Ready to accept connections".
async fn spawn(port: u16, password: Option<&str>) -> Result<Child, String> {
    let mut cmd = Command::new("redis-server");
    cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--protected-mode", "no", "--loglevel", "notice"]);
    if let Some(p) = password {
        cmd.args(["--requirepass", p]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run redis-server: {e}"))?;
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(10), async {
        let mut seen = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("Ready to accept connections") {
                return Ok(());
            }
            seen.push(l);
        }
        Err(seen.join("\n"))
    })
    .await;
    match ready {
        Ok(Ok(())) => {
            // Keep reading, so the pipe never fills.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            Ok(child)
        }
        Ok(Err(log)) => {
            let _ = child.kill().await;
            Err(log)
        }
        Err(_) => {
            let _ = child.kill().await;
            Err("no 'Ready to accept connections' within 10 s".into())
        }
    }
}
