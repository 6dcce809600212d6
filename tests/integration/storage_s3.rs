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

/// Multipart uploads in progress on the S3 server (s3s-fs keeps one
/// `.upload-<id>.json` per upload, and its parts, in its root).
fn uploads_in_progress(s3: &S3Server) -> usize {
    std::fs::read_dir(s3.root())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with(".upload")
        })
        .count()
}

async fn wait_until(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_uploads_are_aborted_when_cancelled_or_when_complete_fails() {
    let s3 = S3Server::start();
    let spool = tempfile::tempdir().unwrap();
    let store = coffer_storage::BlockStore::open(&s3.storage_config(), spool.path()).unwrap();
    let upload = |seed: u64| {
        let store = store.clone();
        async move {
            let body = block_bytes(seed, 40 << 20); // five 8 MiB parts
            let id = BlockId::of(&body);
            let mut w = store.begin("ar_multi", &id, None)?;
            w.write(body.into()).await?;
            w.finish().await?;
            w.publish(id).await
        }
    };

    // Cancelled: the publish is dropped once the first part is on the server,
    // as a request's handler is when its client goes away.
    let task = tokio::spawn(upload(1));
    wait_until("a first part on the S3 server", 30, || {
        std::fs::read_dir(s3.root())
            .unwrap()
            .any(|e| e.unwrap().file_name().to_string_lossy().contains(".part-"))
    })
    .await;
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    wait_until("the cancelled upload aborted", 10, || {
        uploads_in_progress(&s3) == 0
    })
    .await;

    // A failed complete: once the upload is under way, the object's place is
    // taken by a directory, so the S3 server cannot write it; the parts are
    // aborted, and nothing is visible.
    let id = BlockId::of(&block_bytes(2, 40 << 20));
    let hex = id.to_hex();
    let key = format!("conformance/archives/ar_multi/{}/{hex}", &hex[..2]);
    let object = s3.root().join(&s3.bucket).join(&key);
    let task = tokio::spawn(upload(2));
    wait_until("a first part of the second upload", 30, || {
        uploads_in_progress(&s3) > 0
    })
    .await;
    std::fs::create_dir_all(object.join("in-the-way")).unwrap();
    let e = task.await.unwrap().unwrap_err();
    assert!(e.to_string().contains("complete multipart"), "{e}");
    assert_eq!(
        uploads_in_progress(&s3),
        0,
        "a failed complete left its parts behind"
    );
}
