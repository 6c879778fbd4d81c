//! `tcvnc screenshot`, `type` and `keys` with `--via`: the requests the binary sends to a
//! daemon (a fake one here, on port 0, that records them and gives canned answers), the
//! files it writes, its notes, messages and exit codes; text and key names refused before
//! anything is sent.

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, Response};
use parking_lot::Mutex;
use tokio::net::TcpListener;

/// Every test gets this long before it is failed.
const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A request the fake daemon received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    authorization: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// What the fake daemon answers to every request.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
    body: Vec<u8>,
}

impl Answer {
    fn new(status: u16, body: impl Into<Vec<u8>>) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Answer {
        self.headers.push((name, value));
        self
    }
}

/// A daemon on port 0 that records each request and gives `answer`.
struct FakeDaemon {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeDaemon {
    async fn start(answer: Answer) -> FakeDaemon {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let record = record.clone();
                            let answer = answer.clone();
                            async move {
                                let header = |n: &str| {
                                    req.headers()
                                        .get(n)
                                        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                                };
                                let (method, path) =
                                    (req.method().to_string(), req.uri().to_string());
                                let (authorization, content_type) =
                                    (header("authorization"), header("content-type"));
                                let body = req.into_body().collect().await?.to_bytes().to_vec();
                                record.lock().push(Seen {
                                    method,
                                    path,
                                    authorization,
                                    content_type,
                                    body,
                                });
                                let mut resp = Response::builder().status(answer.status);
                                for (n, v) in &answer.headers {
                                    resp = resp.header(*n, *v);
                                }
                                Ok::<_, hyper::Error>(
                                    resp.body(Full::new(Bytes::from(answer.body)))
                                        .expect("response"),
                                )
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeDaemon { url, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a run of the binary left.
struct Run {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

/// Runs `tcvnc ARGS` in `dir` with a clean environment plus `env`.
async fn tcvnc(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tcvnc"))
        .args(args)
        .current_dir(dir)
        .env_clear()
        .env("HOME", dir)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("runs");
    Run {
        code: out.status.code(),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A small screen as a PNG, as the daemon would send it.
fn screen_png() -> Vec<u8> {
    let mut fb = tcvnc::console::fb::Framebuffer::new(64, 48);
    fb.fill(tcvnc::console::fb::Rect::new(8, 8, 20, 10), 0x00ff_8000)
        .expect("in the screen");
    tcvnc::console::png::encode(&fb).expect("encodes")
}

async fn within<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("in time");
}

/// A screenshot is a GET of /vnc/<instance>/screenshot.png with the token from
/// --token-file, saved whole to -o FILE, to INSTANCE.png by default and to stdout with
/// `-o -`; a spent URL is noted on stderr, and only then.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screenshot_via_a_daemon() {
    within(async {
        let png = screen_png();
        let spent = FakeDaemon::start(
            Answer::new(200, png.clone())
                .header("content-type", "image/png")
                .header("x-tcvnc-url-spent", "1"),
        )
        .await;
        let dir = tempfile::tempdir().expect("tmp");
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token\n").expect("write");
        let token = token.to_str().expect("utf-8");

        let run = tcvnc(
            dir.path(),
            &[
                "screenshot",
                "ins-abc12345",
                "--via",
                &spent.url,
                "--token-file",
                token,
                "-o",
                "shot.png",
            ],
            &[("TCVNC_TOKEN", "not-this-one")],
        )
        .await;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(
            std::fs::read(dir.path().join("shot.png")).expect("saved"),
            png
        );
        assert!(
            run.stderr.contains("spent one console URL"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("saved shot.png (64x48"),
            "{}",
            run.stderr
        );
        assert!(!run.stderr.contains("s3cret"), "{}", run.stderr);
        let seen = spent.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "GET");
        assert_eq!(seen[0].path, "/vnc/ins-abc12345/screenshot.png");
        assert_eq!(
            seen[0].authorization.as_deref(),
            Some("Bearer s3cret-token")
        );
        assert!(seen[0].body.is_empty());

        // No spent URL: no note. The default file name; the token from the environment.
        let live =
            FakeDaemon::start(Answer::new(200, png.clone()).header("content-type", "image/png"))
                .await;
        let run = tcvnc(
            dir.path(),
            &["screenshot", "web-7", "--via", &format!("{}/", live.url)],
            &[("TCVNC_TOKEN", "env-token")],
        )
        .await;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert!(!run.stderr.contains("URL"), "{}", run.stderr);
        assert_eq!(
            std::fs::read(dir.path().join("web-7.png")).expect("saved"),
            png
        );
        let seen = live.seen();
        assert_eq!(seen[0].path, "/vnc/web-7/screenshot.png");
        assert_eq!(seen[0].authorization.as_deref(), Some("Bearer env-token"));

        // -o - writes to stdout (a pipe here); nothing else is written.
        let run = tcvnc(
            dir.path(),
            &["screenshot", "ins-abc12345", "--via", &live.url, "-o", "-"],
            &[],
        )
        .await;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert_eq!(run.stdout, png);
        assert_eq!(live.seen()[1].authorization, None, "no token, none sent");
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["shot.png", "token", "web-7.png"]);
    })
    .await;
}

/// An answer that is not a PNG is not saved (exit 1), and no partial file is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_png_answer_is_not_saved() {
    within(async {
        let daemon = FakeDaemon::start(Answer::new(
            200,
            "<!doctype html><html><body>a web page, not a screenshot</body></html>",
        ))
        .await;
        let dir = tempfile::tempdir().expect("tmp");
        let run = tcvnc(
            dir.path(),
            &["screenshot", "ins-abc12345", "--via", &daemon.url],
            &[],
        )
        .await;
        assert_eq!(run.code, Some(1), "{}", run.stderr);
        assert!(run.stderr.contains("not a PNG"), "{}", run.stderr);
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    })
    .await;
}

/// `type` POSTs the text as the body; `keys` POSTs the combinations one a line; both with
/// the bearer token and a text/plain body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn type_and_keys_via_a_daemon() {
    within(async {
        let daemon = FakeDaemon::start(Answer::new(204, "")).await;
        let dir = tempfile::tempdir().expect("tmp");
        let env = [("TCVNC_TOKEN", "tok")];
        let run = tcvnc(
            dir.path(),
            &[
                "type",
                "ins-abc12345",
                "--via",
                &daemon.url,
                "Hello, World! ~$ ls -l\n\tdone",
            ],
            &env,
        )
        .await;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert!(run.stdout.is_empty());
        let run = tcvnc(
            dir.path(),
            &[
                "keys",
                "ins-abc12345",
                "ctrl-alt-delete",
                "Alt-F2",
                "enter",
                "--via",
                &daemon.url,
            ],
            &env,
        )
        .await;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let seen = daemon.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].method, "POST");
        assert_eq!(seen[0].path, "/vnc/ins-abc12345/type");
        assert_eq!(seen[0].body, b"Hello, World! ~$ ls -l\n\tdone");
        assert_eq!(
            seen[0].content_type.as_deref(),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(seen[0].authorization.as_deref(), Some("Bearer tok"));
        assert_eq!(seen[1].method, "POST");
        assert_eq!(seen[1].path, "/vnc/ins-abc12345/keys");
        assert_eq!(seen[1].body, b"ctrl-alt-delete\nAlt-F2\nenter");
        assert_eq!(seen[1].authorization.as_deref(), Some("Bearer tok"));
    })
    .await;
}

/// The daemon's refusals: its text shown, 401 and 403 exit 77 (with what to do about the
/// token), 404 and 409 exit 69, 400 exits 64; a spent URL is noted even on a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_show_the_daemon_text_and_exit_codes() {
    within(async {
        let dir = tempfile::tempdir().expect("tmp");
        let cases: [(Answer, &[&str], i32, &[&str]); 6] = [
            (
                Answer::new(
                    401,
                    "authentication required: send Authorization: Bearer <token>\n",
                )
                .header("www-authenticate", "Bearer"),
                &["screenshot", "ins-abc12345"],
                77,
                &[
                    "(401 Unauthorized): authentication required",
                    "--token-file",
                ],
            ),
            (
                Answer::new(403, "this token is view-only"),
                &["type", "ins-abc12345", "x"],
                77,
                &[
                    "(403 Forbidden): this token is view-only",
                    "view_token_file",
                ],
            ),
            (
                Answer::new(404, "no target ins-abc12345 and no instance by that name"),
                &["keys", "ins-abc12345", "enter"],
                69,
                &[
                    "refused to press keys on ins-abc12345 (404 Not Found): no target ins-abc12345",
                    "one of that daemon's targets",
                ],
            ),
            (
                Answer::new(409, "ins-abc12345 is in bridge mode and held by a viewer")
                    .header("x-tcvnc-url-spent", "1"),
                &["screenshot", "ins-abc12345"],
                69,
                &[
                    "(409 Conflict): ins-abc12345 is in bridge mode",
                    "spent one console URL",
                ],
            ),
            (
                Answer::new(503, "waiting for the URL budget").header("retry-after", "14"),
                &["screenshot", "ins-abc12345"],
                69,
                &["(503 Service Unavailable): waiting for the URL budget; retry in 14 s"],
            ),
            (
                Answer::new(400, "bad \u{1b}[31mtext\u{1b}[0m"),
                &["type", "ins-abc12345", "x"],
                64,
                &["(400 Bad Request): bad \\u{1b}[31mtext"],
            ),
        ];
        for (answer, args, code, wants) in cases {
            let daemon = FakeDaemon::start(answer).await;
            let mut argv = args.to_vec();
            argv.extend(["--via", daemon.url.as_str()]);
            let run = tcvnc(dir.path(), &argv, &[]).await;
            assert_eq!(run.code, Some(code), "{argv:?}: {}", run.stderr);
            for want in wants {
                assert!(
                    run.stderr.contains(want),
                    "{argv:?}: {want} in {}",
                    run.stderr
                );
            }
            assert!(!run.stderr.contains('\u{1b}'), "escaped: {:?}", run.stderr);
            assert_eq!(daemon.seen().len(), 1);
        }
        // A token that was sent and refused is named.
        let daemon = FakeDaemon::start(Answer::new(401, "wrong token")).await;
        let run = tcvnc(
            dir.path(),
            &["screenshot", "ins-abc12345", "--via", &daemon.url],
            &[("TCVNC_TOKEN", "nope")],
        )
        .await;
        assert_eq!(run.code, Some(77), "{}", run.stderr);
        assert!(
            run.stderr
                .contains("the token from TCVNC_TOKEN was refused"),
            "{}",
            run.stderr
        );
        assert!(!dir.path().join("ins-abc12345.png").exists());
    })
    .await;
}

/// Untypable text and unknown key names are refused here (exit 64, the same words as
/// the daemon would use) and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_text_and_keys_are_refused_before_sending() {
    within(async {
        let daemon = FakeDaemon::start(Answer::new(204, "")).await;
        let dir = tempfile::tempdir().expect("tmp");
        let run = tcvnc(
            dir.path(),
            &["type", "ins-abc12345", "--via", &daemon.url, "café\u{7}"],
            &[],
        )
        .await;
        assert_eq!(run.code, Some(64), "{}", run.stderr);
        let want = tcvnc::console::keys::type_text("café\u{7}")
            .expect_err("untypable")
            .to_string();
        assert!(run.stderr.contains(&want), "{}", run.stderr);
        assert!(
            run.stderr
                .contains("2 characters cannot be typed into a console: é (U+00E9) at 4, '\\u{7}' (U+0007) at 5"),
            "{}",
            run.stderr
        );

        let run = tcvnc(
            dir.path(),
            &["type", "ins-abc12345", "--via", &daemon.url, ""],
            &[],
        )
        .await;
        assert_eq!(run.code, Some(64), "{}", run.stderr);
        assert!(run.stderr.contains("nothing to type"), "{}", run.stderr);

        let run = tcvnc(
            dir.path(),
            &["keys", "ins-abc12345", "enter", "ctrl-foo", "--via", &daemon.url],
            &[],
        )
        .await;
        assert_eq!(run.code, Some(64), "{}", run.stderr);
        assert!(
            run.stderr.contains("unknown key \"foo\" in \"ctrl-foo\""),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains("pagedown"), "{}", run.stderr);
        assert!(daemon.seen().is_empty(), "nothing sent");
    })
    .await;
}

/// Without --via the commands run one-shot, which needs a region (64 naming it, nothing
/// spent);
/// a daemon that is not listening is exit 69 with what to check; a malformed --via is 64.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_daemon() {
    within(async {
        let dir = tempfile::tempdir().expect("tmp");
        for args in [
            &["screenshot", "ins-abc12345"][..],
            &["type", "ins-abc12345", "x"],
            &["keys", "ins-abc12345", "enter"],
        ] {
            let run = tcvnc(dir.path(), args, &[]).await;
            assert_eq!(run.code, Some(64), "{args:?}: {}", run.stderr);
            assert!(run.stderr.contains("region"), "{}", run.stderr);
        }

        // Bound and not listening: connections are refused, deterministically.
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let url = format!("http://{}", socket.local_addr().expect("addr"));
        let run = tcvnc(
            dir.path(),
            &["keys", "ins-abc12345", "enter", "--via", &url],
            &[],
        )
        .await;
        assert_eq!(run.code, Some(69), "{}", run.stderr);
        assert!(run.stderr.contains("cannot connect"), "{}", run.stderr);
        assert!(run.stderr.contains("tcvnc serve"), "{}", run.stderr);
        drop(socket);

        let run = tcvnc(
            dir.path(),
            &["screenshot", "ins-abc12345", "--via", "127.0.0.1:6080"],
            &[],
        )
        .await;
        assert_eq!(run.code, Some(64), "{}", run.stderr);
        assert!(
            run.stderr.contains("http://127.0.0.1:6080"),
            "{}",
            run.stderr
        );
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    })
    .await;
}
