//! Health at fleet size: 10 000 and then 100 000 devices with varied facts,
//! written into the metadata store directly (as enrollments and backups
//! would have left them), then measured through the core, at both sizes in
//! one run:
//!
//! - an evaluator tick with nothing due (index, not scan: ≤ 1.5× from 10 k
//!   to 100 k);
//! - the device-status report of one 1 000-device org (index: ≤ 1.5×);
//! - the whole device-status report as CSV (linear: ≤ 12×);
//! - the `coffer_devices` metrics (linear: ≤ 12×);
//!
//! and, with `--coffer`, ingest throughput through the real server on the
//! 10 k fleet with the evaluator ticking every 100 ms against the same with
//! it idle, rounds interleaved (ratio ≈ 1: within noise).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use coffer_bench::{enroll_device, make_blocks, quantile, serve_h2c, spawn_server, upload};
use coffer_core::reports::ReportKind;
use coffer_core::{Coffer, HealthMetrics, ManualClock};
use coffer_http::client::{Client, ClientTls};
use coffer_meta::{ArchiveRecord, AuditDraft, DeviceRecord, MetaStore, OrgRecord, UserRecord};
use coffer_types::wire::ReportQuery;
use coffer_types::Name;

#[derive(Parser, Debug)]
struct Args {
    /// Fleet sizes, smallest first (the ratios are against the first).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    sizes: Vec<usize>,
    /// Devices in each org (the one-org report reads one of them).
    #[arg(long, default_value_t = 1000)]
    org_size: usize,
    /// Repetitions of each quick measurement (the median is printed).
    #[arg(long, default_value_t = 15)]
    reps: usize,
    /// The `coffer` binary, for the ingest comparison (skipped without).
    #[arg(long)]
    coffer: Option<PathBuf>,
    /// 1 MiB blocks per ingest round.
    #[arg(long, default_value_t = 256)]
    ingest_blocks: usize,
    /// Ingest rounds per configuration (interleaved).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Where the scratch data goes (default: the current directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

const DAY: u64 = 86_400_000;

fn name(s: &str) -> Name {
    Name::new(s).expect("bench names are valid")
}

/// `n` devices in orgs of `org_size` under one root, with facts spread
/// over the five reasons and all states: returns the first org's name.
fn populate(meta: &MetaStore, n: usize, org_size: usize, now: u64) -> anyhow::Result<Name> {
    let draft = |action: &str, target: String| AuditDraft {
        at: now,
        actor: "bench".into(),
        role: None,
        action: action.into(),
        target,
        outcome: "ok".into(),
        details: Default::default(),
    };
    let root = name("fleet");
    meta.create_org(
        &OrgRecord {
            name: root.clone(),
            parent: None,
            created_at: now,
        },
        &draft("org.create", "org:fleet".into()),
    )?;
    let orgs = n.div_ceil(org_size);
    for o in 0..orgs {
        let org = name(&format!("org-{o:04}"));
        meta.create_org(
            &OrgRecord {
                name: org.clone(),
                parent: Some(root.clone()),
                created_at: now,
            },
            &draft("org.create", format!("org:{org}")),
        )?;
        for u in 0..org_size / 2 {
            meta.create_user(
                &UserRecord {
                    org: org.clone(),
                    name: name(&format!("user-{u:04}")),
                    created_at: now,
                },
                &draft("user.create", format!("user:{org}/{u}")),
            )?;
        }
    }
    for i in 0..n {
        let org = name(&format!("org-{:04}", i / org_size));
        let id = name(&format!("dv_{i:032x}"));
        let archive = name(&format!("ar_{i:032x}"));
        // Five kinds of device, and a few parked.
        let age = (i as u64 * 7919) % (10 * DAY);
        let enrolled = now - 30 * DAY;
        let (conn, activity, completed) = match i % 5 {
            0 => (None, None, None),                                  // never backed up
            1 => (Some(now - age), Some(now - age), Some(now - age)), // ok or old
            2 => (Some(now - age / 10), Some(now - age), Some(now - age)), // connects, no data
            3 => (Some(now - age / 10), Some(now - age / 10), Some(now - age)), // not completing
            _ => (Some(now - age), Some(now - age), Some(now - age - DAY)),
        };
        let dev = DeviceRecord {
            id: id.clone(),
            name: format!("host-{i}"),
            org: org.clone(),
            user: name(&format!("user-{:04}", (i % org_size) / 2)),
            os: Some("linux".into()),
            archive: archive.clone(),
            token_hash: *blake3::hash(id.as_str().as_bytes()).as_bytes(),
            revoked: false,
            enrolled_at: enrolled,
            last_connection: conn,
            agent_version: Some("coffer-agent/0.0.0".into()),
            parked: i % 50 == 7,
            deactivated_at: None,
            purged_at: None,
        };
        let ar = ArchiveRecord {
            bytes_stored: (i as u64 % 977) << 20,
            block_count: i as u64 % 977,
            backup_count: completed.map_or(0, |_| 1 + i as u64 % 30),
            last_activity: activity,
            last_completed: completed,
            percent_complete: completed.map(|_| 100.0),
            ..ArchiveRecord::new(archive, id.clone(), enrolled)
        };
        meta.enroll(&dev, &ar, &draft("device.enroll", format!("device:{id}")))?;
    }
    meta.durable_blocking()?;
    Ok(name("org-0000"))
}

fn median_of(reps: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let mut v = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(quantile(&v, 0.5))
}

#[derive(Debug, Clone, Copy)]
struct Figures {
    populate_s: f64,
    full_pass_ms: f64,
    tick_ms: f64,
    org_report_ms: f64,
    csv_ms: f64,
    csv_mib: f64,
    metrics_ms: f64,
}

fn measure(
    dir: &Path,
    n: usize,
    a: &Args,
    rt: &tokio::runtime::Runtime,
) -> anyhow::Result<Figures> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let meta = Arc::new(MetaStore::open_with(&dir.join("meta"), now, 1 << 30)?);
    let t = Instant::now();
    let org = populate(&meta, n, a.org_size, now)?;
    let populate_s = t.elapsed().as_secs_f64();
    let storage = coffer_storage::BlockStore::open(
        &coffer_storage::StorageConfig {
            backend: coffer_storage::Backend::Memory,
            ..Default::default()
        },
        dir,
    )?;
    let clock = Arc::new(ManualClock::new(now));
    let core = Coffer::new(meta, storage, clock, Default::default())?;
    let token = rt
        .block_on(core.bootstrap_admin())?
        .context("a fresh store")?;
    // For the servers of the ingest comparison, which start on copies.
    std::fs::write(dir.join("admin.token"), format!("{token}\n"))?;
    let p = core.authenticate_admin(&token)?;
    // The first tick evaluates every device (and records its level).
    let t = Instant::now();
    let (evaluated, _) = rt.block_on(core.evaluate_health())?;
    let full_pass_ms = t.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        evaluated == n,
        "the first tick evaluated {evaluated} of {n}"
    );
    let tick_ms = median_of(a.reps, || {
        let (e, _) = rt.block_on(core.evaluate_health())?;
        anyhow::ensure!(e == 0, "a tick with nothing due evaluated {e}");
        Ok(())
    })?;
    let q = ReportQuery {
        org: Some(org.to_string()),
        limit: Some(a.org_size),
        ..Default::default()
    };
    let org_report_ms = median_of(a.reps, || {
        let page = rt.block_on(core.report(&p, ReportKind::DeviceStatus, &q))?;
        anyhow::ensure!(page.rows.len() == a.org_size, "{} rows", page.rows.len());
        Ok(())
    })?;
    let mut csv_len = 0;
    let csv_ms = median_of(3, || {
        let csv =
            rt.block_on(core.report_csv(&p, ReportKind::DeviceStatus, &ReportQuery::default()))?;
        anyhow::ensure!(
            csv.lines().count() == n + 1,
            "{} lines",
            csv.lines().count()
        );
        csv_len = csv.len();
        Ok(())
    })?;
    let mut registry = prometheus_client::registry::Registry::with_prefix("coffer");
    registry.register_collector(Box::new(HealthMetrics(core.clone())));
    let metrics_ms = median_of(a.reps.min(5), || {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &registry)?;
        anyhow::ensure!(s.contains("coffer_devices{"), "no device series");
        Ok(())
    })?;
    rt.block_on(core.sync())?;
    Ok(Figures {
        populate_s,
        full_pass_ms,
        tick_ms,
        org_report_ms,
        csv_ms,
        csv_mib: csv_len as f64 / (1 << 20) as f64,
        metrics_ms,
    })
}

/// One ingest round: `n` new 1 MiB blocks over 16 streams; MiB/s.
async fn ingest_round(
    client: &Client,
    archive: &str,
    n: usize,
    seed: &mut u64,
) -> anyhow::Result<f64> {
    let blocks = Arc::new(make_blocks(1 << 20, n, seed));
    let start = Instant::now();
    upload(client, archive, blocks, 16).await?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()?;
    anyhow::ensure!(st.success(), "cp -a {} {}", from.display(), to.display());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let scratch = match &a.dir {
        Some(d) => tempfile::tempdir_in(d)?,
        None => tempfile::tempdir_in(".")?,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "coffer health bench — {} devices per org, median of {} (CSV: of 3)",
        a.org_size, a.reps
    );
    let mut figs = Vec::new();
    for &n in &a.sizes {
        let dir = scratch.path().join(format!("fleet-{n}"));
        std::fs::create_dir_all(&dir)?;
        let f = measure(&dir, n, &a, &rt)?;
        println!(
            "{n:>7} devices: populate {:.1} s, first tick (all) {:.0} ms, tick nothing due {:.3} ms, \
             one-org report {:.1} ms, full CSV {:.0} ms ({:.1} MiB), metrics {:.1} ms",
            f.populate_s, f.full_pass_ms, f.tick_ms, f.org_report_ms, f.csv_ms, f.csv_mib, f.metrics_ms
        );
        figs.push((n, f));
    }
    if let (Some((n0, f0)), Some((n1, f1))) = (figs.first(), figs.last()) {
        if n1 > n0 {
            let r = |a: f64, b: f64| b / a;
            println!("\nratios {n1} / {n0} devices (targets: index ≤ 1.5×, linear ≤ 12×):");
            for (what, x, y, target) in [
                ("tick, nothing due", f0.tick_ms, f1.tick_ms, 1.5),
                ("one-org report", f0.org_report_ms, f1.org_report_ms, 1.5),
                ("full CSV report", f0.csv_ms, f1.csv_ms, 12.0),
                ("metrics", f0.metrics_ms, f1.metrics_ms, 12.0),
            ] {
                let ratio = r(x, y);
                println!(
                    "  {what:<18} {ratio:>6.2}×  (target ≤ {target}×) {}",
                    if ratio <= target { "ok" } else { "OVER" }
                );
            }
        }
    }

    // Ingest with the evaluator ticking, against idle, on the first fleet.
    let (Some(coffer), Some((n0, _))) = (&a.coffer, figs.first()) else {
        return Ok(());
    };
    let fleet = scratch.path().join(format!("fleet-{n0}"));
    let mut servers = Vec::new();
    for (label, tick) in [
        ("evaluator every 100 ms", 100u64),
        ("evaluator idle", 3_600_000),
    ] {
        let dir = scratch.path().join(format!("ingest-{tick}"));
        copy_dir(&fleet, &dir)?;
        let mut cmd = serve_h2c(coffer, &dir);
        cmd.env("COFFER__LOG__LEVEL", "warn")
            .env("COFFER__WORKERS__HEALTH_TICK_MS", tick.to_string())
            .env("COFFER__SCRUB__ENABLED", "false");
        let (proc, url) = spawn_server(cmd)?;
        servers.push((label, proc, url, dir));
    }
    let tls = ClientTls::default();
    let mut clients = Vec::new();
    for (label, _, url, dir) in &servers {
        let token = std::fs::read_to_string(dir.join("admin.token"))
            .with_context(|| format!("{label}: admin token"))?;
        let (c, t) = rt.block_on(enroll_device(url, &tls, &token))?;
        clients.push((label, c, t.archive.to_string()));
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); clients.len()];
    let mut seed = 1u64 << 40;
    for _ in 0..a.rounds {
        for (i, (_, c, archive)) in clients.iter().enumerate() {
            rates[i].push(rt.block_on(ingest_round(c, archive, a.ingest_blocks, &mut seed))?);
        }
    }
    println!(
        "\ningest on the {n0}-device fleet, {} × {} MiB per configuration, interleaved:",
        a.rounds, a.ingest_blocks
    );
    let med: Vec<f64> = rates.iter().map(|r| quantile(r, 0.5)).collect();
    for ((label, _, _), (m, r)) in clients.iter().zip(med.iter().zip(&rates)) {
        let all: Vec<String> = r.iter().map(|x| format!("{x:.0}")).collect();
        println!(
            "  {label:<24} median {m:.0} MiB/s (rounds: {})",
            all.join(", ")
        );
    }
    println!("  ratio running / idle: {:.3}", med[0] / med[1]);
    drop(servers);
    Ok(())
}
