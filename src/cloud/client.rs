//! The HTTPS client for `DescribeInstanceVncUrl`, `DescribeInstances` and
//! `DescribeInstancesStatus`: one signed POST per attempt, the exact hashed bytes sent,
//! every attempt through the API rate limit. Minting is one attempt with a typed outcome
//! ([`MintOutcome`]); whether to try again is the session's decision, since only it knows
//! the budget. Calls that mint nothing retry by error class here.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use rand::RngExt;
use serde::Deserialize;
use serde_json::Value;

use super::credentials::{Credential, Provider, Proxies};
use super::error::{ApiError, Class, Error};
use super::{sign, EndpointPolicy, Product, VncUrl};
use crate::budget::{ApiKey, ApiLimiter, ApiTicket};
use crate::redact;

/// Content-Type sent and signed, byte for byte.
const CONTENT_TYPE: &str = "application/json";
/// Idle API connections kept per host.
const API_IDLE_CONNECTIONS: usize = 4;
/// Answers larger than this are refused.
const MAX_BODY: usize = 1 << 20;
/// Longest error message kept from the cloud.
const MAX_MESSAGE: usize = 512;

/// Receives the result of every API attempt (metrics).
pub trait ApiObserver: Send + Sync {
    /// `code` is `None` on success, the API code, or `transport`, `http_<status>`, `parse`.
    fn api_result(&self, action: &'static str, code: Option<&str>, seconds: f64);
}

/// Timeouts and retry bounds.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// TCP and TLS connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout.
    pub timeout: Duration,
    /// Retries for retryable errors after the first attempt.
    pub max_retries: u32,
    /// First backoff; doubled each retry, plus up to 50 % jitter.
    pub backoff: Duration,
    /// Proxies for the API (from `HTTPS_PROXY` / `NO_PROXY`); the process environment
    /// is never read by the HTTP client itself.
    pub proxies: Proxies,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            max_retries: 3,
            backoff: Duration::from_millis(200),
            proxies: Proxies::none(),
        }
    }
}

/// A freshly minted console URL.
#[derive(Debug)]
pub struct Minted {
    /// The decoded one-time URL.
    pub url: VncUrl,
    /// `Response.RequestId`.
    pub request_id: String,
    /// When the answer arrived (tokio time), to measure the URL's age at dial.
    pub received_at: tokio::time::Instant,
}

/// What one attempt to mint a console URL came to. Which outcomes cost a URL of the
/// instance's budget, and which may be tried again, is the caller's decision; the
/// reference's classes: R/C/K/P for `NotMinted` by code, U for `Unknown`.
#[derive(Debug)]
pub enum MintOutcome {
    /// A URL, to dial at once.
    Minted(Minted),
    /// The cloud answered with an error code: nothing was minted, but the request
    /// reached the cloud. `used` are the credentials it was signed with (to refresh
    /// them after a rejection).
    NotMinted {
        /// The API error ([`Error::Api`]).
        error: Error,
        /// The credentials the request was signed with.
        used: Arc<Credential>,
    },
    /// Nothing left the host: no credentials, the API rate limit could not admit the
    /// request in time, or DNS, TCP or TLS failed before the request was written.
    NeverSent(Error),
    /// The request may have reached the cloud and minted a URL, but no usable answer
    /// came back: a timeout after sending, a lost or garbled body, an HTTP status other
    /// than 200, an unusable `InstanceVncUrl`.
    Unknown(Error),
}

/// One instance as `DescribeInstances` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceInfo {
    /// `InstanceId`.
    pub id: String,
    /// `InstanceState` (`RUNNING`, `STOPPED`, …).
    pub state: String,
    /// `InstanceName`.
    pub name: String,
}

/// The API client. Cheap to share behind an `Arc`.
pub struct CloudClient {
    http: reqwest::Client,
    product: Product,
    endpoints: EndpointPolicy,
    creds: Arc<Provider>,
    limiter: Arc<ApiLimiter>,
    /// Seconds to add to the local clock (learned from `SignatureExpire`), shared with
    /// the credential provider so that expiry is judged on the clock the signer uses.
    clock_offset: Arc<AtomicI64>,
    opts: ClientOptions,
    observer: Option<Arc<dyn ApiObserver>>,
}

impl std::fmt::Debug for CloudClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudClient")
            .field("product", &self.product)
            .field("endpoints", &self.endpoints)
            .field("credentials", &self.creds)
            .finish_non_exhaustive()
    }
}

/// One instance in an answer's instance list (`InstanceSet`, `InstanceStatusSet`).
#[derive(Deserialize)]
struct InstanceItem {
    #[serde(rename = "InstanceId")]
    id: String,
    #[serde(rename = "InstanceState", default)]
    state: String,
    #[serde(rename = "InstanceName", default)]
    name: String,
}

/// One request to make.
#[derive(Clone, Copy)]
struct Call<'a> {
    action: &'static str,
    region: &'a str,
    instance: Option<&'a str>,
    body: &'a [u8],
}

/// What one attempt failed with, plus the server's clock when it said.
struct Failed {
    error: Error,
    server_time: Option<i64>,
}

impl CloudClient {
    /// A client for `product` using `tls` for HTTPS and `opts.proxies` (only those).
    /// It signs with the clock offset of `creds` ([`Provider::clock_offset`]).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        product: Product,
        endpoints: EndpointPolicy,
        creds: Arc<Provider>,
        limiter: Arc<ApiLimiter>,
        tls: Arc<rustls::ClientConfig>,
        opts: ClientOptions,
    ) -> Result<Self, Error> {
        let http = opts
            .proxies
            .apply(reqwest::Client::builder())
            .tls_backend_preconfigured((*tls).clone())
            .connect_timeout(opts.connect_timeout)
            .timeout(opts.timeout)
            // Warm connections for the next calls, but not one per request of a burst:
            // idle sockets beyond these are closed (a daemon near its file limit).
            .pool_max_idle_per_host(API_IDLE_CONNECTIONS)
            .user_agent(concat!("tcvnc/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Transport {
                host: "-".into(),
                cause: format!("cannot build HTTP client: {e}"),
            })?;
        Ok(CloudClient {
            http,
            product,
            endpoints,
            clock_offset: creds.clock_offset().clone(),
            creds,
            limiter,
            opts,
            observer: None,
        })
    }

    /// Reports every attempt to `observer` (metrics).
    pub(crate) fn with_observer(mut self, observer: Arc<dyn ApiObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// A new API rate (a reloaded config).
    pub(crate) fn set_rate(&self, per_second: std::num::NonZeroU32) {
        self.limiter.set_rate(per_second);
    }

    /// Holds every request also until `gate` admits it (the fleet's shared API rate).
    pub(crate) fn set_api_gate(&self, gate: Option<Arc<dyn crate::budget::api::ApiGate>>) {
        self.limiter.set_gate(gate);
    }

    /// Periodic housekeeping: forget rate-limit keys of rotated credentials.
    pub(crate) fn housekeeping(&self) {
        self.limiter.shrink();
    }

    /// The product this client calls.
    pub fn product(&self) -> Product {
        self.product
    }

    /// The credential provider.
    pub fn credentials(&self) -> &Arc<Provider> {
        &self.creds
    }

    /// The API host used for `region`.
    pub(crate) fn host_for(&self, region: &str) -> String {
        self.endpoints.endpoint(self.product, region).host
    }

    /// The rate-limit key of `action` in `region` for `creds`: refreshable credentials
    /// are keyed by their source (a CVM role's SecretId changes at every refresh, its
    /// account's limit does not), fixed ones by their SecretId.
    fn api_key(&self, action: &'static str, region: &str, creds: &Credential) -> ApiKey {
        ApiKey {
            action,
            host: self.host_for(region),
            account: if creds.is_temporary() {
                creds.source.clone()
            } else {
                creds.secret_id.clone()
            },
        }
    }

    /// One attempt to mint a console URL for `instance`. The API rate limit is waited
    /// for until `deadline` at most; `sent` turns true just before the request is
    /// written, so a caller that cancels this future can tell whether anything may have
    /// reached the cloud (nothing did while `sent` is false).
    pub(crate) async fn mint_once(
        &self,
        instance: &str,
        region: &str,
        deadline: Option<tokio::time::Instant>,
        sent: &AtomicBool,
    ) -> MintOutcome {
        let creds = match self.creds.get().await {
            Ok(c) => c,
            Err(e) => return MintOutcome::NeverSent(Error::Credentials(e)),
        };
        let action = "DescribeInstanceVncUrl";
        let ticket = match self
            .limiter
            .acquire(&self.api_key(action, region, &creds), deadline)
            .await
        {
            Ok(t) => t,
            Err(wait) => {
                return MintOutcome::NeverSent(Error::ApiBusy {
                    host: self.host_for(region),
                    retry_after: wait,
                })
            }
        };
        let body = serde_json::json!({ "InstanceId": instance })
            .to_string()
            .into_bytes();
        let started = tokio::time::Instant::now();
        let result = self
            .attempt(
                Call {
                    action,
                    region,
                    instance: Some(instance),
                    body: &body,
                },
                &creds,
                ticket,
                sent,
            )
            .await;
        self.observe(action, &result, started);
        match result {
            Ok((resp, request_id)) => {
                let received_at = tokio::time::Instant::now();
                let raw = resp.get("InstanceVncUrl").and_then(Value::as_str);
                match raw.map(VncUrl::parse) {
                    Some(Ok(url)) => MintOutcome::Minted(Minted {
                        url,
                        request_id,
                        received_at,
                    }),
                    Some(Err(e)) => MintOutcome::Unknown(Error::BadUrl(e)),
                    None => MintOutcome::Unknown(Error::Parse {
                        host: self.host_for(region),
                        cause: "no InstanceVncUrl in Response".into(),
                    }),
                }
            }
            Err(f) => {
                let error = self.note_clock(f);
                match error {
                    Error::Api(_) => MintOutcome::NotMinted { error, used: creds },
                    Error::Connect { .. } => MintOutcome::NeverSent(error),
                    e => MintOutcome::Unknown(e),
                }
            }
        }
    }

    /// Asks the provider for fresh credentials after `used` were rejected.
    ///
    /// # Errors
    /// When the provider cannot refresh (fixed credentials) or the refresh fails.
    pub(crate) async fn refresh_rejected(&self, used: &Arc<Credential>) -> Result<(), Error> {
        self.creds.refresh_after_rejection(used).await?;
        Ok(())
    }

    /// Learns the clock offset from an `AuthFailure.SignatureExpire` answer, so the next
    /// request is signed with the server's time, and puts it in the error for the user.
    fn note_clock(&self, failed: Failed) -> Error {
        let mut error = failed.error;
        if let Error::Api(api) = &mut error {
            if api.code == "AuthFailure.SignatureExpire" {
                if let Some(server) = failed.server_time {
                    let offset = server - super::unix_now();
                    api.clock_offset = Some(offset);
                    self.clock_offset.store(offset, Ordering::Relaxed);
                    tracing::warn!(offset_seconds = offset, "the local clock is off by {offset} s; signing with the server's time; fix NTP");
                }
            }
        }
        error
    }

    fn observe(
        &self,
        action: &'static str,
        result: &Result<(Value, String), Failed>,
        started: tokio::time::Instant,
    ) {
        if let Some(o) = &self.observer {
            let code = match result {
                Ok(_) => None,
                Err(f) => Some(match &f.error {
                    Error::Api(api) => api.code.clone(),
                    Error::Connect { .. } => "connect".to_owned(),
                    Error::Transport { .. } => "transport".to_owned(),
                    Error::Status { status, .. } => format!("http_{status}"),
                    _ => "parse".to_owned(),
                }),
            };
            o.api_result(action, code.as_deref(), started.elapsed().as_secs_f64());
        }
    }

    /// Describes `ids` (state and name). Mints nothing.
    ///
    /// # Errors
    /// The classified [`Error`].
    pub async fn describe_instances(
        &self,
        ids: &[String],
        region: &str,
    ) -> Result<Vec<InstanceInfo>, Error> {
        let items = self
            .instance_set("DescribeInstances", "InstanceSet", ids, region)
            .await?;
        Ok(items
            .into_iter()
            .map(|i| InstanceInfo {
                id: i.id,
                state: i.state,
                name: i.name,
            })
            .collect())
    }

    /// The state of each of `ids` in `region` (`RUNNING`, `STOPPED`, …), through
    /// `DescribeInstancesStatus` on CVM (its own rate limit, no URL spent) and
    /// `DescribeInstances` on Lighthouse, which has no status action.
    ///
    /// # Errors
    /// The classified [`Error`].
    pub(crate) async fn instance_states(
        &self,
        ids: &[String],
        region: &str,
    ) -> Result<Vec<(String, String)>, Error> {
        let (action, set) = match self.product {
            Product::Lighthouse => ("DescribeInstances", "InstanceSet"),
            Product::Cvm => ("DescribeInstancesStatus", "InstanceStatusSet"),
        };
        let items = self.instance_set(action, set, ids, region).await?;
        Ok(items.into_iter().map(|i| (i.id, i.state)).collect())
    }

    /// Calls `action` for `ids` and reads the list `set` of its answer.
    async fn instance_set(
        &self,
        action: &'static str,
        set: &str,
        ids: &[String],
        region: &str,
    ) -> Result<Vec<InstanceItem>, Error> {
        let body = serde_json::json!({ "InstanceIds": ids, "Limit": 100 })
            .to_string()
            .into_bytes();
        let resp = self.call(action, region, body).await?;
        Ok(resp
            .get(set)
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| Error::Parse {
                host: self.host_for(region),
                cause: format!("{set}: {e}"),
            })?
            .unwrap_or_default())
    }

    /// A call that mints nothing: retried by error class (bounded, jittered), each try
    /// through the API rate limit.
    pub(super) async fn call(
        &self,
        action: &'static str,
        region: &str,
        body: Vec<u8>,
    ) -> Result<Value, Error> {
        let mut creds = self.creds.get().await?;
        let mut retries = 0u32;
        let mut internal_retried = false;
        let mut refreshed = false;
        let mut skew_fixed = false;
        loop {
            let ticket = self
                .limiter
                .acquire(&self.api_key(action, region, &creds), None)
                .await
                .map_err(|wait| Error::ApiBusy {
                    host: self.host_for(region),
                    retry_after: wait,
                })?;
            let started = tokio::time::Instant::now();
            let result = self
                .attempt(
                    Call {
                        action,
                        region,
                        instance: None,
                        body: &body,
                    },
                    &creds,
                    ticket,
                    &AtomicBool::new(false),
                )
                .await;
            self.observe(action, &result, started);
            let failed = match result {
                Ok((resp, _)) => return Ok(resp),
                Err(f) => f,
            };
            let has_server_time = failed.server_time.is_some();
            let error = self.note_clock(failed);
            let class = error.class();
            tracing::debug!(action, error = %error, ?class, "API attempt failed");
            match class {
                Class::Retry if retries < self.opts.max_retries => {
                    tokio::time::sleep(self.backoff(retries)).await;
                    retries += 1;
                }
                Class::RetryOnce if !internal_retried => {
                    internal_retried = true;
                    tokio::time::sleep(self.backoff(0)).await;
                }
                Class::RefreshCredentials if !refreshed => {
                    refreshed = true;
                    tracing::info!(source = %creds.source, "credentials rejected; refreshing them and retrying once");
                    creds = self.creds.refresh_after_rejection(&creds).await?;
                }
                Class::ClockSkew if !skew_fixed && has_server_time => skew_fixed = true,
                _ => return Err(error),
            }
        }
    }

    /// The jittered pause before retry number `retry` (0-based).
    pub fn backoff(&self, retry: u32) -> Duration {
        let base = self.opts.backoff.saturating_mul(1 << retry.min(8));
        let jitter = rand::rng().random_range(0.0..0.5);
        base + base.mul_f64(jitter)
    }

    /// The retry bound for retryable errors.
    pub fn max_retries(&self) -> u32 {
        self.opts.max_retries
    }

    async fn attempt(
        &self,
        call: Call<'_>,
        creds: &Arc<Credential>,
        ticket: ApiTicket,
        sent: &AtomicBool,
    ) -> Result<(Value, String), Failed> {
        let Call {
            action,
            region,
            instance,
            body,
        } = call;
        let endpoint = self.endpoints.endpoint(self.product, region);
        let host = endpoint.host.clone();
        let fail = |error| Failed {
            error,
            server_time: None,
        };
        let timestamp = super::unix_now() + self.clock_offset.load(Ordering::Relaxed);
        let signed_headers = [
            ("content-type", CONTENT_TYPE),
            ("host", endpoint.host.as_str()),
        ];
        let sig = sign::sign(
            creds.secret_key.expose(),
            &sign::Request {
                method: "POST",
                uri: "/",
                query: "",
                headers: &signed_headers,
                payload: body,
                service: self.product.service(),
                timestamp,
            },
        );
        let mut req = self
            .http
            .post(format!("{}/", endpoint.base))
            .header(http::header::HOST, &endpoint.host)
            .header(http::header::CONTENT_TYPE, CONTENT_TYPE)
            .header(
                http::header::AUTHORIZATION,
                sig.authorization(&creds.secret_id, self.product.service()),
            )
            .header("X-TC-Action", action)
            .header("X-TC-Version", self.product.version())
            .header("X-TC-Region", region)
            .header("X-TC-Timestamp", timestamp.to_string())
            .header("X-TC-Language", "en-US")
            .header(
                "X-TC-RequestClient",
                concat!("tcvnc_", env!("CARGO_PKG_VERSION")),
            )
            .body(body.to_vec());
        if let Some(token) = &creds.token {
            req = req.header("X-TC-Token", token.expose());
        }
        tracing::debug!(action, api = %endpoint.base, region, secret_id = %redact::secret_id(&creds.secret_id), "calling the API");
        sent.store(true, Ordering::Relaxed);
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) if e.is_connect() => {
                // DNS, TCP or TLS failed: the request was never written.
                ticket.refund();
                sent.store(false, Ordering::Relaxed);
                return Err(fail(Error::Connect {
                    host,
                    cause: super::credentials::without_url(&e),
                }));
            }
            Err(e) => {
                return Err(fail(Error::Transport {
                    host,
                    cause: super::credentials::without_url(&e),
                }))
            }
        };
        let server_time = resp
            .headers()
            .get(http::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|d| httpdate::parse_http_date(d).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_secs()).ok());
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(fail(Error::Status { host, status }));
        }
        let bytes = read_bounded(resp).await.map_err(|cause| {
            fail(Error::Transport {
                host: host.clone(),
                cause,
            })
        })?;
        ticket.settle();
        let parsed = parse_envelope(&bytes).map_err(|cause| {
            fail(Error::Parse {
                host: host.clone(),
                cause,
            })
        })?;
        match parsed {
            Envelope::Ok {
                response,
                request_id,
            } => {
                tracing::Span::current().record("request_id", request_id.as_str());
                tracing::debug!(action, request_id, "API answered");
                Ok((response, request_id))
            }
            Envelope::Err {
                code,
                message,
                request_id,
            } => {
                tracing::Span::current().record("request_id", request_id.as_str());
                tracing::debug!(action, request_id, code, "API error");
                Err(Failed {
                    error: Error::Api(Box::new(ApiError {
                        code,
                        message,
                        request_id,
                        action,
                        instance: instance.map(str::to_owned),
                        region: region.to_owned(),
                        credential_source: creds.source.clone(),
                        temporary: creds.is_temporary(),
                        clock_offset: None,
                    })),
                    server_time,
                })
            }
        }
    }
}

async fn read_bounded(mut resp: reqwest::Response) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| super::credentials::without_url(&e))?
    {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(format!("answer larger than {MAX_BODY} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// A decoded `{"Response": …}` envelope.
#[derive(Debug, PartialEq)]
pub enum Envelope {
    /// Success: the `Response` object and its RequestId.
    Ok {
        /// The `Response` object.
        response: Value,
        /// `RequestId`.
        request_id: String,
    },
    /// `Response.Error`.
    Err {
        /// `Error.Code`.
        code: String,
        /// `Error.Message`, cleaned and bounded.
        message: String,
        /// `RequestId`.
        request_id: String,
    },
}

/// Parses an API answer body.
///
/// # Errors
/// A description of what is wrong with the body.
pub fn parse_envelope(bytes: &[u8]) -> Result<Envelope, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let response = value
        .get("Response")
        .filter(|r| r.is_object())
        .ok_or("no Response object")?;
    let request_id = response
        .get("RequestId")
        .and_then(Value::as_str)
        .map(clean)
        .unwrap_or_default();
    if let Some(err) = response.get("Error") {
        let code = err
            .get("Code")
            .and_then(Value::as_str)
            .filter(|c| !c.is_empty())
            .ok_or("Response.Error has no Code")?;
        let message = err.get("Message").and_then(Value::as_str).unwrap_or("");
        return Ok(Envelope::Err {
            code: clean(code),
            message: clean(message),
            request_id,
        });
    }
    Ok(Envelope::Ok {
        response: response.clone(),
        request_id,
    })
}

/// Strips control characters and bounds the length of text from the cloud.
fn clean(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_MESSAGE)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_forms() {
        let ok =
            parse_envelope(br#"{"Response":{"InstanceVncUrl":"x","RequestId":"r1"}}"#).expect("ok");
        assert!(matches!(ok, Envelope::Ok { ref request_id, .. } if request_id == "r1"));
        let err = parse_envelope(
            br#"{"Response":{"Error":{"Code":"InvalidInstanceState","Message":"bad\u0007 state"},"RequestId":"r2"}}"#,
        )
        .expect("err");
        assert_eq!(
            err,
            Envelope::Err {
                code: "InvalidInstanceState".into(),
                message: "bad state".into(),
                request_id: "r2".into()
            }
        );
        for bad in [
            &b""[..],
            b"garbage",
            b"{}",
            br#"{"Response":1}"#,
            br#"{"Response":{"Error":{}}}"#,
        ] {
            assert!(parse_envelope(bad).is_err());
        }
    }
}
