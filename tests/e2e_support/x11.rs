//! X desktops as consoles: Xvfb with x11vnc, or TigerVNC's Xvnc, and the X clients that
//! draw their screens (xsetroot, xterm, xclock). Nothing races for a number: the X
//! servers pick a free display themselves (`-displayfd`), x11vnc probes for a free port
//! itself (`-autoport`, the port read from its `PORT=` line), and Xvnc listens on a Unix
//! socket in the desktop's own directory, reached through a loopback TCP port this
//! process bound (port 0) and relays. Everything is killed when the desktop drops.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::viewers::imgtool;
use super::{poll, POLL, STEP};

/// The VNC server of a desktop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vnc {
    /// x11vnc (LibVNCServer) on an Xvfb.
    X11vnc,
    /// TigerVNC's Xvnc: the X server and the VNC server in one.
    Xvnc,
}

/// An X server with a VNC server on it, and the X clients drawing on it.
pub struct Desktop {
    /// The X display (`:N`).
    pub display: String,
    /// The VNC server's loopback TCP port.
    pub port: u16,
    /// The X server and the VNC server.
    servers: Vec<Child>,
    /// X clients (kept until the desktop drops).
    clients: Vec<Child>,
    /// The TCP → Unix socket relay in front of Xvnc.
    relay: Option<tokio::task::JoinHandle<()>>,
    /// Sockets and marker files.
    pub dir: tempfile::TempDir,
}

impl Desktop {
    /// An empty desktop of `width`×`height` at 24 bits served by `vnc`.
    pub async fn start(vnc: Vnc, width: u16, height: u16) -> Desktop {
        let dir = tempfile::tempdir().expect("tmp");
        let mut d = Desktop {
            display: String::new(),
            port: 0,
            servers: Vec::new(),
            clients: Vec::new(),
            relay: None,
            dir,
        };
        match vnc {
            Vnc::X11vnc => {
                let screen = format!("{width}x{height}x24");
                let mut xvfb = Command::new("Xvfb");
                xvfb.args(["-screen", "0", &screen, "-nolisten", "tcp"]);
                d.display = d.x_server(xvfb, "Xvfb (Debian xvfb)").await;
                let mut x11vnc = Command::new("x11vnc")
                    .args(["-display", &d.display])
                    .args(["-autoport", "5900", "-localhost", "-nopw", "-shared"])
                    .args(["-forever", "-noxdamage", "-norc"])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::null())
                    .stdin(Stdio::null())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("x11vnc is installed (bash .ci/run installs it)");
                let mut out = BufReader::new(x11vnc.stdout.take().expect("stdout")).lines();
                d.servers.push(x11vnc);
                d.port = tokio::time::timeout(STEP, async {
                    while let Ok(Some(line)) = out.next_line().await {
                        if let Some(p) = line.trim().strip_prefix("PORT=") {
                            return p.parse().ok();
                        }
                    }
                    None
                })
                .await
                .ok()
                .flatten()
                .expect("x11vnc printed PORT=");
            }
            Vnc::Xvnc => {
                let sock = d.dir.path().join("rfb.sock");
                let mut xvnc = Command::new("Xvnc");
                xvnc.args(["-geometry", &format!("{width}x{height}"), "-depth", "24"])
                    .args(["-rfbport", "-1", "-rfbunixpath"])
                    .arg(&sock)
                    .args([
                        "-SecurityTypes",
                        "None",
                        "-AlwaysShared",
                        "-nolisten",
                        "tcp",
                    ]);
                d.display = d
                    .x_server(xvnc, "Xvnc (Debian tigervnc-standalone-server)")
                    .await;
                poll("Xvnc's RFB socket", STEP, || async {
                    tokio::net::UnixStream::connect(&sock)
                        .await
                        .map(drop)
                        .map_err(|e| e.to_string())
                })
                .await;
                let (port, relay) = relay_to_unix(sock).await;
                d.port = port;
                d.relay = Some(relay);
            }
        }
        d
    }

    /// Starts an X server (`-displayfd 1`: it picks a free display and writes its number
    /// on stdout once it takes clients); the display.
    async fn x_server(&mut self, mut cmd: Command, what: &str) -> String {
        let mut child = cmd
            .args(["-displayfd", "1"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{what} is installed (bash .ci/run installs it): {e}"));
        let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
        self.servers.push(child);
        let n: u32 = tokio::time::timeout(STEP, out.next_line())
            .await
            .unwrap_or_else(|_| panic!("{what} did not start"))
            .expect("read")
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or_else(|| panic!("{what} wrote no display number"));
        format!(":{n}")
    }

    /// The VNC server as vncdotool names it (`127.0.0.1::PORT`).
    pub fn server(&self) -> String {
        format!("127.0.0.1::{}", self.port)
    }

    /// The VNC server as the simulator's `--backend` names it.
    pub fn backend(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// A command for an X client of this desktop.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("DISPLAY", &self.display)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        c
    }

    /// Runs an X client to its end (xsetroot); it must succeed.
    pub async fn run(&self, program: &str, args: &[&str]) {
        let status = tokio::time::timeout(STEP, self.command(program).args(args).status())
            .await
            .unwrap_or_else(|_| panic!("{program} did not finish"))
            .unwrap_or_else(|e| panic!("{program} is installed: {e}"));
        assert!(status.success(), "{program} {args:?}: {status}");
    }

    /// Keeps an X client running until the desktop drops.
    pub fn keep(&mut self, mut cmd: Command) {
        let child = cmd.spawn().expect("X client starts");
        self.clients.push(child);
    }

    /// A file in the desktop's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A still screen: a two-colour plaid and an xterm with a few lines of coloured text
    /// and no blinking cursor (few colours, so Tight stays lossless even for a viewer that
    /// accepts JPEG). Returns once the xterm has printed its text.
    pub async fn draw_still(&mut self) {
        self.run(
            "xsetroot",
            &["-mod", "6", "6", "-fg", "#ff8000", "-bg", "#0040c0"],
        )
        .await;
        let ready = self.path("xterm-ready");
        let script = format!(
            "printf 'tcvnc console mode, end to end\\n\\033[31mred \\033[32mgreen \\033[34mblue\\033[0m\\n'; \
             stty -echo; touch {}; exec sleep 3600",
            ready.display()
        );
        let mut xterm = self.command("xterm");
        xterm
            .args(["-geometry", "40x6+24+24", "-fg", "yellow", "-bg", "#202020"])
            .args([
                "-xrm",
                "XTerm*cursorBlink: false",
                "-e",
                "sh",
                "-c",
                &script,
            ]);
        self.keep(xterm);
        wait_file(&ready).await;
    }

    /// A screen that changes every second: a plain root window and an analog xclock
    /// (`-update 1`: the second hand moves) away from the top rows (the banner's).
    pub async fn draw_clock(&mut self) {
        self.run("xsetroot", &["-solid", "#204060"]).await;
        let mut clock = self.command("xclock");
        clock.args(["-update", "1", "-geometry", "160x160+80+60"]);
        self.keep(clock);
    }

    /// An xterm over the whole screen running `bash --norc` in `cwd` (typed keys reach it
    /// wherever the pointer is: without a window manager, focus follows the pointer).
    /// Returns once bash printed its first prompt.
    pub async fn draw_shell(&mut self, cwd: &Path) {
        self.shell(cwd, &["-geometry", "200x80+0+0"]).await;
    }

    /// [`Desktop::draw_shell`] in a big font (DejaVu Sans Mono at 20 points, through
    /// fontconfig's `Monospace`) and a still cursor: text an OCR reads back reliably.
    pub async fn draw_big_shell(&mut self, cwd: &Path) {
        self.shell(
            cwd,
            &[
                "-geometry",
                "80x24+0+0",
                "-fa",
                "Monospace",
                "-fs",
                "20",
                "-xrm",
                "XTerm*cursorBlink: false",
            ],
        )
        .await;
    }

    async fn shell(&mut self, cwd: &Path, look: &[&str]) {
        let ready = self.path("prompt-ready");
        let mut xterm = self.command("xterm");
        xterm
            .args(look)
            .args(["-fg", "yellow", "-bg", "#202020"])
            .args(["-e", "bash", "--norc", "--noprofile", "-i"])
            .current_dir(cwd)
            .env("PS1", "$ ")
            .env("PROMPT_COMMAND", format!("touch {}", ready.display()));
        self.keep(xterm);
        wait_file(&ready).await;
    }

    /// The X server's screen as `xwd -root` dumps it: the pixels every VNC server of it
    /// serves, without the pointer.
    async fn xwd(&self) -> Vec<u8> {
        let out = tokio::time::timeout(
            STEP,
            self.command("xwd")
                .args(["-root", "-silent"])
                .stdout(Stdio::piped())
                .output(),
        )
        .await
        .expect("xwd in time")
        .expect("xwd is installed (Debian x11-apps)");
        assert!(out.status.success(), "xwd: {}", out.status);
        out.stdout
    }

    /// Waits until the X server's screen is the same in two dumps in a row (what is drawn
    /// is drawn) and writes it to `png`: the screen a complete capture of either VNC
    /// server must show. (A single vncdotool capture is not complete with Xvnc: TigerVNC
    /// may send a full update in more than one FramebufferUpdate, and vncdotool keeps
    /// the first.)
    pub async fn settle(&self, png: &Path) {
        let limit = Duration::from_secs(30);
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = self.xwd().await;
        loop {
            tokio::time::sleep(POLL).await;
            let now = self.xwd().await;
            if now == last {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the screen of {} still changes after {limit:?}",
                self.display
            );
            last = now;
        }
        let dump = png.with_extension("xwd");
        std::fs::write(&dump, &last).expect("write the dump");
        imgtool(&[
            "xwd",
            &dump.display().to_string(),
            &png.display().to_string(),
        ])
        .await;
    }
}

impl Drop for Desktop {
    fn drop(&mut self) {
        for c in self.clients.iter_mut().chain(self.servers.iter_mut()) {
            let _ = c.start_kill();
        }
        if let Some(r) = &self.relay {
            r.abort();
        }
    }
}

/// Waits (bounded) until `path` exists.
async fn wait_file(path: &Path) {
    poll(&format!("{}", path.display()), STEP, || async {
        if path.exists() {
            Ok(())
        } else {
            Err("absent".to_owned())
        }
    })
    .await;
}

/// A loopback TCP port (bound on port 0) whose connections are relayed to the Unix
/// socket `sock`, each on its own task; the port and the accepting task.
async fn relay_to_unix(sock: PathBuf) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let sock = sock.clone();
            tokio::spawn(async move {
                if let Ok(mut unix) = tokio::net::UnixStream::connect(&sock).await {
                    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                }
            });
        }
    });
    (port, task)
}
