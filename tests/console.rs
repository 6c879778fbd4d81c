//! Console mode against the simulator (its gateway and test-pattern console): viewers
//! get the console's screen from tcvnc's framebuffer, keep their connection across a
//! gateway drop and see fresh frames after it, share one upstream, find the console kept
//! for them by `linger`, and are closed with a reason after `resume_timeout`.

mod common;
mod console_support;
mod rfbref;

use std::net::SocketAddr;

use common::*;
use console_support::*;
use tcvnc::sim::{Faults, GatewayEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_viewer_keeps_its_connection_across_a_drop_and_sees_fresh_frames() {
    let sim = sim().await;
    let mut d = TestDaemon::start(&sim, &console_opts("")).await;
    let mut events = sim.state.events();
    // Each gateway session ends after 1.5 MB: the first full screen (1.2 MB) and a few
    // moves of the square.
    sim.state.set_faults(Faults {
        drop_after_bytes: Some(1_500_000),
        ..Faults::default()
    });
    let mut v = within(Viewer::connect(
        d.tcp(INSTANCE),
        &[ZRLE, HEXTILE, RAW, DESKTOP_SIZE, DESKTOP_NAME],
    ))
    .await;
    assert!(!v.name.is_empty());
    assert_eq!((v.v.width, v.v.height), (640, 480));
    v.request(false).await;
    within(v.next_update()).await.expect("first update");
    v.shows_pattern().expect("the console's screen");
    wait_event(&mut events, |e| matches!(e, GatewayEvent::Accepted(_))).await;
    // The gateway drops the session; the engine has the console back on its own.
    wait_event(&mut events, |e| matches!(e, GatewayEvent::Ended(_))).await;
    wait_event(&mut events, |e| matches!(e, GatewayEvent::Accepted(_))).await;
    sim.state.set_faults(Faults::default());
    let before = v.updates;
    for _ in 0..5 {
        v.request(true).await;
        within(v.next_update())
            .await
            .expect("an update after the drop");
    }
    assert!(v.updates >= before + 5);
    v.shows_pattern()
        .expect("the console's screen after the drop");
    assert!(sim.state.mints(INSTANCE) >= 2, "a fresh URL per resume");
    assert_eq!(sim.state.stats().max_live_upstreams, 1);
    let metrics = d.app.metrics.encode();
    for want in [
        "tcvnc_console_resumes_total{instance=\"ins-demo0001\",cause=",
        "tcvnc_console_viewers{instance=\"ins-demo0001\"} 1",
        "tcvnc_console_engines{instance=\"ins-demo0001\"} 1",
        "tcvnc_console_rects_total{encoding=\"zrle\"}",
        "tcvnc_console_without_upstream_seconds_total{instance=\"ins-demo0001\"}",
    ] {
        assert!(metrics.contains(want), "{want} in\n{metrics}");
    }
    drop(v);
    assert!(d.stop().await);
}

#[tokio::test]
async fn viewers_share_one_console_and_linger_keeps_it() {
    let sim = sim().await;
    let mut d = TestDaemon::start(&sim, &console_opts("linger = \"60s\"")).await;
    let mut a = within(Viewer::connect(d.tcp(INSTANCE), &[HEXTILE, RAW])).await;
    let mut b = within(Viewer::connect(d.tcp(INSTANCE), &[ZRLE, RAW])).await;
    let mut c = within(Viewer::connect(d.tcp(INSTANCE), &[ZRLE, RAW])).await;
    for v in [&mut a, &mut b, &mut c] {
        v.request(false).await;
        within(v.next_update()).await.expect("update");
        v.shows_pattern().expect("pattern");
    }
    // The two ZRLE viewers follow the moving square together: the engine encodes the
    // damage once for both (shared ZRLE), and each decodes it exactly.
    for _ in 0..10 {
        for v in [&mut b, &mut c] {
            v.request(true).await;
        }
        for v in [&mut b, &mut c] {
            within(v.next_update()).await.expect("update");
        }
    }
    for v in [&b, &c] {
        v.shows_pattern().expect("pattern");
    }
    let engine = d.app.engines.get(INSTANCE).expect("engine").status_json();
    assert!(
        engine["shared_encodes"]["hits"].as_u64() > Some(0),
        "{engine}"
    );
    assert_eq!(engine["viewers"], 3, "{engine}");
    assert_eq!(sim.state.mints(INSTANCE), 1, "one URL for three viewers");
    drop((a, b, c));
    // A viewer that comes back within linger finds the console still open.
    let mut c = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    c.request(false).await;
    within(c.next_update()).await.expect("update");
    c.shows_pattern().expect("pattern");
    assert_eq!(
        sim.state.mints(INSTANCE),
        1,
        "no URL for a returning viewer"
    );
    assert_eq!(sim.state.stats().max_live_upstreams, 1);
    drop(c);
    assert!(d.stop().await);
}

#[tokio::test]
async fn viewers_wait_with_a_banner_then_are_closed_after_resume_timeout() {
    let sim = sim().await;
    let mut d = TestDaemon::start(&sim, &console_opts("resume_timeout = \"3s\"")).await;
    let mut events = sim.state.events();
    sim.state.set_faults(Faults {
        drop_after_bytes: Some(1_300_000),
        ..Faults::default()
    });
    let (mut ws, _) = ws_connect(
        d.http.expect("http"),
        &format!("/vnc/{INSTANCE}"),
        None,
        None,
    )
    .await
    .expect("ws");
    let name = within(rfb_handshake(&mut ws, V38, None))
        .await
        .expect("handshake");
    assert!(!name.is_empty());
    wait_event(&mut events, |e| matches!(e, GatewayEvent::Accepted(_))).await;
    // The API fails from now on; the gateway drops the session after its first screen.
    sim.state.set_faults(Faults {
        error_code: Some("InternalError".into()),
        drop_after_bytes: Some(1_300_000),
        ..Faults::default()
    });
    let mut enc = vec![2, 0, 0, 1];
    enc.extend_from_slice(&DESKTOP_NAME.to_be_bytes());
    ws.send(bytes::Bytes::from(enc)).await.expect("send");
    // Keep asking for updates until the websocket closes: the reason names the timeout.
    let mut names = String::new();
    let closed = within(async {
        loop {
            let _ = ws
                .send(bytes::Bytes::from_static(&[
                    3, 1, 0, 0, 0, 0, 2, 128, 1, 224,
                ]))
                .await;
            match ws.recv().await {
                tcvnc::ws::Recv::Data(b) => names.push_str(&String::from_utf8_lossy(&b)),
                tcvnc::ws::Recv::Closed(c) => return c,
                tcvnc::ws::Recv::Failed(e) => panic!("{e}"),
            }
        }
    })
    .await;
    let (code, reason) = closed.expect("a close frame");
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.contains("did not come back"), "{reason}");
    assert!(
        names.contains("reconnecting"),
        "the desktop name said why: {names:?}"
    );
    assert!(d.stop().await);
}

#[tokio::test]
async fn input_reaches_the_console_and_held_keys_are_released_after_a_drop() {
    use tcvnc::sim::SimInput;
    let sim = sim().await;
    let mut d = TestDaemon::start(&sim, &console_opts("")).await;
    let mut events = sim.state.events();
    let mut v = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    v.request(false).await;
    within(v.next_update()).await.expect("update");
    // A key held down, a pointer move, cut text, and a QEMU extended key event (the test
    // pattern does not take those: it gets the plain key).
    v.send(&key(true, 0x61)).await;
    v.send(&[5, 1, 0, 10, 0, 20]).await;
    v.send(&[6, 0, 0, 0, 0, 0, 0, 2, b'h', b'i']).await;
    v.send(&[255, 0, 0, 1, 0, 0, 0, 0x62, 0, 0, 0, 0x30]).await;
    v.send(&[255, 0, 0, 0, 0, 0, 0, 0x62, 0, 0, 0, 0x30]).await;
    let got = within(sim.state.wait_inputs(INSTANCE, 5)).await;
    assert_eq!(
        got[..5],
        [
            SimInput::Key {
                down: true,
                keysym: 0x61
            },
            SimInput::Pointer {
                mask: 1,
                x: 10,
                y: 20
            },
            SimInput::CutText {
                length: 2,
                text: Some("hi".into())
            },
            SimInput::Key {
                down: true,
                keysym: 0x62
            },
            SimInput::Key {
                down: false,
                keysym: 0x62
            },
        ]
    );
    // The console drops while 'a' and the first button are held: the next console is
    // told they are released.
    sim.state
        .reboot(
            INSTANCE,
            std::time::Duration::ZERO,
            std::time::Duration::ZERO,
        )
        .expect("reboot");
    wait_event(&mut events, |e| matches!(e, GatewayEvent::Ended(_))).await;
    let got = within(sim.state.wait_inputs(INSTANCE, 7)).await;
    assert_eq!(
        got[5..],
        [
            SimInput::Key {
                down: false,
                keysym: 0x61
            },
            SimInput::Pointer {
                mask: 0,
                x: 10,
                y: 20
            },
        ],
        "{got:?}"
    );
    drop(v);
    assert!(d.stop().await);
}

#[tokio::test]
async fn a_viewer_stays_connected_through_a_reboot() {
    let sim = sim().await;
    let mut d = TestDaemon::start(&sim, &console_opts("")).await;
    let mut events = sim.state.events();
    let mut v = within(Viewer::connect(d.tcp(INSTANCE), &[ZRLE, RAW, DESKTOP_NAME])).await;
    v.request(false).await;
    within(v.next_update()).await.expect("update");
    wait_event(&mut events, |e| matches!(e, GatewayEvent::Accepted(_))).await;
    let secs = std::time::Duration::from_secs;
    sim.state
        .reboot(INSTANCE, secs(1), secs(1))
        .expect("reboot");
    // While the instance is down the viewer is told so, in the desktop name.
    let told = within(async {
        loop {
            v.request(true).await;
            v.next_update()
                .await
                .expect("an update while the console is down");
            if let Some(n) = v.names.iter().find(|n| n.contains("instance is")) {
                return n.clone();
            }
        }
    })
    .await;
    assert!(told.contains("waiting for it to run"), "{told}");
    within(sim.state.wait_state(INSTANCE, "RUNNING"))
        .await
        .expect("running");
    wait_event(&mut events, |e| matches!(e, GatewayEvent::Accepted(_))).await;
    // The same connection sees the console again: its name, then fresh frames.
    let back = within(async {
        loop {
            v.request(true).await;
            v.next_update().await.expect("an update after the reboot");
            // The console's own name again (no banner words around it).
            if let Some(n) = v
                .names
                .last()
                .filter(|n| n.starts_with("tcvnc test pattern"))
            {
                return n.clone();
            }
        }
    })
    .await;
    assert_eq!(back, format!("tcvnc test pattern ({INSTANCE})"));
    for _ in 0..3 {
        v.request(true).await;
        within(v.next_update()).await.expect("fresh frames");
    }
    v.shows_pattern()
        .expect("the console's screen after the reboot");
    assert!(sim.state.mints(INSTANCE) >= 2);
    drop(v);
    assert!(d.stop().await);
}

/// A console whose screen never changes: it answers full requests and then only counts
/// the incremental requests it gets (sent on `requests`).
async fn still_console(requests: tokio::sync::mpsc::UnboundedSender<()>) -> SocketAddr {
    use tcvnc::rfb::messages::{read_client_message, ClientMessage, PixelFormat};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let requests = requests.clone();
            tokio::spawn(async move {
                let mut v = [0u8; 12];
                s.write_all(b"RFB 003.008\n").await?;
                s.read_exact(&mut v).await?;
                s.write_all(&[1, 1]).await?;
                s.read_exact(&mut [0u8; 1]).await?;
                s.write_all(&[0, 0, 0, 0]).await?;
                s.read_exact(&mut [0u8; 1]).await?;
                let pf = PixelFormat::true_colour(32, 24, false, [255; 3], [16, 8, 0]);
                let mut init = vec![0, 64, 0, 64];
                init.extend_from_slice(&pf.to_bytes());
                init.extend_from_slice(&[0, 0, 0, 5]);
                init.extend_from_slice(b"still");
                s.write_all(&init).await?;
                loop {
                    match read_client_message(&mut s).await {
                        Ok(ClientMessage::FramebufferUpdateRequest {
                            incremental: false, ..
                        }) => {
                            let mut u = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 64, 0, 64, 0, 0, 0, 0];
                            u.extend_from_slice(&[0x40; 64 * 64 * 4]);
                            s.write_all(&u).await?;
                        }
                        Ok(ClientMessage::FramebufferUpdateRequest { .. }) => {
                            let _ = requests.send(());
                        }
                        Ok(_) => {}
                        Err(_) => return Ok::<(), std::io::Error>(()),
                    }
                }
            });
        }
    });
    addr
}

/// A gateway that cuts connections idle in data for 1 s (pings do not count) does not
/// cut a console viewers watch: while the screen is still, the engine sends an
/// incremental update request every keepalive period.
#[tokio::test]
async fn a_still_console_is_kept_from_the_gateway_idle_cut() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let backend = still_console(tx).await;
    let sim = sim_with(tcvnc::sim::SimOptions {
        backend: Some(backend.to_string()),
        faults: Faults {
            idle_cut: Some(std::time::Duration::from_secs(1)),
            ..Faults::default()
        },
        ..tcvnc::sim::SimOptions::default()
    })
    .await;
    let mut o = console_opts("");
    o.upstream = "keepalive = \"200ms\"";
    let mut d = TestDaemon::start(&sim, &o).await;
    let mut events = sim.state.events();
    let mut v = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    v.request(false).await;
    within(v.next_update()).await.expect("update");
    // Ten keepalive requests take 2 s, twice the idle cut.
    for _ in 0..10 {
        within(rx.recv()).await.expect("a keepalive request");
    }
    let mut ended = Vec::new();
    while let Ok(e) = events.try_recv() {
        if matches!(e, GatewayEvent::Ended(_)) {
            ended.push(e);
        }
    }
    assert!(ended.is_empty(), "{ended:?}");
    assert_eq!(sim.state.mints(INSTANCE), 1);
    drop(v);
    assert!(d.stop().await);
}

/// What a scripted console is told to do.
#[derive(Debug, Clone, Copy)]
enum Act {
    /// Change the screen size (DesktopSize), then send the new screen.
    Resize(u16, u16),
    /// Send a 2×2 cursor shape.
    Cursor,
}

/// A console under the test's control: Raw pixels of one colour, QEMU extended key
/// events offered when asked, and what it is told through `acts`; every message the
/// engine sends arrives on `msgs`.
struct Scripted {
    addr: SocketAddr,
    acts: tokio::sync::broadcast::Sender<Act>,
    msgs: tokio::sync::mpsc::UnboundedReceiver<tcvnc::rfb::messages::ClientMessage>,
}

async fn scripted_console(
    w: u16,
    h: u16,
    qemu_keys: bool,
    first_after: std::time::Duration,
) -> Scripted {
    use tcvnc::rfb::messages::{read_client_message, ClientMessage, PixelFormat};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    let (acts, _) = tokio::sync::broadcast::channel(16);
    let (msg_tx, msgs) = tokio::sync::mpsc::unbounded_channel();
    let acts_tx = acts.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let mut acts = acts_tx.subscribe();
            let msg_tx = msg_tx.clone();
            tokio::spawn(async move {
                let (mut r, mut s) = s.into_split();
                let mut v = [0u8; 12];
                s.write_all(b"RFB 003.008\n").await?;
                r.read_exact(&mut v).await?;
                s.write_all(&[1, 1]).await?;
                r.read_exact(&mut [0u8; 1]).await?;
                s.write_all(&[0, 0, 0, 0]).await?;
                r.read_exact(&mut [0u8; 1]).await?;
                let pf = PixelFormat::true_colour(32, 24, false, [255; 3], [16, 8, 0]);
                let mut init = [w.to_be_bytes(), h.to_be_bytes()].concat();
                init.extend_from_slice(&pf.to_bytes());
                init.extend_from_slice(&[0, 0, 0, 8]);
                init.extend_from_slice(b"scripted");
                s.write_all(&init).await?;
                let (in_tx, mut incoming) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(async move {
                    while let Ok(m) = read_client_message(&mut r).await {
                        if in_tx.send(m).is_err() {
                            break;
                        }
                    }
                });
                let rect = |x: u16, y: u16, w: u16, h: u16, enc: i32| {
                    let mut b = Vec::new();
                    for v in [x, y, w, h] {
                        b.extend_from_slice(&v.to_be_bytes());
                    }
                    b.extend_from_slice(&enc.to_be_bytes());
                    b
                };
                let raw = |w: u16, h: u16| {
                    let mut b = rect(0, 0, w, h, 0);
                    b.extend_from_slice(&vec![0x40; usize::from(w) * usize::from(h) * 4]);
                    b
                };
                let (mut w, mut h) = (w, h);
                loop {
                    tokio::select! {
                        m = incoming.recv() => {
                            let Some(m) = m else { return Ok::<(), std::io::Error>(()) };
                            if let ClientMessage::FramebufferUpdateRequest { incremental: false, .. } = m {
                                tokio::time::sleep(first_after).await;
                                let mut u = vec![0, 0, 0, 1 + u8::from(qemu_keys)];
                                u.extend_from_slice(&raw(w, h));
                                if qemu_keys {
                                    u.extend_from_slice(&rect(0, 0, 0, 0, -258));
                                }
                                s.write_all(&u).await?;
                            }
                            let _ = msg_tx.send(m);
                        }
                        a = acts.recv() => match a {
                            Ok(Act::Resize(nw, nh)) => {
                                (w, h) = (nw, nh);
                                let mut u = vec![0, 0, 0, 2];
                                u.extend_from_slice(&rect(0, 0, w, h, -223));
                                u.extend_from_slice(&raw(w, h));
                                s.write_all(&u).await?;
                            }
                            Ok(Act::Cursor) => {
                                let mut u = vec![0, 0, 0, 1];
                                u.extend_from_slice(&rect(1, 1, 2, 2, -239));
                                u.extend_from_slice(&[0xff; 16]);
                                u.extend_from_slice(&[0b1100_0000, 0b0100_0000]);
                                s.write_all(&u).await?;
                            }
                            Err(_) => return Ok(()),
                        },
                    }
                }
            });
        }
    });
    Scripted { addr, acts, msgs }
}

async fn daemon_for(console: SocketAddr) -> (tcvnc::sim::SimHandle, TestDaemon) {
    let sim = sim_with(tcvnc::sim::SimOptions {
        backend: Some(console.to_string()),
        ..tcvnc::sim::SimOptions::default()
    })
    .await;
    let d = TestDaemon::start(&sim, &console_opts("")).await;
    (sim, d)
}

/// A screen that changes size reaches viewers that asked for DesktopSize; a viewer that
/// did not is closed with the reason (a websocket viewer reads it in the close frame).
#[tokio::test]
async fn viewers_follow_a_resize_or_are_closed_with_a_reason() {
    let console = scripted_console(64, 48, false, std::time::Duration::ZERO).await;
    let (_sim, mut d) = daemon_for(console.addr).await;
    let mut a = within(Viewer::connect(d.tcp(INSTANCE), &[RAW, DESKTOP_SIZE])).await;
    a.request(false).await;
    within(a.next_update()).await.expect("update");
    let (mut ws, _) = ws_connect(
        d.http.expect("http"),
        &format!("/vnc/{INSTANCE}"),
        None,
        None,
    )
    .await
    .expect("ws");
    within(rfb_handshake(&mut ws, V38, None))
        .await
        .expect("handshake");
    ws.send(bytes::Bytes::from_static(&[3, 0, 0, 0, 0, 0, 0, 64, 0, 48]))
        .await
        .expect("request");
    console.acts.send(Act::Resize(100, 50)).expect("act");
    a.request(true).await;
    within(async {
        while (a.v.width, a.v.height) != (100, 50) {
            a.next_update().await.expect("the new size");
        }
    })
    .await;
    let closed = within(async {
        loop {
            let _ = ws
                .send(bytes::Bytes::from_static(&[3, 1, 0, 0, 0, 0, 0, 64, 0, 48]))
                .await;
            match ws.recv().await {
                tcvnc::ws::Recv::Data(_) => {}
                tcvnc::ws::Recv::Closed(c) => return c,
                tcvnc::ws::Recv::Failed(e) => panic!("{e}"),
            }
        }
    })
    .await;
    let (code, reason) = closed.expect("a close frame");
    assert_eq!(code, 1008, "{reason}");
    assert!(reason.contains("changed size to 100x50"), "{reason}");
    // The viewer that followed still gets the new screen.
    a.request(false).await;
    within(a.next_update())
        .await
        .expect("update at the new size");
    assert!(a.v.screen.iter().all(|&p| p & 0xff_ffff == 0x40_4040));
    assert!(d.stop().await);
}

/// A console that announces the size its screen already has (TigerVNC and x11vnc send
/// an ExtendedDesktopSize when a client lists it, so at every connection) changes no
/// size: a viewer that did not ask for DesktopSize keeps its connection and gets the
/// screen the announcement came with.
#[tokio::test]
async fn the_same_size_announced_again_closes_no_viewer() {
    let console = scripted_console(64, 48, false, std::time::Duration::ZERO).await;
    let (_sim, mut d) = daemon_for(console.addr).await;
    let mut v = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    v.request(false).await;
    within(v.next_update()).await.expect("update");
    console.acts.send(Act::Resize(64, 48)).expect("act");
    v.request(true).await;
    within(v.next_update())
        .await
        .expect("an update after the announcement, not a close");
    assert_eq!((v.v.width, v.v.height), (64, 48));
    assert!(v.v.screen.iter().all(|&p| p & 0xff_ffff == 0x40_4040));
    assert!(d.stop().await);
}

/// The console's cursor shape reaches viewers that asked for the Cursor pseudo-encoding.
#[tokio::test]
async fn cursor_shapes_reach_viewers_that_ask() {
    let console = scripted_console(32, 32, false, std::time::Duration::ZERO).await;
    let (_sim, mut d) = daemon_for(console.addr).await;
    let mut v = within(Viewer::connect(d.tcp(INSTANCE), &[RAW, CURSOR])).await;
    v.request(false).await;
    within(v.next_update()).await.expect("update");
    console.acts.send(Act::Cursor).expect("act");
    within(async {
        while v.v.cursor.is_none() {
            v.request(true).await;
            v.next_update().await.expect("an update with the cursor");
        }
    })
    .await;
    let c = v.v.cursor.clone().expect("cursor");
    assert_eq!((c.hot, c.size), ((1, 1), (2, 2)));
    assert_eq!(c.mask, [0b1100_0000, 0b0100_0000]);
    assert!(c.pixels.iter().all(|&p| p & 0xff_ffff == 0xff_ffff));
    assert!(d.stop().await);
}

/// QEMU extended key events reach a console that offers them as they are (scan codes
/// included); a colour-map pixel format is refused with the reason.
#[tokio::test]
async fn qemu_key_events_pass_through_and_colour_maps_are_refused() {
    use tcvnc::rfb::messages::ClientMessage;
    let mut console = scripted_console(32, 32, true, std::time::Duration::ZERO).await;
    let (_sim, mut d) = daemon_for(console.addr).await;
    let mut v = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    v.request(false).await;
    within(v.next_update()).await.expect("update");
    v.send(&[255, 0, 0, 1, 0, 0, 0, 0x62, 0, 0, 0, 0x30]).await;
    let got = within(async {
        loop {
            match console.msgs.recv().await.expect("a message") {
                m @ ClientMessage::QemuKeyEvent { .. } => return m,
                ClientMessage::KeyEvent { .. } => panic!("sent as a plain key"),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(
        got,
        ClientMessage::QemuKeyEvent {
            down: true,
            keysym: 0x62,
            keycode: 0x30
        }
    );
    let (mut ws, _) = ws_connect(
        d.http.expect("http"),
        &format!("/vnc/{INSTANCE}"),
        None,
        None,
    )
    .await
    .expect("ws");
    within(rfb_handshake(&mut ws, V38, None))
        .await
        .expect("handshake");
    let mut colour_map = vec![0, 0, 0, 0, 8, 8, 0, 0];
    colour_map.extend_from_slice(&[0; 12]);
    ws.send(bytes::Bytes::from(colour_map)).await.expect("send");
    let closed = within(async {
        loop {
            match ws.recv().await {
                tcvnc::ws::Recv::Data(_) => {}
                tcvnc::ws::Recv::Closed(c) => return c,
                tcvnc::ws::Recv::Failed(e) => panic!("{e}"),
            }
        }
    })
    .await;
    let (code, reason) = closed.expect("a close frame");
    assert_eq!(code, 1008);
    assert!(
        reason.contains("colour-map pixel formats are not supported"),
        "{reason}"
    );
    drop(v);
    assert!(d.stop().await);
}

/// A viewer that stops reading does not slow the console or another viewer: the other
/// keeps receiving fresh frames while the first one's socket is full.
#[tokio::test]
async fn a_stalled_viewer_does_not_slow_the_others() {
    let sim = sim().await;
    let mut d = TestDaemon::start(&sim, &console_opts("")).await;
    let mut slow = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    let mut fast = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    // The slow viewer asks for full screens (1.2 MB each, Raw) and never reads.
    for _ in 0..20 {
        slow.request(false).await;
    }
    fast.request(false).await;
    within(fast.next_update()).await.expect("update");
    let frames = |d: &TestDaemon| {
        d.app.engines.get(INSTANCE).expect("engine").status_json()["frames"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = frames(&d);
    for _ in 0..25 {
        fast.request(true).await;
        within(fast.next_update()).await.expect("fresh frames");
    }
    fast.shows_pattern().expect("pattern");
    assert!(frames(&d) >= before + 20, "the console kept its pace");
    drop((slow, fast));
    assert!(d.stop().await);
}

/// A viewer of an engine that has just connected is served the console's first full
/// update, not the empty screen before it (the console takes 300 ms to send it).
#[tokio::test]
async fn the_first_viewer_never_sees_an_empty_screen() {
    let console = scripted_console(32, 32, false, std::time::Duration::from_millis(300)).await;
    let (_sim, mut d) = daemon_for(console.addr).await;
    let mut v = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    v.request(false).await;
    within(v.next_update()).await.expect("update");
    assert!(
        v.v.screen.iter().all(|&p| p & 0xff_ffff == 0x40_4040),
        "the console's screen, not an empty one"
    );
    assert!(d.stop().await);
}
