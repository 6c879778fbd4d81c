//! `/metrics` after a session, a refused session and an API error, parsed with a
//! Prometheus text parser: the series exist with the right values.

mod common;

use common::*;
use tcvnc::sim::Faults;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: std::net::SocketAddr) -> (String, prometheus_parse::Scrape) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("w");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("r");
    let (head, body) = out.split_once("\r\n\r\n").expect("head");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    (
        body.to_owned(),
        prometheus_parse::Scrape::parse(lines).expect("valid exposition"),
    )
}

fn value(s: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref h) => {
                h.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            _ => f64::NAN,
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_after_session_refusal_and_api_error() {
    within(async {
        let sim = sim().await;
        let mut d =
            TestDaemon::start(&sim, &Opts::targets(&["ins-demo0001", "ins-stopped1"])).await;
        let mut live = d.app.watch_sessions();
        // One good session with traffic.
        let mut c = tcp_client(d.tcp("ins-demo0001")).await;
        rfb_handshake(&mut c, V38, None).await.expect("session");
        drop(c);
        live.wait_for(|n| *n == 0).await.expect("w");
        // A refused session (stopped instance: an API error too).
        let mut c = tcp_client(d.tcp("ins-stopped1")).await;
        rfb_handshake(&mut c, V38, None).await.expect_err("refused");
        drop(c);
        live.wait_for(|n| *n == 0).await.expect("w");
        // A transient API error that a retry absorbs.
        sim.state.set_faults(Faults {
            error_code: Some("ServiceUnavailable".into()),
            error_count: 1,
            ..Faults::default()
        });
        let mut c = tcp_client(d.tcp("ins-demo0001")).await;
        rfb_handshake(&mut c, V38, None)
            .await
            .expect("session after a retry");
        drop(c);
        live.wait_for(|n| *n == 0).await.expect("w");

        let (text, s) = scrape(d.http.expect("http")).await;
        let ok = [("instance", "ins-demo0001"), ("outcome", "ok")];
        assert_eq!(value(&s, "tcvnc_sessions_total", &ok), Some(2.0), "{text}");
        assert_eq!(
            value(
                &s,
                "tcvnc_sessions_total",
                &[("instance", "ins-stopped1"), ("outcome", "cloud")]
            ),
            Some(1.0)
        );
        assert_eq!(
            value(&s, "tcvnc_sessions_active", &[("instance", "ins-demo0001")]),
            Some(0.0)
        );
        assert_eq!(
            value(
                &s,
                "tcvnc_url_mints_total",
                &[("instance", "ins-demo0001"), ("result", "minted")]
            ),
            Some(2.0)
        );
        assert_eq!(
            value(
                &s,
                "tcvnc_url_mints_total",
                &[("instance", "ins-demo0001"), ("result", "not_minted")]
            ),
            Some(1.0),
            "the ServiceUnavailable answer: reached the cloud, nothing minted"
        );
        assert_eq!(
            value(
                &s,
                "tcvnc_url_mints_total",
                &[("instance", "ins-stopped1"), ("result", "not_minted")]
            ),
            Some(1.0)
        );
        let api = |code: &str| {
            value(
                &s,
                "tcvnc_api_requests_total",
                &[("action", "DescribeInstanceVncUrl"), ("code", code)],
            )
        };
        assert_eq!(api("ok"), Some(2.0));
        assert_eq!(api("InvalidInstanceState"), Some(1.0));
        assert_eq!(api("ServiceUnavailable"), Some(1.0));
        // Three attempts were charged: two sessions, one of them retried once.
        assert_eq!(
            value(
                &s,
                "tcvnc_budget_remaining",
                &[("instance", "ins-demo0001")]
            ),
            Some(27.0)
        );
        assert_eq!(
            value(
                &s,
                "tcvnc_budget_remaining",
                &[("instance", "ins-stopped1")]
            ),
            Some(29.0),
            "a failed mint is still charged"
        );
        assert_eq!(
            value(&s, "tcvnc_closes_total", &[("reason", "viewer_closed")]),
            Some(2.0)
        );
        assert_eq!(
            value(&s, "tcvnc_closes_total", &[("reason", "cloud")]),
            Some(1.0)
        );
        let up = value(&s, "tcvnc_bytes_total", &[("direction", "to_upstream")]).expect("bytes up");
        let down =
            value(&s, "tcvnc_bytes_total", &[("direction", "to_client")]).expect("bytes down");
        assert!(up > 0.0 && down > 0.0);
        for h in [
            "tcvnc_api_request_duration_seconds",
            "tcvnc_budget_wait_seconds",
            "tcvnc_url_age_at_dial_seconds",
            "tcvnc_upstream_handshake_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {h} histogram")),
                "{h} missing:\n{text}"
            );
        }
        assert!(
            text.contains("tcvnc_upstream_handshake_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains("tcvnc_url_age_at_dial_seconds_count 2"),
            "{text}"
        );
        assert!(d.stop().await);
    })
    .await;
}
