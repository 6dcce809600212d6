//! Coffer's WebAssembly plugin host: the only crate that names wasmtime.
//!
//! One [`Host`] per process holds the engine (pooling allocator when the
//! machine can reserve it, on-demand otherwise), an epoch ticker, a linker
//! per world, and the on-disk cache of compiled components. [`Host::load`]
//! compiles a component once (or loads the cached artifact), checks that it
//! links against the world its manifest names, and keeps an `InstancePre`.
//! Every call gets a fresh `Store` and instance with its own limits: memory
//! and tables, an epoch deadline that yields every tick and stops the guest
//! when its CPU budget is spent, a wall-clock timeout, and caps on input and
//! output sizes. A failed call is that call's failure only: counted, logged
//! with the plugin's name, and after `suspend_after` failures in a row the
//! plugin is suspended with a doubling backoff.

pub mod bindings;
pub mod compat;
pub mod guard;
pub mod manifest;
pub mod net;
pub mod report;
pub mod state;
pub mod testing;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use wasmtime::component::{Component, Linker};
use wasmtime::{Engine, Store, UpdateDeadline};

use bindings::{integration, reporter, retention, types, v0_1, v0_2};
pub use manifest::{Capability, Grants, Manifest, World};
use state::{HostState, StateParts};
pub use state::{HttpSender, Inventory, KvBackend, MemoryKv};

/// The current contract version (`wit/`, `coffer:plugin@…`): what the SDK
/// builds against. The host serves every [`Contract`].
pub const CONTRACT: &str = "0.3.0";

/// A version of the plugin contract the host serves. A plugin's version is
/// the one its component imports (`coffer:plugin/types@0.1.0`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Contract {
    /// `wit/v0.1.0/`: the first release.
    #[serde(rename = "0.1.0")]
    V0_1,
    /// `wit/v0.2.0/`: adds the `block-damaged` and `block-healed` events.
    #[serde(rename = "0.2.0")]
    V0_2,
    /// `wit/`: adds the `health-changed` event.
    #[serde(rename = "0.3.0")]
    V0_3,
}

impl Contract {
    pub const ALL: [Contract; 3] = [Contract::V0_1, Contract::V0_2, Contract::V0_3];

    pub fn version(self) -> &'static str {
        match self {
            Contract::V0_1 => "0.1.0",
            Contract::V0_2 => "0.2.0",
            Contract::V0_3 => CONTRACT,
        }
    }

    /// The served version `v` (any patch level) belongs to.
    pub fn of(v: &str) -> Option<Contract> {
        let major_minor = |v: &str| v.split('.').take(2).collect::<Vec<_>>().join(".");
        Self::ALL
            .into_iter()
            .find(|c| major_minor(c.version()) == major_minor(v))
    }

    /// Every served version, for messages: "0.1.0, 0.2.0".
    pub fn served() -> String {
        Self::ALL.map(|c| c.version()).join(", ")
    }
}

impl std::fmt::Display for Contract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.version())
    }
}

/// One epoch tick.
const TICK: Duration = Duration::from_millis(1);

/// Per-call bounds.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Each linear memory of a plugin instance.
    pub memory_bytes: usize,
    pub table_elements: usize,
    /// Guest execution time (epoch ticks of 1 ms) before the call is stopped.
    pub cpu_ms: u64,
    /// Wall-clock time of the whole call, host calls included.
    pub call_timeout: Duration,
    /// The call's arguments, measured as JSON.
    pub max_input_bytes: usize,
    /// The call's result, measured as JSON.
    pub max_output_bytes: usize,
    pub kv_max_total_bytes: u64,
    pub kv_max_value_bytes: usize,
    /// Failures in a row that suspend a plugin.
    pub suspend_after: u32,
    /// First suspension; doubles each time, up to `suspend_max`.
    pub suspend_base: Duration,
    pub suspend_max: Duration,
    /// Calls running at once across all plugins (and pool slots).
    pub max_concurrent_calls: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            table_elements: 65_536,
            cpu_ms: 500,
            call_timeout: Duration::from_secs(5),
            max_input_bytes: 8 << 20,
            max_output_bytes: 8 << 20,
            kv_max_total_bytes: 1 << 20,
            kv_max_value_bytes: 64 << 10,
            suspend_after: 5,
            suspend_base: Duration::from_secs(30),
            suspend_max: Duration::from_secs(3600),
            max_concurrent_calls: 32,
        }
    }
}

/// How to build a [`Host`].
pub struct HostOptions {
    pub limits: Limits,
    /// Where compiled components are cached (None: compile on every load).
    pub cache_dir: Option<PathBuf>,
    /// Try the pooling allocator (falls back to on-demand if it cannot be
    /// reserved).
    pub pooling: bool,
    /// Memory slots the pool reserves address space for.
    pub pool_memories: u32,
    pub kv: Arc<dyn KvBackend>,
    pub http: Option<Arc<dyn HttpSender>>,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            cache_dir: None,
            pooling: true,
            pool_memories: 128,
            kv: Arc::new(MemoryKv::default()),
            http: None,
        }
    }
}

/// Why a call failed. `code()` is the machine-readable word.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    #[error("plugin {plugin} is suspended for {seconds} s after {failures} failures in a row")]
    Suspended {
        plugin: String,
        seconds: u64,
        failures: u32,
    },
    #[error("the call's input is {size} bytes; the limit is {max}")]
    InputTooLarge { size: usize, max: usize },
    #[error("the plugin's output is {size} bytes; the limit is {max}")]
    OutputTooLarge { size: usize, max: usize },
    #[error("the plugin ran past its CPU budget of {ms} ms and was stopped")]
    CpuDeadline { ms: u64 },
    #[error("the call took longer than {ms} ms and was stopped")]
    Timeout { ms: u64 },
    #[error("the plugin was stopped at its {0}")]
    MemoryLimit(String),
    #[error("the plugin trapped: {0}")]
    Trap(String),
    #[error("the plugin reported an error ({code}): {message}")]
    Plugin { code: String, message: String },
}

impl CallError {
    pub fn code(&self) -> &'static str {
        match self {
            CallError::Suspended { .. } => "suspended",
            CallError::InputTooLarge { .. } => "input_too_large",
            CallError::OutputTooLarge { .. } => "output_too_large",
            CallError::CpuDeadline { .. } => "cpu_deadline",
            CallError::Timeout { .. } => "timeout",
            CallError::MemoryLimit(_) => "memory_limit",
            CallError::Trap(_) => "trap",
            CallError::Plugin { .. } => "plugin_error",
        }
    }
}

struct Inner {
    engine: Engine,
    pooling: bool,
    /// Per contract version and world: `linker_for`.
    linkers: Vec<Linker<HostState>>,
    cache_dir: Option<PathBuf>,
    limits: Limits,
    kv: Arc<dyn KvBackend>,
    http: Option<Arc<dyn HttpSender>>,
    calls: tokio::sync::Semaphore,
}

/// The plugin engine of one process. Cheap to clone.
#[derive(Clone)]
pub struct Host(Arc<Inner>);

impl Host {
    pub fn new(opts: HostOptions) -> anyhow::Result<Self> {
        let limits = opts.limits;
        let base = |pool: Option<u32>| -> anyhow::Result<Engine> {
            let mut cfg = wasmtime::Config::new();
            cfg.epoch_interruption(true);
            cfg.max_wasm_stack(1 << 20);
            if let Some(memories) = pool {
                let slots = limits.max_concurrent_calls.max(1);
                let mut p = wasmtime::PoolingAllocationConfig::new();
                p.total_component_instances(slots)
                    .total_core_instances(slots * 16)
                    .total_memories(memories)
                    .total_tables(slots * 16)
                    .total_stacks(slots)
                    .max_core_instances_per_component(32)
                    .max_memories_per_component(4)
                    .max_tables_per_component(16)
                    .table_elements(limits.table_elements)
                    .max_memory_size(limits.memory_bytes);
                cfg.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(p));
            }
            Ok(Engine::new(&cfg)?)
        };
        let (engine, pooling) = if opts.pooling {
            match base(Some(opts.pool_memories)) {
                Ok(e) => (e, true),
                Err(err) => {
                    tracing::warn!(
                        "plugins: the pooling allocator could not reserve its memory ({err:#}); \
                         using on-demand allocation (slower instantiation)"
                    );
                    (base(None)?, false)
                }
            }
        } else {
            (base(None)?, false)
        };
        let mut linkers = Vec::new();
        for c in Contract::ALL {
            for w in [World::Reporter, World::Retention, World::Integration] {
                linkers.push(Self::linker(&engine, c, w)?);
            }
        }
        // The ticker stops when the last Host is dropped.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("plugin-epoch".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                match weak.upgrade() {
                    Some(e) => e.increment_epoch(),
                    None => return,
                }
            })
            .context("start the plugin epoch thread")?;
        if let Some(d) = &opts.cache_dir {
            std::fs::create_dir_all(d)
                .with_context(|| format!("create the plugin cache {}", d.display()))?;
        }
        Ok(Host(Arc::new(Inner {
            engine,
            pooling,
            linkers,
            cache_dir: opts.cache_dir,
            calls: tokio::sync::Semaphore::new(limits.max_concurrent_calls.max(1) as usize),
            limits,
            kv: opts.kv,
            http: opts.http,
        })))
    }

    fn linker(
        engine: &Engine,
        contract: Contract,
        world: World,
    ) -> anyhow::Result<Linker<HostState>> {
        use wasmtime::component::HasSelf;
        let mut l = Linker::new(engine);
        // Rust's std imports WASI (environment, stdio, clocks, random): link
        // it against an empty context.
        wasmtime_wasi::p2::add_to_linker_async(&mut l)?;
        let l2 = &mut l;
        match (contract, world) {
            (Contract::V0_3, World::Reporter) => {
                reporter::Reporter::add_to_linker::<_, HasSelf<_>>(l2, |s| s)?
            }
            (Contract::V0_3, World::Retention) => {
                retention::Retention::add_to_linker::<_, HasSelf<_>>(l2, |s| s)?
            }
            (Contract::V0_3, World::Integration) => {
                integration::Integration::add_to_linker::<_, HasSelf<_>>(l2, |s| s)?
            }
            (Contract::V0_2, World::Reporter) => {
                v0_2::reporter::Reporter::add_to_linker::<_, HasSelf<_>>(l2, |s| s)?
            }
            (Contract::V0_2, World::Retention) => {
                v0_2::retention::Retention::add_to_linker::<_, HasSelf<_>>(l2, |s| s)?
            }
            (Contract::V0_2, World::Integration) => {
                v0_2::integration::Integration::add_to_linker::<_, HasSelf<_>>(l2, |s| s)?
            }
            (Contract::V0_1, World::Reporter) => {
                v0_1::reporter::Reporter::add_to_linker::<_, HasSelf<_>>(l2, |s| s)?
            }
            (Contract::V0_1, World::Retention) => {
                v0_1::retention::Retention::add_to_linker::<_, HasSelf<_>>(l2, |s| s)?
            }
            (Contract::V0_1, World::Integration) => {
                v0_1::integration::Integration::add_to_linker::<_, HasSelf<_>>(l2, |s| s)?
            }
        }
        Ok(l)
    }

    fn linker_for(&self, contract: Contract, world: World) -> &Linker<HostState> {
        &self.0.linkers[contract as usize * 3 + world as usize]
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.0.pooling
    }

    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    /// Compile (or load from the cache) and link a plugin. Fails with a
    /// sentence saying what is wrong: not a component, the wrong world, an
    /// import the world does not offer.
    pub fn load(&self, wasm: &[u8], manifest: Manifest, grants: Grants) -> anyhow::Result<Plugin> {
        let config = manifest.resolve_config(&grants.config)?;
        let component = self
            .compile(wasm)
            .with_context(|| format!("plugin {}", manifest.name))?;
        let world = manifest.world;
        let contract = self.contract_of(&component, &manifest)?;
        let linker = self.linker_for(contract, world);
        let pre = linker.instantiate_pre(&component).map_err(|e| {
            anyhow::anyhow!(
                "plugin {} does not link as a {world} plugin of coffer:plugin@{contract}: {e:#}",
                manifest.name
            )
        })?;
        let wrong = |e: wasmtime::Error| {
            anyhow::anyhow!(
                "plugin {} does not implement the {world} world (its manifest says it does): {e:#}",
                manifest.name
            )
        };
        let pre = match (contract, world) {
            (Contract::V0_3, World::Reporter) => {
                Pre::Reporter(reporter::ReporterPre::new(pre).map_err(wrong)?)
            }
            (Contract::V0_3, World::Retention) => {
                Pre::Retention(retention::RetentionPre::new(pre).map_err(wrong)?)
            }
            (Contract::V0_3, World::Integration) => {
                Pre::Integration(integration::IntegrationPre::new(pre).map_err(wrong)?)
            }
            (Contract::V0_2, World::Reporter) => {
                Pre::ReporterV0_2(v0_2::reporter::ReporterPre::new(pre).map_err(wrong)?)
            }
            (Contract::V0_2, World::Retention) => {
                Pre::RetentionV0_2(v0_2::retention::RetentionPre::new(pre).map_err(wrong)?)
            }
            (Contract::V0_2, World::Integration) => {
                Pre::IntegrationV0_2(v0_2::integration::IntegrationPre::new(pre).map_err(wrong)?)
            }
            (Contract::V0_1, World::Reporter) => {
                Pre::ReporterV0_1(v0_1::reporter::ReporterPre::new(pre).map_err(wrong)?)
            }
            (Contract::V0_1, World::Retention) => {
                Pre::RetentionV0_1(v0_1::retention::RetentionPre::new(pre).map_err(wrong)?)
            }
            (Contract::V0_1, World::Integration) => {
                Pre::IntegrationV0_1(v0_1::integration::IntegrationPre::new(pre).map_err(wrong)?)
            }
        };
        let granted = [Capability::Kv, Capability::Http, Capability::Inventory]
            .into_iter()
            .filter(|c| grants.has(&manifest, *c))
            .collect();
        Ok(Plugin {
            host: self.clone(),
            name: manifest.name.as_str().into(),
            digest: blake3::hash(wasm).to_hex().to_string(),
            manifest,
            contract,
            allowed_hosts: grants.allowed_hosts,
            granted,
            config,
            pre,
            health: Mutex::new(Health::default()),
        })
    }

    /// The contract version a component was built against: the version of
    /// the `coffer:plugin` interfaces it imports (every world imports
    /// `types`). A manifest that names a version must agree with it.
    fn contract_of(&self, component: &Component, manifest: &Manifest) -> anyhow::Result<Contract> {
        let ty = component.component_type();
        let mut found: Option<String> = None;
        for (name, _) in ty.imports(&self.0.engine) {
            if let Some(v) = name
                .strip_prefix("coffer:plugin/")
                .and_then(|r| r.split_once('@'))
                .map(|(_, v)| v)
            {
                match &found {
                    Some(f) if f != v => anyhow::bail!(
                        "plugin {} imports two versions of coffer:plugin ({f} and {v}): \
                         build it against one",
                        manifest.name
                    ),
                    _ => found = Some(v.to_string()),
                }
            }
        }
        let stated = manifest.contract.as_deref();
        let Some(v) = found.as_deref().or(stated) else {
            return Ok(Contract::V0_3);
        };
        let contract = Contract::of(v).ok_or_else(|| {
            anyhow::anyhow!(
                "plugin {} was built against coffer:plugin@{v}; this server serves {}",
                manifest.name,
                Contract::served()
            )
        })?;
        if let Some(s) = stated {
            if Contract::of(s) != Some(contract) {
                anyhow::bail!(
                    "plugin {}: its plugin.toml says contract = \"{s}\", but the component was \
                     built against coffer:plugin@{v}; correct the manifest or drop the line",
                    manifest.name
                );
            }
        }
        Ok(contract)
    }

    /// The component for `wasm`: from the cache if this engine compiled it
    /// before, else compiled now (and cached).
    fn compile(&self, wasm: &[u8]) -> anyhow::Result<Component> {
        check_component(wasm)?;
        let engine = &self.0.engine;
        let Some(dir) = &self.0.cache_dir else {
            return Ok(Component::new(engine, wasm)?);
        };
        let mut key = B3(blake3::Hasher::new());
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut key);
        key.0.update(wasm);
        let path = dir.join(format!("{}.cwasm", &key.0.finalize().to_hex()[..32]));
        if path.exists() {
            match load_artifact(engine, &path) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::warn!(path = %path.display(), "recompiling a plugin: cached artifact unusable: {e:#}");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
        let artifact = engine.precompile_component(wasm)?;
        // A name of its own: two loads of the same component may compile
        // at once; the last rename wins and both artifacts are the same.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = path.with_extension(format!("{}.{n}.tmp", std::process::id()));
        std::fs::write(&tmp, &artifact).with_context(|| format!("write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("write {}", path.display()))?;
        load_artifact(engine, &path)
    }
}

/// Load a compiled artifact this host wrote into its own cache directory:
/// the file name carries the engine's compatibility hash and the blake3 of
/// the source, so only artifacts made by this wasmtime and configuration,
/// from these exact bytes, are ever loaded. The file is read into memory
/// rather than mapped, so a file changed underneath a running server cannot
/// fault it.
#[allow(unsafe_code)]
fn load_artifact(engine: &Engine, path: &std::path::Path) -> anyhow::Result<Component> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    // SAFETY: `deserialize` trusts the bytes to be wasmtime's own output.
    // The cache directory belongs to the server (inside its data
    // directory), files are written there only by `Host::compile` above via
    // a rename, and their names bind them to this engine and source.
    Ok(unsafe { Component::deserialize(engine, &bytes) }?)
}

/// Refuse what is not a component with a sentence a partner understands.
fn check_component(wasm: &[u8]) -> anyhow::Result<()> {
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        anyhow::bail!("not a WebAssembly file (no \\0asm header)");
    }
    if wasm[6..8] == [0, 0] {
        anyhow::bail!(
            "a core WebAssembly module, not a component: build it for the wasm32-wasip2 target \
             (or wrap it with `wasm-tools component new`)"
        );
    }
    Ok(())
}

/// The size of `v` as JSON, counted without building it.
fn json_size(v: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    match serde_json::to_writer(&mut c, v) {
        Ok(()) => c.0,
        Err(_) => usize::MAX,
    }
}

struct B3(blake3::Hasher);

impl std::hash::Hasher for B3 {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
    fn finish(&self) -> u64 {
        0
    }
}

enum Pre {
    Reporter(reporter::ReporterPre<HostState>),
    Retention(retention::RetentionPre<HostState>),
    Integration(integration::IntegrationPre<HostState>),
    ReporterV0_1(v0_1::reporter::ReporterPre<HostState>),
    RetentionV0_1(v0_1::retention::RetentionPre<HostState>),
    IntegrationV0_1(v0_1::integration::IntegrationPre<HostState>),
    ReporterV0_2(v0_2::reporter::ReporterPre<HostState>),
    RetentionV0_2(v0_2::retention::RetentionPre<HostState>),
    IntegrationV0_2(v0_2::integration::IntegrationPre<HostState>),
}

#[derive(Default)]
struct Health {
    calls: u64,
    failures: u64,
    in_a_row: u32,
    suspensions: u32,
    suspended_until: Option<Instant>,
    last_error: Option<String>,
    /// The latest call latencies, in microseconds.
    latencies: VecDeque<u64>,
}

/// What the operator sees of a plugin.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub name: String,
    pub version: String,
    pub world: World,
    pub contract: Contract,
    pub digest: String,
    pub calls: u64,
    pub failures: u64,
    pub failures_in_a_row: u32,
    pub suspended_for_secs: Option<u64>,
    pub last_error: Option<String>,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

/// A loaded plugin: its manifest, grants and pre-linked component.
pub struct Plugin {
    host: Host,
    name: Arc<str>,
    digest: String,
    manifest: Manifest,
    contract: Contract,
    allowed_hosts: Vec<String>,
    granted: Vec<Capability>,
    config: Vec<(String, String)>,
    pre: Pre,
    health: Mutex<Health>,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("world", &self.manifest.world)
            .finish()
    }
}

/// What one call needs from the caller.
pub struct CallInfo {
    pub org: String,
    pub now_ms: u64,
}

/// A call admitted and ready to run.
struct Begun<'a> {
    _slot: tokio::sync::SemaphorePermit<'a>,
    store: Store<HostState>,
    ctx: types::CallContext,
    started: Instant,
}

type Raw<R> = Result<wasmtime::Result<Result<R, types::PluginError>>, tokio::time::error::Elapsed>;

impl Plugin {
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The contract version the plugin was built against.
    pub fn contract(&self) -> Contract {
        self.contract
    }

    /// Whether the plugin's contract has this event kind (an integration
    /// plugin built against an older version is not sent newer kinds).
    pub fn receives(&self, kind: &types::EventKind) -> bool {
        compat::receives(self.contract, kind)
    }

    pub fn status(&self) -> Status {
        let h = self.health.lock().unwrap();
        let mut l: Vec<u64> = h.latencies.iter().copied().collect();
        l.sort_unstable();
        let pct = |p: f64| (!l.is_empty()).then(|| l[((l.len() - 1) as f64 * p) as usize]);
        Status {
            name: self.name.to_string(),
            version: self.manifest.version.clone(),
            world: self.manifest.world,
            contract: self.contract,
            digest: self.digest.clone(),
            calls: h.calls,
            failures: h.failures,
            failures_in_a_row: h.in_a_row,
            suspended_for_secs: h
                .suspended_until
                .and_then(|u| u.checked_duration_since(Instant::now()))
                .map(|d| d.as_secs() + 1),
            last_error: h.last_error.clone(),
            p50_us: pct(0.5),
            p99_us: pct(0.99),
        }
    }

    /// Lift a suspension (the operator re-enabled the plugin).
    pub fn resume(&self) {
        let mut h = self.health.lock().unwrap();
        h.suspended_until = None;
        h.in_a_row = 0;
        h.suspensions = 0;
    }

    fn context(&self, info: &CallInfo) -> types::CallContext {
        types::CallContext {
            plugin: self.name.to_string(),
            org: info.org.clone(),
            now_ms: info.now_ms,
            config: self.config.clone(),
        }
    }

    /// Admit the call, wait for a slot, and set up its store.
    async fn begin(
        &self,
        info: &CallInfo,
        input: &impl Serialize,
        inventory: Arc<Inventory>,
    ) -> Result<Begun<'_>, CallError> {
        self.admit(input)?;
        let slot = self.host.0.calls.acquire().await.expect("semaphore open");
        Ok(Begun {
            _slot: slot,
            store: self.store(info, inventory),
            ctx: self.context(info),
            started: Instant::now(),
        })
    }

    /// Refuse the call if suspended or its input is too big.
    fn admit(&self, input: &impl Serialize) -> Result<(), CallError> {
        {
            let h = self.health.lock().unwrap();
            if let Some(until) = h.suspended_until {
                if let Some(left) = until.checked_duration_since(Instant::now()) {
                    return Err(CallError::Suspended {
                        plugin: self.name.to_string(),
                        seconds: left.as_secs() + 1,
                        failures: h.in_a_row,
                    });
                }
            }
        }
        let size = json_size(input);
        let max = self.host.0.limits.max_input_bytes;
        if size > max {
            return Err(CallError::InputTooLarge { size, max });
        }
        Ok(())
    }

    fn store(&self, info: &CallInfo, inventory: Arc<Inventory>) -> Store<HostState> {
        let inner = &self.host.0;
        let state = HostState::new(
            StateParts {
                plugin: self.name.clone(),
                granted: self.granted.clone(),
                allowed_hosts: self.allowed_hosts.clone(),
                kv: inner.kv.clone(),
                http: inner.http.clone(),
                inventory,
                now_ms: info.now_ms,
            },
            &inner.limits,
        );
        let mut store = Store::new(&inner.engine, state);
        store.limiter(|s| &mut s.limiter);
        let budget = inner.limits.cpu_ms.max(1);
        // Yield to the executor at every tick (so the wall-clock timeout can
        // fire and other tasks run), and stop the guest when its budget of
        // ticks is spent.
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut cx| {
            let s = cx.data_mut();
            s.ticks += 1;
            Ok(if s.ticks >= budget {
                UpdateDeadline::Interrupt
            } else {
                UpdateDeadline::Yield(1)
            })
        });
        store
    }

    /// Account for a finished call and turn its raw outcome into ours.
    fn finish<R: Serialize>(
        &self,
        raw: Raw<R>,
        store: &mut Store<HostState>,
        started: Instant,
    ) -> Result<R, CallError> {
        let limits = &self.host.0.limits;
        let refused = store.data_mut().limiter.refused.take();
        let dropped = store.data().logs_dropped;
        if dropped > 0 {
            tracing::warn!(
                plugin = &*self.name,
                "dropped {dropped} log lines of one call"
            );
        }
        let out = match raw {
            Err(_) => Err(CallError::Timeout {
                ms: limits.call_timeout.as_millis() as u64,
            }),
            Ok(Err(e)) => Err(if let Some(why) = refused {
                CallError::MemoryLimit(why)
            } else if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
                CallError::CpuDeadline { ms: limits.cpu_ms }
            } else {
                CallError::Trap(format!("{e:#}"))
            }),
            Ok(Ok(Err(pe))) => Err(CallError::Plugin {
                code: pe.code,
                message: pe.message,
            }),
            Ok(Ok(Ok(v))) => {
                let size = json_size(&v);
                if size > limits.max_output_bytes {
                    Err(CallError::OutputTooLarge {
                        size,
                        max: limits.max_output_bytes,
                    })
                } else {
                    Ok(v)
                }
            }
        };
        let mut h = self.health.lock().unwrap();
        h.calls += 1;
        if h.latencies.len() == 1024 {
            h.latencies.pop_front();
        }
        h.latencies.push_back(started.elapsed().as_micros() as u64);
        match &out {
            Ok(_) => {
                h.in_a_row = 0;
                h.suspensions = 0;
            }
            Err(e) => {
                h.failures += 1;
                h.in_a_row += 1;
                h.last_error = Some(e.to_string());
                tracing::warn!(
                    plugin = &*self.name,
                    code = e.code(),
                    "plugin call failed: {e}"
                );
                if h.in_a_row >= limits.suspend_after {
                    let backoff = limits
                        .suspend_base
                        .saturating_mul(1 << h.suspensions.min(16))
                        .min(limits.suspend_max);
                    h.suspensions += 1;
                    h.suspended_until = Some(Instant::now() + backoff);
                    tracing::error!(
                        plugin = &*self.name,
                        "plugin suspended for {} s after {} failures in a row",
                        backoff.as_secs(),
                        h.in_a_row
                    );
                }
            }
        }
        out
    }

    /// Run a retention plugin: which of `backups` it would expire. The caller
    /// applies the host's own rules (newest and pinned kept, holds) on top.
    pub async fn plan(
        &self,
        info: &CallInfo,
        archive: &types::Archive,
        backups: &[types::BackupSummary],
    ) -> Result<retention::Plan, CallError> {
        if self.manifest.world != World::Retention {
            return Err(self.wrong_world(World::Retention));
        }
        let Begun {
            _slot,
            mut store,
            ctx,
            started,
        } = self
            .begin(info, &(archive, backups), Arc::default())
            .await?;
        let raw = tokio::time::timeout(self.host.0.limits.call_timeout, async {
            match &self.pre {
                Pre::RetentionV0_1(pre) => {
                    let w = pre.instantiate_async(&mut store).await?;
                    let (ctx, archive) = (ctx.into(), archive.clone().into());
                    let backups = compat::all(backups.to_vec());
                    let r = w.call_plan(&mut store, &ctx, &archive, &backups).await?;
                    Ok(r.map(Into::into).map_err(Into::into))
                }
                Pre::RetentionV0_2(pre) => {
                    let w = pre.instantiate_async(&mut store).await?;
                    let (ctx, archive) = (ctx.into(), archive.clone().into());
                    let backups = compat::all(backups.to_vec());
                    let r = w.call_plan(&mut store, &ctx, &archive, &backups).await?;
                    Ok(r.map(Into::into).map_err(Into::into))
                }
                Pre::Retention(pre) => {
                    let w = pre.instantiate_async(&mut store).await?;
                    w.call_plan(&mut store, &ctx, archive, backups).await
                }
                _ => unreachable!("a retention plugin has a retention Pre"),
            }
        })
        .await;
        self.finish(raw, &mut store, started)
    }

    /// Run a reporter with the inventory the caller lends it.
    pub async fn report(
        &self,
        info: &CallInfo,
        params: &[(String, String)],
        inventory: Arc<Inventory>,
    ) -> Result<reporter::Report, CallError> {
        if self.manifest.world != World::Reporter {
            return Err(self.wrong_world(World::Reporter));
        }
        let Begun {
            _slot,
            mut store,
            ctx,
            started,
        } = self.begin(info, &params, inventory).await?;
        let raw = tokio::time::timeout(self.host.0.limits.call_timeout, async {
            match &self.pre {
                Pre::ReporterV0_1(pre) => {
                    let w = pre.instantiate_async(&mut store).await?;
                    let r = w.call_report(&mut store, &ctx.into(), params).await?;
                    Ok(r.map(Into::into).map_err(Into::into))
                }
                Pre::ReporterV0_2(pre) => {
                    let w = pre.instantiate_async(&mut store).await?;
                    let r = w.call_report(&mut store, &ctx.into(), params).await?;
                    Ok(r.map(Into::into).map_err(Into::into))
                }
                Pre::Reporter(pre) => {
                    let w = pre.instantiate_async(&mut store).await?;
                    w.call_report(&mut store, &ctx, params).await
                }
                _ => unreachable!("a reporter plugin has a reporter Pre"),
            }
        })
        .await;
        self.finish(raw, &mut store, started)
    }

    /// Deliver a batch of events to an integration plugin. Events its
    /// contract has no kind for are left out (see [`Plugin::receives`]).
    pub async fn on_events(
        &self,
        info: &CallInfo,
        events: &[types::Event],
    ) -> Result<(), CallError> {
        if self.manifest.world != World::Integration {
            return Err(self.wrong_world(World::Integration));
        }
        let Begun {
            _slot,
            mut store,
            ctx,
            started,
        } = self.begin(info, &events, Arc::default()).await?;
        let raw = tokio::time::timeout(self.host.0.limits.call_timeout, async {
            match &self.pre {
                Pre::IntegrationV0_1(pre) => {
                    let events: Vec<_> = events.iter().filter_map(compat::event_v0_1).collect();
                    if events.is_empty() {
                        return Ok(Ok(()));
                    }
                    let w = pre.instantiate_async(&mut store).await?;
                    let r = w.call_on_events(&mut store, &ctx.into(), &events).await?;
                    Ok(r.map_err(Into::into))
                }
                Pre::IntegrationV0_2(pre) => {
                    let events: Vec<_> = events.iter().filter_map(compat::event_v0_2).collect();
                    if events.is_empty() {
                        return Ok(Ok(()));
                    }
                    let w = pre.instantiate_async(&mut store).await?;
                    let r = w.call_on_events(&mut store, &ctx.into(), &events).await?;
                    Ok(r.map_err(Into::into))
                }
                Pre::Integration(pre) => {
                    let w = pre.instantiate_async(&mut store).await?;
                    w.call_on_events(&mut store, &ctx, events).await
                }
                _ => unreachable!("an integration plugin has an integration Pre"),
            }
        })
        .await;
        self.finish(raw, &mut store, started)
    }

    fn wrong_world(&self, asked: World) -> CallError {
        CallError::Plugin {
            code: "wrong_world".into(),
            message: format!(
                "plugin {} is a {} plugin, not a {asked} plugin",
                self.name, self.manifest.world
            ),
        }
    }
}
