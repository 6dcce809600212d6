//! Operations: health and readiness probes, metrics, request ids, JSON logs,
//! graceful shutdown.

use coffer_client::paths;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coffer_types::BlockId;

use coffer_http::client::ClientResponse;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_metrics_and_request_ids() {
    let server = TestServer::h2c().await;
    let c = server.client().await;
    let r = c.get(&paths::healthz()).await.unwrap();
    assert_eq!(r.status, 200);
    let r = c.get(&paths::readyz()).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(!r.headers["x-request-id"].is_empty());

    let agent = server.enroll("acme", "ann", "laptop").await;
    let b = block_bytes(1, 300_000);
    assert_eq!(agent.put(&b).await.status, 201);
    assert_eq!(agent.put(&b).await.status, 200);
    let _ = agent
        .client
        .put(
            &paths::block(&agent.archive, &BlockId::of(b"x").to_string()),
            Bytes::from_static(b"y"),
        )
        .await
        .unwrap();
    let r1 = agent.get(&BlockId::of(&b)).await;
    let r2 = agent.get(&BlockId::of(&b)).await;
    assert_ne!(
        r1.headers["x-request-id"], r2.headers["x-request-id"],
        "request ids are unique"
    );

    let text = String::from_utf8(c.get(&paths::metrics()).await.unwrap().body.to_vec()).unwrap();
    for want in [
        "coffer_blocks_stored_total 1",
        "coffer_blocks_already_present_total 1",
        "coffer_http_requests_total{route=\"put_block\",status=\"201\"} 1",
        "coffer_http_requests_total{route=\"put_block\",status=\"400\"} 1",
        "coffer_errors_total{code=\"digest_mismatch\"} 1",
        "coffer_block_upload_seconds_count 2",
        "coffer_bytes_in_total",
        "coffer_bytes_out_total",
    ] {
        assert!(text.contains(want), "metrics lack {want:?}:\n{text}");
    }
    let bytes_in: u64 = text
        .lines()
        .find(|l| l.starts_with("coffer_bytes_in_total"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        bytes_in >= 600_001,
        "bytes in counts upload bodies: {bytes_in}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id() {
    let server = TestServer::start(
        Opts::default()
            .env("COFFER__LOG__FORMAT", "json")
            .env("COFFER__LOG__LEVEL", "debug"),
    )
    .await;
    let c = server.client().await;
    let r = c.get(&paths::backups("ar_x")).await.unwrap();
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let log = server.log_text();
    let mut found = false;
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        if v.to_string().contains(&id) {
            found = true;
        }
    }
    assert!(found, "no log line names request {id}:\n{log}");
}

type Upload = tokio::task::JoinHandle<Result<ClientResponse, coffer_http::client::ClientError>>;

/// Start uploading block `id` (of `len` bytes) with a body the test feeds by
/// hand through the returned sender, to keep the upload in flight.
fn paced_upload(
    agent: &Agent,
    id: BlockId,
    len: u64,
) -> (tokio::sync::mpsc::Sender<Bytes>, Upload) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let body = futures::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|b| (Ok(b), rx)) },
    );
    let agent = agent.clone();
    let upload = tokio::spawn(async move {
        let path = paths::block(&agent.archive, &id.to_string());
        agent
            .client
            .send_stream(http::Method::PUT, &path, &[], Some(len), body)
            .await
    });
    (tx, upload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_uploads_finish_then_stops() {
    let mut server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let block = block_bytes(9, 4 << 20);
    let id = BlockId::of(&block);
    let (tx, upload) = paced_upload(&agent, id, 4 << 20);
    tx.send(Bytes::copy_from_slice(&block[..1 << 20]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.sigterm();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // No new connections once shutdown began.
    assert!(
        coffer_http::client::Client::connect(&server.url, &server.client_tls())
            .await
            .is_err()
    );
    for c in block[1 << 20..].chunks(1 << 20) {
        tx.send(Bytes::copy_from_slice(c)).await.unwrap();
    }
    drop(tx);
    let r = upload.await.unwrap().unwrap();
    assert_eq!(r.status, 201, "the in-flight upload completes: {r:?}");
    let st = server.wait_exit(Duration::from_secs(20));
    assert!(st.success(), "clean exit: {st:?}");
    server.restart();
    let agent = agent.reconnect(&server).await;
    assert_eq!(BlockId::of(&agent.get(&id).await.body), id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_does_not_hold_shutdown_past_the_grace_period() {
    let mut server =
        TestServer::start(Opts::default().env("COFFER__HTTP__SHUTDOWN_GRACE_SECS", 1)).await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let block = block_bytes(5, 1 << 20);
    let id = BlockId::of(&block);
    let (tx, upload) = paced_upload(&agent, id, 1 << 20);
    tx.send(Bytes::copy_from_slice(&block[..1000]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    server.sigterm();
    let st = server.wait_exit(Duration::from_secs(15));
    assert!(st.success());
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    // The upload never got a 2xx, and the block is not there.
    let r = upload.await.unwrap();
    assert!(r.map(|r| r.status >= 400).unwrap_or(true));
    drop(tx);
    server.restart();
    assert_eq!(agent.reconnect(&server).await.get(&id).await.status, 404);
}
