//! Test harness: a simulator on port 0, API clients pointed at it, and helpers.
#![allow(dead_code, missing_docs)]

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use tcvnc::budget::ApiLimiter;
use tcvnc::cloud::credentials::{ChainOptions, Credential, Provider};
use tcvnc::cloud::{ClientOptions, CloudClient, EndpointPolicy, Product};
use tcvnc::redact::Secret;
use tcvnc::sim::{SimHandle, SimOptions, DEMO_SECRET_ID, DEMO_SECRET_KEY};

/// Every test gets this long before it is failed.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn sim() -> SimHandle {
    SimHandle::start(SimOptions::default())
        .await
        .expect("simulator starts")
}

pub async fn sim_with(opts: SimOptions) -> SimHandle {
    SimHandle::start(opts).await.expect("simulator starts")
}

pub fn tls() -> Arc<rustls::ClientConfig> {
    tcvnc::tls::client_config(None).expect("tls config")
}

pub fn chain_options(sim: &SimHandle) -> ChainOptions {
    let mut o = ChainOptions::new(tls());
    o.metadata_endpoint = sim.api_url.clone();
    o.sts_endpoint = sim.api_url.clone();
    o.etc_profile = "/nonexistent/tcvnc-test/credentials".into();
    o
}

pub fn demo_provider(sim: &SimHandle) -> Arc<Provider> {
    fixed_provider(sim, DEMO_SECRET_ID, DEMO_SECRET_KEY)
}

pub fn fixed_provider(sim: &SimHandle, id: &str, key: &str) -> Arc<Provider> {
    Arc::new(
        Provider::fixed(
            Credential::fixed(id, Secret::new(key), None, "test"),
            chain_options(sim),
        )
        .expect("provider"),
    )
}

pub fn fast_options() -> ClientOptions {
    ClientOptions {
        connect_timeout: Duration::from_secs(2),
        timeout: Duration::from_secs(5),
        max_retries: 3,
        backoff: Duration::from_millis(1),
    }
}

pub fn client_with(
    sim: &SimHandle,
    product: Product,
    provider: Arc<Provider>,
    rate: u32,
) -> CloudClient {
    let endpoints = EndpointPolicy {
        override_endpoint: Some(tcvnc::cloud::parse_endpoint(&sim.api_url).expect("endpoint")),
        ..EndpointPolicy::default()
    };
    CloudClient::new(
        product,
        endpoints,
        provider,
        Arc::new(ApiLimiter::new(NonZeroU32::new(rate).expect("nonzero"))),
        tls(),
        fast_options(),
    )
    .expect("client")
}

pub fn client(sim: &SimHandle) -> CloudClient {
    client_with(sim, Product::Cvm, demo_provider(sim), 10)
}

/// Runs `fut` with the test timeout.
pub async fn within<F: std::future::Future>(fut: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, fut)
        .await
        .expect("test timed out")
}

/// True when end-to-end tests should run (`TCVNC_E2E=1`); otherwise says loudly that
/// `name` was skipped.
pub fn e2e(name: &str) -> bool {
    if std::env::var("TCVNC_E2E").as_deref() == Ok("1") {
        true
    } else {
        eprintln!("SKIPPED end-to-end test {name}: set TCVNC_E2E=1 (bash .ci/run does) to run it");
        false
    }
}

/// The venv's Python (`TCVNC_PYTHON`, else `.venv/bin/python`); a missing one fails the test.
pub fn python() -> std::path::PathBuf {
    let p = std::env::var_os("TCVNC_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python")
        });
    assert!(
        p.exists(),
        "end-to-end tests need {} (scripts/e2e-setup creates it)",
        p.display()
    );
    p
}

/// A file under tests/e2e.
pub fn e2e_file(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/e2e")
        .join(name)
}
