//! Records, transactions, schema checks and durability across reopen.

use super::*;

#[test]
fn orgs_and_users_are_created_once() {
    let (_d, s) = open();
    let org = OrgRecord {
        name: name("acme"),
        parent: None,
        created_at: 1,
    };
    assert!(s.create_org(&org, &draft("org.create")).unwrap());
    assert!(!s.create_org(&org, &draft("org.create")).unwrap());
    assert_eq!(s.org(&name("acme")).unwrap(), Some(org));
    let user = UserRecord {
        org: name("acme"),
        name: name("ann"),
        created_at: 2,
    };
    assert!(s.create_user(&user, &draft("user.create")).unwrap());
    assert!(!s.create_user(&user, &draft("user.create")).unwrap());
    assert_eq!(s.users().unwrap().len(), 1);
}

#[test]
fn block_insert_counts_once_and_pins() {
    let (_d, s) = open();
    enroll(&s, "dv_1", "ar_1");
    session(&s, "ar_1", "se_1");
    let id = BlockId::of(b"a");
    let rec = BlockRecord {
        size: 10,
        stored_at: 7,
        location: Vec::new(),
    };
    assert!(s
        .insert_block(&name("ar_1"), &id, &rec, Some(&name("se_1")))
        .unwrap());
    assert!(!s
        .insert_block(&name("ar_1"), &id, &rec, Some(&name("se_1")))
        .unwrap());
    let a = s.archive(&name("ar_1")).unwrap().unwrap();
    assert_eq!(
        (a.bytes_stored, a.block_count, a.last_activity),
        (10, 1, Some(7))
    );
    assert_eq!(s.pinned_count(&name("ar_1"), &name("se_1")).unwrap(), 1);
    assert_eq!(s.block(&name("ar_1"), &id).unwrap(), Some(rec));
    // Dedupe is per archive: another archive does not see it.
    enroll(&s, "dv_2", "ar_2");
    assert_eq!(s.block(&name("ar_2"), &id).unwrap(), None);
    assert_eq!(s.missing(&name("ar_2"), &[id], None).unwrap(), vec![id]);
}

#[test]
fn commit_is_atomic_idempotent_and_lists_missing() {
    let (_d, s) = open();
    enroll(&s, "dv_1", "ar_1");
    session(&s, "ar_1", "se_1");
    let (a, b) = (BlockId::of(b"a"), BlockId::of(b"b"));
    let rec = BlockRecord {
        size: 1,
        stored_at: 7,
        location: Vec::new(),
    };
    s.insert_block(&name("ar_1"), &a, &rec, Some(&name("se_1")))
        .unwrap();
    let bk = backup("ar_1", "se_1", "bk_1", a);
    assert_eq!(
        s.commit(&bk, &[a, b], true).unwrap(),
        CommitOutcome::MissingBlocks(vec![b])
    );
    assert!(s.backups(&name("ar_1")).unwrap().is_empty());
    s.insert_block(&name("ar_1"), &b, &rec, Some(&name("se_1")))
        .unwrap();
    assert_eq!(
        s.commit(&bk, &[a, b], true).unwrap(),
        CommitOutcome::Committed(bk.clone())
    );
    // A retry with a fresh backup id returns the first backup.
    let retry = backup("ar_1", "se_1", "bk_2", a);
    assert_eq!(
        s.commit(&retry, &[a, b], true).unwrap(),
        CommitOutcome::AlreadyCommitted(bk)
    );
    assert_eq!(s.backups(&name("ar_1")).unwrap().len(), 1);
    assert_eq!(
        s.backup_blocks(&name("ar_1"), &name("bk_1")).unwrap(),
        vec![a, b]
    );
    let ar = s.archive(&name("ar_1")).unwrap().unwrap();
    assert_eq!((ar.backup_count, ar.last_completed), (1, Some(100)));
    assert_eq!(s.release_pins(&name("ar_1"), &name("se_1")).unwrap(), 2);
}

#[test]
fn large_reference_lists_are_chunked_and_read_back_in_order() {
    let (d, s) = open();
    enroll(&s, "dv_1", "ar_1");
    session(&s, "ar_1", "se_1");
    let ids: Vec<BlockId> = (0u32..40_000)
        .map(|i| BlockId::of(&i.to_le_bytes()))
        .collect();
    for id in &ids {
        s.insert_block(
            &name("ar_1"),
            id,
            &BlockRecord {
                size: 1,
                stored_at: 1,
                location: Vec::new(),
            },
            None,
        )
        .unwrap();
    }
    let bk = backup("ar_1", "se_1", "bk_1", ids[0]);
    assert!(matches!(
        s.commit(&bk, &ids, false).unwrap(),
        CommitOutcome::Committed(_)
    ));
    assert_eq!(s.backup_blocks(&name("ar_1"), &name("bk_1")).unwrap(), ids);
    // The chunks are small enough that sled keeps every node image in its
    // log: nothing spills to the blob files it never syncs by itself.
    s.durable_blocking().unwrap();
    let blobs: Vec<_> = std::fs::read_dir(d.path().join("meta/blobs"))
        .unwrap()
        .collect();
    assert!(blobs.is_empty(), "{} blob files", blobs.len());
    // Not complete: last_completed stays unset.
    assert_eq!(
        s.archive(&name("ar_1")).unwrap().unwrap().last_completed,
        None
    );
}

#[test]
fn token_rotation_and_revocation() {
    let (_d, s) = open();
    enroll(&s, "dv_1", "ar_1");
    let old = *blake3::hash(b"dv_1").as_bytes();
    assert!(s.device_by_token(&old).unwrap().is_some());
    let new = [9u8; 32];
    s.set_device_token(&name("dv_1"), Some(new), &draft("device.rotate"))
        .unwrap()
        .unwrap();
    assert!(s.device_by_token(&old).unwrap().is_none());
    assert!(s.device_by_token(&new).unwrap().is_some());
    let d = s
        .set_device_token(&name("dv_1"), None, &draft("device.revoke"))
        .unwrap()
        .unwrap();
    assert!(d.revoked);
    assert!(s.device_by_token(&new).unwrap().is_none());
}

fn reopen(path: &std::path::Path) -> crate::Result<MetaStore> {
    super::open_when_free(path, 0)
}

#[test]
fn writes_survive_reopen_after_durable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    {
        let s = MetaStore::open(&path, 0).unwrap();
        enroll(&s, "dv_1", "ar_1");
        s.durable_blocking().unwrap();
    }
    let s = reopen(&path).unwrap();
    assert!(s.device(&name("dv_1")).unwrap().is_some());
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    {
        let s = MetaStore::open(&path, 0).unwrap();
        s.t.meta
            .insert(b"schema_version", &99u32.to_be_bytes())
            .unwrap();
        s.durable_blocking().unwrap();
    }
    match reopen(&path) {
        Err(MetaError::SchemaMismatch {
            found: 99,
            expected: SCHEMA_VERSION,
            ..
        }) => {}
        other => panic!("expected a schema mismatch, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_durable_calls_share_flushes() {
    let (_d, s) = open();
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for i in 0..64u32 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let org = OrgRecord {
                name: Name::new(format!("o{i}")).unwrap(),
                parent: None,
                created_at: 1,
            };
            s.create_org(&org, &draft("org.create")).unwrap();
            s.durable().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(s.orgs().unwrap().len(), 64);
}

#[test]
fn named_refs_point_only_at_stored_blocks() {
    let (_d, s) = open();
    enroll(&s, "dv_1", "ar_1");
    let id = BlockId::of(b"key");
    let r = NamedRef {
        block: id,
        updated_at: 3,
    };
    assert_eq!(
        s.set_named_ref(&name("ar_1"), &name("key"), &r, true)
            .unwrap(),
        SetRefOutcome::MissingBlock
    );
    assert_eq!(s.named_ref(&name("ar_1"), &name("key")).unwrap(), None);
    let rec = BlockRecord {
        size: 3,
        stored_at: 1,
        location: Vec::new(),
    };
    s.insert_block(&name("ar_1"), &id, &rec, None).unwrap();
    assert_eq!(
        s.set_named_ref(&name("ar_1"), &name("key"), &r, true)
            .unwrap(),
        SetRefOutcome::Set
    );
    assert_eq!(
        s.named_ref(&name("ar_1"), &name("key")).unwrap(),
        Some(r.clone())
    );
    // Write-once: the same block again is fine, another is refused.
    assert_eq!(
        s.set_named_ref(&name("ar_1"), &name("key"), &r, true)
            .unwrap(),
        SetRefOutcome::Set
    );
    let other = BlockId::of(b"other");
    s.insert_block(&name("ar_1"), &other, &rec, None).unwrap();
    let r2 = NamedRef {
        block: other,
        updated_at: 4,
    };
    assert_eq!(
        s.set_named_ref(&name("ar_1"), &name("key"), &r2, true)
            .unwrap(),
        SetRefOutcome::Exists(r.clone())
    );
    assert_eq!(s.named_ref(&name("ar_1"), &name("key")).unwrap(), Some(r));
    // Other references may move.
    assert_eq!(
        s.set_named_ref(&name("ar_1"), &name("latest"), &r2, false)
            .unwrap(),
        SetRefOutcome::Set
    );
}

#[test]
fn plugin_keys_are_private_capped_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    {
        let s = MetaStore::open(&path, 0).unwrap();
        assert_eq!(s.plugin_kv_set("a", "k", b"1234", 20).unwrap(), Ok(()));
        assert_eq!(s.plugin_kv_set("a", "k2", b"x", 20).unwrap(), Ok(()));
        // "ab" is not "a": no prefix leaks between plugins.
        assert_eq!(s.plugin_kv_get("ab", "k").unwrap(), None);
        assert_eq!(s.plugin_kv_keys("ab", "").unwrap(), Vec::<String>::new());
        assert_eq!(s.plugin_kv_keys("a", "").unwrap(), ["k", "k2"]);
        assert_eq!(s.plugin_kv_keys("a", "k2").unwrap(), ["k2"]);
        // Replacing a value counts its new size only; over the cap fails.
        assert_eq!(
            s.plugin_kv_set("a", "k", b"123456789012", 20).unwrap(),
            Ok(())
        );
        assert!(s.plugin_kv_set("a", "k3", b"123456", 20).unwrap().is_err());
        s.plugin_kv_delete("a", "k2").unwrap();
        s.durable_blocking().unwrap();
    }
    let s = reopen(&path).unwrap();
    assert_eq!(s.plugin_kv_get("a", "k").unwrap().unwrap(), b"123456789012");
    assert_eq!(s.plugin_kv_keys("a", "").unwrap(), ["k"]);
}

#[test]
fn racing_commits_of_one_session_record_one_backup_and_leave_no_stray_references() {
    let (_d, s) = open();
    enroll(&s, "dv_1", "ar_1");
    session(&s, "ar_1", "se_1");
    let ids: Vec<BlockId> = (0u32..3000)
        .map(|i| BlockId::of(&i.to_le_bytes()))
        .collect();
    let rec = BlockRecord {
        size: 1,
        stored_at: 1,
        location: Vec::new(),
    };
    for id in &ids {
        s.insert_block(&name("ar_1"), id, &rec, None).unwrap();
    }
    let s = std::sync::Arc::new(s);
    let outcomes: Vec<CommitOutcome> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let (s, ids) = (s.clone(), &ids);
                sc.spawn(move || {
                    let bk = backup("ar_1", "se_1", &format!("bk_{i}"), ids[0]);
                    s.commit(&bk, ids, true).unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let won: Vec<&BackupRecord> = outcomes
        .iter()
        .filter_map(|o| match o {
            CommitOutcome::Committed(b) => Some(b),
            _ => None,
        })
        .collect();
    assert_eq!(won.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(
        o,
        CommitOutcome::Committed(_) | CommitOutcome::AlreadyCommitted(_)
    )));
    for i in 0..4 {
        let bid = format!("bk_{i}");
        let refs = s.backup_blocks(&name("ar_1"), &name(&bid)).unwrap();
        if bid == won[0].id.as_str() {
            assert_eq!(refs, ids);
        } else {
            assert!(refs.is_empty(), "{bid} left {} references", refs.len());
        }
    }
    // A commit of an aborted session writes nothing either.
    session(&s, "ar_1", "se_2");
    s.update_session(&name("ar_1"), &name("se_2"), |r| {
        r.state = crate::SessionStatus::Aborted
    })
    .unwrap();
    let bk = backup("ar_1", "se_2", "bk_9", ids[0]);
    assert_eq!(
        s.commit(&bk, &ids, true).unwrap(),
        CommitOutcome::SessionAborted
    );
    assert!(s
        .backup_blocks(&name("ar_1"), &name("bk_9"))
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn after_a_failed_flush_no_write_is_acknowledged_until_a_restart() {
    let (d, s) = open();
    enroll(&s, "dv_1", "ar_1");
    s.durable().await.unwrap();
    s.fail_next_flush();
    session(&s, "ar_1", "se_1");
    let e = s.durable().await.unwrap_err();
    assert!(matches!(e, MetaError::FailStopped(_)), "{e}");
    // The disk "recovers": still nothing is acknowledged.
    session(&s, "ar_1", "se_2");
    let e = s.durable().await.unwrap_err();
    assert!(e.to_string().contains("restart the server"), "{e}");
    assert!(s.durable_blocking().is_err());
    assert!(s.failure().is_some());
    // A restart reads what is on disk and takes writes again.
    drop(s);
    let s = super::open_when_free(&d.path().join("meta"), 1).unwrap();
    assert!(s.failure().is_none());
    session(&s, "ar_1", "se_3");
    s.durable().await.unwrap();
}

#[test]
fn an_escrowed_key_is_stored_replaced_and_destroyed_with_its_audit_entries() {
    let (_d, s) = open();
    let rec = |sealed: &[u8], key: &str| EscrowRecord {
        archive: name("ar_1"),
        device: name("dv_1"),
        sealed: sealed.to_vec(),
        public_key: key.into(),
        stored_at: 5,
    };
    let head = s.audit_head().unwrap();
    s.set_escrow(&rec(b"one", "k1"), &draft("escrow.store"))
        .unwrap();
    s.set_escrow(&rec(b"two", "k2"), &draft("escrow.store"))
        .unwrap();
    assert_eq!(s.escrow(&name("ar_1")).unwrap(), Some(rec(b"two", "k2")));
    assert_eq!(s.escrows().unwrap().len(), 1);
    assert!(s
        .delete_escrow(&name("ar_1"), &draft("escrow.destroy"))
        .unwrap());
    assert_eq!(s.escrow(&name("ar_1")).unwrap(), None);
    // Nothing to destroy: no entry either.
    assert!(!s
        .delete_escrow(&name("ar_1"), &draft("escrow.destroy"))
        .unwrap());
    assert_eq!(s.audit_head().unwrap(), head + 3);
}

#[test]
fn restore_tokens_are_found_by_hash_and_pruned_after_expiry() {
    let (_d, s) = open();
    let tok = |id: &str, h: u8, expires_at| RestoreTokenRecord {
        id: name(id),
        token_hash: [h; 32],
        device: name("dv_1"),
        archive: name("ar_1"),
        org: name("acme"),
        issued_by: "root".into(),
        issued_at: 1,
        expires_at,
    };
    s.add_restore_token(&tok("rt_1", 1, 100), &draft("device.restore_token"))
        .unwrap();
    s.add_restore_token(&tok("rt_2", 2, 300), &draft("device.restore_token"))
        .unwrap();
    assert_eq!(
        s.restore_token(&[1; 32]).unwrap(),
        Some(tok("rt_1", 1, 100))
    );
    assert_eq!(s.prune_restore_tokens(200).unwrap(), 1);
    assert_eq!(s.restore_token(&[1; 32]).unwrap(), None);
    assert!(s.restore_token(&[2; 32]).unwrap().is_some());
}

#[test]
fn an_alert_state_is_reindexed_by_due_time_and_its_transition_appended_once() {
    let (_d, s) = open();
    let st = |level: &str, due: Option<u64>| AlertStateRecord {
        level: level.into(),
        since: 1,
        reason: "ok".into(),
        due,
        notified: None,
    };
    let tr = |to: &str| AlertRecord {
        seq: 0,
        at: 5,
        device: name("dv_1"),
        org: name("acme"),
        from: "ok".into(),
        to: to.into(),
        reason: "never_backed_up".into(),
        reminder: false,
        digest: false,
    };
    assert_eq!(
        s.record_alert_state(&name("dv_1"), None, &st("ok", Some(100)), None)
            .unwrap(),
        None
    );
    s.record_alert_state(&name("dv_2"), None, &st("ok", Some(50)), None)
        .unwrap();
    assert_eq!(s.devices_due(49, 10).unwrap(), Vec::<Name>::new());
    assert_eq!(
        s.devices_due(100, 10).unwrap(),
        [name("dv_2"), name("dv_1")]
    );
    assert_eq!(s.devices_due(100, 1).unwrap(), [name("dv_2")]);
    // Re-recorded with a later due time: the old index entry goes.
    let seq = s
        .record_alert_state(
            &name("dv_1"),
            Some(&st("ok", Some(100))),
            &st("warning", Some(300)),
            Some(&tr("warning")),
        )
        .unwrap()
        .unwrap();
    // A second evaluator that started from the same level records nothing.
    assert_eq!(
        s.record_alert_state(
            &name("dv_1"),
            Some(&st("ok", Some(100))),
            &st("warning", Some(300)),
            Some(&tr("warning")),
        )
        .unwrap(),
        None
    );
    assert_eq!(s.devices_due(299, 10).unwrap(), [name("dv_2")]);
    let seq2 = s
        .record_alert_state(
            &name("dv_1"),
            Some(&st("warning", Some(300))),
            &st("critical", None),
            Some(&tr("critical")),
        )
        .unwrap()
        .unwrap();
    assert!(seq2 > seq);
    assert_eq!(s.devices_due(u64::MAX - 1, 10).unwrap(), [name("dv_2")]);
    let log = s.alerts(0, 10).unwrap();
    assert_eq!(
        log.iter()
            .map(|a| (a.seq, a.to.as_str()))
            .collect::<Vec<_>>(),
        [(seq, "warning"), (seq2, "critical")]
    );
    assert_eq!(s.alerts(seq, 10).unwrap().len(), 1);
    assert_eq!(
        s.alert_state(&name("dv_1")).unwrap().unwrap().level,
        "critical"
    );
}

#[test]
fn a_channel_takes_each_outbox_entry_in_once_and_a_claim_is_compare_and_set() {
    use crate::DeliveryRecord;
    let (_d, s) = open();
    let st = AlertStateRecord {
        level: "warning".into(),
        since: 1,
        reason: "ok".into(),
        due: None,
        notified: Some(1),
    };
    let tr = AlertRecord {
        seq: 0,
        at: 5,
        device: name("dv_1"),
        org: name("acme"),
        from: "ok".into(),
        to: "warning".into(),
        reason: "never_backed_up".into(),
        reminder: false,
        digest: false,
    };
    // An entry recorded before the channel existed is not its to send.
    s.record_alert_state(&name("dv_1"), None, &st, Some(&tr))
        .unwrap();
    assert_eq!(s.start_delivery_channel("mail").unwrap(), 1);
    assert_eq!(s.start_delivery_channel("mail").unwrap(), 1);
    let rec = |seq| DeliveryRecord {
        channel: "mail".into(),
        seq,
        target: "ops@x.example".into(),
        attempts: 0,
        next_attempt: 5,
        claimed_until: None,
        last_error: None,
        delivered_at: None,
        outcome: None,
    };
    assert!(s.take_into_channel("mail", 1, 2, &[rec(2)]).unwrap());
    // A second taker that read the same cursor writes nothing.
    assert!(!s.take_into_channel("mail", 1, 2, &[rec(2)]).unwrap());
    assert_eq!(s.pending_deliveries("mail", 10).unwrap(), [rec(2)]);
    let claimed = DeliveryRecord {
        claimed_until: Some(100),
        ..rec(2)
    };
    assert!(s.update_delivery(&rec(2), &claimed).unwrap());
    assert!(
        !s.update_delivery(&rec(2), &claimed).unwrap(),
        "claimed once"
    );
    let done = DeliveryRecord {
        delivered_at: Some(7),
        ..claimed.clone()
    };
    assert!(s.delivery_done(&claimed, &done).unwrap());
    assert!(!s.delivery_done(&claimed, &done).unwrap());
    assert!(s.pending_deliveries("mail", 10).unwrap().is_empty());
    assert_eq!(s.deliveries_of(&["mail"], 2).unwrap(), [done]);
    // The store id is made once.
    assert_eq!(s.store_id().unwrap(), s.store_id().unwrap());
    assert_eq!(s.store_id().unwrap().len(), 32);
}
