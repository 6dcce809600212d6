//! `coffer-soak`: one server under mixed load for a while (10 minutes by
//! default). Devices back up incrementally (ask `blocks/missing`, upload
//! what changed, commit), restore and check what they stored, abort
//! sessions; slow readers pin downloads with a tiny flow-control window;
//! thousands of connections sit idle (reconnecting when the server closes
//! them). Every interval it prints the answers by error code, request
//! latency (p99, worst), the server's RSS and open descriptors; at the end
//! the server must answer `/readyz` and every committed backup must read
//! back and verify.
//!
//! Run it with `bench/soak.sh` (builds in release mode first).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use coffer_bench::{quantile, serve_h2c, spawn_server};
use coffer_http::client::ClientTls;
use coffer_types::wire::{AbortRequest, BackupStats, CommitRequest, FetchRequest, MissingRequest};
use coffer_types::BlockId;

#[derive(Debug, Parser)]
#[command(about = "Coffer: a long mixed load against one server")]
struct Args {
    /// The coffer server binary.
    #[arg(long, default_value = "target/release/coffer")]
    coffer: PathBuf,
    /// Scratch directory (same filesystem as a real data directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// How long the load runs, in seconds.
    #[arg(long, default_value_t = 600)]
    secs: u64,
    /// Seconds between report lines.
    #[arg(long, default_value_t = 10)]
    every: u64,
    /// Devices backing up (each also restores and aborts now and then).
    #[arg(long, default_value_t = 8)]
    devices: usize,
    /// Blocks in each device's file set; a tenth changes per backup.
    #[arg(long, default_value_t = 200)]
    blocks: usize,
    /// Connections reading a download with a 1 KiB window, slowly.
    #[arg(long, default_value_t = 16)]
    slow_readers: usize,
    /// Connections that open, greet and say nothing.
    #[arg(long, default_value_t = 2000)]
    idle: usize,
}

/// What happened in one interval.
#[derive(Default)]
struct Interval {
    answers: BTreeMap<String, u64>,
    latency: Vec<f64>,
}

#[derive(Default)]
struct Stats {
    now: Mutex<Interval>,
    total: Mutex<BTreeMap<String, u64>>,
    idle_open: AtomicUsize,
    slow_reads: AtomicUsize,
}

impl Stats {
    fn record<T>(&self, started: Instant, r: &coffer_client::Result<T>) {
        let key = match r {
            Ok(_) => "ok".to_string(),
            Err(e) => match (e.code(), e.status()) {
                (Some(c), _) => c.as_str().to_string(),
                (None, Some(s)) => format!("http_{s}"),
                (None, None) => "transport".to_string(),
            },
        };
        let mut i = self.now.lock().unwrap();
        i.latency.push(started.elapsed().as_secs_f64());
        *i.answers.entry(key.clone()).or_default() += 1;
        *self.total.lock().unwrap().entry(key).or_default() += 1;
    }
}

/// Block `i` of device `d`'s file set at version `v`: 4 KiB to 512 KiB.
fn block(d: usize, i: usize, v: u64) -> Bytes {
    let seed = ((d as u64) << 48) | ((i as u64) << 32) | v;
    Bytes::from(coffer_storage::conformance::block_bytes(
        seed,
        4096 << (i % 8),
    ))
}

/// Committed backups: the device's token, its archive, the backup id.
type Committed = Arc<Mutex<Vec<(String, String, String)>>>;

/// One device: incremental backups, with a restore check and an aborted
/// session between them now and then.
#[allow(clippy::too_many_arguments)]
async fn device(
    d: usize,
    url: String,
    token: String,
    archive: String,
    n: usize,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
    committed: Committed,
) {
    let tls = ClientTls::default();
    let mut versions = vec![0u64; n];
    let mut round = 0u64;
    let mut dev = None;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        if dev.is_none() {
            match coffer_client::Client::connect(&url, &tls).await {
                Ok(c) => dev = Some(c.with_token(&token)),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            }
        }
        let c = dev.clone().expect("connected");
        let ok = match round % 10 {
            // An aborted session: a few uploads, then given up.
            3 => abort_round(&c, d, &archive, &stats, round).await,
            // Restore: a committed backup's blocks, one by one and fetched.
            5 => restore_round(&c, &archive, &stats, &committed).await,
            _ => {
                let (a, t) = (archive.as_str(), token.as_str());
                backup_round(&c, d, (a, t), &mut versions, round, &stats, &committed).await
            }
        };
        if !ok {
            dev = None; // the connection may be gone: a new one
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn backup_round(
    c: &coffer_client::Client,
    d: usize,
    (archive, token): (&str, &str),
    versions: &mut [u64],
    round: u64,
    stats: &Stats,
    committed: &Committed,
) -> bool {
    for (i, v) in versions.iter_mut().enumerate() {
        if (i as u64 + round).is_multiple_of(10) {
            *v += 1;
        }
    }
    let t = Instant::now();
    let s = c.open_session(archive).await;
    stats.record(t, &s);
    let Ok(s) = s else { return false };
    let sid = s.session.to_string();
    let ids: Vec<BlockId> = (0..versions.len())
        .map(|i| BlockId::of(&block(d, i, versions[i])))
        .collect();
    let t = Instant::now();
    let missing = c
        .missing_blocks(
            archive,
            &MissingRequest {
                ids: ids.clone(),
                session: Some(s.session.clone()),
            },
        )
        .await;
    stats.record(t, &missing);
    let Ok(missing) = missing else { return false };
    for id in &missing.missing {
        let i = ids.iter().position(|x| x == id).expect("asked");
        let t = Instant::now();
        let r = c
            .put_block(archive, block(d, i, versions[i]), Some(&sid))
            .await;
        stats.record(t, &r);
        if r.is_err() {
            return false;
        }
    }
    let t = Instant::now();
    let r = c
        .commit(
            archive,
            &sid,
            &CommitRequest {
                manifest: ids[0],
                blocks: ids,
                stats: BackupStats {
                    files: versions.len() as u64,
                    bytes: 0,
                    percent: 100.0,
                },
            },
        )
        .await;
    stats.record(t, &r);
    match r {
        Ok((b, _)) => {
            committed.lock().unwrap().push((
                token.to_string(),
                archive.to_string(),
                b.backup.to_string(),
            ));
            true
        }
        Err(_) => false,
    }
}

async fn abort_round(
    c: &coffer_client::Client,
    d: usize,
    archive: &str,
    stats: &Stats,
    round: u64,
) -> bool {
    let t = Instant::now();
    let s = c.open_session(archive).await;
    stats.record(t, &s);
    let Ok(s) = s else { return false };
    let sid = s.session.to_string();
    for k in 0..3 {
        let t = Instant::now();
        let r = c
            .put_block(archive, block(d, 10_000 + k, round), Some(&sid))
            .await;
        stats.record(t, &r);
    }
    let t = Instant::now();
    let r = c.abort(archive, &sid, &AbortRequest { failed: None }).await;
    stats.record(t, &r);
    r.is_ok()
}

async fn restore_round(
    c: &coffer_client::Client,
    archive: &str,
    stats: &Stats,
    committed: &Committed,
) -> bool {
    let pick = {
        let all = committed.lock().unwrap();
        all.iter()
            .rev()
            .find(|(_, a, _)| a == archive)
            .map(|(_, _, b)| b.clone())
    };
    let Some(bid) = pick else { return true };
    let t = Instant::now();
    let b = c.backup(archive, &bid).await;
    stats.record(t, &b);
    let Ok(b) = b else { return false };
    let ids = b.blocks.unwrap_or_default();
    // Small ones in one fetch, the rest one by one.
    let t = Instant::now();
    let r = c
        .fetch_blocks(
            archive,
            &FetchRequest {
                ids: ids.iter().take(16).copied().collect(),
            },
        )
        .await;
    stats.record(t, &r);
    for id in ids.iter().skip(16).take(24) {
        let t = Instant::now();
        let r = c.get_block(archive, id, None).await;
        if let Ok(body) = &r {
            assert_eq!(BlockId::of(body), *id, "a restored block does not verify");
        }
        stats.record(t, &r);
        if r.is_err() {
            return false;
        }
    }
    true
}

/// A download read through a 1 KiB window, 16 KiB a second.
async fn slow_reader(
    addr: String,
    token: String,
    path: String,
    stop: Arc<AtomicBool>,
    stats: Arc<Stats>,
) {
    while !stop.load(Ordering::Relaxed) {
        let Ok(tcp) = tokio::net::TcpStream::connect(&addr).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let Ok((mut h2, conn)) = h2::client::Builder::new()
            .initial_window_size(1024)
            .handshake::<_, Bytes>(tcp)
            .await
        else {
            continue;
        };
        tokio::spawn(conn);
        let req = http::Request::get(format!("http://{addr}{path}"))
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .expect("request");
        let Ok((resp, _)) = h2.send_request(req, true) else {
            continue;
        };
        let Ok(resp) = resp.await else { continue };
        let mut body = resp.into_body();
        while let Some(Ok(piece)) = body.data().await {
            let _ = body.flow_control().release_capacity(piece.len());
            stats.slow_reads.fetch_add(piece.len(), Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(60)).await;
            if stop.load(Ordering::Relaxed) {
                return;
            }
        }
    }
}

/// A connection that greets (the h2c preface and empty SETTINGS) and then
/// says nothing until the server closes it; then another.
async fn idle_conn(addr: String, stop: Arc<AtomicBool>, stats: Arc<Stats>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut tcp) = tokio::net::TcpStream::connect(&addr).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        if tcp.write_all(&hello).await.is_err() {
            continue;
        }
        stats.idle_open.fetch_add(1, Ordering::Relaxed);
        let mut buf = [0u8; 4096];
        loop {
            tokio::select! {
                r = tcp.read(&mut buf) => if matches!(r, Ok(0) | Err(_)) { break },
                _ = tokio::time::sleep(Duration::from_secs(1)) => if stop.load(Ordering::Relaxed) { break },
            }
        }
        stats.idle_open.fetch_sub(1, Ordering::Relaxed);
    }
}

fn server_rss_and_fds(pid: u32) -> (u64, usize) {
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024;
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (rss, fds)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // This process holds the idle connections: raise its own limit.
    let lim = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    )?;
    let scratch = tempfile::Builder::new()
        .prefix("coffer-soak-")
        .tempdir_in(args.dir.clone().unwrap_or_else(|| PathBuf::from(".")))?;
    let data = scratch.path().join("data");
    let mut cmd = serve_h2c(&args.coffer, &data);
    cmd.env("COFFER__LOG__LEVEL", "warn");
    let (server, url) = spawn_server(cmd)?;
    let pid = server.0.id();
    let addr = url.trim_start_matches("http://").to_string();
    let tls = ClientTls::default();
    let admin_token = std::fs::read_to_string(data.join("admin.token"))?;
    let admin = coffer_client::Client::connect(&url, &tls)
        .await?
        .with_token(admin_token.trim());

    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(Stats::default());
    let committed: Committed = Arc::default();
    let mut tasks = Vec::new();
    let mut slow_target = None;
    for d in 0..args.devices {
        let t = coffer_client::enroll(
            &admin,
            &format!("org{}", d % 3),
            &format!("u{d}"),
            &format!("dev{d}"),
        )
        .await?;
        let archive = t.archive.to_string();
        if slow_target.is_none() {
            // The slow readers download device 0's largest block.
            let c = coffer_client::Client::connect(&url, &tls)
                .await?
                .with_token(&t.token);
            let big = block(d, 7, 1_000_000);
            c.put_block(&archive, big.clone(), None).await?;
            slow_target = Some((
                t.token.clone(),
                coffer_client::paths::block(&archive, &BlockId::of(&big).to_hex()),
            ));
        }
        tasks.push(tokio::spawn(device(
            d,
            url.clone(),
            t.token.clone(),
            archive,
            args.blocks,
            stop.clone(),
            stats.clone(),
            committed.clone(),
        )));
    }
    let (slow_token, slow_path) = slow_target.expect("at least one device");
    for _ in 0..args.slow_readers {
        tasks.push(tokio::spawn(slow_reader(
            addr.clone(),
            slow_token.clone(),
            slow_path.clone(),
            stop.clone(),
            stats.clone(),
        )));
    }
    for _ in 0..args.idle {
        tasks.push(tokio::spawn(idle_conn(
            addr.clone(),
            stop.clone(),
            stats.clone(),
        )));
    }

    println!(
        "soak: {} s, {} devices, {} slow readers, {} idle connections against {url}",
        args.secs, args.devices, args.slow_readers, args.idle
    );
    println!(
        "{:>6}  {:>8}  {:>9}  {:>9}  {:>8}  {:>6}  {:>5}  answers",
        "t (s)", "requests", "p99 (ms)", "max (ms)", "RSS MiB", "fds", "idle"
    );
    let started = Instant::now();
    let mut peak_rss = 0;
    let mut peak_fds = 0;
    while started.elapsed() < Duration::from_secs(args.secs) {
        tokio::time::sleep(Duration::from_secs(args.every)).await;
        let i = std::mem::take(&mut *stats.now.lock().unwrap());
        let (rss, fds) = server_rss_and_fds(pid);
        peak_rss = peak_rss.max(rss);
        peak_fds = peak_fds.max(fds);
        let answers: Vec<String> = i.answers.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!(
            "{:>6}  {:>8}  {:>9.1}  {:>9.1}  {:>8}  {:>6}  {:>5}  {}",
            started.elapsed().as_secs(),
            i.latency.len(),
            quantile(&i.latency, 0.99) * 1e3,
            quantile(&i.latency, 1.0) * 1e3,
            rss >> 20,
            fds,
            stats.idle_open.load(Ordering::Relaxed),
            answers.join(" ")
        );
    }
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(30), t).await;
    }

    // The end: healthy, and every committed backup verifies.
    let fresh = coffer_client::Client::connect(&url, &tls).await?;
    let ready = fresh.readyz().await;
    let backups = committed.lock().unwrap().clone();
    let mut blocks_checked = 0u64;
    let mut bad = 0u64;
    let mut seen = std::collections::HashSet::new();
    for (token, archive, bid) in &backups {
        let c = fresh.with_token(token);
        let b = c.backup(archive, bid).await?;
        for id in b.blocks.unwrap_or_default() {
            if !seen.insert((archive.clone(), id)) {
                continue;
            }
            blocks_checked += 1;
            match c.get_block(archive, &id, None).await {
                Ok(body) if BlockId::of(&body) == id => {}
                _ => bad += 1,
            }
        }
    }
    let totals: Vec<String> = stats
        .total
        .lock()
        .unwrap()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("answers over the run: {}", totals.join(" "));
    println!(
        "server peak RSS {} MiB, peak open descriptors {peak_fds}; slow readers read {} MiB",
        peak_rss >> 20,
        stats.slow_reads.load(Ordering::Relaxed) >> 20
    );
    println!(
        "end: /readyz {}; {} committed backups, {blocks_checked} distinct blocks read back, {bad} bad",
        if ready.is_ok() { "ok" } else { "FAILED" },
        backups.len()
    );
    let internal = stats
        .total
        .lock()
        .unwrap()
        .get("internal")
        .copied()
        .unwrap_or(0);
    if ready.is_err() || bad > 0 || internal > 0 || backups.is_empty() {
        anyhow::bail!("the soak failed: see above");
    }
    drop(server);
    Ok(())
}
