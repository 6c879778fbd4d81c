//! The security edges: DNS rebinding (Host checked), password and token guessing,
//! unauthenticated connections that hold nothing, viewer text that carries no secret
//! and no operator detail, the web console's session cookie, config values that reach
//! headers or the cloud, and secret files others can read.

mod common;

use std::net::SocketAddr;

use common::*;
use tcvnc::sim::Faults;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one HTTP/1.1 request on a new connection and returns the status code and the
/// whole response head and body as text.
async fn http(addr: SocketAddr, path: &str, host: &str, extra: &str) -> (u16, String) {
    http_from([127, 0, 0, 1], addr, path, host, extra).await
}

async fn http_from(
    from: [u8; 4],
    addr: SocketAddr,
    path: &str,
    host: &str,
    extra: &str,
) -> (u16, String) {
    let mut s = tcp_stream_from(from, addr).await;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("write");
    // Read to the end, or only the head of a 101 (the websocket then stays open).
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if out.starts_with(b"HTTP/1.1 101") && out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

const WS_UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// A token of 256 bits, as `openssl rand -hex 32` makes one.
const TOKEN: &str = "3f1c9a7be25d4086a1f3c7e9b0d2468a5c7e9f1b3d5a7c9e0f2b4d6a8c0e2f41";

/// Item 1: every path but the probes answers only to this server's own names; a page
/// that re-points its name at 127.0.0.1 gets 421 and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_is_checked_on_every_path_but_the_probes() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&["ins-demo0001"]);
        o.http =
            Some("allowed_hosts = [\"console.example.com\", \"Pinned.Example.com:8443\"]\n".into());
        let mut d = TestDaemon::start(&sim, &o).await;
        let addr = d.http.expect("http");
        let port = addr.port();
        for path in [
            "/",
            "/metrics",
            "/vnc/ins-demo0001",
            "/vnc.html",
            "/nothing",
        ] {
            for host in [
                format!("evil.example:{port}"),
                format!("rebind.attacker.test:{port}"),
                "127.0.0.1".to_owned(),
                format!("localhost:{}", port.wrapping_add(1)),
                format!("pinned.example.com:{port}"),
                format!("127.0.0.1:{port}@evil"),
            ] {
                let extra = if path.starts_with("/vnc/") {
                    WS_UPGRADE
                } else {
                    ""
                };
                let (status, text) = http(addr, path, &host, extra).await;
                assert_eq!(status, 421, "{path} with Host {host}: {text}");
                assert!(text.contains("http.allowed_hosts"), "{text}");
                assert!(!text.contains("ins-demo0001"), "nothing else leaks: {text}");
            }
        }
        for probe in ["/healthz", "/readyz"] {
            assert_eq!(
                http(addr, probe, "evil.example", "").await.0,
                200,
                "{probe}"
            );
        }
        for host in [
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("LOCALHOST:{port}"),
            format!("[::1]:{port}"),
            "console.example.com".to_owned(),
            format!("console.example.com:{port}"),
            "pinned.example.com:8443".to_owned(),
        ] {
            assert_eq!(http(addr, "/", &host, "").await.0, 200, "Host {host}");
        }
        // The websocket opens for a right Host; a refused one spent nothing.
        assert_eq!(sim.state.stats().api_requests, 0);
        let (status, _) = http(
            addr,
            "/vnc/ins-demo0001",
            &format!("localhost:{port}"),
            WS_UPGRADE,
        )
        .await;
        assert_eq!(status, 101);
        assert!(d.stop().await);
    })
    .await;
}

fn pw_target(dir: &tempfile::TempDir, password: &str) -> String {
    let pw = dir.path().join("pw");
    std::fs::write(&pw, password).expect("write");
    format!(
        "[[target]]\ninstance = \"ins-demo0001\"\nlisten = \"127.0.0.1:0\"\npassword_file = \"{}\"\n",
        pw.display()
    )
}

/// What one password guess came to.
#[derive(Debug, PartialEq, Eq)]
enum Guess {
    /// The password was checked and found wrong.
    Wrong,
    /// Accepted.
    Right,
    /// Refused before any challenge was issued.
    Refused(String),
}

async fn guess(from: [u8; 4], addr: SocketAddr, password: &str) -> Guess {
    let mut c = tcp_client_from(from, addr).await;
    match rfb_handshake(&mut c, V38, Some(password)).await {
        Ok(_) => Guess::Right,
        Err(r) if r == "authentication failed: wrong password" => Guess::Wrong,
        Err(r) => Guess::Refused(r),
    }
}

/// Item 3: 90 parallel guesses from one address: one is checked, the rest are refused
/// before a challenge, and the right password among them is not let through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_guesses_from_one_address_are_not_evaluated() {
    within(async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        let mut o = Opts::targets(&[]);
        o.targets = pw_target(&dir, "s3cr3t!");
        o.session = "connections_per_peer_per_minute = 6000\nunauthenticated_per_peer = 100";
        let mut d = TestDaemon::start(&sim, &o).await;
        let addr = d.tcp("ins-demo0001");
        let mut tasks = Vec::new();
        for i in 0..90 {
            let pw = if i == 45 { "s3cr3t!" } else { "guess" };
            tasks.push(tokio::spawn(guess([127, 0, 0, 5], addr, pw)));
        }
        let mut results = Vec::new();
        for t in tasks {
            results.push(t.await.expect("task"));
        }
        let checked = results
            .iter()
            .filter(|g| matches!(g, Guess::Wrong | Guess::Right))
            .count();
        assert!(
            checked <= 2,
            "only one attempt per address is in flight: {results:?}"
        );
        let refused: Vec<&String> = results
            .iter()
            .filter_map(|g| match g {
                Guess::Refused(r) => Some(r),
                _ => None,
            })
            .collect();
        assert!(refused.len() >= 88);
        assert!(
            refused.iter().all(|r| r.contains("from your address")),
            "{refused:?}"
        );
        assert_eq!(
            sim.state.stats().api_requests,
            u64::from(results.contains(&Guess::Right))
        );
        assert!(d.stop().await);
    })
    .await;
}

/// Item 3: rotating addresses: at most 10 wrong passwords per target in a minute are
/// checked; the rest are told why, and nothing is spent upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_addresses_meet_the_target_ceiling() {
    within(async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        let mut o = Opts::targets(&[]);
        o.targets = pw_target(&dir, "s3cr3t!");
        let mut d = TestDaemon::start(&sim, &o).await;
        let addr = d.tcp("ins-demo0001");
        let mut checked = 0;
        let mut last = None;
        for n in 0..30u8 {
            match guess([127, 0, 1, n + 1], addr, "guess").await {
                Guess::Wrong => checked += 1,
                Guess::Refused(r) => last = Some(r),
                Guess::Right => panic!("a wrong password was accepted"),
            }
        }
        assert_eq!(checked, 10);
        let last = last.expect("refusals");
        assert!(
            last.starts_with("too many wrong passwords for this console recently: wait "),
            "{last}"
        );
        assert_eq!(sim.state.stats().api_requests, 0);
        assert!(d.stop().await);
    })
    .await;
}

fn token_http(dir: &tempfile::TempDir, token: &str) -> String {
    let p = dir.path().join("token");
    std::fs::write(&p, token).expect("write");
    format!("token_file = \"{}\"\n", p.display())
}

/// Item 4: wrong tokens back off per address (even a right token is refused meanwhile,
/// so a lucky guess learns nothing); other addresses are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_tokens_back_off_per_address() {
    within(async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        let mut o = Opts::targets(&["ins-demo0001"]);
        o.http = Some(token_http(&dir, TOKEN));
        let mut d = TestDaemon::start(&sim, &o).await;
        let addr = d.http.expect("http");
        let host = format!("127.0.0.1:{}", addr.port());
        let bearer = |t: &str| format!("Authorization: Bearer {t}\r\n");
        assert_eq!(http(addr, "/metrics", &host, "").await.0, 401, "no token");
        assert_eq!(
            http(addr, "/metrics", &host, "").await.0,
            401,
            "asking is not guessing"
        );
        // Many guesses on one keep-alive connection: the first is checked, the rest wait.
        let mut s = tcp_stream_from([127, 0, 0, 1], addr).await;
        let mut req = String::new();
        for i in 0..20 {
            req.push_str(&format!(
                "GET /metrics HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {i:064x}\r\n\r\n"
            ));
        }
        req.push_str(&format!(
            "GET /metrics HTTP/1.1\r\nHost: {host}\r\n{}Connection: close\r\n\r\n",
            bearer(TOKEN)
        ));
        s.write_all(req.as_bytes()).await.expect("write");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        let text = String::from_utf8_lossy(&out);
        assert_eq!(text.matches("HTTP/1.1 401").count(), 1, "{text}");
        assert_eq!(
            text.matches("HTTP/1.1 429").count(),
            20,
            "the right token too: {text}"
        );
        assert!(text.contains("retry-after: "), "{text}");
        // Another address is not held back; a token one character short is wrong.
        assert_eq!(
            http_from([127, 0, 0, 2], addr, "/metrics", &host, &bearer(TOKEN))
                .await
                .0,
            200
        );
        assert_eq!(
            http_from(
                [127, 0, 0, 3],
                addr,
                "/metrics",
                &host,
                &bearer(&TOKEN[1..])
            )
            .await
            .0,
            401
        );
        assert!(d.stop().await);
    })
    .await;
}

/// Item 4: a token under 128 bits is refused at startup, saying how to make one.
#[test]
fn short_tokens_are_refused_with_a_recipe() {
    let dir = tempfile::tempdir().expect("tmp");
    for weak in [
        "x",
        "hunter2hunter2",
        "0123456789abcdef0123456789abcde",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        let text = format!(
            "[http]\nlisten = \"0.0.0.0:6080\"\n{}",
            token_http(&dir, weak)
        );
        let e = tcvnc::config::Config::parse(&text, "t.toml", dir.path())
            .expect_err(weak)
            .to_string();
        assert!(
            e.contains("http.token_file") && e.contains("128") && e.contains("openssl rand"),
            "{e}"
        );
    }
    for strong in [TOKEN, "q5V1mG0kz3HsY9tP2wXe7LbN4RcJ8aFd"] {
        let text = format!(
            "[http]\nlisten = \"0.0.0.0:6080\"\n{}",
            token_http(&dir, strong)
        );
        tcvnc::config::Config::parse(&text, "t.toml", dir.path()).expect(strong);
    }
}

/// Item 7: `/?token=` signs a browser in: a redirect that drops the token from the
/// address, an HttpOnly SameSite=Strict cookie that is not the token, and with it the
/// index, noVNC's files and the websocket all open. The token reaches no log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_console_with_a_token_uses_a_session_cookie() {
    within(async {
        let _ = captured_logs(tracing::Level::TRACE);
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        let mut o = Opts::targets(&["ins-demo0001"]);
        o.http = Some(token_http(&dir, TOKEN));
        let mut d = TestDaemon::start(&sim, &o).await;
        let addr = d.http.expect("http");
        let host = format!("127.0.0.1:{}", addr.port());
        let (status, text) = http(addr, &format!("/?token={TOKEN}"), &host, "").await;
        assert_eq!(status, 303, "{text}");
        let lower = text.to_ascii_lowercase();
        assert!(lower.contains("\r\nlocation: /\r\n"), "{text}");
        let cookie_line = lower
            .lines()
            .find(|l| l.starts_with("set-cookie: "))
            .expect("a cookie")
            .to_owned();
        assert!(
            cookie_line.contains("httponly") && cookie_line.contains("samesite=strict"),
            "{cookie_line}"
        );
        assert!(!cookie_line.contains(TOKEN), "the cookie is not the token");
        let cookie = cookie_line
            .trim_start_matches("set-cookie: ")
            .split(';')
            .next()
            .expect("pair")
            .to_owned();
        let with_cookie = format!("Cookie: {cookie}\r\n");
        let (status, page) = http(addr, "/", &host, &with_cookie).await;
        assert_eq!(status, 200);
        assert!(page.contains("ins-demo0001"));
        assert_eq!(
            http(addr, "/", &host, "").await.0,
            401,
            "no cookie, no token"
        );
        let (status, _) = http(
            addr,
            "/vnc/ins-demo0001",
            &host,
            &format!("{with_cookie}{WS_UPGRADE}"),
        )
        .await;
        assert_eq!(status, 101, "the console link opens with the cookie alone");
        assert_eq!(
            http(addr, "/", &host, "Cookie: tcvnc_session=0000\r\n")
                .await
                .0,
            401,
            "a forged cookie"
        );
        assert!(d.stop().await);
        assert!(
            !captured_logs(tracing::Level::TRACE).contains(TOKEN),
            "the token is never logged"
        );
    })
    .await;
}

/// Item 5b: connections that never greet hold no session slot, at most
/// `unauthenticated_per_peer` of them per address, and real viewers get through during
/// the flood.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_lock_out_viewers() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&["ins-demo0001", "ins-demo0002"]);
        o.session = "max_sessions = 2\nunauthenticated_per_peer = 4\ngreeting_timeout = \"30s\"";
        let mut d = TestDaemon::start(&sim, &o).await;
        let addr = d.tcp("ins-demo0001");
        let mut silent = Vec::new();
        let mut refused_at_once = Vec::new();
        for from in [[127, 0, 0, 2], [127, 0, 0, 3]] {
            for _ in 0..10 {
                let mut s = tcp_stream_from(from, addr).await;
                let mut v = [0u8; 12];
                s.read_exact(&mut v).await.expect("greeting");
                // Admitted ones are greeted in 3.8; the rest are refused in 3.3 at once,
                // with the reason and nothing read.
                if &v == b"RFB 003.008\n" {
                    silent.push(s);
                } else {
                    assert_eq!(&v, b"RFB 003.003\n");
                    let mut rest = Vec::new();
                    s.read_to_end(&mut rest)
                        .await
                        .expect("the reason, then the end");
                    refused_at_once.push(String::from_utf8_lossy(&rest[8..]).into_owned());
                }
            }
        }
        assert_eq!(silent.len(), 8, "4 per address");
        assert_eq!(refused_at_once.len(), 12);
        assert!(
            refused_at_once.iter().all(|r| r
                .starts_with("too many unauthenticated connections from this address (limit 4)")),
            "{refused_at_once:?}"
        );
        assert_eq!(d.app.unauthenticated.held(), 8);
        // Both session slots are still free for viewers that greet.
        let mut a = tcp_client(addr).await;
        rfb_handshake(&mut a, V38, None)
            .await
            .expect("first viewer");
        let mut b = tcp_client(d.tcp("ins-demo0002")).await;
        rfb_handshake(&mut b, V38, None)
            .await
            .expect("second viewer");
        let mut c = tcp_client_from([127, 0, 0, 4], addr).await;
        let r = rfb_handshake(&mut c, V38, None)
            .await
            .expect_err("no third slot");
        assert!(r.contains("limit of 2 concurrent sessions"), "{r}");
        drop((a, b, c, silent));
        assert!(d.stop().await);
    })
    .await;
}

/// Item 5b: the greeting has its own short timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_greeting_has_a_short_timeout() {
    within(async {
        let sim = sim().await;
        let mut o = Opts::targets(&["ins-demo0001"]);
        o.session = "greeting_timeout = \"300ms\"\nhandshake_timeout = \"60s\"";
        let mut d = TestDaemon::start(&sim, &o).await;
        let mut s = tokio::net::TcpStream::connect(d.tcp("ins-demo0001"))
            .await
            .expect("c");
        let t0 = tokio::time::Instant::now();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out).await;
        assert_eq!(out, b"RFB 003.008\n");
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "closed by the greeting timeout, not the handshake's"
        );
        assert_eq!(d.app.unauthenticated.held(), 0);
        assert!(d.stop().await);
    })
    .await;
}

/// Item 6: what a viewer reads carries no credential source, file path, cloud message
/// or holder address; the log has the detail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_text_is_not_operator_text() {
    within(async {
        let _ = captured_logs(tracing::Level::INFO);
        let sim = sim().await;
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001"])).await;
        let addr = d.tcp("ins-demo0001");
        let mut live = d.app.watch_sessions();
        for code in [
            "AuthFailure.SecretIdNotFound",
            "FailedOperation",
            "AuthFailure.InvalidSecretId",
            "UnauthorizedOperation",
        ] {
            sim.state.set_faults(Faults {
                error_code: Some(code.into()),
                ..Faults::default()
            });
            let mut c = tcp_client(addr).await;
            let r = rfb_handshake(&mut c, V38, None).await.expect_err(code);
            for secret_ish in [
                "config file",
                "[credentials]",
                "injected fault",
                "test.toml",
                "environment",
                "127.0.0.1",
            ] {
                assert!(!r.contains(secret_ish), "{code}: {r}");
            }
            assert!(r.contains(code), "the code to quote: {r}");
            assert!(r.contains("RequestId"), "the RequestId to quote: {r}");
            drop(c);
            live.wait_for(|n| *n == 0).await.expect("w");
        }
        sim.state.set_faults(Faults::default());
        // Busy: since when, not who.
        let mut holder = tcp_client(addr).await;
        rfb_handshake(&mut holder, V38, None).await.expect("holder");
        let mut c = tcp_client_from([127, 0, 0, 7], addr).await;
        let r = rfb_handshake(&mut c, V38, None).await.expect_err("busy");
        assert!(
            r.starts_with("the console of ins-demo0001 is in use by another viewer since "),
            "{r}"
        );
        assert!(!r.contains("127.0.0.1"), "{r}");
        let logs = captured_logs(tracing::Level::INFO);
        assert!(
            logs.contains("injected fault FailedOperation"),
            "the log has the cloud's message"
        );
        assert!(
            logs.contains("is in use by 127.0.0.1:"),
            "the log has the holder"
        );
        drop((holder, c));
        assert!(d.stop().await);
    })
    .await;
}

fn parse(text: &str) -> Result<tcvnc::config::Config, String> {
    tcvnc::config::Config::parse(text, "t.toml", std::path::Path::new("/nonexistent"))
        .map_err(|e| e.to_string())
}

/// Item 8: values that reach request headers refuse CR, LF and control characters;
/// budgets above the documented limits need the explicit switch.
#[test]
fn config_values_that_reach_headers_or_the_cloud() {
    for (text, key) in [
        (
            "[upstream]\norigin = \"https://a.example\\r\\nX-Evil: 1\"\n",
            "upstream.origin",
        ),
        (
            "[upstream]\norigin = \"https://a.example\\n\"\n",
            "upstream.origin",
        ),
        (
            "[upstream]\norigin = \"https://a\\u0000.example\"\n",
            "upstream.origin",
        ),
        (
            "[upstream]\nsubprotocols = [\"binary\\r\\nX: y\"]\n",
            "upstream.subprotocols[0]",
        ),
        (
            "[upstream]\nsubprotocols = [\"bin\\tary\"]\n",
            "upstream.subprotocols[0]",
        ),
        (
            "[http]\nallowed_hosts = [\"https://x.example\"]\n",
            "http.allowed_hosts[0]",
        ),
        (
            "[http]\nallowed_hosts = [\"a.example/path\"]\n",
            "http.allowed_hosts[0]",
        ),
        (
            "[budget]\nreconnects_per_minute = 40\n",
            "budget.reconnects_per_minute",
        ),
        (
            "[budget]\napi_requests_per_second = 11\n",
            "budget.api_requests_per_second",
        ),
    ] {
        let e = parse(text).expect_err(text);
        assert!(e.contains(key), "{text:?}: {e}");
    }
    let e = parse("[budget]\nreconnects_per_minute = 40\n").expect_err("40");
    assert!(e.contains("allow_above_documented_limits"), "{e}");
    let c = parse("[budget]\nreconnects_per_minute = 40\napi_requests_per_second = 20\nallow_above_documented_limits = true\n")
        .expect("raised quota");
    assert_eq!(c.budget.reconnects_per_minute.get(), 40);
    assert!(c.lints().iter().any(|l| l.contains("quota")));
}

/// Item 3: a VNC password longer than 8 characters is refused, not silently cut.
#[test]
fn long_vnc_passwords_are_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    for key in ["password_file", "upstream_password_file"] {
        let p = dir.path().join("pw");
        std::fs::write(&p, "ninechars").expect("write");
        let text = format!(
            "[[target]]\ninstance = \"ins-r9hr2upy\"\nregion = \"ap-beijing\"\n{key} = \"{}\"\n",
            p.display()
        );
        let e = parse(&text).expect_err(key);
        assert!(e.contains(key) && e.contains("first 8"), "{e}");
        std::fs::write(&p, "eight_ch").expect("write");
        parse(&text).expect("8 is fine");
    }
}

/// Item 9: a secret file that group or others can read is named in a startup warning.
#[test]
fn readable_secret_files_are_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tmp");
    let key = dir.path().join("key");
    std::fs::write(&key, "k").expect("write");
    let text = format!(
        "[credentials]\nsecret_id = \"AKIDx\"\nsecret_key_file = \"{}\"\n",
        key.display()
    );
    for (mode, warned) in [(0o644, true), (0o640, true), (0o600, false), (0o400, false)] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let lints = parse(&text).expect("valid").lints().join("\n");
        assert_eq!(
            lints.contains(&format!("{} holds a secret", key.display())),
            warned,
            "mode {mode:o}: {lints}"
        );
    }
    // A config file with an inline key is itself a secret file.
    let cfg = dir.path().join("tcvnc.toml");
    std::fs::write(
        &cfg,
        "[credentials]\nsecret_id = \"AKIDx\"\nsecret_key = \"k\"\n",
    )
    .expect("write");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let lints = tcvnc::config::Config::load(&cfg)
        .expect("valid")
        .lints()
        .join("\n");
    assert!(
        lints.contains("credentials.secret_key") && lints.contains("chmod 600"),
        "{lints}"
    );
}
