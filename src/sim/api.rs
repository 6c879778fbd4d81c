//! The simulated API endpoint: verifies TC3 signatures with [`crate::cloud::sign`],
//! enforces the API and URL limits, and answers `DescribeInstanceVncUrl` and
//! `DescribeInstances` with the real envelope and error codes. Also routes STS, the
//! metadata service and the `/_sim/*` control endpoints.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{json, Value};

use super::SimState;
use crate::cloud::{self, sign, Product};
use crate::http_util::{self, Body};

/// Regions the simulated API knows.
const REGIONS: &[&str] = &[
    "ap-guangzhou",
    "ap-shanghai",
    "ap-nanjing",
    "ap-beijing",
    "ap-chengdu",
    "ap-chongqing",
    "ap-hongkong",
    "ap-singapore",
    "ap-bangkok",
    "ap-jakarta",
    "ap-mumbai",
    "ap-seoul",
    "ap-tokyo",
    "na-ashburn",
    "na-siliconvalley",
    "na-toronto",
    "eu-frankfurt",
    "sa-saopaulo",
    "ap-shanghai-fsi",
    "ap-shenzhen-fsi",
    "ap-taipei",
    "ap-tianjin",
];

fn request_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// An error envelope (HTTP 200, as the real API answers).
fn error(state: &SimState, code: &str, message: impl Into<String>) -> Response<Body> {
    state.count_error(code);
    with_date(
        state,
        http_util::json(&json!({
            "Response": {
                "Error": { "Code": code, "Message": message.into() },
                "RequestId": request_id(),
            }
        })),
    )
}

fn ok(state: &SimState, mut body: Value) -> Response<Body> {
    if let Some(o) = body.as_object_mut() {
        o.insert("RequestId".into(), Value::String(request_id()));
    }
    with_date(state, http_util::json(&json!({ "Response": body })))
}

fn with_date(state: &SimState, mut resp: Response<Body>) -> Response<Body> {
    let t = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(u64::try_from(state.now_unix()).unwrap_or(0));
    if let Ok(v) = http::HeaderValue::from_str(&httpdate::fmt_http_date(t)) {
        resp.headers_mut().insert(http::header::DATE, v);
    }
    resp
}

/// Entry point for every request on the API port.
pub async fn handle(state: Arc<SimState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path.starts_with("/_sim/") {
        return control(&state, req).await;
    }
    let faults = state.faults();
    let metadata = path.starts_with("/latest/meta-data/");
    if !metadata {
        // Counted on arrival, before any injected delay.
        state.stats.lock().api_requests += 1;
    }
    if let Some(d) = faults.latency {
        tokio::time::sleep(d).await;
    }
    if let Some(j) = faults.latency_jitter {
        let extra = j.mul_f64(rand::random_range(0.0..1.0));
        tokio::time::sleep(extra).await;
    }
    if metadata {
        return super::identity::metadata(&state, &path);
    }
    if state.take_fault(|f| &mut f.http_500) {
        return http_util::text(StatusCode::INTERNAL_SERVER_ERROR, "internal server error");
    }
    if state.take_fault(|f| &mut f.garbage) {
        return http_util::text(StatusCode::OK, "<html>\u{1}\u{2}not json");
    }
    if state.take_fault(|f| &mut f.truncated) {
        return http_util::json(&json!("x")).map(|_| {
            http_body_util::Full::new(bytes::Bytes::from_static(
                b"{\"Response\":{\"InstanceVncUrl\":\"wss%3A",
            ))
        });
    }
    if req.method() != Method::POST || path != "/" {
        return error(
            &state,
            "InvalidRequest",
            "only POST / with a JSON body is supported",
        );
    }
    let headers: HashMap<String, String> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let body = match http_util::read_body(req.into_body(), 1 << 20).await {
        Ok(b) => b,
        Err(_) => return error(&state, "RequestSizeLimitExceeded", "request body too large"),
    };
    let h = |k: &str| headers.get(k).map(String::as_str);
    let Some(action) = h("x-tc-action") else {
        return error(
            &state,
            "MissingParameter",
            "The request is missing a required parameter `X-TC-Action`.",
        );
    };
    if action == "AssumeRoleWithWebIdentity" && h("authorization") == Some("SKIP") {
        return super::identity::assume_role_with_web_identity(&state, &headers, &body);
    }
    match verify(&state, &headers, &body) {
        Ok((secret_id, product)) => {
            *state
                .stats
                .lock()
                .actions
                .entry(action.to_owned())
                .or_default() += 1;
            if !state.api_admit(action, &secret_id) {
                return error(&state, "RequestLimitExceeded", "Your current request times equals to `10` in a second, which exceeds the frequency limit `10` for a second. Please reduce the frequency of calls.");
            }
            if let Some(code) = state.forced_code() {
                return error(&state, &code, format!("injected fault {code}"));
            }
            let (resp, minted) = dispatch(&state, action, product, &headers, &body);
            if minted && state.take_fault(|f| &mut f.lose_after_mint) {
                // The URL is spent; the answer never comes (the client times out).
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            }
            if minted && state.take_fault(|f| &mut f.garble_after_mint) {
                return http_util::text(StatusCode::OK, "{\"Response\":{\"InstanceVncUrl\":");
            }
            resp
        }
        Err((code, msg)) => error(&state, code, msg),
    }
}

/// Checks headers, timestamp, key, scope and signature. Returns the SecretId and product.
fn verify(
    state: &SimState,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> Result<(String, Product), (&'static str, String)> {
    let h = |k: &str| headers.get(k).map(String::as_str);
    let content_type = h("content-type").unwrap_or_default();
    if !content_type.starts_with("application/json") {
        return Err((
            "InvalidRequest",
            format!(
                "unsupported Content-Type {content_type:?}; POST requests use application/json"
            ),
        ));
    }
    let auth = h("authorization").ok_or((
        "AuthFailure.InvalidAuthorization",
        "Authorization header is missing".to_owned(),
    ))?;
    let auth = sign::parse_authorization(auth).ok_or((
        "AuthFailure.InvalidAuthorization",
        "Authorization header is not TC3-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…"
            .to_owned(),
    ))?;
    let ts: i64 = h("x-tc-timestamp").and_then(|t| t.parse().ok()).ok_or((
        "MissingParameter",
        "X-TC-Timestamp is missing or not an integer".to_owned(),
    ))?;
    let skew = (state.now_unix() - ts).abs();
    if skew > 300 {
        return Err((
            "AuthFailure.SignatureExpire",
            format!("Signature expired. Timestamp is {ts}, server time differs by {skew} seconds; more than 5 minutes."),
        ));
    }
    let key = state.keys.lock().get(&auth.secret_id).cloned().ok_or((
        "AuthFailure.SecretIdNotFound",
        "The SecretId is not found, please ensure that your SecretId is correct.".to_owned(),
    ))?;
    let signature_failure = || {
        (
            "AuthFailure.SignatureFailure",
            "The provided credentials could not be validated. Please check your signature is correct.".to_owned(),
        )
    };
    let product = Product::from_service(&auth.service).ok_or_else(signature_failure)?;
    if auth.date != sign::utc_date(ts) {
        return Err(signature_failure());
    }
    if !auth.signed_headers.iter().any(|n| n == "content-type")
        || !auth.signed_headers.iter().any(|n| n == "host")
    {
        return Err(signature_failure());
    }
    let mut signed: Vec<(&str, &str)> = Vec::new();
    for name in &auth.signed_headers {
        let value = h(name).ok_or_else(signature_failure)?;
        signed.push((name.as_str(), value));
    }
    let expected = sign::sign(
        &key.secret_key,
        &sign::Request {
            method: "POST",
            uri: "/",
            query: "",
            headers: &signed,
            payload: body,
            service: &auth.service,
            timestamp: ts,
        },
    );
    if !sign::signatures_match(&expected.signature, &auth.signature) {
        return Err(signature_failure());
    }
    let token_failure = |m: &str| ("AuthFailure.TokenFailure", m.to_owned());
    match (&key.token, h("x-tc-token")) {
        (Some(want), Some(got)) if want == got => {}
        (Some(_), _) => return Err(token_failure("The session token is missing or invalid.")),
        (None, Some(_)) => {
            return Err(token_failure(
                "A session token was sent with a permanent key.",
            ))
        }
        (None, None) => {}
    }
    if key.expires_at.is_some_and(|e| state.now_unix() >= e) {
        return Err(token_failure("The temporary credentials have expired."));
    }
    if h("x-tc-version") != Some(product.version()) {
        return Err((
            "NoSuchVersion",
            format!(
                "version {:?} is not valid for {}",
                h("x-tc-version"),
                product.service()
            ),
        ));
    }
    Ok((auth.secret_id, product))
}

fn dispatch(
    state: &SimState,
    action: &str,
    product: Product,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> (Response<Body>, bool) {
    let region = match headers.get("x-tc-region").map(String::as_str) {
        None | Some("") if product == Product::Cvm => {
            return (
                error(
                    state,
                    "MissingParameter",
                    "The request is missing a required parameter `Region`.",
                ),
                false,
            )
        }
        None | Some("") => None,
        Some(r) if !REGIONS.contains(&r) => {
            return (
                error(
                    state,
                    "UnsupportedRegion",
                    format!("region {r} is not supported"),
                ),
                false,
            )
        }
        Some(r) => Some(r.to_owned()),
    };
    let Ok(params) = serde_json::from_slice::<Value>(body) else {
        return (
            error(
                state,
                "InvalidParameter",
                "the request body is not valid JSON",
            ),
            false,
        );
    };
    let resp = match action {
        "DescribeInstanceVncUrl" => return vnc_url(state, product, region.as_deref(), &params),
        "DescribeInstances" => describe_instances(state, product, region.as_deref(), &params),
        "DescribeInstancesStatus" if product == Product::Cvm => {
            describe_instances_status(state, region.as_deref(), &params)
        }
        _ => error(
            state,
            "InvalidAction",
            format!("The action `{action}` is not supported."),
        ),
    };
    (resp, false)
}

struct Codes {
    malformed: &'static str,
    not_found: &'static str,
}

fn codes(product: Product) -> Codes {
    match product {
        Product::Cvm => Codes {
            malformed: "InvalidInstanceId.Malformed",
            not_found: "InvalidInstanceId.NotFound",
        },
        Product::Lighthouse => Codes {
            malformed: "InvalidParameterValue.InstanceIdMalformed",
            not_found: "ResourceNotFound.InstanceIdNotFound",
        },
    }
}

/// The code `DescribeInstanceVncUrl` answers for an instance in `state` (not `RUNNING`).
/// CVM: the transitional states have their own `UnsupportedOperation.InstanceState<X>`
/// (the SDK's list); `STOPPED` and anything else `InvalidInstanceState`, as the
/// simulator always answered. Lighthouse has one code for every state.
fn state_code(product: Product, state: &str) -> &'static str {
    match product {
        Product::Lighthouse => "UnsupportedOperation.InvalidInstanceState",
        Product::Cvm => match state {
            "PENDING" => "UnsupportedOperation.InstanceStatePending",
            "STARTING" => "UnsupportedOperation.InstanceStateStarting",
            "STOPPING" => "UnsupportedOperation.InstanceStateStopping",
            "REBOOTING" => "UnsupportedOperation.InstanceStateRebooting",
            "SHUTDOWN" => "UnsupportedOperation.InstanceStateShutdown",
            "TERMINATING" => "UnsupportedOperation.InstanceStateTerminating",
            _ => "InvalidInstanceState",
        },
    }
}

fn vnc_url(
    state: &SimState,
    product: Product,
    region: Option<&str>,
    params: &Value,
) -> (Response<Body>, bool) {
    let Some(obj) = params.as_object() else {
        return (
            error(
                state,
                "InvalidParameter",
                "the request body must be a JSON object",
            ),
            false,
        );
    };
    if let Some(k) = obj.keys().find(|k| *k != "InstanceId") {
        return (
            error(
                state,
                "UnknownParameter",
                format!("The parameter `{k}` is not recognized."),
            ),
            false,
        );
    }
    let Some(id) = obj.get("InstanceId").and_then(Value::as_str) else {
        return (
            error(
                state,
                "MissingParameter",
                "The request is missing a required parameter `InstanceId`.",
            ),
            false,
        );
    };
    let c = codes(product);
    if !cloud::instance_id_valid(product, id) {
        return (
            error(
                state,
                c.malformed,
                format!("The specified parameter `InstanceId` is invalid: `{id}` is malformed."),
            ),
            false,
        );
    }
    let inst = state.instances.lock().get(id).cloned();
    let Some(inst) = inst.filter(|i| i.region.is_none() || i.region.as_deref() == region) else {
        return (
            error(
                state,
                c.not_found,
                format!("The instance `{id}` is not found."),
            ),
            false,
        );
    };
    if inst.state != "RUNNING" {
        return (
            error(
                state,
                state_code(product, &inst.state),
                format!(
                    "The instance `{id}` is in state {}, which does not support this operation.",
                    inst.state
                ),
            ),
            false,
        );
    }
    if !state.mint_admit(id) {
        return (
            error(
                state,
                "LimitExceeded",
                format!(
                    "The VNC URL limit of {} per minute for instance `{id}` is reached.",
                    state.url_limit
                ),
            ),
            false,
        );
    }
    let url = state.mint_url(id);
    (ok(state, json!({ "InstanceVncUrl": url })), true)
}

/// The request's `InstanceIds` (strings only; absent: none).
fn instance_ids(params: &Value) -> Vec<String> {
    params
        .get("InstanceIds")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// One `DescribeInstances` filter: its name and values.
type SimFilter = (String, Vec<String>);

/// The `Filters` of a `DescribeInstances` request, checked as the cloud checks them: at
/// most 10 filters and 100 values, known names only, not together with `InstanceIds`.
fn filters(params: &Value, with_ids: bool) -> Result<Vec<SimFilter>, (&'static str, String)> {
    let Some(raw) = params.get("Filters") else {
        return Ok(Vec::new());
    };
    let bad = |m: &str| ("InvalidParameter", m.to_owned());
    let list = raw
        .as_array()
        .ok_or_else(|| bad("`Filters` must be an array of {Name, Values}."))?;
    if with_ids && !list.is_empty() {
        return Err(bad("`InstanceIds` and `Filters` cannot be given together."));
    }
    if list.len() > 10 {
        return Err((
            "InvalidParameterValue.LimitExceeded",
            "A request takes at most 10 `Filters`.".to_owned(),
        ));
    }
    let mut out = Vec::new();
    for f in list {
        let name = f
            .get("Name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("Each filter needs a string `Name`."))?;
        let values: Vec<String> = f
            .get("Values")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("Each filter needs an array `Values`."))?
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| bad("Filter values are strings."))?;
        let known = matches!(
            name,
            "instance-name" | "instance-state" | "zone" | "tag-key" | "tag-value"
        ) || name.strip_prefix("tag:").is_some_and(|k| !k.is_empty());
        if !known {
            return Err((
                "InvalidFilter",
                format!("The filter `{name}` is not supported."),
            ));
        }
        out.push((name.to_owned(), values));
    }
    if out.iter().map(|(_, v)| v.len()).sum::<usize>() > 100 {
        return Err((
            "InvalidFilterValue.LimitExceeded",
            "A request takes at most 100 `Filter.Values`.".to_owned(),
        ));
    }
    Ok(out)
}

/// Whether `inst` passes the filter `name` with `values` (any value matches).
/// `instance-name` is a fuzzy match, as the cloud's (its error for a bad value is
/// `InvalidParameterValue.InvalidVagueName`): the name contains the value. tcvnc sends
/// only exact names and checks them again itself, so it is right either way.
fn passes(inst: &super::SimInstance, name: &str, values: &[String]) -> bool {
    values.iter().any(|v| match name {
        "instance-name" => inst.name.contains(v.as_str()),
        "instance-state" => &inst.state == v,
        "zone" => inst.zone.as_ref() == Some(v),
        "tag-key" => inst.tags.contains_key(v),
        "tag-value" => inst.tags.values().any(|t| t == v),
        _ => name
            .strip_prefix("tag:")
            .is_some_and(|k| inst.tags.get(k) == Some(v)),
    })
}

/// `DescribeInstances`: `InstanceIds` (at most 100) or `Filters`, then `Offset` and
/// `Limit` (default 20, 1 to 100, else `InvalidParameterValue`); answered with the
/// `TotalCount` of every match and one page of `InstanceSet` in a stable order. Spends
/// no URL.
fn describe_instances(
    state: &SimState,
    product: Product,
    region: Option<&str>,
    params: &Value,
) -> Response<Body> {
    let ids = instance_ids(params);
    let c = codes(product);
    if ids.len() > 100 {
        return error(
            state,
            "InvalidParameterValue",
            "`InstanceIds` takes at most 100 ids.",
        );
    }
    if let Some(bad) = ids.iter().find(|id| !cloud::instance_id_valid(product, id)) {
        return error(
            state,
            c.malformed,
            format!("The specified parameter `InstanceIds` is invalid: `{bad}` is malformed."),
        );
    }
    let filters = match filters(params, !ids.is_empty()) {
        Ok(f) => f,
        Err((code, message)) => return error(state, code, message),
    };
    let number = |key: &str, default: u64| match params.get(key) {
        None => Some(default),
        Some(v) => v.as_u64(),
    };
    let (Some(offset), Some(limit)) = (number("Offset", 0), number("Limit", 20)) else {
        return error(
            state,
            "InvalidParameterValue",
            "`Offset` and `Limit` are non-negative integers.",
        );
    };
    if limit == 0 || limit > 100 {
        return error(
            state,
            "InvalidParameterValue",
            format!("`Limit` must be between 1 and 100, not {limit}."),
        );
    }
    let instances = state.instances.lock();
    let mut all: Vec<&super::SimInstance> = instances
        .values()
        .filter(|i| ids.is_empty() || ids.contains(&i.id))
        .filter(|i| i.region.is_none() || i.region.as_deref() == region)
        .filter(|i| i.id.starts_with(product.id_prefix()))
        .filter(|i| filters.iter().all(|(n, v)| passes(i, n, v)))
        .collect();
    all.sort_by(|a, b| a.id.cmp(&b.id));
    let total = all.len();
    let set: Vec<Value> = all
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(100))
        .map(|i| {
            let tags: Vec<Value> = i
                .tags
                .iter()
                .map(|(k, v)| json!({ "Key": k, "Value": v }))
                .collect();
            let zone = i.zone.clone().unwrap_or_default();
            let mut item = json!({
                "InstanceId": i.id,
                "InstanceState": i.state,
                "InstanceName": i.name,
                "Tags": tags,
            });
            match product {
                Product::Cvm => item["Placement"] = json!({ "Zone": zone }),
                Product::Lighthouse => item["Zone"] = json!(zone),
            }
            item
        })
        .collect();
    drop(instances);
    ok(state, json!({ "TotalCount": total, "InstanceSet": set }))
}

/// CVM `DescribeInstancesStatus`: `InstanceIds` (at most 100), `Offset`, `Limit` (at most
/// 100), answered with `TotalCount` and `InstanceStatusSet`; spends no URL.
fn describe_instances_status(
    state: &SimState,
    region: Option<&str>,
    params: &Value,
) -> Response<Body> {
    let ids = instance_ids(params);
    if ids.len() > 100 {
        return error(
            state,
            "InvalidParameterValue",
            "`InstanceIds` takes at most 100 ids.",
        );
    }
    let limit = params.get("Limit").and_then(Value::as_u64).unwrap_or(20);
    let offset = params.get("Offset").and_then(Value::as_u64).unwrap_or(0);
    if limit == 0 || limit > 100 {
        return error(
            state,
            "InvalidParameterValue",
            "`Limit` must be between 1 and 100.",
        );
    }
    if let Some(bad) = ids
        .iter()
        .find(|id| !cloud::instance_id_valid(Product::Cvm, id))
    {
        return error(
            state,
            "InvalidInstanceId.Malformed",
            format!("The specified parameter `InstanceIds` is invalid: `{bad}` is malformed."),
        );
    }
    let instances = state.instances.lock();
    let mut all: Vec<(&String, &String)> = instances
        .values()
        .filter(|i| ids.is_empty() || ids.contains(&i.id))
        .filter(|i| i.region.is_none() || i.region.as_deref() == region)
        .filter(|i| i.id.starts_with(Product::Cvm.id_prefix()))
        .map(|i| (&i.id, &i.state))
        .collect();
    all.sort();
    let total = all.len();
    let set: Vec<Value> = all
        .into_iter()
        .skip(usize::try_from(offset).unwrap_or(usize::MAX))
        .take(usize::try_from(limit).unwrap_or(100))
        .map(|(id, st)| json!({ "InstanceId": id, "InstanceState": st }))
        .collect();
    drop(instances);
    ok(
        state,
        json!({ "TotalCount": total, "InstanceStatusSet": set }),
    )
}

/// A JSON answer with `status`.
fn json_status(status: StatusCode, value: &Value) -> Response<Body> {
    let mut resp = http_util::json(value);
    *resp.status_mut() = status;
    resp
}

/// The body of `POST /_sim/reboot`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RebootRequest {
    instance: String,
    #[serde(with = "humantime_serde", default = "two_seconds")]
    stopped: std::time::Duration,
    #[serde(with = "humantime_serde", default = "two_seconds")]
    starting: std::time::Duration,
}

fn two_seconds() -> std::time::Duration {
    std::time::Duration::from_secs(2)
}

/// `POST /_sim/reboot`: 200 `{"ok": true, …}`, 404 for an unknown instance, 409 for one
/// not running, each error as `{"error": "…"}`.
fn reboot(state: &SimState, body: &[u8]) -> Response<Body> {
    let r: RebootRequest = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return json_status(StatusCode::BAD_REQUEST, &json!({"error": e.to_string()})),
    };
    match state.reboot(&r.instance, r.stopped, r.starting) {
        Ok(()) => http_util::json(&json!({"ok": true, "instance": r.instance, "state": "STOPPED"})),
        Err(e @ super::InstanceError::Unknown(_)) => {
            json_status(StatusCode::NOT_FOUND, &json!({"error": e.to_string()}))
        }
        Err(e @ super::InstanceError::NotRunning { .. }) => {
            json_status(StatusCode::CONFLICT, &json!({"error": e.to_string()}))
        }
    }
}

/// `GET /_sim/input?instance=ins-…`: `{"instance", "total", "inputs": [...]}`, 404 for
/// an unknown instance, 400 without one.
fn input(state: &SimState, query: Option<&str>) -> Response<Body> {
    let Some(id) = query
        .unwrap_or_default()
        .split('&')
        .find_map(|kv| kv.strip_prefix("instance="))
    else {
        return json_status(
            StatusCode::BAD_REQUEST,
            &json!({"error": "the query needs instance=<id>"}),
        );
    };
    if state.instance_state(id).is_none() {
        return json_status(
            StatusCode::NOT_FOUND,
            &json!({"error": super::InstanceError::Unknown(id.to_owned()).to_string()}),
        );
    }
    http_util::json(&json!({
        "instance": id,
        "total": state.input_total(id),
        "inputs": state.input_log(id),
    }))
}

/// `/_sim/faults` (GET or POST JSON), `/_sim/stats`, `/_sim/tokens` (recently minted
/// tokens, for replay tests), `/_sim/instances` (POST one instance),
/// `/_sim/clock` (POST `{"offset": seconds}`), `/_sim/reboot` (POST
/// `{"instance", "stopped", "starting"}`), `/_sim/input?instance=…` (GET): knobs for
/// tests outside the process.
async fn control(state: &SimState, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let method = req.method().clone();
    let body = match http_util::read_body(req.into_body(), 64 * 1024).await {
        Ok(b) => b,
        Err(e) => return http_util::text(StatusCode::PAYLOAD_TOO_LARGE, e),
    };
    let bad = |e: serde_json::Error| http_util::text(StatusCode::BAD_REQUEST, format!("{e}\n"));
    match (method, path.as_str()) {
        (Method::GET, "/_sim/stats") => http_util::json(&json!(state.stats())),
        (Method::GET, "/_sim/tokens") => http_util::json(&json!(state.minted_tokens())),
        (Method::GET, "/_sim/faults") => http_util::json(&json!(state.faults())),
        (Method::POST, "/_sim/faults") => match serde_json::from_slice(&body) {
            Ok(f) => {
                state.set_faults(f);
                http_util::json(&json!(state.faults()))
            }
            Err(e) => bad(e),
        },
        (Method::POST, "/_sim/instances") => match serde_json::from_slice(&body) {
            Ok(i) => {
                state.put_instance(i);
                http_util::json(&json!({"ok": true}))
            }
            Err(e) => bad(e),
        },
        (Method::POST, "/_sim/reboot") => reboot(state, &body),
        (Method::GET, "/_sim/input") => input(state, query.as_deref()),
        (Method::POST, "/_sim/clock") => match serde_json::from_slice::<Value>(&body) {
            Ok(v) => {
                state.set_clock_offset(v.get("offset").and_then(Value::as_i64).unwrap_or(0));
                http_util::json(&json!({"ok": true}))
            }
            Err(e) => bad(e),
        },
        _ => http_util::text(StatusCode::NOT_FOUND, "unknown simulator control path\n"),
    }
}
