//! Recording (`[recording]`) and playback (`tcvnc play`, `tcvnc export`) against the
//! simulator's test-pattern console: a console-mode session, a gateway drop and resume
//! included, is written as websockify's record format; an independent decoder (the
//! reference viewer in `tests/rfbref`) reads back the screen the viewer saw, the banner
//! and names of the resume included; the sidecar names the viewer, the URLs and the
//! resume; nothing secret is in either file. A recording made here plays through `tcvnc
//! play` (seeking, speed, a resize) and `tcvnc export` gives the screen at each instant.

mod common;
mod console_support;
mod rfbref;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use console_support::*;
use tcvnc::record::format::{self, From, Reader};
use tcvnc::sim::rfb_server::pattern;
use tcvnc::sim::{Faults, GatewayEvent};
use tokio::io::AsyncWriteExt;

const CONTROL_TOKEN: &str = "0c1d0a9b8c7e6d5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f";
const VIEW_TOKEN: &str = "0a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b";

/// Every frame of a recording file.
fn frames(path: &std::path::Path) -> (Vec<format::Frame>, bool) {
    let f = std::fs::File::open(path).expect("open");
    let mut r = Reader::new(std::io::BufReader::new(f)).expect("a recording");
    let mut out = Vec::new();
    while let Some(fr) = r.next_frame().expect("frame") {
        out.push(fr);
    }
    (out, r.finished)
}

/// What the reference viewer made of a recording's server stream.
struct Played {
    v: rfbref::Viewer,
    names: Vec<String>,
    updates: usize,
}

/// Plays the server side of `frames` into the reference viewer (a viewer's view of it:
/// handshake, then updates, bells and cut text).
fn play(frames: &[format::Frame]) -> Played {
    play_from(frames, false)
}

/// [`play`], where `joined`: the frames after the handshake start at a keyframe, not at
/// the session's start (the reference viewer joins the zlib stream there).
fn play_from(frames: &[format::Frame], joined: bool) -> Played {
    let server: Vec<&format::Frame> = frames.iter().filter(|f| f.from == From::Server).collect();
    assert!(
        server.windows(2).all(|w| w[0].ms <= w[1].ms),
        "times in order"
    );
    assert_eq!(server[0].data, b"RFB 003.008\n");
    assert_eq!(server[1].data, [1, 1], "one security type: None");
    assert_eq!(server[2].data, [0, 0, 0, 0], "SecurityResult OK");
    let init = &server[3].data;
    let (w, h) = (
        u16::from_be_bytes([init[0], init[1]]),
        u16::from_be_bytes([init[2], init[3]]),
    );
    let mut pf = [0u8; 16];
    pf.copy_from_slice(&init[4..20]);
    let pf = tcvnc::rfb::messages::PixelFormat::from_bytes(&pf);
    let name_len = u32::from_be_bytes([init[20], init[21], init[22], init[23]]) as usize;
    let mut p = Played {
        v: rfbref::Viewer::new(pf, w, h),
        names: vec![String::from_utf8_lossy(&init[24..24 + name_len]).into_owned()],
        updates: 0,
    };
    if joined {
        p.v.join_mid_stream();
    }
    for f in &server[4..] {
        let mut at = 0;
        while at < f.data.len() {
            match f.data[at] {
                0 => {
                    at +=
                        p.v.update(&f.data[at..])
                            .expect("an update the reference decodes");
                    p.updates += 1;
                    if let Some(n) = p.v.name.take() {
                        p.names.push(n);
                    }
                }
                2 => at += 1,
                3 => {
                    let n = u32::from_be_bytes([
                        f.data[at + 4],
                        f.data[at + 5],
                        f.data[at + 6],
                        f.data[at + 7],
                    ]) as usize;
                    at += 8 + n;
                }
                t => panic!("message type {t} in a recording"),
            }
        }
    }
    p
}

impl Played {
    /// The still parts of the test pattern are on the screen, pixel for pixel.
    fn shows_pattern(&self) -> Result<(), String> {
        for y in 0..self.v.height {
            if (240 - 32..240 + 32).contains(&y) || y < 20 {
                continue;
            }
            for x in 0..self.v.width {
                let (r, g, b) = pattern(x, y, 0);
                let want = self.v.value_of_rgb(r, g, b);
                let got =
                    self.v.screen[usize::from(y) * usize::from(self.v.width) + usize::from(x)];
                if got & self.v.used_mask() != want & self.v.used_mask() {
                    return Err(format!("pixel {x},{y}: {got:08x}, want {want:08x}"));
                }
            }
        }
        Ok(())
    }
}

fn recordings_in(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "js"))
        .collect();
    v.sort();
    v
}

/// Waits until the recording's sidecar says it ended (the engine closes it after its
/// last viewer left and `linger` passed).
async fn ended_sidecar(dir: &std::path::Path) -> tcvnc::record::sidecar::Sidecar {
    within(async {
        loop {
            if let Some(s) = tcvnc::record::sidecar::list(dir)
                .expect("list")
                .into_iter()
                .find(|s| s.end.is_some())
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("meta").permissions().mode() & 0o777
}

#[tokio::test]
async fn a_console_session_is_recorded_as_the_viewer_saw_it() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rec = tmp.path().join("recordings");
    let secret = |name: &str, value: &str| {
        let p = tmp.path().join(name);
        std::fs::write(&p, value).expect("write");
        p.display().to_string()
    };
    let sim = sim().await;
    let mut events = sim.state.events();
    let mut o = console_opts("linger = \"0s\"");
    o.http = Some(format!(
        "token_file = \"{}\"\nview_token_file = \"{}\"\n",
        secret("t", CONTROL_TOKEN),
        secret("v", VIEW_TOKEN)
    ));
    let text = format!(
        "{}\n[recording]\ndir = \"{}\"\nretention = \"30d\"\n",
        config_text(&sim, &o),
        rec.display()
    );
    let mut d = TestDaemon::from_text(&text).await;
    assert_eq!(mode(&rec), 0o700, "the directory is created private");
    // The first gateway session ends after 1.5 MB: a drop and a resume in the recording.
    sim.state.set_faults(Faults {
        drop_after_bytes: Some(1_500_000),
        ..Faults::default()
    });
    let mut v = within(Viewer::connect(
        d.tcp(INSTANCE),
        &[ZRLE, RAW, DESKTOP_SIZE, DESKTOP_NAME],
    ))
    .await;
    v.request(false).await;
    within(v.next_update()).await.expect("first update");
    wait_event(&mut events, |e| matches!(e, GatewayEvent::Ended(_))).await;
    // One drop: the next session runs on.
    sim.state.set_faults(Faults::default());
    wait_event(&mut events, |e| matches!(e, GatewayEvent::Accepted(_))).await;
    for _ in 0..5 {
        v.request(true).await;
        within(v.next_update())
            .await
            .expect("an update after the drop");
    }
    v.shows_pattern().expect("the viewer's screen");
    // Keys from the viewer reach the console but not the file (input is off).
    v.send(&key(true, 0x61)).await;
    v.send(&key(false, 0x61)).await;
    within(sim.state.wait_inputs(INSTANCE, 2)).await;
    // The API lists the running recording to the control token only.
    let http = d.http.expect("http");
    let client = http_client();
    let url = format!("http://{http}/api/recordings");
    let r = client
        .get(&url)
        .bearer_auth(VIEW_TOKEN)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 403);
    let r = client
        .get(&url)
        .bearer_auth(CONTROL_TOKEN)
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    let listed: serde_json::Value = r.json().await.expect("JSON");
    assert_eq!(listed["recordings"][0]["instance"], INSTANCE);
    assert!(listed["recordings"][0]["end"].is_null(), "still running");
    drop(v);

    let side = ended_sidecar(&rec).await;
    let files = recordings_in(&rec);
    assert_eq!(files.len(), 1, "one file per console session");
    let path = &files[0];
    assert_eq!(
        side.file,
        path.file_name().expect("name").to_string_lossy(),
        "the sidecar names its file"
    );
    assert!(side.file.starts_with("ins-demo0001-"), "{}", side.file);
    assert_eq!(mode(path), 0o600);
    assert_eq!(mode(&tcvnc::record::sidecar::path_for(path)), 0o600);
    assert_eq!(side.instance, INSTANCE);
    assert_eq!(side.region, "ap-guangzhou");
    assert!(side.end.as_deref() > Some(side.start.as_str()));
    assert_eq!(side.viewers.len(), 1, "{:?}", side.viewers);
    assert_eq!(side.viewers[0].role, "control");
    assert_eq!(side.viewers[0].via, "tcp");
    assert!(side.viewers[0].peer.starts_with("127.0.0.1:"));
    assert!(side.viewers[0].left.is_some());
    assert_eq!(side.urls_spent, sim.state.mints(INSTANCE));
    assert!(side.urls_spent >= 2, "{side:?}");
    assert!(side.resumes >= 1, "{side:?}");
    assert!(!side.input_recorded);
    assert!(side.stopped.is_none(), "{side:?}");
    assert_eq!(side.bytes, std::fs::metadata(path).expect("meta").len());

    // Nothing secret: no URL, token or key, in the file or in what it decodes to.
    let raw = std::fs::read_to_string(path).expect("text");
    for bad in [
        "wss://",
        "?s=",
        "&s=",
        tcvnc::sim::DEMO_SECRET_KEY,
        tcvnc::sim::DEMO_SECRET_ID,
    ] {
        assert!(!raw.contains(bad), "{bad} in the recording");
    }
    let (all, finished) = frames(path);
    assert!(finished, "closed with its last line");
    assert!(
        all.iter().all(|f| f.from == From::Server),
        "no viewer input without input = true"
    );
    let decoded: Vec<u8> = all.iter().flat_map(|f| f.data.clone()).collect();
    assert!(!decoded.windows(6).any(|w| w == b"wss://"));

    // It opens on the console's screen, not on the empty one of the engine that had just
    // connected.
    play(&all[..5])
        .shows_pattern()
        .expect("the recording's first update");
    // What the file holds is what the viewer saw: the pattern, and the drop's banner.
    let p = play(&all);
    assert!(p.updates >= 3, "{} updates", p.updates);
    assert_eq!((p.v.width, p.v.height), (640, 480));
    p.shows_pattern().expect("the recorded screen");
    assert!(
        p.names.iter().any(|n| n.starts_with("reconnecting")),
        "the resume's name: {:?}",
        p.names
    );
    assert_eq!(p.names.last(), p.names.first(), "the console's name back");
    assert!(p.v.seen.contains(&7), "Tight: {:?}", p.v.seen);
    let metrics = d.app.metrics.encode();
    assert!(
        metrics.contains("tcvnc_console_recordings{instance=\"ins-demo0001\"} 0"),
        "{metrics}"
    );
    assert!(metrics.contains("tcvnc_console_recorded_bytes_total{instance=\"ins-demo0001\"}"));
    assert!(d.stop().await);
}

/// A console whose first update takes `delay` (a console far away): RFB 3.8, security
/// None, a 64×48 screen, then a red screen in Raw the first time it is asked, in the
/// pixel format it was given (32 bits).
async fn slow_console(delay: Duration) -> std::net::SocketAddr {
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let pf = tcvnc::rfb::messages::PixelFormat::true_colour(
                    32,
                    24,
                    false,
                    [255; 3],
                    [16, 8, 0],
                );
                s.write_all(b"RFB 003.008\n").await?;
                let mut b = [0u8; 12];
                s.read_exact(&mut b).await?;
                s.write_all(&[1, 1]).await?;
                s.read_u8().await?;
                s.write_all(&[0, 0, 0, 0]).await?;
                s.read_u8().await?;
                let mut init = vec![0, 64, 0, 48];
                init.extend_from_slice(&pf.to_bytes());
                init.extend_from_slice(&[0, 0, 0, 4]);
                init.extend_from_slice(b"slow");
                s.write_all(&init).await?;
                let (mut shifts, mut big, mut sent) = ([16u8, 8, 0], false, false);
                loop {
                    match s.read_u8().await? {
                        0 => {
                            let mut m = [0u8; 19];
                            s.read_exact(&mut m).await?;
                            big = m[5] != 0;
                            shifts = [m[13], m[14], m[15]];
                        }
                        2 => {
                            let mut m = [0u8; 3];
                            s.read_exact(&mut m).await?;
                            let n = u16::from_be_bytes([m[1], m[2]]);
                            let mut skip = vec![0u8; 4 * usize::from(n)];
                            s.read_exact(&mut skip).await?;
                        }
                        3 => {
                            let mut m = [0u8; 9];
                            s.read_exact(&mut m).await?;
                            if !sent {
                                sent = true;
                                tokio::time::sleep(delay).await;
                                let mut u = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 64, 0, 48, 0, 0, 0, 0];
                                let red = 255u32 << shifts[0];
                                let px = if big {
                                    red.to_be_bytes()
                                } else {
                                    red.to_le_bytes()
                                };
                                for _ in 0..64 * 48 {
                                    u.extend_from_slice(&px);
                                }
                                s.write_all(&u).await?;
                            }
                        }
                        4 => {
                            let mut m = [0u8; 7];
                            s.read_exact(&mut m).await?;
                        }
                        5 => {
                            let mut m = [0u8; 5];
                            s.read_exact(&mut m).await?;
                        }
                        6 => {
                            let mut m = [0u8; 7];
                            s.read_exact(&mut m).await?;
                            let n = u32::from_be_bytes([m[3], m[4], m[5], m[6]]);
                            let mut skip = vec![0u8; n as usize];
                            s.read_exact(&mut skip).await?;
                        }
                        _ => return Ok::<(), std::io::Error>(()),
                    }
                }
            });
        }
    });
    addr
}

/// A console whose first update comes 300 ms after the engine connected: the recording
/// opens on that screen (red), not on the engine's empty one.
#[tokio::test]
async fn a_recording_opens_on_the_consoles_first_screen() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rec = tmp.path().join("recordings");
    let console = slow_console(Duration::from_millis(300)).await;
    let sim = sim_with(tcvnc::sim::SimOptions {
        backend: Some(console.to_string()),
        ..Default::default()
    })
    .await;
    let text = format!(
        "{}\n[recording]\ndir = \"{}\"\n",
        config_text(&sim, &console_opts("linger = \"0s\"")),
        rec.display()
    );
    let mut d = TestDaemon::from_text(&text).await;
    let mut v = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    v.request(false).await;
    within(v.next_update()).await.expect("first update");
    assert_eq!(v.rgb(5, 5), 0xff0000, "the viewer's first screen");
    drop(v);
    ended_sidecar(&rec).await;
    let (all, _) = frames(&recordings_in(&rec)[0]);
    let first = play(&all[..5]);
    let red = first.v.value_of_rgb(255, 0, 0);
    assert_eq!(
        first.v.screen[5 * 64 + 5] & first.v.used_mask(),
        red & first.v.used_mask(),
        "the recording's first update shows the console's first screen"
    );
    assert!(d.stop().await);
}

#[tokio::test]
async fn viewer_input_is_recorded_only_when_asked() {
    let tmp = tempfile::tempdir().expect("tmp");
    let sim = sim().await;
    let text = format!(
        "{}\n[recording]\ndir = \"{}\"\ninput = true\n",
        config_text(&sim, &console_opts("linger = \"0s\"")),
        tmp.path().display()
    );
    let mut d = TestDaemon::from_text(&text).await;
    let mut v = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    v.request(false).await;
    within(v.next_update()).await.expect("update");
    v.send(&key(true, 0x62)).await;
    v.send(&key(false, 0x62)).await;
    within(sim.state.wait_inputs(INSTANCE, 2)).await;
    drop(v);
    let side = ended_sidecar(tmp.path()).await;
    assert!(side.input_recorded);
    let (all, _) = frames(&tmp.path().join(&side.file));
    let client: Vec<u8> = all
        .iter()
        .filter(|f| f.from == From::Client)
        .flat_map(|f| f.data.clone())
        .collect();
    let mut want = key(true, 0x62);
    want.extend(key(false, 0x62));
    assert!(
        client.windows(want.len()).any(|w| w == want),
        "the key events in the client frames: {client:?}"
    );
    assert!(d.stop().await);
}

/// A recording that cannot start (its directory went away) is logged and counted; the
/// viewers are served as ever.
#[tokio::test]
async fn a_recording_that_cannot_be_written_never_stops_the_session() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rec = tmp.path().join("gone");
    let sim = sim().await;
    let text = format!(
        "{}\n[recording]\ndir = \"{}\"\n",
        config_text(&sim, &console_opts("")),
        rec.display()
    );
    let mut d = TestDaemon::from_text(&text).await;
    std::fs::remove_dir(&rec).expect("the daemon made it; now it is gone");
    let mut v = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    for _ in 0..3 {
        v.request(false).await;
        within(v.next_update()).await.expect("served");
    }
    v.shows_pattern().expect("the console");
    within(async {
        while !d.app.metrics.encode().contains(
            "tcvnc_console_recordings_stopped_total{instance=\"ins-demo0001\",cause=\"open_error\"} 1",
        ) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    v.request(true).await;
    within(v.next_update()).await.expect("still served");
    drop(v);
    assert!(d.stop().await);
}

/// A recording written by hand: a red screen at 0 s, green at 60 s, then at 120 s a
/// resize to 320×240 and blue; each update Raw, the name "handmade".
fn handmade(path: &std::path::Path) {
    handmade_at(path, 10);
}

/// [`handmade`] with its first screen (red) at `first_ms`.
fn handmade_at(path: &std::path::Path, first_ms: u64) {
    let mut out = format::HEADER.as_bytes().to_vec();
    for step in tcvnc::record::preamble(64, 48, "handmade") {
        format::line(From::Server, 0, &step, &mut out);
    }
    let raw = |w: u16, h: u16, rgb: [u8; 3], resize: bool| {
        let mut m = vec![0, 0, 0, if resize { 2 } else { 1 }];
        if resize {
            m.extend_from_slice(&[0, 0, 0, 0]);
            m.extend_from_slice(&w.to_be_bytes());
            m.extend_from_slice(&h.to_be_bytes());
            m.extend_from_slice(&(-223i32).to_be_bytes());
        }
        m.extend_from_slice(&[0, 0, 0, 0]);
        m.extend_from_slice(&w.to_be_bytes());
        m.extend_from_slice(&h.to_be_bytes());
        m.extend_from_slice(&0i32.to_be_bytes());
        for _ in 0..u32::from(w) * u32::from(h) {
            // noVNC's format: red in the lowest byte.
            m.extend_from_slice(&[rgb[0], rgb[1], rgb[2], 0]);
        }
        m
    };
    format::line(
        From::Server,
        first_ms,
        &raw(64, 48, [255, 0, 0], false),
        &mut out,
    );
    format::line(
        From::Server,
        60_000,
        &raw(64, 48, [0, 255, 0], false),
        &mut out,
    );
    format::line(
        From::Server,
        120_000,
        &raw(320, 240, [0, 0, 255], true),
        &mut out,
    );
    out.extend_from_slice(format::FOOTER.as_bytes());
    std::fs::write(path, out).expect("write");
}

/// `tcvnc export FILE -o OUT ARGS…`.
fn export(file: &std::path::Path, out: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
        .arg("export")
        .arg(file)
        .arg("-o")
        .arg(out)
        .args(args)
        .output()
        .expect("run")
}

/// [`export`], which must succeed.
fn export_ok(file: &std::path::Path, out: &std::path::Path, args: &[&str]) {
    let run = export(file, out, args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[tokio::test]
async fn export_gives_the_screen_at_each_instant() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("handmade.js");
    handmade(&file);
    let out = tmp.path().join("frames");
    export_ok(&file, &out, &["--interval", "30s"]);
    let mut pngs: Vec<_> = std::fs::read_dir(&out)
        .expect("dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    pngs.sort();
    let names: Vec<String> = pngs
        .iter()
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        [
            "frame-000001-000m00.000s.png",
            "frame-000002-000m30.000s.png",
            "frame-000003-001m00.000s.png",
            "frame-000004-001m30.000s.png",
            "frame-000005-002m00.000s.png",
        ]
    );
    let colour = |p: &std::path::Path| {
        let mut d = zune_png::PngDecoder::new(std::fs::read(p).expect("read"));
        let px = d.decode_raw().expect("PNG");
        let (w, h) = d.get_dimensions().expect("dims");
        assert!(px.chunks_exact(3).all(|c| c == &px[..3]), "one colour");
        (w, h, [px[0], px[1], px[2]])
    };
    // At 0 s the first update (at 10 ms) has not come: the screen is still black.
    assert_eq!(colour(&pngs[0]), (64, 48, [0, 0, 0]));
    assert_eq!(colour(&pngs[1]), (64, 48, [255, 0, 0]));
    assert_eq!(
        colour(&pngs[2]),
        (64, 48, [0, 255, 0]),
        "green came at 60 s"
    );
    assert_eq!(colour(&pngs[3]), (64, 48, [0, 255, 0]));
    assert_eq!(colour(&pngs[4]), (320, 240, [0, 0, 255]));
    // Not a recording: a usage error naming the file.
    let bad = tmp.path().join("bad.js");
    std::fs::write(&bad, "hello\n").expect("write");
    let run = export(&bad, &out, &[]);
    assert_eq!(run.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&run.stderr).contains("bad.js"));
}

/// With ffmpeg (installed by `.ci/run`; without `TCVNC_E2E=1` a machine lacking it skips
/// this): a video of the recording, 10 frames a second at its first size, whose frames
/// are the screen at their instants.
#[test]
fn export_makes_a_video_with_ffmpeg() {
    let have = std::process::Command::new("ffprobe")
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have {
        assert!(
            std::env::var("TCVNC_E2E").is_err(),
            "TCVNC_E2E=1 needs ffmpeg and ffprobe (Debian: ffmpeg)"
        );
        eprintln!("SKIPPED export_makes_a_video_with_ffmpeg: no ffmpeg");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("handmade.js");
    handmade(&file);
    let video = tmp.path().join("out.mkv");
    export_ok(&file, &video, &["--fps", "1"]);
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args([
            "-show_entries",
            "stream=width,height,nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&video)
        .output()
        .expect("ffprobe");
    let out = String::from_utf8_lossy(&probe.stdout).trim().to_owned();
    // 0 s to 120 s at one frame a second, and the last screen.
    assert_eq!(
        out,
        "64,48,121",
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    // Frame 90 (90 s) is green; the last is the 320×240 blue screen cropped to 64×48.
    let frame = |n: u32| {
        let o = std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-i"])
            .arg(&video)
            .args([
                "-vf",
                &format!("select=eq(n\\,{n})"),
                "-frames:v",
                "1",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "rgb24",
                "-",
            ])
            .output()
            .expect("ffmpeg");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let px = o.stdout;
        assert_eq!(px.len(), 64 * 48 * 3);
        let mid = (24 * 64 + 32) * 3;
        [px[mid], px[mid + 1], px[mid + 2]]
    };
    let near = |got: [u8; 3], want: [u8; 3]| got.iter().zip(want).all(|(g, w)| g.abs_diff(w) < 24);
    assert!(near(frame(30), [255, 0, 0]), "{:?}", frame(30));
    assert!(near(frame(90), [0, 255, 0]), "{:?}", frame(90));
    assert!(near(frame(120), [0, 0, 255]), "{:?}", frame(120));
}

/// Starts `tcvnc play FILE ARGS…` on free loopback ports; returns the process and its TCP
/// listener's address (from the "native viewer" line it prints).
async fn start_play(
    file: &std::path::Path,
    args: &[&str],
) -> (tokio::process::Child, std::net::SocketAddr) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
        .arg("play")
        .arg(file)
        .args(["--tcp", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let tcp = within(async {
        loop {
            let l = lines.next_line().await.expect("read").expect("a line");
            if let Some(a) = l.trim().strip_prefix("native viewer:  vncviewer ") {
                return a
                    .replace("::", ":")
                    .parse::<std::net::SocketAddr>()
                    .expect("address");
            }
        }
    })
    .await;
    // The rest of what it prints is read too: a closed pipe would end it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, tcp)
}

/// Played from its start, a recording's first screen (red, 500 ms in, as in
/// websockify's recordings, which start before the handshake) is the first a viewer is
/// sent, not the empty screen before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_from_the_start_serves_the_first_screen_not_an_empty_one() {
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("handmade.js");
    handmade_at(&file, 500);
    let (mut child, tcp) = start_play(&file, &[]).await;
    let mut v = within(Viewer::connect(tcp, &[RAW, DESKTOP_SIZE, DESKTOP_NAME])).await;
    v.request(false).await;
    within(v.next_update()).await.expect("update");
    assert_eq!(v.rgb(5, 5), 0xff0000, "the first screen");
    let _ = child.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_serves_a_recording_from_an_instant_at_a_speed() {
    use tokio::io::AsyncBufReadExt;
    let tmp = tempfile::tempdir().expect("tmp");
    let file = tmp.path().join("handmade.js");
    handmade(&file);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
        .args([
            "play",
            &file.display().to_string(),
            "--tcp",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--from",
            "90s",
            "--speed",
            "100",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let (tcp, page) = within(async {
        let mut tcp = None;
        loop {
            let l = lines.next_line().await.expect("read").expect("a line");
            if let Some(a) = l.trim().strip_prefix("native viewer:  vncviewer ") {
                tcp = Some(
                    a.replace("::", ":")
                        .parse::<std::net::SocketAddr>()
                        .expect("address"),
                );
            }
            if let Some(u) = l.trim().strip_prefix("browser:        ") {
                return (tcp.expect("the TCP line first"), u.to_owned());
            }
        }
    })
    .await;
    // No sidecar, no instance id in the name: a stand-in id.
    assert!(page.ends_with("/vnc.html?path=vnc/ins-playback"), "{page}");
    let base = page.split("/vnc.html").next().expect("base").to_owned();
    let mut v = within(Viewer::connect(tcp, &[RAW, DESKTOP_SIZE, DESKTOP_NAME])).await;
    assert_eq!(v.name, "handmade");
    assert_eq!((v.v.width, v.v.height), (64, 48));
    v.request(false).await;
    within(v.next_update()).await.expect("update");
    // At 90 s the screen is green.
    assert_eq!(v.rgb(5, 5), 0x00ff00);
    // 30 s of recording at 100x: the resize and blue come 0.3 s later.
    within(async {
        while v.v.width != 320 {
            v.request(true).await;
            v.next_update().await.expect("update");
        }
    })
    .await;
    v.request(false).await;
    within(v.next_update()).await.expect("update");
    assert_eq!(v.rgb(300, 200), 0x0000ff);
    within(async {
        while !v.names.iter().any(|n| n.ends_with("(end of recording)")) {
            v.request(true).await;
            v.next_update().await.expect("update");
        }
    })
    .await;
    // Read-only: typing is refused; a screenshot is the recording's screen now.
    let client = http_client();
    let r = client
        .post(format!("{base}/vnc/ins-playback/type"))
        .body("x")
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 409);
    let r = client
        .get(format!("{base}/vnc/ins-playback/screenshot.png"))
        .send()
        .await
        .expect("GET");
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-tcvnc-url-spent").is_none());
    let png = r.bytes().await.expect("body");
    let mut dec = zune_png::PngDecoder::new(&png[..]);
    let px = dec.decode_raw().expect("PNG");
    assert_eq!(dec.get_dimensions(), Some((320, 240)));
    assert_eq!(&px[..3], &[0, 0, 255]);
    // A key from the viewer goes nowhere, and the viewer stays.
    v.send(&key(true, 0x61)).await;
    v.s.flush().await.expect("flush");
    v.request(false).await;
    within(v.next_update()).await.expect("still served");
    let _ = child.kill().await;
}

/// A console whose screen never changes (64×64 grey): it answers full update requests and
/// tells `requests` of each incremental one (the engine's keepalive while it is still).
async fn still_console(requests: tokio::sync::mpsc::UnboundedSender<()>) -> std::net::SocketAddr {
    use tcvnc::rfb::messages::{read_client_message, ClientMessage, PixelFormat};
    use tokio::io::AsyncReadExt;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let requests = requests.clone();
            tokio::spawn(async move {
                let mut v = [0u8; 12];
                s.write_all(b"RFB 003.008\n").await?;
                s.read_exact(&mut v).await?;
                s.write_all(&[1, 1]).await?;
                s.read_exact(&mut [0u8; 1]).await?;
                s.write_all(&[0, 0, 0, 0]).await?;
                s.read_exact(&mut [0u8; 1]).await?;
                let pf = PixelFormat::true_colour(32, 24, false, [255; 3], [16, 8, 0]);
                let mut init = vec![0, 64, 0, 64];
                init.extend_from_slice(&pf.to_bytes());
                init.extend_from_slice(&[0, 0, 0, 5]);
                init.extend_from_slice(b"still");
                s.write_all(&init).await?;
                loop {
                    match read_client_message(&mut s).await {
                        Ok(ClientMessage::FramebufferUpdateRequest {
                            incremental: false, ..
                        }) => {
                            let mut u = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 64, 0, 64, 0, 0, 0, 0];
                            u.extend_from_slice(&[0x40; 64 * 64 * 4]);
                            s.write_all(&u).await?;
                        }
                        Ok(ClientMessage::FramebufferUpdateRequest { .. }) => {
                            let _ = requests.send(());
                        }
                        Ok(_) => {}
                        Err(_) => return Ok::<(), std::io::Error>(()),
                    }
                }
            });
        }
    });
    addr
}

/// A recording lasts as long as its session, not until its last change: the console's
/// screen never changes after its first update; the viewer stays while the engine sends
/// six keepalive requests 200 ms apart (over a second of a still screen), then leaves.
/// The file's last frame is an empty FramebufferUpdate at the session's end (within
/// 0.5 s of the sidecar's `end`), over a second after the last change, so a player (a
/// video, export's frames, noVNC in real time) shows the still screen for that second.
/// (Before, the file ended at the last change and the still end of a session was lost.)
#[tokio::test]
async fn a_recording_lasts_as_long_as_its_session() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let backend = still_console(tx).await;
    let sim = sim_with(tcvnc::sim::SimOptions {
        backend: Some(backend.to_string()),
        ..tcvnc::sim::SimOptions::default()
    })
    .await;
    let tmp = tempfile::tempdir().expect("tmp");
    let mut o = console_opts("linger = \"0s\"");
    o.upstream = "keepalive = \"200ms\"";
    let text = format!(
        "{}\n[recording]\ndir = \"{}\"\n",
        config_text(&sim, &o),
        tmp.path().display()
    );
    let mut d = TestDaemon::from_text(&text).await;
    let mut v = within(Viewer::connect(d.tcp(INSTANCE), &[RAW])).await;
    v.request(false).await;
    within(v.next_update()).await.expect("update");
    for _ in 0..6 {
        within(rx.recv()).await.expect("a keepalive request");
    }
    drop(v);
    let side = ended_sidecar(tmp.path()).await;
    let (all, finished) = frames(&tmp.path().join(&side.file));
    assert!(finished);
    let server: Vec<&format::Frame> = all.iter().filter(|f| f.from == From::Server).collect();
    let (last, before) = server.split_last().expect("frames");
    assert_eq!(last.data, [0, 0, 0, 0], "an empty update ends it");
    let change = before.last().expect("the screen's update");
    assert!(
        change.data.len() > 4,
        "the screen: {} bytes",
        change.data.len()
    );
    assert!(
        last.ms >= change.ms + 1000,
        "the end at {} ms, the last change at {} ms",
        last.ms,
        change.ms
    );
    let t = |s: &str| humantime::parse_rfc3339(s).expect("RFC 3339");
    let length = t(side.end.as_deref().expect("end"))
        .duration_since(t(&side.start))
        .expect("end after start")
        .as_millis() as u64;
    assert!(
        last.ms <= length + 5 && length - last.ms.min(length) < 500,
        "the end at {} ms, the session {length} ms long",
        last.ms
    );
    let p = play(&all);
    let px = p.v.screen[10 * 64 + 10] & p.v.used_mask();
    assert_eq!(px, p.v.value_of_rgb(0x40, 0x40, 0x40), "the still screen");
    assert!(d.stop().await);
}

/// The screen a viewer of `tcvnc play FILE --from MS` is sent first, as 0xRRGGBB (played
/// at 1/10,000 speed: the next recorded update, at least 1 ms of recording after MS when
/// none is at MS, is at least 10 s away, however slow the machine).
async fn played_at(file: &std::path::Path, from_ms: u64) -> Vec<u32> {
    let from = format!("{from_ms}ms");
    let (mut child, tcp) = start_play(file, &["--from", &from, "--speed", "0.0001"]).await;
    let mut v = within(Viewer::connect(tcp, &[RAW, DESKTOP_SIZE, DESKTOP_NAME])).await;
    v.request(false).await;
    within(v.next_update()).await.expect("update");
    let _ = child.kill().await;
    (0..v.v.height)
        .flat_map(|y| (0..v.v.width).map(move |x| (x, y)))
        .map(|(x, y)| v.rgb(x, y))
        .collect()
}

/// A reference viewer's screen (the recording's format: red in the lowest byte) as
/// 0xRRGGBB.
fn rgb_of(p: &Played) -> Vec<u32> {
    p.v.screen
        .iter()
        .map(|&px| (px & 0xff) << 16 | (px & 0xff00) | (px >> 16 & 0xff))
        .collect()
}

/// With `keyframe_interval`, a recording holds a keyframe at least that far apart while
/// the screen changes, each listed in the sidecar where its line starts; the recording's
/// Tight stream is never reset (one stream, cut by a full flush at each keyframe); a
/// keyframe decodes with a fresh decoder (the independent reference, which knows nothing
/// before it but the handshake and joins the zlib stream there) to what decoding from the
/// start gives; `tcvnc play --from`
/// starts at the last keyframe before the instant (a part of the file before it that no
/// decoder can read is never read), and falls back to decoding from the start when the
/// sidecar's index does not match the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_from_seeks_to_the_last_keyframe() {
    let tmp = tempfile::tempdir().expect("tmp");
    let rec = tmp.path().join("recordings");
    let sim = sim().await;
    let o = console_opts("linger = \"0s\"");
    let text = format!(
        "{}\n[recording]\ndir = \"{}\"\nkeyframe_interval = \"1s\"\n",
        config_text(&sim, &o),
        rec.display()
    );
    let mut d = TestDaemon::from_text(&text).await;
    let mut v = within(Viewer::connect(d.tcp(INSTANCE), &[ZRLE, RAW])).await;
    v.request(false).await;
    // The square moves while the viewer asks: updates until the sidecar lists three
    // keyframes.
    within(async {
        loop {
            v.request(true).await;
            v.next_update().await.expect("update");
            let listed = tcvnc::record::sidecar::list(&rec)
                .expect("list")
                .first()
                .map_or(0, |s| s.keyframes.len());
            if listed >= 3 {
                break;
            }
        }
    })
    .await;
    // The API lists recordings, not their keyframes.
    let listed: serde_json::Value = http_client()
        .get(format!("http://{}/api/recordings", d.http.expect("http")))
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON");
    assert_eq!(listed["recordings"][0]["instance"], INSTANCE, "{listed}");
    assert!(
        listed["recordings"][0].get("keyframes").is_none(),
        "{listed}"
    );
    drop(v);
    let side = ended_sidecar(&rec).await;
    assert!(d.stop().await);
    let path = rec.join(&side.file);
    let raw = std::fs::read(&path).expect("read");
    let keys = &side.keyframes;
    assert!(keys.len() >= 3, "{keys:?}");
    for w in keys.windows(2) {
        assert!(
            w[1].ms >= w[0].ms + 1000,
            "at least the interval apart: {keys:?}"
        );
        assert!(w[1].offset > w[0].offset, "{keys:?}");
    }
    for k in keys {
        assert_eq!((k.width, k.height), (640, 480));
        let at = usize::try_from(k.offset).expect("offset");
        let head = format!("'{{{}{{", k.ms);
        assert!(
            raw[at..].starts_with(head.as_bytes()) && raw[at - 1] == b'\n',
            "a line starts at {}: {:?}",
            k.offset,
            String::from_utf8_lossy(&raw[at..at + 20])
        );
    }

    // The instant: between the second and third keyframes.
    let (k1, k2) = (keys[1], keys[2]);
    let (all, _) = frames(&path);
    // Not the time of a frame: one there would be due as playback starts.
    let mut from_ms = (k1.ms + k2.ms) / 2;
    while all.iter().any(|f| f.ms == from_ms) {
        from_ms += 1;
    }
    let before: Vec<format::Frame> = all.iter().filter(|f| f.ms < from_ms).cloned().collect();
    let whole_played = play(&before);
    // One Tight stream with its history, never reset: a keyframe cuts it (a full flush)
    // instead, which noVNC reads on through.
    assert_eq!(
        whole_played.v.tight_resets, 0,
        "the recording's Tight stream was reset"
    );
    let whole = rgb_of(&whole_played);
    // From the keyframe alone: the handshake, then the frames from its line on.
    let mut r = Reader::new(std::io::BufReader::new(
        std::fs::File::open(&path).expect("open"),
    ))
    .expect("reader");
    let mut from_key: Vec<format::Frame> = (0..4)
        .map(|_| r.next_frame().expect("frame").expect("handshake"))
        .collect();
    r.seek(k1.offset).expect("seek");
    while let Some(f) = r.next_frame().expect("frame") {
        if f.ms >= from_ms {
            break;
        }
        from_key.push(f);
    }
    assert_eq!(from_key[4].ms, k1.ms);
    let keyed = play_from(&from_key, true);
    assert!(keyed.v.seen.contains(&7), "Tight: {:?}", keyed.v.seen);
    assert!(
        rgb_of(&keyed) == whole,
        "the keyframe decodes alone to the screen decoded from the start"
    );

    // A copy whose frames before the keyframe no decoder can read (same length: the
    // offsets hold): played from the instant, it shows that screen.
    let broken = tmp.path().join("broken.js");
    let mut bad = raw.clone();
    let first_update = usize::try_from(keys[0].offset).expect("offset");
    let second = first_update
        + bad[first_update..]
            .iter()
            .position(|&b| b == b'\n')
            .expect("a line")
        + 1;
    // The second update's line: its base64 turned to '!' (not base64).
    let body = second
        + bad[second + 2..]
            .iter()
            .position(|&b| b == b'{')
            .expect("ts")
        + 3;
    let end = second + bad[second..].iter().position(|&b| b == b'\n').expect("end") - 2;
    assert!(body < end && end < usize::try_from(k1.offset).expect("offset"));
    bad[body..end].fill(b'!');
    std::fs::write(&broken, &bad).expect("write");
    let mut side_copy = side.clone();
    side_copy.file = "broken.js".into();
    tcvnc::record::sidecar::write(tmp.path(), &side_copy).expect("sidecar");
    assert!(
        played_at(&broken, from_ms).await == whole,
        "played from the keyframe: the screen at the instant"
    );
    let e = export(&broken, &tmp.path().join("frames"), &["--interval", "1s"]);
    assert!(
        !e.status.success(),
        "the broken part is read from the start"
    );

    // An index that does not match the file: decoded from the start, the same screen.
    let moved = tmp.path().join("moved.js");
    std::fs::write(&moved, &raw).expect("write");
    let mut side_moved = side.clone();
    side_moved.file = "moved.js".into();
    for k in &mut side_moved.keyframes {
        k.offset += 1;
    }
    tcvnc::record::sidecar::write(tmp.path(), &side_moved).expect("sidecar");
    assert!(
        played_at(&moved, from_ms).await == whole,
        "decoded from the start: the screen at the instant"
    );
}

/// A keyframe index that points at an update where the recording's zlib stream was not
/// cut, an update with nothing compressed (a solid screen: Tight fills), so the keyframe
/// itself reads and the mismatch shows only at a later update's compressed chunk: `tcvnc
/// play --from` then decodes from the start and shows the screen at the instant, rather
/// than failing or drawing a wrong one. The file is written here with tcvnc's encoder,
/// its stream never cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_from_falls_back_when_a_keyframe_is_not_at_a_cut() {
    use tcvnc::console::encode::{update_header, Encoder};
    use tcvnc::console::fb::{Framebuffer, Rect};
    use tcvnc::record::sidecar::{Keyframe, Sidecar};
    let tmp = tempfile::tempdir().expect("tmp");
    let (w, h) = (64u16, 32u16);
    let busy = rfbref::desktop(w, h);
    let mut solid = Framebuffer::new(w, h);
    solid.fill(solid.bounds(), 0x0040_80c0).expect("fill");
    let mut later = busy.clone();
    later
        .fill(Rect::new(4, 4, 20, 10), 0x00ff_0000)
        .expect("fill");
    let mut text = format::HEADER.as_bytes().to_vec();
    for step in tcvnc::record::preamble(w, h, "uncut") {
        format::line(From::Server, 0, &step, &mut text);
    }
    let mut enc = Encoder::new(tcvnc::record::FORMAT).expect("format");
    enc.set_encodings(tcvnc::record::ENCODINGS);
    let mut offsets = Vec::new();
    for (ms, fb) in [(100, &busy), (200, &solid), (300, &later)] {
        offsets.push(text.len() as u64);
        let mut msg = Vec::new();
        update_header(0, &mut msg);
        let n = enc.encode(fb, fb.bounds(), &mut msg).expect("encode");
        msg[2..4].copy_from_slice(&n.to_be_bytes());
        format::line(From::Server, ms, &msg, &mut text);
    }
    text.extend_from_slice(format::FOOTER.as_bytes());
    let path = tmp.path().join("uncut.js");
    std::fs::write(&path, &text).expect("write");
    let mut side = Sidecar::new(
        &path,
        INSTANCE,
        "ap-guangzhou",
        std::time::SystemTime::now(),
        w,
        h,
    );
    side.urls_spent = 1;
    side.bytes = text.len() as u64;
    side.keyframes = vec![Keyframe {
        ms: 200,
        offset: offsets[1],
        width: w,
        height: h,
    }];
    tcvnc::record::sidecar::write(tmp.path(), &side).expect("sidecar");
    let want: Vec<u32> = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| later.get(x, y).expect("in"))
        .collect();
    let solid_px = vec![0x0040_80c0; want.len()];
    let shown = played_at(&path, 350).await;
    assert!(shown != solid_px, "not the keyframe's screen alone");
    assert!(
        shown == want,
        "the screen at the instant, decoded from the start"
    );
}
