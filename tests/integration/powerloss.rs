//! Power loss, not only kill -9: the server's data directory lives on
//! [`LazyFs`], which drops everything never fsynced when the "power" is cut.
//! Concurrent uploads (packed and unpacked blocks, re-uploads of stored ones)
//! and commits (one per cut with a reference list of 6 000 ids) run until the
//! server is killed and the file system loses its unsynced state; the server
//! is restarted on what is left, and every block and commit that was
//! acknowledged must be there and verify. Three cuts, at different moments.
//!
//! Needs `/dev/fuse` and the right to mount. Where FUSE is missing the test
//! says so and passes; either way it writes one line per run to
//! `target/tmp/power-loss.txt`, which `.ci/run` prints.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_client::paths;
use coffer_types::wire::{BackupInfo, SessionInfo};
use coffer_types::BlockId;

use crate::durability::verify_acknowledged;
use crate::harness::*;
use crate::lazyfs::LazyFs;

/// What the power-loss runs found, for `.ci/run` to print.
fn report(line: &str) {
    use std::io::Write;
    eprintln!("{line}");
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("power-loss.txt");
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// Why FUSE cannot be used here, if it cannot.
fn fuse_missing() -> Option<String> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/fuse cannot be opened ({e})")),
    }
}

#[derive(Default)]
struct Acked {
    blocks: Vec<BlockId>,
    backups: Vec<(String, Vec<BlockId>)>,
    /// Big commits acknowledged (one per cut).
    big: u64,
}

/// Distinct block ids in the big commit: its reference list (156 KiB),
/// stored in the 64 KiB chunks of earlier versions, made node images larger
/// than sled keeps in its log, and went to sled's unsynced blob files.
const BIG: u64 = 5_000;

/// One writer: sessions of four blocks (two packed, two on their own), each
/// committed, and each re-uploading a block stored earlier. Before the first
/// cut, writer 0 starts with a session of [`BIG`] small blocks.
async fn writer(agent: Agent, w: u64, round: u64, stop: Arc<AtomicBool>, acked: Arc<Mutex<Acked>>) {
    use futures::StreamExt;
    for s in 0..40u64 {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(r) = agent
            .client
            .post_json(&paths::sessions(&agent.archive), &serde_json::json!({}))
            .await
        else {
            return;
        };
        if r.status != 201 {
            return;
        }
        let sid = r.json::<SessionInfo>().unwrap().session.to_string();
        let seed = ((round * 100 + w) * 1000 + s) * 10_000;
        let sizes: Vec<usize> = if w == 0 && s == 0 && round == 0 {
            (0..BIG).map(|i| 64 + (i % 7) as usize * 16).collect()
        } else {
            vec![9_000, 60_000, 150_000, 300_000]
        };
        let puts = futures::stream::iter(sizes.into_iter().enumerate())
            .map(|(k, size)| {
                let (agent, sid) = (&agent, &sid);
                async move {
                    let body = block_bytes(seed + k as u64, size);
                    let id = BlockId::of(&body);
                    let path = paths::block(&agent.archive, &id.to_hex());
                    match agent
                        .client
                        .send(
                            http::Method::PUT,
                            &path,
                            &[("coffer-session", sid)],
                            body.into(),
                        )
                        .await
                    {
                        Ok(r) if r.status == 201 || r.status == 200 => Some(id),
                        _ => None,
                    }
                }
            })
            .buffered(256)
            .collect::<Vec<_>>()
            .await;
        let mut ids = Vec::new();
        for id in puts {
            let Some(id) = id else { return };
            acked.lock().unwrap().blocks.push(id);
            ids.push(id);
        }
        // A block stored before: answered "present", which must mean durable.
        let old = acked.lock().unwrap().blocks.first().copied();
        if let Some(old) = old {
            let path = paths::block(&agent.archive, &old.to_hex());
            let r = match agent.client.get(&path).await {
                Ok(r) if r.status == 200 => r,
                _ => return,
            };
            match agent
                .client
                .send(
                    http::Method::PUT,
                    &path,
                    &[("coffer-session", &sid)],
                    r.body,
                )
                .await
            {
                Ok(r) if r.status == 200 || r.status == 201 => {}
                _ => return,
            }
        }
        let body =
            serde_json::json!({"manifest": ids[0], "blocks": ids, "stats": {"percent": 100.0}});
        match agent
            .client
            .post_json(&paths::session_commit(&agent.archive, &sid), &body)
            .await
        {
            Ok(r) if r.status == 201 => {
                let b: BackupInfo = r.json().unwrap();
                let mut a = acked.lock().unwrap();
                a.big += u64::from(ids.len() as u64 == BIG);
                a.backups.push((b.backup.to_string(), ids));
            }
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_block_and_commit_survives_power_loss() {
    if let Some(why) = fuse_missing() {
        report(&format!("power-loss test SKIPPED: {why}"));
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let disk = root.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let fs = LazyFs::new();
    let mut mount = match fs.mount(&disk) {
        Ok(m) => Some(m),
        Err(e) => {
            report(&format!(
                "power-loss test SKIPPED: FUSE mount refused ({e})"
            ));
            return;
        }
    };
    let opts = Opts {
        data_dir: Some(disk.join("data")),
        ..Opts::default()
    };
    let mut server = TestServer::start(opts).await;
    let mut agent = server.enroll("acme", "ann", "laptop").await;
    let acked = Arc::new(Mutex::new(Acked::default()));
    let started = Instant::now();
    for (round, cut_after_ms) in [(0u64, 150u64), (1, 700), (2, 1300)] {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for w in 0..6 {
            // A connection each, so one writer's failure does not end the others.
            let a = agent.reconnect(&server).await;
            tasks.push(tokio::spawn(writer(
                a,
                w,
                round,
                stop.clone(),
                acked.clone(),
            )));
        }
        // Cut once this round's big commit is in, while the others write.
        let deadline = Instant::now() + Duration::from_secs(60);
        while round == 0 && acked.lock().unwrap().big == 0 {
            assert!(Instant::now() < deadline, "the big commit took over 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(cut_after_ms)).await;
        // The cut: the server dies mid-request and the disk forgets.
        server.kill9();
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            t.await.unwrap();
        }
        drop(mount.take());
        let lost = fs.power_cut();
        mount = Some(fs.mount(&disk).expect("remount"));
        let (blocks, backups) = {
            let a = acked.lock().unwrap();
            (a.blocks.len(), a.backups.len())
        };
        assert!(
            blocks >= 20 && backups > round as usize,
            "too little was acknowledged to mean anything: {blocks} blocks, {backups} backups"
        );
        server.restart();
        agent = agent.reconnect(&server).await;
        let snapshot = std::mem::take(&mut *acked.lock().unwrap());
        verify_acknowledged(&agent, &snapshot.blocks, &snapshot.backups, "the power cut").await;
        *acked.lock().unwrap() = snapshot;
        report(&format!(
            "power-loss cut {} after {cut_after_ms} ms: the disk dropped {} unsynced names and \
             reverted {} files; {blocks} acknowledged blocks and {backups} acknowledged backups \
             (so far) all verify",
            round + 1,
            lost.names,
            lost.files
        ));
    }
    report(&format!(
        "power-loss test RAN: 3 cuts in {:.1} s, {} fsyncs served",
        started.elapsed().as_secs_f64(),
        fs.fsyncs()
    ));
    server.kill9();
}
