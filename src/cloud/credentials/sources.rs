//! Reading each source of credentials: the environment and profile files (fixed keys),
//! STS `AssumeRoleWithWebIdentity` (TKE OIDC) and the metadata service (CVM role).
//! No caching here: `refresh.rs` decides when a fetch happens.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;

use super::proxy::Clients;
use super::{without_url, ChainOptions, Credential, Env, Error};
use crate::redact::Secret;

/// Seconds before `ExpiredTime` at which CVM role credentials are refreshed.
const CVM_REFRESH_EARLY: i64 = 300;
/// Lifetime asked of STS for TKE OIDC credentials.
const TKE_DURATION: i64 = 7200;

/// TKE OIDC settings from the `TKE_*` variables.
#[derive(Clone, Debug)]
pub(super) struct Tke {
    region: String,
    provider_id: String,
    role_arn: String,
    token_file: PathBuf,
}

/// A source of temporary credentials, asked again for each refresh.
#[derive(Clone, Debug)]
pub(super) enum Source {
    /// STS `AssumeRoleWithWebIdentity` with the projected token file.
    Tke(Tke),
    /// The metadata service's credentials of this CVM role.
    CvmRole(String),
}

impl Source {
    /// The source, for messages.
    pub(super) fn name(&self) -> String {
        match self {
            Source::Tke(tke) => format!("TKE OIDC ({})", tke.role_arn),
            Source::CvmRole(role) => format!("CVM role {role}"),
        }
    }

    /// What an operator can do when the source keeps failing.
    pub(super) fn fix(&self) -> String {
        match self {
            Source::Tke(tke) => format!(
                "check TKE_ROLE_ARN, TKE_PROVIDER_ID and the token file {}, and that STS is reachable (set HTTPS_PROXY if it is only reachable through a proxy, [cloud] ca_file if that proxy intercepts TLS)",
                tke.token_file.display()
            ),
            Source::CvmRole(_) => "check that the CAM role is still bound to this instance and that the metadata service answers (it is never reached through a proxy)".to_owned(),
        }
    }

    /// Fetches fresh credentials; `now` is the server-corrected Unix time.
    pub(super) async fn fetch(
        &self,
        clients: &Clients,
        opts: &ChainOptions,
        now: i64,
    ) -> Result<Credential, Error> {
        match self {
            Source::Tke(tke) => fetch_tke(&clients.sts, opts, tke, now).await,
            Source::CvmRole(role) => fetch_cvm_role(&clients.metadata, opts, role).await,
        }
    }
}

/// Fixed credentials from `TENCENTCLOUD_SECRET_ID` / `_KEY` and a session token variable.
pub(super) fn from_env(env: &Env) -> Result<Option<Credential>, Error> {
    let id = env.get("TENCENTCLOUD_SECRET_ID");
    let key = env.get("TENCENTCLOUD_SECRET_KEY");
    let (id, key) = match (id, key) {
        (Some(id), Some(key)) => (id, key),
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err(Error::Incomplete {
                source_name: "the environment".into(),
                what: "TENCENTCLOUD_SECRET_ID is set but TENCENTCLOUD_SECRET_KEY is not".into(),
            })
        }
        (None, Some(_)) => {
            return Err(Error::Incomplete {
                source_name: "the environment".into(),
                what: "TENCENTCLOUD_SECRET_KEY is set but TENCENTCLOUD_SECRET_ID is not".into(),
            })
        }
    };
    const TOKEN_VARS: [&str; 3] = [
        "TENCENTCLOUD_SESSION_TOKEN",
        "TENCENTCLOUD_TOKEN",
        "TENCENTCLOUD_SECURITY_TOKEN",
    ];
    let tokens: Vec<(&str, &str)> = TOKEN_VARS
        .iter()
        .filter_map(|k| env.get(k).map(|v| (*k, v)))
        .collect();
    if tokens.windows(2).any(|w| w[0].1 != w[1].1) {
        let names: Vec<&str> = tokens.iter().map(|(k, _)| *k).collect();
        tracing::warn!(
            variables = %names.join(", "),
            "several session token variables are set with different values; using {}",
            names[0]
        );
    }
    Ok(Some(Credential::fixed(
        id,
        Secret::new(key),
        tokens.first().map(|(_, v)| Secret::new(*v)),
        "the environment (TENCENTCLOUD_SECRET_ID, TENCENTCLOUD_SECRET_KEY)",
    )))
}

/// Reads `[default]` of an INI profile file: values trimmed, quotes kept.
pub(super) fn from_profile(text: &str, path: &Path) -> Result<Credential, Error> {
    let mut section = String::new();
    let mut values: HashMap<&str, &str> = HashMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_owned();
            continue;
        }
        if section == "default" {
            if let Some((k, v)) = line.split_once('=') {
                values.insert(k.trim(), v.trim());
            }
        }
    }
    let source = format!("profile file {}", path.display());
    let get = |k: &str| values.get(k).copied().filter(|v| !v.is_empty());
    match (get("secret_id"), get("secret_key")) {
        (Some(id), Some(key)) => Ok(Credential::fixed(
            id,
            Secret::new(key),
            get("token").map(Secret::new),
            source,
        )),
        _ => Err(Error::Incomplete {
            source_name: source,
            what: "[default] needs secret_id and secret_key".into(),
        }),
    }
}

/// TKE OIDC settings, when all four `TKE_*` variables are set.
pub(super) fn tke_from_env(env: &Env) -> Option<Tke> {
    let token_file = env
        .get("TKE_WEB_IDENTITY_TOKEN_FILE")
        .or_else(|| env.get("TKE_IDENTITY_TOKEN_FILE"))?;
    Some(Tke {
        region: env.get("TKE_REGION")?.to_owned(),
        provider_id: env.get("TKE_PROVIDER_ID")?.to_owned(),
        role_arn: env.get("TKE_ROLE_ARN")?.to_owned(),
        token_file: PathBuf::from(token_file),
    })
}

/// The `Response` envelope shared by STS answers.
#[derive(Deserialize)]
struct Envelope<T> {
    #[serde(rename = "Response")]
    response: EnvelopeBody<T>,
}

#[derive(Deserialize)]
struct EnvelopeBody<T> {
    #[serde(rename = "Error")]
    error: Option<ApiErrorBody>,
    #[serde(flatten)]
    ok: Option<T>,
}

#[derive(Deserialize)]
struct ApiErrorBody {
    #[serde(rename = "Code")]
    code: String,
    #[serde(rename = "Message", default)]
    message: String,
}

#[derive(Deserialize)]
struct StsAnswer {
    #[serde(rename = "Credentials")]
    credentials: StsCredentials,
    #[serde(rename = "ExpiredTime")]
    expired_time: i64,
}

#[derive(Deserialize)]
struct StsCredentials {
    #[serde(rename = "Token")]
    token: String,
    #[serde(rename = "TmpSecretId")]
    tmp_secret_id: String,
    #[serde(rename = "TmpSecretKey")]
    tmp_secret_key: String,
}

async fn fetch_tke(
    http: &reqwest::Client,
    opts: &ChainOptions,
    tke: &Tke,
    now: i64,
) -> Result<Credential, Error> {
    let source_name = format!("TKE OIDC ({})", tke.role_arn);
    let fail = |cause: String| Error::Fetch {
        source_name: source_name.clone(),
        cause,
    };
    // Re-read every time: the kubelet rotates the projected token.
    let web_token = tokio::fs::read_to_string(&tke.token_file)
        .await
        .map_err(|e| Error::File {
            path: tke.token_file.clone(),
            cause: e.to_string(),
        })?;
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros());
    let body = serde_json::json!({
        "ProviderId": tke.provider_id,
        "WebIdentityToken": web_token.trim(),
        "RoleArn": tke.role_arn,
        "RoleSessionName": format!("tcvnc-{micros}"),
        "DurationSeconds": TKE_DURATION,
    });
    let resp = http
        .post(format!("{}/", opts.sts_endpoint.trim_end_matches('/')))
        .header("Authorization", "SKIP")
        .header("Content-Type", "application/json")
        .header("X-TC-Action", "AssumeRoleWithWebIdentity")
        .header("X-TC-Version", "2018-08-13")
        .header("X-TC-Region", &tke.region)
        .header("X-TC-Timestamp", now.to_string())
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| fail(format!("request failed: {}", without_url(&e))))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP status {}", resp.status().as_u16())));
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| fail(format!("reading answer: {}", without_url(&e))))?;
    let env: Envelope<StsAnswer> =
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("unparsable answer: {e}")))?;
    if let Some(err) = env.response.error {
        return Err(fail(format!("{}: {}", err.code, err.message)));
    }
    let ans = env
        .response
        .ok
        .ok_or_else(|| fail("answer has no Credentials".into()))?;
    Ok(Credential {
        secret_id: ans.credentials.tmp_secret_id,
        secret_key: Secret::new(ans.credentials.tmp_secret_key),
        token: Some(Secret::new(ans.credentials.token)),
        expires_at: Some(ans.expired_time),
        refresh_at: Some(ans.expired_time - TKE_DURATION / 10),
        source: source_name,
    })
}

fn role_base(opts: &ChainOptions) -> String {
    format!(
        "{}/latest/meta-data/cam/security-credentials/",
        opts.metadata_endpoint.trim_end_matches('/')
    )
}

/// `Ok(None)`: the service answered 404 (no role). `Err`: not reachable.
pub(super) async fn probe_role(
    http: &reqwest::Client,
    opts: &ChainOptions,
) -> Result<Option<String>, String> {
    let resp = http
        .get(role_base(opts))
        .timeout(opts.metadata_timeout)
        .send()
        .await
        .map_err(|e| without_url(&e))?;
    match resp.status().as_u16() {
        404 => Ok(None),
        200 => {
            let text = resp.text().await.map_err(|e| without_url(&e))?;
            let role = text.lines().next().unwrap_or_default().trim().to_owned();
            if role.is_empty() {
                Ok(None)
            } else {
                Ok(Some(role))
            }
        }
        s => Err(format!("HTTP status {s}")),
    }
}

#[derive(Deserialize)]
struct RoleAnswer {
    #[serde(rename = "TmpSecretId")]
    tmp_secret_id: Option<String>,
    #[serde(rename = "TmpSecretKey")]
    tmp_secret_key: Option<String>,
    #[serde(rename = "Token")]
    token: Option<String>,
    #[serde(rename = "ExpiredTime")]
    expired_time: Option<i64>,
    #[serde(rename = "Code")]
    code: String,
}

async fn fetch_cvm_role(
    http: &reqwest::Client,
    opts: &ChainOptions,
    role: &str,
) -> Result<Credential, Error> {
    let source_name = format!("CVM role {role}");
    let fail = |cause: String| Error::Fetch {
        source_name: source_name.clone(),
        cause,
    };
    let resp = http
        .get(format!("{}{role}", role_base(opts)))
        .send()
        .await
        .map_err(|e| fail(format!("metadata request failed: {}", without_url(&e))))?;
    if !resp.status().is_success() {
        return Err(fail(format!(
            "metadata HTTP status {}",
            resp.status().as_u16()
        )));
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| fail(format!("reading metadata: {}", without_url(&e))))?;
    let ans: RoleAnswer =
        serde_json::from_slice(&bytes).map_err(|e| fail(format!("unparsable metadata: {e}")))?;
    if ans.code != "Success" {
        return Err(fail(format!("metadata Code is {:?}", ans.code)));
    }
    match (
        ans.tmp_secret_id,
        ans.tmp_secret_key,
        ans.token,
        ans.expired_time,
    ) {
        (Some(id), Some(key), Some(token), Some(exp)) => Ok(Credential {
            secret_id: id,
            secret_key: Secret::new(key),
            token: Some(Secret::new(token)),
            expires_at: Some(exp),
            refresh_at: Some(exp - CVM_REFRESH_EARLY),
            source: source_name,
        }),
        _ => Err(fail(
            "metadata answer lacks TmpSecretId, TmpSecretKey, Token or ExpiredTime".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_reads_default_only_and_keeps_quotes() {
        let text = "[other]\nsecret_id = nope\n[default]\n secret_id = AKIDabc \nsecret_key = \"quoted\"\ntoken = tok\n";
        let c = from_profile(text, Path::new("/p")).expect("parses");
        assert_eq!(c.secret_id, "AKIDabc");
        assert_eq!(c.secret_key.expose(), "\"quoted\"");
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("tok"));
        assert!(from_profile("[other]\nsecret_id=a\nsecret_key=b\n", Path::new("/p")).is_err());
    }

    #[test]
    fn env_token_order_and_half_pairs() {
        let env = Env::from_pairs([
            ("TENCENTCLOUD_SECRET_ID", "AKIDenv"),
            ("TENCENTCLOUD_SECRET_KEY", "k"),
            ("TENCENTCLOUD_TOKEN", "t2"),
            ("TENCENTCLOUD_SECURITY_TOKEN", "t3"),
        ]);
        let c = from_env(&env).expect("ok").expect("some");
        assert_eq!(c.token.as_ref().map(Secret::expose), Some("t2"));
        let env = Env::from_pairs([
            ("TENCENTCLOUD_SECRET_ID", "AKIDenv"),
            ("TENCENTCLOUD_SECRET_KEY", ""),
        ]);
        assert!(matches!(from_env(&env), Err(Error::Incomplete { .. })));
        assert!(from_env(&Env::default()).expect("ok").is_none());
    }
}
