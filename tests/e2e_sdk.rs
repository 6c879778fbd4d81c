//! End-to-end: signing cross-checked both ways with the official Tencent Cloud Python SDK
//! (tencentcloud-sdk-python-common and -cvm), and the simulator's `DescribeInstances`
//! (filters, pages) read by the SDK's own models. Runs with TCVNC_E2E=1.

mod common;

use std::process::Stdio;

use common::*;
use tcvnc::sim::{DEMO_SECRET_ID, DEMO_SECRET_KEY};
use tokio::io::AsyncBufReadExt;

async fn sdk_client(api: &str, key: &str) -> serde_json::Value {
    let out = tokio::process::Command::new(python())
        .arg(e2e_file("sdk_crosscheck.py"))
        .args([
            "client",
            "--api",
            api,
            "--secret-id",
            DEMO_SECRET_ID,
            "--secret-key",
            key,
        ])
        .stdin(Stdio::null())
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// The SDK's client gets a URL from `tcvnc sim`'s API with the right key and
/// AuthFailure.SignatureFailure with a wrong one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_calls_the_simulator() {
    if !e2e("sdk_calls_the_simulator") {
        return;
    }
    let sim = sim().await;
    let ok = within(sdk_client(&sim.api_url, DEMO_SECRET_KEY)).await;
    assert_eq!(ok["ok"], true, "{ok}");
    assert!(
        ok["url"]
            .as_str()
            .expect("url")
            .starts_with("wss%3A%2F%2F127.0.0.1%3A"),
        "{ok}"
    );
    assert_eq!(sim.state.mints("ins-demo0001"), 1);
    let bad = within(sdk_client(&sim.api_url, "not-the-key")).await;
    assert_eq!(bad["ok"], false);
    assert_eq!(bad["code"], "AuthFailure.SignatureFailure", "{bad}");
    sim.shutdown().await;
}

/// The SDK's `DescribeInstances` against the simulator: `args` after the endpoint and key.
async fn sdk_describe(api: &str, args: &[&str]) -> serde_json::Value {
    let out = tokio::process::Command::new(python())
        .arg(e2e_file("sdk_crosscheck.py"))
        .args([
            "describe",
            "--api",
            api,
            "--secret-id",
            DEMO_SECRET_ID,
            "--secret-key",
            DEMO_SECRET_KEY,
        ])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON line")
}

/// The SDK's own `DescribeInstances` models read the simulator's answers: 150 instances
/// paged by Offset/Limit with the right TotalCount, `tag:<key>`, `instance-name`,
/// `instance-state` and `zone` filters, and `Limit` 101 refused as the cloud refuses it;
/// and the instances tcvnc's discovery finds are the ones the SDK lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_lists_the_simulator() {
    if !e2e("sdk_lists_the_simulator") {
        return;
    }
    let instances: Vec<tcvnc::sim::SimInstance> = (1..=150)
        .map(|i| {
            let mut s = tcvnc::sim::SimInstance::running(&format!("ins-sdk{i:05}"))
                .named(&format!("web-{i:03}"))
                .tagged("env", if i % 3 == 0 { "prod" } else { "dev" });
            s.zone = Some(format!("ap-guangzhou-{}", 1 + i % 2));
            if i == 7 {
                s.state = "STOPPED".into();
            }
            s
        })
        .collect();
    let sim = sim_with(tcvnc::sim::SimOptions {
        instances,
        ..Default::default()
    })
    .await;
    let api = sim.api_url.clone();
    let page = within(sdk_describe(&api, &["--offset", "100", "--limit", "100"])).await;
    assert_eq!(page["ok"], true, "{page}");
    assert_eq!(page["total"], 150);
    assert_eq!(page["instances"].as_array().map(Vec::len), Some(50));
    assert_eq!(page["instances"][0]["id"], "ins-sdk00101");
    assert_eq!(page["instances"][0]["name"], "web-101");
    let first = within(sdk_describe(&api, &[])).await;
    assert_eq!(
        first["instances"].as_array().map(Vec::len),
        Some(20),
        "the default Limit"
    );
    let prod = within(sdk_describe(
        &api,
        &["--limit", "100", "--filter", "tag:env=prod"],
    ))
    .await;
    assert_eq!(prod["total"], 50, "{prod}");
    assert_eq!(prod["instances"][0]["tags"]["env"], "prod");
    let named = within(sdk_describe(&api, &["--filter", "instance-name=web-007"])).await;
    assert_eq!(named["total"], 1, "{named}");
    assert_eq!(named["instances"][0]["state"], "STOPPED");
    let stopped = within(sdk_describe(&api, &["--filter", "instance-state=STOPPED"])).await;
    assert_eq!(stopped["total"], 1, "{stopped}");
    let zone = within(sdk_describe(
        &api,
        &[
            "--filter",
            "zone=ap-guangzhou-1",
            "--filter",
            "tag:env=prod",
        ],
    ))
    .await;
    assert_eq!(zone["total"], 25, "{zone}");
    assert_eq!(zone["instances"][0]["zone"], "ap-guangzhou-1");
    let refused = within(sdk_describe(&api, &["--limit", "101"])).await;
    assert_eq!(refused["ok"], false);
    assert_eq!(refused["code"], "InvalidParameterValue", "{refused}");

    // tcvnc's discovery over the same simulator finds what the SDK lists.
    let d = tcvnc::config::DiscoveryConfig {
        regions: vec!["ap-guangzhou".into()],
        tags: [("env".to_owned(), "prod".to_owned())].into(),
        names: vec!["web-1*".into()],
        refresh: std::time::Duration::from_secs(60),
    };
    let ours = within(tcvnc::discovery::list::list(&client(&sim), &d))
        .await
        .expect("discovery lists");
    let sdk_all = within(sdk_describe(
        &api,
        &["--limit", "100", "--filter", "tag:env=prod"],
    ))
    .await;
    let mut theirs: Vec<String> = sdk_all["instances"]
        .as_array()
        .expect("instances")
        .iter()
        .filter(|i| i["name"].as_str().is_some_and(|n| n.starts_with("web-1")))
        .map(|i| i["id"].as_str().expect("id").to_owned())
        .collect();
    let mut ours: Vec<String> = ours.into_iter().map(|i| i.id).collect();
    theirs.sort();
    ours.sort();
    assert_eq!(ours, theirs);
    assert!(sim.state.stats().mints.is_empty(), "listing spends no URL");
    sim.shutdown().await;
}

/// A verifier built on the SDK's own `Sign.sign_tc3` accepts what `tcvnc url` sends, and
/// rejects it when tcvnc signs with the wrong key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_verifies_tcvnc_requests() {
    if !e2e("sdk_verifies_tcvnc_requests") {
        return;
    }
    let mut verifier = tokio::process::Command::new(python())
        .arg(e2e_file("sdk_crosscheck.py"))
        .args(["verifier", "--secret-key", DEMO_SECRET_KEY])
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let mut lines = tokio::io::BufReader::new(verifier.stdout.take().expect("stdout")).lines();
    let first: serde_json::Value = serde_json::from_str(
        &within(lines.next_line())
            .await
            .expect("read")
            .expect("line"),
    )
    .expect("json");
    let endpoint = first["listening"].as_str().expect("listening").to_owned();
    let home = tempfile::tempdir().expect("tmp");
    for (key, want_ok) in [(DEMO_SECRET_KEY, true), ("wrong-key", false)] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
            .args([
                "url",
                "ins-demo0001",
                "--region",
                "ap-guangzhou",
                "--endpoint",
                &endpoint,
            ])
            .env_clear()
            .env("HOME", home.path())
            .env("TENCENTCLOUD_SECRET_ID", DEMO_SECRET_ID)
            .env("TENCENTCLOUD_SECRET_KEY", key)
            .stdin(Stdio::null())
            .output()
            .await
            .expect("tcvnc runs");
        let verdict: serde_json::Value = serde_json::from_str(
            &within(lines.next_line())
                .await
                .expect("read")
                .expect("line"),
        )
        .expect("json");
        assert_eq!(verdict["ok"], want_ok, "{verdict}");
        if want_ok {
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(verdict["content_type"], "application/json");
            assert_eq!(verdict["host"].as_str(), endpoint.strip_prefix("http://"));
            assert!(String::from_utf8_lossy(&out.stdout)
                .contains("InstanceVncUrl=wss%3A%2F%2F127.0.0.1%3A1%2Fvnc"));
        } else {
            assert_eq!(out.status.code(), Some(69));
            assert!(String::from_utf8_lossy(&out.stderr).contains("AuthFailure.SignatureFailure"));
        }
    }
    verifier.kill().await.expect("kill");
}

/// The reference's known answer for the SDK's signing function, computed by both.
#[tokio::test]
async fn sdk_known_answer() {
    if !e2e("sdk_known_answer") {
        return;
    }
    let payload = r#"{"Limit": 1, "Filters": [{"Values": ["unnamed"], "Name": "instance-name"}]}"#;
    let headers = [
        ("content-type", "application/json; charset=utf-8"),
        ("host", "cvm.tencentcloudapi.com"),
    ];
    let ours = tcvnc::cloud::sign::sign(
        "SECRETEXAMPLE",
        &tcvnc::cloud::sign::Request {
            method: "POST",
            uri: "/",
            query: "",
            headers: &headers,
            payload: payload.as_bytes(),
            service: "cvm",
            timestamp: 1_551_113_065,
        },
    );
    let script = format!(
        "from tencentcloud.common.sign import Sign\nprint(Sign.sign_tc3('SECRETEXAMPLE', '2019-02-25', 'cvm', {:?}))",
        ours.string_to_sign
    );
    let out = tokio::process::Command::new(python())
        .args(["-c", &script])
        .output()
        .await
        .expect("python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(theirs, ours.signature);
    assert_eq!(
        ours.signature,
        "9b231ccf8010f0bf9838f818c84d0fb9d71282d55918d46162c83d521e152f80"
    );
}
