//! The conformance suite every backend passes: run by this crate's unit tests
//! against disk and memory, and by the integration tests against a real
//! S3-compatible server. It panics with a message naming the failed check.

use bytes::Bytes;
use coffer_types::BlockId;

use crate::{BlockStore, PutOutcome, StorageError};

/// Deterministic pseudo-random bytes (xorshift), distinct per `seed`.
pub fn block_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Write `body` as a block through the streaming path, in chunks of `chunk`.
pub async fn put(
    store: &BlockStore,
    archive: &str,
    body: &[u8],
    chunk: usize,
) -> (BlockId, PutOutcome) {
    let mut w = store
        .begin(archive, &BlockId::of(body), Some(body.len() as u64))
        .expect("begin write");
    for c in body.chunks(chunk.max(1)) {
        w.write(Bytes::copy_from_slice(c))
            .await
            .expect("write chunk");
    }
    let id = w.finish().await.expect("finish");
    assert_eq!(
        id,
        BlockId::of(body),
        "streamed hash differs from blake3 of the body"
    );
    let outcome = w.publish(id).await.expect("publish");
    (id, outcome)
}

/// Run every check against `store`. `archive` must be unused in the store.
pub async fn run(store: &BlockStore, archive: &str) {
    // put, head, get
    let body = block_bytes(1, 100_000);
    let (id, outcome) = put(store, archive, &body, 7_000).await;
    assert_eq!(outcome, PutOutcome::Created, "first put creates");
    assert_eq!(
        store.head(archive, &id).await.unwrap(),
        Some(body.len() as u64),
        "head size"
    );
    assert_eq!(store.read(archive, &id).await.unwrap(), body, "read back");

    // idempotent put of the same block
    let (_, again) = put(store, archive, &body, 65_536).await;
    assert_eq!(
        again,
        PutOutcome::Present,
        "second put of the same block reports present"
    );

    // ranged get
    let mut parts = Vec::new();
    let mut s = store.get(archive, &id, Some(1000..2500)).await.unwrap();
    use futures::StreamExt;
    while let Some(c) = s.next().await {
        parts.extend_from_slice(&c.unwrap());
    }
    assert_eq!(parts, &body[1000..2500], "ranged read");

    // empty block
    let (empty, _) = put(store, archive, b"", 1).await;
    assert_eq!(
        store.read(archive, &empty).await.unwrap().len(),
        0,
        "empty block"
    );

    // a block larger than an S3 part goes through multipart
    let big = block_bytes(2, (9 << 20) + 123);
    let (big_id, o) = put(store, archive, &big, 256 << 10).await;
    assert_eq!(o, PutOutcome::Created);
    assert_eq!(
        store.read(archive, &big_id).await.unwrap(),
        big,
        "large block read back"
    );

    // an abandoned write leaves nothing visible
    // Large enough to reach the spool file, not only memory.
    let orphan = block_bytes(3, 600_000);
    {
        let mut w = store.begin(archive, &BlockId::of(&orphan), None).unwrap();
        w.write(Bytes::from(orphan.clone())).await.unwrap();
        assert_eq!(w.finish().await.unwrap(), BlockId::of(&orphan));
        drop(w);
    }
    assert_eq!(
        store.head(archive, &BlockId::of(&orphan)).await.unwrap(),
        None,
        "dropped write is invisible"
    );

    // absent block
    let absent = BlockId::of(b"never stored");
    assert!(
        matches!(store.get(archive, &absent, None).await, Err(StorageError::NotFound { id }) if id == absent),
        "absent block reads as not found"
    );

    // concurrent puts
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let store = store.clone();
        let archive = archive.to_owned();
        tasks.push(tokio::spawn(async move {
            let b = block_bytes(100 + i, 70_000);
            put(&store, &archive, &b, 16_384).await.0
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }

    // list sees everything, and nothing of another archive
    let listed = store.list(archive).await.unwrap();
    assert_eq!(
        listed.len(),
        3 + 16,
        "list shows every block of the archive: {listed:?}"
    );
    assert!(
        store.list(&format!("{archive}x")).await.unwrap().is_empty(),
        "list is per archive"
    );

    // delete, then absent; deleting again is fine
    store.delete(archive, &id).await.unwrap();
    assert_eq!(store.head(archive, &id).await.unwrap(), None, "deleted");
    store.delete(archive, &id).await.unwrap();

    store.check().await.expect("readiness check");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backend, StorageConfig};

    fn config(backend: Backend) -> StorageConfig {
        StorageConfig {
            backend,
            reserve_bytes: 0,
            ..Default::default()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn disk_backend_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(&config(Backend::Disk), dir.path()).unwrap();
        run(&store, "ar_disk").await;
        // No spool file is left anywhere.
        let mut dirs = vec![dir.path().to_path_buf()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    dirs.push(e.path());
                } else {
                    let name = e.file_name().to_string_lossy().into_owned();
                    assert!(!name.ends_with(".part"), "left over: {:?}", e.path());
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_backend_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(&config(Backend::Memory), dir.path()).unwrap();
        run(&store, "ar_mem").await;
    }

    #[tokio::test]
    async fn a_reserve_larger_than_the_disk_refuses_writes() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StorageConfig {
            reserve_bytes: u64::MAX / 2,
            ..config(Backend::Disk)
        };
        let store = BlockStore::open(&cfg, dir.path()).unwrap();
        assert!(matches!(
            store.begin("ar", &BlockId::of(b"x"), None),
            Err(StorageError::Full { .. })
        ));
    }

    #[test]
    fn bad_configs_name_the_key() {
        let s3 = StorageConfig {
            backend: Backend::S3,
            ..Default::default()
        };
        assert!(s3.validate().unwrap_err().contains("[storage.s3]"));
        let cfg: StorageConfig = toml_like();
        assert!(cfg.validate().unwrap_err().contains("allow_http"));
    }

    fn toml_like() -> StorageConfig {
        StorageConfig {
            backend: Backend::S3,
            s3: Some(crate::S3Config {
                bucket: "b".into(),
                endpoint: Some("http://127.0.0.1:1".into()),
                region: "us-east-1".into(),
                access_key_id: None,
                secret_access_key: None,
                path_style: true,
                allow_http: false,
                prefix: None,
                max_retries: 0,
                retry_timeout_secs: 1,
                request_timeout_secs: 1,
                part_size: 8 << 20,
                max_concurrent_uploads: 1,
            }),
            ..Default::default()
        }
    }
}
