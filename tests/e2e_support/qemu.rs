//! QEMU as a console: its VNC server on a free loopback display (`-vnc
//! 127.0.0.1:0,to=99`, the port read back over QMP), controlled over QMP, killed when
//! dropped.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::viewers::{imgtool, vncdo};
use super::{poll, STEP};

/// QEMU with its VNC server on a free loopback display, controlled over QMP.
pub struct Qemu {
    child: Child,
    /// The VNC server's port on 127.0.0.1.
    pub port: u16,
    qmp: BufReader<tokio::net::UnixStream>,
    password: Option<String>,
    _dir: tempfile::TempDir,
}

impl Qemu {
    /// Starts QEMU (no disk: SeaBIOS ends at "No bootable device"), with a VNC password
    /// when one is given.
    pub async fn start(password: Option<&str>) -> Qemu {
        let dir = tempfile::tempdir().expect("tmp");
        let sock = dir.path().join("qmp.sock");
        let vnc = if password.is_some() {
            "127.0.0.1:0,to=99,password=on"
        } else {
            "127.0.0.1:0,to=99"
        };
        let child = Command::new("qemu-system-x86_64")
            .args([
                "-display",
                "none",
                "-vnc",
                vnc,
                "-m",
                "64",
                "-nodefaults",
                "-vga",
                "std",
                "-no-reboot",
            ])
            .stdout(Stdio::null())
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", sock.display()))
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("qemu-system-x86_64 is installed (bash .ci/run installs it)");
        let stream = poll("QEMU's QMP socket", STEP, || async {
            tokio::net::UnixStream::connect(&sock)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        let mut q = Qemu {
            child,
            port: 0,
            qmp: BufReader::new(stream),
            password: password.map(str::to_owned),
            _dir: dir,
        };
        q.read_reply().await; // greeting
        q.qmp(json!({"execute": "qmp_capabilities"})).await;
        if let Some(pw) = password {
            let r = q.qmp(json!({"execute": "set_password", "arguments": {"protocol": "vnc", "password": pw}})).await;
            assert!(r.get("return").is_some(), "set_password: {r}");
        }
        let r = q.qmp(json!({"execute": "query-vnc"})).await;
        q.port = r["return"]["service"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .expect("vnc port");
        q
    }

    async fn read_reply(&mut self) -> Value {
        loop {
            let mut line = String::new();
            let n = tokio::time::timeout(STEP, self.qmp.read_line(&mut line))
                .await
                .expect("qmp answers")
                .expect("qmp read");
            assert!(n > 0, "qmp closed");
            let v: Value = serde_json::from_str(&line).expect("qmp json");
            if v.get("event").is_none() {
                return v;
            }
        }
    }

    /// Sends one QMP command; its answer.
    pub async fn qmp(&mut self, cmd: Value) -> Value {
        let mut line = cmd.to_string();
        line.push('\n');
        self.qmp
            .get_mut()
            .write_all(line.as_bytes())
            .await
            .expect("qmp write");
        self.read_reply().await
    }

    /// The VNC server as vncdotool names it (`127.0.0.1::PORT`).
    pub fn server(&self) -> String {
        format!("127.0.0.1::{}", self.port)
    }

    /// The VNC server as the simulator's `--backend` names it.
    pub fn backend(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits (bounded polling) until SeaBIOS has printed "No bootable device", then pauses
    /// the VM so that the screen (blinking cursor included) is frozen.
    pub async fn settle(&mut self, dir: &Path) {
        let shot = dir.join("boot.png");
        let server = self.server();
        let pw = self.password.clone();
        poll("SeaBIOS's last line", Duration::from_secs(60), || async {
            vncdo(&server, pw.as_deref(), &shot).await?;
            let lit = imgtool(&["lit", &shot.display().to_string(), "113", "127"]).await;
            match lit["lit"].as_u64().unwrap_or(0) {
                n if n > 50 => Ok(()),
                n => Err(format!("{n} lit pixels in rows 113..127")),
            }
        })
        .await;
        let r = self.qmp(json!({"execute": "stop"})).await;
        assert!(r.get("return").is_some(), "stop: {r}");
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
