//! `tcvnc url INSTANCE`: mint one console URL and print the browser console address. At
//! most one URL per run, plus one retry of an unknown outcome.

use std::path::Path;

use super::{check_instance, load_config, region_for, CmdError};
use crate::cloud;
use crate::cloud::credentials::Env;
use crate::session::mint::{self, MintError};

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
    check_instance(&cfg, instance)?;
    let env = Env::from_process();
    let region = region_for(&cfg, instance, region, &env)?;
    let client = crate::app::cloud_client(&cfg, endpoint, &env, None).await?;
    let got = mint::mint(&client, None, instance, &region)
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
