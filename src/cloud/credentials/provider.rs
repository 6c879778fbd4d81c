//! [`Provider`]: walks the chain once, then answers callers from the cache the refresh
//! task keeps. A caller waits only when nothing valid is cached and a fetch is in
//! flight (bounded by `ChainOptions::fetch_wait`); during a backoff step it gets the
//! last error at once.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{watch, Notify};
use tokio_util::sync::DropGuard;

use super::proxy::{Clients, Proxies};
use super::refresh::{self, Phase, Shared, Status};
use super::sources::{self, Source};
use super::{ChainOptions, ConfigCredentials, Credential, Env, Error};

/// The resolved source of credentials, with its cache and (for temporary credentials)
/// its background refresh task.
pub struct Provider {
    shared: Arc<Shared>,
    /// Cancels the refresh task when the provider is dropped (held for its drop).
    _stop: Option<DropGuard>,
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("source", &self.shared.description)
            .finish_non_exhaustive()
    }
}

/// What to do about rejected fixed credentials from `source`.
fn fixed_fix(source: &str) -> String {
    if source.contains("environment") {
        "set valid TENCENTCLOUD_SECRET_ID and TENCENTCLOUD_SECRET_KEY (and a current TENCENTCLOUD_SESSION_TOKEN, or none) and restart tcvnc".to_owned()
    } else if source.contains("config") {
        "put valid keys in [credentials] (secret_id, secret_key_file, and token_file only for a current session token) and reload tcvnc".to_owned()
    } else {
        format!("replace the keys (and any session token) in {source} and restart tcvnc")
    }
}

impl Provider {
    /// A provider that always returns `cred`; the cloud rejecting it is final.
    ///
    /// # Errors
    /// None today; kept fallible for symmetry with [`Provider::resolve`].
    pub fn fixed(cred: Credential, opts: ChainOptions) -> Result<Self, Error> {
        let description = cred.source.clone();
        let fix = fixed_fix(&description);
        let status = Status {
            credential: Some(Arc::new(cred)),
            phase: Phase::Idle,
            fetches: 0,
            last_error: None,
        };
        Ok(Provider {
            shared: Arc::new(Shared {
                source: None,
                clients: None,
                opts,
                status: watch::channel(status).0,
                kick: Notify::new(),
                fetches_started: AtomicU64::new(0),
                clock_offset: Arc::new(AtomicI64::new(0)),
                description,
                fix,
            }),
            _stop: None,
        })
    }

    /// A provider of temporary credentials from `source`: fetches once now (so that a
    /// broken source fails at start), then starts the refresh task on `opts.shutdown`.
    async fn temporary(
        source: Source,
        clients: Clients,
        opts: ChainOptions,
    ) -> Result<Self, Error> {
        let status = Status {
            credential: None,
            phase: Phase::Fetching,
            fetches: 0,
            last_error: None,
        };
        let shared = Arc::new(Shared {
            description: source.name(),
            fix: source.fix(),
            source: Some(source),
            clients: Some(clients),
            status: watch::channel(status).0,
            kick: Notify::new(),
            fetches_started: AtomicU64::new(0),
            clock_offset: Arc::new(AtomicI64::new(0)),
            opts,
        });
        let first = Arc::new(shared.fetch_once().await?);
        shared.status.send_modify(|s| {
            s.credential = Some(first);
            s.phase = Phase::Idle;
            s.fetches = 1;
        });
        let stop = shared.opts.shutdown.token().child_token();
        shared
            .opts
            .shutdown
            .spawn(refresh::run(shared.clone(), stop.clone()));
        Ok(Provider {
            shared,
            _stop: Some(stop.drop_guard()),
        })
    }

    /// Walks the chain and returns the first source that has credentials. Temporary
    /// credentials are fetched once here, so that a broken source fails at start. STS is
    /// reached through `HTTPS_PROXY` from `env` (unless `NO_PROXY` excludes it); the
    /// metadata service never through a proxy.
    ///
    /// # Errors
    /// [`Error::NotFound`] listing what was tried, or the error of the first source that
    /// is present but broken.
    pub async fn resolve(
        cfg: &ConfigCredentials,
        env: &Env,
        opts: ChainOptions,
    ) -> Result<Self, Error> {
        let mut tried = Vec::new();
        // 1. config
        match (&cfg.secret_id, &cfg.secret_key) {
            (Some(id), Some(key)) => {
                let cred = Credential::fixed(
                    id,
                    key.clone(),
                    cfg.token.clone(),
                    "the config file ([credentials])",
                );
                return Self::fixed(cred, opts);
            }
            (None, None) => tried.push("config: no [credentials]".to_owned()),
            _ => {
                return Err(Error::Incomplete {
                    source_name: "the config file ([credentials])".into(),
                    what: "set both secret_id and secret_key (or secret_key_file)".into(),
                })
            }
        }
        // 2. environment
        if let Some(cred) = sources::from_env(env)? {
            return Self::fixed(cred, opts);
        }
        tried.push("environment: TENCENTCLOUD_SECRET_ID not set".to_owned());
        // 3. profile file
        let (profile, explicit) = match env.get("TENCENTCLOUD_CREDENTIALS_FILE") {
            Some(p) => (Some(PathBuf::from(p)), true),
            None if env.is_set("TENCENTCLOUD_CREDENTIALS_FILE") => {
                return Err(Error::Incomplete {
                    source_name: "environment".into(),
                    what: "TENCENTCLOUD_CREDENTIALS_FILE is set but empty".into(),
                })
            }
            None => (None, false),
        };
        let candidates: Vec<PathBuf> = match profile {
            Some(p) => vec![p],
            None => env
                .get("HOME")
                .map(|h| Path::new(h).join(".tencentcloud/credentials"))
                .into_iter()
                .chain(std::iter::once(opts.etc_profile.clone()))
                .collect(),
        };
        for path in candidates {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    let cred = sources::from_profile(&text, &path)?;
                    return Self::fixed(cred, opts);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                    tried.push(format!("profile {}: absent", path.display()));
                }
                Err(e) => {
                    return Err(Error::File {
                        path,
                        cause: e.to_string(),
                    })
                }
            }
        }
        let clients = Clients::new(&opts, &Proxies::from_env(env)?)?;
        // 4. TKE OIDC, when all of it is configured
        if let Some(tke) = sources::tke_from_env(env) {
            return Self::temporary(Source::Tke(tke), clients, opts).await;
        }
        tried.push("TKE OIDC: TKE_* not set".to_owned());
        // 5. CVM role from the metadata service
        match sources::probe_role(&clients.metadata, &opts).await {
            Ok(Some(role)) => Self::temporary(Source::CvmRole(role), clients, opts).await,
            Ok(None) => {
                tried.push("CVM role: none bound to this instance".to_owned());
                Err(Error::NotFound {
                    tried: tried.join("; "),
                })
            }
            Err(cause) => {
                tried.push(format!("CVM role: metadata service unreachable ({cause})"));
                Err(Error::NotFound {
                    tried: tried.join("; "),
                })
            }
        }
    }

    /// Where the credentials come from.
    pub fn description(&self) -> &str {
        &self.shared.description
    }

    /// How many times temporary credentials were fetched (attempts started).
    pub fn fetch_count(&self) -> u64 {
        self.shared.fetches_started.load(Ordering::Relaxed)
    }

    /// Whether the source can be asked for new credentials (TKE OIDC, CVM role).
    pub fn can_refresh(&self) -> bool {
        self.shared.source.is_some()
    }

    /// Seconds to add to the local clock to get the API server's. The API client
    /// shares it: it signs with it and stores what `AuthFailure.SignatureExpire`
    /// teaches; the provider judges expiry with it.
    pub fn clock_offset(&self) -> &Arc<AtomicI64> {
        &self.shared.clock_offset
    }

    /// The cache and the refresher's phase, updated after every fetch.
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.shared.status.subscribe()
    }

    /// Current credentials. Returns at once while valid ones are cached (the refresh
    /// task renews them before expiry); otherwise waits for the fetch in flight, at most
    /// `fetch_wait`; during a backoff step it fails at once with the last error.
    ///
    /// # Errors
    /// [`Error::Unavailable`] naming the source, the cause and the fix.
    pub async fn get(&self) -> Result<Arc<Credential>, Error> {
        let mut rx = self.shared.status.subscribe();
        let seen = {
            let status = rx.borrow_and_update();
            let now = self.shared.now();
            if let Some(cred) = status.credential.as_ref().filter(|c| !c.expired(now)) {
                if cred.needs_refresh(now) && status.phase == Phase::Idle {
                    // Lets the task re-plan on the current server clock; never waits.
                    self.shared.kick.notify_one();
                }
                return Ok(cred.clone());
            }
            if matches!(status.phase, Phase::Backoff { .. } | Phase::Stopped)
                || self.shared.source.is_none()
            {
                return Err(self.shared.unavailable(&status));
            }
            status.fetches
        };
        self.shared.kick.notify_one();
        let shared = &self.shared;
        let settled = rx.wait_for(|s| {
            let now = shared.now();
            s.credential.as_ref().is_some_and(|c| !c.expired(now))
                || s.fetches > seen
                || s.phase == Phase::Stopped
        });
        let outcome = match tokio::time::timeout(shared.opts.fetch_wait, settled).await {
            Ok(Ok(status)) => {
                let now = shared.now();
                match status.credential.as_ref().filter(|c| !c.expired(now)) {
                    Some(cred) => Ok(cred.clone()),
                    None => Err(shared.unavailable(&status)),
                }
            }
            Ok(Err(_)) => Err(shared.unavailable(&shared.status.borrow())),
            Err(_) => Err(Error::Unavailable {
                source_name: shared.description.clone(),
                cause: format!(
                    "no answer within {} s",
                    shared.opts.fetch_wait.as_secs_f64()
                ),
                fix: shared.fix.clone(),
            }),
        };
        outcome
    }

    /// The cloud rejected `rejected`. Fixed credentials cannot be refreshed: the
    /// rejection is final ([`Error::Rejected`]), never a resend of the same request.
    /// Temporary ones are dropped from the cache (if still there) and fetched anew by
    /// the refresh task; concurrent callers share that fetch, and during a backoff step
    /// the last error comes back at once.
    ///
    /// # Errors
    /// [`Error::Rejected`] for fixed credentials; [`Error::Unavailable`] when the fetch
    /// fails.
    pub async fn refresh_after_rejection(
        &self,
        rejected: &Arc<Credential>,
    ) -> Result<Arc<Credential>, Error> {
        if !self.can_refresh() {
            return Err(Error::Rejected {
                source_name: self.shared.description.clone(),
                fix: self.shared.fix.clone(),
            });
        }
        self.shared.status.send_if_modified(|s| {
            let same = s
                .credential
                .as_ref()
                .is_some_and(|c| Arc::ptr_eq(c, rejected));
            if same {
                s.credential = None;
            }
            same
        });
        self.get().await
    }
}
