//! Screenshots, typing and key combinations over HTTP and the CLI's `--via`, against
//! the simulator's test pattern (it records what reaches the console): from a live
//! engine no URL is spent; without one a URL is spent and said so; text that cannot be
//! typed is refused before anything is typed; the view-only token may look, not type.

mod common;
mod console_support;
mod rfbref;

use common::*;
use console_support::*;
use tcvnc::sim::rfb_server::pattern;
use tcvnc::sim::SimInput;

const CONTROL_TOKEN: &str = "3f1d0a9b8c7e6d5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f";
const VIEW_TOKEN: &str = "9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b";

/// A PNG decoded with an independent decoder into `0x00RRGGBB` pixels.
fn decode_png(png: &[u8]) -> (usize, usize, Vec<u32>) {
    let mut d = zune_png::PngDecoder::new(png);
    let pixels = d.decode_raw().expect("a valid PNG");
    let (w, h) = d.get_dimensions().expect("dimensions");
    let px = pixels
        .chunks_exact(3)
        .map(|c| u32::from(c[0]) << 16 | u32::from(c[1]) << 8 | u32::from(c[2]))
        .collect();
    (w, h, px)
}

/// The still parts of the test pattern (the moving square's band and the banner row
/// aside) are in the image, pixel for pixel.
fn shows_pattern(w: usize, px: &[u32]) {
    for (i, &p) in px.iter().enumerate() {
        let (x, y) = ((i % w) as u16, (i / w) as u16);
        if (240 - 32..240 + 32).contains(&y) || y < 20 {
            continue;
        }
        let (r, g, b) = pattern(x, y, 0);
        let want = u32::from(r) << 16 | u32::from(g) << 8 | u32::from(b);
        assert_eq!(p, want, "pixel {x},{y}");
    }
}

async fn get(url: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = http_client().get(url);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.expect("GET")
}

async fn post(url: &str, body: &str, token: Option<&str>) -> reqwest::Response {
    let mut r = http_client().post(url).body(body.to_owned());
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().await.expect("POST")
}

#[tokio::test]
async fn screenshots_from_a_live_console_spend_nothing_and_others_say_they_spent_one() {
    let sim = sim().await;
    let mut o = console_opts("linger = \"60s\"");
    o.targets
        .push_str("[[target]]\ninstance = \"ins-demo0002\"\n");
    let mut d = TestDaemon::start(&sim, &o).await;
    let http = d.http.expect("http");
    // No viewer, no engine: one URL, said so.
    let r = get(
        &format!("http://{http}/vnc/{INSTANCE}/screenshot.png"),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers().get("x-tcvnc-url-spent").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    assert_eq!(
        r.headers().get("content-type").map(|v| v.as_bytes()),
        Some(&b"image/png"[..])
    );
    let (w, h, px) = decode_png(&r.bytes().await.expect("body"));
    assert_eq!((w, h), (640, 480));
    shows_pattern(w, &px);
    assert_eq!(sim.state.mints(INSTANCE), 1);
    // The engine lingers: the next one is free, and so is one with a viewer watching.
    let mut v = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    v.request(false).await;
    within(v.next_update()).await.expect("update");
    let r = get(
        &format!("http://{http}/vnc/{INSTANCE}/screenshot.png"),
        None,
    )
    .await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-tcvnc-url-spent").is_none());
    let (w, _, px) = decode_png(&r.bytes().await.expect("body"));
    shows_pattern(w, &px);
    assert_eq!(sim.state.mints(INSTANCE), 1, "no URL for a live console");
    // A bridge-mode target: each screenshot connects and leaves.
    for n in 1..=2 {
        let r = get(
            &format!("http://{http}/vnc/ins-demo0002/screenshot.png"),
            None,
        )
        .await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("x-tcvnc-url-spent").is_some());
        assert_eq!(sim.state.mints("ins-demo0002"), n);
    }
    // The CLI through the daemon writes the same picture.
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("shot.png");
    let args = [
        "screenshot".to_owned(),
        INSTANCE.to_owned(),
        "--via".to_owned(),
        format!("http://{http}"),
        "-o".to_owned(),
        file.display().to_string(),
    ];
    let home = dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        tcvnc_cli(&home, &a)
    })
    .await
    .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (w, _, px) = decode_png(&std::fs::read(&file).expect("written"));
    shows_pattern(w, &px);
    drop(v);
    assert!(d.stop().await);
}

#[tokio::test]
async fn typing_and_keys_reach_the_console_and_untypable_text_types_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let secret = |name: &str, value: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, value).expect("write");
        p.display().to_string()
    };
    let sim = sim().await;
    let mut o = console_opts("");
    o.http = Some(format!(
        "token_file = \"{}\"\nview_token_file = \"{}\"\n",
        secret("t", CONTROL_TOKEN),
        secret("v", VIEW_TOKEN)
    ));
    let mut d = TestDaemon::start(&sim, &o).await;
    let http = d.http.expect("http");
    let url = |what: &str| format!("http://{http}/vnc/{INSTANCE}/{what}");
    // Refused before anything is typed: the characters are named.
    let r = post(&url("type"), "ok\u{e9}\u{7}", Some(CONTROL_TOKEN)).await;
    assert_eq!(r.status(), 422);
    let text = r.text().await.expect("body");
    assert!(
        text.contains("é (U+00E9) at 3") && text.contains("U+0007"),
        "{text}"
    );
    // The view-only token may look but not type.
    let r = post(&url("type"), "x", Some(VIEW_TOKEN)).await;
    assert_eq!(r.status(), 403);
    assert_eq!(sim.state.mints(INSTANCE), 0, "nothing spent on refusals");
    assert_eq!(sim.state.input_total(INSTANCE), 0);

    let r = post(&url("type"), "Hi\n", Some(CONTROL_TOKEN)).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    let key = |down, keysym| SimInput::Key { down, keysym };
    let typed = within(sim.state.wait_inputs(INSTANCE, 8)).await;
    assert_eq!(
        typed,
        [
            key(true, 0xffe1),
            key(true, 0x48),
            key(false, 0x48),
            key(false, 0xffe1),
            key(true, 0x69),
            key(false, 0x69),
            key(true, 0xff0d),
            key(false, 0xff0d),
        ]
    );
    let r = post(&url("keys"), "ctrl-alt-delete\n", Some(CONTROL_TOKEN)).await;
    assert_eq!(r.status(), 200);
    let all = within(sim.state.wait_inputs(INSTANCE, 14)).await;
    assert_eq!(
        all[8..],
        [
            key(true, 0xffe3),
            key(true, 0xffe9),
            key(true, 0xffff),
            key(false, 0xffff),
            key(false, 0xffe9),
            key(false, 0xffe3),
        ]
    );
    let r = post(&url("keys"), "ctrl-banana", Some(CONTROL_TOKEN)).await;
    assert_eq!(r.status(), 422);
    assert!(r.text().await.expect("body").contains("banana"));
    // The screenshot works with the view-only token.
    let r = get(&url("screenshot.png"), Some(VIEW_TOKEN)).await;
    assert_eq!(r.status(), 200);
    assert!(d.stop().await);
}

/// Without `--via`, `tcvnc screenshot` and `tcvnc type` run one-shot from the config:
/// one URL each, said on stderr, the picture written, the text typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shot_commands_spend_one_url_each() {
    let sim = sim().await;
    let dir = tempfile::tempdir().expect("tmp");
    let config = dir.path().join("tcvnc.toml");
    let o = Opts {
        targets: format!("[[target]]\ninstance = \"{INSTANCE}\"\n"),
        ..Opts::default()
    };
    std::fs::write(&config, config_text(&sim, &o)).expect("config");
    let run = |args: Vec<String>| {
        let home = dir.path().to_owned();
        tokio::task::spawn_blocking(move || {
            let a: Vec<&str> = args.iter().map(String::as_str).collect();
            tcvnc_cli(&home, &a)
        })
    };
    let shot = dir.path().join("shot.png");
    let out = run(vec![
        "screenshot".into(),
        INSTANCE.into(),
        "-c".into(),
        config.display().to_string(),
        "-o".into(),
        shot.display().to_string(),
    ])
    .await
    .expect("cli");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("one console URL of ins-demo0001 was spent"),
        "{stderr}"
    );
    let (w, _, px) = decode_png(&std::fs::read(&shot).expect("written"));
    shows_pattern(w, &px);
    assert_eq!(sim.state.mints(INSTANCE), 1);
    let out = run(vec![
        "type".into(),
        INSTANCE.into(),
        "-c".into(),
        config.display().to_string(),
        "ok".into(),
    ])
    .await
    .expect("cli");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sim.state.mints(INSTANCE), 2);
    let typed = within(sim.state.wait_inputs(INSTANCE, 4)).await;
    let key = |down, keysym| SimInput::Key { down, keysym };
    assert_eq!(
        typed,
        [
            key(true, 0x6f),
            key(false, 0x6f),
            key(true, 0x6b),
            key(false, 0x6b)
        ]
    );
}
