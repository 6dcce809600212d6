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
    let file = server
        .data_dir
        .join("blocks/archives")
        .join(&a.archive)
        .join(&hex[..2])
        .join(&hex);
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
