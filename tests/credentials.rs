//! Every credential source against local fakes (the simulator's STS and metadata),
//! refresh before expiry, refresh on rejection, and one fetch for many callers.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tcvnc::cloud::credentials::{ConfigCredentials, Env, Error, Phase, Provider};
use tcvnc::cloud::Product;
use tcvnc::redact::Secret;
use tcvnc::sim::{Faults, IdentityConfig, DEMO_SECRET_ID, DEMO_SECRET_KEY};

/// The metadata service reports role `name`; its credentials live `secs`.
fn cvm_role(name: &str, secs: u64) -> IdentityConfig {
    IdentityConfig {
        oidc: None,
        cvm_role: Some(name.into()),
        temp_lifetime: Duration::from_secs(secs),
    }
}

/// STS accepts the test provider and role with web identity token `jwt`.
fn oidc_identity(jwt: &str) -> IdentityConfig {
    IdentityConfig {
        oidc: Some((
            "oidc-provider".into(),
            "qcs::cam::uin/1:roleName/tcvnc".into(),
            jwt.into(),
        )),
        cvm_role: None,
        temp_lifetime: Duration::from_secs(3600),
    }
}

fn no_config() -> ConfigCredentials {
    ConfigCredentials::default()
}

fn env_home(home: &std::path::Path, extra: &[(&str, &str)]) -> Env {
    let mut pairs: Vec<(String, String)> = vec![("HOME".into(), home.display().to_string())];
    pairs.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Env::from_pairs(pairs)
}

/// Config beats the environment.
#[tokio::test]
async fn config_first() {
    within(async {
        let sim = sim().await;
        let cfg = ConfigCredentials {
            secret_id: Some("AKIDconfig".into()),
            secret_key: Some(Secret::new("k")),
            token: None,
        };
        let env = Env::from_pairs([
            ("TENCENTCLOUD_SECRET_ID", "AKIDenv"),
            ("TENCENTCLOUD_SECRET_KEY", "k2"),
        ]);
        let p = Provider::resolve(&cfg, &env, chain_options(&sim))
            .await
            .expect("resolved");
        assert_eq!(p.get().await.expect("cred").secret_id, "AKIDconfig");
        assert!(p.description().contains("config"));
    })
    .await;
}

/// The environment, with each token spelling, and a half-set pair refused.
#[tokio::test]
async fn environment() {
    within(async {
        let sim = sim().await;
        for var in [
            "TENCENTCLOUD_SESSION_TOKEN",
            "TENCENTCLOUD_TOKEN",
            "TENCENTCLOUD_SECURITY_TOKEN",
        ] {
            let env = Env::from_pairs([
                ("TENCENTCLOUD_SECRET_ID", DEMO_SECRET_ID),
                ("TENCENTCLOUD_SECRET_KEY", DEMO_SECRET_KEY),
                (var, "tok"),
            ]);
            let p = Provider::resolve(&no_config(), &env, chain_options(&sim))
                .await
                .expect("env");
            let c = p.get().await.expect("cred");
            assert_eq!(c.token.as_ref().map(Secret::expose), Some("tok"), "{var}");
            assert!(c.is_temporary());
        }
        let env = Env::from_pairs([("TENCENTCLOUD_SECRET_ID", DEMO_SECRET_ID)]);
        let e = Provider::resolve(&no_config(), &env, chain_options(&sim))
            .await
            .expect_err("half");
        assert!(e.to_string().contains("TENCENTCLOUD_SECRET_KEY"), "{e}");
        // Long-term keys from the environment mint a URL.
        let env = Env::from_pairs([
            ("TENCENTCLOUD_SECRET_ID", DEMO_SECRET_ID),
            ("TENCENTCLOUD_SECRET_KEY", DEMO_SECRET_KEY),
        ]);
        let p = Arc::new(
            Provider::resolve(&no_config(), &env, chain_options(&sim))
                .await
                .expect("env"),
        );
        mint(
            &client_with(&sim, Product::Cvm, p, 10),
            "ins-demo0001",
            "ap-guangzhou",
        )
        .await
        .expect("minted with env credentials");
    })
    .await;
}

/// Profile files: the explicit path, ~/.tencentcloud/credentials, /etc/tencentcloud/credentials.
#[tokio::test]
async fn profile_files() {
    within(async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        let write = |p: &std::path::Path, id: &str| {
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, format!("[default]\nsecret_id = {id}\nsecret_key = k\n"))
                .expect("write");
        };
        let explicit = dir.path().join("explicit");
        write(&explicit, "AKIDexplicit");
        let home = dir.path().join("home");
        write(&home.join(".tencentcloud/credentials"), "AKIDhome");
        let etc = dir.path().join("etc/credentials");
        write(&etc, "AKIDetc");
        let mut opts = chain_options(&sim);
        opts.etc_profile = etc.clone();

        let env = env_home(
            &home,
            &[(
                "TENCENTCLOUD_CREDENTIALS_FILE",
                &explicit.display().to_string(),
            )],
        );
        let p = Provider::resolve(&no_config(), &env, opts.clone())
            .await
            .expect("explicit");
        assert_eq!(p.get().await.expect("c").secret_id, "AKIDexplicit");

        let p = Provider::resolve(&no_config(), &env_home(&home, &[]), opts.clone())
            .await
            .expect("home");
        assert_eq!(p.get().await.expect("c").secret_id, "AKIDhome");

        let p = Provider::resolve(
            &no_config(),
            &env_home(&dir.path().join("nohome"), &[]),
            opts.clone(),
        )
        .await
        .expect("etc");
        assert_eq!(p.get().await.expect("c").secret_id, "AKIDetc");

        // An explicit path that does not exist is an error, not a fall-through.
        let env = env_home(
            &home,
            &[("TENCENTCLOUD_CREDENTIALS_FILE", "/nonexistent/creds")],
        );
        let e = Provider::resolve(&no_config(), &env, opts.clone())
            .await
            .expect_err("missing");
        assert!(matches!(e, Error::File { .. }), "{e}");
        let env = env_home(&home, &[("TENCENTCLOUD_CREDENTIALS_FILE", "")]);
        assert!(Provider::resolve(&no_config(), &env, opts).await.is_err());
    })
    .await;
}

fn tke_env(home: &std::path::Path, token_file: &std::path::Path, var: &str) -> Env {
    env_home(
        home,
        &[
            ("TKE_REGION", "ap-guangzhou"),
            ("TKE_PROVIDER_ID", "oidc-provider"),
            ("TKE_ROLE_ARN", "qcs::cam::uin/1:roleName/tcvnc"),
            (var, &token_file.display().to_string()),
        ],
    )
}

/// TKE OIDC: unsigned AssumeRoleWithWebIdentity, both token-file variable names, the file
/// re-read on refresh, and the temporary key works against the API.
#[tokio::test]
async fn tke_oidc() {
    within(async {
        let sim = sim().await;
        sim.state.set_identity(oidc_identity("jwt-1"));
        let dir = tempfile::tempdir().expect("tmp");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "jwt-1\n").expect("write");
        for var in ["TKE_WEB_IDENTITY_TOKEN_FILE", "TKE_IDENTITY_TOKEN_FILE"] {
            let p = Provider::resolve(
                &no_config(),
                &tke_env(dir.path(), &token_file, var),
                chain_options(&sim),
            )
            .await
            .expect("tke");
            assert_eq!(p.fetch_count(), 1);
            assert!(p.get().await.expect("c").is_temporary());
            assert_eq!(p.fetch_count(), 1, "cached until refresh is due");
        }
        let p = Arc::new(
            Provider::resolve(
                &no_config(),
                &tke_env(dir.path(), &token_file, "TKE_WEB_IDENTITY_TOKEN_FILE"),
                chain_options(&sim),
            )
            .await
            .expect("tke"),
        );
        mint(
            &client_with(&sim, Product::Cvm, p.clone(), 10),
            "ins-demo0001",
            "ap-guangzhou",
        )
        .await
        .expect("temporary key works");
        // The projected token rotates: the next refresh must read the new file.
        sim.state.set_identity(oidc_identity("jwt-2"));
        std::fs::write(&token_file, "jwt-2\n").expect("write");
        let old = p.get().await.expect("c");
        let new = p
            .refresh_after_rejection(&old)
            .await
            .expect("refreshed with the new token");
        assert_ne!(old.secret_id, new.secret_id);
        // A wrong token fails with the STS code in the message.
        std::fs::write(&token_file, "bad").expect("write");
        let e = Provider::resolve(
            &no_config(),
            &tke_env(dir.path(), &token_file, "TKE_WEB_IDENTITY_TOKEN_FILE"),
            chain_options(&sim),
        )
        .await
        .expect_err("bad token");
        assert!(e.to_string().contains("WebIdentityTokenError"), "{e}");
    })
    .await;
}

/// CVM role from the metadata service: fetched, cached, refreshed in the background 300 s
/// before expiry; credentials that arrive inside that margin are refreshed halfway to
/// their expiry, not in a loop.
#[test]
fn cvm_role_refresh_before_expiry() {
    manual_time(|| async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        sim.state.set_identity(cvm_role("tcvnc-role", 3600));
        let p = Provider::resolve(
            &no_config(),
            &env_home(dir.path(), &[]),
            chain_options(&sim),
        )
        .await
        .expect("cvm role");
        assert_eq!(p.description(), "CVM role tcvnc-role");
        assert_eq!(p.fetch_count(), 1);
        let first = p.get().await.expect("cached");
        assert_eq!(p.fetch_count(), 1, "an hour left: no refresh");
        let mut status = p.subscribe();
        // (whole seconds on the wall clock: the plan may be a second early)
        tokio::time::advance(Duration::from_secs(3290)).await;
        assert_eq!(p.fetch_count(), 1, "not before the 300 s margin");
        tokio::time::advance(Duration::from_secs(20)).await;
        status
            .wait_for(|s| s.fetches == 2)
            .await
            .expect("refreshed");
        assert_ne!(p.get().await.expect("new").secret_id, first.secret_id);

        // Credentials with 200 s left (inside the margin) are refreshed after 100 s.
        sim.state.set_identity(cvm_role("tcvnc-role", 200));
        let p = Provider::resolve(
            &no_config(),
            &env_home(dir.path(), &[]),
            chain_options(&sim),
        )
        .await
        .expect("cvm role");
        let mut status = p.subscribe();
        for fetches in [2, 3] {
            tokio::time::advance(Duration::from_secs(90)).await;
            p.get().await.expect("cached");
            assert_eq!(p.fetch_count(), fetches - 1, "no refresh loop");
            tokio::time::advance(Duration::from_secs(20)).await;
            status
                .wait_for(|s| s.fetches == fetches)
                .await
                .expect("refreshed");
        }
    });
}

/// 100 concurrent callers while a refresh is due share the one background fetch and
/// are answered from the cache.
#[tokio::test]
async fn single_fetch_for_many_callers() {
    within(async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        // 2 s left: refreshed in the background after 1 s.
        sim.state.set_identity(cvm_role("r", 2));
        let p = Arc::new(
            Provider::resolve(
                &no_config(),
                &env_home(dir.path(), &[]),
                chain_options(&sim),
            )
            .await
            .expect("cvm role"),
        );
        let cached = p.get().await.expect("cached").secret_id.clone();
        // The next fetch is slow and lasts an hour.
        sim.state.set_identity(cvm_role("r", 3600));
        sim.state.set_faults(Faults {
            latency: Some(Duration::from_millis(100)),
            ..Faults::default()
        });
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let p = p.clone();
            tasks.push(tokio::spawn(async move {
                p.get().await.map(|c| c.secret_id.clone())
            }));
        }
        let mut ids = std::collections::HashSet::new();
        for t in tasks {
            ids.insert(t.await.expect("join").expect("credentials"));
        }
        assert_eq!(ids.len(), 1, "everyone got the same credentials");
        assert!(ids.contains(&cached), "from the cache");
        p.subscribe()
            .wait_for(|s| s.fetches == 2)
            .await
            .expect("refresher alive");
        assert_eq!(p.fetch_count(), 2, "one refresh for 100 callers");
        assert_eq!(sim.state.metadata_requests(), 2);
    })
    .await;
}

/// Temporary credentials rejected mid-run (TokenFailure) are refreshed once and the call
/// retried; the caller never sees the failure.
#[tokio::test]
async fn token_failure_triggers_one_refresh() {
    within(async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        sim.state.set_identity(cvm_role("r", 3600));
        let p = Arc::new(
            Provider::resolve(
                &no_config(),
                &env_home(dir.path(), &[]),
                chain_options(&sim),
            )
            .await
            .expect("cvm role"),
        );
        let c = client_with(&sim, Product::Cvm, p.clone(), 10);
        mint(&c, "ins-demo0001", "ap-guangzhou")
            .await
            .expect("first");
        sim.state.expire_temporary_keys();
        mint(&c, "ins-demo0001", "ap-guangzhou")
            .await
            .expect("refreshed and retried");
        assert_eq!(
            sim.state.stats().api_requests,
            3,
            "the first mint, then a rejected request and its retry"
        );
        assert_eq!(p.fetch_count(), 2);
        assert_eq!(
            sim.state.stats().errors.get("AuthFailure.TokenFailure"),
            Some(&1)
        );
    })
    .await;
}

/// No role bound (404) and no metadata service at all: NotFound naming what was tried.
#[tokio::test]
async fn nothing_found_says_what_was_tried() {
    within(async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        let e = Provider::resolve(
            &no_config(),
            &env_home(dir.path(), &[]),
            chain_options(&sim),
        )
        .await
        .expect_err("no role");
        let text = e.to_string();
        assert!(text.contains("none bound"), "{text}");
        assert!(text.contains("TENCENTCLOUD_SECRET_ID"), "{text}");
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("a");
        let mut opts = chain_options(&sim);
        opts.metadata_endpoint = format!("http://{closed}");
        let e = Provider::resolve(&no_config(), &env_home(dir.path(), &[]), opts)
            .await
            .expect_err("unreachable");
        assert!(
            e.to_string().contains("metadata service unreachable"),
            "{e}"
        );
    })
    .await;
}

/// Spawns `n` concurrent callers of `get()`; returns each result and the (paused) time
/// it took.
async fn callers(
    p: &Arc<Provider>,
    n: usize,
) -> Vec<(
    Result<Arc<tcvnc::cloud::credentials::Credential>, Error>,
    Duration,
)> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let p = p.clone();
            tokio::spawn(async move {
                let t0 = tokio::time::Instant::now();
                let r = p.get().await;
                (r, t0.elapsed())
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("join"));
    }
    out
}

/// Callers with valid cached credentials never wait, even while the refresh they are
/// due for is stuck at the metadata service: each `get()` completes on its first poll
/// (zero paused time elapsed) with the cached credentials.
#[test]
fn valid_cached_credentials_never_wait() {
    manual_time(|| async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        // 200 s left: inside the 300 s margin.
        sim.state.set_identity(cvm_role("r", 200));
        let p = Arc::new(
            Provider::resolve(
                &no_config(),
                &env_home(dir.path(), &[]),
                chain_options(&sim),
            )
            .await
            .expect("cvm role"),
        );
        let cached = p.get().await.expect("cached").secret_id.clone();
        // The refresh (planned halfway to expiry) takes 5 s of paused time at the
        // metadata service.
        sim.state.set_faults(Faults {
            latency: Some(Duration::from_secs(5)),
            ..Faults::default()
        });
        let mut status = p.subscribe();
        tokio::time::advance(Duration::from_secs(101)).await;
        status
            .wait_for(|s| s.phase == Phase::Fetching)
            .await
            .expect("refresh started");
        for (r, waited) in callers(&p, 8).await {
            assert_eq!(r.expect("cached").secret_id, cached);
            assert_eq!(waited, Duration::ZERO, "a caller waited");
        }
        // Each completes on its first poll, while the refresh is still in flight.
        for _ in 0..8 {
            tokio::time::timeout(Duration::ZERO, p.get())
                .await
                .expect("get() never waits while the cache is valid")
                .expect("cached");
        }
        assert_eq!(status.borrow().phase, Phase::Fetching);
        // Let the fake's 5 s pass (in steps: its timer starts when the request lands).
        let mut steps = 0;
        while status.borrow().fetches < 2 {
            assert!(steps < 30, "the refresh never finished");
            steps += 1;
            tokio::time::advance(Duration::from_secs(1)).await;
            tokio::task::yield_now().await;
        }
        let fresh = status
            .wait_for(|s| s.fetches == 2)
            .await
            .expect("refreshed")
            .credential
            .clone()
            .expect("credential");
        assert_ne!(fresh.secret_id, cached);
        assert_eq!(p.get().await.expect("fresh").secret_id, fresh.secret_id);
        assert_eq!(p.fetch_count(), 2);
    });
}

/// A failing source is asked once per backoff step, not once per caller: 8 concurrent
/// callers with nothing valid cached share one fetch and its error; callers during a
/// backoff step get the last error at once; each step (doubling, with jitter) brings
/// exactly one fetch. When the source heals, waiting callers share one successful fetch.
/// `source` picks TKE OIDC (STS) or the CVM role (metadata service).
fn failing_source_asked_once_per_backoff_step(tke: bool) {
    manual_time(move || async move {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "jwt-1\n").expect("write");
        let (env, asked): (Env, fn(&tcvnc::sim::SimState) -> u64) = if tke {
            sim.state.set_identity(oidc_identity("jwt-1"));
            (
                tke_env(dir.path(), &token_file, "TKE_WEB_IDENTITY_TOKEN_FILE"),
                tcvnc::sim::SimState::sts_requests,
            )
        } else {
            sim.state.set_identity(cvm_role("r", 3600));
            (
                env_home(dir.path(), &[]),
                tcvnc::sim::SimState::metadata_requests,
            )
        };
        let p = Arc::new(
            Provider::resolve(&no_config(), &env, chain_options(&sim))
                .await
                .expect("resolved"),
        );
        assert_eq!(asked(&sim.state), 1);
        let mut status = p.subscribe();
        sim.state.set_identity_down(true);
        // The server's clock is 2 h ahead (as the client learns from SignatureExpire):
        // on the signer's clock the cached credentials (1 h) have expired.
        sim.state.set_clock_offset(7200);
        p.clock_offset()
            .store(7200, std::sync::atomic::Ordering::Relaxed);
        for (r, _) in callers(&p, 8).await {
            let e = r.expect_err("source down");
            let text = e.to_string();
            assert!(text.contains(p.description()), "{text}");
            assert!(text.contains("check"), "names the fix: {text}");
        }
        assert_eq!(asked(&sim.state), 2, "one fetch for 8 callers");
        let mut previous = Duration::ZERO;
        for step in 1..=4u64 {
            let (until, failures) = match status.borrow_and_update().phase {
                Phase::Backoff { until, failures } => (until, failures),
                other => panic!("expected a backoff, got {other:?}"),
            };
            assert_eq!(u64::from(failures), step);
            let wait = until - tokio::time::Instant::now();
            let base = Duration::from_secs(1 << (step - 1));
            assert!(
                wait >= base && wait < base.mul_f64(1.5),
                "step {step}: {wait:?}"
            );
            assert!(wait > previous, "backoff grows");
            previous = wait;
            // During the step: answered at once with the last error, nothing fetched.
            for (r, waited) in callers(&p, 8).await {
                let e = r.expect_err("still down");
                assert!(e.to_string().contains("next attempt in"), "{e}");
                assert_eq!(waited, Duration::ZERO);
            }
            assert_eq!(asked(&sim.state), 1 + step);
            // (tokio rounds timer deadlines up to the next millisecond)
            tokio::time::advance(wait + Duration::from_millis(1)).await;
            status
                .wait_for(|s| s.fetches == 2 + step)
                .await
                .expect("next attempt");
            assert_eq!(
                asked(&sim.state),
                2 + step,
                "one fetch per backoff step: {:?}",
                status.borrow().last_error
            );
        }
        // Healed: the next step's fetch succeeds.
        sim.state.set_identity_down(false);
        let until = match status.borrow_and_update().phase {
            Phase::Backoff { until, .. } => until,
            other => panic!("expected a backoff, got {other:?}"),
        };
        tokio::time::advance(until - tokio::time::Instant::now() + Duration::from_millis(1)).await;
        status
            .wait_for(|s| s.phase == Phase::Idle)
            .await
            .expect("recovered");
        let healed = p.get().await.expect("valid again").secret_id.clone();
        assert_eq!(asked(&sim.state), 7);
        // Those credentials expire on the server clock too: 8 callers wait for one
        // successful fetch and all get its credentials.
        sim.state.set_clock_offset(2 * 7200);
        p.clock_offset()
            .store(2 * 7200, std::sync::atomic::Ordering::Relaxed);
        let mut ids = std::collections::HashSet::new();
        for (r, _) in callers(&p, 8).await {
            ids.insert(r.expect("fetched for the waiters").secret_id.clone());
        }
        assert_eq!(ids.len(), 1, "{ids:?}");
        assert!(!ids.contains(&healed));
        assert_eq!(asked(&sim.state), 8, "one fetch for 8 waiting callers");
    });
}

/// STS (TKE OIDC) down: see [`failing_source_asked_once_per_backoff_step`].
#[test]
fn failing_sts_is_asked_once_per_backoff_step() {
    failing_source_asked_once_per_backoff_step(true);
}

/// The metadata service down: see [`failing_source_asked_once_per_backoff_step`].
#[test]
fn failing_metadata_is_asked_once_per_backoff_step() {
    failing_source_asked_once_per_backoff_step(false);
}

/// A fixed session token (config `token_file`, `TENCENTCLOUD_SESSION_TOKEN`, profile
/// `token`) that the cloud rejects is a permanent error naming the source and the fix:
/// the request is sent once, never resent with the same credentials.
#[tokio::test]
async fn rejected_fixed_token_is_final() {
    within(async {
        let dir = tempfile::tempdir().expect("tmp");
        let profile = dir.path().join("credentials");
        std::fs::write(
            &profile,
            format!("[default]\nsecret_id = {DEMO_SECRET_ID}\nsecret_key = {DEMO_SECRET_KEY}\ntoken = stale\n"),
        )
        .expect("write");
        let cases: Vec<(ConfigCredentials, Env, &str)> = vec![
            (
                ConfigCredentials {
                    secret_id: Some(DEMO_SECRET_ID.into()),
                    secret_key: Some(Secret::new(DEMO_SECRET_KEY)),
                    token: Some(Secret::new("stale")),
                },
                Env::default(),
                "[credentials]",
            ),
            (
                no_config(),
                Env::from_pairs([
                    ("TENCENTCLOUD_SECRET_ID", DEMO_SECRET_ID),
                    ("TENCENTCLOUD_SECRET_KEY", DEMO_SECRET_KEY),
                    ("TENCENTCLOUD_SESSION_TOKEN", "stale"),
                ]),
                "TENCENTCLOUD_SESSION_TOKEN",
            ),
            (
                no_config(),
                env_home(
                    dir.path(),
                    &[("TENCENTCLOUD_CREDENTIALS_FILE", &profile.display().to_string())],
                ),
                "restart",
            ),
        ];
        for (cfg, env, fix) in cases {
            let sim = sim().await;
            let p = Arc::new(
                Provider::resolve(&cfg, &env, chain_options(&sim))
                    .await
                    .expect("fixed"),
            );
            assert!(!p.can_refresh());
            let e = mint(&client_with(&sim, Product::Cvm, p.clone(), 10), "ins-demo0001", "ap-guangzhou")
                .await
                .expect_err("the token is refused");
            let text = e.to_string();
            assert!(e.is_cloud_refusal(), "{text}");
            assert!(text.contains("cannot refresh"), "{text}");
            assert!(text.contains(p.description()), "{text}");
            assert!(text.contains(fix), "{text}");
            let stats = sim.state.stats();
            assert_eq!(stats.api_requests, 1, "sent once, not resent: {text}");
            assert_eq!(stats.errors.get("AuthFailure.TokenFailure"), Some(&1));
            let cred = p.get().await.expect("cred");
            assert!(matches!(
                p.refresh_after_rejection(&cred).await,
                Err(Error::Rejected { .. })
            ));
        }
    })
    .await;
}

/// A TLS-intercepting CONNECT proxy on 127.0.0.1:0, like a corporate one: it records
/// each request line, answers CONNECT, terminates TLS with a certificate from its own
/// CA (written to `ca_file`) and forwards the plaintext to the CONNECT target. Anything
/// else gets 502.
async fn intercepting_proxy(
    ca_file: &std::path::Path,
) -> (std::net::SocketAddr, Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let acceptor = tcvnc::sim::gateway::tls_acceptor([127, 0, 0, 1].into(), ca_file)
        .expect("proxy certificate");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let log = log.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if tcp.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let line = head.lines().next().unwrap_or_default().to_owned();
                log.lock().expect("log").push(line.clone());
                let Some(target) = line
                    .strip_prefix("CONNECT ")
                    .and_then(|r| r.split(' ').next())
                else {
                    let _ = tcp
                        .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    return;
                };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(target).await else {
                    return;
                };
                if tcp
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    (addr, seen)
}

/// STS goes through `HTTPS_PROXY` (taken from the `Env` snapshot) and trusts the
/// proxy's CA; `NO_PROXY` bypasses it; the metadata service is reached directly even
/// with every proxy variable set.
#[tokio::test]
async fn sts_through_https_proxy_metadata_never() {
    within(async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        let ca = dir.path().join("proxy-ca.pem");
        let (proxy, seen) = intercepting_proxy(&ca).await;
        let proxy_url = format!("http://{proxy}");
        let api = sim.api_url.trim_start_matches("http://").to_owned();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "jwt-1\n").expect("write");
        sim.state.set_identity(oidc_identity("jwt-1"));
        // STS at https://<the simulator's plain-http port>: only the intercepting proxy
        // can make that work (direct TLS to it fails).
        let mut opts = chain_options(&sim);
        opts.sts_endpoint = format!("https://{api}");
        opts.tls = tcvnc::tls::client_config(Some(&ca)).expect("tls with the proxy CA");
        let tke = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("TKE_REGION", "ap-guangzhou".to_owned()),
                ("TKE_PROVIDER_ID", "oidc-provider".to_owned()),
                ("TKE_ROLE_ARN", "qcs::cam::uin/1:roleName/tcvnc".to_owned()),
                (
                    "TKE_WEB_IDENTITY_TOKEN_FILE",
                    token_file.display().to_string(),
                ),
                ("HOME", dir.path().display().to_string()),
            ];
            pairs.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
            Env::from_pairs(pairs)
        };
        let p = Provider::resolve(
            &no_config(),
            &tke(&[("HTTPS_PROXY", &proxy_url)]),
            opts.clone(),
        )
        .await
        .expect("STS through the proxy");
        assert!(p.get().await.expect("cred").is_temporary());
        assert_eq!(
            seen.lock().expect("seen").clone(),
            vec![format!("CONNECT {api} HTTP/1.1")],
            "the proxy saw the CONNECT to STS"
        );
        assert_eq!(sim.state.sts_requests(), 1);
        // Lower-case spelling too.
        Provider::resolve(
            &no_config(),
            &tke(&[("https_proxy", &proxy_url)]),
            opts.clone(),
        )
        .await
        .expect("https_proxy");
        assert_eq!(seen.lock().expect("seen").len(), 2);
        // No proxy, or NO_PROXY covering the host: direct, and TLS to a plain port fails.
        for env in [
            tke(&[]),
            tke(&[("HTTPS_PROXY", &proxy_url), ("NO_PROXY", "127.0.0.1")]),
        ] {
            Provider::resolve(&no_config(), &env, opts.clone())
                .await
                .expect_err("direct TLS to a plain-http port");
        }
        assert_eq!(seen.lock().expect("seen").len(), 2, "bypassed");

        // The metadata service, with every proxy variable pointing at the proxy.
        sim.state.set_identity(cvm_role("r", 3600));
        let env = env_home(
            dir.path(),
            &[
                ("HTTPS_PROXY", &proxy_url),
                ("HTTP_PROXY", &proxy_url),
                ("https_proxy", &proxy_url),
                ("http_proxy", &proxy_url),
            ],
        );
        let p = Provider::resolve(&no_config(), &env, opts)
            .await
            .expect("metadata reached directly");
        assert_eq!(p.description(), "CVM role r");
        assert_eq!(
            seen.lock().expect("seen").len(),
            2,
            "metadata never proxied"
        );
        assert_eq!(sim.state.metadata_requests(), 1);
    })
    .await;
}

/// The API client built by `cloud_client()` goes through `HTTPS_PROXY` from the Env and
/// trusts `[cloud] ca_file`; without that CA the intercepted TLS is refused. A CA file
/// that is not PEM is a config error naming the key (exit 64).
#[tokio::test]
async fn api_through_https_proxy_with_cloud_ca_file() {
    within(async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        let ca = dir.path().join("proxy-ca.pem");
        let (proxy, seen) = intercepting_proxy(&ca).await;
        let api = sim.api_url.trim_start_matches("http://").to_owned();
        let config = |ca_line: &str| {
            format!(
                "[cloud]\nregion = \"ap-guangzhou\"\nendpoint = \"https://{api}\"\n{ca_line}\n[credentials]\nsecret_id = \"{DEMO_SECRET_ID}\"\nsecret_key = \"{DEMO_SECRET_KEY}\"\n"
            )
        };
        let env = Env::from_pairs([("HTTPS_PROXY", format!("http://{proxy}"))]);
        let cfg = tcvnc::config::Config::parse(
            &config(&format!("ca_file = \"{}\"", ca.display())),
            "t.toml",
            dir.path(),
        )
        .expect("config");
        let client = tcvnc::app::cloud_client(&cfg, None, &env, None)
            .await
            .expect("client");
        mint(&client, "ins-demo0001", "ap-guangzhou")
            .await
            .expect("minted through the proxy");
        assert_eq!(
            seen.lock().expect("seen").first().cloned(),
            Some(format!("CONNECT {api} HTTP/1.1"))
        );
        // Without the proxy's CA, the intercepted TLS is refused.
        let cfg =
            tcvnc::config::Config::parse(&config(""), "t.toml", dir.path()).expect("config");
        let client = tcvnc::app::cloud_client(&cfg, None, &env, None)
            .await
            .expect("client");
        let e = mint(&client, "ins-demo0001", "ap-guangzhou")
            .await
            .expect_err("untrusted proxy certificate");
        assert!(e.to_string().contains(&api), "{e}");
        // A CA file that is not PEM: a config error naming cloud.ca_file.
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate").expect("write");
        let e = tcvnc::config::Config::parse(
            &config(&format!("ca_file = \"{}\"", bad.display())),
            "t.toml",
            dir.path(),
        )
        .expect_err("not PEM");
        assert_eq!(e.key, "cloud.ca_file", "{e}");
        assert_eq!(tcvnc::cmd::CmdError::from(e).exit_code(), 64);
        let e = tcvnc::config::Config::parse(
            &config("ca_file = \"missing.pem\""),
            "t.toml",
            dir.path(),
        )
        .expect_err("unreadable");
        assert_eq!(e.key, "cloud.ca_file", "{e}");
    })
    .await;
}

/// The API limit is the account's, not the SecretId's: a CVM role's SecretId changes at
/// every refresh, and the requests before and after a rotation share one limit.
#[tokio::test]
async fn the_api_limit_survives_credential_rotation() {
    within(async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
        sim.state.set_identity(cvm_role("r", 3600));
        let p = Arc::new(
            Provider::resolve(
                &no_config(),
                &env_home(dir.path(), &[]),
                chain_options(&sim),
            )
            .await
            .expect("cvm role"),
        );
        let limiter = Arc::new(tcvnc::budget::ApiLimiter::new(
            std::num::NonZeroU32::MIN.saturating_add(9),
        ));
        let c = tcvnc::cloud::CloudClient::new(
            Product::Cvm,
            tcvnc::cloud::EndpointPolicy {
                override_endpoint: Some(
                    tcvnc::cloud::parse_endpoint(&sim.api_url).expect("endpoint"),
                ),
                ..Default::default()
            },
            p.clone(),
            limiter.clone(),
            tls(),
            fast_options(),
        )
        .expect("client");
        let before = p.get().await.expect("cred").secret_id.clone();
        mint(&c, "ins-demo0001", "ap-guangzhou")
            .await
            .expect("first");
        sim.state.expire_temporary_keys();
        mint(&c, "ins-demo0001", "ap-guangzhou")
            .await
            .expect("refreshed");
        let after = p.get().await.expect("cred").secret_id.clone();
        assert_ne!(before, after, "the role's SecretId rotated");
        let keys = limiter.keys();
        assert_eq!(keys.len(), 1, "one limit for the account: {keys:?}");
        assert!(
            !keys[0].account.contains(&before) && !keys[0].account.contains(&after),
            "{keys:?}"
        );
    })
    .await;
}
