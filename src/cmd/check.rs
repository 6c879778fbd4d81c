//! `tcvnc check`: validate the config and the credentials, report each target's state and
//! what `[discovery]` finds (through `DescribeInstances`, which spends no URL).

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
    if let Some(d) = &cfg.discovery {
        let found = crate::discovery::list::list(&client, d)
            .await
            .map_err(|e| match e {
                crate::discovery::ListError::Cloud { ref error, .. }
                    if error.is_cloud_refusal() =>
                {
                    CmdError::Refused(e.to_string())
                }
                e => CmdError::Other(e.to_string()),
            })?;
        println!(
            "discovery: {} instances in {}",
            found.len(),
            d.regions.join(", ")
        );
        for i in &found {
            println!("{}  {}  {}  {}", i.id, i.region, i.state, i.name);
        }
        for i in &found {
            let same: Vec<&str> = found
                .iter()
                .filter(|o| o.name == i.name)
                .map(|o| o.id.as_str())
                .collect();
            if same.len() > 1 && same[0] == i.id {
                println!(
                    "warning: the name {:?} is shared by {}: reach them by id",
                    i.name,
                    same.join(", ")
                );
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
