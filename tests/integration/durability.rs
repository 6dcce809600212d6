//! "Stored" means durable, and memory stays bounded: kill -9 the server in
//! the middle of concurrent uploads and commits, restart, and every block and
//! commit that got a 2xx is there and verifies; 256 concurrent 16 MiB uploads
//! keep the server's RSS under 512 MiB.

use coffer_client::paths;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coffer_types::wire::{BackupInfo, BackupList};
use coffer_types::BlockId;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_block_and_commit_survives_kill_9() {
    let mut server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let acked_blocks = Arc::new(Mutex::new(Vec::<BlockId>::new()));
    let acked_backups = Arc::new(Mutex::new(Vec::<(String, Vec<BlockId>)>::new()));

    // 8 writers, each uploading blocks in sessions of 5 and committing each
    // session, until the server dies under them.
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let (agent, blocks, backups) = (agent.clone(), acked_blocks.clone(), acked_backups.clone());
        tasks.push(tokio::spawn(async move {
            for round in 0..1000u64 {
                let Ok(r) = agent.client.post_json(&paths::sessions(&agent.archive), &serde_json::json!({})).await else { return };
                if r.status != 201 {
                    return;
                }
                let sid = r.json::<coffer_types::wire::SessionInfo>().unwrap().session.to_string();
                let mut ids = Vec::new();
                for k in 0..5u64 {
                    let body = block_bytes(w * 1_000_000 + round * 10 + k, 20_000 + (k as usize) * 7_000);
                    let id = BlockId::of(&body);
                    let path = paths::block(&agent.archive, &id.to_string());
                    match agent.client.send(http::Method::PUT, &path, &[("coffer-session", &sid)], body.into()).await {
                        Ok(r) if r.status == 201 || r.status == 200 => blocks.lock().unwrap().push(id),
                        _ => return,
                    }
                    ids.push(id);
                }
                let body = serde_json::json!({"manifest": ids[0], "blocks": ids, "stats": {"percent": 100.0}});
                match agent.client.post_json(&paths::session_commit(&agent.archive, &sid.to_string()), &body).await {
                    Ok(r) if r.status == 201 => {
                        let b: BackupInfo = r.json().unwrap();
                        backups.lock().unwrap().push((b.backup.to_string(), ids));
                    }
                    _ => return,
                }
            }
        }));
    }
    // Let them run, then pull the plug.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    for t in tasks {
        t.await.unwrap();
    }
    let blocks = acked_blocks.lock().unwrap().clone();
    let backups = acked_backups.lock().unwrap().clone();
    assert!(
        blocks.len() >= 20 && !backups.is_empty(),
        "too little was acknowledged to mean anything: {} blocks",
        blocks.len()
    );

    server.restart();
    let agent = agent.reconnect(&server).await;
    verify_acknowledged(&agent, &blocks, &backups, "kill -9").await;
    eprintln!(
        "kill -9: {} acknowledged blocks and {} acknowledged backups all survived",
        blocks.len(),
        backups.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rss_stays_bounded_under_256_concurrent_16_mib_uploads() {
    let server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    const N: u64 = 256;
    const SIZE: usize = 16 << 20;
    // 8 connections × 32 streams, every upload in flight at once.
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(agent.reconnect(&server).await);
    }
    let start = Arc::new(tokio::sync::Barrier::new(N as usize));
    let mut tasks = Vec::new();
    for i in 0..N {
        let a = clients[(i % 8) as usize].clone();
        let start = start.clone();
        tasks.push(tokio::spawn(async move {
            let body = block_bytes(500_000 + i, SIZE);
            start.wait().await;
            a.put(&body).await.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 201);
    }
    let rss = server.peak_rss();
    eprintln!(
        "peak server RSS with {N} concurrent 16 MiB uploads: {} MiB",
        rss >> 20
    );
    assert!(
        rss < 512 << 20,
        "peak RSS {} MiB exceeds 512 MiB",
        rss >> 20
    );
}

/// After a crash (`cause`): every acknowledged block reads back and verifies,
/// and every acknowledged backup is listed with the references it was
/// committed with (each id once, in the order first listed).
pub(crate) async fn verify_acknowledged(
    agent: &Agent,
    blocks: &[BlockId],
    backups: &[(String, Vec<BlockId>)],
    cause: &str,
) {
    use futures::StreamExt;
    let mut gets = futures::stream::iter(blocks)
        .map(|id| async move { (id, agent.get(id).await) })
        .buffer_unordered(64);
    while let Some((id, r)) = gets.next().await {
        assert_eq!(r.status, 200, "acknowledged block {id} lost to {cause}");
        assert_eq!(
            BlockId::of(&r.body),
            *id,
            "block {id} corrupt after {cause}"
        );
    }
    let list: BackupList = agent
        .client
        .get(&paths::backups(&agent.archive))
        .await
        .unwrap()
        .json()
        .unwrap();
    for (bid, ids) in backups {
        assert!(
            list.backups.iter().any(|b| b.backup.as_str() == bid),
            "acknowledged backup {bid} lost to {cause}"
        );
        let full: BackupInfo = agent
            .client
            .get(&paths::backup(&agent.archive, bid))
            .await
            .unwrap()
            .json()
            .unwrap();
        let mut seen = std::collections::HashSet::new();
        let want: Vec<BlockId> = ids.iter().copied().filter(|id| seen.insert(*id)).collect();
        let got = full.blocks.unwrap_or_default();
        assert!(
            got == want,
            "backup {bid} lost references to {cause}: {} of {} read back",
            got.len(),
            want.len()
        );
    }
}
