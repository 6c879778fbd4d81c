//! Results: every sample kept, medians and min–max, ratios pair by pair (run i of one
//! path against run i of the other), the targets checked, and the three outputs.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use crate::Plan;

type Metrics = Vec<(String, Vec<f64>)>;
type Paths = Vec<(String, Metrics)>;

fn entry<'a, T: Default>(v: &'a mut Vec<(String, T)>, k: &str) -> &'a mut T {
    let i = match v.iter().position(|(n, _)| n == k) {
        Some(i) => i,
        None => {
            v.push((k.to_owned(), T::default()));
            v.len() - 1
        }
    };
    &mut v[i].1
}

fn get<'a, T>(v: &'a [(String, T)], k: &str) -> Option<&'a T> {
    v.iter().find(|(n, _)| n == k).map(|(_, t)| t)
}

/// Samples by case, path and metric, in the order they were first seen.
#[derive(Default)]
pub struct Results {
    cases: Vec<(String, Paths)>,
    notes: Vec<(String, f64)>,
    pub meta: std::collections::BTreeMap<String, String>,
}

impl Results {
    pub fn push(&mut self, case: &str, path: &str, metric: &str, v: f64) {
        entry(entry(entry(&mut self.cases, case), path), metric).push(v);
    }

    pub fn note(&mut self, what: &str, v: f64) {
        self.notes.push((what.to_owned(), v));
    }

    /// Takes in every sample and note of `other` (measured apart, e.g. on another
    /// thread).
    pub fn absorb(&mut self, other: Results) {
        for (case, paths) in other.cases {
            for (path, metrics) in paths {
                for (metric, v) in metrics {
                    entry(entry(entry(&mut self.cases, &case), &path), &metric).extend(v);
                }
            }
        }
        self.notes.extend(other.notes);
        self.meta.extend(other.meta);
    }

    pub fn samples(&self, case: &str, path: &str, metric: &str) -> Option<&[f64]> {
        get(get(get(&self.cases, case)?, path)?, metric).map(Vec::as_slice)
    }
}

/// The nearest-rank quantile of sorted samples.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Median, min and max.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn spread(v: &[f64]) -> Spread {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return Spread {
            median: f64::NAN,
            min: f64::NAN,
            max: f64::NAN,
        };
    }
    let m = s.len() / 2;
    let median = if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    };
    Spread {
        median,
        min: s[0],
        max: s[s.len() - 1],
    }
}

fn pairwise(a: &[f64], b: &[f64], f: impl Fn(f64, f64) -> f64) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| f(*x, *y)).collect()
}

fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        "–".into()
    } else if x.abs() >= 100.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn fmt_spread(s: Spread) -> String {
    format!(
        "{} [{}–{}]",
        fmt_num(s.median),
        fmt_num(s.min),
        fmt_num(s.max)
    )
}

/// One target of the issue, checked on medians.
pub struct Check {
    pub name: String,
    pub measured: Spread,
    pub unit: &'static str,
    pub limit: f64,
    pub at_most: bool,
}

impl Check {
    pub fn met(&self) -> bool {
        if self.at_most {
            self.measured.median <= self.limit
        } else {
            self.measured.median >= self.limit
        }
    }

    fn verdict(&self) -> String {
        if self.met() {
            "met".into()
        } else if !self.measured.median.is_finite() {
            "not measured".into()
        } else {
            let by = (self.measured.median - self.limit).abs();
            format!(
                "**missed** by {} {} ({:.0} %)",
                fmt_num(by),
                self.unit,
                by / self.limit.abs().max(f64::MIN_POSITIVE) * 100.0
            )
        }
    }
}

/// Every target of the issue, computed from the samples.
pub fn checks(r: &Results) -> Vec<Check> {
    let mut out = Vec::new();
    let s = |c: &str, p: &str, m: &str| r.samples(c, p, m).unwrap_or(&[]).to_vec();
    let ratio = |case: &str, path: &str, other: &str, metric: &str| {
        spread(&pairwise(
            &s(case, path, metric),
            &s(case, other, metric),
            |a, b| a / b,
        ))
    };
    let bulk: Vec<&String> = r
        .cases
        .iter()
        .map(|(c, _)| c)
        .filter(|c| c.starts_with("upload ") || c.starts_with("download "))
        .collect();
    for case in bulk {
        out.push(Check {
            name: format!("{case}: CPU per byte, tcvnc / websocat"),
            measured: ratio(case, "tcvnc", "websocat", "proxy CPU s/GiB"),
            unit: "×",
            limit: 2.0 / 3.0,
            at_most: true,
        });
        if case.starts_with("download 64 KiB") {
            out.push(Check {
                name: format!("{case}: CPU per byte, tcvnc / TLS pipe"),
                measured: ratio(case, "tcvnc", "tls-pipe", "proxy CPU s/GiB"),
                unit: "×",
                limit: 1.0,
                at_most: true,
            });
        }
        // The RFB-shaped case is paced by its pauses, not by the paths. Through the
        // simulator's gateway (rustls, like the TLS pipe's terminator) the TLS pipe is the
        // limit; websocat's gateway is slower than that terminator, so there tcvnc is
        // compared with websocat through the same gateway.
        let paced = case.contains("rfb-shaped");
        if !paced && case.ends_with("sim gateway") {
            out.push(Check {
                name: format!("{case}: throughput, tcvnc / TLS pipe"),
                measured: ratio(case, "tcvnc", "tls-pipe", "MB/s"),
                unit: "×",
                limit: 0.9,
                at_most: false,
            });
        } else if !paced {
            out.push(Check {
                name: format!("{case}: throughput, tcvnc / websocat"),
                measured: ratio(case, "tcvnc", "websocat", "MB/s"),
                unit: "×",
                limit: 1.0,
                at_most: false,
            });
        }
    }
    for case in ["rtt 8 B", "rtt 1024 B"] {
        out.push(added(
            r,
            format!("{case}: p99 added over the TLS pipe"),
            (case, "p99 µs"),
            ("tcvnc", "tls-pipe"),
            ("µs", 100.0),
        ));
    }
    let tc = s("setup", "tcvnc", "ServerInit ms");
    let api = s("setup", "API call", "ms");
    let direct = s("setup", "direct", "ServerInit ms");
    let overhead: Vec<f64> = tc
        .iter()
        .zip(&api)
        .zip(&direct)
        .map(|((t, a), d)| t - a - d)
        .collect();
    out.push(Check {
        name: "setup overhead beyond API call and direct TLS+websocket+RFB".into(),
        measured: spread(&overhead),
        unit: "ms",
        limit: 3.0,
        at_most: true,
    });
    console_checks(r, &mut out);
    actions_checks(r, &mut out);
    recording_checks(r, &mut out);
    for (case, paths) in &r.cases {
        if !case.starts_with("idle") {
            continue;
        }
        for (path, _) in paths.iter().filter(|(p, _)| p.starts_with("tcvnc")) {
            out.push(Check {
                name: format!("{case}: RSS per idle session, {path}"),
                measured: spread(&s(case, path, "RSS KiB/session")),
                unit: "KiB",
                limit: 64.0,
                at_most: true,
            });
            out.push(Check {
                name: format!("{case}: failed sessions, {path}"),
                measured: spread(&s(case, path, "errors")),
                unit: "sessions",
                limit: 0.0,
                at_most: true,
            });
        }
    }
    out
}

/// At most `limit` of `metric` added by `path` over `base` in `case`, run by run.
fn added(
    r: &Results,
    name: String,
    (case, metric): (&str, &str),
    (path, base): (&str, &str),
    (unit, limit): (&'static str, f64),
) -> Check {
    let s = |p: &str| r.samples(case, p, metric).unwrap_or(&[]).to_vec();
    Check {
        name,
        measured: spread(&pairwise(&s(path), &s(base), |a, b| a - b)),
        unit,
        limit,
        at_most: true,
    }
}

/// The console section's targets, for the cases that ran.
fn console_checks(r: &Results, out: &mut Vec<Check>) {
    use crate::console::{fanout_case, LATENCY, MEMORY, RESUME};
    let s = |c: &str, p: &str, m: &str| r.samples(c, p, m).unwrap_or(&[]).to_vec();
    if r.samples(LATENCY, "console", "p99 ms").is_some() {
        out.push(added(
            r,
            format!("{LATENCY}: p99 added by console mode over bridge mode"),
            (LATENCY, "p99 ms"),
            ("console", "bridge"),
            ("ms", 2.0),
        ));
    }
    for (case, _) in &r.cases {
        let Some(n) = case
            .strip_prefix("console fan-out ")
            .and_then(|rest| rest.strip_suffix(" viewers"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        out.push(Check {
            name: format!("{}: slowest viewer's updates/s, tcvnc", fanout_case(n)),
            measured: spread(&s(case, "tcvnc", "min updates/s")),
            unit: "updates/s",
            limit: 9.0,
            at_most: false,
        });
    }
    // (case, path, metric, what the target says, unit, at most)
    let limits = [
        (
            MEMORY,
            "tcvnc",
            "KiB per idle viewer",
            "RSS per additional idle viewer, tcvnc",
            "KiB",
            512.0,
        ),
        (
            RESUME,
            "console",
            "gap − API call ms",
            "upstream drop to the viewer's first fresh frame, less the API call",
            "ms",
            500.0,
        ),
    ];
    for (case, path, metric, what, unit, limit) in limits {
        if let Some(v) = r.samples(case, path, metric) {
            out.push(Check {
                name: format!("{case}: {what}"),
                measured: spread(v),
                unit,
                limit,
                at_most: true,
            });
        }
    }
}

/// The actions section's targets, for the cases that ran.
fn actions_checks(r: &Results, out: &mut Vec<Check>) {
    use crate::console::actions::{default_typing_path, FRESH, LIVE, TCVNC, TYPING};
    if let Some(v) = r.samples(LIVE, TCVNC, "p99 ms") {
        out.push(Check {
            name: format!("{LIVE}: p99 of GET screenshot.png, tcvnc"),
            measured: spread(v),
            unit: "ms",
            limit: 100.0,
            at_most: true,
        });
    }
    if let Some(v) = r.samples(FRESH, TCVNC, "URLs spent per shot") {
        out.push(Check {
            name: format!("{FRESH}: URLs spent per screenshot (X-Tcvnc-Url-Spent)"),
            measured: spread(v),
            unit: "URLs",
            limit: 1.0,
            at_most: true,
        });
    }
    let default = default_typing_path();
    if let Some(v) = r.samples(TYPING, &default, "lost") {
        out.push(Check {
            name: format!("{TYPING}: key events lost at {default}"),
            measured: spread(v),
            unit: "key events",
            limit: 0.0,
            at_most: true,
        });
    }
}

/// CPU added by recording at `load`, in % of the engine's without it, run by run.
fn added_cpu(r: &Results, load: &str) -> Spread {
    use crate::console::recording::CPU;
    let s = |m: &str| r.samples(CPU, load, m).unwrap_or(&[]).to_vec();
    spread(&pairwise(
        &s("CPU s/min, recording on"),
        &s("CPU s/min, recording off"),
        |on, off| (on - off) / off * 100.0,
    ))
}

/// The recording section's targets, for the cases that ran.
fn recording_checks(r: &Results, out: &mut Vec<Check>) {
    use crate::console::playback::{case, from_path};
    use crate::console::recording::{BYTES, CPU, IDLE, TERMINAL, VIDEO};
    if let Some(v) = r.samples(BYTES, IDLE, "tcvnc MB/min") {
        out.push(Check {
            name: format!("{BYTES}: {IDLE}, recorded after its first screen"),
            measured: spread(v),
            unit: "MB/min",
            limit: 1.0,
            at_most: true,
        });
    }
    if r.samples(CPU, VIDEO, "CPU s/min, recording on").is_some() {
        out.push(Check {
            name: format!("{CPU}: {VIDEO}, CPU added by recording"),
            measured: added_cpu(r, VIDEO),
            unit: "%",
            limit: 50.0,
            at_most: true,
        });
    }
    for load in [IDLE, TERMINAL, VIDEO] {
        if let Some(v) = r.samples(BYTES, load, "stopped early") {
            out.push(Check {
                name: format!("{BYTES}: {load}, recordings stopped early"),
                measured: spread(v),
                unit: "recordings",
                limit: 0.0,
                at_most: true,
            });
        }
    }
    for (c, _) in r
        .cases
        .iter()
        .filter(|(c, _)| crate::console::playback::is_case(c))
    {
        let minutes = c
            .trim_start_matches("recording: tcvnc play of a ")
            .split('-')
            .next()
            .and_then(|m| m.parse::<u64>().ok())
            .unwrap_or(0);
        if let Some(v) = r.samples(&case(minutes), &from_path(0), "first frame s") {
            out.push(Check {
                name: format!("{c}: from the start, process start to the first frame"),
                measured: spread(v),
                unit: "s",
                limit: 1.0,
                at_most: true,
            });
        }
        let last = crate::console::playback::froms(minutes)[2];
        if let Some(v) = r.samples(&case(minutes), &from_path(last), "first frame s") {
            out.push(Check {
                name: format!("{c}: from its last second, process start to the first frame"),
                measured: spread(v),
                unit: "s",
                limit: 2.0,
                at_most: true,
            });
        }
    }
}

/// The recording section: method, sizes, the bytes and CPU tables, playback.
fn recording_section(m: &mut String, plan: &Plan, r: &Results) {
    use crate::console::recording::{BYTES, CPU, IDLE, TERMINAL, VIDEO};
    let _ = writeln!(
        m,
        "## Recording\n\n{}\n\nSizes this run: {} run{} of each load with recording off and on, {} through websockify, each counted for {} s after {} s; `tcvnc play` of a {}-minute recording, {} run{} per `--from`. median [min–max] over runs. MB = 10⁶ bytes.\n",
        RECORDING_METHOD.trim(),
        plan.rec_runs,
        if plan.rec_runs == 1 { "" } else { "s" },
        plan.rec_peer_runs,
        plan.rec_window_s,
        plan.rec_warm_s,
        plan.rec_play_minutes,
        plan.rec_play_runs,
        if plan.rec_play_runs == 1 { "" } else { "s" },
    );
    let cell = |case: &str, load: &str, metric: &str| {
        r.samples(case, load, metric)
            .map_or_else(|| "–".to_owned(), |v| fmt_spread(spread(v)))
    };
    let loads = [IDLE, TERMINAL, VIDEO];
    let bytes = [
        "tcvnc MB/min",
        "wire MB/min",
        "tcvnc ÷ wire",
        "warm-up KiB",
        "websockify MB/min",
        "websockify's wire MB/min",
        "websockify ÷ its wire",
        "viewer updates/s",
        "viewer updates/s via websockify",
        "stopped early",
    ];
    let _ = writeln!(
        m,
        "### {BYTES}\n\n| load | {} |\n|---|{}",
        bytes.join(" | "),
        "---|".repeat(bytes.len())
    );
    for load in loads {
        let cells: Vec<String> = bytes.iter().map(|k| cell(BYTES, load, k)).collect();
        let _ = writeln!(m, "| {load} | {} |", cells.join(" | "));
    }
    let cpu = [
        "CPU s/min, recording off",
        "CPU s/min, recording on",
        "viewer updates/s, off",
        "viewer updates/s, on",
    ];
    let _ = writeln!(
        m,
        "\n### {CPU}\n\n| load | {} | added s/min | added by recording |\n|---|{}---|---|",
        cpu.join(" | "),
        "---|".repeat(cpu.len())
    );
    for load in loads {
        let cells: Vec<String> = cpu.iter().map(|k| cell(CPU, load, k)).collect();
        let added = added_cpu(r, load);
        let added = if added.median.is_finite() {
            format!("{} %", fmt_spread(added))
        } else {
            "–".to_owned()
        };
        let s = |k: &str| r.samples(CPU, load, k).unwrap_or(&[]).to_vec();
        let secs = spread(&pairwise(&s(cpu[1]), &s(cpu[0]), |on, off| on - off));
        let _ = writeln!(
            m,
            "| {load} | {} | {} | {added} |",
            cells.join(" | "),
            fmt_spread(secs)
        );
    }
    let _ = writeln!(m);
    for (case, paths) in r
        .cases
        .iter()
        .filter(|(c, _)| crate::console::playback::is_case(c))
    {
        table(m, case, paths);
    }
}

/// The actions section's comparisons, pair by pair over runs: (what, spread, unit).
fn actions_comparisons(r: &Results) -> Vec<(String, Spread, &'static str)> {
    use crate::console::actions::{ENCODER, FRESH, LIVE, START, TCVNC, VERSION, VNCDOTOOL};
    let s = |c: &str, p: &str, m: &str| r.samples(c, p, m).unwrap_or(&[]).to_vec();
    let live = s(LIVE, TCVNC, "p50 ms");
    let enc = s(LIVE, ENCODER, "p50 ms");
    let peer = s(LIVE, VNCDOTOOL, "p50 ms");
    let start = s(START, VERSION, "p50 ms");
    let fresh = s(FRESH, TCVNC, "p50 ms");
    let beyond = s(FRESH, TCVNC, "beyond the API call p50 ms");
    let api = s(FRESH, TCVNC, "API call p50 ms");
    let div = |a: &[f64], b: &[f64]| spread(&pairwise(a, b, |x, y| x / y));
    let sub = |a: &[f64], b: &[f64]| spread(&pairwise(a, b, |x, y| x - y));
    // What vncdotool spends once Python is up: connect, 8 MB of Raw, decode, PNG.
    let peer_work: Vec<f64> = pairwise(&peer, &start, |c, p| c - p);
    vec![
        (
            "live screenshot p50, vncdotool capture ÷ tcvnc".to_owned(),
            div(&peer, &live),
            "×",
        ),
        (
            "live screenshot p50, vncdotool capture less its process start ÷ tcvnc".to_owned(),
            div(&peer_work, &live),
            "×",
        ),
        (
            "live screenshot p50, tcvnc ÷ its PNG encoder alone".to_owned(),
            div(&live, &enc),
            "×",
        ),
        (
            "live screenshot p50, tcvnc − its PNG encoder alone (screen copy, HTTP)".to_owned(),
            sub(&live, &enc),
            "ms",
        ),
        (
            "fresh-connect screenshot p50, vncdotool capture ÷ tcvnc".to_owned(),
            div(&peer, &fresh),
            "×",
        ),
        (
            "fresh-connect screenshot p50, vncdotool capture less its process start ÷ tcvnc beyond the API call"
                .to_owned(),
            div(&peer_work, &beyond),
            "×",
        ),
        (
            "fresh-connect p50 − live p50 − API call p50 (gateway, RFB, first full screen)"
                .to_owned(),
            spread(
                &fresh
                    .iter()
                    .zip(&live)
                    .zip(&api)
                    .map(|((f, l), a)| f - l - a)
                    .collect::<Vec<_>>(),
            ),
            "ms",
        ),
    ]
}

/// The typing path with the highest chars/s at which no key event was lost or came out
/// of order (medians), and that rate.
fn fastest_lossless(r: &Results) -> Option<(String, f64)> {
    use crate::console::actions::TYPING;
    let (_, paths) = r.cases.iter().find(|(c, _)| c == TYPING)?;
    paths
        .iter()
        .filter_map(|(path, _)| {
            let m = |k: &str| r.samples(TYPING, path, k).map(|v| spread(v).median);
            (m("lost")? == 0.0 && m("unexpected or out of order")? == 0.0)
                .then(|| Some((path.clone(), m("chars/s")?)))
                .flatten()
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_else(|| "unknown".into());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "memory_gib": (mem_kib as f64 / 1048576.0 * 10.0).round() / 10.0,
        "kernel": kernel.trim(),
    })
}

fn versions(r: &Results) -> Value {
    let rustc = std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let lock = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.lock"))
        .unwrap_or_default();
    let mut v = serde_json::Map::new();
    v.insert("tcvnc".into(), json!(env!("CARGO_PKG_VERSION")));
    v.insert("rustc".into(), json!(rustc));
    for tool in ["websocat", "x11vnc", "vncdotool", "websockify"] {
        if let Some(version) = r.meta.get(tool) {
            v.insert(tool.into(), json!(version));
        }
    }
    for krate in ["tokio", "tungstenite", "rustls", "ring"] {
        let needle = format!("name = \"{krate}\"\nversion = \"");
        if let Some(rest) = lock.split(&needle).nth(1) {
            if let Some(ver) = rest.split('"').next() {
                v.insert(krate.into(), json!(ver));
            }
        }
    }
    Value::Object(v)
}

/// Writes `results.json`, `chart.svg` and `REPORT.md` into `out`.
pub fn write(out: &Path, plan: &Plan, r: &Results, elapsed: Duration) -> Result<()> {
    let checks = checks(r);
    let mut cases = serde_json::Map::new();
    for (case, paths) in &r.cases {
        let mut pj = serde_json::Map::new();
        for (path, metrics) in paths {
            let mut mj = serde_json::Map::new();
            for (metric, v) in metrics {
                let s = spread(v);
                mj.insert(
                    metric.clone(),
                    json!({"samples": v.len(), "median": s.median, "min": s.min, "max": s.max,
                           "runs": if v.len() <= 16 { json!(v) } else { Value::Null }}),
                );
            }
            pj.insert(path.clone(), Value::Object(mj));
        }
        cases.insert(case.clone(), Value::Object(pj));
    }
    let targets: Vec<Value> = checks
        .iter()
        .map(|c| {
            json!({"target": c.name, "median": c.measured.median, "min": c.measured.min,
                   "max": c.measured.max, "unit": c.unit, "limit": c.limit,
                   "at_most": c.at_most, "met": c.met()})
        })
        .collect();
    let doc = json!({
        "schema": "tcvnc-bench/1",
        "mode": plan.mode,
        "plan": plan,
        "elapsed_s": elapsed.as_secs_f64(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        "machine": machine(),
        "versions": versions(r),
        "cases": cases,
        "targets": targets,
        "notes": r.notes.iter().map(|(k, v)| json!({"what": k, "value": v})).collect::<Vec<_>>(),
    });
    std::fs::write(
        out.join("results.json"),
        serde_json::to_string_pretty(&doc)? + "\n",
    )?;
    chart(&out.join("chart.svg"), r)?;
    std::fs::write(
        out.join("REPORT.md"),
        markdown(plan, r, &doc, &checks, elapsed),
    )?;
    Ok(())
}

fn markdown(plan: &Plan, r: &Results, doc: &Value, checks: &[Check], elapsed: Duration) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# tcvnc benchmark report\n");
    let _ = writeln!(
        m,
        "Mode **{}**: {} runs, bulk {} MiB each way per gateway frame size (a quarter at 1 KiB, an eighth in the RFB-shaped case), {} round trips per size and run, {} session set-ups, idle sessions at {} and {}. The suite took {:.0} s. Written by `{}`.\n",
        plan.mode,
        plan.runs,
        plan.bulk_bytes >> 20,
        plan.rtt_iters,
        plan.setup_iters,
        plan.idle_small,
        plan.idle_large,
        elapsed.as_secs_f64(),
        if plan.mode == "quick" { "scripts/bench --quick" } else { "scripts/bench" },
    );
    let _ = writeln!(m, "## Machine and versions\n");
    let _ = writeln!(m, "| | |\n|---|---|");
    for section in ["machine", "versions"] {
        if let Some(o) = doc[section].as_object() {
            for (k, v) in o {
                let v = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                let _ = writeln!(m, "| {k} | {v} |");
            }
        }
    }
    for (k, v) in &r.notes {
        let _ = writeln!(m, "| {k} | {} |", fmt_num(*v));
    }
    let _ = writeln!(m, "\n## Method\n\n{}\n", METHOD.trim());
    let _ = writeln!(m, "## Targets\n\nEach value is the median over runs of a ratio or difference taken pair by pair (run i of tcvnc against run i of the other path), with min–max in brackets.\n");
    let _ = writeln!(
        m,
        "| target | measured | limit | verdict |\n|---|---|---|---|"
    );
    for c in checks {
        let _ = writeln!(
            m,
            "| {} | {} {} | {} {} {} | {} |",
            c.name,
            fmt_spread(c.measured),
            c.unit,
            if c.at_most { "≤" } else { "≥" },
            fmt_num(c.limit),
            c.unit,
            c.verdict()
        );
    }
    let _ = writeln!(m, "\n![chart](chart.svg)\n");
    let console = |case: &str| case.starts_with("console ");
    if r.cases.iter().any(|(c, _)| console(c)) {
        let _ = writeln!(
            m,
            "## Console mode\n\n{}\n\nSizes this run: latency {} squares per path and run, {} run{}; fan-out at {} viewers, {} s counted after {} s; {} idle viewers; {} drops; {} timed updates per encoding. median [min–max] over runs (CPU: over updates; resume: over drops).\n",
            CONSOLE_METHOD.trim(),
            plan.console_latency_frames,
            plan.console_runs,
            if plan.console_runs == 1 { "" } else { "s" },
            plan.console_fanout
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            plan.console_window_s,
            plan.console_warm_s,
            plan.console_idle_viewers,
            plan.console_drops,
            plan.console_cpu_frames,
        );
        for (case, paths) in r.cases.iter().filter(|(c, _)| console(c)) {
            table(&mut m, case, paths);
        }
    }
    let actions = |case: &str| crate::console::actions::is_case(case);
    if r.cases.iter().any(|(c, _)| actions(c)) {
        actions_section(&mut m, plan, r);
    }
    let recording = |case: &str| crate::console::recording::is_case(case);
    if r.cases.iter().any(|(c, _)| recording(c)) {
        recording_section(&mut m, plan, r);
    }
    let _ = writeln!(
        m,
        "## All numbers\n\nmedian [min–max] over runs (set-up: over sessions).\n"
    );
    for (case, paths) in r
        .cases
        .iter()
        .filter(|(c, _)| !console(c) && !actions(c) && !recording(c))
    {
        table(&mut m, case, paths);
    }
    let notes = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/proxy/NOTES.md"),
    )
    .unwrap_or_default();
    let _ = writeln!(m, "{}", notes.trim());
    let fleet = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/proxy/FLEET.md"),
    )
    .unwrap_or_default();
    if !fleet.trim().is_empty() {
        let _ = writeln!(m, "\n{}", fleet.trim());
    }
    m
}

/// The actions section: method, sizes, comparisons, the fastest lossless typing, tables.
fn actions_section(m: &mut String, plan: &Plan, r: &Results) {
    let _ = writeln!(
        m,
        "## Console actions\n\n{}\n\nSizes this run: {} run{} of {} live screenshots, {} encodes alone, {} vncdotool captures (after one unmeasured) and {} fresh-connect screenshots; typing {} characters at type_interval {} ms, once each. median [min–max] over runs; p50 and p99 are over one run's screenshots.\n",
        ACTIONS_METHOD.trim(),
        plan.actions_runs,
        if plan.actions_runs == 1 { "" } else { "s" },
        plan.actions_live_shots,
        plan.actions_live_shots,
        plan.actions_peer_shots,
        plan.actions_fresh_shots,
        plan.actions_type_chars,
        plan.actions_type_intervals_ms
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    );
    let _ = writeln!(m, "| comparison | median [min–max] over runs |\n|---|---|");
    for (what, s, unit) in actions_comparisons(r) {
        let _ = writeln!(m, "| {what} | {} {unit} |", fmt_spread(s));
    }
    let _ = writeln!(m);
    if let Some((path, rate)) = fastest_lossless(r) {
        let _ = writeln!(
            m,
            "Fastest typing with every key event logged by the simulator's console, in order: **{} characters/s** ({path}).\n",
            fmt_num(rate)
        );
    }
    for (case, paths) in r
        .cases
        .iter()
        .filter(|(c, _)| crate::console::actions::is_case(c))
    {
        table(m, case, paths);
    }
}

/// One case's table: a row per path, a column per metric, median [min–max].
fn table(m: &mut String, case: &str, paths: &Paths) {
    let metrics: Vec<&str> = paths
        .first()
        .map(|(_, ms)| ms.iter().map(|(k, _)| k.as_str()).collect())
        .unwrap_or_default();
    let _ = writeln!(m, "### {case}\n");
    let _ = writeln!(
        m,
        "| path | {} |\n|---|{}",
        metrics.join(" | "),
        "---|".repeat(metrics.len())
    );
    for (path, ms) in paths {
        let cells: Vec<String> = ms.iter().map(|(_, v)| fmt_spread(spread(v))).collect();
        let _ = writeln!(m, "| {path} | {} |", cells.join(" | "));
    }
    let _ = writeln!(m);
}

const CONSOLE_METHOD: &str = r#"
Console mode makes tcvnc an RFB client of the console (decoding into a framebuffer) and
an RFB server to each viewer. The console here is synthetic and lives in the harness, on
a thread and runtime of its own: RFB 3.8, security None, ServerInit in 32-bit RGB888,
SetPixelFormat and SetEncodings honoured (through tcvnc's own encoder). tcvnc reaches it
as in the other cases: `mode = "bridge"` or `mode = "console"` targets, a URL minted
from the simulator per connection, the simulator's TLS websocket gateway (`tcvnc sim
--backend`) in front of the console.

* **Latency** (1280×800): on each incremental FramebufferUpdateRequest, at most every
  16 ms, the console sends one Raw 128×128 square at the next place of its path, its
  colour the square's sequence number, and records the send time. The viewer (Raw only,
  requesting back to back) reads each update, reads the newest sequence number from the
  colours (the top 17 rows, where console mode's banner goes, are ignored) and records
  the receipt time; latency is receipt − send on the harness's clock, after 30
  unmeasured squares. Paths: **direct** (TCP to the console), **bridge** and
  **console** (tcvnc through the gateway). The target compares console with bridge, run
  by run.
* **CPU per full-screen update** (1920×1080): in the harness process with tcvnc's
  library, on tests/rfbref's synthetic desktop scrolled 4 rows a frame: one viewer's
  encode (`Encoder`, persistent zlib stream), the engine's decode of it
  (`UpdateDecoder` into a `Framebuffer`, checked equal to the source), the shared-mode
  encode made once for every viewer (ZRLE: `enable_shared_zrle`; Tight:
  `enable_shared_tight`), and a cache hit (the copy each further viewer costs).
  "shared ms per viewer at 50" is the shared encode spread over 50 viewers plus a copy.
* **Fan-out** (1920×1080, 10 full-screen changes a second: the same desktop scrolled 4
  rows a frame, 10 frames in a loop): the console sends each frame as one ZRLE
  rectangle encoded once in the shared mode (valid on any connection after a 1×1
  primer; encoded once more for a client in another pixel format, as x11vnc's), or Raw
  to a client that did not list ZRLE. N viewers (ZRLE and Raw, requests back to back,
  framing parsed only) count the updates they receive over the counted window;
  "screens/s" is the pixels their updates covered, in screens, a second (a reflector
  that sends parts of the screen shows more updates than screens). **tcvnc**: one
  console-mode target, its viewers on its TCP listener. **x11vnc**: `x11vnc -reflect
  CONSOLE -rfbport P -localhost -shared -forever -nopw` dialled to the console directly
  (plain TCP, no gateway: it speaks no websocket), started for each measurement. CPU
  is the proxy process's (tcvnc or x11vnc) over the window, in cores; the gateway, the
  console and the viewers share the same 2 cores.
* **Memory** (1920×1080, a still screen): the proxy's RSS before any viewer, then with
  one viewer after its first full update ("console KiB", the console's cost: for
  x11vnc, which takes the screen when it starts, only the first viewer's), then after N
  more viewers that each got one full update and left an incremental request
  outstanding ("KiB per idle viewer" = the growth / N). tcvnc's growth includes what
  its engine shares between viewers (the still screen's one cached full-screen ZRLE
  encode, a few hundred KiB, spread over N) and what the allocator keeps of each
  viewer's freed update buffer.
* **Resume**: the simulator's gateway cuts every console connection 2 s after it opened
  (`drop_after`); one console-mode viewer requests continuously from the latency
  console. The gap is from the last square received before a drop to the first square
  sent on the next console connection; the API call is tcvnc's mean
  `tcvnc_api_request_duration_seconds` for `DescribeInstanceVncUrl` over the drops
  (`/metrics`); "engine without console ms" is `without_console_ms` of tcvnc's
  "console resumed" log line (from noticing the drop to the next console's handshake).
"#;

const ACTIONS_METHOD: &str = r#"
tcvnc's HTTP actions on console-mode targets, timed from outside as `curl` would see
them: one HTTP/1.1 request per TCP connection, from connecting to the last byte of the
answer. The console is the synthetic one of the console section, still, showing
tests/rfbref's desktop at 1920×1080 (windows, text, a photo-like area, gradients);
tcvnc reaches it through the simulator's API and TLS websocket gateway.

* **Live screenshot**: a viewer on the target's TCP listener got its first full update
  and stays, so the engine is live; then `GET /vnc/<instance>/screenshot.png` again and
  again (after 3 unmeasured), each checked for `200 image/png` and no
  `X-Tcvnc-Url-Spent`; the first PNG is decoded (zune-png, not the encoder's own crate)
  and compared pixel by pixel with the console's screen. Beside it: **PNG encoder
  alone**, tcvnc's `console::png::encode` on the same screen in the harness process
  (the floor: what the GET adds is the screen copy and HTTP); and **vncdotool**
  (`vncdo -s HOST::PORT capture FILE`, Python, Raw encoding, PIL's PNG) straight to the
  console's TCP port, without gateway or API: what a user with direct access would run.
  It starts a process and connects afresh each time, so it is also the yardstick for the
  fresh-connect case; `vncdo --version`, timed as often, is the part of each capture
  that is Python starting and importing (Twisted, PIL), so the comparisons show
  vncdotool with and without it.
* **Fresh-connect screenshot**: console-mode targets with `linger = "0ms"` and no
  viewer, so each GET finds no engine: tcvnc mints a URL (`DescribeInstanceVncUrl` to
  the simulator), dials the gateway (TLS, websocket, RFB), waits for the first full
  screen (about 560 KiB of ZRLE), encodes the PNG, answers and leaves. Each answer must
  say `X-Tcvnc-Url-Spent: 1`. The API call's own time is tcvnc's
  `tcvnc_api_request_duration_seconds` for that request (read from `/metrics` before
  and after it: exactly one call each time); "beyond the API call" is the total less
  it. The phases come from tcvnc's JSON log lines for the request: URL minted → engine
  connected (TLS, websocket and RFB handshakes through the gateway), → engine ended (the
  first full screen arrived and decoded, the screen copied for the PNG; with linger 0
  the engine leaves then), → the answer's log line (the PNG encode). Beside tcvnc's
  handshake phase, "direct TLS+websocket+RFB" is the harness's own (tungstenite, to
  ServerInit) with the same gateway and console after each screenshot, over one URL
  reused (`reuse_tokens`). The screenshots take turns over 20 instances and wait until
  the last engine of the instance has left, so each instance gets a URL at most once
  every 20 screenshots, far below its 30 a minute: the budget never waits here (nor
  does the simulator's API limit, raised for the benchmarks as in the other cases).
* **Typing**: the simulator's own test-pattern console (no `--backend`), which logs
  every key event it reads (`GET /_sim/input`). For each `[session] type_interval` a
  tcvnc of its own and an instance of its own; a viewer keeps the engine live; one
  `POST /vnc/<instance>/type` of a fixed text (letters of both cases, digits, every ASCII
  symbol, spaces, a newline every 61 characters), timed until its answer (tcvnc answers
  once the keys are written and the console has answered two more update requests).
  The expected key events are written in the harness from the keysym tables (US
  layout, Shift_L around shifted characters), not with tcvnc's `keys` module, and
  matched in order against the simulator's log: "lost" are expected events not found
  in order, "unexpected or out of order" the log's events left over. `type_interval` is
  a pause after every key event, and a character is 2 (4 with Shift) key events.
"#;

const RECORDING_METHOD: &str = r#"
What `[recording]` writes and costs, and how fast `tcvnc play` starts. Three synthetic
consoles at 1280×800 (the console of the console section: RFB 3.8, ZRLE encoded once per
frame, behind the simulator's API and TLS websocket gateway), each watched by one viewer
(ZRLE and Raw, requests back to back) through a console-mode target with `linger =
"0ms"`, so every run is one engine and, with recording on, one file:

* **idle desktop**: tests/rfbref's desktop, still: after the first screen the console
  sends nothing (keepalives only: websocket pings; no blinking cursor).
* **scrolling terminal**: boot-log lines in the 6×13 font, light grey on black, one new
  line at the bottom 12 times a second (83 ms), every row moving up, sent as a text
  console's framebuffer sends it: the whole screen again, no CopyRect.
* **video-like**: a colour field drifting a little every frame with grain of ±8 levels
  per channel drawn afresh for every pixel, 25 frames a second: every pixel changes and
  little compresses (lossless zlib of ZRLE or Tight keeps about 90 % of it).

Each load has two tcvnc daemons, one with `[recording] dir` and one without, measured in
turn (never at once), and `websockify --record` (the reference implementation of the
format, from PyPI) in front of the same console, its viewer on websockify's websocket
through a small TCP adapter in the harness. Per run: one viewer for the warm-up and the
counted window; **recorded** is tcvnc's `tcvnc_console_recorded_bytes_total` (bytes
handed to the file) over the window, per minute; websockify's is its record file's
growth; **wire** is what the console wrote to that path's connection over the same
window (RFB bytes, before websocket framing and TLS); **warm-up** is what tcvnc recorded
before the window: the handshake and first full screen (for the idle console, its whole
recording). **CPU** is tcvnc's process CPU (the sum of its threads' `schedstat`) over the
window, per minute of console; "added by recording" is (on − off) / off, run by run.
After each recording: its sidecar's `bytes` equals the file's size, it did not stop early
(a disk more than 64 MiB behind stops it), and the first run's file is read through
tests/rfbref's decoder (not tcvnc's) to a screen the console showed. Between runs the
files are deleted (a video-like minute is gigabytes).

**Playback**: a recording of the scrolling terminal written by the harness as the
recorder writes one (the handshake, then every 100 ms the whole screen in lossless Tight
through one encoder in noVNC's pixel format, one zlib stream as the recorder's; a
keyframe every 60 s of recording, the stream fully flushed before it, listed in a
sidecar beside the file), an hour long in the full run. `tcvnc play FILE --from T` is
started, a viewer connects once it prints its address (playback starts with the first
viewer: the recording up to T is decoded first, from the last keyframe before T),
asks for Raw and reads its first full screen, which is compared, below the banner's
rows, with the terminal's screen at T. "first frame s" is from the process's start to
that screen; "decoded before --from s" is `ready_ms` of tcvnc's "playing" log line and
"from the keyframe at s" its `keyframe_ms` (0: from the start). Each `--from` is then
played again with the sidecar moved away, so decoding starts at the file's start:
"first frame without the sidecar s"; "first frame is the recording's" is 1 when both
first frames were the terminal's screen at T.
"#;

const METHOD: &str = r#"
Everything runs on loopback on this one machine, in one run, each component in its own
process so that `/proc/PID/stat` gives each its own CPU time:

* **tcvnc**: client → `tcvnc serve` (targets `mode = "transparent"` for the data cases) →
  a TLS websocket gateway → backend. Every connection mints a URL from the simulated
  API, as in production.
* **websocat**: client → `websocat -b tcp-l:… wss://…` → the same gateway → backend.
  The simulator lets websocat's one URL be reused (`reuse_tokens`, a knob for
  benchmarks only).
* **tls-pipe**: client → a rustls TLS client pipe → a rustls TLS server pipe → backend
  (no websocket framing), both with tokio's `copy_bidirectional`; the server pipe reads
  the backend a gateway frame at a time, so its TLS records are the size of the
  gateways' frames, and the proxy pipe reads 64 KiB at a time.
* **tcp-pipe**: the same with plain TCP.

Two gateways frame the console's bytes: the **simulator's** (`tcvnc sim`: tungstenite
over rustls, TLS 1.3), with its `frame_max` knob capping each read of the console and so
each frame; and **websocat's TLS server** (`websocat -b -B FRAME wss-l:… tcp:backend`,
OpenSSL underneath as in many real gateways: a frame per read of at most FRAME bytes;
`-B` also caps the messages it takes whole, so the upload cases use one with a 1 MiB
buffer).
A second simulator serves the API for the websocat gateway's cases, its minted URLs
pointing at that gateway (`gateway_base`, a benchmark knob).

The backend lives in the harness process: it uploads, downloads (1 MiB of 32-bit
framebuffer-like pixels, repeated, written in blocks of the frame size) or echoes.
Uploads are written by the client in blocks of the frame size. The RFB-shaped case
writes updates as a VNC server does: a 4-byte header, then 1–40 rectangles, each a
12-byte header and 64 B–96 KiB of pixels, one write each, and a 10 ms pause after each
update; through 64 KiB gateway frames. Bulk cases time from the backend's ready byte
to the last byte (upload: the backend's acknowledgement); CPU is the proxy process's
time on CPU (the sum of its threads' `schedstat`, in nanoseconds) over the same span, divided by GiB moved (the gateway's is shown
too). Round trips send 8 B or 1 KiB and wait for the echo, one at a time after
a warm-up. Paths and cases are interleaved run by run, so a noisy moment hits all paths.

Set-up is a viewer's connect to ServerInit (RFB 3.8, security None) against the
simulator's test-pattern console, through tcvnc (RFB-aware: it mints a URL, dials and
negotiates the console) and through websocat; alongside each, one API call
(`DescribeInstanceVncUrl`, signed, to the simulator) and one direct TLS + websocket +
RFB handshake with the gateway are timed; the overhead is tcvnc − API − direct, per
set-up. It can come out below zero: tcvnc greets the viewer and settles its security
while nothing else is waiting, and its own TLS and websocket client is quicker than the
harness's tungstenite one that times the direct path. Idle memory is the daemon's RSS growth (`VmRSS`) over N open sessions that
finished the RFB handshake, after one warm-up session, divided by N. The simulator's
API limit is raised for the idle cases (`api_rate_limit`, benchmarks only; tcvnc's
`budget.api_requests_per_second` likewise).
"#;

fn chart(path: &Path, r: &Results) -> Result<()> {
    use plotters::prelude::*;
    let paths = ["tcvnc", "websocat", "tls-pipe", "tcp-pipe"];
    type Panel<'a> = (&'a str, [(&'a str, &'a str); 3], &'a str);
    let panels: [Panel; 4] = [
        (
            "Bulk throughput, download (simulator gateway), MB/s",
            [
                ("download 1 KiB · sim gateway", "1 KiB frames"),
                ("download 8 KiB · sim gateway", "8 KiB frames"),
                ("download 64 KiB · sim gateway", "64 KiB frames"),
            ],
            "MB/s",
        ),
        (
            "Proxy CPU, download (simulator gateway), s per GiB",
            [
                ("download 1 KiB · sim gateway", "1 KiB frames"),
                ("download 8 KiB · sim gateway", "8 KiB frames"),
                ("download 64 KiB · sim gateway", "64 KiB frames"),
            ],
            "proxy CPU s/GiB",
        ),
        (
            "Proxy CPU, download (websocat gateway), s per GiB",
            [
                ("download 1 KiB · websocat gateway", "1 KiB frames"),
                ("download 8 KiB · websocat gateway", "8 KiB frames"),
                ("download 64 KiB · websocat gateway", "64 KiB frames"),
            ],
            "proxy CPU s/GiB",
        ),
        (
            "Round trip p99, µs",
            [("rtt 8 B", "8 B"), ("rtt 1024 B", "1 KiB"), ("", "")],
            "p99 µs",
        ),
    ];
    let root = SVGBackend::new(path, (1600, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let areas = root.split_evenly((2, 2));
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
    ];
    let width = 0.8 / 3.0;
    for (area, (title, series, metric)) in areas.iter().zip(panels) {
        let mut ymax: f64 = 0.0;
        for (case, _) in series {
            for p in paths {
                if let Some(v) = r.samples(case, p, metric) {
                    ymax = ymax.max(spread(v).max);
                }
            }
        }
        let ymax = if ymax.is_finite() && ymax > 0.0 {
            ymax * 1.4 // head room for the legend
        } else {
            1.0
        };
        let mut chart = ChartBuilder::on(area)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..(paths.len() as f64 - 0.5), 0f64..ymax)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(paths.len())
            .x_label_formatter(&|x| {
                let k = x.round();
                if (x - k).abs() < 1e-6 && k >= 0.0 && (k as usize) < paths.len() {
                    paths[k as usize].to_owned()
                } else {
                    String::new()
                }
            })
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for (si, (case, label)) in series.iter().enumerate() {
            if case.is_empty() {
                continue;
            }
            let color = colors[si];
            let mut bars = Vec::new();
            let mut whiskers = Vec::new();
            for (pi, p) in paths.iter().enumerate() {
                let Some(v) = r.samples(case, p, metric) else {
                    continue;
                };
                let s = spread(v);
                let x0 = pi as f64 - 0.4 + si as f64 * width;
                bars.push(Rectangle::new(
                    [(x0 + 0.02, 0.0), (x0 + width - 0.02, s.median)],
                    color.filled(),
                ));
                whiskers.push(PathElement::new(
                    vec![(x0 + width / 2.0, s.min), (x0 + width / 2.0, s.max)],
                    BLACK,
                ));
            }
            chart
                .draw_series(bars)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .label(*label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                });
            chart
                .draw_series(whiskers)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    root.present().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(())
}
