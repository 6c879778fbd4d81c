//! Discovery: `[discovery]` lists instances through the simulator's paginated, filtered
//! `DescribeInstances`; ids and names resolve on `/vnc/`, in `/api/consoles` and in
//! `tcvnc url`; targets win; a shared name is refused naming both ids; a refresh picks
//! up a new instance and a failed one keeps the last list.

mod common;

use std::process::Output;
use std::sync::Arc;

use common::*;
use tcvnc::cloud::{Filter, ListedInstance};
use tcvnc::discovery::Snapshot;
use tcvnc::sim::{SimHandle, SimInstance, SimOptions};

/// `n` running instances `ins-web00NNN` named `web-NNN`, tagged `env = prod` when `i` is
/// even (else `env = dev`), in zone `ap-guangzhou-3`.
fn fleet(n: usize) -> Vec<SimInstance> {
    (1..=n)
        .map(|i| {
            let mut s = SimInstance::running(&format!("ins-web{i:05}"))
                .named(&format!("web-{i:03}"))
                .tagged("env", if i % 2 == 0 { "prod" } else { "dev" });
            s.zone = Some("ap-guangzhou-3".into());
            s
        })
        .collect()
}

async fn sim_of(instances: Vec<SimInstance>) -> SimHandle {
    sim_with(SimOptions {
        instances,
        ..SimOptions::default()
    })
    .await
}

/// A daemon with the HTTP listener, `targets` and `[discovery]` with `discovery` as body.
async fn daemon(sim: &SimHandle, targets: &str, discovery: &str) -> TestDaemon {
    let o = Opts {
        http: Some(String::new()),
        targets: targets.to_owned(),
        ..Opts::default()
    };
    TestDaemon::from_text(&format!(
        "{}\n[discovery]\n{discovery}\n",
        config_text(sim, &o)
    ))
    .await
}

/// Waits (on the discovery's own events, no sleeping) until its snapshot satisfies `pred`.
async fn listed(d: &TestDaemon, pred: impl Fn(&Snapshot) -> bool) -> Arc<Snapshot> {
    let mut rx = d.app.discovery.watch();
    within(async {
        loop {
            let s = d.app.discovery.snapshot();
            if pred(&s) {
                return s;
            }
            rx.changed().await.expect("the discovery task runs");
        }
    })
    .await
}

/// An HTTP client on tcvnc's own TLS configuration (reqwest brings no crypto provider).
async fn get(d: &TestDaemon, path: &str) -> (u16, String) {
    let url = format!("http://{}{path}", d.http.expect("http"));
    let r = http_client().get(&url).send().await.expect("GET");
    let status = r.status().as_u16();
    (status, r.text().await.expect("body"))
}

fn listed_ids(page: &[ListedInstance]) -> Vec<&str> {
    page.iter().map(|i| i.id.as_str()).collect()
}

/// The simulator pages like the cloud: `Limit` 1..=100 (else InvalidParameterValue),
/// `Offset`, `TotalCount` of every match; filters on tag, state, zone and (fuzzily) name.
#[tokio::test]
async fn simulator_pages_and_filters() {
    within(async {
        let mut instances = fleet(250);
        instances[0].state = "STOPPED".into();
        instances[1].zone = Some("ap-guangzhou-4".into());
        let sim = sim_of(instances).await;
        let c = client(&sim);
        let r = "ap-guangzhou";
        let e = c.list_instances(r, &[], 0, 101).await;
        assert!(e.is_ok(), "the client clamps its own limit: {e:?}");
        let page = c.list_instances(r, &[], 200, 100).await.expect("page");
        assert_eq!((page.total, page.instances.len()), (250, 50));
        assert_eq!(page.instances[0].id, "ins-web00201");
        assert_eq!(page.instances[0].name, "web-201");
        assert_eq!(page.instances[0].zone, "ap-guangzhou-3");
        assert_eq!(
            page.instances[0].tags.get("env").map(String::as_str),
            Some("dev")
        );
        let f = |name: &str, v: &str| Filter {
            name: name.into(),
            values: vec![v.into()],
        };
        let prod = c
            .list_instances(r, &[f("tag:env", "prod")], 0, 100)
            .await
            .expect("tag");
        assert_eq!(prod.total, 125);
        assert!(prod.instances.iter().all(|i| i.tags["env"] == "prod"));
        let stopped = c
            .list_instances(r, &[f("instance-state", "STOPPED")], 0, 100)
            .await
            .expect("state");
        assert_eq!(listed_ids(&stopped.instances), ["ins-web00001"]);
        let zone = c
            .list_instances(r, &[f("zone", "ap-guangzhou-4")], 0, 100)
            .await
            .expect("zone");
        assert_eq!(listed_ids(&zone.instances), ["ins-web00002"]);
        // Fuzzy like the cloud: web-01 is in web-010..web-019 and web-100..web-199.
        let named = c
            .list_instances(r, &[f("instance-name", "web-01")], 0, 100)
            .await
            .expect("name");
        assert_eq!(named.total, 10);
        let both = c
            .list_instances(
                r,
                &[f("instance-name", "web-01"), f("tag:env", "prod")],
                0,
                100,
            )
            .await
            .expect("and");
        assert_eq!(both.total, 5, "filters are AND'd");
        assert_eq!(sim.state.stats().mints.len(), 0, "listing spends no URL");
        sim.shutdown().await;
    })
    .await;
}

/// What the cloud refuses, the simulator refuses: a limit over 100, an unknown filter,
/// ids together with filters.
#[tokio::test]
async fn simulator_refuses_what_the_cloud_refuses() {
    within(async {
        let sim = sim_of(fleet(3)).await;
        let api = sim.api_url.clone();
        let call = |body: serde_json::Value| {
            let api = api.clone();
            async move { signed_call(&api, "DescribeInstances", &body).await }
        };
        for (body, code) in [
            (serde_json::json!({"Limit": 101}), "InvalidParameterValue"),
            (serde_json::json!({"Limit": 0}), "InvalidParameterValue"),
            (
                serde_json::json!({"Filters": [{"Name": "colour", "Values": ["red"]}]}),
                "InvalidFilter",
            ),
            (
                serde_json::json!({"InstanceIds": ["ins-web00001"], "Filters": [{"Name": "zone", "Values": ["x"]}]}),
                "InvalidParameter",
            ),
        ] {
            let got = call(body.clone()).await;
            assert_eq!(
                got["Response"]["Error"]["Code"], code,
                "{body}: {got}"
            );
        }
        sim.shutdown().await;
    })
    .await;
}

/// 250 instances, half tagged prod: discovery walks three pages of the tag filter and
/// keeps the 125 prod instances whose names match; no URL is spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_walks_every_page() {
    within(async {
        let sim = sim_of(fleet(250)).await;
        let mut d = daemon(
            &sim,
            "",
            "regions = [\"ap-guangzhou\"]\ntags = { env = \"prod\" }\nnames = [\"web-*\"]",
        )
        .await;
        let snap = listed(&d, |s| s.passes >= 1).await;
        assert_eq!(snap.last_error, None);
        assert_eq!(snap.instances.len(), 125);
        assert!(snap.instances.iter().all(|i| i.tags["env"] == "prod"));
        assert!(snap.refreshed.is_some());
        let stats = sim.state.stats();
        assert_eq!(stats.actions.get("DescribeInstances"), Some(&2), "125 at 100 a page");
        assert!(stats.mints.is_empty(), "no URL spent: {:?}", stats.mints);

        // Name patterns are applied by tcvnc: only web-1?? of the prod ones.
        let mut narrow = daemon(
            &sim,
            "",
            "regions = [\"ap-guangzhou\"]\ntags = { env = \"prod\" }\nnames = [\"web-1??\", \"nope-*\"]",
        )
        .await;
        let snap = listed(&narrow, |s| s.passes >= 1).await;
        assert_eq!(snap.instances.len(), 50, "web-100..web-199, even ones");
        assert!(snap.instances.iter().all(|i| i.name.starts_with("web-1")));
        narrow.stop().await;
        d.stop().await;
        sim.shutdown().await;
    })
    .await;
}

/// A discovered instance is reachable by id and by name: the viewer gets the console of
/// the instance the name belongs to, and one URL is spent for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_ids_reach_the_console() {
    within(async {
        let sim = sim_of(fleet(5)).await;
        let mut d = daemon(&sim, "", "names = [\"web-*\"]").await;
        listed(&d, |s| s.instances.len() == 5).await;
        let http = d.http.expect("http");
        for (path, id) in [
            ("/vnc/web-003", "ins-web00003"),
            ("/vnc/ins-web00004", "ins-web00004"),
        ] {
            let (mut ws, _) = ws_connect(http, path, None, Some("binary"))
                .await
                .expect(path);
            let name = rfb_handshake(&mut ws, V38, None).await.expect("console");
            assert!(!name.is_empty());
            assert_eq!(sim.state.mints(id), 1, "{path}");
            ws.close(1000, "done").await;
        }
        let (status, body) = get(&d, "/vnc/web-999").await;
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("discovered: 5 instances"), "{body}");
        d.stop().await;
        sim.shutdown().await;
    })
    .await;
}

/// A name two instances carry is refused before the upgrade with 409 naming both ids
/// (and regions), and no URL is spent; each stays reachable by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_name_is_refused_naming_both() {
    within(async {
        let sim = sim_of(vec![
            SimInstance::running("ins-dupa0001")
                .named("db")
                .in_region("ap-guangzhou"),
            SimInstance::running("ins-dupb0002")
                .named("db")
                .in_region("ap-shanghai"),
        ])
        .await;
        let mut d = daemon(&sim, "", "regions = [\"ap-guangzhou\", \"ap-shanghai\"]").await;
        listed(&d, |s| s.instances.len() == 2).await;
        let (status, body) = get(&d, "/vnc/db").await;
        assert_eq!(status, 409, "{body}");
        assert!(body.contains("ins-dupa0001 (ap-guangzhou)"), "{body}");
        assert!(body.contains("ins-dupb0002 (ap-shanghai)"), "{body}");
        let err = ws_connect(d.http.expect("http"), "/vnc/db", None, Some("binary"))
            .await
            .expect_err("no upgrade");
        assert!(err.to_string().contains("409"), "{err}");
        assert!(sim.state.stats().mints.is_empty());
        let (mut ws, _) = ws_connect(d.http.expect("http"), "/vnc/ins-dupb0002", None, None)
            .await
            .expect("by id");
        rfb_handshake(&mut ws, V38, None).await.expect("console");
        assert_eq!(sim.state.mints("ins-dupb0002"), 1);
        d.stop().await;
        sim.shutdown().await;
    })
    .await;
}

/// A `[[target]]` wins over discovery for the same instance, by id and by its
/// discovered name: its password is demanded, and it is listed once, as a target.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_win_over_discovery() {
    within(async {
        let sim = sim_of(fleet(3)).await;
        let dir = tempfile::tempdir().expect("tmp");
        let pw = dir.path().join("pw");
        std::fs::write(&pw, "s3cret\n").expect("write");
        let target = format!(
            "[[target]]\ninstance = \"ins-web00002\"\npassword_file = \"{}\"\n",
            pw.display()
        );
        let mut d = daemon(&sim, &target, "").await;
        listed(&d, |s| s.instances.len() == 3).await;
        let http = d.http.expect("http");
        for path in ["/vnc/web-002", "/vnc/ins-web00002", "/vnc/web-001"] {
            let (mut ws, _) = ws_connect(http, path, None, None).await.expect(path);
            let mut version = [0u8; 12];
            ws.read_exact(&mut version).await.expect("version");
            ws.send(bytes::Bytes::from_static(V38)).await.expect("send");
            let mut n = [0u8; 1];
            ws.read_exact(&mut n).await.expect("count");
            let mut types = vec![0u8; usize::from(n[0])];
            ws.read_exact(&mut types).await.expect("types");
            let want: &[u8] = if path == "/vnc/web-001" { &[1] } else { &[2] };
            assert_eq!(
                types, want,
                "{path}: VNC Authentication only for the target"
            );
            if types == [2] {
                // Finish with the right password (leaving now would count as a wrong one).
                ws.send(bytes::Bytes::from_static(&[2]))
                    .await
                    .expect("pick");
                let mut challenge = [0u8; 16];
                ws.read_exact(&mut challenge).await.expect("challenge");
                let answer = tcvnc::rfb::auth::response(b"s3cret", &challenge);
                ws.send(bytes::Bytes::copy_from_slice(&answer))
                    .await
                    .expect("answer");
                let mut result = [0u8; 4];
                ws.read_exact(&mut result).await.expect("result");
                assert_eq!(result, [0; 4], "{path}: the target's password opens it");
            }
            ws.close(1000, "done").await;
        }

        let (_, body) = get(&d, "/api/consoles").await;
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let all = v["consoles"].as_array().expect("consoles");
        let mine: Vec<&serde_json::Value> = all
            .iter()
            .filter(|c| c["instance"] == "ins-web00002")
            .collect();
        assert_eq!(mine.len(), 1, "{body}");
        assert_eq!(mine[0]["source"], "target");
        assert_eq!(mine[0]["name"], "web-002", "what discovery knows is shown");
        assert_eq!(all.len(), 3);
        d.stop().await;
        sim.shutdown().await;
    })
    .await;
}

/// `/api/consoles` and `/` carry name, state, region, zone and tags of each discovered
/// instance, and how discovery is doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consoles_are_listed_with_their_fields() {
    within(async {
        let mut instances = fleet(2);
        instances[0].state = "STOPPED".into();
        let sim = sim_of(instances).await;
        let mut d = daemon(&sim, "", "regions = [\"ap-guangzhou\"]\nrefresh = \"5m\"").await;
        listed(&d, |s| s.instances.len() == 2).await;
        let (status, body) = get(&d, "/api/consoles").await;
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        let c = &v["consoles"][0];
        assert_eq!(c["instance"], "ins-web00001");
        assert_eq!(c["name"], "web-001");
        assert_eq!(c["state"], "STOPPED");
        assert_eq!(c["region"], "ap-guangzhou");
        assert_eq!(c["zone"], "ap-guangzhou-3");
        assert_eq!(c["tags"]["env"], "dev");
        assert_eq!(c["source"], "discovery");
        assert_eq!(c["viewers"], 0);
        assert_eq!(c["budget_left"], 30);
        assert_eq!(v["discovery"]["instances"], 2);
        assert_eq!(v["discovery"]["refresh_s"], 300);
        assert!(v["discovery"]["refreshed"].is_string(), "{body}");
        assert!(v["discovery"]["last_error"].is_null(), "{body}");
        let (_, page) = get(&d, "/").await;
        for want in [
            "ins-web00002",
            "web-002",
            "RUNNING",
            "ap-guangzhou",
            "env=prod",
        ] {
            assert!(page.contains(want), "{want} in {page}");
        }
        d.stop().await;
        sim.shutdown().await;
    })
    .await;
}

/// A refresh picks up a new instance (driven by the refresh trigger, not by waiting out
/// the interval); a failed refresh keeps the last list and says why; the next good one
/// clears the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_adds_new_instances_and_survives_failures() {
    within(async {
        // Install the log capture before the daemon starts.
        let _ = captured_logs(tracing::Level::INFO);
        let sim = sim_of(fleet(2)).await;
        let mut d = daemon(&sim, "", "refresh = \"1h\"").await;
        listed(&d, |s| s.instances.len() == 2).await;
        assert_eq!(get(&d, "/vnc/fresh-1").await.0, 404);

        sim.state
            .put_instance(SimInstance::running("ins-fresh001").named("fresh-1"));
        d.app.discovery.refresh_now();
        listed(&d, |s| s.get("ins-fresh001").is_some()).await;
        // Resolved now: a plain GET reaches the websocket check.
        assert_eq!(get(&d, "/vnc/fresh-1").await.0, 426);

        sim.state.set_faults(tcvnc::sim::Faults {
            error_code: Some("AuthFailure.UnauthorizedOperation".into()),
            ..Default::default()
        });
        let before = d.app.discovery.snapshot().passes;
        d.app.discovery.refresh_now();
        let snap = listed(&d, |s| s.passes > before).await;
        let why = snap.last_error.clone().expect("the failure is kept");
        assert!(why.contains("ap-guangzhou"), "{why}");
        assert!(why.contains("AuthFailure.UnauthorizedOperation"), "{why}");
        assert_eq!(snap.instances.len(), 3, "the last good list stays");
        assert_eq!(get(&d, "/vnc/fresh-1").await.0, 426, "still served");
        let logs = captured_logs(tracing::Level::INFO);
        assert!(
            logs.contains("keeping the last good list of 3 instances"),
            "{logs}"
        );

        sim.state.set_faults(tcvnc::sim::Faults::default());
        let before = d.app.discovery.snapshot().passes;
        d.app.discovery.refresh_now();
        let snap = listed(&d, |s| s.passes > before).await;
        assert_eq!(snap.last_error, None);
        d.stop().await;
        sim.shutdown().await;
    })
    .await;
}

/// `tcvnc url NAME` resolves the name (without and with `[discovery]`) and mints for its
/// id; a shared name exits 64 naming both ids and spends nothing; an unknown one 69;
/// `tcvnc check` lists what discovery finds and warns of the shared name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_command_resolves_names() {
    let sim = sim_of(vec![
        SimInstance::running("ins-web00001").named("web-1"),
        SimInstance::running("ins-dupa0001").named("db"),
        SimInstance::running("ins-dupb0002").named("db"),
    ])
    .await;
    let home = tempfile::tempdir().expect("tmp");
    let cfg = home.path().join("tcvnc.toml");
    std::fs::write(
        &cfg,
        format!(
            "[cloud]\nregion = \"ap-guangzhou\"\nendpoint = \"{}\"\n[discovery]\nnames = [\"web-*\", \"db\"]\n",
            sim.api_url
        ),
    )
    .expect("write");
    let run = |args: Vec<String>| {
        let h = home.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            tcvnc_cli(&h, &args)
        })
    };
    let plain = |name: &str| {
        vec![
            "url".to_owned(),
            name.to_owned(),
            "--region".into(),
            "ap-guangzhou".into(),
            "--endpoint".into(),
            sim.api_url.clone(),
        ]
    };
    let text = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let ok = run(plain("web-1")).await.expect("join");
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("InstanceVncUrl=wss%3A"));
    assert_eq!(sim.state.mints("ins-web00001"), 1);

    let with_config = vec![
        "url".to_owned(),
        "web-1".into(),
        "-c".into(),
        cfg.display().to_string(),
    ];
    let ok = run(with_config).await.expect("join");
    assert!(ok.status.success(), "{}", text(&ok));
    assert_eq!(sim.state.mints("ins-web00001"), 2);

    for args in [
        plain("db"),
        vec![
            "url".into(),
            "db".into(),
            "-c".into(),
            cfg.display().to_string(),
        ],
    ] {
        let out = run(args).await.expect("join");
        assert_eq!(out.status.code(), Some(64), "{}", text(&out));
        let err = text(&out);
        assert!(
            err.contains("ins-dupa0001") && err.contains("ins-dupb0002"),
            "{err}"
        );
    }
    let check = run(vec!["check".into(), "-c".into(), cfg.display().to_string()])
        .await
        .expect("join");
    assert!(check.status.success(), "{}", text(&check));
    let report = String::from_utf8_lossy(&check.stdout);
    assert!(
        report.contains("discovery: 3 instances in ap-guangzhou"),
        "{report}"
    );
    assert!(
        report.contains("the name \"db\" is shared by ins-dupa0001, ins-dupb0002"),
        "{report}"
    );
    let out = run(plain("nobody")).await.expect("join");
    assert_eq!(out.status.code(), Some(69), "{}", text(&out));
    assert!(
        text(&out).contains("no instance named \"nobody\""),
        "{}",
        text(&out)
    );
    let stats = sim.state.stats();
    assert_eq!(
        stats.mints.len(),
        1,
        "only web-1 got URLs: {:?}",
        stats.mints
    );
    sim.shutdown().await;
}
