//! The plugin platform as the core sees it: a service the binary plugs in
//! (it owns the WebAssembly host), reached by the admin API through the
//! core like everything else. The core checks the caller, gathers what a
//! plugin may see (scoped to the caller and the org asked about) and keeps
//! the operator's settings; the service runs the plugin.

use std::collections::BTreeMap;
use std::sync::Arc;

use coffer_meta::PluginStateRecord;
use coffer_types::wire::{BackupInfo, DeviceInfo, PluginInfo, RunReport};
use coffer_types::{Name, UnixMillis};
use futures::future::BoxFuture;

use crate::access::{Permission, Principal};
use crate::{Coffer, CoreError, Result};

/// What a reporter plugin is lent: the devices of an org's subtree and
/// their backups.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    pub devices: Vec<DeviceInfo>,
    /// Backups by archive.
    pub backups: BTreeMap<Name, Vec<BackupInfo>>,
}

/// What a retention plan is made for.
#[derive(Debug, Clone)]
pub struct PlanTarget {
    pub archive: Name,
    pub device: Name,
    pub org: Name,
    pub backups: Vec<BackupInfo>,
    /// Server time of the plan.
    pub now: UnixMillis,
}

/// The plugin service, implemented by the binary.
pub trait PluginAdmin: Send + Sync {
    fn list(&self) -> Vec<PluginInfo>;
    /// Apply the operator's setting (already checked and recorded).
    fn set_enabled(&self, name: &str, enabled: bool) -> Result<PluginInfo>;
    /// Load the plugin's files again (compile, check, smoke call, swap).
    fn reload(&self, name: String) -> BoxFuture<'_, Result<PluginInfo>>;
    /// Run a reporter over `inventory`: the media type and the bytes.
    fn report(
        &self,
        name: String,
        req: RunReport,
        inventory: Inventory,
        now: UnixMillis,
    ) -> BoxFuture<'_, Result<(String, Vec<u8>)>>;
    /// A retention plan for one archive as a dry run (no expiry happens);
    /// `plugin`: the one to ask, else the enabled retention plugin serving
    /// the archive's org.
    fn retention_plan(
        &self,
        target: PlanTarget,
        plugin: Option<String>,
    ) -> BoxFuture<'_, Result<serde_json::Value>>;
}

impl Coffer {
    /// A plugin's key-value entry (the plugin host's `kv`, kept with the
    /// metadata so it survives restarts).
    pub fn plugin_kv_get(&self, plugin: &str, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.plugin_kv_get(plugin, key)?)
    }

    /// Set an entry; `Ok(Err(why))` when the plugin's cap would be exceeded.
    pub fn plugin_kv_set(
        &self,
        plugin: &str,
        key: &str,
        value: &[u8],
        max_total: u64,
    ) -> Result<std::result::Result<(), String>> {
        Ok(self.meta.plugin_kv_set(plugin, key, value, max_total)?)
    }

    pub fn plugin_kv_delete(&self, plugin: &str, key: &str) -> Result<()> {
        Ok(self.meta.plugin_kv_delete(plugin, key)?)
    }

    pub fn plugin_kv_keys(&self, plugin: &str, prefix: &str) -> Result<Vec<String>> {
        Ok(self.meta.plugin_kv_keys(plugin, prefix)?)
    }

    /// Whether the operator enabled `plugin` (`None`: never set, the
    /// default applies). Kept across restarts.
    pub fn plugin_enabled(&self, plugin: &str) -> Result<Option<bool>> {
        Ok(self.meta.plugin_state(plugin)?.map(|s| s.enabled))
    }

    /// Plug in the plugin service (once, at start).
    pub fn set_plugins(&self, p: Arc<dyn PluginAdmin>) {
        let _ = self.plugins.set(p);
    }

    pub(crate) fn plugin_service(&self) -> Result<&Arc<dyn PluginAdmin>> {
        self.plugins.get().ok_or_else(|| {
            CoreError::NotFound("plugins are disabled on this server (plugins.enabled)".into())
        })
    }

    /// The plugins and their state (the statistics of the plugin host).
    pub async fn plugin_list(&self, p: &Principal) -> Result<Vec<PluginInfo>> {
        self.require(p, Permission::ReadServer, "listing plugins")
            .await?;
        Ok(self.plugin_service()?.list())
    }

    /// The plugin list for the server's own use (metrics).
    pub fn plugin_stats(&self) -> Vec<PluginInfo> {
        self.plugins.get().map(|p| p.list()).unwrap_or_default()
    }

    /// Enable or disable a plugin; recorded (and kept across restarts) with
    /// its audit entry before it takes effect.
    pub async fn set_plugin_enabled(
        &self,
        p: &Principal,
        name: &str,
        enabled: bool,
    ) -> Result<PluginInfo> {
        let action = if enabled {
            "plugin.enable"
        } else {
            "plugin.disable"
        };
        self.require(p, Permission::ManageServer, action).await?;
        let svc = self.plugin_service()?;
        if !svc.list().iter().any(|i| i.name == name) {
            return Err(CoreError::NotFound(format!("no plugin named {name:?}")));
        }
        let rec = PluginStateRecord {
            enabled,
            changed_at: self.now(),
            changed_by: p.account().to_string(),
        };
        self.meta.set_plugin_state(
            name,
            &rec,
            &self.draft(p, action, format!("plugin:{name}"), []),
        )?;
        self.meta.durable().await?;
        svc.set_enabled(name, enabled)
    }

    /// Load a plugin's files again.
    pub async fn reload_plugin(&self, p: &Principal, name: &str) -> Result<PluginInfo> {
        let action = "plugin.reload";
        self.require(p, Permission::ManageServer, action).await?;
        let info = self.plugin_service()?.reload(name.to_string()).await?;
        let d = self.draft(
            p,
            action,
            format!("plugin:{name}"),
            [
                ("digest", info.digest.clone()),
                ("version", info.version.clone()),
            ],
        );
        self.meta.audit_append(&d)?;
        self.meta.durable().await?;
        Ok(info)
    }

    /// The devices of `org`'s subtree and their backups.
    pub(crate) fn inventory(&self, org: &Name) -> Result<Inventory> {
        let tree = self.org_tree();
        let mut records = Vec::new();
        for o in tree.subtree(org) {
            records.extend(self.meta.devices_in_org(o)?);
        }
        let devices = self.device_infos(records)?;
        let mut backups = BTreeMap::new();
        for d in &devices {
            backups.insert(d.archive.clone(), self.backups(&d.archive)?);
        }
        Ok(Inventory { devices, backups })
    }

    /// Run a reporter plugin for an org the caller may see.
    pub async fn run_report(
        &self,
        p: &Principal,
        plugin: &str,
        req: RunReport,
    ) -> Result<(String, Vec<u8>)> {
        let org = req.org.clone();
        self.authorize(
            p,
            Permission::ReadInventory,
            "running a report",
            &format!("org:{org}"),
            Some(&org),
            || CoreError::NotFound(format!("org {org} does not exist")),
        )
        .await?;
        let inventory = self.inventory(&org)?;
        self.plugin_service()?
            .report(plugin.to_string(), req, inventory, self.now())
            .await
    }

    /// A retention plugin's plan for an archive the caller may see (a dry
    /// run).
    pub async fn retention_plan(
        &self,
        p: &Principal,
        archive: &Name,
        plugin: Option<String>,
    ) -> Result<serde_json::Value> {
        let missing = || CoreError::NotFound(format!("archive {archive} does not exist"));
        let dev = self.meta.device_of_archive(archive)?;
        let org = dev.as_ref().map(|d| d.org.clone());
        self.authorize(
            p,
            Permission::ReadInventory,
            "planning retention",
            &format!("archive:{archive}"),
            org.as_ref(),
            missing,
        )
        .await?;
        let dev = dev.ok_or_else(missing)?;
        let target = PlanTarget {
            archive: archive.clone(),
            device: dev.id,
            org: dev.org,
            backups: self.backups(archive)?,
            now: self.now(),
        };
        self.plugin_service()?.retention_plan(target, plugin).await
    }
}
