//! The subcommands behind `main`: each returns a [`CmdError`] that carries its exit code.

use std::path::Path;
use std::sync::Arc;

use crate::budget::ApiLimiter;
use crate::cli::Command;
use crate::cloud::credentials::{self, ChainOptions, Env, Provider, Proxies};
use crate::cloud::{self, ClientOptions, CloudClient, Endpoint};
use crate::config::{Config, ConfigError};
use crate::sim::{SimHandle, SimKey, SimOptions};

/// A command failure: the message and the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CmdError {
    /// Bad usage or config: exit 64.
    #[error("{0}")]
    Usage(String),
    /// The cloud refused (credentials, instance): exit 69.
    #[error("{0}")]
    Refused(String),
    /// Anything else: exit 1.
    #[error("{0}")]
    Other(String),
}

impl CmdError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CmdError::Usage(_) => 64,
            CmdError::Refused(_) => 69,
            CmdError::Other(_) => 1,
        }
    }
}

impl From<ConfigError> for CmdError {
    fn from(e: ConfigError) -> Self {
        CmdError::Usage(format!("config error: {e}"))
    }
}

impl From<cloud::Error> for CmdError {
    fn from(e: cloud::Error) -> Self {
        if e.is_cloud_refusal() {
            CmdError::Refused(e.to_string())
        } else {
            CmdError::Other(e.to_string())
        }
    }
}

impl From<credentials::Error> for CmdError {
    fn from(e: credentials::Error) -> Self {
        CmdError::Refused(e.to_string())
    }
}

/// Runs one subcommand.
///
/// # Errors
/// [`CmdError`] with the exit code.
pub async fn run(cmd: Command) -> Result<(), CmdError> {
    match cmd {
        Command::Serve { config } => crate::daemon::serve_command(config.as_deref()).await,
        Command::Demo { tcp, http, backend } => {
            crate::daemon::demo_command(tcp, http, backend).await
        }
        Command::Sim {
            api,
            gateway,
            backend,
            secret_id,
            secret_key,
            instances,
            ca_file,
        } => {
            let mut opts = SimOptions {
                api_addr: api,
                gateway_addr: gateway,
                backend,
                ca_file,
                ..SimOptions::default()
            };
            if let (Some(id), Some(key)) = (secret_id, secret_key) {
                opts.keys = vec![SimKey {
                    secret_id: id,
                    secret_key: key,
                    token: None,
                    expires_at: None,
                }];
            }
            if let Some(path) = instances {
                opts.instances = crate::sim::load_instances(&path)
                    .map_err(|e| CmdError::Usage(e.to_string()))?;
            }
            let sim = SimHandle::start(opts)
                .await
                .map_err(|e| CmdError::Other(e.to_string()))?;
            println!("{}", sim.describe());
            crate::shutdown::signal().await;
            sim.shutdown().await;
            Ok(())
        }
        Command::Url {
            instance,
            region,
            config,
            endpoint,
        } => url(&instance, region, config.as_deref(), endpoint.as_deref()).await,
        Command::Check { config } => check(config.as_deref()).await,
        Command::Health { url } => health(&url).await,
        Command::Completions { shell } => {
            let mut cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "tcvnc", &mut out);
            write_stdout(&out)
        }
        Command::Man => {
            let cmd = <crate::cli::Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut out)
                .map_err(|e| CmdError::Other(format!("cannot render the man page: {e}")))?;
            write_stdout(&out)
        }
        Command::Connect {
            instance,
            region,
            viewer,
            config,
        } => crate::daemon::connect_command(&instance, region, viewer, config.as_deref()).await,
    }
}

/// Builds the credential chain and API client for `cfg`.
///
/// # Errors
/// Credential or TLS problems, as [`CmdError`].
pub async fn cloud_client(
    cfg: &Config,
    endpoint: Option<Endpoint>,
    env: &Env,
    observer: Option<Arc<dyn crate::cloud::client::ApiObserver>>,
) -> Result<Arc<CloudClient>, CmdError> {
    cloud_client_on(
        cfg,
        endpoint,
        env,
        observer,
        crate::shutdown::Shutdown::new(),
    )
    .await
}

/// [`cloud_client`] whose background work (the credential refresh task) ends with
/// `shutdown`: the daemon's own.
///
/// # Errors
/// Credential or TLS problems, as [`CmdError`].
pub async fn cloud_client_on(
    cfg: &Config,
    endpoint: Option<Endpoint>,
    env: &Env,
    observer: Option<Arc<dyn crate::cloud::client::ApiObserver>>,
    shutdown: crate::shutdown::Shutdown,
) -> Result<Arc<CloudClient>, CmdError> {
    let tls = crate::tls::client_config(cfg.cloud.ca_file.as_deref())
        .map_err(|e| CmdError::Usage(format!("config error: cloud.ca_file: {e}")))?;
    // Proxies come from the Env snapshot, never from reqwest reading the process.
    let proxies = Proxies::from_env(env).map_err(|e| CmdError::Usage(e.to_string()))?;
    if !proxies.is_empty() {
        tracing::info!(?proxies, "the API and STS are reached through a proxy");
    }
    let mut opts = ChainOptions::new(tls.clone());
    opts.shutdown = shutdown;
    if let Some(m) = &cfg.credentials.metadata_endpoint {
        opts.metadata_endpoint = m.trim_end_matches('/').to_owned();
    }
    if let Some(s) = &cfg.credentials.sts_endpoint {
        opts.sts_endpoint = s.trim_end_matches('/').to_owned();
    }
    let provider = Provider::resolve(&cfg.credentials.given, env, opts).await?;
    tracing::info!(source = %provider.description(), "credentials loaded");
    let mut endpoints = cfg.cloud.endpoints.clone();
    if endpoint.is_some() {
        endpoints.override_endpoint = endpoint;
    }
    let client = CloudClient::new(
        cfg.cloud.product,
        endpoints,
        Arc::new(provider),
        Arc::new(ApiLimiter::new(cfg.budget.api_requests_per_second)),
        tls,
        ClientOptions {
            connect_timeout: cfg.cloud.connect_timeout,
            timeout: cfg.cloud.timeout,
            proxies,
            ..ClientOptions::default()
        },
    )?;
    let client = match observer {
        Some(o) => client.with_observer(o),
        None => client,
    };
    Ok(Arc::new(client))
}

/// The region for `instance`: flag, target, `[cloud] region`, `TENCENTCLOUD_REGION`.
fn region_for(
    cfg: &Config,
    instance: &str,
    flag: Option<String>,
    env: &Env,
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

fn load_config(path: Option<&Path>) -> Result<Config, CmdError> {
    Ok(Config::locate(path)?.unwrap_or_else(Config::defaults))
}

async fn url(
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
    if !cloud::instance_id_valid(cfg.cloud.product, instance) {
        return Err(CmdError::Usage(format!(
            "'{instance}' is not a valid {} instance ID: expected {}xxxxxxxx",
            cfg.cloud.product.service(),
            cfg.cloud.product.id_prefix()
        )));
    }
    let env = Env::from_process();
    let region = region_for(&cfg, instance, region, &env)?;
    let client = cloud_client(&cfg, endpoint, &env, None).await?;
    // At most one URL per run, plus one retry of an unknown outcome.
    let got = crate::session::mint::mint(&client, None, instance, &region)
        .await
        .map_err(|e| match e {
            crate::session::mint::MintError::Cloud(c) => CmdError::from(c),
            other => CmdError::Other(other.to_string()),
        })?;
    let minted = got.minted;
    tracing::info!(instance, request_id = %minted.request_id, requests_sent = got.sent, url = %minted.url.redacted(), "console URL minted; it is valid for 15 s and works once");
    println!("{}", minted.url.console_url().expose());
    Ok(())
}

/// Writes `bytes` to stdout; a reader that went away (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<(), CmdError> {
    use std::io::Write;
    match std::io::stdout().write_all(bytes) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CmdError::Other(format!("cannot write to stdout: {e}")))
        }
        _ => Ok(()),
    }
}

/// GET `url` (plain http) and succeed on 200; used as a container health check.
async fn health(url: &str) -> Result<(), CmdError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| CmdError::Usage(format!("{url:?}: only http:// URLs are probed")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(authority).await?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut head = vec![0u8; 64];
        let n = s.read(&mut head).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&head[..n]).into_owned())
    };
    match tokio::time::timeout(std::time::Duration::from_secs(3), probe).await {
        Ok(Ok(head)) if head.starts_with("HTTP/1.1 200") => Ok(()),
        Ok(Ok(head)) => Err(CmdError::Other(format!(
            "{url}: {}",
            head.lines().next().unwrap_or("no answer")
        ))),
        Ok(Err(e)) => Err(CmdError::Other(format!("{url}: {e}"))),
        Err(_) => Err(CmdError::Other(format!("{url}: no answer within 3 s"))),
    }
}

async fn check(config: Option<&Path>) -> Result<(), CmdError> {
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
    let client = cloud_client(&cfg, None, &env, None).await?;
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
