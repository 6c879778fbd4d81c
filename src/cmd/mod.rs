//! The subcommands behind `main`, one file each; every one returns a [`CmdError`] that
//! carries its exit code.

mod check;
mod connect;
#[cfg(feature = "sim")]
mod demo;
mod docs;
mod health;
mod serve;
#[cfg(feature = "sim")]
mod sim;
mod url;

pub use crate::exit::CmdError;

use crate::cli::Command;

/// Runs one subcommand.
///
/// # Errors
/// [`CmdError`] with the exit code.
pub async fn run(cmd: Command) -> Result<(), CmdError> {
    match cmd {
        Command::Serve { config } => serve::run(config.as_deref()).await,
        #[cfg(feature = "sim")]
        Command::Demo { tcp, http, backend } => demo::run(tcp, http, backend).await,
        #[cfg(not(feature = "sim"))]
        Command::Demo { .. } | Command::Sim { .. } => Err(without_sim()),
        #[cfg(feature = "sim")]
        Command::Sim {
            api,
            gateway,
            backend,
            secret_id,
            secret_key,
            instances,
            ca_file,
        } => {
            sim::run(sim::Args {
                api,
                gateway,
                backend,
                secret_id,
                secret_key,
                instances,
                ca_file,
            })
            .await
        }
        Command::Url {
            instance,
            region,
            config,
            endpoint,
        } => url::run(&instance, region, config.as_deref(), endpoint.as_deref()).await,
        Command::Check { config } => check::run(config.as_deref()).await,
        Command::Health { url } => health::run(&url).await,
        Command::Completions { shell } => docs::completions(shell),
        Command::Man => docs::man(),
        Command::Connect {
            instance,
            region,
            viewer,
            config,
        } => connect::run(&instance, region, viewer, config.as_deref()).await,
    }
}

/// `demo` and `sim` in a build without the simulator.
#[cfg(not(feature = "sim"))]
fn without_sim() -> CmdError {
    CmdError::Usage(
        "this tcvnc was built without the simulator (cargo feature `sim`): `tcvnc demo` and `tcvnc sim` need a build with the default features (`cargo build --release`)".into(),
    )
}

/// The config of a one-shot command: `path`, else the first default path, else defaults.
fn load_config(path: Option<&std::path::Path>) -> Result<crate::config::Config, CmdError> {
    Ok(crate::config::Config::locate(path)?.unwrap_or_else(crate::config::Config::defaults))
}

/// Refuses an instance id that cannot be one of the configured product's.
fn check_instance(cfg: &crate::config::Config, instance: &str) -> Result<(), CmdError> {
    if crate::cloud::instance_id_valid(cfg.cloud.product, instance) {
        return Ok(());
    }
    Err(CmdError::Usage(format!(
        "'{instance}' is not a valid {} instance ID: expected {}xxxxxxxx",
        cfg.cloud.product.service(),
        cfg.cloud.product.id_prefix()
    )))
}

/// The region for `instance`: the flag, its target, `[cloud] region`, else
/// `TENCENTCLOUD_REGION`.
fn region_for(
    cfg: &crate::config::Config,
    instance: &str,
    flag: Option<String>,
    env: &crate::cloud::credentials::Env,
) -> Result<String, CmdError> {
    flag.or_else(|| cfg.target(instance).map(|t| t.region.clone()))
        .or_else(|| cfg.cloud.region.clone())
        .or_else(|| env.get("TENCENTCLOUD_REGION").map(str::to_owned))
        .ok_or_else(|| {
            CmdError::Usage(format!(
                "no region for {instance}: pass --region, set [cloud] region, or TENCENTCLOUD_REGION"
            ))
        })
}
