//! Garbage collection at size: archives of 100 000 and 1 000 000 blocks in
//! 1 000 and 10 000 backups, half of which expire, measured through the
//! core on three stores — disk with packs, disk with a file per block, and
//! S3 (a local s3s-fs) — at both sizes in one run:
//!
//! - retention (plan and expire half the backups through the gate),
//! - the mark (a dry run), and the whole collection (mark, condemn, sweep,
//!   pack rewrite), with the ratio from the small to the large size, of
//!   the medians of three runs at each (target ≤ 12× for 10× the work);
//! - bytes given back against the bytes of the expired backups' blocks
//!   (target: equal);
//! - ingest through the core while a collection of the large packed archive
//!   runs, against the same ingest with the collection held (target ≥ 0.8):
//!   rounds alternate between the two, so both see the same disk and the
//!   same index (bench/README.md says why).
//!
//! The archives are written straight into the store's layout and the
//! metadata (as uploads would have left them) so that building a million
//! blocks takes a minute, not an hour; everything measured goes through
//! the server's own code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use coffer_bench::quantile;
use coffer_core::{Coffer, GcSettings, ManualClock, Principal};
use coffer_meta::{
    BackupRecord, BackupStatsRecord, BlockRecord, CommitOutcome, MetaStore, SessionRecord,
    SessionStatus,
};
use coffer_storage::{Backend, BlockStore, Location, S3Config, StorageConfig};
use coffer_types::wire::{EnrollDevice, SetOrgSettings};
use coffer_types::{BlockId, Name};

#[derive(Parser, Debug)]
struct Args {
    /// Blocks per archive, smallest first; backups are blocks / 100.
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    sizes: Vec<usize>,
    /// Bytes per block.
    #[arg(long, default_value_t = 1024)]
    block_bytes: usize,
    /// Stores to measure: packed, files, s3 (`none`: only the ingest
    /// comparison).
    #[arg(long, value_delimiter = ',', default_value = "packed,files,s3")]
    stores: Vec<String>,
    /// The s3s-fs binary (default: $COFFER_S3S_FS, or the copy the tests
    /// install under ~/.cache/coffer-tools).
    #[arg(long)]
    s3s_fs: Option<PathBuf>,
    /// 64 KiB blocks uploaded per ingest round.
    #[arg(long, default_value_t = 3000)]
    ingest_blocks: usize,
    /// Ingest rounds before anything is measured, to take the disk past
    /// its write burst.
    #[arg(long, default_value_t = 8)]
    ingest_warmup: usize,
    /// Ingest rounds alone before the collection (for the record; the
    /// ratio compares rounds interleaved with the collection's).
    #[arg(long, default_value_t = 4)]
    ingest_rounds: usize,
    /// Ingest into a second device's archive, which the collection finds
    /// nothing in, instead of into the archive collected (whose index
    /// halves over the collection).
    #[arg(long)]
    ingest_elsewhere: bool,
    /// At most this many measured ingest rounds while the collection runs
    /// (each writes `--ingest-blocks` × 64 KiB; fewer if the disk has not
    /// room for them and 4 GB more).
    #[arg(long, default_value_t = 150)]
    ingest_during: usize,
    /// Between cycles of rounds, the collection runs this long with no
    /// upload, so that the rounds sample every phase of it, ms.
    #[arg(long, default_value_t = 500)]
    ingest_gap_ms: u64,
    /// The collection's rest while uploads run (the server's `[gc]
    /// rest_factor`).
    #[arg(long, default_value_t = coffer_core::GC_REST_FACTOR)]
    rest_factor: u32,
    /// The metadata store's cache, MiB (the server's `[meta] cache_bytes`;
    /// default its default).
    #[arg(long, default_value_t = coffer_meta::DEFAULT_CACHE_BYTES >> 20)]
    meta_cache_mib: u64,
    /// Runs at each size; the ratios compare the medians (the machine is
    /// shared, and one run at the small size can be off by 40 %).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Where the scratch data goes (default: a directory under the current
    /// one, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The server binary's allocator, so the core runs as it does there.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DAY: u64 = 86_400_000;

fn name(s: &str) -> Name {
    Name::new(s).expect("bench names are valid")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Apparent bytes of the files under `dir`.
fn du(dir: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if let Ok(m) = e.metadata() {
                n += if m.is_dir() { du(&e.path()) } else { m.len() };
            }
        }
    }
    n
}

struct S3 {
    child: std::process::Child,
    endpoint: String,
    root: PathBuf,
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_s3(bin: &Path, root: &Path) -> anyhow::Result<S3> {
    std::fs::create_dir_all(root.join("coffer"))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let child = std::process::Command::new(bin)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            "bench",
            "--secret-key",
            "benchsecret",
        ])
        .arg(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("start {}", bin.display()))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        anyhow::ensure!(Instant::now() < deadline, "s3s-fs did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(S3 {
        child,
        endpoint: format!("http://127.0.0.1:{port}"),
        root: root.to_path_buf(),
    })
}

/// A core over `store` in `dir` (a fresh metadata store), with one device
/// whose org expires everything older than a day but the newest backup.
struct Bench {
    core: Coffer,
    meta: Arc<MetaStore>,
    p: Principal,
    archive: Name,
    /// Where the store's bytes are, for `du`.
    bytes_dir: PathBuf,
    _s3: Option<S3>,
}

fn setup(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    store: &str,
    a: &Args,
    s3s: &Path,
) -> anyhow::Result<Bench> {
    let now = now_ms();
    let meta = Arc::new(MetaStore::open_with(
        &dir.join("meta"),
        now,
        a.meta_cache_mib << 20,
    )?);
    let (cfg, s3, bytes_dir) = match store {
        "packed" | "files" => (
            StorageConfig {
                backend: Backend::Disk,
                path: Some(dir.join("blocks")),
                pack_max_block_bytes: if store == "packed" { 128 << 10 } else { 0 },
                ..Default::default()
            },
            None,
            dir.join("blocks"),
        ),
        _ => {
            let s = start_s3(s3s, &dir.join("s3"))?;
            let cfg = StorageConfig {
                backend: Backend::S3,
                // Through serde, for the defaults of the other keys.
                s3: Some(serde_json::from_value::<S3Config>(serde_json::json!({
                    "bucket": "coffer",
                    "endpoint": s.endpoint,
                    "path_style": true,
                    "allow_http": true,
                    "access_key_id": "bench",
                    "secret_access_key": "benchsecret",
                }))?),
                ..Default::default()
            };
            let d = s.root.join("coffer");
            (cfg, Some(s), d)
        }
    };
    let storage = BlockStore::open(&cfg, dir)?;
    let clock = Arc::new(ManualClock::new(now));
    let core = Coffer::new(meta.clone(), storage, clock, Default::default())?;
    core.set_gc_settings(GcSettings {
        grace: Duration::ZERO,
        repack_below: 0.5,
        rest_factor: a.rest_factor,
    });
    let token = rt
        .block_on(core.bootstrap_admin())?
        .context("a fresh store")?;
    let p = core.authenticate_admin(&token)?;
    rt.block_on(core.create_org(&p, name("acme"), None))?;
    rt.block_on(core.add_user(&p, name("acme"), name("ann")))?;
    let dev = rt.block_on(core.enroll_device(
        &p,
        EnrollDevice {
            org: name("acme"),
            user: name("ann"),
            name: "server".into(),
            os: None,
        },
    ))?;
    let values = [
        ("keep_all", "1d"),
        ("daily", "1d"),
        ("weekly", "1d"),
        ("monthly", "1d"),
        ("min_age", "1d"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
    .collect();
    rt.block_on(core.set_org_settings(
        &p,
        &name("acme"),
        &SetOrgSettings {
            group: "retention".into(),
            values,
            mode: None,
        },
    ))?;
    Ok(Bench {
        core,
        meta,
        p,
        archive: dev.archive,
        bytes_dir,
        _s3: s3,
    })
}

/// `n` blocks in `n / 100` backups of 100 each; the first half of the
/// backups ten days old (they expire), the rest from now. Returns the bytes
/// the expired backups' blocks hold in the store (what a collection must
/// give back).
fn populate(b: &Bench, store: &str, n: usize, size: usize) -> anyhow::Result<u64> {
    let now = now_ms();
    let backups = n / 100;
    let a = b.archive.as_str();
    let mut expected = 0u64;
    let mut pack: Option<(u64, std::fs::File, u64)> = None;
    let mut next_pack = 1u64;
    for k in 0..backups {
        let mut ids = Vec::with_capacity(100);
        for j in 0..100 {
            let i = (k * 100 + j) as u64;
            let mut data = vec![0u8; size];
            data[..8].copy_from_slice(&i.to_le_bytes());
            data[8..16].copy_from_slice(&(n as u64).to_le_bytes());
            let id = BlockId::of(&data);
            let hex = id.to_hex();
            let location = match store {
                "packed" => {
                    use std::io::Write;
                    // Old backups' blocks in old packs: a new pack where
                    // the young backups begin, as time would have cut them.
                    let boundary = k == backups / 2 && j == 0;
                    if boundary || pack.as_ref().is_none_or(|(_, _, len)| *len > 64 << 20) {
                        let d = b.bytes_dir.join("packs").join(a);
                        std::fs::create_dir_all(&d)?;
                        let f = std::fs::File::create(d.join(format!("{next_pack:016x}.pack")))?;
                        pack = Some((next_pack, f, 0));
                        next_pack += 1;
                    }
                    let (pid, f, len) = pack.as_mut().expect("just opened");
                    let mut rec = Vec::with_capacity(40 + size);
                    rec.extend_from_slice(b"CPK1");
                    rec.extend_from_slice(&(size as u32).to_le_bytes());
                    rec.extend_from_slice(id.as_bytes());
                    rec.extend_from_slice(&data);
                    f.write_all(&rec)?;
                    let at = Location::Packed {
                        pack: *pid,
                        offset: *len,
                    };
                    *len += rec.len() as u64;
                    at
                }
                _ => {
                    let d = b.bytes_dir.join("archives").join(a).join(&hex[..2]);
                    std::fs::create_dir_all(&d)?;
                    std::fs::write(d.join(&hex), &data)?;
                    Location::Object
                }
            };
            let stored_at = if k < backups / 2 { now - 10 * DAY } else { now };
            b.meta.insert_block(
                &b.archive,
                &id,
                &BlockRecord {
                    size: size as u64,
                    stored_at,
                    location: location.encode(),
                },
                None,
            )?;
            if k < backups / 2 {
                expected += size as u64 + if store == "packed" { 40 } else { 0 };
            }
            ids.push(id);
        }
        let committed_at = if k < backups / 2 {
            now - 10 * DAY + k as u64
        } else {
            now + k as u64
        };
        let session = name(&format!("se_{k:08}"));
        b.meta.create_session(&SessionRecord {
            id: session.clone(),
            archive: b.archive.clone(),
            state: SessionStatus::Open,
            opened_at: committed_at,
            last_activity: committed_at,
            percent: 0.0,
            bytes: 0,
            files: 0,
            backup: None,
        })?;
        let rec = BackupRecord {
            id: name(&format!("bk_{k:08}")),
            archive: b.archive.clone(),
            session,
            committed_at,
            manifest: ids[0],
            block_count: ids.len() as u64,
            stats: BackupStatsRecord {
                files: 1,
                bytes: 1,
                percent: 100.0,
            },
        };
        anyhow::ensure!(matches!(
            b.meta.commit(&rec, &ids, true)?,
            CommitOutcome::Committed(_)
        ));
    }
    b.meta.durable_blocking()?;
    Ok(expected)
}

/// 64 KiB blocks through the core, 16 at a time, for `n` blocks or until
/// `until` says stop: MiB/s. Each upload runs as its own task on the
/// runtime's workers, as the server runs each HTTP/2 stream.
async fn ingest(
    core: &Coffer,
    archive: &Name,
    n: usize,
    salt: u64,
    until: Option<Arc<std::sync::atomic::AtomicBool>>,
) -> f64 {
    use futures::StreamExt;
    let t = Instant::now();
    let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
    futures::stream::iter(0..n)
        .for_each_concurrent(16, |i| {
            let (core, archive) = (core.clone(), archive.clone());
            let (count, until) = (count.clone(), until.clone());
            let upload = tokio::spawn(async move {
                if until.is_some_and(|u| u.load(std::sync::atomic::Ordering::SeqCst)) {
                    return;
                }
                let mut data = vec![7u8; 64 << 10];
                data[..8].copy_from_slice(&(i as u64).to_le_bytes());
                data[8..16].copy_from_slice(&salt.to_le_bytes());
                let body = bytes::Bytes::from(data);
                let id = BlockId::of(&body);
                core.put_block(
                    &archive,
                    &id.to_hex(),
                    Some(body.len() as u64),
                    None,
                    futures::stream::iter([Ok::<_, std::io::Error>(body)]),
                )
                .await
                .expect("ingest");
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
            async move { upload.await.expect("upload task") }
        })
        .await;
    let n = count.load(std::sync::atomic::Ordering::SeqCst) as f64;
    n * 64.0 / 1024.0 / t.elapsed().as_secs_f64()
}

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    build_s: f64,
    retention_s: f64,
    mark_s: f64,
    gc_s: f64,
    expired: u64,
    swept: u64,
    expected: u64,
    reclaimed: u64,
}

fn measure(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    store: &str,
    n: usize,
    a: &Args,
    s3s: &Path,
) -> anyhow::Result<Figures> {
    let b = setup(rt, dir, store, a, s3s)?;
    let t = Instant::now();
    let expected = populate(&b, store, n, a.block_bytes)?;
    // On a server every block is on stable storage before it is
    // acknowledged; the bench writes without syncing, so flush it all before
    // measuring (else the collection competes with the write-back of
    // gigabytes, the more the larger the archive).
    rustix::fs::sync();
    let build_s = t.elapsed().as_secs_f64();
    let before = du(&b.bytes_dir);
    let t = Instant::now();
    let r = rt.block_on(b.core.retention_run(&b.p, b.archive.as_str()))?;
    let retention_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    rt.block_on(b.core.gc_run(&b.p, true))?;
    let mark_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let g = rt.block_on(b.core.gc_run(&b.p, false))?;
    let gc_s = t.elapsed().as_secs_f64();
    let after = du(&b.bytes_dir);
    println!(
        "        ({store} {n}: mark {} ms, sweep {} ms, repack {} ms; metadata {} MiB)",
        g.mark_ms,
        g.sweep_ms,
        g.repack_ms,
        b.meta.size_on_disk() >> 20
    );
    Ok(Figures {
        build_s,
        retention_s,
        mark_s,
        gc_s,
        expired: r.expired,
        swept: g.swept,
        expected,
        reclaimed: before.saturating_sub(after),
    })
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let scratch = match &a.dir {
        Some(d) => d.clone(),
        None => std::env::current_dir()?.join("gc-bench-scratch"),
    };
    let s3s = a
        .s3s_fs
        .clone()
        .or_else(|| std::env::var_os("COFFER_S3S_FS").map(PathBuf::from))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/coffer-tools/s3s-fs-0.14.1/bin/s3s-fs")
        });
    println!(
        "gc bench: {} B blocks, 100 per backup, half the backups expire",
        a.block_bytes
    );
    println!(
        "{:<7} {:>9} {:>8} {:>8} {:>10} {:>8} {:>8} {:>9} {:>12} {:>12}",
        "store",
        "blocks",
        "backups",
        "build s",
        "retention s",
        "mark s",
        "gc s",
        "swept",
        "reclaimed",
        "expected"
    );
    for store in a.stores.iter().filter(|s| *s != "none") {
        // Each run's figures, per size; sizes alternate within a round so
        // that a slow spell of the machine does not land on one size only.
        let mut runs: Vec<Vec<Figures>> = vec![Vec::new(); a.sizes.len()];
        for _ in 0..a.repeat.max(1) {
            for (i, &n) in a.sizes.iter().enumerate() {
                let dir = scratch.join(format!("{store}-{n}"));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)?;
                let f = measure(&rt, &dir, store, n, &a, &s3s)?;
                let _ = std::fs::remove_dir_all(&dir);
                println!(
                    "{:<7} {:>9} {:>8} {:>8.1} {:>10.2} {:>8.2} {:>8.2} {:>9} {:>12} {:>12}{}",
                    store,
                    n,
                    n / 100,
                    f.build_s,
                    f.retention_s,
                    f.mark_s,
                    f.gc_s,
                    f.swept,
                    f.reclaimed,
                    f.expected,
                    if f.reclaimed == f.expected {
                        "  equal"
                    } else {
                        "  DIFFERENT"
                    }
                );
                assert_eq!(f.expired as usize, n / 200, "half the backups expire");
                runs[i].push(f);
            }
        }
        let med = |i: usize, f: fn(&Figures) -> f64| {
            quantile(&runs[i].iter().map(f).collect::<Vec<_>>(), 0.5)
        };
        for (i, &n) in a.sizes.iter().enumerate().skip(1) {
            println!(
                "{:<7} medians of {} runs: gc {:.2} s at {} blocks, {:.2} s at {}; \
                 ratio for {}x the work: retention {:.2}x, mark {:.2}x, gc {:.2}x (target <= 12x)",
                store,
                runs[i].len(),
                med(0, |f| f.gc_s),
                a.sizes[0],
                med(i, |f| f.gc_s),
                n,
                n / a.sizes[0],
                med(i, |f| f.retention_s) / med(0, |f| f.retention_s),
                med(i, |f| f.mark_s) / med(0, |f| f.mark_s),
                med(i, |f| f.gc_s) / med(0, |f| f.gc_s),
            );
        }
    }
    // Ingest while the large packed archive is collected, against ingest
    // with the collection held, in the same run. This machine's disk takes
    // a burst of about a gigabyte faster than it sustains writes (`dd
    // bs=1M oflag=dsync`: the first GB at 1 GB/s, then about 300 MB/s) and
    // earns it back while idle, and its sustained rate drifts over tens of
    // gigabytes; uploads into the collected archive get faster as its index
    // halves. So the ingest warms up past the burst first, and then rounds
    // alternate — collection going, collection held — so that both kinds
    // see the same disk and index. A cycle is a round to settle (held, not
    // counted), then going, held, going, held; between cycles the
    // collection runs a moment with no upload, so the cycles sample every
    // phase of it.
    let n = *a.sizes.last().unwrap_or(&100_000);
    let dir = scratch.join("ingest");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let b = setup(&rt, &dir, "packed", &a, &s3s)?;
    populate(&b, "packed", n, a.block_bytes)?;
    rustix::fs::sync();
    rt.block_on(b.core.retention_run(&b.p, b.archive.as_str()))?;
    let target = if a.ingest_elsewhere {
        rt.block_on(b.core.enroll_device(
            &b.p,
            EnrollDevice {
                org: name("acme"),
                user: name("ann"),
                name: "laptop".into(),
                os: None,
            },
        ))?
        .archive
    } else {
        b.archive.clone()
    };
    let mut salt = 1u64;
    let mut round = |until: Option<Arc<std::sync::atomic::AtomicBool>>| {
        salt += 1;
        rt.block_on(ingest(&b.core, &target, a.ingest_blocks, salt, until))
    };
    let warmup: Vec<f64> = (0..a.ingest_warmup).map(|_| round(None)).collect();
    let before: Vec<f64> = (0..a.ingest_rounds).map(|_| round(None)).collect();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (core, p, s2) = (b.core.clone(), b.p.clone(), stop.clone());
    let gc_start = Instant::now();
    let gc = rt.spawn(async move {
        let r = core.gc_run(&p, false).await;
        s2.store(true, std::sync::atomic::Ordering::SeqCst);
        (r, Instant::now())
    });
    let round_bytes = a.ingest_blocks as u64 * (64 << 10);
    let room = rustix::fs::statvfs(&dir)
        .map(|v| v.f_bavail * v.f_frsize)
        .unwrap_or(0)
        .saturating_sub(4 << 30);
    // Measured rounds, and the one that settles each cycle, within room.
    let most = a.ingest_during.min((room / round_bytes) as usize * 4 / 5);
    // (when it started, MiB/s, whether the collection was going)
    let mut rounds: Vec<(Instant, f64, bool)> = Vec::new();
    let ended = || stop.load(std::sync::atomic::Ordering::SeqCst);
    'cycles: while !ended() && rounds.len() < most {
        b.core.hold_gc(true);
        round(None);
        for going in [true, false, true, false] {
            b.core.hold_gc(!going);
            let t = Instant::now();
            let r = round(going.then(|| stop.clone()));
            if going && ended() {
                // The collection ended within the round: its uploads
                // stopped when it did; it is not counted.
                break 'cycles;
            }
            rounds.push((t, r, going));
        }
        b.core.hold_gc(false);
        std::thread::sleep(Duration::from_millis(a.ingest_gap_ms));
    }
    b.core.hold_gc(false);
    let rounds_end = Instant::now();
    let (r, gc_end) = rt.block_on(gc)?;
    let r = r?;
    let median = |going: bool, from: Instant, to: Instant| {
        let v: Vec<f64> = rounds
            .iter()
            .filter(|(t, _, g)| *g == going && *t >= from && *t < to)
            .map(|(_, r, _)| *r)
            .collect();
        (quantile(&v, 0.5), v.len())
    };
    let seen = gc_end.min(rounds_end);
    let (going, n_going) = median(true, gc_start, seen);
    let (held, n_held) = median(false, gc_start, seen);
    // Each phase's rounds, by when they started.
    let ms = Duration::from_millis;
    let mark_end = gc_start + ms(r.mark_ms);
    let sweep_end = mark_end + ms(r.sweep_ms);
    let phases = [
        ("mark", gc_start, mark_end),
        ("sweep", mark_end, sweep_end),
        ("repack", sweep_end, gc_end),
    ]
    .iter()
    .filter(|(_, from, _)| *from < seen)
    .map(|(phase, from, to)| {
        let ((g, ng), (h, nh)) = (median(true, *from, *to), median(false, *from, *to));
        format!("{phase} {g:.0} vs {h:.0} MiB/s ({ng} and {nh} rounds)")
    })
    .collect::<Vec<_>>()
    .join(", ");
    let list = |going: bool| -> Vec<f64> {
        rounds
            .iter()
            .filter(|(_, _, g)| *g == going)
            .map(|(_, r, _)| *r)
            .collect()
    };
    println!("ingest rounds to warm up (MiB/s): {warmup:.0?}");
    println!("ingest rounds alone before the collection (MiB/s): {before:.0?}");
    println!(
        "ingest rounds, collection going (MiB/s): {:.0?}",
        list(true)
    );
    println!(
        "ingest rounds, collection held (MiB/s): {:.0?}",
        list(false)
    );
    println!(
        "ingest 64 KiB blocks, 16 at a time{}: collection (rest factor {}) of {} blocks {:.1} s \
         (mark {} ms, sweep {} ms, repack {} ms; {:.1} s of it with rounds); medians going \
         {going:.0} MiB/s ({n_going} rounds), held {held:.0} MiB/s ({n_held} rounds) ({phases}); \
         ratio {:.2} (target >= 0.8)",
        if a.ingest_elsewhere {
            " into a second archive"
        } else {
            " into the archive collected"
        },
        a.rest_factor,
        r.swept,
        (gc_end - gc_start).as_secs_f64(),
        r.mark_ms,
        r.sweep_ms,
        r.repack_ms,
        (seen - gc_start).as_secs_f64(),
        going / held
    );
    drop(b);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
