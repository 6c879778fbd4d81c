//! Discovery: the instances `[discovery]` finds through `DescribeInstances` ([`list`]),
//! kept as a [`Snapshot`] that a background task ([`run`]) refreshes on its interval
//! (a failed region keeps its last good list), and [`resolve`], which turns the key of
//! `/vnc/<key>`, `tcvnc url` or `tcvnc connect` (an instance id or name) into a
//! [`Target`]. `[[target]]` tables win over discovered instances; a name that matches
//! two instances resolves to neither. Spends no URL; does not serve or connect anything.

pub mod list;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::cloud::CloudClient;
use crate::config::{Config, DiscoveryConfig, OnBusy, Target};
use crate::shutdown::Shutdown;

pub use list::{Discovered, ListError};

/// What discovery knows now.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every instance found, by name then id (each id once).
    pub instances: Vec<Discovered>,
    /// When the last listing of every region succeeded.
    pub refreshed: Option<SystemTime>,
    /// Why the last listing failed, when it did (cause and fix).
    pub last_error: Option<String>,
    /// Listings tried so far.
    pub passes: u64,
}

impl Snapshot {
    /// The instance with id `id`.
    pub fn get(&self, id: &str) -> Option<&Discovered> {
        self.instances.iter().find(|i| i.id == id)
    }
}

/// The discovered instances and the refresh task's controls, shared through `App`.
#[derive(Debug)]
pub struct Discovery {
    snapshot: RwLock<Arc<Snapshot>>,
    /// The last good list of each region (kept when a later listing fails).
    regions: Mutex<BTreeMap<String, Vec<Discovered>>>,
    /// Wakes the refresh task before its interval ends (a reload, tests).
    wake: tokio::sync::Notify,
    /// Counts the listings that ended, successful or not (tests and callers wait on it).
    passes: tokio::sync::watch::Sender<u64>,
}

impl Default for Discovery {
    fn default() -> Self {
        Discovery {
            snapshot: RwLock::default(),
            regions: Mutex::default(),
            wake: tokio::sync::Notify::new(),
            passes: tokio::sync::watch::channel(0).0,
        }
    }
}

impl Discovery {
    /// What is known now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.read().clone()
    }

    /// Asks the refresh task to list again now (once more after a listing in progress).
    pub fn refresh_now(&self) {
        self.wake.notify_one();
    }

    /// The number of listings that have ended, as a watch.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.passes.subscribe()
    }

    /// Forgets everything (no `[discovery]` any more).
    fn clear(&self) {
        self.regions.lock().clear();
        let passes = self.snapshot().passes;
        *self.snapshot.write() = Arc::new(Snapshot {
            passes,
            ..Snapshot::default()
        });
    }

    /// Lists every region of `d` once. A region that fails keeps its last good list;
    /// regions no longer configured are dropped. Logs failures with their cause and fix.
    /// Returns how many instances are known afterwards.
    ///
    /// # Errors
    /// The regions that failed (the snapshot is updated all the same).
    pub async fn refresh(&self, cloud: &CloudClient, d: &DiscoveryConfig) -> Result<usize, String> {
        let mut failures: Vec<String> = Vec::new();
        for region in &d.regions {
            match list::list_region(cloud, d, region).await {
                Ok(found) => {
                    self.regions.lock().insert(region.clone(), found);
                }
                Err(e) => {
                    let kept = self.regions.lock().get(region).map_or(0, Vec::len);
                    tracing::warn!(
                        region,
                        error = %e,
                        kept,
                        next_in_s = d.refresh.as_secs(),
                        "discovery: {e}; keeping the last good list of {kept} instances in {region} and trying again in {} s",
                        d.refresh.as_secs()
                    );
                    failures.push(e.to_string());
                }
            }
        }
        let instances = {
            let mut regions = self.regions.lock();
            regions.retain(|r, _| d.regions.contains(r));
            let mut all: Vec<Discovered> = Vec::new();
            for region in &d.regions {
                for i in regions.get(region).into_iter().flatten() {
                    if !all.iter().any(|o| o.id == i.id) {
                        all.push(i.clone());
                    }
                }
            }
            all.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
            all
        };
        let old = self.snapshot();
        let ok = failures.is_empty();
        let count = instances.len();
        if ok && old.last_error.is_some() {
            tracing::info!(instances = count, "discovery: listing works again");
        }
        *self.snapshot.write() = Arc::new(Snapshot {
            instances,
            refreshed: if ok {
                Some(SystemTime::now())
            } else {
                old.refreshed
            },
            last_error: (!ok).then(|| failures.join("; ")),
            passes: old.passes + 1,
        });
        self.passes.send_modify(|p| *p += 1);
        if ok {
            tracing::debug!(instances = count, "discovery: instances listed");
            Ok(count)
        } else {
            Err(failures.join("; "))
        }
    }
}

/// The refresh task: lists at once, then every `[discovery] refresh` (read from
/// `config()` each time, so a reload applies), or sooner when woken; forgets the list
/// when `[discovery]` is gone. Ends with `shutdown`.
pub(crate) async fn run(
    discovery: Arc<Discovery>,
    cloud: Arc<CloudClient>,
    config: impl Fn() -> Arc<Config>,
    shutdown: Shutdown,
) {
    loop {
        let cfg = config();
        let next = match &cfg.discovery {
            Some(d) => {
                // Cancel-safe: an unfinished listing changes nothing.
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = discovery.refresh(&cloud, d) => {}
                }
                d.refresh
            }
            None => {
                discovery.clear();
                Duration::MAX
            }
        };
        let sleep = async {
            if next == Duration::MAX {
                std::future::pending::<()>().await;
            } else {
                tokio::time::sleep(next).await;
            }
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = discovery.wake.notified() => {}
            () = sleep => {}
        }
    }
}

/// One instance a key could mean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Instance id.
    pub id: String,
    /// Its region.
    pub region: String,
}

/// What a key (`/vnc/<key>`, a command's INSTANCE) names.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// One instance: its `[[target]]`, or a target made from its discovery.
    Target(Box<Target>),
    /// A name that several instances carry.
    Ambiguous(Vec<Candidate>),
    /// Nothing.
    NotFound,
}

/// The target a discovered instance is served as: its own region, no TCP listener, no
/// passwords, busy consoles refused.
pub fn target_for(d: &Discovered) -> Target {
    plain_target(&d.id, &d.region)
}

/// A target with no `[[target]]` table: `instance` in `region`, no TCP listener, no
/// passwords, busy consoles refused.
pub fn plain_target(instance: &str, region: &str) -> Target {
    Target {
        instance: instance.to_owned(),
        region: region.to_owned(),
        listen: None,
        on_busy: OnBusy::Reject,
        password: None,
        upstream_password: None,
        view_password: None,
        mode: crate::config::Mode::Bridge,
        transparent_alias: false,
        linger: crate::config::DEFAULT_LINGER,
        resume_timeout: crate::config::DEFAULT_RESUME_TIMEOUT,
    }
}

/// Resolves `key`: a `[[target]]` id, else a discovered id, else the discovered
/// instances named `key` (exactly): one is served (as its `[[target]]` when it has
/// one), several are [`Resolved::Ambiguous`].
pub fn resolve(cfg: &Config, snap: &Snapshot, key: &str) -> Resolved {
    if let Some(t) = cfg.target(key) {
        return Resolved::Target(Box::new(t.clone()));
    }
    if let Some(d) = snap.get(key) {
        return Resolved::Target(Box::new(target_for(d)));
    }
    let named: Vec<&Discovered> = snap.instances.iter().filter(|i| i.name == key).collect();
    match named.as_slice() {
        [] => Resolved::NotFound,
        [one] => Resolved::Target(Box::new(
            cfg.target(&one.id)
                .cloned()
                .unwrap_or_else(|| target_for(one)),
        )),
        many => Resolved::Ambiguous(
            many.iter()
                .map(|i| Candidate {
                    id: i.id.clone(),
                    region: cfg
                        .target(&i.id)
                        .map_or(i.region.clone(), |t| t.region.clone()),
                })
                .collect(),
        ),
    }
}

/// The words for an ambiguous name: both (all) ids and what to do.
pub fn ambiguous_text(name: &str, candidates: &[Candidate]) -> String {
    let list: Vec<String> = candidates
        .iter()
        .map(|c| format!("{} ({})", c.id, c.region))
        .collect();
    format!(
        "the name {name:?} matches {} instances: {}; use the instance id instead",
        candidates.len(),
        list.join(", ")
    )
}

/// One line of the console list (`/` and `/api/consoles`).
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Instance id.
    pub instance: String,
    /// Its name, when discovery knows it.
    pub name: Option<String>,
    /// Its state when last listed, when discovery knows it.
    pub state: Option<String>,
    /// Its region.
    pub region: String,
    /// Its zone, when discovery knows it.
    pub zone: Option<String>,
    /// Its tags (empty when discovery does not know it).
    pub tags: BTreeMap<String, String>,
    /// `target` (a `[[target]]` table) or `discovery`.
    pub source: &'static str,
    /// `bridge` or `transparent`.
    pub mode: &'static str,
    /// The raw TCP listener, for targets that have one.
    pub tcp: Option<String>,
}

/// Every console: the `[[target]]`s in config order (with what discovery knows of
/// them), then the discovered instances that are not targets.
pub fn entries(cfg: &Config, snap: &Snapshot) -> Vec<Entry> {
    let mut out: Vec<Entry> = cfg
        .targets
        .iter()
        .map(|t| {
            let d = snap.get(&t.instance);
            Entry {
                instance: t.instance.clone(),
                name: d.map(|d| d.name.clone()),
                state: d.map(|d| d.state.clone()),
                region: t.region.clone(),
                zone: d.map(|d| d.zone.clone()).filter(|z| !z.is_empty()),
                tags: d.map(|d| d.tags.clone()).unwrap_or_default(),
                source: "target",
                mode: t.mode.as_str(),
                tcp: t.listen.map(|a| a.to_string()),
            }
        })
        .collect();
    for d in &snap.instances {
        if cfg.target(&d.id).is_some() {
            continue;
        }
        out.push(Entry {
            instance: d.id.clone(),
            name: Some(d.name.clone()),
            state: Some(d.state.clone()),
            region: d.region.clone(),
            zone: Some(d.zone.clone()).filter(|z| !z.is_empty()),
            tags: d.tags.clone(),
            source: "discovery",
            mode: "bridge",
            tcp: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(id: &str, name: &str, region: &str) -> Discovered {
        Discovered {
            id: id.into(),
            name: name.into(),
            state: "RUNNING".into(),
            region: region.into(),
            zone: String::new(),
            tags: BTreeMap::new(),
        }
    }

    fn cfg(targets: &str) -> Config {
        let text = format!("[cloud]\nregion = \"ap-beijing\"\n{targets}");
        Config::parse(&text, "t.toml", std::path::Path::new(".")).unwrap_or_else(|e| panic!("{e}"))
    }

    fn resolved_id(r: Resolved) -> Option<(String, String)> {
        match r {
            Resolved::Target(t) => Some((t.instance, t.region)),
            _ => None,
        }
    }

    /// Ids and names resolve; targets win; a shared name is ambiguous.
    #[test]
    fn resolution() {
        let snap = Snapshot {
            instances: vec![
                found("ins-aaaaaaaa", "web-1", "ap-guangzhou"),
                found("ins-bbbbbbbb", "db", "ap-guangzhou"),
                found("ins-cccccccc", "db", "ap-shanghai"),
                found("ins-dddddddd", "api", "ap-guangzhou"),
            ],
            ..Snapshot::default()
        };
        let c = cfg("[[target]]\ninstance = \"ins-dddddddd\"\nregion = \"ap-seoul\"\n");
        assert_eq!(
            resolved_id(resolve(&c, &snap, "web-1")),
            Some(("ins-aaaaaaaa".into(), "ap-guangzhou".into()))
        );
        assert_eq!(
            resolved_id(resolve(&c, &snap, "ins-aaaaaaaa")),
            Some(("ins-aaaaaaaa".into(), "ap-guangzhou".into()))
        );
        // The target's own settings, by id and by its discovered name.
        for key in ["ins-dddddddd", "api"] {
            assert_eq!(
                resolved_id(resolve(&c, &snap, key)),
                Some(("ins-dddddddd".into(), "ap-seoul".into())),
                "{key}"
            );
        }
        match resolve(&c, &snap, "db") {
            Resolved::Ambiguous(cands) => {
                let text = ambiguous_text("db", &cands);
                assert!(text.contains("ins-bbbbbbbb (ap-guangzhou)"), "{text}");
                assert!(text.contains("ins-cccccccc (ap-shanghai)"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(resolve(&c, &snap, "nope"), Resolved::NotFound));
        assert!(matches!(resolve(&c, &snap, "WEB-1"), Resolved::NotFound));
    }

    /// Targets first (with what discovery knows), then the rest of discovery.
    #[test]
    fn entries_list_targets_then_discovered() {
        let snap = Snapshot {
            instances: vec![
                found("ins-aaaaaaaa", "web-1", "ap-guangzhou"),
                found("ins-dddddddd", "api", "ap-guangzhou"),
            ],
            ..Snapshot::default()
        };
        let c = cfg("[[target]]\ninstance = \"ins-dddddddd\"\n");
        let e = entries(&c, &snap);
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].instance.as_str(), e[0].source),
            ("ins-dddddddd", "target")
        );
        assert_eq!(e[0].name.as_deref(), Some("api"));
        assert_eq!(
            (e[1].instance.as_str(), e[1].source),
            ("ins-aaaaaaaa", "discovery")
        );
    }
}
