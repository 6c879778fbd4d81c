//! How `screenshot`, `type` and `keys` reach a console: through a running daemon's HTTP
//! paths (`--via URL`: `GET /vnc/<instance>/screenshot.png`, `POST …/type`, `POST …/keys`),
//! or one-shot (this process mints one URL, connects, acts and leaves). Owns the HTTP
//! client, the bearer token and the daemon's answers turned into messages and exit codes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};

use super::CmdError;
use crate::cli::ViaArgs;
use crate::cloud::credentials::Env;

/// The environment variable holding the daemon's bearer token.
pub(super) const TOKEN_ENV: &str = "TCVNC_TOKEN";
/// Set to `1` by a daemon that had no live console, connected for the request and so
/// spent one console URL.
const URL_SPENT: &str = "x-tcvnc-url-spent";
/// How long the daemon may take to accept the connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a request may take: a daemon without a live console waits for the URL budget
/// (up to its `max_wait`), connects and waits for a full screen before answering.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// The most of a refusal's text shown.
const MAX_ERROR_BODY: usize = 4096;

/// How the console is reached.
pub(super) enum Via {
    /// A running daemon (`--via`).
    Daemon(Daemon),
    /// One-shot: this process mints one URL and connects itself.
    OneShot(OneShot),
}

impl Via {
    /// From the command line: `--via` names a daemon, else one-shot.
    ///
    /// # Errors
    /// A malformed `--via` URL, an unreadable or empty token file (64).
    pub(super) fn from_args(args: ViaArgs, env: &Env) -> Result<Via, CmdError> {
        match args.via {
            Some(url) => Daemon::new(&url, args.token_file.as_deref(), env).map(Via::Daemon),
            None => Ok(Via::OneShot(OneShot {
                config: args.config,
                region: args.region,
            })),
        }
    }
}

/// What one-shot mode needs: where the config is and the region flag.
pub(super) struct OneShot {
    /// `-c FILE`.
    pub(super) config: Option<PathBuf>,
    /// `--region`.
    pub(super) region: Option<String>,
}

/// One-shot mode: this process mints one URL (through the instance's budget and the
/// config's credentials), connects a console engine, acts once the first full update has
/// arrived, and leaves. Says on stderr that a URL was spent. Returns the PNG for a
/// screenshot, nothing otherwise.
///
/// # Errors
/// Config (64), the cloud or the console refusing (69), anything else (1).
pub(super) async fn one_shot(
    instance: &str,
    how: &OneShot,
    action: &Action<'_>,
) -> Result<Vec<u8>, CmdError> {
    use crate::engine::ViewerRole;
    let env = Env::from_process();
    let mut cfg = crate::config::Config::locate(how.config.as_deref())?
        .unwrap_or_else(crate::config::Config::defaults);
    let target = if super::is_name(&cfg, instance) {
        let client = crate::app::cloud_client(&cfg, None, &env, None).await?;
        super::target_by_name(&cfg, instance, how.region.clone(), &env, &client).await?
    } else {
        super::target_by_id(&cfg, instance, how.region.clone(), &env)?
    };
    if target.transparent() {
        return Err(CmdError::Usage(format!(
            "{} is a transparent target: tcvnc does not speak RFB to it",
            target.instance
        )));
    }
    // One instance, no listener: the engine leaves as soon as the request is done.
    cfg.targets = vec![crate::config::Target {
        listen: None,
        ..target.clone()
    }];
    cfg.discovery = None;
    cfg.http = None;
    let app = crate::app::build(cfg.clone(), &env).await?;
    let peer = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let result = async {
        let b = crate::session::borrow(&app, &cfg, &target, ViewerRole::Control, peer)
            .await
            .map_err(|f| CmdError::Refused(format!("cannot {} {}: {f}", action.doing(), target.instance)))?;
        eprintln!(
            "tcvnc {}: one console URL of {} was spent (one-shot; --via a running daemon uses its live console)",
            action.command(),
            target.instance
        );
        let engine = b.membership.engine().clone();
        let out = match action {
            Action::Screenshot => {
                let fb = engine.screen.read().fb.clone();
                crate::console::png::encode(&fb)
                    .map_err(|e| CmdError::Refused(format!("no screen to show: {e}")))?
            }
            Action::Type(text) => {
                let strokes = crate::console::keys::type_text(text)
                    .map_err(|e| CmdError::Usage(e.to_string()))?;
                press(&engine, &strokes, cfg.session.type_interval).await?;
                Vec::new()
            }
            Action::Keys(combos) => {
                let strokes = crate::console::keys::combos(combos)
                    .map_err(|e| CmdError::Usage(e.to_string()))?;
                press(&engine, &strokes, cfg.session.type_interval).await?;
                Vec::new()
            }
        };
        drop(b.membership);
        Ok(out)
    }
    .await;
    app.shutdown.trigger();
    app.shutdown.drain(Duration::from_secs(5)).await;
    result
}

/// Presses `strokes` at `pace`, while the console stays connected.
async fn press(
    engine: &crate::engine::Engine,
    strokes: &[crate::console::keys::KeyStroke],
    pace: Duration,
) -> Result<(), CmdError> {
    for (n, s) in strokes.iter().enumerate() {
        if !matches!(engine.phase(), crate::engine::Phase::Live)
            || engine.press(s.down, s.keysym).await.is_err()
        {
            return Err(CmdError::Refused(format!(
                "the console connection dropped after {n} of {} key events: check the screen before sending the rest",
                strokes.len()
            )));
        }
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
    }
    // Everything written to, and read by, the console before this process leaves.
    engine.flush().await.map_err(|()| {
        CmdError::Refused(
            "the console connection dropped before the last key events were sent: check the screen"
                .into(),
        )
    })?;
    engine.settled(Duration::from_secs(1)).await;
    Ok(())
}

/// What a command asks for.
pub(super) enum Action<'a> {
    /// `GET …/screenshot.png`.
    Screenshot,
    /// `POST …/type` with the text.
    Type(&'a str),
    /// `POST …/keys` with the combinations, one a line.
    Keys(&'a [&'a str]),
}

impl Action<'_> {
    /// The subcommand.
    fn command(&self) -> &'static str {
        match self {
            Action::Screenshot => "screenshot",
            Action::Type(_) => "type",
            Action::Keys(_) => "keys",
        }
    }

    /// The last path segment.
    fn path(&self) -> &'static str {
        match self {
            Action::Screenshot => "screenshot.png",
            Action::Type(_) => "type",
            Action::Keys(_) => "keys",
        }
    }

    /// What is being done, for messages ("take a screenshot of ins-…").
    fn doing(&self) -> &'static str {
        match self {
            Action::Screenshot => "take a screenshot of",
            Action::Type(_) => "type into",
            Action::Keys(_) => "press keys on",
        }
    }

    fn method(&self) -> Method {
        match self {
            Action::Screenshot => Method::GET,
            Action::Type(_) | Action::Keys(_) => Method::POST,
        }
    }

    fn body(&self) -> Option<String> {
        match self {
            Action::Screenshot => None,
            Action::Type(text) => Some((*text).to_owned()),
            Action::Keys(combos) => Some(combos.join("\n")),
        }
    }
}

/// Where the token came from, for the message when it is refused.
#[derive(Debug, Clone)]
enum TokenSource {
    File(PathBuf),
    Env,
}

/// A running daemon.
pub(super) struct Daemon {
    /// `--via`, checked: http or https, no query, fragment or credentials.
    base: Url,
    /// `Bearer <token>`, marked sensitive (hidden from `Debug`).
    auth: Option<(HeaderValue, TokenSource)>,
    http: reqwest::Client,
}

impl Daemon {
    /// Checks `--via`, reads the token (`--token-file`, else `TCVNC_TOKEN`).
    ///
    /// # Errors
    /// A usage error (64) naming the problem.
    fn new(via: &str, token_file: Option<&Path>, env: &Env) -> Result<Daemon, CmdError> {
        let base = parse_via(via)?;
        let token = match token_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    CmdError::Usage(format!("--token-file: cannot read {}: {e}", path.display()))
                })?;
                let token = text.trim_end_matches(['\n', '\r']).to_owned();
                if token.is_empty() {
                    return Err(CmdError::Usage(format!(
                        "--token-file: {} is empty",
                        path.display()
                    )));
                }
                Some((token, TokenSource::File(path.to_owned())))
            }
            None => env
                .get(TOKEN_ENV)
                .map(|t| t.trim_end_matches(['\n', '\r']))
                .filter(|t| !t.is_empty())
                .map(|t| (t.to_owned(), TokenSource::Env)),
        };
        let auth = token
            .map(|(t, source)| {
                let mut v = HeaderValue::from_str(&format!("Bearer {t}")).map_err(|_| {
                    CmdError::Usage(format!(
                        "the token from {} has characters an HTTP header cannot carry (control characters or non-ASCII)",
                        source.describe()
                    ))
                })?;
                v.set_sensitive(true);
                Ok::<_, CmdError>((v, source))
            })
            .transpose()?;
        if auth.is_some() && base.scheme() == "http" && !is_loopback(&base) {
            tracing::warn!(via = %base, "the bearer token is sent in clear text over http:// to a host that is not loopback; use https:// or an SSH tunnel");
        }
        let tls = crate::tls::client_config(None)
            .map_err(|e| CmdError::Other(format!("cannot set up TLS: {e}")))?;
        let http = reqwest::Client::builder()
            // Our own daemon: no proxy from the environment, no redirect to follow with
            // the token.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured((*tls).clone())
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("tcvnc/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CmdError::Other(format!("cannot build the HTTP client: {e}")))?;
        Ok(Daemon { base, auth, http })
    }

    /// `{via}/vnc/{instance}/{last}`, the instance percent-encoded as one segment.
    fn url(&self, instance: &str, last: &str) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            segments.pop_if_empty().extend(["vnc", instance, last]);
        }
        url
    }

    /// Sends `action` for `instance`; notes on stderr a URL the daemon spent.
    ///
    /// # Errors
    /// The daemon unreachable or not answering in time, or refusing (69); the token
    /// refused (401, 403: 77); the request refused as malformed (400, 413, 415, 422: 64).
    pub(super) async fn send(
        &self,
        instance: &str,
        action: &Action<'_>,
    ) -> Result<reqwest::Response, CmdError> {
        let url = self.url(instance, action.path());
        let mut req = self.http.request(action.method(), url.clone());
        if let Some((auth, _)) = &self.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        if let Some(body) = action.body() {
            req = req
                .header(CONTENT_TYPE, "text/plain; charset=utf-8")
                .body(body);
        }
        let resp = req.send().await.map_err(|e| {
            let why = if e.is_timeout() {
                format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())
            } else if e.is_connect() {
                format!("cannot connect ({})", root_cause(&e))
            } else {
                root_cause(&e)
            };
            CmdError::Refused(format!(
                "cannot {} {instance} through the daemon at {}: {why}; is `tcvnc serve` running with [http] listen at that address?",
                action.doing(),
                self.base
            ))
        })?;
        if resp
            .headers()
            .get(URL_SPENT)
            .is_some_and(|v| v.as_bytes() == b"1")
        {
            eprintln!(
                "tcvnc: note: the daemon had no live console for {instance}, so it connected for this request and spent one console URL (at most 30 a minute per instance)"
            );
        }
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = error_text(resp).await;
        Err(self.refusal(instance, action, status, &body, retry_after.as_deref()))
    }

    /// A refusal's message and exit code.
    fn refusal(
        &self,
        instance: &str,
        action: &Action<'_>,
        status: StatusCode,
        body: &str,
        retry_after: Option<&str>,
    ) -> CmdError {
        let head = format!(
            "the daemon at {} refused to {} {instance} ({status}): {body}",
            self.base,
            action.doing()
        );
        match status {
            StatusCode::UNAUTHORIZED => CmdError::Denied(match &self.auth {
                None => format!(
                    "{head}; pass --token-file FILE (the daemon's [http] token_file) or set {TOKEN_ENV}"
                ),
                Some((_, source)) => format!(
                    "{head}; the token from {} was refused: it must be the content of the daemon's [http] token_file",
                    source.describe()
                ),
            }),
            StatusCode::FORBIDDEN => CmdError::Denied(match action {
                Action::Screenshot => head,
                Action::Type(_) | Action::Keys(_) => format!(
                    "{head}; typing and keys need control of the console: use the token of [http] token_file, not view_token_file"
                ),
            }),
            StatusCode::NOT_FOUND => CmdError::Refused(format!(
                "{head}; is {instance} one of that daemon's targets (or found by its [discovery])?"
            )),
            StatusCode::METHOD_NOT_ALLOWED => CmdError::Refused(format!(
                "{head}; does that daemon run a tcvnc with screenshot, type and keys?"
            )),
            StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::UNPROCESSABLE_ENTITY => CmdError::Usage(head),
            _ => match retry_after {
                Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                    CmdError::Refused(format!("{head}; retry in {s} s"))
                }
                _ => CmdError::Refused(head),
            },
        }
    }
}

impl TokenSource {
    fn describe(&self) -> String {
        match self {
            TokenSource::File(p) => p.display().to_string(),
            TokenSource::Env => TOKEN_ENV.to_owned(),
        }
    }
}

/// Checks `--via`.
fn parse_via(via: &str) -> Result<Url, CmdError> {
    let bad = |why: &str| {
        CmdError::Usage(format!(
            "--via {via:?}: {why}; expected the daemon's address, e.g. http://127.0.0.1:6080"
        ))
    };
    if !via.contains("://") {
        return Err(bad("no scheme"));
    }
    let url = Url::parse(via).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("only http:// and https:// are spoken"));
    }
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(bad("no host"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("a query or fragment has no place here"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad(&format!(
            "credentials in the URL are not sent; use --token-file or {TOKEN_ENV}"
        )));
    }
    Ok(url)
}

/// Whether the URL's host is a loopback address or `localhost`.
fn is_loopback(url: &Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|a| a.is_loopback())
}

/// The innermost cause of a transport error (reqwest's outer text is generic).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// Up to [`MAX_ERROR_BODY`] bytes of a refusal's body, as one safe line: control
/// characters (a terminal's escape sequences) escaped, blank as "(no message)".
async fn error_text(mut resp: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < MAX_ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let cut = bytes.len() > MAX_ERROR_BODY;
    bytes.truncate(MAX_ERROR_BODY);
    let text = String::from_utf8_lossy(&bytes);
    let mut out: String = text
        .trim()
        .chars()
        .map(|c| if c == '\n' || c == '\t' { ' ' } else { c })
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect();
    if cut {
        out.push('…');
    }
    if out.is_empty() {
        "(no message)".into()
    } else {
        out
    }
}

/// Refuses an INSTANCE that is no id or name (and could not be a file name for the
/// default output): empty, starting with `.`, or with `/`, `\` or control characters.
///
/// # Errors
/// A usage error (64).
pub(super) fn check_instance_arg(instance: &str) -> Result<(), CmdError> {
    if instance.is_empty()
        || instance.starts_with('.')
        || instance
            .chars()
            .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(CmdError::Usage(format!(
            "{:?} is not an instance id or name",
            instance
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(via: &str) -> Daemon {
        Daemon::new(via, None, &Env::from_pairs::<&str, &str>([])).expect("valid")
    }

    #[test]
    fn paths_are_built_under_the_base_with_the_instance_encoded() {
        let d = daemon("http://127.0.0.1:6080");
        assert_eq!(
            d.url("ins-abc", "screenshot.png").as_str(),
            "http://127.0.0.1:6080/vnc/ins-abc/screenshot.png"
        );
        let d = daemon("https://bastion.example/tcvnc/");
        assert_eq!(
            d.url("web 7?", "type").as_str(),
            "https://bastion.example/tcvnc/vnc/web%207%3F/type"
        );
    }

    #[test]
    fn bad_via_urls_are_usage_errors() {
        for (via, why) in [
            ("127.0.0.1:6080", "no scheme"),
            ("ftp://h/", "only http"),
            ("http://h/?a=1", "query"),
            ("http://u:p@h/", "credentials"),
            ("nonsense", "no scheme"),
            ("http://", "empty host"),
        ] {
            match Daemon::new(via, None, &Env::from_pairs::<&str, &str>([])) {
                Err(CmdError::Usage(m)) => assert!(m.contains(why), "{via}: {m}"),
                Err(e) => panic!("{via}: {e}"),
                Ok(_) => panic!("{via} accepted"),
            }
        }
    }

    #[test]
    fn the_token_comes_from_the_file_then_the_environment() {
        let env = Env::from_pairs([(TOKEN_ENV, "from-env\n")]);
        let d = Daemon::new("http://127.0.0.1:1", None, &env).expect("valid");
        let (v, _) = d.auth.expect("a token");
        assert_eq!(v.as_bytes(), b"Bearer from-env");
        assert!(v.is_sensitive());
        assert!(!format!("{v:?}").contains("from-env"));

        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("token");
        std::fs::write(&file, "from-file\r\n").expect("write");
        let d = Daemon::new("http://127.0.0.1:1", Some(&file), &env).expect("valid");
        assert_eq!(d.auth.expect("a token").0.as_bytes(), b"Bearer from-file");

        std::fs::write(&file, "\n").expect("write");
        assert!(matches!(
            Daemon::new("http://127.0.0.1:1", Some(&file), &env),
            Err(CmdError::Usage(m)) if m.contains("is empty")
        ));
        std::fs::write(&file, "a\u{1}b").expect("write");
        assert!(matches!(
            Daemon::new("http://127.0.0.1:1", Some(&file), &env),
            Err(CmdError::Usage(m)) if m.contains("cannot carry")
        ));
        let none = Daemon::new(
            "http://127.0.0.1:1",
            None,
            &Env::from_pairs([(TOKEN_ENV, "")]),
        )
        .expect("valid");
        assert!(none.auth.is_none());
    }

    #[test]
    fn loopback_hosts() {
        for (via, lo) in [
            ("http://127.0.0.1:6080", true),
            ("http://[::1]:6080", true),
            ("http://LocalHost:6080", true),
            ("http://10.0.0.1:6080", false),
            ("http://bastion:6080", false),
        ] {
            assert_eq!(is_loopback(&parse_via(via).expect("valid")), lo, "{via}");
        }
    }

    #[test]
    fn instance_arguments() {
        for ok in ["ins-abc12345", "web-7", "名前"] {
            assert!(check_instance_arg(ok).is_ok(), "{ok}");
        }
        for bad in ["", "../x", "a/b", "a\\b", "a\nb", ".hidden"] {
            assert!(
                matches!(check_instance_arg(bad), Err(CmdError::Usage(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn refusals_map_to_exit_codes() {
        let d = daemon("http://127.0.0.1:6080");
        let code = |status: u16, action: &Action<'_>| {
            d.refusal(
                "ins-x",
                action,
                StatusCode::from_u16(status).expect("status"),
                "why",
                None,
            )
            .exit_code()
        };
        let shot = Action::Screenshot;
        let typing = Action::Type("x");
        assert_eq!(code(401, &shot), 77);
        assert_eq!(code(403, &typing), 77);
        assert_eq!(code(404, &shot), 69);
        assert_eq!(code(409, &typing), 69);
        assert_eq!(code(503, &shot), 69);
        assert_eq!(code(500, &shot), 69);
        assert_eq!(code(400, &typing), 64);
        assert_eq!(code(413, &typing), 64);
        let m = d
            .refusal(
                "ins-x",
                &shot,
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                Some("12"),
            )
            .to_string();
        assert!(m.ends_with("retry in 12 s"), "{m}");
        let m = d
            .refusal("ins-x", &typing, StatusCode::FORBIDDEN, "view-only", None)
            .to_string();
        assert!(m.contains("view_token_file"), "{m}");
    }
}
