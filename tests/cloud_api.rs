//! The API client against the simulator: minting, every error class, retries, limits.

mod common;

use common::*;
use tcvnc::cloud::{self, Class, Error, Product};
use tcvnc::sim::Faults;

/// A URL is minted, decoded once, and points at the simulator's gateway.
#[tokio::test]
async fn mints_a_gateway_url() {
    within(async {
        let sim = sim().await;
        let c = client(&sim);
        let m = mint(&c, "ins-demo0001", "ap-guangzhou")
            .await
            .expect("minted");
        assert!(m
            .url
            .expose()
            .starts_with(&format!("{}/vnc?s=", sim.gateway_url)));
        assert!(m
            .url
            .expose()
            .ends_with("&password=&isWindows=false&isUbuntu=false"));
        assert!(!m.request_id.is_empty());
        assert_eq!(
            sim.state.stats().actions.get("DescribeInstanceVncUrl"),
            Some(&1)
        );
        assert_eq!(sim.state.mints("ins-demo0001"), 1);
    })
    .await;
}

/// Lighthouse uses its own version, service and id prefix.
#[tokio::test]
async fn lighthouse_product() {
    within(async {
        let sim = sim().await;
        let c = client_with(&sim, Product::Lighthouse, demo_provider(&sim), 10);
        mint(&c, "lhins-demo0001", "ap-guangzhou")
            .await
            .expect("minted");
        let e = mint(&c, "ins-demo0001", "ap-guangzhou")
            .await
            .expect_err("a CVM id is malformed for Lighthouse");
        assert_eq!(e.code(), Some("InvalidParameterValue.InstanceIdMalformed"));
    })
    .await;
}

/// A wrong key fails at once with SignatureFailure: the verifier can say no.
#[tokio::test]
async fn wrong_key_is_refused_once() {
    within(async {
        let sim = sim().await;
        let c = client_with(
            &sim,
            Product::Cvm,
            fixed_provider(&sim, tcvnc::sim::DEMO_SECRET_ID, "wrong-key"),
            10,
        );
        let e = mint(&c, "ins-demo0001", "ap-guangzhou")
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Some("AuthFailure.SignatureFailure"));
        assert!(
            e.to_string().contains("SecretKey does not match SecretId"),
            "{e}"
        );
        assert!(e.is_cloud_refusal());
        assert_eq!(
            sim.state.stats().api_requests,
            1,
            "permanent errors are not retried"
        );
        let c = client_with(
            &sim,
            Product::Cvm,
            fixed_provider(&sim, "AKIDunknown", "k"),
            10,
        );
        let e = mint(&c, "ins-demo0001", "ap-guangzhou")
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Some("AuthFailure.SecretIdNotFound"));
    })
    .await;
}

/// Instance errors carry the id, state and fix.
#[tokio::test]
async fn instance_errors_explain_themselves() {
    within(async {
        let sim = sim().await;
        let c = client(&sim);
        let cases = [
            (
                "ins-1122",
                "InvalidInstanceId.Malformed",
                "'ins-1122' is not a valid instance ID",
            ),
            (
                "ins-nothere1",
                "InvalidInstanceId.NotFound",
                "instance ins-nothere1 not found in ap-guangzhou",
            ),
            (
                "ins-stopped1",
                "InvalidInstanceState",
                "instance ins-stopped1 is stopped (InvalidInstanceState): start it, then reconnect",
            ),
        ];
        for (id, code, text) in cases {
            let e = mint(&c, id, "ap-guangzhou").await.expect_err(id);
            assert_eq!(e.code(), Some(code));
            assert!(e.to_string().contains(text), "{e}");
        }
    })
    .await;
}

/// A skewed clock is corrected from the server's Date and the call re-signed once.
#[tokio::test]
async fn clock_skew_is_corrected_once() {
    within(async {
        let sim = sim().await;
        sim.state.set_clock_offset(900);
        let c = client(&sim);
        let m = mint(&c, "ins-demo0001", "ap-guangzhou")
            .await
            .expect("re-signed with the server's time");
        assert!(m.request_id.len() > 8);
        assert_eq!(sim.state.stats().api_requests, 2, "refused, then re-signed");
        assert_eq!(
            sim.state.stats().errors.get("AuthFailure.SignatureExpire"),
            Some(&1)
        );
    })
    .await;
}

struct Case {
    code: &'static str,
    class: Class,
}

const TABLE: &[Case] = &[
    Case {
        code: "RequestLimitExceeded",
        class: Class::Retry,
    },
    Case {
        code: "RequestLimitExceeded.UinLimitExceeded",
        class: Class::Retry,
    },
    Case {
        code: "RequestLimitExceeded.IPLimitExceeded",
        class: Class::Retry,
    },
    Case {
        code: "ServiceUnavailable",
        class: Class::Retry,
    },
    Case {
        code: "ResourceUnavailable",
        class: Class::Retry,
    },
    Case {
        code: "InternalError",
        class: Class::RetryOnce,
    },
    Case {
        code: "AuthFailure.InvalidSecretId",
        class: Class::Permanent,
    },
    Case {
        code: "AuthFailure.InvalidAuthorization",
        class: Class::Permanent,
    },
    Case {
        code: "AuthFailure.MFAFailure",
        class: Class::Permanent,
    },
    Case {
        code: "AuthFailure.UnauthorizedOperation",
        class: Class::Permanent,
    },
    Case {
        code: "UnauthorizedOperation",
        class: Class::Permanent,
    },
    Case {
        code: "OperationDenied.InstanceOperationInProgress",
        class: Class::Permanent,
    },
    Case {
        code: "UnsupportedOperation.InstanceStateStopped",
        class: Class::Permanent,
    },
    Case {
        code: "InvalidInstance.NotSupported",
        class: Class::Permanent,
    },
    Case {
        code: "FailedOperation",
        class: Class::Permanent,
    },
    Case {
        code: "LimitExceeded",
        class: Class::Permanent,
    },
    Case {
        code: "UnsupportedRegion",
        class: Class::Permanent,
    },
    Case {
        code: "InvalidParameter",
        class: Class::Permanent,
    },
    Case {
        code: "Some.FutureCode",
        class: Class::Permanent,
    },
    Case {
        code: "AuthFailure.TokenFailure",
        class: Class::Permanent,
    },
];

/// Every code in the table: permanent ones fail at once with the code in the message;
/// retryable ones are retried within the bound and then reported.
#[tokio::test]
async fn error_table() {
    within(async {
        let sim = sim().await;
        let c = client(&sim);
        for case in TABLE {
            sim.state.set_faults(Faults {
                error_code: Some(case.code.into()),
                ..Faults::default()
            });
            let before = sim.state.stats().api_requests;
            let e = mint(&c, "ins-demo0001", "ap-guangzhou")
                .await
                .expect_err(case.code);
            let requests = sim.state.stats().api_requests - before;
            assert_eq!(e.code(), Some(case.code));
            assert!(e.to_string().contains(case.code), "{}: {e}", case.code);
            assert_eq!(e.class(), case.class, "{}", case.code);
            let expected = match case.class {
                Class::Retry => 4,
                Class::RetryOnce => 2,
                _ => 1,
            };
            assert_eq!(requests, expected, "{}: attempts", case.code);
        }
        assert!(TABLE.len() >= 15);
    })
    .await;
}

/// A retryable error code that clears is absorbed by the retries; an outcome that is
/// unknown (HTTP 500, garbage, truncated: the request reached the cloud, which may have
/// minted) is retried once only.
#[tokio::test]
async fn transient_errors_are_absorbed() {
    within(async {
        let sim = sim().await;
        let c = client(&sim);
        for faults in [
            Faults {
                error_code: Some("ServiceUnavailable".into()),
                error_count: 2,
                ..Faults::default()
            },
            Faults {
                http_500: 1,
                ..Faults::default()
            },
            Faults {
                garbage: 1,
                ..Faults::default()
            },
            Faults {
                truncated: 1,
                ..Faults::default()
            },
        ] {
            sim.state.set_faults(faults.clone());
            let before = sim.state.stats().api_requests;
            mint(&c, "ins-demo0001", "ap-guangzhou")
                .await
                .unwrap_or_else(|e| panic!("{faults:?}: {e}"));
            assert!(
                sim.state.stats().api_requests - before > 1,
                "{faults:?}: retried"
            );
        }
    })
    .await;
}

/// HTTP 500 every time: an unknown outcome, retried once, then reported as such.
#[tokio::test]
async fn persistent_http_errors_are_reported() {
    within(async {
        let sim = sim().await;
        sim.state.set_faults(Faults {
            http_500: 100,
            ..Faults::default()
        });
        let e = mint(&client(&sim), "ins-demo0001", "ap-guangzhou")
            .await
            .expect_err("500s");
        assert!(matches!(e, Error::Status { status: 500, .. }), "{e}");
        assert!(
            e.to_string()
                .starts_with("no usable answer from Tencent Cloud API at 127.0.0.1:"),
            "{e}"
        );
        assert!(!e.is_cloud_refusal());
        assert_eq!(
            sim.state.stats().api_requests,
            2,
            "one retry of an unknown outcome"
        );
    })
    .await;
}

/// Nothing listening: a transport error naming the host.
#[tokio::test]
async fn unreachable_api() {
    within(async {
        let sim = sim().await;
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let endpoints = tcvnc::cloud::EndpointPolicy {
            override_endpoint: Some(cloud::parse_endpoint(&format!("http://{addr}")).expect("ep")),
            ..Default::default()
        };
        let c = tcvnc::cloud::CloudClient::new(
            Product::Cvm,
            endpoints,
            demo_provider(&sim),
            std::sync::Arc::new(tcvnc::budget::ApiLimiter::new(std::num::NonZeroU32::MIN)),
            tls(),
            fast_options(),
        )
        .expect("client");
        let e = mint(&c, "ins-demo0001", "ap-guangzhou")
            .await
            .expect_err("nothing there");
        assert!(matches!(e, Error::Connect { .. }), "{e}");
        assert!(e.to_string().contains(&addr.to_string()), "{e}");
    })
    .await;
}

/// The simulator enforces 10 requests/s per action and credential; our limiter keeps
/// the client under it.
#[tokio::test]
async fn api_rate_limit_both_sides() {
    within(async {
        let sim = sim().await;
        // A client that ignores the limit (1000/s) and never retries gets RequestLimitExceeded.
        let mut opts = fast_options();
        opts.max_retries = 0;
        let greedy = tcvnc::cloud::CloudClient::new(
            Product::Cvm,
            tcvnc::cloud::EndpointPolicy {
                override_endpoint: Some(cloud::parse_endpoint(&sim.api_url).expect("ep")),
                ..Default::default()
            },
            demo_provider(&sim),
            std::sync::Arc::new(tcvnc::budget::ApiLimiter::new(
                std::num::NonZeroU32::new(1000).expect("nz"),
            )),
            tls(),
            opts,
        )
        .expect("client");
        let mut limited = 0;
        for _ in 0..15 {
            if let Err(e) = greedy.describe_instances(&[], "ap-guangzhou").await {
                assert_eq!(e.code(), Some("RequestLimitExceeded"));
                limited += 1;
            }
        }
        assert!(
            limited >= 1,
            "the simulator must refuse the 11th request in a second"
        );

        // A polite client spreads 25 calls out and is never refused.
        let sim = common::sim().await;
        let c = client(&sim);
        for _ in 0..25 {
            c.describe_instances(&[], "ap-guangzhou")
                .await
                .expect("within the rate");
        }
        let stats = sim.state.stats();
        assert!(stats.max_api_per_second <= 10, "{stats:?}");
        assert!(
            !stats.errors.contains_key("RequestLimitExceeded"),
            "{stats:?}"
        );
    })
    .await;
}

/// The simulator hands out at most 30 URLs per instance per minute.
#[tokio::test]
async fn url_limit_per_instance() {
    within(async {
        let sim = sim().await;
        let c = client(&sim);
        for i in 0..30 {
            mint(&c, "ins-demo0002", "ap-guangzhou")
                .await
                .unwrap_or_else(|e| panic!("mint {i}: {e}"));
        }
        let e = mint(&c, "ins-demo0002", "ap-guangzhou")
            .await
            .expect_err("31st");
        assert_eq!(e.code(), Some("LimitExceeded"));
        assert_eq!(sim.state.mints("ins-demo0002"), 30);
        // Another instance is unaffected.
        mint(&c, "ins-demo0003", "ap-guangzhou")
            .await
            .expect("other instance");
    })
    .await;
}

/// DescribeInstances reports states and mints nothing.
#[tokio::test]
async fn describe_instances_reports_state() {
    within(async {
        let sim = sim().await;
        let c = client(&sim);
        let set = c
            .describe_instances(
                &["ins-demo0001".into(), "ins-stopped1".into()],
                "ap-guangzhou",
            )
            .await
            .expect("described");
        let state = |id: &str| set.iter().find(|i| i.id == id).map(|i| i.state.clone());
        assert_eq!(state("ins-demo0001").as_deref(), Some("RUNNING"));
        assert_eq!(state("ins-stopped1").as_deref(), Some("STOPPED"));
        assert_eq!(sim.state.stats().mints.values().sum::<u64>(), 0);
    })
    .await;
}
