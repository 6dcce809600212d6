//! Bit rot: a stored block whose bytes no longer match its id is never
//! served as good, is recorded, is reported missing to its device, and is
//! healed by the device's next upload of it.

use std::io::{Seek, SeekFrom, Write};

use coffer_types::BlockId;

use crate::harness::*;

#[tokio::test]
async fn a_corrupt_block_is_refused_reported_missing_and_healed_by_a_re_upload() {
    let server = TestServer::h2c().await;
    let a = server.enroll("acme", "ann", "ann-laptop").await;
    let good = block_bytes(31, 1 << 20);
    let id = BlockId::of(&good);
    assert_eq!(a.put(&good).await.status, 201);
    // Rot: one byte of the stored file changes.
    let hex = id.to_hex();
    let file = server.block_file(&a.archive, &id);
    let mut f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    f.seek(SeekFrom::Start(500_000)).unwrap();
    f.write_all(&[good[500_000] ^ 0xff]).unwrap();
    drop(f);

    // A whole-block read does not end cleanly: the stream is reset.
    let got = a
        .client
        .get(&coffer_client::paths::block(&a.archive, &hex))
        .await;
    match got {
        Err(_) => {}
        Ok(r) => panic!(
            "a corrupt block was answered {} with {} bytes",
            r.status,
            r.body.len()
        ),
    }
    assert!(server.log_text().contains("does not match its id"));
    // Its device is told to upload it again, and a commit needs it first.
    let r = a
        .client
        .post_json(
            &coffer_client::paths::blocks_missing(&a.archive),
            &serde_json::json!({"ids": [id]}),
        )
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["missing"],
        serde_json::json!([hex])
    );
    let session = a.open_session().await;
    let r = a.commit(&session, &id, &[id], 100.0).await;
    assert_refused(&r, 409, "missing_blocks", "does not hold");
    // The re-upload replaces the bad copy instead of answering "present".
    let r = a.put(&good).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let r = a.get(&id).await;
    assert_eq!(r.status, 200);
    assert!(r.body == good, "the healed block reads back as uploaded");
    let r = a.commit(&session, &id, &[id], 100.0).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    // Counted once.
    let dev = server.admin_api().await.device(&a.device).await.unwrap();
    let v = serde_json::to_value(&dev).unwrap();
    assert_eq!(v["bytes_stored"], serde_json::json!(1 << 20), "{v}");
}

/// Flip the byte at `at` of `file`.
fn flip(file: &std::path::Path, at: u64) {
    use std::io::Read;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0x55]).unwrap();
}

#[tokio::test]
async fn the_scrub_finds_corrupt_and_missing_blocks_packed_or_not_and_uploads_heal_them() {
    let server = TestServer::start(Opts::default().env("COFFER__SCRUB__INTERVAL", "1h")).await;
    let a = server.enroll("acme", "ann", "ann-laptop").await;
    let (big, gone, small) = (
        block_bytes(41, 1 << 20),
        block_bytes(42, 1 << 20),
        block_bytes(43, 16 << 10),
    );
    for b in [&big, &gone, &small] {
        assert_eq!(a.put(b).await.status, 201);
    }
    let file_of = |b: &[u8]| server.block_file(&a.archive, &BlockId::of(b));
    flip(&file_of(&big), 12_345);
    std::fs::remove_file(file_of(&gone)).unwrap();
    // The small block is the only record of its pack: flip a byte of its
    // bytes, past the pack's and the record's headers.
    let packs = server.data_dir.join("blocks/packs").join(&a.archive);
    let pack = std::fs::read_dir(&packs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| std::fs::metadata(p).unwrap().len() > 16 << 10)
        .expect("a pack file holds the small block");
    let len = std::fs::metadata(&pack).unwrap().len();
    flip(&pack, len - 100);

    let kicked = coffer_types::UnixMillis::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64,
    );
    let out = cli_ok(&server.cli(&["scrub", "run", "--json"]));
    assert!(out.contains("bytes_per_sec"), "{out}");
    let status = loop {
        let s: serde_json::Value =
            serde_json::from_str(&cli_ok(&server.cli(&["scrub", "status", "--json"]))).unwrap();
        if s["running"] == false && s["last_finished"].as_u64().is_some_and(|t| t >= kicked) {
            break s;
        }
        assert!(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64
                - kicked
                < 30_000,
            "no scrub pass finished: {s}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    let hex = |b: &[u8]| serde_json::json!(BlockId::of(b).to_hex());
    let archive = &status["archives"][0];
    assert_eq!(archive["archive"], serde_json::json!(a.archive), "{status}");
    let mut corrupt = archive["corrupt"].as_array().unwrap().clone();
    corrupt.sort_by_key(|v| v.to_string());
    let mut want = vec![hex(&big), hex(&small)];
    want.sort_by_key(|v| v.to_string());
    assert_eq!(corrupt, want, "{status}");
    assert_eq!(
        archive["missing"],
        serde_json::json!([hex(&gone)]),
        "{status}"
    );
    let text = cli_ok(&server.cli(&["scrub", "status"]));
    assert!(
        text.contains("missing") && text.contains("corrupt"),
        "{text}"
    );
    let m = server.api().await.metrics().await.unwrap();
    assert!(m.contains("coffer_scrub_damaged_blocks 3"), "{m}");

    // The device is told, and its uploads heal all three.
    let r = a
        .client
        .post_json(
            &coffer_client::paths::blocks_missing(&a.archive),
            &serde_json::json!({"ids": [BlockId::of(&big), BlockId::of(&gone), BlockId::of(&small)]}),
        )
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["missing"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    for b in [&big, &gone, &small] {
        assert_eq!(a.put(b).await.status, 201);
        let r = a.get(&BlockId::of(b)).await;
        assert!(r.status == 200 && r.body == *b);
    }
    let s: serde_json::Value =
        serde_json::from_str(&cli_ok(&server.cli(&["scrub", "status", "--json"]))).unwrap();
    assert_eq!(s["archives"], serde_json::json!([]), "{s}");
}

#[tokio::test]
async fn a_corrupt_pack_header_is_recorded_and_its_backups_are_marked_damaged_until_healed() {
    let server = TestServer::h2c().await;
    let a = server.enroll("acme", "ann", "ann-laptop").await;
    let (small, big) = (block_bytes(51, 16 << 10), block_bytes(52, 1 << 20));
    let (sid, bid) = (BlockId::of(&small), BlockId::of(&big));
    let session = a.open_session().await;
    for b in [&small, &big] {
        assert_eq!(a.put_in(&session, b).await.status, 201);
    }
    let r = a.commit(&session, &bid, &[bid, sid], 100.0).await;
    assert_eq!(r.status, 201);
    let backup = r.json::<serde_json::Value>().unwrap()["backup"].clone();

    // Rot in the record header: the id it names is no longer the block's.
    let packs = server.data_dir.join("blocks/packs").join(&a.archive);
    let pack = std::fs::read_dir(&packs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let bytes = std::fs::read(&pack).unwrap();
    let at = bytes
        .windows(32)
        .position(|w| w == sid.as_bytes())
        .expect("the record header names the block");
    flip(&pack, at as u64 + 7);

    // Not a silent 404: 500 corrupt_block, with what happens next.
    let r = a.get(&sid).await;
    assert_refused(
        &r,
        500,
        "corrupt_block",
        "uploads it again at its next backup",
    );
    // Recorded: its device is asked for it, and the backup is damaged.
    let r = a
        .client
        .post_json(
            &coffer_client::paths::blocks_missing(&a.archive),
            &serde_json::json!({"ids": [sid, bid]}),
        )
        .await
        .unwrap();
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["missing"],
        serde_json::json!([sid.to_hex()])
    );
    let damaged = |server: &TestServer| {
        let out = cli_ok(&server.cli(&["device", "list", "--json"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let d = &v["devices"][0];
        (d["damaged_blocks"].as_u64(), d["damaged_backups"].as_u64())
    };
    assert_eq!(damaged(&server), (Some(1), Some(1)));
    assert!(cli_ok(&server.cli(&["device", "list"])).contains("damaged (1 backups, 1 blocks)"));
    let list: serde_json::Value = a
        .client
        .get(&coffer_client::paths::backups(&a.archive))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(list["backups"][0]["backup"], backup);
    assert_eq!(list["backups"][0]["damaged_blocks"], 1, "{list}");

    // The device's upload heals it, and the marks go.
    assert_eq!(a.put(&small).await.status, 201);
    let r = a.get(&sid).await;
    assert!(r.status == 200 && r.body == small);
    assert_eq!(damaged(&server), (Some(0), Some(0)));
    let one: serde_json::Value = a
        .client
        .get(&coffer_client::paths::backup(
            &a.archive,
            backup.as_str().unwrap(),
        ))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(one["damaged_blocks"], 0, "{one}");
}
