//! `coffer serve`: load the configuration, open metadata and storage, set up
//! TLS, bind, and serve until SIGTERM/SIGINT.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use coffer_core::workers::{Backoff, Supervisor, Worker};
use coffer_core::{Clock, Coffer, SystemClock};
use coffer_http::{load_or_create_tls, Metrics, Server, TlsMode};
use coffer_meta::MetaStore;
use coffer_storage::BlockStore;
use prometheus_client::registry::Registry;
use tokio::signal::unix::{signal, SignalKind};

use crate::config::{Config, LogFormat};

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Config file (TOML). Without one, built-in defaults apply.
    #[arg(long, env = "COFFER_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (overrides `data_dir`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (overrides `http.listen`), e.g. 127.0.0.1:0.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Serve cleartext HTTP/2 with prior knowledge (h2c) instead of TLS: for
    /// loopback or behind a TLS-terminating proxy.
    #[arg(long)]
    insecure_h2c: bool,
    /// PEM certificate chain (with --tls-key): use it instead of a
    /// self-signed certificate.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Log format (overrides `log.format`).
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut cfg = Config::load(args.config.as_deref())?;
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    if let Some(l) = args.listen {
        cfg.http.listen = l;
    }
    if args.insecure_h2c {
        cfg.tls.mode = TlsMode::Off;
        cfg.tls.cert_file = None;
        cfg.tls.key_file = None;
    }
    if let (Some(c), Some(k)) = (args.tls_cert, args.tls_key) {
        cfg.tls.mode = TlsMode::Files;
        cfg.tls.cert_file = Some(c);
        cfg.tls.key_file = Some(k);
    }
    if let Some(f) = args.log_format {
        cfg.log.format = f;
    }
    cfg.validate()?;
    init_tracing(&cfg);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("coffer")
        .build()
        .context("start the async runtime")?
        .block_on(serve(cfg))
}

fn init_tracing(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cfg.log.level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().with_current_span(true).init(),
    }
}

fn open_meta(data_dir: &Path, cache_bytes: u64) -> anyhow::Result<MetaStore> {
    let meta = MetaStore::open_with(&data_dir.join("meta"), SystemClock.now(), cache_bytes)
        .context("open metadata")?;
    if let Some(v) = meta.upgraded_from() {
        tracing::warn!(
            from = v,
            to = coffer_meta::SCHEMA_VERSION,
            "metadata upgraded; a server older than this one can no longer open it"
        );
    }
    Ok(meta)
}

/// Descriptors kept out of the connection limit: metadata, storage files,
/// the spool, plugins, logs, and connections answered `503` at the limit.
const FD_RESERVE: u64 = 256;

/// Raise the soft open-files limit to the hard one, and size the connection
/// limit from it unless the config set one.
fn size_connections(http: &mut coffer_http::HttpConfig) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let mut soft = lim.current.unwrap_or(u64::MAX);
    if lim.current != lim.maximum {
        let raised = Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => soft = lim.maximum.unwrap_or(u64::MAX),
            Err(e) => tracing::warn!(error = %e, soft, "could not raise the open-files limit"),
        }
    }
    let fit = soft.saturating_sub(FD_RESERVE).clamp(16, 1 << 20) as usize;
    match http.max_connections {
        None => http.max_connections = Some(fit),
        Some(n) if n > fit => tracing::warn!(
            max_connections = n,
            open_files_limit = soft,
            "http.max_connections leaves fewer than {FD_RESERVE} descriptors for storage and \
             metadata: at the limit, writes may fail with 'Too many open files'; raise the \
             open-files limit (LimitNOFILE= in systemd) or lower http.max_connections"
        ),
        Some(_) => {}
    }
    tracing::info!(
        open_files_limit = soft,
        max_connections = http.max_connections,
        "descriptors"
    );
}

async fn serve(mut cfg: Config) -> anyhow::Result<()> {
    size_connections(&mut cfg.http);
    let data_dir = &cfg.data_dir;
    // Durably: a data directory whose own name is lost to a power cut takes
    // everything in it along.
    coffer_storage::create_dir_durably(data_dir)
        .with_context(|| format!("create data directory {}", data_dir.display()))?;
    let meta = Arc::new(open_meta(data_dir, cfg.meta.cache_bytes)?);
    let storage = BlockStore::open(&cfg.storage, data_dir).context("open block storage")?;
    let core = Coffer::new(
        meta,
        storage.clone(),
        Arc::new(SystemClock),
        cfg.limits.clone(),
    )?;

    core.set_hold_settings(cfg.legal_hold.settings().map_err(anyhow::Error::msg)?);
    core.set_gc_settings(cfg.gc.settings().map_err(anyhow::Error::msg)?);
    // A collection a crash interrupted: its journaled destructions finish
    // before anything is served.
    core.gc_recover()
        .await
        .context("finish the destruction journal of an interrupted collection")?;

    if let Some(token) = core.bootstrap_admin().await? {
        let path = data_dir.join("admin.token");
        write_private(&path, format!("{token}\n").as_bytes())?;
        tracing::info!(path = %path.display(), "created the admin account and its token (mode 0600); `coffer admin` reads it from there");
    }

    let tls = load_or_create_tls(&cfg.tls, data_dir)?;
    if let Some(t) = &tls {
        tracing::info!(
            certificate = %t.cert_path.display(),
            sha256 = %t.fingerprint,
            generated = t.generated,
            "TLS certificate; agents can pin this fingerprint"
        );
    }

    let listener = tokio::net::TcpListener::bind(cfg.http.listen)
        .await
        .with_context(|| format!("listen on {}", cfg.http.listen))?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    match core.ready().await {
        Ok(()) => tracing::info!(storage = storage.describe(), "storage ready"),
        Err(e) => {
            tracing::warn!(storage = storage.describe(), error = %e, "storage is not reachable yet; /readyz fails until it is")
        }
    }
    tracing::info!(address = %addr, protocol = if tls.is_some() { "h2 (TLS)" } else { "h2c (cleartext)" }, data_dir = %data_dir.display(), "coffer listening");
    // One machine-readable line on stdout for scripts and the test harness.
    println!("listening on {scheme}://{addr}");
    let _ = std::io::stdout().flush();

    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut term = signal(SignalKind::terminate()).context("install SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("install SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
        let _ = tx.send(true);
    });

    // One registry; each component registers its own series.
    let mut registry = Registry::with_prefix("coffer");
    let metrics = Arc::new(Metrics::register(&mut registry));

    // Background work, all under the one supervisor.
    let mut workers: Vec<Arc<dyn Worker>> = vec![
        core.spool_sweep_worker(std::time::Duration::from_secs(cfg.workers.spool_sweep_secs)),
        core.health_worker(std::time::Duration::from_millis(cfg.workers.health_tick_ms)),
    ];
    let [gc_every, retention_every, cold_every] = cfg.gc.intervals().map_err(anyhow::Error::msg)?;
    workers.push(core.clock_worker());
    workers.push(core.retention_worker(retention_every));
    workers.push(core.cold_storage_worker(cold_every));
    workers.push(core.gc_worker(gc_every));
    registry.register_collector(Box::new(GcMetrics(core.clone())));
    if cfg.scrub.enabled {
        workers.push(core.scrub_worker(coffer_core::ScrubSettings {
            bytes_per_sec: cfg.scrub.bytes_per_sec,
            interval: cfg.scrub.interval().map_err(anyhow::Error::msg)?,
        }));
        registry.register_collector(Box::new(ScrubMetrics(core.clone())));
    }
    // Plugins: loaded before serving; a broken plugin is reported, not fatal.
    let _plugins = if cfg.plugins.enabled {
        let m = crate::plugins::Manager::start(core.clone(), cfg.plugins.clone(), data_dir).await?;
        core.set_plugins(m.clone());
        workers.extend(m.reload_worker());
        registry.register_collector(Box::new(crate::plugins::PluginMetrics(core.clone())));
        Some(m)
    } else {
        None
    };
    // Alert deliveries: mail when `[mail]` names a server, webhooks always
    // (each org says where, the operator which hosts).
    let lease_secs = cfg.mail.timeout_secs.unwrap_or(30) + cfg.alerts.webhook_timeout_secs + 30;
    let policy = coffer_core::notify::DeliveryPolicy {
        interval: std::time::Duration::from_millis(cfg.alerts.tick_ms),
        retry_min: std::time::Duration::from_millis(cfg.alerts.retry_min_ms),
        retry_max: std::time::Duration::from_millis(cfg.alerts.retry_max_ms),
        lease: std::time::Duration::from_secs(lease_secs),
        public_url: cfg.http.public_url.clone(),
    };
    if let Some(mail) = crate::channels::Mail::new(&cfg.mail)? {
        let mail = Arc::new(mail);
        core.set_mailer(mail.clone());
        workers.push(core.delivery_worker(mail, policy.clone())?);
    }
    workers.push(core.delivery_worker(
        Arc::new(crate::channels::Webhook::new(&cfg.alerts)?),
        policy,
    )?);
    registry.register_collector(Box::new(coffer_core::HealthMetrics(core.clone())));
    let supervisor = Supervisor::start(workers, Arc::new(SystemClock), Backoff::default());
    registry.register_collector(Box::new(supervisor.clone()));
    core.set_supervisor(supervisor.clone());

    let grace = std::time::Duration::from_secs(cfg.http.shutdown_grace_secs);
    Server::new(
        core.clone(),
        cfg.http.clone(),
        tls.as_ref(),
        metrics,
        Arc::new(registry),
    )
    .run(listener, rx)
    .await;
    supervisor.stop(grace).await;
    core.sync().await?;
    tracing::info!("stopped");
    Ok(())
}

/// `coffer_scrub_damaged_blocks`: blocks found corrupt or missing and not
/// healed yet.
#[derive(Debug)]
struct ScrubMetrics(Coffer);

impl prometheus_client::collector::Collector for ScrubMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let n = self.0.damaged_block_count().unwrap_or(0);
        let g = prometheus_client::metrics::gauge::ConstGauge::new(n as i64);
        let e = encoder.encode_descriptor(
            "scrub_damaged_blocks",
            "Stored blocks found corrupt or missing and not healed yet",
            None,
            g.metric_type(),
        )?;
        g.encode(e)
    }
}

/// The collector's totals since start.
#[derive(Debug)]
struct GcMetrics(Coffer);

impl prometheus_client::collector::Collector for GcMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let m = self.0.gc_metrics();
        for (name, help, v) in [
            ("gc_runs", "Garbage collections run", m.runs),
            (
                "gc_marked_blocks",
                "Blocks found unreferenced and past the grace",
                m.marked,
            ),
            (
                "gc_swept_blocks",
                "Blocks destroyed by garbage collection",
                m.swept,
            ),
            (
                "gc_swept_bytes",
                "Bytes of the blocks destroyed",
                m.swept_bytes,
            ),
            (
                "gc_refused",
                "Destructions the gate refused at the moment of destruction",
                m.refused,
            ),
            (
                "gc_packs_rewritten",
                "Packs rewritten because their live share fell",
                m.packs_rewritten,
            ),
            (
                "gc_pack_bytes_reclaimed",
                "Bytes pack rewrites gave back",
                m.pack_bytes_reclaimed,
            ),
        ] {
            let c = prometheus_client::metrics::counter::ConstCounter::new(v);
            let e = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(e)?;
        }
        Ok(())
    }
}

pub fn reset_admin_token(data_dir: &Path) -> anyhow::Result<()> {
    // A one-off command: a small cache does.
    let meta = Arc::new(
        open_meta(data_dir, 64 << 20).context("is the server still running? stop it first")?,
    );
    let storage = BlockStore::open(
        &coffer_storage::StorageConfig {
            backend: coffer_storage::Backend::Memory,
            ..Default::default()
        },
        data_dir,
    )?;
    let core = Coffer::new(meta, storage, Arc::new(SystemClock), Default::default())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let token = rt.block_on(core.reset_admin_token())?;
    let path = data_dir.join("admin.token");
    write_private(&path, format!("{token}\n").as_bytes())?;
    println!(
        "new token of the admin account written to {} (its earlier tokens are revoked)",
        path.display()
    );
    Ok(())
}

/// Write a file only its owner can read (0600), durably.
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))?;
    // The new name is durable once its directory is.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
