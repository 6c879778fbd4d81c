//! Configuration reload (SIGHUP): refuse what cannot change live, bind the new listeners,
//! put the new config in force, stop the old listeners. All or nothing: a refused reload
//! changes nothing, and live sessions keep the config they started with either way.

use std::path::Path;
use std::sync::Arc;

use crate::app::App;
use crate::config::{Config, ConfigError, Target};
use crate::listen::{ListenError, ListenerChanges, ListenerRegistry};
use crate::redact::Secret;

/// What a reload changed (names only: nothing secret).
#[derive(Debug, Clone, Default)]
pub struct ReloadReport {
    /// Instances of targets the new config adds.
    pub added: Vec<String>,
    /// Instances of targets it removes.
    pub removed: Vec<String>,
    /// Instances of targets whose settings changed (region, listen, on_busy, passwords,
    /// transparent).
    pub changed: Vec<String>,
    /// Other parts that changed: `budget`, `session`, `http`, `upstream`, `cloud.region`,
    /// `discovery`.
    pub sections: Vec<&'static str>,
    /// Listeners started and stopped.
    pub listeners: ListenerChanges,
}

/// Why a reload was refused (the previous config stays in force).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new file is unreadable or invalid.
    #[error("config error: {0}")]
    Config(#[from] ConfigError),
    /// The new config changes settings only a restart can apply.
    #[error("the new configuration changes {} which only a restart applies: restart tcvnc (systemctl restart tcvnc), or put those settings back and reload", .0.join(", "))]
    NeedsRestart(Vec<String>),
    /// A new listener cannot be bound (or a systemd socket would be exposed).
    #[error("{0}")]
    Listen(#[from] ListenError),
    /// Reading the file failed in a way that is not the file's fault.
    #[error("cannot load the configuration: {0}")]
    Load(String),
}

fn same_secret(a: Option<&Secret>, b: Option<&Secret>) -> bool {
    a.map(Secret::expose) == b.map(Secret::expose)
}

/// The settings of `new` that differ from `old` and are fixed at startup: the cloud
/// client (`[cloud]` but its default region, `[credentials]`), the upstream dialer
/// (`[upstream]` origin, subprotocols, ca_file, connect_timeout) and the HTTP
/// listener's presence and address (unless systemd passed it).
fn restart_needed(old: &Config, new: &Config, http_inherited: bool) -> Vec<String> {
    let mut out = Vec::new();
    let (oc, nc) = (&old.cloud, &new.cloud);
    for (changed, what) in [
        (oc.product != nc.product, "[cloud] product"),
        (oc.endpoints != nc.endpoints, "[cloud] endpoint"),
        (
            oc.connect_timeout != nc.connect_timeout,
            "[cloud] connect_timeout",
        ),
        (oc.timeout != nc.timeout, "[cloud] timeout"),
        (oc.ca_file != nc.ca_file, "[cloud] ca_file"),
    ] {
        if changed {
            out.push(what.to_owned());
        }
    }
    let (og, ng) = (&old.credentials, &new.credentials);
    if og.given.secret_id != ng.given.secret_id
        || !same_secret(og.given.secret_key.as_ref(), ng.given.secret_key.as_ref())
        || !same_secret(og.given.token.as_ref(), ng.given.token.as_ref())
        || og.metadata_endpoint != ng.metadata_endpoint
        || og.sts_endpoint != ng.sts_endpoint
    {
        out.push("[credentials]".to_owned());
    }
    let (ou, nu) = (&old.upstream, &new.upstream);
    for (changed, what) in [
        (ou.origin != nu.origin, "[upstream] origin"),
        (
            ou.subprotocols != nu.subprotocols,
            "[upstream] subprotocols",
        ),
        (ou.ca_file != nu.ca_file, "[upstream] ca_file"),
        (
            ou.connect_timeout != nu.connect_timeout,
            "[upstream] connect_timeout",
        ),
    ] {
        if changed {
            out.push(what.to_owned());
        }
    }
    if old.fleet != new.fleet {
        out.push("[fleet]".to_owned());
    }
    match (&old.http, &new.http) {
        (None, Some(_)) => out.push("[http] (added)".to_owned()),
        (Some(_), None) => out.push("[http] (removed)".to_owned()),
        (Some(o), Some(n)) if o.listen != n.listen && !http_inherited => {
            out.push(format!("[http] listen ({} -> {})", o.listen, n.listen));
        }
        _ => {}
    }
    out
}

fn same_target(a: &Target, b: &Target) -> bool {
    a.region == b.region
        && a.listen == b.listen
        && a.on_busy == b.on_busy
        && a.mode == b.mode
        && a.linger == b.linger
        && a.resume_timeout == b.resume_timeout
        && same_secret(a.password.as_ref(), b.password.as_ref())
        && same_secret(a.upstream_password.as_ref(), b.upstream_password.as_ref())
        && same_secret(a.view_password.as_ref(), b.view_password.as_ref())
}

fn diff(old: &Config, new: &Config) -> ReloadReport {
    let mut r = ReloadReport::default();
    for t in &new.targets {
        match old.target(&t.instance) {
            None => r.added.push(t.instance.clone()),
            Some(o) if !same_target(o, t) => r.changed.push(t.instance.clone()),
            Some(_) => {}
        }
    }
    r.removed = old
        .targets
        .iter()
        .filter(|t| new.target(&t.instance).is_none())
        .map(|t| t.instance.clone())
        .collect();
    let (ob, nb) = (&old.budget, &new.budget);
    if ob.reconnects_per_minute != nb.reconnects_per_minute
        || ob.api_requests_per_second != nb.api_requests_per_second
        || ob.max_wait != nb.max_wait
    {
        r.sections.push("budget");
    }
    // SessionConfig holds numbers and durations only: its Debug text is a faithful key.
    if format!("{:?}", old.session) != format!("{:?}", new.session) {
        r.sections.push("session");
    }
    if let (Some(o), Some(n)) = (&old.http, &new.http) {
        if o.allowed_origins != n.allowed_origins
            || o.allowed_hosts != n.allowed_hosts
            || o.web_root != n.web_root
            || !same_secret(o.token.as_ref(), n.token.as_ref())
            || !same_secret(o.view_token.as_ref(), n.view_token.as_ref())
        {
            r.sections.push("http");
        }
    }
    if old.upstream.keepalive != new.upstream.keepalive
        || old.upstream.max_unanswered_pings != new.upstream.max_unanswered_pings
    {
        r.sections.push("upstream");
    }
    if old.cloud.region != new.cloud.region {
        r.sections.push("cloud.region");
    }
    if old.discovery != new.discovery {
        r.sections.push("discovery");
    }
    r
}

/// Puts `new` in force: refuses it when it changes what only a restart applies, binds
/// the listeners it adds or moves (any failure refuses the whole reload, with nothing
/// changed), swaps the config, then stops the listeners of removed or moved targets.
/// Live sessions keep their config and run on.
///
/// # Errors
/// [`ReloadError::NeedsRestart`] or [`ReloadError::Listen`]; the old config stays.
pub async fn reload(
    app: &Arc<App>,
    listeners: &mut ListenerRegistry,
    new: Config,
) -> Result<ReloadReport, ReloadError> {
    let old = app.config();
    let http_inherited = listeners.http().is_some_and(|(_, inherited)| inherited);
    let restart = restart_needed(&old, &new, http_inherited);
    if !restart.is_empty() {
        return Err(ReloadError::NeedsRestart(restart));
    }
    let plan = listeners.prepare(&new).await?;
    let mut report = diff(&old, &new);
    app.replace_config(new);
    if report.sections.contains(&"discovery") {
        // List with the new filters now, not at the end of the old interval.
        app.discovery.refresh_now();
    }
    report.listeners = listeners.commit(plan).await;
    Ok(report)
}

/// Reads `path` (off the runtime's threads), logs the config's lints, and [`reload`]s.
///
/// # Errors
/// [`ReloadError::Config`] for an unreadable or invalid file, else as [`reload`].
pub async fn reload_file(
    app: &Arc<App>,
    listeners: &mut ListenerRegistry,
    path: &Path,
) -> Result<ReloadReport, ReloadError> {
    let p = path.to_owned();
    let new = tokio::task::spawn_blocking(move || Config::load(&p))
        .await
        .map_err(|e| ReloadError::Load(e.to_string()))??;
    for lint in new.lints() {
        tracing::warn!("{lint}");
    }
    reload(app, listeners, new).await
}

/// One reload request (SIGHUP): tells systemd (`RELOADING=1`, then `READY=1`), reloads
/// `path`, and logs the outcome: the listeners started and stopped, then one info line
/// `configuration reloaded` naming what changed, or one error line saying why the
/// reload was refused.
pub async fn on_request(app: &Arc<App>, listeners: &mut ListenerRegistry, path: &Path) {
    tracing::info!(file = %path.display(), "SIGHUP received; reloading the configuration");
    crate::systemd::notify_reloading();
    match reload_file(app, listeners, path).await {
        Ok(r) => {
            for (instance, address) in &r.listeners.stopped {
                tracing::info!(listener = %format!("tcp {instance}"), %address, "listener stopped; its sessions continue");
            }
            for (instance, address) in &r.listeners.started {
                tracing::info!(listener = %format!("tcp {instance}"), %address, "listening");
            }
            for name in &r.listeners.orphaned {
                tracing::warn!(socket = %name, "the socket systemd passed for {name} matches no target now; its connections are closed until a [[target]] {name} returns (or remove it from the socket unit)");
            }
            tracing::info!(
                file = %path.display(),
                added = ?r.added,
                removed = ?r.removed,
                changed = ?r.changed,
                sections = ?r.sections,
                sessions = app.live_sessions().len(),
                "configuration reloaded"
            );
        }
        Err(e) => tracing::error!(
            file = %path.display(),
            error = %e,
            "configuration reload refused; the previous configuration stays in force"
        ),
    }
    crate::systemd::notify_ready(app.live_sessions().len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> Config {
        let text = format!(
            "[cloud]\nregion = \"ap-guangzhou\"\n[credentials]\nsecret_id = \"AKIDx\"\nsecret_key = \"k1\"\n[http]\nlisten = \"127.0.0.1:6080\"\n{extra}"
        );
        Config::parse(&text, "t.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every setting fixed at startup is named; live-applicable ones are not.
    #[test]
    fn restart_needed_names_fixed_settings_only() {
        let base = cfg("");
        assert!(restart_needed(&base, &cfg(""), false).is_empty());
        let text = "[cloud]\nregion = \"ap-beijing\"\ntimeout = \"7s\"\n[credentials]\nsecret_id = \"AKIDx\"\nsecret_key = \"k2\"\n[upstream]\norigin = \"https://x.example\"\n[http]\nlisten = \"127.0.0.1:6081\"\n";
        let new = Config::parse(text, "t.toml", Path::new(".")).unwrap_or_else(|e| panic!("{e}"));
        let got = restart_needed(&base, &new, false);
        assert_eq!(
            got,
            [
                "[cloud] timeout",
                "[credentials]",
                "[upstream] origin",
                "[http] listen (127.0.0.1:6080 -> 127.0.0.1:6081)"
            ],
        );
        assert!(
            !got.iter().any(|g| g.contains("k2")),
            "no secret in the text"
        );
        assert_eq!(
            restart_needed(&base, &new, true).len(),
            3,
            "a systemd socket stays"
        );
        let budget = cfg("[budget]\nreconnects_per_minute = 5\n[session]\nmax_sessions = 3\n");
        assert!(restart_needed(&base, &budget, false).is_empty());
    }

    /// Targets added, removed and changed, and the sections that changed.
    #[test]
    fn diff_names_targets_and_sections() {
        let old = cfg(
            "[[target]]\ninstance = \"ins-aaaaaaaa\"\n[[target]]\ninstance = \"ins-bbbbbbbb\"\n",
        );
        let new = cfg("[budget]\nmax_wait = \"3s\"\n[[target]]\ninstance = \"ins-aaaaaaaa\"\non_busy = \"takeover\"\n[[target]]\ninstance = \"ins-cccccccc\"\n");
        let r = diff(&old, &new);
        assert_eq!(r.added, ["ins-cccccccc"]);
        assert_eq!(r.removed, ["ins-bbbbbbbb"]);
        assert_eq!(r.changed, ["ins-aaaaaaaa"]);
        assert_eq!(r.sections, ["budget"]);
    }
}
