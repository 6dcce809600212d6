//! The server's plugins: loaded from the plugins directory at start and
//! again when their files change (the `plugin-reload` worker), served per
//! organization as the operator's grants say (down the core's org tree), fed
//! events through bounded queues, and reached by the admin API through
//! `coffer_core::plugins::PluginAdmin`. Their series go to `/metrics`
//! through the collector at the end of this file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use coffer_core::events::{self, EventKind, Subscriber};
use coffer_core::plugins::{self as core_plugins, PlanTarget, PluginAdmin};
use coffer_core::workers::{StepFuture, Worker};
use coffer_core::{Coffer, CoreError, OrgTree};
use coffer_plugin_host::bindings::types;
use coffer_plugin_host::{
    guard, report, CallInfo, Grants, Host, HostOptions, Inventory, Limits, Manifest, Plugin, World,
};
use coffer_types::wire::{BackupInfo, DeviceInfo, PluginInfo, RunReport, SessionInfo};
use coffer_types::{Name, UnixMillis};
use futures::future::BoxFuture;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::mpsc;

use crate::config::PluginsConfig;

/// One plugin name: the version serving now, and what the operator set.
struct Slot {
    /// One load of this plugin at a time (the poller and an admin reload).
    loading: tokio::sync::Mutex<()>,
    current: RwLock<Option<Arc<Plugin>>>,
    enabled: AtomicBool,
    load_error: Mutex<Option<String>>,
    /// What the files looked like when last loaded (or refused).
    stamp: Mutex<Option<Stamp>>,
    subscriber: Mutex<Option<Arc<Subscriber>>>,
}

#[derive(Debug, Clone, PartialEq)]
struct Stamp(Vec<(u64, Option<SystemTime>)>);

fn stamp(dir: &Path) -> Stamp {
    Stamp(
        ["plugin.toml", "plugin.wasm"]
            .iter()
            .map(|f| {
                std::fs::metadata(dir.join(f))
                    .map(|m| (m.len(), m.modified().ok()))
                    .unwrap_or((0, None))
            })
            .collect(),
    )
}

pub struct Manager {
    host: Host,
    core: Coffer,
    dir: PathBuf,
    cfg: PluginsConfig,
    slots: RwLock<BTreeMap<String, Arc<Slot>>>,
    /// Itself, for the event workers it starts.
    me: std::sync::Weak<Manager>,
    /// Where integration plugins run: one thread at the lowest CPU
    /// priority, so a busy plugin uses idle CPU but never ingest's.
    background: tokio::runtime::Handle,
}

/// A current-thread runtime on its own thread under SCHED_IDLE: it runs
/// only when no ordinary thread wants the CPU, and is preempted at once
/// when one wakes (nice 19 alone still cost ingest 16 % in the benchmark).
fn background_runtime() -> anyhow::Result<tokio::runtime::Handle> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("plugin-events".into())
        .spawn(move || {
            use thread_priority::*;
            let idle = set_thread_priority_and_policy(
                thread_native_id(),
                ThreadPriority::Min,
                ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
            );
            if let Err(e) = idle {
                tracing::warn!("plugins: SCHED_IDLE refused ({e:?}); using nice 19");
                let _ = rustix::process::setpriority_process(None, 19);
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            let _ = tx.send(Ok(rt.handle().clone()));
            rt.block_on(std::future::pending::<()>());
        })?;
    Ok(rx.recv()??)
}

impl Manager {
    /// Build the host, load every plugin in the directory and start the
    /// event workers. The directory is polled for changes by the worker from
    /// [`Manager::reload_worker`].
    pub async fn start(
        core: Coffer,
        cfg: PluginsConfig,
        data_dir: &Path,
    ) -> anyhow::Result<Arc<Self>> {
        let dir = cfg.dir.clone().unwrap_or_else(|| data_dir.join("plugins"));
        std::fs::create_dir_all(&dir)?;
        let host = Host::new(HostOptions {
            limits: Limits {
                memory_bytes: (cfg.memory_mib << 20) as usize,
                cpu_ms: cfg.cpu_ms,
                call_timeout: Duration::from_millis(cfg.call_timeout_ms),
                suspend_after: cfg.suspend_after,
                ..Limits::default()
            },
            cache_dir: Some(data_dir.join("plugin-cache")),
            http: Some(Arc::new(crate::plugin_env::PluginHttp::new()?)),
            kv: Arc::new(crate::plugin_env::PluginKv(core.clone())),
            ..HostOptions::default()
        })?;
        tracing::info!(dir = %dir.display(), pooling = host.pooling(), "plugins: host ready");
        let background = background_runtime()?;
        let m = Arc::new_cyclic(|me| Self {
            host,
            core,
            dir,
            cfg,
            slots: RwLock::default(),
            me: me.clone(),
            background,
        });
        if let Err(e) = m.scan().await {
            tracing::error!("plugins: {e}");
        }
        Ok(m)
    }

    /// The worker that loads changed plugin files, every
    /// `plugins.reload_poll_ms` (none when that is 0).
    pub fn reload_worker(self: &Arc<Self>) -> Option<Arc<dyn Worker>> {
        (self.cfg.reload_poll_ms > 0).then(|| {
            Arc::new(ReloadWorker {
                manager: Arc::downgrade(self),
                every: Duration::from_millis(self.cfg.reload_poll_ms),
            }) as Arc<dyn Worker>
        })
    }

    /// Load new or changed plugin directories; unload removed ones. Fails
    /// when the plugins directory cannot be read.
    async fn scan(&self) -> Result<(), String> {
        let mut present = Vec::new();
        let rd = std::fs::read_dir(&self.dir)
            .map_err(|e| format!("read the plugins directory {}: {e}", self.dir.display()))?;
        for e in rd.flatten() {
            let p = e.path();
            if p.join("plugin.toml").is_file() && p.join("plugin.wasm").is_file() {
                if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                    present.push(n.to_string());
                }
            }
        }
        for name in &present {
            let slot = self.slot(name);
            let now = stamp(&self.dir.join(name));
            if slot.stamp.lock().unwrap().as_ref() != Some(&now) {
                let _ = self.load(name).await;
            }
        }
        let gone: Vec<String> = self
            .slots
            .read()
            .unwrap()
            .keys()
            .filter(|k| !present.contains(k))
            .cloned()
            .collect();
        for name in gone {
            if let Some(slot) = self.slots.write().unwrap().remove(&name) {
                self.core.events().unsubscribe(&name);
                *slot.current.write().unwrap() = None;
                tracing::info!(plugin = %name, "plugin removed from the plugins directory; unloaded");
            }
        }
        Ok(())
    }

    fn slot(&self, name: &str) -> Arc<Slot> {
        // What the operator set last (kept in the metadata); enabled if never.
        let enabled = self
            .core
            .plugin_enabled(name)
            .ok()
            .flatten()
            .unwrap_or(true);
        self.slots
            .write()
            .unwrap()
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Slot {
                    loading: tokio::sync::Mutex::new(()),
                    current: RwLock::new(None),
                    enabled: AtomicBool::new(enabled),
                    load_error: Mutex::new(None),
                    stamp: Mutex::new(None),
                    subscriber: Mutex::new(None),
                })
            })
            .clone()
    }

    fn grants(&self, name: &str) -> Grants {
        let g = self.cfg.grants.get(name).cloned().unwrap_or_default();
        Grants {
            capabilities: g
                .capabilities
                .iter()
                .filter_map(|c| serde_json::from_value(serde_json::Value::String(c.clone())).ok())
                .collect(),
            allowed_hosts: g.allowed_hosts,
            config: g.config,
        }
    }

    /// Load (or reload) `name`: compile off the async workers, link against
    /// its world, one smoke call, then swap. A failure leaves the running
    /// version in place and says why.
    async fn load(&self, name: &str) -> Result<(), String> {
        let slot = self.slot(name);
        let _one_at_a_time = slot.loading.lock().await;
        let dir = self.dir.join(name);
        let st = stamp(&dir);
        let result = self.build(name, &dir).await;
        *slot.stamp.lock().unwrap() = Some(st);
        match result {
            Ok(p) => {
                let world = p.manifest().world;
                let version = p.manifest().version.clone();
                let old = slot.current.write().unwrap().replace(Arc::new(p));
                *slot.load_error.lock().unwrap() = None;
                tracing::info!(plugin = name, %version, %world, reloaded = old.is_some(), "plugin loaded");
                if world == World::Integration && slot.subscriber.lock().unwrap().is_none() {
                    self.start_worker(name, &slot);
                }
                Ok(())
            }
            Err(e) => {
                let running = slot.current.read().unwrap().is_some();
                tracing::error!(
                    plugin = name,
                    "plugin not loaded: {e}{}",
                    if running {
                        "; the previous version keeps running"
                    } else {
                        ""
                    }
                );
                *slot.load_error.lock().unwrap() = Some(e.clone());
                Err(e)
            }
        }
    }

    async fn build(&self, name: &str, dir: &Path) -> Result<Plugin, String> {
        let text = std::fs::read_to_string(dir.join("plugin.toml"))
            .map_err(|e| format!("read plugin.toml: {e}"))?;
        let manifest = Manifest::parse(&text).map_err(|e| format!("plugin.toml: {e:#}"))?;
        if manifest.name != name {
            return Err(format!(
                "plugin.toml names it {:?} but its directory is {name:?}",
                manifest.name
            ));
        }
        let wasm =
            std::fs::read(dir.join("plugin.wasm")).map_err(|e| format!("read plugin.wasm: {e}"))?;
        let host = self.host.clone();
        let grants = self.grants(name);
        let plugin = tokio::task::spawn_blocking(move || host.load(&wasm, manifest, grants))
            .await
            .map_err(|e| format!("compile: {e}"))?
            .map_err(|e| format!("{e:#}"))?;
        self.smoke(&plugin).await?;
        Ok(plugin)
    }

    /// One call with empty input: a plugin that cannot answer that is not
    /// swapped in.
    async fn smoke(&self, p: &Plugin) -> Result<(), String> {
        let info = CallInfo {
            org: "smoke-test".into(),
            now_ms: self.core.now(),
        };
        let r = match p.manifest().world {
            World::Retention => {
                let a = types::Archive {
                    id: "smoke-test".into(),
                    device: "smoke-test".into(),
                    org: "smoke-test".into(),
                };
                p.plan(&info, &a, &[]).await.map(|_| ())
            }
            World::Reporter => p.report(&info, &[], Arc::default()).await.map(|_| ()),
            World::Integration => p.on_events(&info, &[]).await,
        };
        r.map_err(|e| format!("smoke call failed: {e}"))
    }

    fn start_worker(&self, name: &str, slot: &Arc<Slot>) {
        let (sub, rx) = self.core.events().subscribe(name, self.cfg.queue_capacity);
        *slot.subscriber.lock().unwrap() = Some(sub);
        let (m, slot, name) = (self.me.clone(), slot.clone(), name.to_string());
        self.background.spawn(deliver(m, slot, name, rx));
    }

    /// Whether `name` serves `org`: granted to it or to an org above it, or
    /// to every org (`*`).
    fn serves(&self, name: &str, org: &str, tree: &OrgTree) -> bool {
        let Some(g) = self.cfg.grants.get(name) else {
            return false;
        };
        if g.orgs.iter().any(|o| o == "*") {
            return true;
        }
        let Ok(org) = Name::new(org) else {
            return false;
        };
        tree.ancestors(&org)
            .iter()
            .any(|a| g.orgs.iter().any(|o| o == a.as_str()))
    }

    fn running(&self, name: &str) -> Result<(Arc<Slot>, Arc<Plugin>), CoreError> {
        let slot = self
            .slots
            .read()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| {
                CoreError::NotFound(format!(
                    "no plugin named {name:?} in {}",
                    self.dir.display()
                ))
            })?;
        let p = slot.current.read().unwrap().clone().ok_or_else(|| {
            CoreError::NotFound(format!(
                "plugin {name} is not loaded: {}",
                slot.load_error.lock().unwrap().clone().unwrap_or_default()
            ))
        })?;
        Ok((slot, p))
    }

    fn info(&self, name: &str, slot: &Slot) -> PluginInfo {
        let p = slot.current.read().unwrap().clone();
        let st = p.as_ref().map(|p| p.status());
        let sub = slot.subscriber.lock().unwrap().clone();
        PluginInfo {
            name: name.to_string(),
            version: st.as_ref().map(|s| s.version.clone()).unwrap_or_default(),
            world: st.as_ref().map(|s| s.world.to_string()).unwrap_or_default(),
            contract: st
                .as_ref()
                .map(|s| s.contract.to_string())
                .unwrap_or_default(),
            enabled: slot.enabled.load(Ordering::Relaxed),
            orgs: self
                .cfg
                .grants
                .get(name)
                .map(|g| g.orgs.clone())
                .unwrap_or_default(),
            digest: st.as_ref().map(|s| s.digest.clone()).unwrap_or_default(),
            calls: st.as_ref().map_or(0, |s| s.calls),
            failures: st.as_ref().map_or(0, |s| s.failures),
            failures_in_a_row: st.as_ref().map_or(0, |s| s.failures_in_a_row),
            suspended_for_secs: st.as_ref().and_then(|s| s.suspended_for_secs),
            last_error: st.as_ref().and_then(|s| s.last_error.clone()),
            p50_us: st.as_ref().and_then(|s| s.p50_us),
            p99_us: st.as_ref().and_then(|s| s.p99_us),
            events_queued: sub.as_ref().map_or(0, |s| s.published()),
            events_dropped: sub.as_ref().map_or(0, |s| s.dropped()),
            load_error: slot.load_error.lock().unwrap().clone(),
        }
    }
}

/// An integration plugin's worker: batches from its queue, filtered by the
/// organizations it serves, one call per organization in the batch.
async fn deliver(
    m: std::sync::Weak<Manager>,
    slot: Arc<Slot>,
    name: String,
    mut rx: mpsc::Receiver<events::Event>,
) {
    let mut seq = 0u64;
    while let Some(first) = rx.recv().await {
        let Some(m) = m.upgrade() else { return };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(m.cfg.batch_wait_ms);
        while batch.len() < m.cfg.batch_max {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e),
                _ => break,
            }
        }
        let Some(plugin) = slot.current.read().unwrap().clone() else {
            continue;
        };
        if !slot.enabled.load(Ordering::Relaxed) {
            continue;
        }
        let tree = m.core.org_tree();
        let mut by_org: BTreeMap<String, Vec<types::Event>> = BTreeMap::new();
        for e in batch {
            if !m.serves(&name, e.org.as_str(), &tree) {
                continue;
            }
            let mut ev = wit_event(&e);
            // A plugin built against an older contract is not sent kinds
            // it has no case for, and sees no gap in `seq` for them.
            if !plugin.receives(&ev.kind) {
                continue;
            }
            seq += 1;
            ev.seq = seq;
            by_org.entry(e.org.to_string()).or_default().push(ev);
        }
        for (org, events) in by_org {
            let info = CallInfo {
                org,
                now_ms: m.core.now(),
            };
            // Failures are counted and logged by the host; integrations
            // fail open: the server carries on.
            let _ = plugin.on_events(&info, &events).await;
        }
    }
}

impl PluginAdmin for Manager {
    fn list(&self) -> Vec<PluginInfo> {
        let slots: Vec<(String, Arc<Slot>)> = self
            .slots
            .read()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        slots.iter().map(|(n, s)| self.info(n, s)).collect()
    }

    fn set_enabled(&self, name: &str, enabled: bool) -> Result<PluginInfo, CoreError> {
        let (slot, p) = self.running(name)?;
        slot.enabled.store(enabled, Ordering::Relaxed);
        if enabled {
            p.resume();
        }
        tracing::info!(
            plugin = name,
            enabled,
            "plugin {}",
            if enabled { "enabled" } else { "disabled" }
        );
        Ok(self.info(name, &slot))
    }

    fn reload(&self, name: String) -> BoxFuture<'_, Result<PluginInfo, CoreError>> {
        Box::pin(async move {
            if !self.dir.join(&name).join("plugin.wasm").is_file() {
                return Err(CoreError::NotFound(format!(
                    "no plugin {name:?}: expected {}",
                    self.dir.join(&name).join("plugin.wasm").display()
                )));
            }
            match self.load(&name).await {
                Ok(()) => Ok(self.info(&name, &self.slot(&name))),
                Err(e) => Err(CoreError::InvalidRequest(format!(
                    "plugin {name} was not reloaded: {e}{}",
                    if self.slot(&name).current.read().unwrap().is_some() {
                        "; the previous version keeps running"
                    } else {
                        ""
                    }
                ))),
            }
        })
    }

    fn report(
        &self,
        name: String,
        req: RunReport,
        inventory: core_plugins::Inventory,
        now: UnixMillis,
    ) -> BoxFuture<'_, Result<(String, Vec<u8>), CoreError>> {
        Box::pin(async move {
            let (slot, p) = self.running(&name)?;
            if p.manifest().world != World::Reporter {
                return Err(CoreError::InvalidRequest(format!(
                    "plugin {name} is a {} plugin, not a reporter",
                    p.manifest().world
                )));
            }
            if !slot.enabled.load(Ordering::Relaxed) {
                return Err(CoreError::PluginFailed(format!(
                    "plugin {name} is disabled"
                )));
            }
            if !self.serves(&name, req.org.as_str(), &self.core.org_tree()) {
                return Err(CoreError::Forbidden(format!(
                    "plugin {name} is not enabled for org {} (plugins.grants.{name}.orgs)",
                    req.org
                )));
            }
            let inv = Arc::new(Inventory {
                devices: inventory.devices.iter().map(device).collect(),
                backups: inventory
                    .backups
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.iter().map(backup_summary).collect()))
                    .collect(),
                health: inventory.devices.iter().filter_map(health_facts).collect(),
            });
            let info = CallInfo {
                org: req.org.to_string(),
                now_ms: now,
            };
            let r = p.report(&info, &req.params, inv).await.map_err(|e| {
                CoreError::PluginFailed(format!("plugin {name}: {e} ({})", e.code()))
            })?;
            report::render(&r, &req.format).map_err(|e| CoreError::InvalidRequest(format!("{e:#}")))
        })
    }

    fn retention_plan(
        &self,
        target: PlanTarget,
        plugin: Option<String>,
    ) -> BoxFuture<'_, Result<serde_json::Value, CoreError>> {
        Box::pin(async move {
            let tree = self.core.org_tree();
            let name = match plugin {
                Some(n) => n,
                None => self
                    .list()
                    .into_iter()
                    .find(|i| {
                        i.world == "retention"
                            && i.enabled
                            && self.serves(&i.name, target.org.as_str(), &tree)
                    })
                    .map(|i| i.name)
                    .ok_or_else(|| {
                        CoreError::NotFound(format!(
                            "no enabled retention plugin serves org {}; name one with --plugin",
                            target.org
                        ))
                    })?,
            };
            let (slot, p) = self.running(&name)?;
            if p.manifest().world != World::Retention {
                return Err(CoreError::InvalidRequest(format!(
                    "plugin {name} is a {} plugin, not a retention plugin",
                    p.manifest().world
                )));
            }
            if !slot.enabled.load(Ordering::Relaxed) {
                return Err(CoreError::PluginFailed(format!(
                    "plugin {name} is disabled"
                )));
            }
            let backups: Vec<types::BackupSummary> =
                target.backups.iter().map(backup_summary).collect();
            let a = types::Archive {
                id: target.archive.to_string(),
                device: target.device.to_string(),
                org: target.org.to_string(),
            };
            let info = CallInfo {
                org: target.org.to_string(),
                now_ms: target.now,
            };
            // Retention fails closed: no plan, nothing expires.
            let plan = p.plan(&info, &a, &backups).await.map_err(|e| {
                CoreError::PluginFailed(format!(
                    "plugin {name}: {e} ({}); no plan, so nothing would expire",
                    e.code()
                ))
            })?;
            let g = guard::guard(plan, &backups);
            Ok(serde_json::json!({
                "dry_run": true,
                "plugin": name,
                "archive": target.archive,
                "org": target.org,
                "backups": backups.len(),
                "expire": g.expire,
                "kept_by_host": g.kept_by_host.iter().map(|(b, why)| serde_json::json!({"backup": b, "reason": why})).collect::<Vec<_>>(),
                "unknown": g.unknown,
                "note": "a dry run: nothing is expired; a run sends every proposal through the destruction gate",
            }))
        })
    }
}

/// The `plugin-reload` worker: load plugin files that changed.
struct ReloadWorker {
    manager: std::sync::Weak<Manager>,
    every: Duration,
}

impl Worker for ReloadWorker {
    fn name(&self) -> &str {
        "plugin-reload"
    }

    fn interval(&self) -> Duration {
        self.every
    }

    fn first_delay(&self) -> Duration {
        // The plugins were loaded at start.
        self.every
    }

    fn step(&self) -> StepFuture<'_> {
        Box::pin(async move {
            match self.manager.upgrade() {
                Some(m) => m.scan().await,
                None => Ok(()),
            }
        })
    }
}

/// A metric family: name, type, help, and its value for one plugin.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&PluginInfo) -> Option<f64>,
);

const SERIES: [Series; 7] = [
    ("plugin_calls", "counter", "Calls to the plugin", |i| {
        Some(i.calls as f64)
    }),
    (
        "plugin_failures",
        "counter",
        "Failed calls (trap, timeout, limit, plugin error)",
        |i| Some(i.failures as f64),
    ),
    (
        "plugin_suspended",
        "gauge",
        "1 while the plugin is suspended",
        |i| Some(i.suspended_for_secs.map_or(0.0, |_| 1.0)),
    ),
    (
        "plugin_events_queued",
        "counter",
        "Events queued for an integration plugin",
        |i| Some(i.events_queued as f64),
    ),
    (
        "plugin_events_dropped",
        "counter",
        "Events dropped on a full queue",
        |i| Some(i.events_dropped as f64),
    ),
    (
        "plugin_latency_p50_seconds",
        "gauge",
        "Median call latency of the latest calls",
        |i| i.p50_us.map(|u| u as f64 / 1e6),
    ),
    (
        "plugin_latency_p99_seconds",
        "gauge",
        "99th percentile call latency of the latest calls",
        |i| i.p99_us.map(|u| u as f64 / 1e6),
    ),
];

/// The plugins' series for `/metrics`, read from the host's own counters
/// at each scrape.
#[derive(Debug)]
pub struct PluginMetrics(pub Coffer);

impl prometheus_client::collector::Collector for PluginMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        type Labels = Vec<(String, String)>;
        let list = self.0.plugin_stats();
        for (name, kind, help, get) in SERIES {
            let values = list
                .iter()
                .filter_map(|i| get(i).map(|v| (i.name.clone(), v)));
            if kind == "counter" {
                let f = Family::<Labels, Counter<f64>>::default();
                for (plugin, v) in values {
                    f.get_or_create(&vec![("plugin".into(), plugin)]).inc_by(v);
                }
                f.encode(encoder.encode_descriptor(name, help, None, f.metric_type())?)?;
            } else {
                let f = Family::<Labels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
                for (plugin, v) in values {
                    f.get_or_create(&vec![("plugin".into(), plugin)]).set(v);
                }
                f.encode(encoder.encode_descriptor(name, help, None, f.metric_type())?)?;
            }
        }
        Ok(())
    }
}

fn backup_summary(b: &BackupInfo) -> types::BackupSummary {
    types::BackupSummary {
        id: b.backup.to_string(),
        archive: b.archive.to_string(),
        committed_at_ms: b.committed_at,
        files: b.stats.files,
        bytes: b.stats.bytes,
        block_count: b.block_count,
        pinned: false,
    }
}

/// A device's health as the contract has it: green, yellow or red (the
/// state); a parked device is not judged and is left out.
fn health_facts(d: &DeviceInfo) -> Option<types::HealthFacts> {
    let state = match d.health.as_ref()?.state.as_str() {
        "ok" => types::HealthState::Green,
        "warning" => types::HealthState::Yellow,
        "critical" => types::HealthState::Red,
        _ => return None,
    };
    Some(types::HealthFacts {
        device: d.device.to_string(),
        state,
        last_data_ms: d.last_activity,
        last_backup_ms: d.last_completed,
    })
}

fn device(d: &DeviceInfo) -> types::Device {
    types::Device {
        id: d.device.to_string(),
        name: d.name.clone(),
        org: d.org.to_string(),
        user: d.user.to_string(),
        archive: d.archive.to_string(),
        enrolled_at_ms: d.enrolled_at,
        revoked: d.revoked,
        last_data_ms: d.last_activity,
        last_backup_ms: d.last_completed,
        backup_count: d.backup_count,
        block_count: d.block_count,
        stored_bytes: d.bytes_stored,
    }
}

fn session(device: &Name, s: &SessionInfo, reason: Option<&str>) -> types::SessionInfo {
    types::SessionInfo {
        id: s.session.to_string(),
        archive: s.archive.to_string(),
        device: device.to_string(),
        opened_at_ms: s.opened_at,
        reason: reason.map(str::to_string),
    }
}

/// `e` in the contract's types; its `seq` is the deliverer's to set.
fn wit_event(e: &events::Event) -> types::Event {
    let kind = match &e.kind {
        EventKind::BackupCommitted { backup, .. } => {
            types::EventKind::BackupCommitted(backup_summary(backup))
        }
        EventKind::SessionOpened { device, session: s } => {
            types::EventKind::SessionOpened(session(device, s, None))
        }
        EventKind::SessionAborted { device, session: s } => types::EventKind::SessionAborted(
            session(device, s, Some("the agent aborted the session")),
        ),
        EventKind::SessionFailed {
            device,
            session: s,
            reason,
        } => types::EventKind::SessionFailed(session(device, s, Some(reason))),
        EventKind::DeviceEnrolled { device: d } => types::EventKind::DeviceEnrolled(device(d)),
        EventKind::DeviceRevoked { device: d } => types::EventKind::DeviceRevoked(device(d)),
        EventKind::BlockDamaged {
            device,
            archive,
            block,
            damage,
            found_by,
        } => types::EventKind::BlockDamaged(types::BlockDamage {
            archive: archive.to_string(),
            device: device.to_string(),
            block: block.to_string(),
            kind: match damage {
                events::Damage::Corrupt => types::DamageKind::Corrupt,
                events::Damage::Missing => types::DamageKind::Missing,
            },
            detected_by: match found_by {
                events::FoundBy::Scrub => types::DetectedBy::Scrub,
                events::FoundBy::Read => types::DetectedBy::Read,
            },
        }),
        EventKind::BlockHealed {
            device,
            archive,
            block,
        } => types::EventKind::BlockHealed(types::BlockHeal {
            archive: archive.to_string(),
            device: device.to_string(),
            block: block.to_string(),
        }),
        EventKind::HealthChanged {
            seq,
            device,
            name,
            user,
            from,
            to,
            reason,
            reminder,
            last_activity,
            last_completed,
        } => {
            let level = |l: &str| match l {
                "warning" => types::AlertLevel::Warning,
                "critical" => types::AlertLevel::Critical,
                "parked" => types::AlertLevel::Parked,
                _ => types::AlertLevel::Ok,
            };
            types::EventKind::HealthChanged(types::HealthChange {
                alert_seq: *seq,
                device: device.to_string(),
                name: name.clone(),
                user: user.to_string(),
                old_level: level(from),
                new_level: level(to),
                reason: reason.clone(),
                reminder: *reminder,
                last_data_ms: *last_activity,
                last_backup_ms: *last_completed,
            })
        }
    };
    types::Event {
        seq: 0,
        at_ms: e.at,
        org: e.org.to_string(),
        kind,
    }
}
