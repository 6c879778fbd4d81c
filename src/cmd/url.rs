//! `tcvnc url INSTANCE`: mint one console URL and print the browser console address. At
//! most one URL per run, plus one retry of an unknown outcome. INSTANCE is an id or a
//! name (resolved through `DescribeInstances` first, which spends no URL).

use std::path::Path;

use super::{is_name, load_config, target_by_id, target_by_name, CmdError};
use crate::cloud;
use crate::cloud::credentials::Env;
use crate::mint::{self, MintError};

/// Mints and prints.
pub(super) async fn run(
    instance: &str,
    region: Option<String>,
    config: Option<&Path>,
    endpoint: Option<&str>,
) -> Result<(), CmdError> {
    let cfg = load_config(config)?;
    let endpoint = endpoint
        .map(cloud::parse_endpoint)
        .transpose()
        .map_err(|m| CmdError::Usage(format!("--endpoint: {m}")))?;
    let env = Env::from_process();
    let (client, target) = if is_name(&cfg, instance) {
        let client = crate::app::cloud_client(&cfg, endpoint, &env, None).await?;
        let target = target_by_name(&cfg, instance, region, &env, &client).await?;
        (client, target)
    } else {
        let target = target_by_id(&cfg, instance, region, &env)?;
        (
            crate::app::cloud_client(&cfg, endpoint, &env, None).await?,
            target,
        )
    };
    let instance = target.instance.as_str();
    let got = mint::mint(&client, None, instance, &target.region)
        .await
        .map_err(|e| match e {
            MintError::Cloud(c) => CmdError::from(c),
            other => CmdError::Other(other.to_string()),
        })?;
    let minted = got.minted;
    tracing::info!(instance, request_id = %minted.request_id, requests_sent = got.sent, url = %minted.url.redacted(), "console URL minted; it is valid for 15 s and works once");
    println!("{}", minted.url.console_url().expose());
    Ok(())
}
