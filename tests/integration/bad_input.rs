//! Bad input gets a clear error — right status, machine-readable code, a
//! sentence — and loses nothing already acknowledged.

use bytes::Bytes;
use coffer_client::paths;
use coffer_types::wire::ErrorBody;
use coffer_types::BlockId;
use futures::StreamExt;
use serde_json::json;

use crate::harness::*;

fn assert_error(r: &coffer_http::client::ClientResponse, status: u16, want: &str) {
    assert_eq!(r.status, status, "{r:?}");
    let e: ErrorBody =
        serde_json::from_slice(&r.body).unwrap_or_else(|_| panic!("JSON error body: {r:?}"));
    assert_eq!(e.error.code.as_str(), want);
    assert!(
        e.error.message.len() > 10,
        "a sentence: {:?}",
        e.error.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_uploads_say_why_and_store_nothing() {
    let server =
        TestServer::start(Opts::default().env("COFFER__LIMITS__MAX_BLOCK_BYTES", 1 << 20)).await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let kept = block_bytes(1, 1000);
    assert_eq!(agent.put(&kept).await.status, 201);

    // Digest mismatch.
    let body = block_bytes(2, 5000);
    let wrong = BlockId::of(b"something else");
    let r = agent
        .client
        .put(
            &paths::block(&agent.archive, &wrong.to_string()),
            Bytes::from(body),
        )
        .await
        .unwrap();
    assert_error(&r, 400, "digest_mismatch");
    assert_eq!(agent.get(&wrong).await.status, 404);

    // Malformed ids.
    for bad in ["abc", &"A".repeat(64), &"g".repeat(64)] {
        let r = agent
            .client
            .put(&paths::block(&agent.archive, bad), Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_error(&r, 400, "invalid_id");
    }

    // Over the size limit, announced by Content-Length: refused up front.
    let big = block_bytes(3, (1 << 20) + 1);
    let r = agent.put(&big).await;
    assert_error(&r, 413, "block_too_large");
    // Over the limit without a Content-Length: refused while streaming.
    let id = BlockId::of(&big);
    let chunks: Vec<Result<Bytes, std::io::Error>> = big
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let r = agent
        .client
        .send_stream(
            http::Method::PUT,
            &paths::block(&agent.archive, &id.to_string()),
            &[],
            None,
            futures::stream::iter(chunks).boxed(),
        )
        .await
        .unwrap();
    assert_error(&r, 413, "block_too_large");
    assert_eq!(agent.get(&id).await.status, 404);

    // Bad JSON, unknown fields, wrong content type.
    let r = agent
        .client
        .send(
            http::Method::POST,
            &paths::blocks_missing(&agent.archive),
            &[("content-type", "application/json")],
            Bytes::from_static(b"{nope"),
        )
        .await
        .unwrap();
    assert_error(&r, 400, "invalid_request");
    let r = agent
        .client
        .post_json(
            &paths::blocks_missing(&agent.archive),
            &json!({"ids": [], "extra": 1}),
        )
        .await
        .unwrap();
    assert_error(&r, 400, "invalid_request");
    let r = agent
        .client
        .post_json(
            &paths::blocks_missing(&agent.archive),
            &json!({"ids": ["xyz"]}),
        )
        .await
        .unwrap();
    assert_error(&r, 400, "invalid_request");
    let sid = agent.open_session().await;
    let r = agent
        .client
        .post_json(
            &paths::session_progress(&agent.archive, &sid.to_string()),
            &json!({"percent": 140}),
        )
        .await
        .unwrap();
    assert_error(&r, 400, "invalid_request");
    let r = agent
        .client
        .post_json(
            &paths::session_commit(&agent.archive, "se_nope"),
            &json!({"manifest": BlockId::of(&kept), "blocks": []}),
        )
        .await
        .unwrap();
    assert_error(&r, 404, "not_found");
    let r = agent.client.get("/v1/no/such/thing").await.unwrap();
    assert_error(&r, 404, "not_found");

    // What was acknowledged is still there.
    let r = agent.get(&BlockId::of(&kept)).await;
    assert_eq!((r.status, &r.body[..]), (200, &kept[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_checked_revoked_and_rotated() {
    let server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let plain = server.client().await;
    let r = plain.get(&paths::backups(&agent.archive)).await.unwrap();
    assert_error(&r, 401, "unauthorized");
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    let forged = plain
        .clone()
        .with_token("cfd_0000000000000000000000000000000000000000000000000000000000000000");
    assert_error(
        &forged.get(&paths::backups(&agent.archive)).await.unwrap(),
        401,
        "unauthorized",
    );
    // A device token is not an admin token, and the reverse.
    assert_error(
        &agent.client.get(&paths::devices()).await.unwrap(),
        401,
        "unauthorized",
    );
    let admin = server.admin().await;
    assert_error(
        &admin.get(&paths::backups(&agent.archive)).await.unwrap(),
        401,
        "unauthorized",
    );

    // Rotate: the old token stops working, the new one works.
    let r = admin
        .post_json(&paths::device_rotate(&agent.device), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let new: coffer_types::wire::DeviceToken = r.json().unwrap();
    assert_error(
        &agent
            .client
            .get(&paths::backups(&agent.archive))
            .await
            .unwrap(),
        401,
        "unauthorized",
    );
    let rotated = server.client().await.with_token(&new.token);
    assert_eq!(
        rotated
            .get(&paths::backups(&agent.archive))
            .await
            .unwrap()
            .status,
        200
    );
    // Revoke: nothing works, the device is listed as revoked.
    let r = admin
        .post_json(&paths::device_revoke(&agent.device), &json!({}))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_error(
        &rotated.get(&paths::backups(&agent.archive)).await.unwrap(),
        401,
        "unauthorized",
    );
    let d: coffer_types::wire::DeviceInfo = admin
        .get(&paths::device(&agent.device))
        .await
        .unwrap()
        .json()
        .unwrap();
    assert!(d.revoked);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_507_and_keeps_serving_reads() {
    let mut server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let kept = block_bytes(1, 70_000);
    assert_eq!(agent.put(&kept).await.status, 201);
    // Restart with a free-space reserve larger than any disk: every new block
    // is refused exactly as when the disk is full.
    server.set_env("COFFER__STORAGE__RESERVE_BYTES", u64::MAX / 4);
    server.restart();
    let agent = agent.reconnect(&server).await;
    let r = agent.put(&block_bytes(2, 70_000)).await;
    assert_error(&r, 507, "storage_full");
    assert_eq!(r.headers["retry-after"], "60");
    assert!(r.error().unwrap().error.retryable);
    // Reads keep working, and so does metadata-only work.
    let r = agent.get(&BlockId::of(&kept)).await;
    assert_eq!((r.status, &r.body[..]), (200, &kept[..]));
    assert_eq!(agent.put(&kept).await.status, 200);
    let sid = agent.open_session().await;
    assert_eq!(
        agent
            .commit(&sid, &BlockId::of(&kept), &[], 100.0)
            .await
            .status,
        201
    );
}
