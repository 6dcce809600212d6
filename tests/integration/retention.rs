//! Legal hold, retention, cold storage and garbage collection through the
//! real binary: the CLI an operator and an auditor use, durations of
//! seconds, kill -9 during a sweep and a pack rewrite.

use std::path::Path;
use std::time::Duration;

use coffer_types::BlockId;
use serde_json::Value;

use crate::harness::{cli_ok, Agent, Opts, TestServer};

fn json(out: &std::process::Output) -> Value {
    serde_json::from_str(&cli_ok(out)).unwrap()
}

/// Bytes under `dir` (files only).
fn du(dir: &Path) -> u64 {
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            n += if m.is_dir() { du(&e.path()) } else { m.len() };
        }
    }
    n
}

/// A backup of `blocks` (the first is the manifest): upload, commit.
async fn backup(agent: &Agent, blocks: &[Vec<u8>]) -> String {
    let s = agent.open_session().await;
    let mut ids = Vec::new();
    for b in blocks {
        let r = agent.put_in(&s, b).await;
        assert!(r.status == 201 || r.status == 200, "{r:?}");
        ids.push(BlockId::of(b));
    }
    let r = agent.commit(&s, &ids[0], &ids[1..], 100.0).await;
    assert_eq!(r.status, 201, "{r:?}");
    r.json::<Value>().unwrap()["backup"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every block of every backup of the agent's archive reads back whole.
async fn all_restorable(agent: &Agent) -> usize {
    let list: Value = agent
        .client
        .get(&coffer_client::paths::backups(&agent.archive))
        .await
        .unwrap()
        .json()
        .unwrap();
    let mut n = 0;
    for b in list["backups"].as_array().unwrap() {
        let id = b["backup"].as_str().unwrap();
        let full: Value = agent
            .client
            .get(&coffer_client::paths::backup(&agent.archive, id))
            .await
            .unwrap()
            .json()
            .unwrap();
        for blk in full["blocks"].as_array().unwrap() {
            let bid: BlockId = blk.as_str().unwrap().parse().unwrap();
            let r = agent.get(&bid).await;
            assert_eq!(r.status, 200, "backup {id} lost block {bid}");
            assert_eq!(BlockId::of(&r.body), bid);
            n += 1;
        }
    }
    n
}

fn quick_retention(server: &TestServer) {
    for kv in [
        "retention.keep_all=1s",
        "retention.daily=1s",
        "retention.weekly=1s",
        "retention.monthly=1s",
        "retention.min_age=1s",
    ] {
        cli_ok(&server.cli(&["org", "settings", "set", "acme", kv]));
    }
}

#[tokio::test]
async fn a_hold_keeps_what_retention_and_collection_would_take_and_the_log_shows_it() {
    let server = TestServer::start(
        Opts::default()
            .env("COFFER__GC__GRACE", "0s")
            .env("COFFER__LEGAL_HOLD__RELEASE_APPROVALS", "2")
            .env("COFFER__LEGAL_HOLD__RELEASE_QUARANTINE", "3s"),
    )
    .await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    quick_retention(&server);
    let blocks_dir = server.data_dir.join("blocks");
    let big = |i: u8| vec![i; 200 << 10];
    for i in 0..3u8 {
        backup(&agent, &[vec![i; 64], big(i + 1), b"shared".to_vec()]).await;
    }
    let lena = server.account_token("lena", "legal-hold-admin", None);
    let max = server.account_token("max", "legal-hold-admin", None);
    let olga = server.account_token("olga", "org-admin", Some("acme"));
    // The policy, the matter, the custodian.
    let p = json(&server.cli_as(
        Some(&lena),
        &["hold", "policy", "create", "keep-all", "--json"],
    ));
    assert_eq!(p["keep"], "all");
    let m = json(&server.cli_as(
        Some(&lena),
        &[
            "hold",
            "matter",
            "create",
            "acme-v-beta",
            "--policy",
            "keep-all",
            "--description",
            "contract dispute",
            "--json",
        ],
    ));
    assert_eq!(m["status"], "active");
    // An org admin may not place a hold.
    let out = server.cli_as(
        Some(&olga),
        &[
            "hold",
            "custodian",
            "add",
            "--matter",
            "acme-v-beta",
            "--user",
            "ann",
        ],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{out:?}"
    );
    let c = json(&server.cli_as(
        Some(&lena),
        &[
            "hold",
            "custodian",
            "add",
            "--matter",
            "acme-v-beta",
            "--user",
            "ann",
            "--reason",
            "subpoena 42",
            "--json",
        ],
    ));
    assert_eq!(c["state"], "active");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The dry run says why each backup is kept; the run expires nothing.
    let plan = json(&server.cli(&["retention", "plan", "--archive", &agent.archive, "--json"]));
    assert_eq!(plan["expired"], 0, "{plan}");
    assert!(
        plan["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["reason"] == "hold:acme-v-beta"),
        "{plan}"
    );
    let run = json(&server.cli(&["retention", "run", "--archive", &agent.archive, "--json"]));
    assert_eq!(run["expired"], 0);
    let before = du(&blocks_dir);
    let gc = json(&server.cli(&["gc", "run", "--json"]));
    assert_eq!(gc["swept"], 0, "{gc}");
    // A held user is not deactivated; their device is, and stays held.
    let out = server.cli(&["user", "deactivate", "--org", "acme", "ann"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("hold_active") && err.contains("acme-v-beta"),
        "{err}"
    );
    // Release: an org admin cannot; a legal-hold admin must say why; the
    // two-person rule waits for a second.
    let rel = [
        "hold",
        "custodian",
        "release",
        "--matter",
        "acme-v-beta",
        "--user",
        "ann",
    ];
    let out = server.cli_as(Some(&olga), &[&rel[..], &["--reason", "done"]].concat());
    assert!(!out.status.success());
    let out = server.cli_as(Some(&lena), &[&rel[..], &["--reason", ""]].concat());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("reason"),
        "{out:?}"
    );
    let c = json(&server.cli_as(
        Some(&lena),
        &[&rel[..], &["--reason", "settled", "--json"]].concat(),
    ));
    assert_eq!(c["state"], "release_pending");
    assert_eq!(
        json(&server.cli(&["retention", "run", "--archive", &agent.archive, "--json"]))["expired"],
        0
    );
    let c = json(&server.cli_as(
        Some(&max),
        &[&rel[..], &["--reason", "agreed", "--json"]].concat(),
    ));
    assert_eq!(c["state"], "quarantined");
    assert_eq!(
        json(&server.cli(&["retention", "run", "--archive", &agent.archive, "--json"]))["expired"],
        0
    );
    // After the quarantine, retention and collection take what is not the
    // newest backup, and the disk usage falls.
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let run = json(&server.cli(&["retention", "run", "--archive", &agent.archive, "--json"]));
    assert_eq!(run["expired"], 2, "{run}");
    let gc = json(&server.cli(&["gc", "run", "--json"]));
    assert_eq!(gc["swept"], 4, "{gc}");
    let after = du(&blocks_dir);
    assert!(before - after >= 2 * (200 << 10), "{before} -> {after}");
    assert_eq!(all_restorable(&agent).await, 3);
    let status = json(&server.cli(&["gc", "status", "--json"]));
    assert_eq!(status["last"]["swept"], 4);
    // The auditor's view: every hold action, with the matter, and a chain
    // that verifies.
    let log = json(&server.cli(&["audit", "list", "--limit", "1000", "--json"]));
    let entries = log["entries"].as_array().unwrap();
    for action in [
        "hold.matter.create",
        "hold.place",
        "hold.release_requested",
        "hold.release",
    ] {
        let e = entries
            .iter()
            .find(|e| e["action"] == action)
            .unwrap_or_else(|| panic!("{action}"));
        assert_eq!(e["details"]["matter"], "acme-v-beta", "{e}");
    }
    assert!(entries
        .iter()
        .any(|e| e["action"] == "user.deactivate" && e["outcome"] == "refused"));
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["action"] == "backup.destroy" && e["outcome"] == "ok")
            .count(),
        2
    );
    assert!(entries.iter().any(|e| e["action"] == "gc.run"));
    assert!(cli_ok(&server.cli(&["audit", "verify"])).contains("the hash chain holds"));
}

#[tokio::test]
async fn cold_storage_from_deactivation_to_purge() {
    let server = TestServer::start(Opts::default().env("COFFER__GC__GRACE", "0s")).await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    cli_ok(&server.cli(&[
        "org",
        "settings",
        "set",
        "acme",
        "retention.cold_storage=2s",
    ]));
    backup(&agent, &[b"manifest".to_vec(), vec![7; 300 << 10]]).await;
    let d = json(&server.cli(&["device", "deactivate", &agent.device, "--json"]));
    assert!(d["cold_until"].as_u64().is_some(), "{d}");
    // The device is refused, with the reason.
    let r = agent.put(b"more").await;
    assert_eq!(r.status, 401);
    assert_eq!(crate::harness::code(&r), "device_deactivated");
    let cold = json(&server.cli(&["device", "list", "--cold", "--json"]));
    assert_eq!(cold["devices"].as_array().unwrap().len(), 1);
    // Reactivated within the period: intact.
    cli_ok(&server.cli(&["device", "reactivate", &agent.device]));
    assert_eq!(all_restorable(&agent).await, 2);
    cli_ok(&server.cli(&["device", "deactivate", &agent.device]));
    // A purge before the period needs a reason, and takes it all.
    let out = server.cli(&["device", "purge", &agent.device, "--reason", ""]);
    assert!(!out.status.success());
    let d = json(&server.cli(&[
        "device",
        "purge",
        &agent.device,
        "--reason",
        "left the company",
        "--json",
    ]));
    assert!(d["purged_at"].as_u64().is_some(), "{d}");
    assert_eq!(d["backup_count"], 0);
    let gc = json(&server.cli(&["gc", "run", "--json"]));
    assert_eq!(gc["swept"], 2, "{gc}");
    assert_eq!(
        json(&server.cli(&["device", "show", &agent.device]))["bytes_stored"],
        0
    );
    let out = server.cli(&["device", "reactivate", &agent.device]);
    assert!(!out.status.success());
}

/// Backups with small (packed) and large blocks; most expire; the server
/// is killed during the collection again and again, at growing delays;
/// after each restart, and at the end, every block of every live backup
/// reads back whole, and a last run finishes the work.
#[tokio::test]
async fn kill_9_during_sweeps_and_pack_rewrites_loses_no_live_block() {
    let mut server = TestServer::start(Opts::default().env("COFFER__GC__GRACE", "0s")).await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    quick_retention(&server);
    for i in 0..8u32 {
        let mut blocks: Vec<Vec<u8>> = vec![format!("manifest {i}").into_bytes()];
        for j in 0..150u32 {
            blocks.push(format!("small {i} {j} {}", "s".repeat(2000)).into_bytes());
        }
        for j in 0..6u32 {
            blocks.push(format!("large {i} {j} {}", "L".repeat(200 << 10)).into_bytes());
        }
        blocks.push(b"shared by every backup".to_vec());
        backup(&agent, &blocks).await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let run = json(&server.cli(&["retention", "run", "--archive", &agent.archive, "--json"]));
    assert_eq!(run["expired"], 7, "{run}");
    // A restart seals the packs (a running server never rewrites the pack
    // it appends to).
    server.kill9();
    server.restart();
    let mut agent = agent.reconnect(&server).await;
    let before = du(&server.data_dir.join("blocks"));
    for delay_ms in [20u64, 40, 70, 100, 150, 220, 320, 450, 650] {
        let c = server.admin_api().await;
        let run = tokio::spawn(async move {
            let _ = c.gc_run(false).await;
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        server.kill9();
        let _ = run.await;
        server.restart();
        agent = agent.reconnect(&server).await;
        assert_eq!(
            all_restorable(&agent).await,
            158,
            "after a kill at {delay_ms} ms"
        );
    }
    let last = json(&server.cli(&["gc", "run", "--json"]));
    let again = json(&server.cli(&["gc", "run", "--json"]));
    assert_eq!(again["swept"], 0, "{again}");
    assert_eq!(all_restorable(&agent).await, 158);
    let after = du(&server.data_dir.join("blocks"));
    // Seven backups' own blocks: 7 × (150 × ~2 KiB + 6 × 200 KiB + manifest).
    assert!(
        before - after > 7 * 6 * (200 << 10),
        "{before} -> {after} ({last})"
    );
    // Nothing journaled is left over, and the log verifies.
    assert!(cli_ok(&server.cli(&["audit", "verify"])).contains("the hash chain holds"));
}

/// On S3, expired backups' blocks are deleted from the bucket (with
/// bounded concurrency), and what a live backup references stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_collection_deletes_the_objects_of_expired_backups() {
    let s3 = crate::harness::S3Server::start();
    let server = TestServer::start(
        s3.server_env(Opts::default())
            .env("COFFER__GC__GRACE", "0s"),
    )
    .await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    quick_retention(&server);
    let objects = || du(&s3.root().join("coffer"));
    for i in 0..4u8 {
        let blocks: Vec<Vec<u8>> = (0..20u8).map(|j| vec![i * 32 + j; 20_000]).collect();
        backup(
            &agent,
            &[vec![i; 10], b"shared".to_vec()]
                .into_iter()
                .chain(blocks)
                .collect::<Vec<_>>(),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let before = objects();
    assert_eq!(
        json(&server.cli(&["retention", "run", "--archive", &agent.archive, "--json"]))["expired"],
        3
    );
    let dry = json(&server.cli(&["gc", "run", "--dry-run", "--json"]));
    assert_eq!(dry["swept"], 63, "{dry}");
    assert_eq!(objects(), before);
    let gc = json(&server.cli(&["gc", "run", "--json"]));
    assert_eq!(gc["swept"], 63, "{gc}");
    assert_eq!(gc["swept_bytes"], 3 * (10 + 20 * 20_000), "{gc}");
    let after = objects();
    assert_eq!(
        before - after,
        3 * (10 + 20 * 20_000),
        "{before} -> {after}"
    );
    assert_eq!(all_restorable(&agent).await, 22);
}

/// A multipart upload to S3 that a crash cut short is journaled, and the
/// next collection aborts it (S3 would keep, and bill, its parts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_upload_a_crash_left_on_s3_is_aborted_by_collection() {
    let s3 = crate::harness::S3Server::start();
    let mut server = TestServer::start(
        s3.server_env(Opts::default())
            .env("COFFER__GC__GRACE", "0s"),
    )
    .await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let uploads = |root: &Path| -> usize {
        fn walk(d: &Path, n: &mut usize) {
            for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
                if e.file_name().to_string_lossy().starts_with(".upload") {
                    *n += 1;
                } else if e.path().is_dir() {
                    walk(&e.path(), n);
                }
            }
        }
        let mut n = 0;
        walk(root, &mut n);
        n
    };
    // A 15 MiB block: two parts of 8 MiB; kill the server once the upload
    // is journaled (S3 has it from just before).
    let journal = server.data_dir.join("spool/multipart");
    let entries = |d: &Path| {
        std::fs::read_dir(d).map_or(0, |r| {
            r.flatten()
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .count()
        })
    };
    let big = crate::harness::block_bytes(7, 15 << 20);
    let a2 = agent.clone();
    let put = tokio::spawn(async move { a2.put(&big).await });
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while entries(&journal) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no multipart upload seen"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
    server.kill9();
    let _ = put.await;
    assert_eq!(entries(&journal), 1);
    assert!(uploads(s3.root()) >= 1);
    server.restart();
    // Uploads journaled in the last minute are left alone (one may be in
    // flight); age the entry as a crash an hour ago would have.
    for e in std::fs::read_dir(&journal).unwrap().flatten() {
        let f = std::fs::File::options().write(true).open(e.path()).unwrap();
        f.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
    }
    let gc = json(&server.cli(&["gc", "run", "--json"]));
    assert_eq!(gc["uploads_aborted"], 1, "{gc}");
    assert_eq!(entries(&journal), 0);
    assert_eq!(uploads(s3.root()), 0);
}
