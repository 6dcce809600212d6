//! The host against real components built from `plugins/guest`: the
//! examples do their job, and hostile plugins hurt nothing but their own
//! call.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::*;
use crate::bindings::types::{Archive, BackupSummary, Device, HealthFacts, HealthState};
use crate::testing::guest;

const DAY: u64 = 86_400_000;
/// 2026-11-22T12:00:00Z
const NOW: u64 = 1_795_348_800_000;

fn host(limits: Limits) -> Host {
    Host::new(HostOptions {
        limits,
        ..HostOptions::default()
    })
    .unwrap()
}

fn load(host: &Host, name: &str, grants: Grants) -> Plugin {
    let (wasm, manifest) = guest(name);
    host.load(&wasm, Manifest::parse(&manifest).unwrap(), grants)
        .unwrap()
}

fn info() -> CallInfo {
    CallInfo {
        org: "acme".into(),
        now_ms: NOW,
    }
}

fn archive(id: &str) -> Archive {
    Archive {
        id: id.into(),
        device: "dv_1".into(),
        org: "acme".into(),
    }
}

/// ann's laptop in acme: 12 backups, the last 3 days ago.
fn laptop() -> Device {
    Device {
        id: "dv_1".into(),
        name: "laptop".into(),
        org: "acme".into(),
        user: "ann".into(),
        archive: "ar_1".into(),
        enrolled_at_ms: NOW - 30 * DAY,
        revoked: false,
        last_data_ms: Some(NOW - 3_600_000),
        last_backup_ms: Some(NOW - 3 * DAY),
        backup_count: 12,
        block_count: 100,
        stored_bytes: 3 << 20,
    }
}

fn backup(i: u64, at: u64) -> BackupSummary {
    BackupSummary {
        id: format!("bk_{i}"),
        archive: "ar_1".into(),
        committed_at_ms: at,
        files: 1,
        bytes: 1,
        block_count: 1,
        pinned: false,
    }
}

#[tokio::test]
async fn the_gfs_example_keeps_one_backup_per_day_week_month_and_year() {
    let h = host(Limits::default());
    let p = load(&h, "gfs-retention", Grants::default());
    // Four backups a day for 800 days.
    let backups: Vec<_> = (0..3200)
        .map(|i| backup(i, NOW - (i / 4) * DAY - (i % 4) * 3_600_000))
        .collect();
    let plan = p.plan(&info(), &archive("ar_1"), &backups).await.unwrap();
    let expired: std::collections::HashSet<_> =
        plan.expire.iter().map(|e| e.backup.as_str()).collect();
    let kept: Vec<_> = backups
        .iter()
        .filter(|b| !expired.contains(b.id.as_str()))
        .collect();
    // 7 days; the weeks, months and years are the newest backups of each,
    // and overlap the days where they coincide.
    assert!(
        kept.len() >= 12 + 3 && kept.len() <= 7 + 4 + 12 + 3,
        "{}",
        kept.len()
    );
    assert!(!expired.contains("bk_0"), "the newest backup is kept");
    assert!(
        expired.contains("bk_1"),
        "an older backup of the same day goes"
    );
    assert!(
        !expired.contains("bk_24"),
        "the newest of the 7th day back is kept"
    );
    assert!(plan.expire[0].reason.contains("7 days"));
    // Settings change the plan.
    let tight = load(
        &h,
        "gfs-retention",
        Grants {
            config: [
                ("daily", "1"),
                ("weekly", "0"),
                ("monthly", "0"),
                ("yearly", "0"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            ..Grants::default()
        },
    );
    let plan = tight
        .plan(&info(), &archive("ar_1"), &backups)
        .await
        .unwrap();
    assert_eq!(plan.expire.len(), backups.len() - 1);
}

#[tokio::test]
async fn the_template_builds_and_keeps_the_newest() {
    let h = host(Limits::default());
    let p = load(
        &h,
        "plugin-template",
        Grants {
            config: [("keep".to_string(), "2".to_string())].into(),
            ..Grants::default()
        },
    );
    let plan = p
        .plan(
            &info(),
            &archive("ar_1"),
            &[backup(1, NOW - 1), backup(2, NOW), backup(3, NOW - 2)],
        )
        .await
        .unwrap();
    assert_eq!(plan.expire.len(), 1);
    assert_eq!(plan.expire[0].backup, "bk_3");
}

#[tokio::test]
async fn the_csv_report_lists_devices_only_when_inventory_is_granted() {
    let h = host(Limits::default());
    let inv = Arc::new(Inventory {
        devices: vec![laptop()],
        health: vec![HealthFacts {
            device: "dv_1".into(),
            state: HealthState::Yellow,
            last_data_ms: None,
            last_backup_ms: None,
        }],
        ..Inventory::default()
    });
    let granted = load(
        &h,
        "csv-report",
        Grants {
            capabilities: vec![Capability::Inventory],
            ..Grants::default()
        },
    );
    let reporter::Report::Table(t) = granted.report(&info(), &[], inv.clone()).await.unwrap()
    else {
        panic!("a table")
    };
    assert_eq!(t.columns[0], "org");
    assert_eq!(
        t.rows,
        vec![vec![
            "acme", "ann", "laptop", "dv_1", "yellow", "3 d ago", "12", "3.0", "active"
        ]]
    );
    let denied = load(&h, "csv-report", Grants::default());
    let reporter::Report::Table(t) = denied.report(&info(), &[], inv).await.unwrap() else {
        panic!("a table")
    };
    assert!(t.rows.is_empty(), "no grant, no inventory");
}

#[tokio::test]
async fn a_runaway_plugin_is_stopped_at_its_budget_while_other_work_goes_on() {
    let h = host(Limits {
        cpu_ms: 100,
        ..Limits::default()
    });
    let p = load(&h, "hostile", Grants::default());
    // This runtime has one thread: the ticker below only runs if the
    // plugin yields.
    let ticks = Arc::new(AtomicU64::new(0));
    let t = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            t.fetch_add(1, Ordering::Relaxed);
        }
    });
    let started = Instant::now();
    let err = p
        .plan(&info(), &archive("mode-loop"), &[])
        .await
        .unwrap_err();
    let took = started.elapsed();
    ticker.abort();
    assert_eq!(err.code(), "cpu_deadline", "{err}");
    assert!(took < Duration::from_secs(3), "stopped after {took:?}");
    assert!(
        ticks.load(Ordering::Relaxed) >= 5,
        "other tasks ran meanwhile: {}",
        ticks.load(Ordering::Relaxed)
    );
    // The wall-clock limit stops it too when it is the tighter one.
    let h = host(Limits {
        cpu_ms: 60_000,
        call_timeout: Duration::from_millis(150),
        ..Limits::default()
    });
    let p = load(&h, "hostile", Grants::default());
    let err = p
        .plan(&info(), &archive("mode-loop"), &[])
        .await
        .unwrap_err();
    assert_eq!(err.code(), "timeout", "{err}");
    // And the next call on the same plugin works.
    p.plan(&info(), &archive("ar_1"), &[backup(1, NOW)])
        .await
        .unwrap();
}

#[tokio::test]
async fn traps_memory_bombs_and_huge_outputs_fail_only_their_call() {
    let h = host(Limits {
        memory_bytes: 32 << 20,
        max_output_bytes: 1 << 20,
        ..Limits::default()
    });
    let p = load(&h, "hostile", Grants::default());
    for (mode, code) in [
        ("mode-trap", "trap"),
        ("mode-bomb", "memory_limit"),
        ("mode-huge", "output_too_large"),
    ] {
        let err = p.plan(&info(), &archive(mode), &[]).await.unwrap_err();
        assert_eq!(err.code(), code, "{mode}: {err}");
        let plan = p
            .plan(&info(), &archive("ar_1"), &[backup(1, NOW)])
            .await
            .unwrap();
        assert_eq!(plan.expire.len(), 1, "the next call after {mode} works");
    }
    let s = p.status();
    assert_eq!((s.calls, s.failures, s.failures_in_a_row), (6, 3, 0));
    assert!(
        s.last_error.unwrap().contains("limit"),
        "huge output names the limit"
    );
}

#[tokio::test]
async fn a_plugin_failing_again_and_again_is_suspended_until_resumed() {
    let h = host(Limits {
        suspend_after: 3,
        ..Limits::default()
    });
    let p = load(&h, "hostile", Grants::default());
    for _ in 0..3 {
        let e = p
            .plan(&info(), &archive("mode-trap"), &[])
            .await
            .unwrap_err();
        assert_eq!(e.code(), "trap");
    }
    let e = p.plan(&info(), &archive("ar_1"), &[]).await.unwrap_err();
    assert_eq!(e.code(), "suspended", "{e}");
    assert!(p.status().suspended_for_secs.unwrap() >= 29);
    assert_eq!(p.status().calls, 3, "a suspended plugin is not run");
    p.resume();
    p.plan(&info(), &archive("ar_1"), &[]).await.unwrap();
}

#[tokio::test]
async fn a_plugin_sees_no_environment_no_files_and_only_the_calls_clock() {
    let h = host(Limits::default());
    let p = load(&h, "hostile", Grants::default());
    let e = p
        .plan(&info(), &archive("mode-env"), &[])
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the plugin reported an error (env): 0 vars, root readable: false"
    );
    let e = p
        .plan(&info(), &archive("mode-clock"), &[])
        .await
        .unwrap_err();
    assert!(e.to_string().ends_with(&format!(": {NOW}")), "{e}");
    // A log flood is capped, not fatal.
    p.plan(&info(), &archive("mode-chatty"), &[]).await.unwrap();
}

#[tokio::test]
async fn oversized_input_is_refused_before_the_plugin_runs() {
    let h = host(Limits {
        max_input_bytes: 10_000,
        ..Limits::default()
    });
    let p = load(&h, "hostile", Grants::default());
    let many: Vec<_> = (0..1000).map(|i| backup(i, NOW)).collect();
    let e = p.plan(&info(), &archive("ar_1"), &many).await.unwrap_err();
    assert_eq!(e.code(), "input_too_large");
    assert_eq!(p.status().calls, 0);
}

#[test]
fn what_is_not_a_component_of_the_right_world_is_refused_at_load() {
    let h = host(Limits::default());
    let (wasm, manifest) = guest("hostile");
    let m = Manifest::parse(&manifest).unwrap();
    let core_module = b"\0asm\x01\0\0\0";
    let e = h
        .load(core_module, m.clone(), Grants::default())
        .unwrap_err();
    assert!(
        format!("{e:#}").contains("core WebAssembly module"),
        "{e:#}"
    );
    let e = h.load(b"hello", m.clone(), Grants::default()).unwrap_err();
    assert!(format!("{e:#}").contains("not a WebAssembly file"), "{e:#}");
    // A retention component presented as a reporter.
    let mut as_reporter = m.clone();
    as_reporter.world = World::Reporter;
    let e = h.load(&wasm, as_reporter, Grants::default()).unwrap_err();
    assert!(
        format!("{e:#}").contains("does not implement the reporter world"),
        "{e:#}"
    );
    // A reporter (which imports the inventory) presented as retention.
    let (report_wasm, _) = guest("csv-report");
    let e = h.load(&report_wasm, m, Grants::default()).unwrap_err();
    assert!(
        format!("{e:#}").contains("does not link as a retention plugin"),
        "{e:#}"
    );
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk_and_a_bad_artifact_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let mk = || {
        Host::new(HostOptions {
            cache_dir: Some(dir.path().to_path_buf()),
            ..HostOptions::default()
        })
        .unwrap()
    };
    let (wasm, manifest) = guest("gfs-retention");
    let m = Manifest::parse(&manifest).unwrap();
    mk().load(&wasm, m.clone(), Grants::default()).unwrap();
    let cached: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert!(cached[0].extension().unwrap() == "cwasm");
    let modified = std::fs::metadata(&cached[0]).unwrap().modified().unwrap();
    // A second host loads the artifact instead of compiling.
    let p = mk().load(&wasm, m.clone(), Grants::default()).unwrap();
    assert_eq!(
        std::fs::metadata(&cached[0]).unwrap().modified().unwrap(),
        modified
    );
    p.plan(&info(), &archive("ar_1"), &[]).await.unwrap();
    // A damaged artifact is replaced, not trusted.
    std::fs::write(&cached[0], b"garbage").unwrap();
    let p = mk().load(&wasm, m, Grants::default()).unwrap();
    p.plan(&info(), &archive("ar_1"), &[]).await.unwrap();
    assert!(std::fs::metadata(&cached[0]).unwrap().len() > 1000);
}

#[tokio::test]
async fn without_room_for_the_pool_the_host_falls_back_to_on_demand() {
    assert!(host(Limits::default()).pooling(), "pooling works here");
    // Far more address space than a 47-bit machine has.
    let h = Host::new(HostOptions {
        pool_memories: 1 << 22,
        ..HostOptions::default()
    })
    .unwrap();
    assert!(!h.pooling());
    let p = load(&h, "gfs-retention", Grants::default());
    p.plan(&info(), &archive("ar_1"), &[backup(1, NOW)])
        .await
        .unwrap();
}

fn prober(h: &Host, name: &str, grants: Grants) -> Plugin {
    let (wasm, manifest) = guest("prober");
    let m =
        Manifest::parse(&manifest.replacen("name = \"prober\"", &format!("name = \"{name}\""), 1))
            .unwrap();
    h.load(&wasm, m, grants).unwrap()
}

fn with(caps: &[Capability], hosts: &[String], config: &[(&str, &str)]) -> Grants {
    Grants {
        capabilities: caps.to_vec(),
        allowed_hosts: hosts.to_vec(),
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn answer(r: Result<(), CallError>) -> String {
    match r.unwrap_err() {
        CallError::Plugin { message, .. } => message,
        e => panic!("{e}"),
    }
}

#[tokio::test]
async fn one_plugin_cannot_read_another_plugins_keys() {
    let kv: Arc<dyn KvBackend> = Arc::new(MemoryKv::default());
    let h = Host::new(HostOptions {
        kv: kv.clone(),
        ..HostOptions::default()
    })
    .unwrap();
    let kvc = [Capability::Kv];
    let a_write = prober(&h, "alpha", with(&kvc, &[], &[("action", "kv-write")]));
    let a_read = prober(&h, "alpha", with(&kvc, &[], &[("action", "kv-read")]));
    let b_read = prober(&h, "beta", with(&kvc, &[], &[("action", "kv-read")]));
    a_write.on_events(&info(), &[]).await.unwrap();
    assert_eq!(
        answer(a_read.on_events(&info(), &[]).await),
        "found: written by alpha"
    );
    assert_eq!(
        answer(b_read.on_events(&info(), &[]).await),
        "nothing; keys: []"
    );
    assert_eq!(kv.get("alpha", "secret").unwrap(), b"written by alpha");
    // Without the grant, not even its own keys.
    let ungranted = prober(&h, "alpha", with(&[], &[], &[("action", "kv-read")]));
    assert_eq!(
        answer(ungranted.on_events(&info(), &[]).await),
        "nothing; keys: []"
    );
}

#[tokio::test]
async fn a_host_header_cannot_steer_a_request_past_the_allow_list() {
    let h = host(Limits::default());
    let allowed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let allowed_at = allowed.local_addr().unwrap().to_string();
    let target_at = target.local_addr().unwrap().to_string();
    let p = prober(
        &h,
        "prober",
        with(
            &[Capability::Http],
            std::slice::from_ref(&allowed_at),
            &[
                ("action", "steer"),
                ("url", &format!("http://{target_at}/")),
                ("host", &allowed_at),
            ],
        ),
    );
    let a = answer(p.on_events(&info(), &[]).await);
    assert!(
        a.starts_with("denied:") && a.contains("not on this plugin's allow-list"),
        "{a}"
    );
    let reached = tokio::time::timeout(Duration::from_millis(200), target.accept()).await;
    assert!(
        reached.is_err(),
        "nothing connected to the unlisted address"
    );
    // Without the http grant, even a listed host is refused.
    let p = prober(
        &h,
        "prober",
        with(
            &[],
            std::slice::from_ref(&allowed_at),
            &[
                ("action", "steer"),
                ("url", &format!("http://{allowed_at}/")),
            ],
        ),
    );
    let a = answer(p.on_events(&info(), &[]).await);
    assert!(a.contains("not granted"), "{a}");
}

#[test]
fn concurrent_loads_of_one_component_share_the_cache_safely() {
    let dir = tempfile::tempdir().unwrap();
    let h = Host::new(HostOptions {
        cache_dir: Some(dir.path().to_path_buf()),
        ..HostOptions::default()
    })
    .unwrap();
    let (wasm, manifest) = guest("gfs-retention");
    let m = Manifest::parse(&manifest).unwrap();
    std::thread::scope(|s| {
        let loads: Vec<_> = (0..4)
            .map(|_| s.spawn(|| h.load(&wasm, m.clone(), Grants::default())))
            .collect();
        for l in loads {
            l.join().unwrap().unwrap();
        }
    });
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "one artifact, no temporary files left");
}

/// Records what the webhook example sends (the network itself is the
/// server's, tested in the integration tests).
#[derive(Default)]
struct Recorder(Mutex<Vec<serde_json::Value>>);

impl HttpSender for Recorder {
    fn send(
        &self,
        _to: std::net::SocketAddr,
        _tls_name: Option<String>,
        req: bindings::http_client::Request,
        _timeout: Duration,
        _max_body: usize,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<Output = Result<bindings::http_client::Response, String>>
                + Send,
        >,
    > {
        self.0
            .lock()
            .unwrap()
            .push(serde_json::from_slice(&req.body).unwrap());
        Box::pin(async {
            Ok(bindings::http_client::Response {
                status: 204,
                headers: vec![],
                body: vec![],
            })
        })
    }
}

fn events() -> Vec<types::Event> {
    use types::{BlockDamage, BlockHeal, DamageKind, DetectedBy, EventKind};
    let block = "ab".repeat(32);
    let kinds = [
        EventKind::BlockDamaged(BlockDamage {
            archive: "ar_1".into(),
            device: "dv_1".into(),
            block: block.clone(),
            kind: DamageKind::Corrupt,
            detected_by: DetectedBy::Scrub,
        }),
        EventKind::BackupCommitted(backup(7, NOW)),
        EventKind::BlockHealed(BlockHeal {
            archive: "ar_1".into(),
            device: "dv_1".into(),
            block,
        }),
        EventKind::HealthChanged(types::HealthChange {
            alert_seq: 9,
            device: "dv_1".into(),
            name: "dan-laptop".into(),
            user: "dan".into(),
            old_level: types::AlertLevel::Warning,
            new_level: types::AlertLevel::Critical,
            reason: "not_connecting".into(),
            reminder: false,
            last_data_ms: Some(NOW - 5 * DAY),
            last_backup_ms: Some(NOW - 5 * DAY),
        }),
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(i, kind)| types::Event {
            seq: i as u64 + 1,
            at_ms: NOW,
            org: "acme".into(),
            kind,
        })
        .collect()
}

#[tokio::test]
async fn plugins_built_against_0_1_and_0_2_load_and_run_beside_0_3_ones() {
    let rec = Arc::new(Recorder::default());
    let h = Host::new(HostOptions {
        http: Some(rec.clone()),
        ..HostOptions::default()
    })
    .unwrap();
    let load_as = |(wasm, manifest): (Vec<u8>, String), grants: Grants| {
        h.load(&wasm, Manifest::parse(&manifest).unwrap(), grants)
            .unwrap()
    };
    let hook = Grants {
        capabilities: vec![Capability::Http],
        allowed_hosts: vec!["127.0.0.1:9".into()],
        config: [("url".to_string(), "http://127.0.0.1:9/hook".to_string())].into(),
    };
    let grants = |name| match name {
        "webhook" => hook.clone(),
        _ => Grants::default(),
    };
    // The same sources, built against each version.
    let old = |name| load_as(testing::guest_v0_1(name), grants(name));
    let mid = |name| load_as(testing::guest_v0_2(name), grants(name));
    let new = |name| load_as(testing::guest(name), grants(name));
    for name in ["gfs-retention", "csv-report", "webhook"] {
        assert_eq!(old(name).contract(), Contract::V0_1, "{name}");
        assert_eq!(mid(name).contract(), Contract::V0_2, "{name}");
        assert_eq!(new(name).contract(), Contract::V0_3, "{name}");
        assert_eq!(old(name).status().contract, Contract::V0_1);
    }

    // Retention: the same plan from either build.
    let backups: Vec<_> = (0..200).map(|i| backup(i, NOW - i * DAY / 3)).collect();
    let plan = |p: Plugin| {
        let backups = backups.clone();
        async move {
            let plan = p.plan(&info(), &archive("ar_1"), &backups).await.unwrap();
            plan.expire
                .into_iter()
                .map(|e| e.backup)
                .collect::<Vec<_>>()
        }
    };
    let (a, b) = (
        plan(old("gfs-retention")).await,
        plan(new("gfs-retention")).await,
    );
    assert!(!a.is_empty());
    assert_eq!(a, b);
    assert_eq!(plan(mid("gfs-retention")).await, b);

    // A reporter sees the inventory through 0.1's types.
    let inv = Arc::new(Inventory {
        devices: vec![laptop()],
        ..Inventory::default()
    });
    let inventory = Grants {
        capabilities: vec![Capability::Inventory],
        ..Grants::default()
    };
    let rows = |r: reporter::Report| match r {
        reporter::Report::Table(t) => t.rows,
        reporter::Report::Document(_) => panic!("a table"),
    };
    let old_csv = load_as(testing::guest_v0_1("csv-report"), inventory.clone());
    let mid_csv = load_as(testing::guest_v0_2("csv-report"), inventory.clone());
    let new_csv = load_as(testing::guest("csv-report"), inventory);
    let a = rows(old_csv.report(&info(), &[], inv.clone()).await.unwrap());
    assert_eq!(a.len(), 1);
    assert_eq!(
        a,
        rows(mid_csv.report(&info(), &[], inv.clone()).await.unwrap())
    );
    assert_eq!(a, rows(new_csv.report(&info(), &[], inv).await.unwrap()));

    // Integration: a 0.1 plugin is not sent the block events 0.2 added nor
    // the health event 0.3 added, and gets the rest; a 0.2 one all but the
    // health event; a 0.3 one all four.
    let (old_hook, mid_hook, new_hook) = (old("webhook"), mid("webhook"), new("webhook"));
    let evs = events();
    let gets = |p: &Plugin| evs.iter().map(|e| p.receives(&e.kind)).collect::<Vec<_>>();
    assert_eq!(gets(&old_hook), [false, true, false, false]);
    assert_eq!(gets(&mid_hook), [true, true, true, false]);
    assert!(evs.iter().all(|e| new_hook.receives(&e.kind)));
    old_hook.on_events(&info(), &evs).await.unwrap();
    mid_hook.on_events(&info(), &evs).await.unwrap();
    new_hook.on_events(&info(), &evs).await.unwrap();
    let sent = rec.0.lock().unwrap().clone();
    let kinds = |body: &serde_json::Value| -> Vec<String> {
        body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["event"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(sent.len(), 3);
    assert_eq!(kinds(&sent[0]), ["backup.committed"]);
    assert_eq!(
        kinds(&sent[1]),
        ["block.damaged", "backup.committed", "block.healed"]
    );
    assert_eq!(sent[1]["messages"][0]["damage"], "corrupt");
    assert_eq!(sent[1]["messages"][0]["found_by"], "scrub");
    assert_eq!(
        kinds(&sent[2]),
        [
            "block.damaged",
            "backup.committed",
            "block.healed",
            "health.changed"
        ]
    );
    let health = &sent[2]["messages"][3];
    assert_eq!(
        (&health["from"], &health["to"]),
        (&"warning".into(), &"critical".into())
    );
    assert_eq!(health["reason"], "not_connecting");
    // Only block events for a 0.1 plugin: no call at all.
    old_hook
        .on_events(&info(), &[evs[0].clone()])
        .await
        .unwrap();
    assert_eq!(rec.0.lock().unwrap().len(), 3);
    assert_eq!(old_hook.status().calls, 2);
}

#[test]
fn a_manifest_naming_another_contract_than_its_component_is_refused() {
    let h = host(Limits::default());
    let (wasm, manifest) = testing::guest_v0_1("gfs-retention");
    let m = Manifest::parse(&format!("contract = \"0.2.0\"\n{manifest}")).unwrap();
    let e = h.load(&wasm, m, Grants::default()).unwrap_err().to_string();
    assert!(
        e.contains("says contract = \"0.2.0\"") && e.contains("coffer:plugin@0.1.0"),
        "{e}"
    );
    let m = Manifest::parse(&format!("contract = \"0.1.3\"\n{manifest}")).unwrap();
    assert_eq!(
        h.load(&wasm, m, Grants::default()).unwrap().contract(),
        Contract::V0_1
    );
    let e = Manifest::parse(&format!("contract = \"0.4.0\"\n{manifest}"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("serves 0.1.0, 0.2.0, 0.3.0"), "{e}");
}
