//! `tcvnc check`: validate the config and the credentials, and report each target's state
//! (through `DescribeInstances`, which spends no URL).

use std::path::Path;

use super::CmdError;
use crate::cloud::credentials::Env;
use crate::config::Config;

/// Validates the config and credentials and reports each target's state.
pub(super) async fn run(config: Option<&Path>) -> Result<(), CmdError> {
    let cfg = match config {
        Some(p) => Config::load(p)?,
        None => Config::locate(None)?.ok_or_else(|| {
            CmdError::Usage(format!(
                "no config file: pass -c FILE or create one of {}",
                crate::config::DEFAULT_PATHS.join(", ")
            ))
        })?,
    };
    println!("config {}: ok ({} targets)", cfg.source, cfg.targets.len());
    for lint in cfg.lints() {
        println!("warning: {lint}");
    }
    let env = Env::from_process();
    let client = crate::app::cloud_client(&cfg, None, &env, None).await?;
    println!("credentials: {}", client.credentials().description());
    let mut missing = Vec::new();
    let mut regions: Vec<&str> = cfg.targets.iter().map(|t| t.region.as_str()).collect();
    regions.sort_unstable();
    regions.dedup();
    for region in regions {
        let ids: Vec<String> = cfg
            .targets
            .iter()
            .filter(|t| t.region == region)
            .map(|t| t.instance.clone())
            .collect();
        let found = client.describe_instances(&ids, region).await?;
        for id in &ids {
            match found.iter().find(|i| &i.id == id) {
                Some(i) => println!("{id}  {region}  {}  {}", i.state, i.name),
                None => {
                    println!("{id}  {region}  NOT FOUND");
                    missing.push(id.clone());
                }
            }
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(CmdError::Refused(format!(
            "instance(s) {} not found for this account: check the instance IDs and regions",
            missing.join(", ")
        )))
    }
}
