//! Plugin benchmark (`bench/plugins.sh`):
//!
//! 1. Fresh-instance call latency of Rust plugins (a new Store and instance
//!    per call), with the pooling allocator and on-demand allocation.
//! 2. Event delivery throughput into an integration plugin, batched and not.
//! 3. Ingest (sessions of 64 KiB blocks and commits, each commit an event)
//!    through the real server with a slow integration plugin enabled versus
//!    none, alternating runs in the same process.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use clap::Parser;
use coffer_bench::{enroll_device, quantile, serve_h2c, spawn_server, Proc};
use coffer_http::client::{Client, ClientTls};
use coffer_plugin_host::bindings::types;
use coffer_plugin_host::testing::guest;
use coffer_plugin_host::{CallInfo, Grants, Host, HostOptions, Manifest};
use coffer_types::BlockId;

#[derive(Debug, Parser)]
struct Args {
    /// The coffer binary (release).
    #[arg(long, default_value = "target/release/coffer")]
    coffer: PathBuf,
    /// Calls per latency cell.
    #[arg(long, default_value_t = 5000)]
    calls: usize,
    /// Sessions per ingest run (each 8 blocks of 64 KiB and a commit).
    #[arg(long, default_value_t = 300)]
    sessions: usize,
    /// Sessions in flight on the one HTTP/2 connection.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// What the integration plugin does with each batch: post (a webhook
    /// that answers after 500 ms), slow (busy until its CPU budget ends) or
    /// none (returns at once).
    #[arg(long, default_value = "post")]
    plugin_action: String,
    /// Only the ingest comparison.
    #[arg(long)]
    ingest_only: bool,
}

fn load(h: &Host, name: &str, grants: Grants) -> anyhow::Result<coffer_plugin_host::Plugin> {
    let (wasm, manifest) = guest(name);
    h.load(&wasm, Manifest::parse(&manifest)?, grants)
}

fn info() -> CallInfo {
    CallInfo {
        org: "bench".into(),
        now_ms: 1_795_348_800_000,
    }
}

fn backups(n: u64) -> Vec<types::BackupSummary> {
    (0..n)
        .map(|i| types::BackupSummary {
            id: format!("bk_{i}"),
            archive: "ar_1".into(),
            committed_at_ms: 1_795_348_800_000 - i * 3_600_000,
            files: 10,
            bytes: 10,
            block_count: 10,
            pinned: false,
        })
        .collect()
}

fn events(n: u64) -> Vec<types::Event> {
    backups(n)
        .into_iter()
        .enumerate()
        .map(|(i, b)| types::Event {
            seq: i as u64,
            at_ms: b.committed_at_ms,
            org: "bench".into(),
            kind: types::EventKind::BackupCommitted(b),
        })
        .collect()
}

async fn latency(calls: usize) -> anyhow::Result<()> {
    println!("\n== fresh-instance call latency ({calls} calls per cell, sequential)");
    println!(
        "{:<44} {:>9} {:>9} {:>9} {:>10}",
        "cell", "p50 µs", "p99 µs", "mean µs", "calls/s"
    );
    let archive = types::Archive {
        id: "ar_1".into(),
        device: "dv_1".into(),
        org: "bench".into(),
    };
    let input = backups(10);
    let mut p50_pool = 0.0;
    for pooling in [true, false] {
        let h = Host::new(HostOptions {
            pooling,
            ..HostOptions::default()
        })?;
        let gfs = load(&h, "gfs-retention", Grants::default())?;
        let prober = load(&h, "prober", Grants::default())?;
        for (what, plugin) in [
            ("gfs-retention plan(10 backups)", &gfs),
            ("prober on-events([]) (minimal)", &prober),
        ] {
            for _ in 0..200 {
                call(plugin, &archive, &input).await?;
            }
            let mut t = Vec::with_capacity(calls);
            let all = Instant::now();
            for _ in 0..calls {
                let s = Instant::now();
                call(plugin, &archive, &input).await?;
                t.push(s.elapsed().as_secs_f64() * 1e6);
            }
            let secs = all.elapsed().as_secs_f64();
            let mean = t.iter().sum::<f64>() / t.len() as f64;
            let cell = format!(
                "{what}, {}",
                if h.pooling() { "pooling" } else { "on-demand" }
            );
            let p50 = quantile(&t, 0.5);
            if pooling && what.starts_with("gfs") {
                p50_pool = p50;
            }
            println!(
                "{cell:<44} {p50:>9.1} {:>9.1} {mean:>9.1} {:>10.0}",
                quantile(&t, 0.99),
                calls as f64 / secs
            );
        }
    }
    println!(
        "target: Rust plugin, fresh instance, p50 <= 50 µs: {:.1} µs -> {}",
        p50_pool,
        if p50_pool <= 50.0 { "met" } else { "MISSED" }
    );
    Ok(())
}

async fn call(
    p: &coffer_plugin_host::Plugin,
    archive: &types::Archive,
    input: &[types::BackupSummary],
) -> anyhow::Result<()> {
    match p.manifest().world {
        coffer_plugin_host::World::Retention => {
            p.plan(&info(), archive, input).await?;
        }
        _ => p.on_events(&info(), &[]).await?,
    }
    Ok(())
}

async fn delivery() -> anyhow::Result<()> {
    println!("\n== event delivery into an integration plugin (prober, which reads nothing)");
    println!("{:<28} {:>12} {:>12}", "batch", "events/s", "µs/event");
    let h = Host::new(HostOptions::default())?;
    let p = load(&h, "prober", Grants::default())?;
    for batch in [1u64, 10, 100] {
        let evs = events(batch);
        let target = 50_000 / batch as usize;
        let t = Instant::now();
        for _ in 0..target.max(50) {
            p.on_events(&info(), &evs).await?;
        }
        let n = (target.max(50) as u64 * batch) as f64;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{:<28} {:>12.0} {:>12.2}",
            format!("{batch} per call"),
            n / secs,
            secs * 1e6 / n
        );
    }
    Ok(())
}

/// Start the server with `config`; enroll one device; return its client.
async fn server(coffer: &Path, dir: &Path, config: &str) -> anyhow::Result<(Proc, Client, String)> {
    let cfg = dir.join("coffer.toml");
    std::fs::write(&cfg, config)?;
    let mut cmd = serve_h2c(coffer, &dir.join("data"));
    cmd.arg("--config")
        .arg(&cfg)
        .env("COFFER__LOG__LEVEL", "error");
    let (server, url) = spawn_server(cmd)?;
    let url = url.as_str();
    let admin_token = std::fs::read_to_string(dir.join("data/admin.token"))?;
    let (dev, t) = enroll_device(url, &ClientTls::default(), &admin_token).await?;
    Ok((server, dev, t.archive.to_string()))
}

/// Sessions of 8 × 64 KiB blocks and a commit; returns sessions/s.
async fn ingest(
    dev: &Client,
    archive: &str,
    sessions: usize,
    concurrency: usize,
    seed: u64,
) -> anyhow::Result<f64> {
    let dev = Arc::new(dev.clone());
    let archive = Arc::new(archive.to_string());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (dev, archive, next) = (dev.clone(), archive.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= sessions {
                    return anyhow::Ok(());
                }
                let s: coffer_types::wire::SessionInfo = dev
                    .post_json(&coffer_client::paths::sessions(&archive), &serde_json::json!({}))
                    .await?
                    .json()?;
                let mut ids = Vec::new();
                for b in 0..8u64 {
                    let mut body = vec![0u8; 64 << 10];
                    body[..8].copy_from_slice(&seed.to_le_bytes());
                    body[8..16].copy_from_slice(&(i as u64).to_le_bytes());
                    body[16..24].copy_from_slice(&b.to_le_bytes());
                    let id = BlockId::of(&body);
                    let r = dev
                        .put(&coffer_client::paths::block(&archive, &id.to_hex()), Bytes::from(body))
                        .await?;
                    anyhow::ensure!(r.is_success(), "put: {}", r.status);
                    ids.push(id);
                }
                let r = dev
                    .post_json(
                        &coffer_client::paths::session_commit(&archive, s.session.as_str()),
                        &serde_json::json!({"manifest": ids[0], "blocks": ids, "stats": {"files": 8, "bytes": 8 << 16, "percent": 100.0}}),
                    )
                    .await?;
                anyhow::ensure!(r.is_success(), "commit: {}", r.status);
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(sessions as f64 / t.elapsed().as_secs_f64())
}

async fn ingest_with_slow_plugin(args: &Args) -> anyhow::Result<()> {
    println!(
        "\n== ingest with a slow integration plugin vs none ({} sessions of 8 x 64 KiB + commit, {} in flight, h2c)",
        args.sessions, args.concurrency
    );
    let (wasm, manifest) = guest("prober");
    // A webhook receiver that takes 500 ms to answer each request.
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_at = hook.local_addr()?.to_string();
    let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counter = served.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = hook.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let _ = s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").await;
                }
            });
        }
    });
    let mut none = Vec::new();
    let mut slow = Vec::new();
    for round in 0..3u64 {
        for with_plugin in [false, true] {
            let dir = tempfile::tempdir()?;
            let plugins = dir.path().join("plugins");
            let config = if with_plugin {
                std::fs::create_dir_all(plugins.join("prober"))?;
                std::fs::write(plugins.join("prober/plugin.wasm"), &wasm)?;
                std::fs::write(plugins.join("prober/plugin.toml"), &manifest)?;
                format!(
                    "[plugins]\ndir = \"{}\"\n[plugins.grants.prober]\norgs = [\"*\"]\ncapabilities = [\"http\"]\n\
                     allowed_hosts = [\"{hook_at}\"]\nconfig = {{ action = \"{}\", url = \"http://{hook_at}/hook\" }}\n",
                    plugins.display(),
                    args.plugin_action
                )
            } else {
                "[plugins]\nenabled = false\n".to_string()
            };
            let (_server, dev, archive) = server(&args.coffer, dir.path(), &config).await?;
            let rate = ingest(
                &dev,
                &archive,
                args.sessions,
                args.concurrency,
                round * 2 + with_plugin as u64,
            )
            .await?;
            if with_plugin {
                slow.push(rate)
            } else {
                none.push(rate)
            }
        }
    }
    let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
    let (n, s) = (best(&none), best(&slow));
    println!(
        "{:<40} {:>12} {:>10}",
        "cell (best of 3)", "sessions/s", "MiB/s"
    );
    println!("{:<40} {n:>12.1} {:>10.1}", "no plugin", n * 0.5);
    println!(
        "{:<40} {s:>12.1} {:>10.1}",
        format!("integration plugin, action {}", args.plugin_action),
        s * 0.5
    );
    if args.plugin_action == "post" {
        println!(
            "(the webhook answered {} requests, 500 ms each)",
            served.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
    println!(
        "target: with / without >= 0.95: {:.2} -> {}",
        s / n,
        if s / n >= 0.95 { "met" } else { "MISSED" }
    );
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.ingest_only {
        latency(args.calls).await?;
        delivery().await?;
    }
    ingest_with_slow_plugin(&args).await?;
    println!(
        "\n{} CPUs, load {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    Ok(())
}
