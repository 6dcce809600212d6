//! The agent protocol end to end: sessions, missing-block queries, uploads,
//! pins, progress, commits, backups and restore reads — over h2c and TLS.

use bytes::Bytes;
use coffer_client::paths;
use coffer_types::wire::{
    BackupInfo, BackupList, DeviceList, MissingResponse, PutBlockResponse, SessionInfo,
};
use coffer_types::BlockId;
use serde_json::json;

use crate::harness::*;

/// A backup of `n` blocks, restored and verified. Returns the blocks.
async fn back_up_and_restore(server: &TestServer) {
    let agent = server.enroll("acme", "ann", "laptop").await;
    let blocks: Vec<Vec<u8>> = (0..20)
        .map(|i| block_bytes(i, 1000 + i as usize * 5000))
        .collect();
    let ids: Vec<BlockId> = blocks.iter().map(|b| BlockId::of(b)).collect();

    let sid = agent.open_session().await;
    // Ask which blocks are missing: all of them.
    let r = agent
        .client
        .post_json(
            &paths::blocks_missing(&agent.archive),
            &json!({"ids": ids, "session": sid}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json::<MissingResponse>().unwrap().missing, ids);

    for b in &blocks[..10] {
        let r = agent.put_in(&sid, b).await;
        assert_eq!(r.status, 201, "{r:?}");
        let p: PutBlockResponse = r.json().unwrap();
        assert!(p.created);
        assert_eq!(p.size, b.len() as u64);
    }
    // Progress is recorded with a server-stamped time.
    let r = agent
        .client
        .post_json(
            &paths::session_progress(&agent.archive, &sid.to_string()),
            &json!({"percent": 50.0, "bytes": 12345, "files": 10}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let s: SessionInfo = r.json().unwrap();
    assert_eq!(
        (s.percent, s.bytes, s.files, s.pinned_blocks),
        (50.0, 12345, 10, 10)
    );

    // The same ids again: only the second half is missing; the first half is
    // now pinned to the session.
    let r = agent
        .client
        .post_json(
            &paths::blocks_missing(&agent.archive),
            &json!({"ids": ids, "session": sid}),
        )
        .await
        .unwrap();
    assert_eq!(
        r.json::<MissingResponse>().unwrap().missing,
        ids[10..].to_vec()
    );
    // A commit now fails and lists exactly the missing blocks.
    let r = agent.commit(&sid, &ids[0], &ids, 100.0).await;
    assert_eq!((r.status, code(&r).as_str()), (409, "missing_blocks"));
    assert_eq!(
        r.error().unwrap().error.missing.unwrap(),
        ids[10..].to_vec()
    );

    // Upload the rest concurrently over the one connection.
    let mut tasks = Vec::new();
    for b in &blocks[10..] {
        let (agent, sid, b) = (agent.clone(), sid.clone(), b.clone());
        tasks.push(tokio::spawn(
            async move { agent.put_in(&sid, &b).await.status },
        ));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    // A re-upload is idempotent: 200, not stored twice.
    let r = agent.put(&blocks[0]).await;
    assert_eq!(r.status, 200);
    assert!(!r.json::<PutBlockResponse>().unwrap().created);

    let r = agent.commit(&sid, &ids[0], &ids, 100.0).await;
    assert_eq!(r.status, 201, "{r:?}");
    let backup: BackupInfo = r.json().unwrap();
    assert_eq!(backup.block_count, 20);
    // A retried commit returns the same backup.
    let r = agent.commit(&sid, &ids[0], &ids, 100.0).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json::<BackupInfo>().unwrap().backup, backup.backup);
    // The session is closed: no more blocks in it.
    let r = agent.put_in(&sid, b"late").await;
    assert_eq!((r.status, code(&r).as_str()), (409, "session_closed"));

    // List and fetch backups, then restore every block and verify it.
    let r = agent
        .client
        .get(&paths::backups(&agent.archive))
        .await
        .unwrap();
    let list: BackupList = r.json().unwrap();
    assert_eq!(list.backups.len(), 1);
    let r = agent
        .client
        .get(&paths::backup(&agent.archive, &backup.backup.to_string()))
        .await
        .unwrap();
    let full: BackupInfo = r.json().unwrap();
    assert_eq!(full.blocks.as_deref(), Some(&ids[..]));
    for (id, b) in ids.iter().zip(&blocks) {
        let r = agent.get(id).await;
        assert_eq!(r.status, 200);
        assert_eq!(BlockId::of(&r.body), *id);
        assert_eq!(&r.body[..], &b[..]);
    }

    // HEAD and ranges.
    let r = agent
        .client
        .send(
            http::Method::HEAD,
            &paths::block(&agent.archive, &ids[3].to_string()),
            &[],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-length"], blocks[3].len().to_string());
    let r = agent.get_range(&ids[19], "bytes=100-199").await;
    assert_eq!(r.status, 206);
    assert_eq!(&r.body[..], &blocks[19][100..200]);
    assert_eq!(
        r.headers["content-range"],
        format!("bytes 100-199/{}", blocks[19].len())
    );
    let r = agent.get_range(&ids[19], "bytes=-10").await;
    assert_eq!(&r.body[..], &blocks[19][blocks[19].len() - 10..]);
    let r = agent.get_range(&ids[19], "bytes=99999999-").await;
    assert_eq!(
        (r.status, code(&r).as_str()),
        (416, "range_not_satisfiable")
    );

    // The device list shows the server-stamped health facts.
    let r = server.admin().await.get(&paths::devices()).await.unwrap();
    let devices: DeviceList = r.json().unwrap();
    let d = devices
        .devices
        .iter()
        .find(|d| d.device.as_str() == agent.device)
        .unwrap();
    let total: u64 = blocks.iter().map(|b| b.len() as u64).sum();
    assert_eq!(
        (d.bytes_stored, d.block_count, d.backup_count),
        (total, 20, 1)
    );
    assert!(d.last_activity.is_some() && d.last_completed.is_some() && d.last_connection.is_some());
    assert_eq!(d.percent_complete, Some(100.0));
    assert!(d
        .agent_version
        .as_deref()
        .unwrap()
        .starts_with("coffer-client/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_over_h2c() {
    let server = TestServer::h2c().await;
    back_up_and_restore(&server).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_over_tls_with_the_generated_certificate() {
    let mut server = TestServer::start(Opts {
        tls: true,
        ..Default::default()
    })
    .await;
    assert!(server.url.starts_with("https://"));
    let log = server.log_text();
    assert!(log.contains("sha256"), "the fingerprint is logged:\n{log}");
    back_up_and_restore(&server).await;
    // The certificate is kept across restarts.
    let before = std::fs::read(server.ca_cert()).unwrap();
    server.restart();
    assert_eq!(std::fs::read(server.ca_cert()).unwrap(), before);
    let admin = server.admin().await;
    assert_eq!(admin.get(&paths::devices()).await.unwrap().status, 200);
    // A client that does not trust the certificate is refused.
    let untrusting = coffer_http::client::Client::connect(&server.url, &Default::default()).await;
    assert!(untrusting.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_answers_ten_thousand_ids_in_one_call() {
    let server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let stored: Vec<Vec<u8>> = (0..50).map(|i| block_bytes(1000 + i, 64)).collect();
    for b in &stored {
        assert_eq!(agent.put(b).await.status, 201);
    }
    let mut ids: Vec<BlockId> = (0u32..10_000)
        .map(|i| BlockId::of(&i.to_le_bytes()))
        .collect();
    for (i, b) in stored.iter().enumerate() {
        ids[i * 200] = BlockId::of(b);
    }
    let r = agent
        .client
        .post_json(
            &paths::blocks_missing(&agent.archive),
            &json!({ "ids": ids }),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let missing = r.json::<MissingResponse>().unwrap().missing;
    assert_eq!(missing.len(), 10_000 - 50);
    assert!(stored.iter().all(|b| !missing.contains(&BlockId::of(b))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_is_per_archive_and_reveals_nothing_across_tenants() {
    let server = TestServer::h2c().await;
    let ann = server.enroll("acme", "ann", "laptop").await;
    let bob = server.enroll("globex", "bob", "desktop").await;
    let b = block_bytes(7, 4096);
    assert_eq!(ann.put(&b).await.status, 201);
    // Bob is told the block is missing from his archive, and storing it
    // creates his own copy.
    let r = bob
        .client
        .post_json(
            &paths::blocks_missing(&bob.archive),
            &json!({"ids": [BlockId::of(&b)]}),
        )
        .await
        .unwrap();
    assert_eq!(r.json::<MissingResponse>().unwrap().missing.len(), 1);
    assert_eq!(bob.get(&BlockId::of(&b)).await.status, 404);
    assert_eq!(bob.put(&b).await.status, 201);
    // Bob cannot reach Ann's archive: the same answer as an archive that
    // does not exist.
    let foreign = bob
        .client
        .get(&paths::backups(ann.archive.as_str()))
        .await
        .unwrap();
    let none = bob
        .client
        .get(&paths::backups("ar_doesnotexist"))
        .await
        .unwrap();
    assert_eq!((foreign.status, none.status), (404, 404));
    let msg = |r: &coffer_http::client::ClientResponse, a: &str| {
        r.error().unwrap().error.message.replace(a, "X")
    };
    assert_eq!(msg(&foreign, &ann.archive), msg(&none, "ar_doesnotexist"));
    let put = bob
        .client
        .put(
            &paths::block(&ann.archive, &BlockId::of(&b).to_string()),
            Bytes::from(b.clone()),
        )
        .await
        .unwrap();
    assert_eq!(put.status, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_session_takes_no_commit() {
    let server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let sid = agent.open_session().await;
    let b = block_bytes(1, 10);
    assert_eq!(agent.put_in(&sid, &b).await.status, 201);
    let r = agent
        .client
        .post_json(
            &paths::session_abort(&agent.archive, &sid.to_string()),
            &json!({}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let s: SessionInfo = r.json().unwrap();
    // Its pins stay: the blocks are kept for the collection grace after
    // the session's last activity (garbage collection drops the pins).
    assert_eq!(
        (format!("{:?}", s.state), s.pinned_blocks),
        ("Aborted".to_string(), 1)
    );
    let r = agent.commit(&sid, &BlockId::of(&b), &[], 100.0).await;
    assert_eq!((r.status, code(&r).as_str()), (409, "session_closed"));
    // A partial backup (percent < 100) is a backup but not "completed".
    let sid = agent.open_session().await;
    let r = agent.commit(&sid, &BlockId::of(&b), &[], 40.0).await;
    assert_eq!(r.status, 201);
    let d: DeviceList = server
        .admin()
        .await
        .get(&paths::devices())
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(d.devices[0].last_completed, None);
    assert_eq!(d.devices[0].backup_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_refs_point_at_stored_blocks_only() {
    let server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let key_blob = block_bytes(42, 300);
    let id = BlockId::of(&key_blob);
    let set = |id: BlockId| {
        let agent = agent.clone();
        async move {
            agent
                .client
                .send(
                    http::Method::PUT,
                    &paths::named_ref(&agent.archive, "key"),
                    &[("content-type", "application/json")],
                    serde_json::to_vec(&json!({"block": id})).unwrap().into(),
                )
                .await
                .unwrap()
        }
    };
    let r = set(id).await;
    assert_eq!((r.status, code(&r).as_str()), (409, "missing_blocks"));
    assert_eq!(
        agent
            .client
            .get(&paths::named_ref(&agent.archive, "key"))
            .await
            .unwrap()
            .status,
        404
    );
    assert_eq!(agent.put(&key_blob).await.status, 201);
    assert_eq!(set(id).await.status, 200);
    let r = agent
        .client
        .get(&paths::named_ref(&agent.archive, "key"))
        .await
        .unwrap();
    let info: coffer_types::wire::RefInfo = r.json().unwrap();
    assert_eq!(info.block, id);
    // The key reference is written once: the same block again is fine,
    // another block is refused and the reference stays.
    assert_eq!(set(id).await.status, 200);
    let other_blob = block_bytes(43, 300);
    assert_eq!(agent.put(&other_blob).await.status, 201);
    let r = set(BlockId::of(&other_blob)).await;
    assert_refused(&r, 409, "conflict", "never replaced");
    let r = agent
        .client
        .get(&paths::named_ref(&agent.archive, "key"))
        .await
        .unwrap();
    assert_eq!(r.json::<coffer_types::wire::RefInfo>().unwrap().block, id);
    // Another device cannot read it.
    let other = server.enroll("acme", "bob", "desktop").await;
    assert_eq!(
        other
            .client
            .get(&paths::named_ref(&agent.archive, "key"))
            .await
            .unwrap()
            .status,
        404
    );
}

/// Records of a bundle body: `id | length (u32 LE) | bytes`.
fn bundle(blocks: &[(BlockId, &[u8])]) -> Bytes {
    let mut body = Vec::new();
    for (id, b) in blocks {
        body.extend_from_slice(id.as_bytes());
        body.extend_from_slice(&(b.len() as u32).to_le_bytes());
        body.extend_from_slice(b);
    }
    body.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_stores_many_small_blocks_in_one_request_and_refuses_bad_ones() {
    use coffer_types::wire::PutBundleResponse;
    let server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let sid = agent.open_session().await;
    let blocks: Vec<Vec<u8>> = (0..5)
        .map(|i| block_bytes(100 + i, 3000 * (i as usize + 1)))
        .collect();
    let ids: Vec<BlockId> = blocks.iter().map(|b| BlockId::of(b)).collect();
    // One of them is already stored.
    assert_eq!(agent.put(&blocks[0]).await.status, 201);
    let send = |body: Bytes| {
        let (client, path, sid) = (
            &agent.client,
            paths::blocks_bundle(&agent.archive),
            sid.clone(),
        );
        async move {
            client
                .send(http::Method::POST, &path, &[("coffer-session", &sid)], body)
                .await
                .unwrap()
        }
    };

    let all: Vec<(BlockId, &[u8])> = ids
        .iter()
        .copied()
        .zip(blocks.iter().map(Vec::as_slice))
        .collect();
    let r = send(bundle(&all)).await;
    assert_eq!(r.status, 200, "{r:?}");
    let answer: PutBundleResponse = r.json().unwrap();
    let created: Vec<bool> = answer.blocks.iter().map(|b| b.created).collect();
    assert_eq!(created, [false, true, true, true, true]);
    assert_eq!(answer.blocks.iter().map(|b| b.id).collect::<Vec<_>>(), ids);
    for (id, b) in ids.iter().zip(&blocks) {
        let got = agent.get(id).await;
        assert_eq!((got.status, &got.body[..]), (200, &b[..]));
    }
    // Every block of the bundle is pinned to the session.
    let r = agent
        .client
        .get(&paths::session(&agent.archive, &sid.to_string()))
        .await
        .unwrap();
    assert_eq!(r.json::<SessionInfo>().unwrap().pinned_blocks, 5);

    // A record whose bytes are not its id: refused, named, not stored.
    let good = block_bytes(200, 4000);
    let bad = block_bytes(201, 4000);
    let claimed = BlockId::of(b"something else");
    let r = send(bundle(&[(BlockId::of(&good), &good), (claimed, &bad)])).await;
    assert_refused(&r, 400, "digest_mismatch", &claimed.to_string());
    assert_eq!(agent.get(&claimed).await.status, 404);

    // A bundle cut inside a record stores nothing, not even the whole
    // record before the cut.
    let first = block_bytes(300, 5000);
    let second = block_bytes(301, 5000);
    let body = bundle(&[
        (BlockId::of(&first), &first),
        (BlockId::of(&second), &second),
    ]);
    let r = send(body.slice(..body.len() - 10)).await;
    assert_refused(&r, 400, "invalid_request", "ends inside block");
    assert_eq!(agent.get(&BlockId::of(&first)).await.status, 404);

    // Too many blocks (here empty ones): refused, nothing stored.
    let empty: Vec<(BlockId, &[u8])> =
        vec![(BlockId::of(b""), &b""[..]); coffer_types::wire::BUNDLE_MAX_BLOCKS + 1];
    let r = send(bundle(&empty)).await;
    assert_eq!(
        (r.status, code(&r)),
        (400, "invalid_request".into()),
        "{r:?}"
    );
    assert_eq!(agent.get(&BlockId::of(b"")).await.status, 404);

    // Over the size limit: refused before anything is stored.
    let big = block_bytes(400, (coffer_types::wire::BUNDLE_MAX_BYTES) + 1);
    let r = send(bundle(&[(BlockId::of(&big), &big)])).await;
    assert_eq!(
        (r.status, code(&r)),
        (413, "body_too_large".into()),
        "{r:?}"
    );
    assert_eq!(agent.get(&BlockId::of(&big)).await.status, 404);
}

#[tokio::test]
async fn a_fetch_answers_many_blocks_in_order_and_marks_the_absent_ones() {
    use coffer_types::wire::{BUNDLE_MAX_BLOCKS, BUNDLE_MAX_BYTES, FETCH_ABSENT};
    let server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let other = server.enroll("acme", "bob", "desktop").await;
    let blocks: Vec<Vec<u8>> = (0..4)
        .map(|i| block_bytes(500 + i, 2000 * (i as usize + 1)))
        .collect();
    for b in &blocks {
        assert_eq!(agent.put(b).await.status, 201);
    }
    assert_eq!(agent.put(b"").await.status, 201);
    // Held by another archive only: absent from this one.
    let foreign = block_bytes(600, 3000);
    assert_eq!(other.put(&foreign).await.status, 201);
    let never = BlockId::of(b"never stored");
    let fetch = |ids: Vec<BlockId>| {
        let (client, path) = (&agent.client, paths::blocks_fetch(&agent.archive));
        async move {
            client
                .post_json(&path, &json!({ "ids": ids }))
                .await
                .unwrap()
        }
    };

    // In the order asked, a repeat answered twice, the absent ones marked.
    let asked = vec![
        BlockId::of(&blocks[2]),
        never,
        BlockId::of(&blocks[0]),
        BlockId::of(b""),
        BlockId::of(&foreign),
        BlockId::of(&blocks[2]),
        BlockId::of(&blocks[3]),
    ];
    let want: Vec<Option<&[u8]>> = vec![
        Some(&blocks[2]),
        None,
        Some(&blocks[0]),
        Some(b""),
        None,
        Some(&blocks[2]),
        Some(&blocks[3]),
    ];
    let r = fetch(asked.clone()).await;
    assert_eq!(r.status, 200, "{r:?}");
    let mut rest = &r.body[..];
    for (id, want) in asked.iter().zip(&want) {
        assert_eq!(&rest[..32], id.as_bytes());
        let len = u32::from_le_bytes(rest[32..36].try_into().unwrap());
        rest = &rest[36..];
        match want {
            None => assert_eq!(len, FETCH_ABSENT, "{id} is absent"),
            Some(b) => {
                assert_eq!(len as usize, b.len());
                assert_eq!(&rest[..b.len()], *b);
                rest = &rest[b.len()..];
            }
        }
    }
    assert!(
        rest.is_empty(),
        "{} bytes after the last record",
        rest.len()
    );

    // Too many ids, or blocks that add up to more than an answer holds:
    // refused with a sentence saying so.
    let r = fetch(vec![BlockId::of(&blocks[0]); BUNDLE_MAX_BLOCKS + 1]).await;
    assert_eq!(
        (r.status, code(&r)),
        (400, "invalid_request".into()),
        "{r:?}"
    );
    let big = block_bytes(700, 3 << 20);
    assert_eq!(agent.put(&big).await.status, 201);
    let r = fetch(vec![BlockId::of(&big); BUNDLE_MAX_BYTES / (3 << 20) + 1]).await;
    assert_refused(&r, 400, "invalid_request", "ask for fewer");
    // Not JSON of this shape.
    let r = agent
        .client
        .post_json(&paths::blocks_fetch(&agent.archive), &json!({ "id": [] }))
        .await
        .unwrap();
    assert_eq!(
        (r.status, code(&r)),
        (400, "invalid_request".into()),
        "{r:?}"
    );
}
