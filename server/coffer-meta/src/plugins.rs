//! What the server keeps for plugins: each plugin's private key-value data
//! (one key range per plugin, `plugin \0 key`; plugin names hold no NUL
//! byte) and what the operator set for it.

use coffer_types::UnixMillis;
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::audit::{append_in, AuditDraft};
use crate::engine::{enc, engine, get, key, prefix, tx_err};
use crate::{MetaStore, Result};

/// The operator's setting for one plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginStateRecord {
    pub enabled: bool,
    pub changed_at: UnixMillis,
    pub changed_by: String,
}

impl MetaStore {
    /// A plugin's key-value entry.
    pub fn plugin_kv_get(&self, plugin: &str, k: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .t
            .plugin_kv
            .get(key(&[plugin.as_bytes(), k.as_bytes()]))
            .map_err(engine("read plugin key"))?
            .map(|v| v.to_vec()))
    }

    /// Set an entry unless the plugin's keys and values would then exceed
    /// `max_total` bytes (`Ok(Err(why))`).
    pub fn plugin_kv_set(
        &self,
        plugin: &str,
        k: &str,
        value: &[u8],
        max_total: u64,
    ) -> Result<std::result::Result<(), String>> {
        let mut used = 0u64;
        for kv in self.t.plugin_kv.scan_prefix(prefix(&[plugin.as_bytes()])) {
            let (ek, ev) = kv.map_err(engine("scan plugin keys"))?;
            if ek[plugin.len() + 1..] != *k.as_bytes() {
                used += (ek.len() - plugin.len() - 1 + ev.len()) as u64;
            }
        }
        if used + (k.len() + value.len()) as u64 > max_total {
            return Ok(Err(format!(
                "the plugin's key-value store is full ({max_total} bytes)"
            )));
        }
        self.t
            .plugin_kv
            .insert(key(&[plugin.as_bytes(), k.as_bytes()]), value)
            .map_err(engine("write plugin key"))?;
        Ok(Ok(()))
    }

    pub fn plugin_kv_delete(&self, plugin: &str, k: &str) -> Result<()> {
        self.t
            .plugin_kv
            .remove(key(&[plugin.as_bytes(), k.as_bytes()]))
            .map_err(engine("delete plugin key"))?;
        Ok(())
    }

    /// The plugin's keys that start with `starts`, in order.
    pub fn plugin_kv_keys(&self, plugin: &str, starts: &str) -> Result<Vec<String>> {
        let mut p = prefix(&[plugin.as_bytes()]);
        p.extend_from_slice(starts.as_bytes());
        let mut out = Vec::new();
        for kv in self.t.plugin_kv.scan_prefix(p) {
            let (ek, _) = kv.map_err(engine("scan plugin keys"))?;
            out.push(String::from_utf8_lossy(&ek[plugin.len() + 1..]).into_owned());
        }
        Ok(out)
    }

    /// What the operator last set for `plugin`, if anything.
    pub fn plugin_state(&self, plugin: &str) -> Result<Option<PluginStateRecord>> {
        get(&self.t.plugin_state, plugin.as_bytes(), "plugin state")
    }

    /// Record the operator's setting for `plugin` with its audit entry.
    pub fn set_plugin_state(
        &self,
        plugin: &str,
        rec: &PluginStateRecord,
        audit: &AuditDraft,
    ) -> Result<()> {
        let t = &self.t;
        (&t.plugin_state, &t.meta, &t.audit)
            .transaction(|(state, meta, log)| {
                state.insert(plugin.as_bytes(), enc(rec))?;
                append_in(meta, log, audit)?;
                Ok(())
            })
            .map_err(tx_err("set plugin state"))
    }
}
