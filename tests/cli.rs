//! The binary's commands: output, one-line errors and exit codes (0, 64, 69, 1).

mod common;

use std::process::Stdio;

use common::*;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `tcvnc url` prints the documented console address; errors exit 69 with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_command() {
    let sim = sim().await;
    let home = tempfile::tempdir().expect("tmp");
    let api = sim.api_url.clone();
    let h = home.path().to_owned();
    let ok = tokio::task::spawn_blocking(move || {
        tcvnc_cli(
            &h,
            &[
                "url",
                "ins-demo0001",
                "--region",
                "ap-guangzhou",
                "--endpoint",
                &api,
            ],
        )
    })
    .await
    .expect("join");
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let out = text(&ok.stdout);
    let prefix = "https://img.qcloud.com/qcloud/app/active_vnc/index.html?InstanceVncUrl=wss%3A%2F%2F127.0.0.1%3A";
    assert!(out.starts_with(prefix), "{out}");
    assert_eq!(out.lines().count(), 1);
    assert_eq!(sim.state.mints("ins-demo0001"), 1);

    let api = sim.api_url.clone();
    let h = home.path().to_owned();
    let stopped = tokio::task::spawn_blocking(move || {
        tcvnc_cli(
            &h,
            &[
                "url",
                "ins-stopped1",
                "--region",
                "ap-guangzhou",
                "--endpoint",
                &api,
            ],
        )
    })
    .await
    .expect("join");
    assert_eq!(stopped.status.code(), Some(69));
    let err = text(&stopped.stderr);
    assert!(
        err.contains(
            "instance ins-stopped1 is stopped (InvalidInstanceState): start it, then reconnect"
        ),
        "{err}"
    );

    let h = home.path().to_owned();
    let bad = tokio::task::spawn_blocking(move || {
        tcvnc_cli(
            &h,
            &[
                "url",
                "ins-demo0001",
                "--region",
                "ap-guangzhou",
                "--endpoint",
                "http://10.9.9.9",
            ],
        )
    })
    .await
    .expect("join");
    assert_eq!(bad.status.code(), Some(64));
    assert!(
        text(&bad.stderr).contains("only allowed for 127.0.0.1"),
        "{}",
        text(&bad.stderr)
    );

    let h = home.path().to_owned();
    let malformed = tokio::task::spawn_blocking(move || {
        tcvnc_cli(&h, &["url", "ins-1122", "--region", "ap-guangzhou"])
    })
    .await
    .expect("join");
    assert_eq!(malformed.status.code(), Some(64));
    sim.shutdown().await;
}

/// `tcvnc url` spends at most one URL per run, plus one retry of an unknown outcome: with
/// every answer garbled after minting, it stops after two URLs and says why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_command_spends_at_most_two_urls() {
    let sim = sim().await;
    sim.state.set_faults(tcvnc::sim::Faults {
        garble_after_mint: 100,
        ..tcvnc::sim::Faults::default()
    });
    let home = tempfile::tempdir().expect("tmp");
    let api = sim.api_url.clone();
    let h = home.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        tcvnc_cli(
            &h,
            &[
                "url",
                "ins-demo0001",
                "--region",
                "ap-guangzhou",
                "--endpoint",
                &api,
            ],
        )
    })
    .await
    .expect("join");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("(a URL may have been spent)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sim.state.mints("ins-demo0001"), 2);
    sim.shutdown().await;
}

/// `tcvnc check` validates config and credentials and prints states, minting nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_command() {
    let sim = sim().await;
    let home = tempfile::tempdir().expect("tmp");
    let cfg = home.path().join("tcvnc.toml");
    std::fs::write(
        &cfg,
        format!(
            "[cloud]\nregion = \"ap-guangzhou\"\nendpoint = \"{}\"\n[[target]]\ninstance = \"ins-demo0001\"\n[[target]]\ninstance = \"ins-stopped1\"\n",
            sim.api_url
        ),
    )
    .expect("write");
    let h = home.path().to_owned();
    let c = cfg.display().to_string();
    let out = tokio::task::spawn_blocking(move || tcvnc_cli(&h, &["check", "-c", &c]))
        .await
        .expect("join");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("ins-demo0001  ap-guangzhou  RUNNING"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ins-stopped1  ap-guangzhou  STOPPED"),
        "{stdout}"
    );
    assert!(stdout.contains("credentials: the environment"), "{stdout}");
    assert_eq!(
        sim.state.stats().mints.values().sum::<u64>(),
        0,
        "check mints nothing"
    );

    std::fs::write(&cfg, "[cloud]\nregion = \"ap-guangzhou\"\n[[target]]\ninstance = \"ins-demo0001\"\nlisten = \"0.0.0.0:5901\"\n").expect("write");
    let h = home.path().to_owned();
    let c = cfg.display().to_string();
    let out = tokio::task::spawn_blocking(move || tcvnc_cli(&h, &["check", "-c", &c]))
        .await
        .expect("join");
    assert_eq!(out.status.code(), Some(64));
    let err = text(&out.stderr);
    assert!(
        err.contains("tcvnc.toml: target[0].listen: 0.0.0.0:5901 is not a loopback address"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    sim.shutdown().await;
}

/// Bad usage exits 64.
#[test]
fn usage_errors_exit_64() {
    let home = tempfile::tempdir().expect("tmp");
    let out = tcvnc_cli(home.path(), &["frobnicate"]);
    assert_eq!(out.status.code(), Some(64));
    let out = tcvnc_cli(home.path(), &["check", "-c", "/nonexistent/tcvnc.toml"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("/nonexistent/tcvnc.toml"));
}

/// `tcvnc sim` prints one JSON line with its endpoints, then serves them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sim_command_prints_endpoints() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
        .args([
            "sim",
            "--secret-id",
            "AKIDcustom",
            "--secret-key",
            "customkey",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = within(lines.next_line())
        .await
        .expect("read")
        .expect("a line");
    let v: serde_json::Value = serde_json::from_str(&line).expect("JSON");
    let api = v["api"].as_str().expect("api").to_owned();
    assert!(api.starts_with("http://127.0.0.1:"));
    assert!(v["gateway"]
        .as_str()
        .expect("gw")
        .starts_with("wss://127.0.0.1:"));
    assert!(std::path::Path::new(v["ca_file"].as_str().expect("ca")).exists());
    // The custom key works.
    let ep = tcvnc::cloud::parse_endpoint(&api).expect("ep");
    let client = tcvnc::cloud::CloudClient::new(
        tcvnc::cloud::Product::Cvm,
        tcvnc::cloud::EndpointPolicy {
            override_endpoint: Some(ep),
            ..Default::default()
        },
        std::sync::Arc::new(
            tcvnc::cloud::credentials::Provider::fixed(
                tcvnc::cloud::credentials::Credential::fixed(
                    "AKIDcustom",
                    tcvnc::redact::Secret::new("customkey"),
                    None,
                    "t",
                ),
                tcvnc::cloud::credentials::ChainOptions::new(tls()),
            )
            .expect("p"),
        ),
        std::sync::Arc::new(tcvnc::budget::ApiLimiter::new(
            std::num::NonZeroU32::MIN.saturating_add(9),
        )),
        tls(),
        fast_options(),
    )
    .expect("client");
    within(mint(&client, "ins-demo0001", "ap-guangzhou"))
        .await
        .expect("minted by the separate simulator");
    child.kill().await.expect("kill");
}

/// README's run command: `tcvnc demo` serves the test pattern to a native viewer and
/// `RFB 003.008` to a websocket client (ports chosen by the OS here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_command_serves_both_listeners() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
        .args(["demo", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (mut vnc, mut ws) = (None, None);
    while vnc.is_none() || ws.is_none() {
        let line = within(lines.next_line())
            .await
            .expect("read")
            .expect("a line");
        if let Some(rest) = line.trim().strip_prefix("screenshot:     vncdo -s ") {
            vnc = rest
                .split_whitespace()
                .next()
                .map(|s| s.replacen("::", ":", 1));
        }
        if let Some(rest) = line.trim().strip_prefix("websocket:      ws://") {
            ws = rest
                .split_whitespace()
                .next()
                .and_then(|s| s.split('/').next())
                .map(str::to_owned);
        }
    }
    let vnc: std::net::SocketAddr = vnc.expect("vnc").parse().expect("addr");
    let ws: std::net::SocketAddr = ws.expect("ws").parse().expect("addr");
    let mut c = tcp_client(vnc).await;
    let name = within(rfb_handshake(&mut c, V38, None))
        .await
        .expect("test pattern");
    assert_eq!(name, "tcvnc test pattern (ins-demo0001)");
    let (mut w, _) = ws_connect(ws, "/vnc/ins-demo0002", None, Some("binary"))
        .await
        .expect("ws");
    let mut v = [0u8; 12];
    within(w.read_exact(&mut v)).await.expect("read");
    assert_eq!(&v, b"RFB 003.008\n");
    child.kill().await.expect("kill");
}
