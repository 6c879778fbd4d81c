//! End-to-end with real VNC software: QEMU's VNC server as the console, the `tcvnc sim`
//! and `tcvnc serve` binaries, vncdotool as the native viewer and noVNC in headless
//! Chromium (playwright-core) as the browser. Runs with TCVNC_E2E=1, where a missing tool
//! is a failure.

mod common;
mod e2e_support;

use std::path::Path;
use std::time::Duration;

use common::*;
use e2e_support::procs::Tcvnc;
use e2e_support::qemu::Qemu;
use e2e_support::viewers::{novnc_canvas, same_pixels, vncdo};
use e2e_support::{artifacts, http_get_json, http_post_json};
use serde_json::{json, Value};

/// The bridge-mode targets every scenario has (a running and a stopped instance), then
/// `extra`.
fn targets(extra: &str) -> String {
    format!(
        "[[target]]\ninstance = \"ins-demo0001\"\nlisten = \"127.0.0.1:0\"\n\
         [[target]]\ninstance = \"ins-stopped1\"\nlisten = \"127.0.0.1:0\"\n{extra}"
    )
}

/// Scenario 1: QEMU → gateway → `tcvnc serve` (TCP target) → vncdo: the image equals a
/// direct capture of QEMU, pixel for pixel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_native_viewer_pixels() {
    if !e2e("e2e_native_viewer_pixels") {
        return;
    }
    let mut q = Qemu::start(None).await;
    let t = Tcvnc::start(&q.backend(), &targets("")).await;
    q.settle(t.dir.path()).await;
    let direct = t.dir.path().join("direct.png");
    let via = artifacts().join("native-via-tcvnc.png");
    vncdo(&q.server(), None, &direct)
        .await
        .expect("direct capture");
    vncdo(&t.vnc("ins-demo0001"), None, &via)
        .await
        .expect("capture through tcvnc");
    let cmp = same_pixels(&direct, &via).await;
    assert_eq!(cmp["equal"], true, "{cmp}");
    assert_eq!(cmp["size_a"], json!([720, 400]));
    assert_eq!(t.sim_stats().await["mints"]["ins-demo0001"], 1);
}

/// Scenario 2: noVNC (Debian's package) served by tcvnc, in headless Chromium, shows the
/// QEMU screen; a screenshot is kept in tests/e2e/artifacts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_browser_novnc() {
    if !e2e("e2e_browser_novnc") {
        return;
    }
    let mut q = Qemu::start(None).await;
    let t = Tcvnc::start(&q.backend(), &targets("")).await;
    q.settle(t.dir.path()).await;
    let direct = t.dir.path().join("direct.png");
    vncdo(&q.server(), None, &direct)
        .await
        .expect("direct capture");
    let http = t.addr("http");
    // The index page lists the targets and links to noVNC pointed at /vnc/<instance>.
    let index = http_client()
        .get(format!("http://{http}/"))
        .send()
        .await
        .expect("index")
        .text()
        .await
        .expect("body");
    assert!(
        index.contains("vnc.html?path=vnc/ins-demo0001&amp;autoconnect=true"),
        "{index}"
    );
    let canvas = artifacts().join("browser-canvas.png");
    let shot = artifacts().join("browser-screenshot.png");
    let url =
        format!("http://{http}/vnc.html?path=vnc/ins-demo0001&autoconnect=true&reconnect=false");
    novnc_canvas(&url, &canvas, &shot).await;
    let cmp = same_pixels(&direct, &canvas).await;
    assert_eq!(cmp["equal"], true, "{cmp}");
    assert!(shot.exists());
    assert!(
        !t.log_lines("\"via\":\"ws\"").is_empty(),
        "the session came over the websocket"
    );
}

/// Scenario 4: the gateway drops a session; the viewer reconnects; a fresh URL was
/// minted and counted; the old URL cannot be replayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_reconnect_fresh_url() {
    if !e2e("e2e_reconnect_fresh_url") {
        return;
    }
    let mut q = Qemu::start(None).await;
    let t = Tcvnc::start(&q.backend(), &targets("")).await;
    q.settle(t.dir.path()).await;
    let out = t.dir.path().join("a.png");
    vncdo(&t.vnc("ins-demo0001"), None, &out)
        .await
        .expect("first session");
    let first_tokens: Vec<String> =
        serde_json::from_value(http_get_json(&format!("{}/_sim/tokens", t.api)).await)
            .expect("tokens");
    assert_eq!(first_tokens.len(), 1);
    // The gateway drops the next session mid-stream.
    http_post_json(
        &format!("{}/_sim/faults", t.api),
        json!({"drop_after_bytes": 4096}),
    )
    .await;
    let dropped = vncdo(&t.vnc("ins-demo0001"), None, &out).await;
    assert!(
        dropped.is_err(),
        "the capture cannot finish on a dropped session"
    );
    http_post_json(&format!("{}/_sim/faults", t.api), json!({})).await;
    // The viewer reconnects and gets the console through a fresh URL.
    vncdo(&t.vnc("ins-demo0001"), None, &out)
        .await
        .expect("reconnected");
    let stats = t.sim_stats().await;
    assert_eq!(stats["mints"]["ins-demo0001"], 3, "{stats}");
    let budget: Vec<u64> = t
        .log_lines("console URL minted")
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["budget_left"].as_u64())
        .collect();
    assert_eq!(
        budget,
        vec![29, 28, 27],
        "every URL is charged to the instance's budget"
    );
    // Replaying the first URL fails at the gateway.
    let url = tcvnc::cloud::VncUrl::parse(&format!(
        "{}/vnc?s={}&password=&isWindows=false&isUbuntu=false",
        t.gateway, first_tokens[0]
    ))
    .expect("url");
    let dialer = tcvnc::upstream::Dialer::new(
        tcvnc::tls::client_config(Some(Path::new(&t.ca_file))).expect("tls"),
        None,
        vec!["binary".into()],
        Duration::from_secs(5),
    );
    let e = dialer.dial(&url).await.expect_err("replay refused");
    assert!(e.to_string().contains("token already used"), "{e}");
    assert!(
        t.log_lines("closed")
            .iter()
            .any(|l| l.contains("connection to the console lost")
                || l.contains("console connection lost")),
        "the drop is logged"
    );
}

/// Scenario 5: a stopped instance: vncdotool fails and prints tcvnc's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_stopped_instance_reason() {
    if !e2e("e2e_stopped_instance_reason") {
        return;
    }
    let q = Qemu::start(None).await;
    let t = Tcvnc::start(&q.backend(), &targets("")).await;
    let out = t.dir.path().join("x.png");
    let err = vncdo(&t.vnc("ins-stopped1"), None, &out)
        .await
        .expect_err("stopped");
    assert!(
        err.contains("instance ins-stopped1 is stopped: start it, then reconnect"),
        "{err}"
    );
    assert!(!out.exists());
}

/// Scenario 6: QEMU demands a VNC password; tcvnc passes the challenge through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_password_passthrough() {
    if !e2e("e2e_password_passthrough") {
        return;
    }
    let mut q = Qemu::start(Some("e2e-pw")).await;
    let t = Tcvnc::start(&q.backend(), &targets("")).await;
    q.settle(t.dir.path()).await;
    let direct = t.dir.path().join("direct.png");
    let via = artifacts().join("password-via-tcvnc.png");
    vncdo(&q.server(), Some("e2e-pw"), &direct)
        .await
        .expect("direct with password");
    vncdo(&t.vnc("ins-demo0001"), Some("e2e-pw"), &via)
        .await
        .expect("through tcvnc with the right password");
    let cmp = same_pixels(&direct, &via).await;
    assert_eq!(cmp["equal"], true, "{cmp}");
    let wrong = vncdo(
        &t.vnc("ins-demo0001"),
        Some("wrong-pw"),
        &t.dir.path().join("w.png"),
    )
    .await
    .expect_err("wrong password");
    assert!(wrong.to_lowercase().contains("auth"), "{wrong}");
    assert!(!t.log_lines("passed through").is_empty());
}

/// Issue 4: a target with its own VNC password (password_file): vncdotool with the right
/// password captures the screen, a wrong one fails with an authentication error, and
/// repeated wrong tries from one peer are refused during a back-off that doubles (1 s,
/// 2 s …, per the log), with the reason shown by vncdotool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_local_password() {
    if !e2e("e2e_local_password") {
        return;
    }
    let mut q = Qemu::start(None).await;
    let pwdir = tempfile::tempdir().expect("tmp");
    let pw = pwdir.path().join("pw");
    std::fs::write(&pw, "local-pw\n").expect("write");
    let extra = format!("[[target]]\ninstance = \"ins-demo0002\"\nlisten = \"127.0.0.1:0\"\npassword_file = \"{}\"\n", pw.display());
    let t = Tcvnc::start(&q.backend(), &targets(&extra)).await;
    q.settle(t.dir.path()).await;
    let direct = t.dir.path().join("direct.png");
    let via = artifacts().join("local-password-via-tcvnc.png");
    vncdo(&q.server(), None, &direct).await.expect("direct");
    vncdo(&t.vnc("ins-demo0002"), Some("local-pw"), &via)
        .await
        .expect("right password");
    assert_eq!(same_pixels(&direct, &via).await["equal"], true);
    // Wrong passwords are checked and refused; the same address trying again during its
    // back-off (1 s, then 2 s, 4 s …) is told to wait, before any challenge, and vncdotool
    // prints tcvnc's reason. vncdotool takes a while to start, so on a loaded machine the
    // first back-off may be over before its next try: it tries again until the back-off
    // outgrows its start-up.
    let mut told = None;
    for i in 0..6usize {
        let err = vncdo(
            &t.vnc("ins-demo0002"),
            Some("nope"),
            &t.dir.path().join(format!("w{i}.png")),
        )
        .await
        .expect_err("wrong password");
        if err.contains("too many wrong passwords from your address: wait ") {
            told = Some(i);
            break;
        }
        assert!(
            err.contains("authentication failed: wrong password"),
            "{err}"
        );
    }
    let told = told.expect("vncdotool was told to wait within 6 tries");
    assert!(
        told >= 1,
        "the first wrong password is checked, not refused"
    );
    let backoffs: Vec<u64> = t
        .log_lines("wrong VNC password")
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok()?["backoff_s"].as_u64())
        .collect();
    assert_eq!(
        backoffs,
        (0..told).map(|k| 1u64 << k).collect::<Vec<_>>(),
        "a back-off per checked wrong password, doubling"
    );
    assert_eq!(
        t.sim_stats().await["mints"]["ins-demo0002"],
        1,
        "wrong passwords spend no URL"
    );
}
