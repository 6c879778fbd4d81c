//! The subcommands behind `main`, one file each; every one returns a [`CmdError`] that
//! carries its exit code.

mod check;
mod connect;
#[cfg(feature = "sim")]
mod demo;
mod docs;
mod export;
mod health;
mod keys;
mod play;
mod screenshot;
mod serve;
#[cfg(feature = "sim")]
mod sim;
mod r#type;
mod url;
mod via;

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
        Command::Screenshot {
            instance,
            output,
            via,
        } => screenshot::run(&instance, output, via).await,
        Command::Type {
            instance,
            text,
            via,
        } => r#type::run(&instance, &text, via).await,
        Command::Keys {
            instance,
            combos,
            via,
        } => keys::run(&instance, &combos, via).await,
        Command::Play {
            file,
            tcp,
            http,
            speed,
            from,
        } => play::run(&file, tcp, http, speed, from.unwrap_or_default()).await,
        Command::Export {
            file,
            output,
            fps,
            interval,
        } => export::run(&file, &output, fps, interval).await,
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

/// Whether a command's INSTANCE argument is an instance name rather than an id: it does
/// not start with the product's id prefix (a malformed id stays a usage error).
fn is_name(cfg: &crate::config::Config, arg: &str) -> bool {
    !arg.is_empty() && !arg.starts_with(cfg.cloud.product.id_prefix())
}

/// The target for the instance id `instance`: its `[[target]]`, else one in the region
/// from [`region_for`].
fn target_by_id(
    cfg: &crate::config::Config,
    instance: &str,
    flag: Option<String>,
    env: &crate::cloud::credentials::Env,
) -> Result<crate::config::Target, CmdError> {
    check_instance(cfg, instance)?;
    let region = region_for(cfg, instance, flag, env)?;
    Ok(match cfg.target(instance) {
        Some(t) => crate::config::Target {
            region,
            ..t.clone()
        },
        None => crate::discovery::plain_target(instance, &region),
    })
}

/// The target for the instance named `name`, resolved as `/vnc/<name>` is: through
/// `[discovery]` when configured (its regions, or only `--region`), else among the
/// instances named so in the region from [`region_for`]. Spends no URL.
///
/// # Errors
/// A name two instances carry (64, naming both ids); no such instance (69); the
/// listing's own failure.
async fn target_by_name(
    cfg: &crate::config::Config,
    name: &str,
    flag: Option<String>,
    env: &crate::cloud::credentials::Env,
    client: &crate::cloud::CloudClient,
) -> Result<crate::config::Target, CmdError> {
    use crate::discovery::{self, list, ListError, Resolved, Snapshot};
    if name.chars().any(char::is_control) {
        return Err(CmdError::Usage(format!("{name:?} is not an instance name")));
    }
    let d = match &cfg.discovery {
        Some(d) => crate::config::DiscoveryConfig {
            regions: flag.map_or_else(|| d.regions.clone(), |r| vec![r]),
            ..d.clone()
        },
        None => crate::config::DiscoveryConfig {
            regions: vec![region_for(cfg, name, flag, env)?],
            tags: Default::default(),
            names: vec![name.to_owned()],
            refresh: std::time::Duration::from_secs(60),
        },
    };
    let found = list::list(client, &d).await.map_err(|e| match e {
        ListError::Cloud { ref error, .. } if error.is_cloud_refusal() => {
            CmdError::Refused(e.to_string())
        }
        e => CmdError::Other(e.to_string()),
    })?;
    let snap = Snapshot {
        instances: found,
        ..Snapshot::default()
    };
    match discovery::resolve(cfg, &snap, name) {
        Resolved::Target(t) => {
            tracing::info!(name, instance = %t.instance, region = %t.region, "name resolved");
            Ok(*t)
        }
        Resolved::Ambiguous(c) => Err(CmdError::Usage(discovery::ambiguous_text(name, &c))),
        Resolved::NotFound => Err(CmdError::Refused(format!(
            "no instance named {name:?} in {}{}: check the name (exact and case-sensitive) or pass the instance id",
            d.regions.join(", "),
            if cfg.discovery.is_some() {
                " among the instances [discovery] lists"
            } else {
                ""
            }
        ))),
    }
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
