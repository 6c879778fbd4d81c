//! Proxies, explicit: read from the [`Env`] snapshot (`HTTPS_PROXY`, `HTTP_PROXY`,
//! `NO_PROXY`, upper case first, then lower case), never by reqwest from the process. The
//! API and STS clients use them; the metadata client never does (169.254.0.23 and
//! `metadata.tencentyun.com` are only reachable from the instance itself).

use std::fmt;
use std::time::Duration;

use super::{ChainOptions, Env, Error};

/// The proxies an HTTP client uses, from `HTTPS_PROXY` (for `https://` URLs),
/// `HTTP_PROXY` (for `http://` URLs) and the `NO_PROXY` exclusions.
#[derive(Clone, Default)]
pub struct Proxies {
    proxies: Vec<reqwest::Proxy>,
    /// `scheme → proxy host:port` for logs, without any user or password.
    shown: Vec<String>,
}

impl fmt::Debug for Proxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.shown).finish()
    }
}

/// The first of `names` set (and not empty) in `env`.
fn first<'a>(env: &'a Env, names: &[&'static str]) -> Option<(&'static str, &'a str)> {
    names.iter().find_map(|n| env.get(n).map(|v| (*n, v)))
}

impl Proxies {
    /// No proxy at all.
    pub fn none() -> Self {
        Proxies::default()
    }

    /// The proxies `env` asks for.
    ///
    /// # Errors
    /// [`Error::Proxy`] when a variable is not a URL (its value is not repeated: it may
    /// carry a password).
    pub(crate) fn from_env(env: &Env) -> Result<Self, Error> {
        let no_proxy = first(env, &["NO_PROXY", "no_proxy"])
            .and_then(|(_, v)| reqwest::NoProxy::from_string(v));
        let mut out = Proxies::default();
        type Make = fn(reqwest::Url) -> reqwest::Result<reqwest::Proxy>;
        let kinds: [(&str, [&'static str; 2], Make); 2] = [
            (
                "https",
                ["HTTPS_PROXY", "https_proxy"],
                reqwest::Proxy::https::<reqwest::Url>,
            ),
            (
                "http",
                ["HTTP_PROXY", "http_proxy"],
                reqwest::Proxy::http::<reqwest::Url>,
            ),
        ];
        for (scheme, names, make) in kinds {
            let Some((variable, value)) = first(env, &names) else {
                continue;
            };
            let fail = |cause: String| Error::Proxy {
                variable: variable.to_owned(),
                cause,
            };
            // A bare host:port means an http:// proxy, as curl reads it.
            let with_scheme = if value.contains("://") {
                value.to_owned()
            } else {
                format!("http://{value}")
            };
            let url = reqwest::Url::parse(&with_scheme).map_err(|e| fail(e.to_string()))?;
            let host = url
                .host_str()
                .ok_or_else(|| fail("no host in it".into()))?
                .to_owned();
            let port = url.port_or_known_default().unwrap_or(80);
            let proxy = make(url).map_err(|e| fail(e.to_string()))?;
            out.proxies.push(proxy.no_proxy(no_proxy.clone()));
            out.shown.push(format!("{scheme} via {host}:{port}"));
        }
        Ok(out)
    }

    /// Whether any proxy is configured.
    pub fn is_empty(&self) -> bool {
        self.proxies.is_empty()
    }

    /// `builder` with exactly these proxies: reqwest's own reading of the process
    /// environment is switched off.
    pub(crate) fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        self.proxies
            .iter()
            .cloned()
            .fold(builder.no_proxy(), reqwest::ClientBuilder::proxy)
    }
}

/// The two HTTP clients of a provider that fetches temporary credentials.
pub(super) struct Clients {
    /// STS: TLS with the configured anchors, through the proxies.
    pub(super) sts: reqwest::Client,
    /// The metadata service: never through a proxy.
    pub(super) metadata: reqwest::Client,
}

impl Clients {
    /// Builds both clients.
    pub(super) fn new(opts: &ChainOptions, proxies: &Proxies) -> Result<Self, Error> {
        let fail = |e: reqwest::Error| Error::Fetch {
            source_name: "HTTP client".into(),
            cause: e.to_string(),
        };
        // A fetch happens about once an hour: a pooled connection would be stale by
        // then (closed by the server or the proxy), so each fetch opens its own.
        let sts = proxies
            .apply(reqwest::Client::builder())
            .pool_max_idle_per_host(0)
            .tls_backend_preconfigured((*opts.tls).clone())
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(fail)?;
        // Plain http in practice; reqwest still needs a TLS backend (ours: ring).
        let metadata = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(0)
            .tls_backend_preconfigured((*opts.tls).clone())
            .connect_timeout(opts.metadata_timeout)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(fail)?;
        Ok(Clients { sts, metadata })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_env_reads_both_cases_and_hides_passwords() {
        let env = Env::from_pairs([
            ("https_proxy", "http://user:hunter2@proxy.corp:3128"),
            ("NO_PROXY", "internal.corp"),
        ]);
        let p = Proxies::from_env(&env).expect("valid");
        assert!(!p.is_empty());
        let shown = format!("{p:?}");
        assert!(shown.contains("https via proxy.corp:3128"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        // Upper case wins; a bare host:port is an http:// proxy.
        let env = Env::from_pairs([("HTTPS_PROXY", "upper:8080"), ("https_proxy", "lower:8080")]);
        let shown = format!("{:?}", Proxies::from_env(&env).expect("valid"));
        assert!(shown.contains("upper:8080"), "{shown}");
        assert!(Proxies::from_env(&Env::default()).expect("none").is_empty());
        let e = Proxies::from_env(&Env::from_pairs([("HTTPS_PROXY", "http://[bad")]))
            .expect_err("not a URL");
        assert!(e.to_string().contains("HTTPS_PROXY"), "{e}");
    }
}
