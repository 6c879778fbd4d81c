//! Every credential source against local fakes (the simulator's STS and metadata),
//! refresh before expiry, refresh on rejection, and one fetch for many callers.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use tcvnc::cloud::credentials::{ConfigCredentials, Env, Error, Provider};
use tcvnc::cloud::{NoGate, Product};
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
        client_with(&sim, Product::Cvm, p, 10)
            .describe_instance_vnc_url("ins-demo0001", "ap-guangzhou", &NoGate)
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
        client_with(&sim, Product::Cvm, p.clone(), 10)
            .describe_instance_vnc_url("ins-demo0001", "ap-guangzhou", &NoGate)
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

/// CVM role from the metadata service: fetched, cached, refreshed 300 s before expiry.
#[tokio::test]
async fn cvm_role_refresh_before_expiry() {
    within(async {
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
        p.get().await.expect("cached");
        assert_eq!(p.fetch_count(), 1, "an hour left: no refresh");

        // Credentials with less than 300 s left are refreshed in the background at once;
        // callers keep getting the cached ones meanwhile.
        sim.state.set_identity(cvm_role("tcvnc-role", 200));
        let p = Provider::resolve(
            &no_config(),
            &env_home(dir.path(), &[]),
            chain_options(&sim),
        )
        .await
        .expect("cvm role");
        let first = p.get().await.expect("cached, still valid");
        let status = p
            .subscribe()
            .wait_for(|s| s.fetches == 2)
            .await
            .expect("refresher alive")
            .clone();
        assert_eq!(
            p.fetch_count(),
            2,
            "200 s left is inside the 300 s refresh margin"
        );
        let second = status.credential.expect("refreshed");
        assert_ne!(first.secret_id, second.secret_id);
        assert_eq!(p.get().await.expect("new").secret_id, second.secret_id);
    })
    .await;
}

/// 100 concurrent callers while a refresh is due share the one background fetch and
/// are answered from the cache.
#[tokio::test]
async fn single_fetch_for_many_callers() {
    within(async {
        let sim = sim().await;
        let dir = tempfile::tempdir().expect("tmp");
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
        // The cached credentials are due; the next fetch is slow and lasts an hour.
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
        c.describe_instance_vnc_url("ins-demo0001", "ap-guangzhou", &NoGate)
            .await
            .expect("first");
        sim.state.expire_temporary_keys();
        let m = c
            .describe_instance_vnc_url("ins-demo0001", "ap-guangzhou", &NoGate)
            .await
            .expect("refreshed and retried");
        assert_eq!(m.attempts, 2);
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
