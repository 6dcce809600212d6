//! The S3 backend against a real S3-compatible server (s3s-fs on loopback):
//! the storage conformance suite, a full backup through the server, and what
//! happens when S3 goes away.

use coffer_client::paths;
use coffer_types::BlockId;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_backend_passes_the_conformance_suite() {
    let s3 = S3Server::start();
    let spool = tempfile::tempdir().unwrap();
    let store = coffer_storage::BlockStore::open(&s3.storage_config(), spool.path()).unwrap();
    coffer_storage::conformance::run(&store, "ar_s3conf").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_through_the_server_lands_in_s3_and_an_outage_answers_503() {
    let mut s3 = S3Server::start();
    let server = TestServer::start(s3.server_env(Opts::default())).await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let blocks: Vec<Vec<u8>> = (0..8)
        .map(|i| block_bytes(i, 200_000 + i as usize))
        .collect();
    let big = block_bytes(99, 12 << 20); // above the 8 MiB part size: multipart
    let sid = agent.open_session().await;
    let mut ids = Vec::new();
    for b in blocks.iter().chain(std::iter::once(&big)) {
        let r = agent.put_in(&sid, b).await;
        assert_eq!(r.status, 201, "{r:?}");
        ids.push(BlockId::of(b));
    }
    assert_eq!(agent.commit(&sid, &ids[0], &ids, 100.0).await.status, 201);
    for (id, b) in ids.iter().zip(blocks.iter().chain(std::iter::once(&big))) {
        let r = agent.get(id).await;
        assert_eq!(r.status, 200);
        assert_eq!(&r.body[..], &b[..]);
    }
    assert_eq!(
        server
            .client()
            .await
            .get(&paths::readyz())
            .await
            .unwrap()
            .status,
        200
    );

    // S3 goes away: uploads get 503 with a retry hint, readiness fails,
    // liveness does not.
    s3.stop();
    let r = agent.put(&block_bytes(1234, 1000)).await;
    assert_eq!(
        (r.status, code(&r).as_str()),
        (503, "storage_unavailable"),
        "{r:?}"
    );
    assert_eq!(r.headers["retry-after"], "5");
    assert!(r.error().unwrap().error.retryable);
    let c = server.client().await;
    let ready = c.get(&paths::readyz()).await.unwrap();
    assert_eq!(
        (ready.status, code(&ready).as_str()),
        (503, "storage_unavailable")
    );
    assert_eq!(c.get(&paths::healthz()).await.unwrap().status, 200);
    // Metadata still answers: the committed backup is listed.
    assert_eq!(
        agent
            .client
            .get(&paths::backups(&agent.archive))
            .await
            .unwrap()
            .status,
        200
    );
}
