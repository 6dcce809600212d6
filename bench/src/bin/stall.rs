//! `coffer-stall-bench`: does one tenant's huge metadata operation stall the
//! others? Device A stores a million small blocks (in bundles), then commits
//! one backup referencing all of them; meanwhile device B, of another org,
//! uploads 64 KiB blocks on its own connection. B's upload latency during
//! the commit is compared with B's latency measured just before, in the
//! same run. Target: p99 and worst during the commit ≤ 2× the p99 and worst
//! without it.
//!
//! Run it with `bench/stall.sh` (builds in release mode first).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;
use clap::Parser;
use coffer_bench::{quantile, serve_h2c, spawn_server};
use coffer_http::client::ClientTls;
use coffer_types::wire::{push_record, BackupStats, CommitRequest, BUNDLE_MAX_BLOCKS};
use coffer_types::BlockId;

#[derive(Debug, Parser)]
#[command(about = "Coffer: another tenant's latency during a huge commit")]
struct Args {
    /// The coffer server binary.
    #[arg(long, default_value = "target/release/coffer")]
    coffer: PathBuf,
    /// Scratch directory (same filesystem as a real data directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Block ids in the big commit.
    #[arg(long, default_value_t = 1_000_000)]
    ids: usize,
    /// Device B's uploads in flight.
    #[arg(long, default_value_t = 8)]
    streams: usize,
    /// How long device B's baseline runs, in seconds.
    #[arg(long, default_value_t = 5)]
    baseline_secs: u64,
}

/// The small blocks of device A: 32 bytes each, distinct.
fn small_block(i: usize) -> Bytes {
    let mut b = [0u8; 32];
    b[..8].copy_from_slice(&(i as u64).to_le_bytes());
    b[8..16].copy_from_slice(b"stallbch");
    Bytes::copy_from_slice(&b)
}

/// Device B uploads distinct 64 KiB blocks until `stop`, or at most `max`
/// of them; returns each upload's start and latency in seconds.
async fn tenant_load(
    dev: coffer_client::Client,
    archive: String,
    streams: usize,
    stop: Arc<AtomicBool>,
    max: usize,
    seed: u64,
) -> anyhow::Result<Vec<(Instant, f64)>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let (dev, archive, stop, next) = (dev.clone(), archive.clone(), stop.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= max {
                    break;
                }
                let mut b = vec![0u8; 64 << 10];
                b[..8].copy_from_slice(&seed.to_le_bytes());
                b[8..16].copy_from_slice(&(i as u64).to_le_bytes());
                let t = Instant::now();
                dev.put_block(&archive, Bytes::from(b), None).await?;
                lat.push((t, t.elapsed().as_secs_f64()));
            }
            anyhow::Ok(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

fn line(what: &str, lat: &[f64]) {
    println!(
        "{what:<28} {:>7} uploads  p50 {:>8.1} ms  p99 {:>8.1} ms  worst {:>8.1} ms",
        lat.len(),
        quantile(lat, 0.5) * 1e3,
        quantile(lat, 0.99) * 1e3,
        quantile(lat, 1.0) * 1e3
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scratch = tempfile::Builder::new()
        .prefix("coffer-stall-")
        .tempdir_in(args.dir.clone().unwrap_or_else(|| PathBuf::from(".")))?;
    let data = scratch.path().join("data");
    let mut cmd = serve_h2c(&args.coffer, &data);
    cmd.env("COFFER__LOG__LEVEL", "warn")
        // A million ids of JSON is about 67 MB.
        .env(
            "COFFER__HTTP__MAX_JSON_BODY_BYTES",
            (args.ids * 70 + (1 << 20)).to_string(),
        );
    let (_server, url) = spawn_server(cmd)?;
    let tls = ClientTls::default();
    let admin_token = std::fs::read_to_string(data.join("admin.token"))?;
    let admin = coffer_client::Client::connect(&url, &tls)
        .await?
        .with_token(admin_token.trim());
    let a = coffer_client::enroll(&admin, "big", "big", "big").await?;
    let b = coffer_client::enroll(&admin, "other", "other", "other").await?;
    let dev_a = coffer_client::Client::connect(&url, &tls)
        .await?
        .with_token(&a.token);
    let (arch_a, arch_b) = (a.archive.to_string(), b.archive.to_string());

    println!("storing {} small blocks for device A ...", args.ids);
    let t = Instant::now();
    let ids: Arc<Vec<BlockId>> = Arc::new(
        (0..args.ids)
            .map(|i| BlockId::of(&small_block(i)))
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (dev, archive, next, n) = (dev_a.clone(), arch_a.clone(), next.clone(), args.ids);
        tasks.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(BUNDLE_MAX_BLOCKS, Ordering::Relaxed);
                if start >= n {
                    return anyhow::Ok(());
                }
                let mut body = Vec::new();
                for i in start..(start + BUNDLE_MAX_BLOCKS).min(n) {
                    let b = small_block(i);
                    push_record(&mut body, &BlockId::of(&b), Some(&b));
                }
                dev.put_bundle(&archive, Bytes::from(body), None).await?;
            }
        }));
    }
    for t in tasks {
        t.await??;
    }
    println!("  stored in {:.1} s", t.elapsed().as_secs_f64());

    // Device B connects now: a connection left idle while A's blocks were
    // stored would have been closed by the server's idle timeout.
    let dev_b = coffer_client::Client::connect(&url, &tls)
        .await?
        .with_token(&b.token);
    // Warm device B's path, then its baseline.
    let stop = Arc::new(AtomicBool::new(false));
    tenant_load(
        dev_b.clone(),
        arch_b.clone(),
        args.streams,
        stop.clone(),
        200,
        1,
    )
    .await?;
    let timer = {
        let stop = stop.clone();
        let secs = args.baseline_secs;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            stop.store(true, Ordering::Relaxed);
        })
    };
    let base: Vec<f64> = tenant_load(
        dev_b.clone(),
        arch_b.clone(),
        args.streams,
        stop.clone(),
        200_000,
        2,
    )
    .await?
    .into_iter()
    .map(|(_, l)| l)
    .collect();
    timer.await?;

    // The big commit, with device B's load running through it.
    let session = dev_a.open_session(&arch_a).await?;
    let req = CommitRequest {
        manifest: ids[0],
        blocks: ids.to_vec(),
        stats: BackupStats {
            files: args.ids as u64,
            bytes: 32 * args.ids as u64,
            percent: 100.0,
        },
    };
    let stop = Arc::new(AtomicBool::new(false));
    let load = tokio::spawn(tenant_load(
        dev_b.clone(),
        arch_b.clone(),
        args.streams,
        stop.clone(),
        200_000,
        3,
    ));
    // Let B's load reach its pace before the commit starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let t = Instant::now();
    let commit = dev_a.commit(&arch_a, session.session.as_str(), &req).await;
    let commit_secs = t.elapsed().as_secs_f64();
    let end = Instant::now();
    stop.store(true, Ordering::Relaxed);
    // The uploads that started while the commit ran.
    let during: Vec<f64> = load
        .await??
        .into_iter()
        .filter(|(s, _)| *s >= t && *s <= end)
        .map(|(_, l)| l)
        .collect();
    let (backup, _) = commit?;
    if backup.block_count as usize != args.ids {
        bail!(
            "the backup references {} blocks, not {}",
            backup.block_count,
            args.ids
        );
    }
    println!(
        "commit of {} ids: {commit_secs:.2} s (request sent to answer)",
        args.ids
    );
    line("device B, no commit", &base);
    line("device B, during the commit", &during);
    let p99 = quantile(&during, 0.99) / quantile(&base, 0.99);
    let worst = quantile(&during, 1.0) / quantile(&base, 1.0);
    println!("ratio during/without: p99 {p99:.2}×  worst {worst:.2}×  (target ≤ 2×)");
    println!(
        "{}",
        if p99 <= 2.0 && worst <= 2.0 {
            "PASS"
        } else {
            "FAIL"
        }
    );
    Ok(())
}
