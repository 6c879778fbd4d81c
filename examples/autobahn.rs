//! The echo peers `scripts/autobahn` runs Autobahn|Testsuite against.
//!
//! `autobahn server ADDR` serves websockets the way the `/vnc/<instance>` listener does
//! (the same hyper accept loop, the same `websocket_handshake` checks, `WsIo` in the
//! server role) and echoes every message. `autobahn client ws://HOST:PORT` asks
//! Autobahn's fuzzingserver for its case count, then dials each case with the real
//! upstream `Dialer` (the same hand-made upgrade and 101 checks as for a console URL, over
//! plain TCP on loopback) and echoes with `WsIo` in the client role.
//!
//! Why echo here and not through a daemon: tcvnc bridges a byte stream, so it neither
//! keeps message boundaries nor answers a test within a message; Autobahn checks both.
//! What the suite judges (framing, control frames, close codes, the handshakes) is the
//! code these peers share with the daemon.

use std::time::Duration;

use bytes::BytesMut;
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use tcvnc::cloud::VncUrl;
use tcvnc::listen::http::websocket_handshake;
use tcvnc::upstream::Dialer;
use tcvnc::ws::{Recv, Role, WsIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;

/// Largest message echoed (Autobahn's largest is 16 MiB).
const LIMIT: usize = 20 << 20;

/// Echoes messages until the peer closes or breaks the protocol.
async fn echo<S: AsyncRead + AsyncWrite>(mut ws: WsIo<S>) {
    let mut msg = BytesMut::new();
    loop {
        msg.clear();
        match ws.recv_message(&mut msg, LIMIT).await {
            Ok(()) => {
                if ws.send(msg.split().freeze()).await.is_err() {
                    return;
                }
            }
            // The close owed (echo, or the violation's code) was sent by `recv_message`.
            Err(Recv::Closed(_) | Recv::Failed(_) | Recv::Data(_)) => {
                ws.close(1000, "").await;
                ws.linger(Duration::from_secs(5)).await;
                return;
            }
        }
    }
}

async fn server(addr: &str) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let shutdown = tcvnc::shutdown::Shutdown::new();
    let sd = shutdown.clone();
    tcvnc::http_util::serve(
        listener,
        shutdown,
        move |req, _peer| {
            let sd = sd.clone();
            async move {
                let hs = match websocket_handshake(&req) {
                    Ok(hs) => hs,
                    Err(refusal) => return *refusal,
                };
                let mode = hs.mode;
                sd.spawn(async move {
                    if let Ok(up) = hyper::upgrade::on(req).await {
                        let ws =
                            WsIo::new(TokioIo::new(up), Role::Server, mode, Default::default());
                        echo(ws).await;
                    }
                });
                tcvnc::http_util::switching_protocols(&hs.accept, hs.protocol)
            }
        },
        Duration::from_secs(10),
    )
    .await;
    Ok(())
}

/// One text answer from the fuzzingserver's control URLs (tungstenite: not under test).
async fn control(base: &str, path: &str) -> anyhow::Result<Option<String>> {
    let hostport = base.strip_prefix("ws://").unwrap_or(base);
    let tcp = tokio::net::TcpStream::connect(hostport).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("{base}{path}"), tcp).await?;
    let mut text = None;
    while let Some(m) = ws.next().await {
        match m? {
            Message::Text(t) => text = Some(t.to_string()),
            Message::Close(_) => break,
            _ => {}
        }
    }
    Ok(text)
}

async fn client(base: &str) -> anyhow::Result<()> {
    let count: u32 = control(base, "/getCaseCount")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no case count"))?
        .trim()
        .parse()?;
    println!("{count} cases");
    let tls = tcvnc::tls::client_config(None)?;
    let dialer = Dialer::new(tls, None, vec!["binary".into()], Duration::from_secs(10));
    for case in 1..=count {
        let url = VncUrl::parse(&format!("{base}/runCase?case={case}&agent=tcvnc"))?;
        match dialer.dial(&url).await {
            Ok(up) => {
                // A case that hangs is Autobahn's to judge; do not hang the run.
                let _ = tokio::time::timeout(Duration::from_secs(60), echo(up.io)).await;
            }
            Err(e) => eprintln!("case {case}: {e}"),
        }
    }
    control(base, "/updateReports?agent=tcvnc").await?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1..) {
        Some([role, addr]) if role == "server" => server(addr).await,
        Some([role, base]) if role == "client" => client(base.trim_end_matches('/')).await,
        _ => anyhow::bail!("usage: autobahn server ADDR | autobahn client ws://HOST:PORT"),
    }
}
