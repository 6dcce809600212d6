//! What a plugin's `Store` holds for one call, and the host side of the
//! imported interfaces: log, kv, http-client, inventory, all checked against
//! the plugin's grants. A denied call returns an error to the guest; it
//! never traps.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{http_client, inventory, kv, log, types};
use crate::manifest::Capability;
use crate::Limits;

/// Where plugins' key-value data lives. Every method takes the plugin's name
/// from the host, never from the guest: a plugin can only reach its own keys.
pub trait KvBackend: Send + Sync {
    fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>>;
    /// Store `value`; fails if the plugin's total would exceed `max_total`.
    fn set(&self, plugin: &str, key: &str, value: Vec<u8>, max_total: u64) -> Result<(), String>;
    fn delete(&self, plugin: &str, key: &str);
    fn list(&self, plugin: &str, prefix: &str) -> Vec<String>;
}

/// An in-process [`KvBackend`] (for `coffer plugin test` and tests).
#[derive(Debug, Default)]
pub struct MemoryKv(Mutex<BTreeMap<String, BTreeMap<String, Vec<u8>>>>);

impl KvBackend for MemoryKv {
    fn get(&self, plugin: &str, key: &str) -> Option<Vec<u8>> {
        self.0.lock().unwrap().get(plugin)?.get(key).cloned()
    }
    fn set(&self, plugin: &str, key: &str, value: Vec<u8>, max_total: u64) -> Result<(), String> {
        let mut all = self.0.lock().unwrap();
        let mine = all.entry(plugin.to_string()).or_default();
        let used: u64 = mine
            .iter()
            .filter(|(k, _)| k.as_str() != key)
            .map(|(k, v)| (k.len() + v.len()) as u64)
            .sum();
        if used + (key.len() + value.len()) as u64 > max_total {
            return Err(format!(
                "the plugin's key-value store is full ({max_total} bytes)"
            ));
        }
        mine.insert(key.to_string(), value);
        Ok(())
    }
    fn delete(&self, plugin: &str, key: &str) {
        if let Some(m) = self.0.lock().unwrap().get_mut(plugin) {
            m.remove(key);
        }
    }
    fn list(&self, plugin: &str, prefix: &str) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .get(plugin)
            .map(|m| {
                m.keys()
                    .filter(|k| k.starts_with(prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Sends an HTTP request the host has already checked against the
/// allow-list, to the address it resolved. Supplied by the embedder (the
/// server's own HTTP stack).
pub trait HttpSender: Send + Sync {
    fn send(
        &self,
        to: std::net::SocketAddr,
        tls_name: Option<String>,
        req: http_client::Request,
        timeout: std::time::Duration,
        max_body: usize,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<http_client::Response, String>> + Send>,
    >;
}

/// The inventory the host lends a reporter for one call.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Inventory {
    pub devices: Vec<types::Device>,
    /// Backups by archive id.
    pub backups: HashMap<String, Vec<types::BackupSummary>>,
    pub health: Vec<types::HealthFacts>,
}

/// Memory, tables and instances of one store, with a note of what was
/// refused so the failure can say why.
pub(crate) struct Limiter {
    memory: usize,
    table_elements: usize,
    pub(crate) refused: Option<String>,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory {
            self.refused = Some(format!(
                "memory limit: the plugin asked for {} MiB, the limit is {} MiB",
                desired >> 20,
                self.memory >> 20
            ));
            return Ok(false);
        }
        Ok(true)
    }
    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.table_elements {
            self.refused = Some(format!(
                "table limit: {desired} elements asked, the limit is {}",
                self.table_elements
            ));
            return Ok(false);
        }
        Ok(true)
    }
    fn instances(&self) -> usize {
        64
    }
    fn tables(&self) -> usize {
        64
    }
    fn memories(&self) -> usize {
        16
    }
}

/// The store's data for one call.
pub struct HostState {
    pub(crate) plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) ticks: u64,
    granted: Vec<Capability>,
    allowed_hosts: Vec<String>,
    kv: Arc<dyn KvBackend>,
    kv_max_total: u64,
    kv_max_value: usize,
    http: Option<Arc<dyn HttpSender>>,
    http_timeout: std::time::Duration,
    max_output: usize,
    inventory: Arc<Inventory>,
    log_lines: u32,
    pub(crate) logs_dropped: u32,
}

pub(crate) struct StateParts {
    pub plugin: Arc<str>,
    pub granted: Vec<Capability>,
    pub allowed_hosts: Vec<String>,
    pub kv: Arc<dyn KvBackend>,
    pub http: Option<Arc<dyn HttpSender>>,
    pub inventory: Arc<Inventory>,
    pub now_ms: u64,
}

impl HostState {
    pub(crate) fn new(p: StateParts, limits: &Limits) -> Self {
        // No preopens, no environment, no arguments, no stdin, stdout and
        // stderr discarded, no sockets, no name lookup. The wall clock is
        // the call's `now`, so a plugin cannot see any other time.
        let mut b = wasmtime_wasi::WasiCtxBuilder::new();
        b.allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .wall_clock(FixedClock(p.now_ms));
        Self {
            plugin: p.plugin,
            wasi: b.build(),
            table: ResourceTable::new(),
            limiter: Limiter {
                memory: limits.memory_bytes,
                table_elements: limits.table_elements,
                refused: None,
            },
            ticks: 0,
            granted: p.granted,
            allowed_hosts: p.allowed_hosts,
            kv: p.kv,
            kv_max_total: limits.kv_max_total_bytes,
            kv_max_value: limits.kv_max_value_bytes,
            http: p.http,
            http_timeout: limits.call_timeout,
            max_output: limits.max_output_bytes,
            inventory: p.inventory,
            log_lines: 0,
            logs_dropped: 0,
        }
    }

    fn granted(&self, c: Capability) -> bool {
        self.granted.contains(&c)
    }
}

struct FixedClock(u64);

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1)
    }
    fn now(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// At most this many log lines per call, each at most this long.
const MAX_LOG_LINES: u32 = 200;
const MAX_LOG_LINE: usize = 2048;

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(&mut self, level: log::Level, message: String) -> wasmtime::Result<()> {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            self.logs_dropped += 1;
            return Ok(());
        }
        let mut m = message;
        if m.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !m.is_char_boundary(cut) {
                cut -= 1;
            }
            m.truncate(cut);
            m.push('…');
        }
        let plugin = &*self.plugin;
        match level {
            log::Level::Trace => tracing::trace!(plugin, "{m}"),
            log::Level::Debug => tracing::debug!(plugin, "{m}"),
            log::Level::Info => tracing::info!(plugin, "{m}"),
            log::Level::Warn => tracing::warn!(plugin, "{m}"),
            log::Level::Error => tracing::error!(plugin, "{m}"),
        }
        Ok(())
    }
}

const MAX_KEY: usize = 256;

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        if !self.granted(Capability::Kv) {
            return Ok(None);
        }
        Ok(self.kv.get(&self.plugin, &key))
    }
    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        if !self.granted(Capability::Kv) {
            return Ok(Err(
                "the key-value store is not granted to this plugin".into()
            ));
        }
        if key.is_empty() || key.len() > MAX_KEY {
            return Ok(Err(format!("keys are 1 to {MAX_KEY} bytes")));
        }
        if value.len() > self.kv_max_value {
            return Ok(Err(format!(
                "values are at most {} bytes",
                self.kv_max_value
            )));
        }
        Ok(self.kv.set(&self.plugin, &key, value, self.kv_max_total))
    }
    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        if self.granted(Capability::Kv) {
            self.kv.delete(&self.plugin, &key);
        }
        Ok(())
    }
    fn list_keys(&mut self, prefix: String) -> wasmtime::Result<Vec<String>> {
        if !self.granted(Capability::Kv) {
            return Ok(Vec::new());
        }
        Ok(self.kv.list(&self.plugin, &prefix))
    }
}

impl inventory::Host for HostState {
    fn devices(&mut self) -> wasmtime::Result<Vec<types::Device>> {
        if !self.granted(Capability::Inventory) {
            return Ok(Vec::new());
        }
        Ok(self.inventory.devices.clone())
    }
    fn backups(&mut self, archive: String) -> wasmtime::Result<Vec<types::BackupSummary>> {
        if !self.granted(Capability::Inventory) {
            return Ok(Vec::new());
        }
        Ok(self
            .inventory
            .backups
            .get(&archive)
            .cloned()
            .unwrap_or_default())
    }
    fn health(&mut self) -> wasmtime::Result<Vec<types::HealthFacts>> {
        if !self.granted(Capability::Inventory) {
            return Ok(Vec::new());
        }
        Ok(self.inventory.health.clone())
    }
}

impl http_client::Host for HostState {
    async fn send(
        &mut self,
        mut req: http_client::Request,
    ) -> wasmtime::Result<Result<http_client::Response, String>> {
        if !self.granted(Capability::Http) {
            return Ok(Err("outbound HTTP is not granted to this plugin".into()));
        }
        let dest = match crate::net::check_destination(
            &req.url,
            &self.allowed_hosts,
            "this plugin's allow-list",
        )
        .await
        {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(plugin = &*self.plugin, url = %req.url, "outbound HTTP denied: {e}");
                return Ok(Err(e));
            }
        };
        // The destination is the URL's, checked above: a guest's Host header
        // cannot steer the request elsewhere.
        req.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("host"));
        let Some(http) = self.http.clone() else {
            return Ok(Err("this server has no outbound HTTP client".into()));
        };
        Ok(http
            .send(
                dest.addr,
                dest.tls_name,
                req,
                self.http_timeout,
                self.max_output,
            )
            .await)
    }
}
