//! Simulated identity services: STS `AssumeRoleWithWebIdentity` (TKE OIDC) and the CVM
//! metadata service's role credentials. Issued keys are registered with the API, expire
//! after the configured lifetime and are then refused with `AuthFailure.TokenFailure`.
//! Tests can take both services down ([`SimState::set_identity_down`]) and count the
//! credential fetches each one answered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hyper::{Response, StatusCode};
use serde_json::{json, Value};

use super::{SimKey, SimState};
use crate::http_util::{self, Body};

/// Failure injection and counters of the identity fakes.
#[derive(Debug, Default)]
pub(crate) struct IdentityKnobs {
    /// Both services fail: STS answers `InternalError`, the metadata service HTTP 500.
    down: AtomicBool,
    /// `AssumeRoleWithWebIdentity` requests received.
    sts_requests: AtomicU64,
    /// Requests for a role's credentials received by the metadata service.
    metadata_requests: AtomicU64,
}

impl SimState {
    /// Takes STS and the metadata service down (`true`) or brings them back.
    pub fn set_identity_down(&self, down: bool) {
        self.identity_knobs.down.store(down, Ordering::Relaxed);
    }

    /// `AssumeRoleWithWebIdentity` requests received so far.
    pub fn sts_requests(&self) -> u64 {
        self.identity_knobs.sts_requests.load(Ordering::Relaxed)
    }

    /// Role-credential requests the metadata service received so far.
    pub fn metadata_requests(&self) -> u64 {
        self.identity_knobs
            .metadata_requests
            .load(Ordering::Relaxed)
    }
}

fn issue(state: &SimState) -> (String, String, String, i64) {
    let n = state.issued.fetch_add(1, Ordering::Relaxed);
    let rnd: [u8; 12] = rand::random();
    let id = format!("AKIDtmp{n:04}{}", hex::encode(&rnd[..6]));
    let key = hex::encode(rand::random::<[u8; 16]>());
    let token = format!("tok-{}", hex::encode(rand::random::<[u8; 24]>()));
    let lifetime = state.identity.lock().temp_lifetime.as_secs();
    let expires = state.now_unix() + i64::try_from(lifetime).unwrap_or(3600);
    state.add_key(SimKey {
        secret_id: id.clone(),
        secret_key: key.clone(),
        token: Some(token.clone()),
        expires_at: Some(expires),
    });
    (id, key, token, expires)
}

fn rfc3339(unix: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// `POST /` with `X-TC-Action: AssumeRoleWithWebIdentity` and `Authorization: SKIP`.
pub(crate) fn assume_role_with_web_identity(
    state: &SimState,
    headers: &HashMap<String, String>,
    body: &[u8],
) -> Response<Body> {
    let err = |code: &str, msg: &str| {
        state.count_error(code);
        http_util::json(
            &json!({"Response": {"Error": {"Code": code, "Message": msg}, "RequestId": "sts"}}),
        )
    };
    state
        .identity_knobs
        .sts_requests
        .fetch_add(1, Ordering::Relaxed);
    if state.identity_knobs.down.load(Ordering::Relaxed) {
        return err("InternalError", "injected fault: STS is down");
    }
    if headers.get("x-tc-version").map(String::as_str) != Some("2018-08-13") {
        return err("NoSuchVersion", "STS version must be 2018-08-13");
    }
    let Ok(params) = serde_json::from_slice::<Value>(body) else {
        return err("InvalidParameter", "body is not JSON");
    };
    let Some((provider, role, token)) = state.identity.lock().oidc.clone() else {
        return err(
            "InvalidParameter.WebIdentityTokenError",
            "no OIDC provider configured",
        );
    };
    let field = |k: &str| {
        params
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    if field("ProviderId") != provider || field("RoleArn") != role {
        return err(
            "InvalidParameter.ParamError",
            "unknown ProviderId or RoleArn",
        );
    }
    if field("WebIdentityToken") != token {
        return err(
            "InvalidParameter.WebIdentityTokenError",
            "web identity token invalid",
        );
    }
    if !field("RoleSessionName").starts_with("tcvnc-") && field("RoleSessionName").is_empty() {
        return err("MissingParameter", "RoleSessionName missing");
    }
    let (id, key, tok, exp) = issue(state);
    http_util::json(&json!({"Response": {
        "Credentials": {"Token": tok, "TmpSecretId": id, "TmpSecretKey": key},
        "ExpiredTime": exp,
        "Expiration": rfc3339(exp),
        "RequestId": "sts-ok",
    }}))
}

/// `GET /latest/meta-data/cam/security-credentials/[ROLE]`.
pub fn metadata(state: &SimState, path: &str) -> Response<Body> {
    let role = state.identity.lock().cvm_role.clone();
    let Some(rest) = path.strip_prefix("/latest/meta-data/cam/security-credentials/") else {
        return http_util::text(StatusCode::NOT_FOUND, "not found");
    };
    if !rest.is_empty() {
        state
            .identity_knobs
            .metadata_requests
            .fetch_add(1, Ordering::Relaxed);
    }
    if state.identity_knobs.down.load(Ordering::Relaxed) {
        return http_util::text(StatusCode::INTERNAL_SERVER_ERROR, "injected fault");
    }
    match (role, rest) {
        (None, _) => http_util::text(StatusCode::NOT_FOUND, "404 - Not Found"),
        (Some(r), "") => http_util::text(StatusCode::OK, r),
        (Some(r), asked) if asked == r => {
            let (id, key, tok, exp) = issue(state);
            http_util::json(&json!({
                "TmpSecretId": id, "TmpSecretKey": key, "Token": tok,
                "ExpiredTime": exp, "Expiration": rfc3339(exp), "Code": "Success",
            }))
        }
        _ => http_util::text(StatusCode::NOT_FOUND, "404 - Not Found"),
    }
}
