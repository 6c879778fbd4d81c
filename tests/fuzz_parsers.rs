//! Property-based fuzzing (proptest; cargo-fuzz needs a nightly toolchain we do not have)
//! of every parser that reads outside input: the console URL, the API envelope, the config
//! loader, the RFB client messages, and the websocket upgrade answer from a gateway.
//! `PROPTEST_CASES` raises the number of cases for long local runs.

mod common;

use std::path::Path;

use proptest::prelude::*;
use tcvnc::cloud::client::parse_envelope;
use tcvnc::cloud::VncUrl;
use tcvnc::config::Config;

fn cases(default: u32) -> ProptestConfig {
    let n = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases: n,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const VALID_CONFIG: &str = "[cloud]\nregion = \"ap-guangzhou\"\n[budget]\nmax_wait = \"5s\"\n[http]\nlisten = \"127.0.0.1:6080\"\n[[target]]\ninstance = \"ins-r9hr2upy\"\nlisten = \"127.0.0.1:5901\"\n";

proptest! {
    #![proptest_config(cases(4000))]

    /// Any string: no panic; an accepted URL is a ws(s) URL with a host, and a raw URL
    /// parses to itself byte for byte.
    #[test]
    fn vnc_url_any_input(s in ".{0,200}") {
        if let Ok(u) = VncUrl::parse(&s) {
            prop_assert!(!u.host().is_empty());
            prop_assert!(u.expose().to_ascii_lowercase().starts_with("ws"));
            let again = VncUrl::parse(u.expose());
            prop_assert!(again.is_ok());
            prop_assert!(!u.redacted().contains("s=") || u.redacted().contains("s=***") || !u.expose().contains("s="));
        }
    }

    /// URL-shaped input with arbitrary query bytes, raw and percent-encoded.
    #[test]
    fn vnc_url_shaped(host in "[a-z0-9.]{1,20}", port in 1..=u16::MAX, token in "[A-Za-z0-9+/=]{4,80}", encode in any::<bool>()) {
        let raw = format!("wss://{host}:{port}/vnc?s={token}&password=");
        let input = if encode {
            percent_encoding::utf8_percent_encode(&raw, tcvnc::cloud::vnc_url::COMPONENT).to_string()
        } else {
            raw.clone()
        };
        let u = VncUrl::parse(&input).expect("well-formed URLs parse");
        if encode {
            prop_assert_eq!(u.expose(), raw.as_str(), "decoded exactly once");
        }
        prop_assert!(!u.redacted().contains(&token), "the token never shows in the loggable form");
    }

    /// Any bytes as an API answer: no panic.
    #[test]
    fn envelope_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_envelope(&b);
    }

    /// JSON-shaped answers with arbitrary values in every field.
    #[test]
    fn envelope_json_shaped(code in proptest::option::of(".{0,40}"), msg in ".{0,200}", url in proptest::option::of(".{0,100}"), rid in any::<bool>()) {
        let mut r = serde_json::Map::new();
        if let Some(c) = code {
            r.insert("Error".into(), serde_json::json!({"Code": c, "Message": msg}));
        }
        if let Some(u) = url {
            r.insert("InstanceVncUrl".into(), serde_json::json!(u));
        }
        if rid {
            r.insert("RequestId".into(), serde_json::json!("x"));
        }
        let body = serde_json::json!({"Response": r}).to_string();
        if let Ok(tcvnc::cloud::client::Envelope::Err { message, .. }) = parse_envelope(body.as_bytes()) {
            prop_assert!(message.chars().all(|c| !c.is_control()));
            prop_assert!(message.chars().count() <= 512);
        }
    }

    /// Any text as a config: no panic; every error names the file.
    #[test]
    fn config_any_text(s in ".{0,300}") {
        if let Err(e) = Config::parse(&s, "fuzz.toml", Path::new("/nonexistent")) {
            prop_assert!(e.to_string().starts_with("fuzz.toml: "));
        }
    }

    /// A valid config with one byte changed: no panic, errors name the file.
    #[test]
    fn config_mutated(pos in 0usize..VALID_CONFIG.len(), byte in any::<u8>()) {
        let mut b = VALID_CONFIG.as_bytes().to_vec();
        b[pos] = byte;
        let s = String::from_utf8_lossy(&b);
        if let Err(e) = Config::parse(&s, "fuzz.toml", Path::new("/nonexistent")) {
            prop_assert!(e.to_string().starts_with("fuzz.toml: "));
        }
    }

    /// Any bytes from a viewer after the handshake, as the test pattern server reads them:
    /// no panic, no unbounded allocation.
    #[test]
    fn client_messages_any_bytes(b in proptest::collection::vec(any::<u8>(), 0..200)) {
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("rt");
        rt.block_on(async {
            let mut r: &[u8] = &b;
            while tcvnc::rfb::messages::read_client_message(&mut r).await.is_ok() {}
        });
    }
}

proptest! {
    #![proptest_config(cases(64))]

    /// A gateway answering the websocket upgrade with arbitrary bytes: the dial fails with
    /// an error naming the gateway, never panics, never hangs past its timeout.
    #[test]
    fn upgrade_answer_any_bytes(answer in proptest::collection::vec(any::<u8>(), 0..400), status_line in any::<bool>()) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("rt");
        rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = l.local_addr().expect("addr");
            let mut payload = if status_line { b"HTTP/1.1 101 Switching Protocols\r\n".to_vec() } else { Vec::new() };
            payload.extend_from_slice(&answer);
            tokio::spawn(async move {
                if let Ok((mut s, _)) = l.accept().await {
                    let mut buf = [0u8; 2048];
                    let _ = s.read(&mut buf).await;
                    let _ = s.write_all(&payload).await;
                }
            });
            let url = VncUrl::parse(&format!("ws://{addr}/vnc?s=abc")).expect("url");
            let dialer = tcvnc::upstream::Dialer::new(common::tls(), None, vec!["binary".into()], std::time::Duration::from_secs(2));
            let r = dialer.dial(&url).await;
            if let Err(e) = r {
                assert!(e.to_string().contains(&addr.to_string()), "{e}");
            }
        });
    }
}
