//! `coffer-bench`: block-ingest throughput of the real server over h2 (TLS)
//! and h2c, with 16 and 64 streams in flight on one connection, against a raw
//! durable-disk baseline measured in the same run (16 threads writing one
//! file per block: temp file, fdatasync, rename, directory fsync).
//!
//! Run it with `bench/ingest.sh` (builds in release mode first). This machine
//! is shared and noisy: read the ratios, not the absolute figures.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use clap::Parser;
use coffer_bench::{enroll_device, make_blocks, quantile, spawn_server, upload};
use coffer_http::client::ClientTls;

#[derive(Debug, Parser)]
#[command(about = "Coffer ingest benchmark")]
struct Args {
    /// The coffer server binary.
    #[arg(long, default_value = "target/release/coffer")]
    coffer: PathBuf,
    /// Scratch directory (same filesystem as a real data directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// 1 MiB blocks per cell.
    #[arg(long, default_value_t = 512)]
    n1m: usize,
    /// 64 KiB blocks per cell.
    #[arg(long, default_value_t = 4096)]
    n64k: usize,
    /// Threads of the raw baseline.
    #[arg(long, default_value_t = 16)]
    baseline_threads: usize,
    /// Run only the server cells whose name contains this (the baselines
    /// always run), e.g. `--only "h2c, 64 streams, 64KiB"`.
    #[arg(long)]
    only: Option<String>,
}

#[derive(Debug, Clone)]
struct Cell {
    name: String,
    size: usize,
    blocks: usize,
    secs: f64,
    lat: Vec<f64>,
    cpu_secs: Option<f64>,
    /// The part of `cpu_secs` spent in user space (the rest is the kernel's).
    user_secs: Option<f64>,
}

impl Cell {
    fn mib_s(&self) -> f64 {
        (self.size * self.blocks) as f64 / (1 << 20) as f64 / self.secs
    }
    fn blocks_s(&self) -> f64 {
        self.blocks as f64 / self.secs
    }
    fn pct(&self, p: f64) -> f64 {
        quantile(&self.lat, p) * 1000.0
    }
    fn per_gib(&self, secs: Option<f64>) -> Option<f64> {
        secs.map(|c| c / ((self.size * self.blocks) as f64 / (1u64 << 30) as f64))
    }
    fn cpu_per_gib(&self) -> Option<f64> {
        self.per_gib(self.cpu_secs)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scratch = match &args.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir_in(".")?,
    };
    println!("coffer ingest benchmark — {}", context());
    println!("scratch: {}\n", scratch.path().display());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;

    let mut cells = Vec::new();
    let sizes = [
        (1usize << 20, args.n1m, "1MiB"),
        (64 << 10, args.n64k, "64KiB"),
    ];
    let mut seed = 1u64;
    let mut baselines = Vec::new();
    for &(size, n, label) in &sizes {
        let b = raw_baseline(
            &scratch.path().join(format!("raw-{label}")),
            size,
            n,
            args.baseline_threads,
            &mut seed,
        )?;
        let b = Cell {
            name: format!(
                "raw disk durable, {} threads, {label}",
                args.baseline_threads
            ),
            ..b
        };
        baselines.push(b.clone());
        cells.push(b);
    }
    for tls in [true, false] {
        for &(size, n, label) in &sizes {
            for streams in [16usize, 64] {
                let proto = if tls { "h2 TLS" } else { "h2c" };
                let name = format!("coffer {proto}, {streams} streams, {label}");
                if args
                    .only
                    .as_ref()
                    .is_some_and(|o| !name.contains(o.as_str()))
                {
                    continue;
                }
                let dir = scratch.path().join(format!(
                    "srv-{}-{label}-{streams}",
                    if tls { "tls" } else { "h2c" }
                ));
                let mut c = rt.block_on(server_cell(
                    &args.coffer,
                    &dir,
                    tls,
                    size,
                    n,
                    streams,
                    &mut seed,
                ))?;
                c.name = name;
                cells.push(c);
            }
        }
    }

    println!(
        "{:<40} {:>9} {:>9} {:>8} {:>8} {:>10} {:>9} {:>8}",
        "cell", "MiB/s", "blocks/s", "p50 ms", "p99 ms", "CPU-s/GiB", "user part", "vs raw"
    );
    for c in &cells {
        let base = if c.size == 1 << 20 {
            &baselines[0]
        } else {
            &baselines[1]
        };
        let ratio = c.blocks_s() / base.blocks_s();
        println!(
            "{:<40} {:>9.1} {:>9.0} {:>8.2} {:>8.2} {:>10} {:>9} {:>7.2}x",
            c.name,
            c.mib_s(),
            c.blocks_s(),
            c.pct(0.5),
            c.pct(0.99),
            c.cpu_per_gib().map_or("-".into(), |v| format!("{v:.2}")),
            c.per_gib(c.user_secs)
                .map_or("-".into(), |v| format!("{v:.2}")),
            ratio
        );
    }
    println!("\ntargets (ratios against the raw baseline of this run):");
    let find = |name: &str| cells.iter().find(|c| c.name == name).cloned();
    let mut ok = true;
    for streams in [16, 64] {
        if let Some(c) = find(&format!("coffer h2 TLS, {streams} streams, 1MiB")) {
            let r = c.mib_s() / baselines[0].mib_s();
            let cpu = c.cpu_per_gib().unwrap_or(f64::NAN);
            ok &= verdict(
                &format!("1 MiB over TLS, {streams} streams: {r:.2}x raw MiB/s (target >= 0.8)"),
                r >= 0.8,
            );
            ok &= verdict(
                &format!(
                    "1 MiB over TLS, {streams} streams: {cpu:.2} server CPU-s/GiB (target <= 1.5)"
                ),
                cpu <= 1.5,
            );
        }
        for proto in ["h2 TLS", "h2c"] {
            if let Some(c) = find(&format!("coffer {proto}, {streams} streams, 64KiB")) {
                let r = c.blocks_s() / baselines[1].blocks_s();
                ok &= verdict(&format!("64 KiB over {proto}, {streams} streams: {r:.2}x raw blocks/s (target >= 1.0)"), r >= 1.0);
            }
        }
    }
    println!(
        "\n{}",
        if ok {
            "all targets met"
        } else {
            "some targets missed (see above)"
        }
    );
    Ok(())
}

fn verdict(what: &str, pass: bool) -> bool {
    println!("  [{}] {what}", if pass { "met " } else { "MISS" });
    pass
}

fn context() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    format!(
        "{cpus} CPUs, load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// The durable class on raw disk: temp + fdatasync + rename + dir fsync.
fn raw_baseline(
    dir: &Path,
    size: usize,
    n: usize,
    threads: usize,
    seed: &mut u64,
) -> anyhow::Result<Cell> {
    for i in 0..256 {
        std::fs::create_dir_all(dir.join(format!("{i:02x}")))?;
    }
    let write = |blocks: &[(String, Bytes)], dir: &Path| -> anyhow::Result<(f64, Vec<f64>)> {
        let next = AtomicUsize::new(0);
        let lat = Mutex::new(Vec::with_capacity(blocks.len()));
        let start = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| -> anyhow::Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((name, b)) = blocks.get(i) else {
                            return Ok(());
                        };
                        let t = Instant::now();
                        let sub = dir.join(&name[..2]);
                        let tmp = sub.join(format!("{name}.tmp"));
                        let mut f = File::create(&tmp)?;
                        f.write_all(b)?;
                        f.sync_data()?;
                        std::fs::rename(&tmp, sub.join(name))?;
                        File::open(&sub)?.sync_all()?;
                        lat.lock().unwrap().push(t.elapsed().as_secs_f64());
                    }
                });
            }
        });
        Ok((start.elapsed().as_secs_f64(), lat.into_inner().unwrap()))
    };
    let warm = make_blocks(size, (n / 20).max(16), seed);
    write(&warm, dir)?;
    let blocks = make_blocks(size, n, seed);
    // This process does nothing else meanwhile: its CPU time is the
    // baseline's own (page-cache copies, inode allocation, flushes), a floor
    // under any durable server on this machine.
    let (user0, sys0) = cpu_seconds(std::process::id());
    let (secs, lat) = write(&blocks, dir)?;
    let (user1, sys1) = cpu_seconds(std::process::id());
    Ok(Cell {
        name: String::new(),
        size,
        blocks: n,
        secs,
        lat,
        cpu_secs: Some(user1 + sys1 - user0 - sys0),
        user_secs: Some(user1 - user0),
    })
}

/// User and system CPU seconds of process `pid` so far.
fn cpu_seconds(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let ut: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let st: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
    (ut / ticks, st / ticks)
}

async fn server_cell(
    coffer: &Path,
    dir: &Path,
    tls: bool,
    size: usize,
    n: usize,
    streams: usize,
    seed: &mut u64,
) -> anyhow::Result<Cell> {
    let mut cmd = Command::new(coffer);
    cmd.arg("serve")
        .arg("--data-dir")
        .arg(dir)
        .arg("--listen")
        .arg("127.0.0.1:0");
    if !tls {
        cmd.arg("--insecure-h2c");
    }
    cmd.env("COFFER__LOG__LEVEL", "warn");
    let (proc, url) = spawn_server(cmd)?;
    let url = url.replace("127.0.0.1", "localhost");
    let ctls = ClientTls {
        ca_cert: tls.then(|| dir.join("tls/cert.pem")),
        insecure: false,
    };
    let admin_token = std::fs::read_to_string(dir.join("admin.token"))?;
    let (client, t) = enroll_device(&url, &ctls, &admin_token).await?;
    let archive = t.archive.to_string();

    let warm = make_blocks(size, (n / 20).max(32), seed);
    upload(&client, &archive, Arc::new(warm), streams).await?;
    let blocks = Arc::new(make_blocks(size, n, seed));
    let (user0, sys0) = cpu_seconds(proc.0.id());
    let start = Instant::now();
    let lat = upload(&client, &archive, blocks, streams).await?;
    let secs = start.elapsed().as_secs_f64();
    let (user1, sys1) = cpu_seconds(proc.0.id());
    drop(proc);
    Ok(Cell {
        name: String::new(),
        size,
        blocks: n,
        secs,
        lat,
        cpu_secs: Some(user1 + sys1 - user0 - sys0),
        user_secs: Some(user1 - user0),
    })
}
