//! Configuration reload: in-process through `daemon::reload` and the listener registry
//! (targets added, removed, moved; passwords, budget and session limits changed; bad
//! configs refused with nothing applied), and through the real binary on SIGHUP with a
//! viewer connected.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;

use common::*;
use tcvnc::app::App;
use tcvnc::config::Config;
use tcvnc::daemon::ReloadError;
use tcvnc::listen::{ListenerRegistry, Listeners};
use tcvnc::rfb::handshake::RfbIo;
use tokio::io::AsyncBufReadExt;

/// A daemon served through a listener registry the test holds, so it can reload.
struct Reloadable {
    app: Arc<App>,
    reg: ListenerRegistry,
}

fn parse(text: &str) -> Config {
    Config::parse(text, "test.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn target(instance: &str, listen: &str, extra: &str) -> String {
    format!("[[target]]\ninstance = \"{instance}\"\nlisten = \"{listen}\"\n{extra}\n")
}

fn file(dir: &tempfile::TempDir, name: &str, value: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.path().join(name);
    std::fs::write(&p, value).expect("write");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    p.display().to_string()
}

impl Reloadable {
    async fn start(cfg: Config) -> Reloadable {
        let app = tcvnc::app::build(cfg, &tcvnc::cloud::credentials::Env::default())
            .await
            .expect("app");
        let listeners = Listeners::bind(&app.config()).await.expect("bind");
        let reg = ListenerRegistry::start(app.clone(), listeners);
        Reloadable { app, reg }
    }

    fn tcp(&self, instance: &str) -> SocketAddr {
        self.reg.tcp_address(instance).expect("listener")
    }

    async fn stop(self) -> bool {
        self.app
            .shutdown
            .drain(std::time::Duration::from_secs(5))
            .await
    }
}

/// Asks the test pattern for one pixel and reads the whole FramebufferUpdate: proof the
/// session moves bytes both ways.
async fn one_update(c: &mut TcpClient) {
    RfbIo::write_all(c, &[3, 0, 0, 0, 0, 0, 0, 1, 0, 1])
        .await
        .expect("request");
    let mut head = [0u8; 4];
    RfbIo::read_exact(c, &mut head).await.expect("update");
    assert_eq!(head[0], 0, "a FramebufferUpdate");
    for _ in 0..u16::from_be_bytes([head[2], head[3]]) {
        let mut rect = [0u8; 12];
        RfbIo::read_exact(c, &mut rect).await.expect("rect");
        let w = usize::from(u16::from_be_bytes([rect[4], rect[5]]));
        let h = usize::from(u16::from_be_bytes([rect[6], rect[7]]));
        let mut px = vec![0u8; w * h * 4];
        RfbIo::read_exact(c, &mut px).await.expect("pixels");
    }
}

/// With a live session on A: a reload adds target B (its listener accepts viewers),
/// changes A's password and the budget. The live session keeps moving bytes; a new A
/// viewer must give the new password; the budget has the new numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_target_changes_password_and_budget_under_a_live_session() {
    within(async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        let (pw1, pw2) = (file(&dir, "pw1", "first\n"), file(&dir, "pw2", "second\n"));
        let mut o = Opts::targets(&[]);
        o.targets = target(
            "ins-demo0001",
            "127.0.0.1:0",
            &format!("password_file = \"{pw1}\""),
        );
        let mut d = Reloadable::start(parse(&config_text(&sim, &o))).await;
        let a = d.tcp("ins-demo0001");
        let mut live = d.app.watch_sessions();

        let mut viewer = tcp_client(a).await;
        let name = rfb_handshake(&mut viewer, V38, Some("first"))
            .await
            .expect("old password");
        assert_eq!(name, "tcvnc test pattern (ins-demo0001)");
        live.wait_for(|n| *n == 1).await.expect("watch");
        one_update(&mut viewer).await;

        o.budget = "reconnects_per_minute = 7\nmax_wait = \"3s\"";
        o.targets = target(
            "ins-demo0001",
            "127.0.0.1:0",
            &format!("password_file = \"{pw2}\""),
        ) + &target("ins-demo0002", "127.0.0.1:0", "");
        let report = tcvnc::daemon::reload(&d.app, &mut d.reg, parse(&config_text(&sim, &o)))
            .await
            .expect("reloaded");
        assert_eq!(report.added, ["ins-demo0002"]);
        assert_eq!(report.changed, ["ins-demo0001"]);
        assert!(report.removed.is_empty());
        assert_eq!(report.sections, ["budget"]);
        assert_eq!(report.listeners.started.len(), 1);
        assert!(report.listeners.stopped.is_empty(), "A's listener stays");
        assert_eq!(d.tcp("ins-demo0001"), a);
        assert_eq!(d.app.budget.per_minute(), 7);
        assert_eq!(d.app.budget.max_wait(), std::time::Duration::from_secs(3));

        // The live session runs on, untouched.
        one_update(&mut viewer).await;
        assert_eq!(*live.borrow(), 1);

        // B's new listener serves.
        let mut b = tcp_client(d.tcp("ins-demo0002")).await;
        let name = rfb_handshake(&mut b, V38, None).await.expect("B serves");
        assert_eq!(name, "tcvnc test pattern (ins-demo0002)");
        one_update(&mut b).await;
        drop(b);

        // A new A viewer needs the new password.
        let mut c = tcp_client_from([127, 0, 0, 2], a).await;
        let r = rfb_handshake(&mut c, V38, Some("first"))
            .await
            .expect_err("old password");
        assert_eq!(r, "authentication failed: wrong password");
        drop(c);
        one_update(&mut viewer).await;
        drop(viewer);
        live.wait_for(|n| *n == 0).await.expect("watch");
        let mut c = tcp_client_from([127, 0, 0, 3], a).await;
        rfb_handshake(&mut c, V38, Some("second"))
            .await
            .expect("new password");
        one_update(&mut c).await;
        drop(c);
        assert!(d.stop().await);
    })
    .await;
}

/// A removed target's listener closes while its live session runs on; a target whose
/// `listen` moved is served on the new address and no longer on the old one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_removes_and_moves_listeners_under_a_live_session() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&[]);
        // On an address no other test listens on: once these listeners close, nothing
        // else can take their ports there (on 127.0.0.1 a parallel test's listener could,
        // and a connection to the old port would then be answered).
        o.targets = target("ins-demo0001", "127.0.0.31:0", "")
            + &target("ins-demo0002", "127.0.0.31:0", "");
        let mut d = Reloadable::start(parse(&config_text(&sim, &o))).await;
        let (a, b) = (d.tcp("ins-demo0001"), d.tcp("ins-demo0002"));
        let mut live = d.app.watch_sessions();
        let mut on_b = tcp_client(b).await;
        rfb_handshake(&mut on_b, V38, None).await.expect("B");
        live.wait_for(|n| *n == 1).await.expect("watch");

        o.targets = target("ins-demo0001", "127.0.0.2:0", "");
        let report = tcvnc::daemon::reload(&d.app, &mut d.reg, parse(&config_text(&sim, &o)))
            .await
            .expect("reloaded");
        assert_eq!(report.removed, ["ins-demo0002"]);
        assert_eq!(report.changed, ["ins-demo0001"]);
        let stopped: Vec<&str> = report
            .listeners
            .stopped
            .iter()
            .map(|(i, _)| i.as_str())
            .collect();
        assert_eq!(stopped, ["ins-demo0001", "ins-demo0002"]);
        assert!(d.reg.tcp_address("ins-demo0002").is_none());
        let moved = d.tcp("ins-demo0001");
        assert_eq!(moved.ip().to_string(), "127.0.0.2");

        for gone in [a, b] {
            let e = tokio::net::TcpStream::connect(gone)
                .await
                .expect_err("listener closed");
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{gone}");
        }
        one_update(&mut on_b).await;
        assert_eq!(
            *live.borrow(),
            1,
            "the session of the removed target runs on"
        );
        let mut c = tcp_client(moved).await;
        rfb_handshake(&mut c, V38, None)
            .await
            .expect("A on its new address");
        drop(c);
        drop(on_b);
        assert!(d.stop().await);
    })
    .await;
}

/// A lower `max_sessions` with more sessions live: nobody is cut off, newcomers are
/// refused until the live ones are under the new limit, and the limit settles there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_lowers_the_session_limit_as_sessions_end() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&[]);
        o.session = "max_sessions = 2";
        o.targets = ["ins-demo0001", "ins-demo0002", "ins-demo0003"]
            .iter()
            .map(|i| target(i, "127.0.0.1:0", ""))
            .collect();
        let mut d = Reloadable::start(parse(&config_text(&sim, &o))).await;
        let mut live = d.app.watch_sessions();
        let mut v1 = tcp_client(d.tcp("ins-demo0001")).await;
        rfb_handshake(&mut v1, V38, None).await.expect("1");
        let mut v2 = tcp_client(d.tcp("ins-demo0002")).await;
        rfb_handshake(&mut v2, V38, None).await.expect("2");
        live.wait_for(|n| *n == 2).await.expect("watch");

        o.session = "max_sessions = 1";
        let report = tcvnc::daemon::reload(&d.app, &mut d.reg, parse(&config_text(&sim, &o)))
            .await
            .expect("reloaded");
        assert_eq!(report.sections, ["session"]);
        assert_eq!(
            d.app.session_limit(),
            2,
            "permits held by live sessions stay theirs"
        );
        one_update(&mut v1).await;
        one_update(&mut v2).await;

        drop(v2);
        live.wait_for(|n| *n == 1).await.expect("watch");
        let mut c = tcp_client(d.tcp("ins-demo0003")).await;
        let r = rfb_handshake(&mut c, V38, None)
            .await
            .expect_err("over the new limit");
        assert!(r.contains("limit of 1 concurrent sessions"), "{r}");
        drop(c);
        drop(v1);
        live.wait_for(|n| *n == 0).await.expect("watch");
        let mut c = tcp_client(d.tcp("ins-demo0003")).await;
        rfb_handshake(&mut c, V38, None).await.expect("one fits");
        drop(c);
        assert!(d.stop().await);
    })
    .await;
}

/// Refused reloads change nothing: an invalid file, an unreadable one, a change only a
/// restart applies, and a new listener that cannot bind (a second new target that could
/// bind is not applied either). Each refusal is logged at error level with its cause;
/// the old config serves throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_reloads_change_nothing() {
    within(async {
        captured_logs(tracing::Level::INFO);
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        let mut o = Opts::targets(&["ins-demo0001"]);
        let mut d = Reloadable::start(parse(&config_text(&sim, &o))).await;
        let a = d.tcp("ins-demo0001");
        let before = d.app.config();

        let bad = dir.path().join("bad.toml");
        std::fs::write(
            &bad,
            config_text(&sim, &o)
                + "[[target]]\ninstance = \"ins-demo0002\"\nlisten = \"nowhere\"\n",
        )
        .expect("write");
        let e = tcvnc::daemon::reload_file(&d.app, &mut d.reg, &bad)
            .await
            .expect_err("invalid");
        assert!(matches!(e, ReloadError::Config(_)), "{e}");
        assert!(e.to_string().contains("target[1].listen"), "{e}");

        let e = tcvnc::daemon::reload_file(&d.app, &mut d.reg, &dir.path().join("missing.toml"))
            .await
            .expect_err("unreadable");
        assert!(e.to_string().contains("cannot read the config file"), "{e}");

        let mut moved_http = o.clone();
        moved_http.http = None;
        let e = tcvnc::daemon::reload(&d.app, &mut d.reg, parse(&config_text(&sim, &moved_http)))
            .await
            .expect_err("http removed");
        assert!(
            e.to_string().contains("[http] (removed)") && e.to_string().contains("restart"),
            "{e}"
        );

        let taken = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let taken_addr = taken.local_addr().expect("addr");
        o.targets += &target("ins-demo0002", "127.0.0.1:0", "");
        o.targets += &target("ins-demo0003", &taken_addr.to_string(), "");
        let e = tcvnc::daemon::reload(&d.app, &mut d.reg, parse(&config_text(&sim, &o)))
            .await
            .expect_err("address in use");
        assert!(matches!(e, ReloadError::Listen(_)), "{e}");
        assert!(e.to_string().contains(&taken_addr.to_string()), "{e}");
        assert!(
            d.reg.tcp_address("ins-demo0002").is_none(),
            "nothing half-applied"
        );
        assert!(
            Arc::ptr_eq(&before, &d.app.config()),
            "the old config stays in force"
        );

        // The SIGHUP path logs the refusal at error level, naming the cause.
        tcvnc::daemon::reload::on_request(&d.app, &mut d.reg, &bad).await;
        let logs = captured_logs(tracing::Level::INFO);
        let line = logs
            .lines()
            .find(|l| l.contains("configuration reload refused") && l.contains("bad.toml"))
            .unwrap_or_else(|| panic!("no refusal logged:\n{logs}"));
        assert!(
            line.contains("ERROR") && line.contains("target[1].listen"),
            "{line}"
        );
        assert!(Arc::ptr_eq(&before, &d.app.config()));

        let mut c = tcp_client(a).await;
        rfb_handshake(&mut c, V38, None)
            .await
            .expect("the old config serves");
        drop(c);
        drop(taken);
        assert!(d.stop().await);
    })
    .await;
}

// ---- the real binary ----

fn write_config(path: &Path, sim: &tcvnc::sim::SimHandle, targets: &str) {
    std::fs::write(
        path,
        format!(
            "[cloud]\nregion = \"ap-guangzhou\"\nendpoint = \"{}\"\n[credentials]\nsecret_id = \"{}\"\nsecret_key = \"{}\"\n\
             [upstream]\nca_file = \"{}\"\n[http]\nlisten = \"127.0.0.1:0\"\n{targets}",
            sim.api_url,
            tcvnc::sim::DEMO_SECRET_ID,
            tcvnc::sim::DEMO_SECRET_KEY,
            sim.ca_file.display()
        ),
    )
    .expect("config");
}

type Lines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>;

/// Reads JSON log lines until one satisfies `pred`, returning it.
async fn until(lines: &mut Lines, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    loop {
        let l = within(lines.next_line())
            .await
            .expect("read")
            .expect("log ended");
        let v: serde_json::Value = serde_json::from_str(&l).expect("json log");
        if pred(&v) {
            return v;
        }
    }
}

async fn kill(signal: &str, pid: u32) {
    let st = tokio::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .await
        .expect("kill");
    assert!(st.success());
}

async fn notified(sock: &tokio::net::UnixDatagram) -> String {
    let mut buf = vec![0u8; 4096];
    let n = within(sock.recv(&mut buf)).await.expect("recv");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// `tcvnc serve` on SIGHUP with a viewer connected: RELOADING=1 then READY=1, the new
/// target's listener is logged and serves, the log says the config was reloaded, the
/// process and the viewer's session carry on; an invalid file is refused at error
/// level; SIGTERM then exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_real_binary() {
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("tcvnc.toml");
    write_config(&cfg, &sim, &target("ins-demo0001", "127.0.0.1:0", ""));
    let sock_path = dir.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).expect("bind");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
        .args(["--log-format", "json", "serve", "-c"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let pid = child.id().expect("pid");
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let listening = |name: &'static str| {
        move |v: &serde_json::Value| v["message"] == "listening" && v["listener"] == name
    };
    let v = until(&mut lines, listening("tcp ins-demo0001")).await;
    let a: SocketAddr = v["address"]
        .as_str()
        .expect("address")
        .parse()
        .expect("addr");
    assert!(notified(&sock).await.lines().any(|l| l == "READY=1"));
    let mut viewer = tcp_client(a).await;
    within(rfb_handshake(&mut viewer, V38, None))
        .await
        .expect("serving");
    within(one_update(&mut viewer)).await;

    write_config(
        &cfg,
        &sim,
        &(target("ins-demo0001", "127.0.0.1:0", "") + &target("ins-demo0002", "127.0.0.1:0", "")),
    );
    kill("-HUP", pid).await;
    // The log first: a process killed by the signal ends it at once.
    let v = until(&mut lines, listening("tcp ins-demo0002")).await;
    let b: SocketAddr = v["address"]
        .as_str()
        .expect("address")
        .parse()
        .expect("addr");
    let v = until(&mut lines, |v| v["message"] == "configuration reloaded").await;
    assert_eq!(v["level"], "INFO");
    assert!(
        v["added"].as_str().expect("added").contains("ins-demo0002"),
        "{v}"
    );
    let msg = notified(&sock).await;
    assert!(msg.lines().any(|l| l == "RELOADING=1"), "{msg}");
    assert!(
        msg.lines().any(|l| l.starts_with("MONOTONIC_USEC=")),
        "{msg}"
    );
    assert!(notified(&sock).await.lines().any(|l| l == "READY=1"));

    within(one_update(&mut viewer)).await;
    let mut c = tcp_client(b).await;
    let name = within(rfb_handshake(&mut c, V38, None))
        .await
        .expect("the new target serves");
    assert_eq!(name, "tcvnc test pattern (ins-demo0002)");
    drop(c);

    std::fs::write(&cfg, "[budget]\nreconnects_per_minute = \"many\"\n").expect("write");
    kill("-HUP", pid).await;
    let v = until(&mut lines, |v| {
        v["message"] == "configuration reload refused; the previous configuration stays in force"
    })
    .await;
    assert_eq!(v["level"], "ERROR");
    assert!(
        v["error"]
            .as_str()
            .expect("error")
            .contains("line 2 (reconnects_per_minute)"),
        "{v}"
    );
    within(one_update(&mut viewer)).await;
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still running"
    );

    kill("-TERM", pid).await;
    let status = within(child.wait()).await.expect("wait");
    assert!(status.success(), "{status:?}");
    let mut rest = [0u8; 1];
    let end = within(RfbIo::read_exact(&mut viewer, &mut rest)).await;
    assert!(end.is_err(), "the viewer's session ended with the process");
}
