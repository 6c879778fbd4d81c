//! All log output at trace level, from every crate, during signing, minting, credential
//! refresh and errors, holds no secret key, session token or `s=` token.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tcvnc::cloud::credentials::{ConfigCredentials, Env, Provider};
use tcvnc::cloud::Product;
use tcvnc::sim::{Faults, IdentityConfig, DEMO_SECRET_KEY};

fn capture() {
    captured_logs(tracing::Level::TRACE);
}

fn logs() -> String {
    captured_logs(tracing::Level::TRACE)
}

/// Signing, minting, errors, retries and temporary-credential refresh leak nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_in_trace_logs() {
    capture();
    within(async {
        let sim = sim().await;
        let mut secrets: Vec<String> = vec![DEMO_SECRET_KEY.to_owned()];
        let c = client(&sim);
        let m = mint(&c, "ins-demo0001", "ap-guangzhou")
            .await
            .expect("minted");
        tracing::info!(url = %m.url.redacted(), console = ?m.url.console_url(), minted = ?m, "minted");
        let token = m.url.expose().split("s=").nth(1).and_then(|s| s.split('&').next()).expect("s=").to_owned();
        secrets.push(token.clone());
        // Also the percent-encoded form the API returned.
        secrets.push(percent_encoding::utf8_percent_encode(&token, percent_encoding::NON_ALPHANUMERIC).to_string());

        // Errors and retries.
        for faults in [Faults { http_500: 1, ..Faults::default() }, Faults { garbage: 1, ..Faults::default() }] {
            sim.state.set_faults(faults);
            mint(&c, "ins-demo0001", "ap-guangzhou").await.expect("after a retry");
        }
        let wrong = client_with(&sim, Product::Cvm, fixed_provider(&sim, tcvnc::sim::DEMO_SECRET_ID, "WRONGKEYWRONGKEY"), 10);
        secrets.push("WRONGKEYWRONGKEY".into());
        let _ = mint(&wrong, "ins-stopped1", "ap-guangzhou").await;

        // Temporary credentials from the metadata service, rejected and refreshed.
        sim.state.set_identity(IdentityConfig {
            oidc: None,
            cvm_role: Some("role".into()),
            temp_lifetime: Duration::from_secs(3600),
        });
        let dir = tempfile::tempdir().expect("tmp");
        let env = Env::from_pairs([("HOME", dir.path().display().to_string())]);
        let p = Arc::new(Provider::resolve(&ConfigCredentials::default(), &env, chain_options(&sim)).await.expect("role"));
        let first = p.get().await.expect("cred");
        let tc = client_with(&sim, Product::Cvm, p.clone(), 10);
        sim.state.expire_temporary_keys();
        mint(&tc, "ins-demo0001", "ap-guangzhou").await.expect("refreshed");
        let second = p.get().await.expect("cred");
        tracing::debug!(?first, ?second, "credentials");
        for c in [&first, &second] {
            secrets.push(c.secret_key.expose().to_owned());
            secrets.push(c.token.as_ref().expect("token").expose().to_owned());
        }
        // A whole session through the daemon: mint, dial, handshake, bridge, close.
        let mut d = TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001"])).await;
        let mut c = tcp_client(d.tcp("ins-demo0001")).await;
        rfb_handshake(&mut c, V38, None).await.expect("session");
        drop(c);
        let (mut ws, _) = ws_connect(d.http.expect("http"), "/vnc/ins-demo0001", None, Some("binary")).await.expect("ws");
        let _ = rfb_handshake(&mut ws, V38, None).await;
        drop(ws);
        assert!(d.stop().await);
        for t in sim.state.minted_tokens() {
            secrets.push(percent_encoding::utf8_percent_encode(&t, percent_encoding::NON_ALPHANUMERIC).to_string());
            secrets.push(t);
        }
        secrets.push(tcvnc::sim::DEMO_SECRET_KEY.to_owned());
        sim.shutdown().await;

        let text = logs();
        assert!(text.contains("TRACE") || text.contains("DEBUG"), "the capture must see trace output");
        assert!(text.contains("minted"), "the capture must see our own lines");
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "a secret leaked into the logs: {}…", &s[..4]);
        }
    })
    .await;
}
