//! End-to-end for operations: the browser console page of `tcvnc demo` in headless
//! Chromium, and `tcvnc connect` with vncdotool as the viewer. Runs with TCVNC_E2E=1.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::AsyncBufReadExt;

/// GET / lists the targets; its link opens noVNC on the demo's console (screenshot kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_console_page() {
    if !e2e("e2e_console_page") {
        return;
    }
    let mut demo = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
        .args(["demo", "--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("demo");
    let mut lines = tokio::io::BufReader::new(demo.stdout.take().expect("stdout")).lines();
    let base = loop {
        let l = within(lines.next_line())
            .await
            .expect("read")
            .expect("line");
        if let Some(rest) = l.trim().strip_prefix("browser:        ") {
            break rest.trim_end_matches('/').to_owned();
        }
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts");
    let shot = dir.join("console-page.png");
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new("node")
            .arg(e2e_file("console_page.mjs"))
            .args([base.as_str(), &shot.display().to_string()])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("in time")
    .expect("node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("json");
    assert_eq!(
        v["rows"],
        serde_json::json!([
            "ins-demo0001",
            "ins-demo0002",
            "ins-demo0003",
            "ins-stopped1"
        ])
    );
    assert_eq!(
        v["size"],
        serde_json::json!([640, 480]),
        "the test pattern's geometry"
    );
    assert!(v["url"]
        .as_str()
        .expect("url")
        .contains("vnc.html?path=vnc/ins-demo0001"));
    assert!(shot.exists());
    demo.kill().await.expect("kill");
}

/// `tcvnc connect` listens on a free port, starts the viewer (vncdotool here) pointed at
/// it, and exits when the viewer exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_connect_with_viewer() {
    if !e2e("e2e_connect_with_viewer") {
        return;
    }
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("tcvnc.toml");
    std::fs::write(
        &cfg,
        format!(
            "[cloud]\nregion = \"ap-guangzhou\"\nendpoint = \"{}\"\n[credentials]\nsecret_id = \"{}\"\nsecret_key = \"{}\"\n[upstream]\nca_file = \"{}\"\n",
            sim.api_url,
            tcvnc::sim::DEMO_SECRET_ID,
            tcvnc::sim::DEMO_SECRET_KEY,
            sim.ca_file.display()
        ),
    )
    .expect("config");
    let shot = dir.path().join("connect.png");
    let viewer = format!(
        "{} -s {{}} capture {}",
        python().parent().expect("bin").join("vncdo").display(),
        shot.display()
    );
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
            .args(["connect", "ins-demo0002", "-c"])
            .arg(&cfg)
            .args(["--viewer", &viewer])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .output(),
    )
    .await
    .expect("connect exits when the viewer exits")
    .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("tcvnc connect: ins-demo0002 on 127.0.0.1::")
    );
    assert!(shot.exists(), "the viewer captured the console");
    assert_eq!(sim.state.mints("ins-demo0002"), 1);
}
