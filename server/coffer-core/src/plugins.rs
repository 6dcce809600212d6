//! The plugin platform as the core sees it: a service the binary plugs in
//! (it owns the WebAssembly host), reached by the admin API through the
//! core like everything else.

use std::sync::Arc;

use coffer_types::wire::{PluginInfo, RunReport};
use coffer_types::Name;
use futures::future::BoxFuture;

use crate::{Coffer, CoreError, Result};

pub trait PluginAdmin: Send + Sync {
    fn list(&self) -> Vec<PluginInfo>;
    fn set_enabled(&self, name: &str, enabled: bool) -> Result<PluginInfo>;
    /// Load the plugin's files again (compile, check, smoke call, swap).
    fn reload(&self, name: String) -> BoxFuture<'_, Result<PluginInfo>>;
    /// Run a reporter: the media type and the bytes.
    fn report(&self, name: String, req: RunReport) -> BoxFuture<'_, Result<(String, Vec<u8>)>>;
    /// A retention plan for `archive` as a dry run (no expiry happens).
    fn retention_plan(
        &self,
        archive: Name,
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

    /// Plug in the plugin service (once, at start).
    pub fn set_plugins(&self, p: Arc<dyn PluginAdmin>) {
        let _ = self.plugins.set(p);
    }

    pub fn plugins(&self) -> Result<&Arc<dyn PluginAdmin>> {
        self.plugins.get().ok_or_else(|| {
            CoreError::NotFound("plugins are disabled on this server (plugins.enabled)".into())
        })
    }
}
