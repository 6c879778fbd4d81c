//! Shared consoles (console mode): the busy policies (`reject`, `takeover`, `share`),
//! roles from passwords, tokens and `?view_only=1`, a view-only viewer's input kept from
//! the console (the simulator's test pattern records what reaches it), who is connected
//! in `/api/consoles`, and handing control to another viewer.

mod common;
mod console_support;
mod rfbref;

use std::time::Duration;

use common::*;
use console_support::*;
use serde_json::Value;
use tcvnc::sim::SimInput;

const CONTROL_PW: &str = "ctl-pass";
const VIEW_PW: &str = "view-pas";
const CONTROL_TOKEN: &str = "3f1d0a9b8c7e6d5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f";
const VIEW_TOKEN: &str = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b";

fn secret(dir: &tempfile::TempDir, name: &str, value: &str) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, value).expect("write");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    p.display().to_string()
}

/// Three console-mode targets, one per busy policy.
#[tokio::test]
async fn reject_takeover_and_share() {
    let sim = sim().await;
    let mut o = Opts::targets(&[]);
    o.targets = [("ins-demo0001", "reject"), ("ins-demo0002", "takeover"), ("ins-demo0003", "share")]
        .iter()
        .map(|(i, p)| format!("[[target]]\ninstance = \"{i}\"\nlisten = \"127.0.0.1:0\"\nmode = \"console\"\non_busy = \"{p}\"\n"))
        .collect();
    let mut d = TestDaemon::start(&sim, &o).await;

    // reject: the second viewer is told who holds the console.
    let mut a = within(Viewer::connect(d.tcp("ins-demo0001"), &[RAW])).await;
    a.request(false).await;
    within(a.next_update()).await.expect("update");
    let refused = within(Viewer::connect_as(d.tcp("ins-demo0001"), &[RAW], None))
        .await
        .err()
        .expect("refused");
    assert!(
        refused.contains("is in use by another viewer since"),
        "{refused}"
    );

    // takeover: the newcomer gets the console, the holder is closed.
    let mut b = within(Viewer::connect(d.tcp("ins-demo0002"), &[RAW])).await;
    b.request(false).await;
    within(b.next_update()).await.expect("update");
    let mut c = within(Viewer::connect(d.tcp("ins-demo0002"), &[RAW])).await;
    c.request(false).await;
    within(c.next_update())
        .await
        .expect("the newcomer is served");
    let gone = within(async {
        loop {
            b.request(true).await;
            if let Err(e) = b.next_update().await {
                return e;
            }
        }
    })
    .await;
    assert_eq!(gone, "closed");

    // share: both watch, one URL.
    let mut e = within(Viewer::connect(d.tcp("ins-demo0003"), &[RAW])).await;
    let mut f = within(Viewer::connect(d.tcp("ins-demo0003"), &[RAW])).await;
    for v in [&mut e, &mut f] {
        v.request(false).await;
        within(v.next_update()).await.expect("update");
        v.shows_pattern().expect("pattern");
    }
    assert_eq!(sim.state.mints("ins-demo0003"), 1);
    assert_eq!(
        sim.state.mints("ins-demo0002"),
        1,
        "a takeover spends no URL"
    );
    drop((a, c, e, f));
    assert!(d.stop().await);
}

async fn consoles(d: &TestDaemon, token: &str) -> Value {
    let r = http_client()
        .get(format!("http://{}/api/consoles", d.http.expect("http")))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET");
    assert!(r.status().is_success(), "{}", r.status());
    r.json().await.expect("json")
}

fn engine_of<'a>(v: &'a Value, instance: &str) -> &'a Value {
    v["consoles"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["instance"] == instance))
        .map(|c| &c["engine"])
        .unwrap_or_else(|| panic!("{instance} in {v}"))
}

/// Roles: the control password and token give control; the view-only password and token,
/// and `?view_only=1`, give view; a view-only viewer's keys never reach the console, and
/// `/api/consoles` lists everyone with role, address and since when.
#[tokio::test]
async fn roles_from_passwords_and_tokens_and_view_only_input_is_dropped() {
    let dir = tempfile::tempdir().expect("tmp");
    let sim = sim().await;
    let mut o = Opts::targets(&[]);
    o.http = Some(format!(
        "token_file = \"{}\"\nview_token_file = \"{}\"\n",
        secret(&dir, "token", CONTROL_TOKEN),
        secret(&dir, "view_token", VIEW_TOKEN)
    ));
    o.targets = format!(
        "[[target]]\ninstance = \"{INSTANCE}\"\nlisten = \"127.0.0.1:0\"\nmode = \"console\"\non_busy = \"share\"\npassword_file = \"{}\"\nview_password_file = \"{}\"\n",
        secret(&dir, "pw", CONTROL_PW),
        secret(&dir, "view_pw", VIEW_PW)
    );
    let mut d = TestDaemon::start(&sim, &o).await;
    let addr = d.tcp(INSTANCE);
    let mut control = within(Viewer::connect_as(addr, &[RAW], Some(CONTROL_PW)))
        .await
        .expect("control");
    let mut view = within(Viewer::connect_as(addr, &[RAW], Some(VIEW_PW)))
        .await
        .expect("view");
    for v in [&mut control, &mut view] {
        v.request(false).await;
        within(v.next_update()).await.expect("update");
    }
    // Browsers: the view token; the control token asking for view only.
    let http = d.http.expect("http");
    let mut ws_view = ws_connect(
        http,
        &format!("/vnc/{INSTANCE}?token={VIEW_TOKEN}"),
        None,
        None,
    )
    .await
    .expect("ws")
    .0;
    within(rfb_handshake(&mut ws_view, V38, Some(CONTROL_PW)))
        .await
        .expect("handshake");
    let mut ws_asked = ws_connect(
        http,
        &format!("/vnc/{INSTANCE}?token={CONTROL_TOKEN}&view_only=1"),
        None,
        None,
    )
    .await
    .expect("ws")
    .0;
    within(rfb_handshake(&mut ws_asked, V38, Some(CONTROL_PW)))
        .await
        .expect("handshake");

    // The view-only viewer types first; only the controller's key reaches the console.
    view.send(&key(true, 0x76)).await;
    ws_view
        .send(bytes::Bytes::from(key(true, 0x77)))
        .await
        .expect("send");
    ws_asked
        .send(bytes::Bytes::from(key(true, 0x78)))
        .await
        .expect("send");
    control.send(&key(true, 0x63)).await;
    let got = within(sim.state.wait_inputs(INSTANCE, 1)).await;
    assert_eq!(
        got,
        [SimInput::Key {
            down: true,
            keysym: 0x63
        }]
    );

    let all = consoles(&d, CONTROL_TOKEN).await;
    let e = engine_of(&all, INSTANCE);
    let list = e["viewer_list"].as_array().expect("viewer_list");
    assert_eq!(list.len(), 4, "{e}");
    let role_of = |port: u16| {
        list.iter()
            .find(|v| {
                v["peer"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(&format!(":{port}")))
            })
            .map(|v| v["role"].as_str().unwrap_or_default().to_owned())
    };
    let port = |v: &Viewer| v.s.local_addr().expect("addr").port();
    assert_eq!(role_of(port(&control)).as_deref(), Some("control"), "{e}");
    assert_eq!(role_of(port(&view)).as_deref(), Some("view"), "{e}");
    let ws_roles: Vec<&str> = list
        .iter()
        .filter(|v| v["via"] == "ws")
        .map(|v| v["role"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(ws_roles, ["view", "view"], "{e}");
    assert!(
        list.iter()
            .all(|v| v["since"].as_str().is_some_and(|s| s.ends_with('Z'))),
        "{e}"
    );
    // The index page lists them too: role, address, how, since when.
    let page = http_client()
        .get(format!("http://{http}/"))
        .bearer_auth(CONTROL_TOKEN)
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("page");
    assert!(
        page.contains(&format!(
            "control <code>127.0.0.1:{}</code> (tcp, since ",
            port(&control)
        )),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "view <code>127.0.0.1:{}</code> (tcp, since ",
            port(&view)
        )),
        "{page}"
    );
    assert_eq!(page.matches("(ws, since ").count(), 2, "{page}");
    let metrics = d.app.metrics.encode();
    assert!(
        metrics.contains(
            "tcvnc_console_input_dropped_total{instance=\"ins-demo0001\",cause=\"view_only\"} 3"
        ),
        "{metrics}"
    );
    // The view-only token reads but cannot act.
    assert_eq!(
        consoles(&d, VIEW_TOKEN).await["consoles"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let r = http_client()
        .post(format!("http://{http}/api/consoles/{INSTANCE}/control"))
        .bearer_auth(VIEW_TOKEN)
        .body("{\"session\": 1}")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 403);
    // Last (a wrong password makes this address back off): neither password, no entry.
    let wrong = within(Viewer::connect_as(addr, &[RAW], Some("nope1234"))).await;
    assert!(wrong.is_err(), "a wrong password is refused");
    drop((control, view, ws_view, ws_asked));
    assert!(d.stop().await);
}

/// Control handed to another viewer: the one who had it is told on its screen and its
/// keys stop reaching the console; the new controller's do. Cross-site requests are
/// refused.
#[tokio::test]
async fn control_is_handed_over_and_the_old_controller_is_told() {
    let sim = sim().await;
    let mut d = TestDaemon::start(&sim, &console_opts("")).await;
    let http = d.http.expect("http");
    let mut a = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    let mut b = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    for v in [&mut a, &mut b] {
        v.request(false).await;
        within(v.next_update()).await.expect("update");
    }
    let all = http_client()
        .get(format!("http://{http}/api/consoles"))
        .send()
        .await
        .expect("GET")
        .json::<Value>()
        .await
        .expect("json");
    let b_port = b.s.local_addr().expect("addr").port();
    let b_session = engine_of(&all, INSTANCE)["viewer_list"]
        .as_array()
        .and_then(|l| {
            l.iter().find(|v| {
                v["peer"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(&format!(":{b_port}")))
            })
        })
        .and_then(|v| v["session"].as_u64())
        .expect("b's session");
    let url = format!("http://{http}/api/consoles/{INSTANCE}/control");
    let cross = http_client()
        .post(&url)
        .header("origin", "https://evil.example")
        .body(format!("{{\"session\": {b_session}}}"))
        .send()
        .await
        .expect("POST");
    assert_eq!(cross.status(), 403, "a cross-site request is refused");
    let r = http_client()
        .post(&url)
        .body(format!("{{\"session\": {b_session}}}"))
        .send()
        .await
        .expect("POST");
    assert!(r.status().is_success(), "{}", r.status());
    let missing = http_client()
        .post(&url)
        .body("{\"session\": 999999}")
        .send()
        .await
        .expect("POST");
    assert_eq!(missing.status(), 404);
    // A is told, on its own screen: the banner covers the top-left pixel.
    let told = within(async {
        loop {
            a.request(true).await;
            a.next_update().await.expect("update");
            let top_left = a.v.screen[0] & 0xff_ffff;
            if top_left == tcvnc::console::banner::BANNER_BG {
                return top_left;
            }
        }
    })
    .await;
    assert_eq!(told, tcvnc::console::banner::BANNER_BG);
    a.send(&key(true, 0x61)).await;
    b.send(&key(true, 0x62)).await;
    let got = within(sim.state.wait_inputs(INSTANCE, 1)).await;
    assert_eq!(
        got,
        [SimInput::Key {
            down: true,
            keysym: 0x62
        }]
    );
    drop((a, b));
    assert!(d.stop().await);
}

/// A view-only viewer of a bridge-mode target is refused (a bridge gives the viewer the
/// console itself), with the reason.
#[tokio::test]
async fn view_only_needs_console_mode() {
    let sim = sim().await;
    let mut d = TestDaemon::start(&sim, &Opts::targets(&[INSTANCE])).await;
    let (mut ws, _) = ws_connect(
        d.http.expect("http"),
        &format!("/vnc/{INSTANCE}?view_only=1"),
        None,
        None,
    )
    .await
    .expect("ws");
    let refused = within(rfb_handshake(&mut ws, V38, None))
        .await
        .expect_err("refused");
    assert!(refused.contains("needs mode = \"console\""), "{refused}");
    assert_eq!(sim.state.mints(INSTANCE), 0, "nothing spent");
    let _ = tokio::time::timeout(Duration::from_secs(1), ws.recv()).await;
    assert!(d.stop().await);
}
