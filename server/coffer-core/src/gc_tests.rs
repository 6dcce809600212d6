//! The collector against concurrent backups, crashes and holds (research
//! C5): every block of every live backup stays readable, whatever the
//! interleaving.

use std::sync::Arc;
use std::time::Duration;

use coffer_storage::Location;
use coffer_types::wire::CommitRequest;
use coffer_types::{BlockId, ErrorCode, Name, Role};

use crate::access::DeviceAuth;
use crate::destroy::{Doomed, GateCtx, Verdict};
use crate::destroy_tests::*;
use crate::testing::Fixture;
use crate::{CoreError, GcSettings};

fn grace(f: &Fixture, secs: u64) {
    f.core.set_gc_settings(GcSettings {
        grace: Duration::from_secs(secs),
        repack_below: 0.5,
        ..GcSettings::default()
    });
}

/// Whether the block's bytes are stored and hash to its id.
async fn readable(f: &Fixture, archive: &Name, id: &BlockId) -> bool {
    let Some(rec) = f.core.meta.block(archive, id).unwrap() else {
        return false;
    };
    let at = Location::decode(&rec.location).unwrap();
    match f.core.storage.read(archive.as_str(), id, at).await {
        Ok(b) => BlockId::of(&b) == *id,
        Err(_) => false,
    }
}

/// Every block of every backup of `a` is stored and good.
async fn all_restorable(f: &Fixture, a: &DeviceAuth) -> usize {
    let mut n = 0;
    for b in f.core.meta.backups(&a.archive).unwrap() {
        for id in f.core.meta.backup_blocks(&a.archive, &b.id).unwrap() {
            assert!(
                readable(f, &a.archive, &id).await,
                "backup {} lost block {id}",
                b.id
            );
            n += 1;
        }
    }
    n
}

fn bytes_on_store(f: &Fixture, a: &DeviceAuth) -> u64 {
    f.core
        .meta
        .archive(&a.archive)
        .unwrap()
        .unwrap()
        .bytes_stored
}

#[tokio::test]
async fn expired_backups_blocks_are_swept_and_live_ones_kept() {
    let f = Fixture::new();
    grace(&f, 3600);
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    let h = history(&f, &a, 5).await;
    let before = bytes_on_store(&f, &a);
    f.core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    let r = f.core.gc_run(&f.admin(), false).await.unwrap();
    // Four manifests went; the newest's and the shared block stay.
    assert_eq!((r.marked, r.swept, r.refused), (4, 4, 0), "{r:?}");
    let expected: u64 = (0..4)
        .map(|i| format!("block {i} of {}", a.archive).len() as u64)
        .sum();
    assert_eq!(r.swept_bytes, expected);
    assert_eq!(bytes_on_store(&f, &a), before - expected);
    assert_eq!(all_restorable(&f, &a).await, 2);
    for b in &h[..4] {
        let m = b.manifest;
        assert!(!readable(&f, &a.archive, &m).await);
        assert!(f
            .core
            .storage
            .read(a.archive.as_str(), &m, Location::Object)
            .await
            .is_err());
    }
    // A second run finds nothing.
    let again = f.core.gc_run(&f.admin(), false).await.unwrap();
    assert_eq!(again.swept, 0);
    let log = f
        .core
        .meta
        .audit_list(&coffer_meta::AuditFilter {
            limit: 10_000,
            ..Default::default()
        })
        .unwrap();
    assert!(log
        .iter()
        .any(|e| e.action == "gc.run" && e.details["swept"] == "4"));
}

#[tokio::test]
async fn nothing_younger_than_the_grace_is_swept() {
    let f = Fixture::new();
    grace(&f, 3 * 86_400);
    let a = dev(&f, "acme", "ann", "laptop").await;
    // Stored, never referenced (an abandoned upload), a day ago.
    let id = put(&f, &a, None, b"orphan").await.unwrap();
    f.clock.advance(DAY);
    assert_eq!(f.core.gc_run(&f.admin(), false).await.unwrap().swept, 0);
    assert!(readable(&f, &a.archive, &id).await);
    f.clock.advance(2 * DAY + SEC);
    assert_eq!(f.core.gc_run(&f.admin(), false).await.unwrap().swept, 1);
    assert!(!readable(&f, &a.archive, &id).await);
}

#[tokio::test]
async fn blocks_pinned_by_an_open_session_are_never_swept() {
    let f = Fixture::new();
    grace(&f, 0);
    let a = dev(&f, "acme", "ann", "laptop").await;
    let old = put(&f, &a, None, b"old block").await.unwrap();
    f.clock.advance(10 * DAY);
    // A long session (older than any grace) announced it present.
    let s = f.core.open_session(&a, &a.archive, None).await.unwrap();
    let m = f
        .core
        .missing_blocks(&a.archive, vec![old], Some(&s.session))
        .await
        .unwrap();
    assert!(m.missing.is_empty());
    f.clock.advance(30 * DAY);
    let r = f.core.gc_run(&f.admin(), false).await.unwrap();
    assert_eq!(r.swept, 0, "{r:?}");
    // It commits after the sweep: every block is there.
    commit_manifest(&f, &a, &s.session, old).await.unwrap();
    assert_eq!(all_restorable(&f, &a).await, 1);
}

#[tokio::test]
async fn an_aborted_sessions_blocks_wait_out_the_grace_then_go_with_its_pins() {
    let f = Fixture::new();
    grace(&f, 86_400);
    let a = dev(&f, "acme", "ann", "laptop").await;
    let s = f.core.open_session(&a, &a.archive, None).await.unwrap();
    let id = put(&f, &a, Some(&s.session), b"uploaded then aborted")
        .await
        .unwrap();
    f.core
        .abort(&a.archive, s.session.as_str(), Some("disk full"))
        .await
        .unwrap();
    f.clock.advance(DAY / 2);
    assert_eq!(f.core.gc_run(&f.admin(), false).await.unwrap().swept, 0);
    f.clock.advance(DAY);
    let r = f.core.gc_run(&f.admin(), false).await.unwrap();
    assert_eq!(r.swept, 1);
    assert!(r.orphans_dropped >= 1);
    assert_eq!(f.core.meta.pinned_count(&a.archive, &s.session).unwrap(), 0);
    assert!(!readable(&f, &a.archive, &id).await);
}

#[tokio::test]
async fn a_condemned_block_reads_as_missing_and_an_upload_saves_it() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    let id = put(&f, &a, None, b"condemned").await.unwrap();
    let commits = f.core.meta.epochs(&a.archive).unwrap().commits;
    assert!(f.core.meta.condemn(&a.archive, &[id], commits, 1).unwrap());
    let s = f.core.open_session(&a, &a.archive, None).await.unwrap();
    let m = f
        .core
        .missing_blocks(&a.archive, vec![id], Some(&s.session))
        .await
        .unwrap();
    assert_eq!(m.missing, vec![id]);
    // A commit naming it is told to send it.
    let e = commit_manifest(&f, &a, &s.session, id).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::MissingBlocks);
    // The upload lifts the mark: the sweep's destruction finds it wanted.
    put(&f, &a, Some(&s.session), b"condemned").await.unwrap();
    assert!(!f.core.meta.is_condemned(&a.archive, &id).unwrap());
    let what = Doomed::Block {
        archive: &a.archive,
        id: &id,
        commits,
        cutoff: u64::MAX,
    };
    let (v, done) = f
        .core
        .destroy(&f.admin(), &mut GateCtx::default(), what, "test")
        .unwrap();
    assert!(!done);
    assert!(
        matches!(
            v,
            Verdict::Deny {
                code: "not_condemned",
                ..
            }
        ),
        "{v:?}"
    );
    commit_manifest(&f, &a, &s.session, id).await.unwrap();
}

#[tokio::test]
async fn a_commit_since_the_mark_makes_the_condemnation_fail() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    let id = put(&f, &a, None, b"reused").await.unwrap();
    let commits = f.core.meta.epochs(&a.archive).unwrap().commits;
    // The mark would find `id` unreferenced; a backup commits it meanwhile.
    backup(&f, &a, &[b"reused"]).await;
    assert!(!f.core.meta.condemn(&a.archive, &[id], commits, 1).unwrap());
    assert!(!f.core.meta.is_condemned(&a.archive, &id).unwrap());
    // And the gate refuses a block condemned under an old epoch.
    let now = f.core.meta.epochs(&a.archive).unwrap().commits;
    assert!(f.core.meta.condemn(&a.archive, &[id], now, 1).unwrap());
    let what = Doomed::Block {
        archive: &a.archive,
        id: &id,
        commits,
        cutoff: u64::MAX,
    };
    let (v, _) = f
        .core
        .destroy(&f.admin(), &mut GateCtx::default(), what, "test")
        .unwrap();
    assert!(
        matches!(
            v,
            Verdict::Deny {
                code: "archive_changed",
                ..
            }
        ),
        "{v:?}"
    );
}

#[tokio::test]
async fn a_block_being_destroyed_is_refused_for_a_retry_not_lost() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    let id = put(&f, &a, None, b"journaled").await.unwrap();
    let commits = f.core.meta.epochs(&a.archive).unwrap().commits;
    f.core.meta.condemn(&a.archive, &[id], commits, 1).unwrap();
    let rec = f
        .core
        .meta
        .destroy_block_records(&a.archive, &[id], commits, u64::MAX)
        .unwrap()
        .remove(0)
        .unwrap();
    // Its bytes are about to go: an upload now must come back later.
    let e = put(&f, &a, None, b"journaled").await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::ServerBusy);
    assert!(e.code().retryable());
    let failed = f
        .core
        .destroy_bytes_many(&a.archive, &[(id, rec.location)])
        .await
        .unwrap();
    assert_eq!(failed, 0);
    put(&f, &a, None, b"journaled").await.unwrap();
    assert!(readable(&f, &a.archive, &id).await);
}

#[tokio::test]
async fn a_crash_between_the_journal_and_the_bytes_is_finished_at_start() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    let gone = put(&f, &a, None, b"doomed").await.unwrap();
    let kept = backup(&f, &a, &[b"kept"]).await;
    let commits = f.core.meta.epochs(&a.archive).unwrap().commits;
    f.core
        .meta
        .condemn(&a.archive, &[gone], commits, 1)
        .unwrap();
    f.core
        .meta
        .destroy_block_records(&a.archive, &[gone], commits, u64::MAX)
        .unwrap()
        .remove(0)
        .unwrap();
    // "Crash": the bytes are still there, the journal says they go.
    assert!(f
        .core
        .storage
        .read(a.archive.as_str(), &gone, Location::Object)
        .await
        .is_ok());
    let again = f.restarted();
    assert_eq!(again.gc_recover().await.unwrap(), 1);
    assert!(f
        .core
        .storage
        .read(a.archive.as_str(), &gone, Location::Object)
        .await
        .is_err());
    assert!(f.core.meta.journal().unwrap().is_empty());
    // Replaying again is harmless; nothing outside the journal went.
    assert_eq!(again.gc_recover().await.unwrap(), 0);
    assert!(readable(&f, &a.archive, &kept.manifest).await);
}

#[tokio::test]
async fn a_block_shared_by_a_held_backup_and_an_expired_one_stays() {
    let f = Fixture::new();
    grace(&f, 0);
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    let p = lha("lena");
    // A policy keeping one a day for 60 days: of two backups on one day,
    // the later stays; they share a block.
    f.core
        .create_hold_policy(
            &p,
            coffer_types::wire::CreateHoldPolicy {
                name: "daily".into(),
                keep: Some("tiers".into()),
                retention: [
                    ("keep_all".to_string(), "1d".to_string()),
                    ("daily".to_string(), "60d".to_string()),
                ]
                .into(),
                keep_deleted: None,
            },
        )
        .await
        .unwrap();
    f.core
        .create_matter(
            &p,
            coffer_types::wire::CreateMatter {
                name: "m".into(),
                policy: "daily".into(),
                description: String::new(),
            },
        )
        .await
        .unwrap();
    f.core.add_custodian(&p, req("m", "ann", "")).await.unwrap();
    let early = backup(&f, &a, &[b"early manifest", b"shared"]).await;
    f.clock.advance(3600 * SEC);
    let late = backup(&f, &a, &[b"late manifest", b"shared"]).await;
    f.clock.advance(5 * DAY);
    backup(&f, &a, &[b"newest"]).await;
    f.clock.advance(5 * DAY);
    let r = f
        .core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    assert_eq!(r.expired, 1, "{r:?}");
    assert_eq!(
        r.items
            .iter()
            .find(|i| i.backup == early.backup)
            .unwrap()
            .verdict,
        "expired"
    );
    f.core.gc_run(&f.admin(), false).await.unwrap();
    assert!(!readable(&f, &a.archive, &early.manifest).await);
    assert!(readable(&f, &a.archive, &late.manifest).await);
    assert!(readable(&f, &a.archive, &BlockId::of(b"shared")).await);
    all_restorable(&f, &a).await;
}

#[tokio::test]
async fn a_dry_run_counts_and_destroys_nothing() {
    let f = Fixture::new();
    grace(&f, 0);
    let a = dev(&f, "acme", "ann", "laptop").await;
    let id = put(&f, &a, None, b"garbage").await.unwrap();
    f.clock.advance(SEC);
    let ro = f.principal("rita", Role::ReadOnly, None);
    let r = f.core.gc_run(&ro, true).await.unwrap();
    assert!(r.dry_run);
    assert_eq!((r.marked, r.swept, r.swept_bytes), (1, 1, 7));
    assert!(readable(&f, &a.archive, &id).await);
    // Running it for real is an admin's.
    assert_eq!(code(f.core.gc_run(&ro, false).await), ErrorCode::Forbidden);
    let oa = f.principal("olga", Role::OrgAdmin, Some("acme"));
    assert_eq!(code(f.core.gc_run(&oa, true).await), ErrorCode::Forbidden);
    let st = f.core.gc_status(&ro).await.unwrap();
    assert!(st.last.is_none(), "a dry run is not recorded as a run");
}

#[tokio::test]
async fn named_references_keep_their_blocks() {
    let f = Fixture::new();
    grace(&f, 0);
    let a = dev(&f, "acme", "ann", "laptop").await;
    let key = put(&f, &a, None, b"wrapped key").await.unwrap();
    f.core.set_ref(&a.archive, "key", key).await.unwrap();
    f.clock.advance(10 * DAY);
    assert_eq!(f.core.gc_run(&f.admin(), false).await.unwrap().swept, 0);
    assert!(readable(&f, &a.archive, &key).await);
}

#[tokio::test]
async fn held_archives_lose_no_block_to_any_number_of_runs() {
    let f = Fixture::new();
    grace(&f, 0);
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    history(&f, &a, 6).await;
    hold(&f, "m", "ann").await;
    for _ in 0..3 {
        f.core
            .retention_run(&f.admin(), a.archive.as_str())
            .await
            .unwrap();
        f.core.gc_run(&f.admin(), false).await.unwrap();
        f.clock.advance(100 * DAY);
    }
    assert_eq!(all_restorable(&f, &a).await, 12);
}

#[tokio::test]
async fn packs_below_the_live_fraction_are_rewritten_and_give_space_back() {
    let f = Fixture::on_disk();
    grace(&f, 0);
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    // 40 backups of 8 small blocks each, one shared by all.
    for i in 0..40u32 {
        let blocks: Vec<Vec<u8>> = (0..8u32)
            .map(|j| format!("backup {i} block {j} {}", "x".repeat(900)).into_bytes())
            .collect();
        let mut refs: Vec<&[u8]> = blocks.iter().map(|b| b.as_slice()).collect();
        refs.push(b"shared by all");
        backup(&f, &a, &refs).await;
        f.clock.advance(DAY);
    }
    f.clock.advance(30 * DAY);
    let packs_dir = f.dir.path().join("blocks/packs").join(a.archive.as_str());
    let du = || -> u64 {
        std::fs::read_dir(&packs_dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    };
    let before = du();
    f.core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    // The pack this process appends to is never rewritten; a restarted
    // server (a new packer) sees it sealed.
    let storage = coffer_storage::BlockStore::open(
        &coffer_storage::StorageConfig {
            backend: coffer_storage::Backend::Disk,
            path: Some(f.dir.path().join("blocks")),
            ..Default::default()
        },
        f.dir.path(),
    )
    .unwrap();
    let core = crate::Coffer::new(
        f.core.meta.clone(),
        storage,
        Arc::new(f.clock.clone()),
        crate::Limits::default(),
    )
    .unwrap();
    core.set_gc_settings(GcSettings {
        grace: Duration::ZERO,
        repack_below: 0.5,
        ..GcSettings::default()
    });
    let r = core.gc_run(&f.admin(), false).await.unwrap();
    assert_eq!(r.swept, 39 * 8, "{r:?}");
    assert_eq!(r.packs_rewritten, 1, "{r:?}");
    let after = du();
    let g = Fixture {
        core,
        clock: f.clock.clone(),
        dir: tempfile::tempdir().unwrap(),
    };
    all_restorable(&g, &a).await;
    assert!(readable(&g, &a.archive, &BlockId::of(b"shared by all")).await);
    assert!(after < before / 4, "{after} >= {before}/4");
    assert_eq!(before - after, r.pack_bytes_reclaimed);
    // Every byte of the swept blocks (and their record headers) came back.
    let swept_with_headers = r.swept_bytes + r.swept * 40;
    assert_eq!(r.pack_bytes_reclaimed, swept_with_headers);
}

#[tokio::test]
async fn the_gate_refuses_a_pack_that_records_still_point_into() {
    let f = Fixture::on_disk();
    let a = dev(&f, "acme", "ann", "laptop").await;
    let id = put(&f, &a, None, b"small and packed").await.unwrap();
    let rec = f.core.meta.block(&a.archive, &id).unwrap().unwrap();
    let Some(Location::Packed { pack, .. }) = Location::decode(&rec.location) else {
        panic!("not packed: {:?}", rec.location);
    };
    let what = Doomed::Pack {
        archive: &a.archive,
        pack,
        records: &[id],
    };
    let (v, _) = f
        .core
        .destroy(&f.admin(), &mut GateCtx::default(), what, "test")
        .unwrap();
    assert!(
        matches!(
            v,
            Verdict::Deny {
                code: "live_records",
                ..
            }
        ),
        "{v:?}"
    );
    assert!(readable(&f, &a.archive, &id).await);
}

/// Backups that re-use old blocks, racing retention and collections with
/// no grace at all, over many seeds: no backup ever loses a block.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn collections_racing_backups_that_reuse_blocks_never_lose_one() {
    for seed in 0..24u64 {
        let f = Arc::new(Fixture::new());
        grace(&f, 0);
        let a = dev(&f, "acme", "ann", "laptop").await;
        short_tiers(&f, "acme").await;
        set(
            &f,
            "acme",
            "retention",
            &[
                ("min_age", "0s"),
                ("keep_all", "0s"),
                ("daily", "0s"),
                ("weekly", "0s"),
                ("monthly", "0s"),
            ],
        )
        .await;
        let pool: Vec<Vec<u8>> = (0..24)
            .map(|i| format!("pool block {i}").into_bytes())
            .collect();
        let backups = {
            let (f, a, pool) = (f.clone(), a.clone(), pool.clone());
            tokio::spawn(async move {
                let mut rng = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                for n in 0..12u64 {
                    let pick: Vec<&Vec<u8>> = pool.iter().filter(|_| next() % 3 == 0).collect();
                    agent_backup(&f, &a, n, &pick).await;
                    f.clock.advance(SEC);
                }
            })
        };
        let collector = {
            let (f, a) = (f.clone(), a.clone());
            tokio::spawn(async move {
                for _ in 0..12 {
                    f.core
                        .retention_run(&f.admin(), a.archive.as_str())
                        .await
                        .unwrap();
                    f.core.gc_run(&f.admin(), false).await.unwrap();
                    tokio::task::yield_now().await;
                }
            })
        };
        backups.await.unwrap();
        collector.await.unwrap();
        all_restorable(&f, &a).await;
        // A last collection after the dust settles, then check again.
        f.core.gc_run(&f.admin(), false).await.unwrap();
        assert!(all_restorable(&f, &a).await > 0, "seed {seed}");
    }
}

/// What an agent does: ask which blocks are missing, upload those, commit;
/// told some went missing meanwhile, or to retry, do so (bounded).
async fn agent_backup(f: &Fixture, a: &DeviceAuth, n: u64, blocks: &[&Vec<u8>]) {
    let manifest = format!("manifest {n} {}", a.archive).into_bytes();
    let mut all: Vec<&[u8]> = vec![&manifest];
    all.extend(blocks.iter().map(|b| b.as_slice()));
    let ids: Vec<BlockId> = all.iter().map(|b| BlockId::of(b)).collect();
    let s = f.core.open_session(a, &a.archive, None).await.unwrap();
    let mut want = f
        .core
        .missing_blocks(&a.archive, ids.clone(), Some(&s.session))
        .await
        .unwrap()
        .missing;
    for _ in 0..50 {
        for id in &want {
            let data = all[ids.iter().position(|x| x == id).unwrap()];
            loop {
                match put(f, a, Some(&s.session), data).await {
                    Ok(_) => break,
                    Err(CoreError::Busy(_)) => tokio::task::yield_now().await,
                    Err(e) => panic!("upload: {e}"),
                }
            }
        }
        let r = f
            .core
            .commit(
                &a.archive,
                s.session.as_str(),
                CommitRequest {
                    manifest: ids[0],
                    blocks: ids[1..].to_vec(),
                    stats: coffer_types::wire::BackupStats {
                        files: 1,
                        bytes: 1,
                        percent: 100.0,
                    },
                },
            )
            .await;
        match r {
            Ok(_) => return,
            Err(CoreError::MissingBlocks(m)) => want = m,
            Err(CoreError::Busy(_)) => want.clear(),
            Err(e) => panic!("commit: {e}"),
        }
    }
    panic!("backup {n} never committed");
}

#[tokio::test]
async fn the_audit_log_verifies_after_everything() {
    let f = Fixture::new();
    grace(&f, 0);
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    history(&f, &a, 4).await;
    hold(&f, "m", "ann").await;
    f.core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    f.core
        .release_custodian(&lha("lena"), req("m", "ann", "done"))
        .await
        .unwrap();
    f.clock.advance(8 * DAY);
    f.core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    f.core.gc_run(&f.admin(), false).await.unwrap();
    f.core
        .deactivate_device(&f.admin(), &a.device)
        .await
        .unwrap();
    f.clock.advance(400 * DAY);
    f.core.cold_storage_pass().await.unwrap();
    f.core.gc_run(&f.admin(), false).await.unwrap();
    assert_eq!(bytes_on_store(&f, &a), 0);
    let v = f.core.meta.audit_verify().unwrap();
    assert!(v.first_break.is_none(), "{v:?}");
    assert!(v.entries > 15, "{v:?}");
}

#[tokio::test]
async fn a_device_name_also_names_its_archive_for_retention() {
    let f = Fixture::new();
    let a = dev(&f, "acme", "ann", "laptop").await;
    backup(&f, &a, &[b"x"]).await;
    let by_device = f
        .core
        .retention_dry_run(&f.admin(), a.device.as_str())
        .await
        .unwrap();
    assert_eq!(by_device.archive, a.archive);
    assert_eq!(
        code(f.core.retention_dry_run(&f.admin(), "ar-nope").await),
        ErrorCode::NotFound
    );
    // Outside an org admin's scope: the same 404.
    dev(&f, "beta", "bob", "pc").await;
    let oa = f.principal("olga", Role::OrgAdmin, Some("beta"));
    assert_eq!(
        code(f.core.retention_dry_run(&oa, a.archive.as_str()).await),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn the_collector_rests_only_while_uploads_run() {
    let f = Fixture::new();
    let started = std::time::Instant::now() - Duration::from_millis(10);
    assert_eq!(f.core.rest_after(started), Duration::ZERO, "no upload runs");
    let upload = f.core.upload_started();
    let rest = f.core.rest_after(started);
    let factor = GcSettings::default().rest_factor;
    assert!(rest >= Duration::from_millis(10) * factor, "{rest:?}");
    assert!(rest <= Duration::from_secs(2), "capped: {rest:?}");
    let long_ago = std::time::Instant::now() - Duration::from_secs(10);
    assert_eq!(f.core.rest_after(long_ago), Duration::from_secs(2));
    f.core.set_gc_settings(GcSettings {
        rest_factor: 0,
        ..GcSettings::default()
    });
    assert_eq!(f.core.rest_after(started), Duration::ZERO, "factor 0");
    drop(upload);
}

#[tokio::test]
async fn a_held_collection_waits_at_its_next_rest_and_then_finishes() {
    let f = Fixture::new();
    grace(&f, 3600);
    let a = dev(&f, "acme", "ann", "laptop").await;
    short_tiers(&f, "acme").await;
    history(&f, &a, 5).await;
    f.core
        .retention_run(&f.admin(), a.archive.as_str())
        .await
        .unwrap();
    let before = bytes_on_store(&f, &a);
    f.core.hold_gc(true);
    let (core, admin) = (f.core.clone(), f.admin());
    let run = tokio::spawn(async move { core.gc_run(&admin, false).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!run.is_finished(), "a held collection went on");
    assert_eq!(bytes_on_store(&f, &a), before, "a held collection swept");
    f.core.hold_gc(false);
    let r = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the collection goes on once let go")
        .unwrap()
        .unwrap();
    assert_eq!((r.marked, r.swept), (4, 4), "{r:?}");
    assert!(bytes_on_store(&f, &a) < before);
    all_restorable(&f, &a).await;
}
