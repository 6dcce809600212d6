//! The conformance suite every backend passes: run by this crate's unit tests
//! against disk and memory, and by the integration tests against a real
//! S3-compatible server. It panics with a message naming the failed check.

use bytes::Bytes;
use coffer_types::BlockId;

use crate::{BlockStore, Location, Published, PutOutcome, StorageError};

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
) -> (BlockId, Published) {
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
    let published = w.publish(id).await.expect("publish");
    (id, published)
}

async fn read_range(
    store: &BlockStore,
    archive: &str,
    id: &BlockId,
    at: Location,
    r: std::ops::Range<u64>,
) -> Vec<u8> {
    use futures::StreamExt;
    let mut out = Vec::new();
    let mut s = store.get(archive, id, at, Some(r)).await.unwrap();
    while let Some(c) = s.next().await {
        out.extend_from_slice(&c.unwrap());
    }
    out
}

/// Run every check against `store`. `archive` must be unused in the store.
/// Covers both blocks stored as their own object and, where the backend
/// packs small blocks, packed ones.
pub async fn run(store: &BlockStore, archive: &str) {
    let mut stored = Vec::new();
    for (seed, len, chunk) in [
        (1u64, 100_000usize, 7_000usize),
        (4, 700_000, 65_536),
        (5, 3_000, 1_000),
        // Larger than a disk read piece (4 MiB): read back in several.
        (6, 9_000_000, 1 << 20),
    ] {
        let body = block_bytes(seed, len);
        let (id, p) = put(store, archive, &body, chunk).await;
        assert_eq!(p.outcome, PutOutcome::Created, "first put creates");
        assert_eq!(
            store.head(archive, &id, p.location).await.unwrap(),
            Some(len as u64),
            "head size"
        );
        assert_eq!(
            store.read(archive, &id, p.location).await.unwrap(),
            body,
            "read back"
        );
        assert_eq!(
            read_range(store, archive, &id, p.location, 1000..2500).await,
            &body[1000..2500],
            "ranged read"
        );
        if len > 5 << 20 {
            let r = (4 << 20) - 500..(4 << 20) + 500;
            assert_eq!(
                read_range(
                    store,
                    archive,
                    &id,
                    p.location,
                    r.start as u64..r.end as u64
                )
                .await,
                &body[r],
                "ranged read across pieces"
            );
        }
        // A second put of the same block is harmless: either reported
        // present, or stored again, and both copies read back.
        let (_, again) = put(store, archive, &body, 65_536).await;
        assert_eq!(
            store.read(archive, &id, again.location).await.unwrap(),
            body,
            "re-put reads back"
        );
        stored.push((id, p.location));
    }

    // empty block
    let (empty, p) = put(store, archive, b"", 1).await;
    assert_eq!(
        store.read(archive, &empty, p.location).await.unwrap().len(),
        0,
        "empty block"
    );

    // a block larger than an S3 part goes through multipart
    let big = block_bytes(2, (9 << 20) + 123);
    let (big_id, p) = put(store, archive, &big, 256 << 10).await;
    assert_eq!(p.outcome, PutOutcome::Created);
    assert_eq!(p.location, Location::Object, "large blocks are objects");
    assert_eq!(
        store.read(archive, &big_id, p.location).await.unwrap(),
        big,
        "large block read back"
    );

    // an abandoned write leaves nothing visible
    let orphan = block_bytes(3, 600_000);
    {
        let mut w = store.begin(archive, &BlockId::of(&orphan), None).unwrap();
        w.write(Bytes::from(orphan.clone())).await.unwrap();
        assert_eq!(w.finish().await.unwrap(), BlockId::of(&orphan));
        drop(w);
    }
    assert_eq!(
        store
            .head(archive, &BlockId::of(&orphan), Location::Object)
            .await
            .unwrap(),
        None,
        "dropped write is invisible"
    );

    // absent block
    let absent = BlockId::of(b"never stored");
    assert!(
        matches!(store.get(archive, &absent, Location::Object, None).await, Err(StorageError::NotFound { id }) if id == absent),
        "absent block reads as not found"
    );

    // several blocks at once, in the order asked, the absent one as None
    let mut asked: Vec<(BlockId, Location)> = stored.clone();
    asked.insert(1, (absent, Location::Object));
    asked.push(stored[0]);
    let got = store.read_many(archive, asked.clone()).await.unwrap();
    assert_eq!(got.len(), asked.len());
    for ((id, at), got) in asked.iter().zip(got) {
        if *id == absent {
            assert_eq!(got, None, "an absent block reads as None");
        } else {
            let want = store.read(archive, id, *at).await.unwrap();
            assert_eq!(got, Some(want), "read_many of {id}");
        }
    }

    // concurrent puts, small and large
    let mut tasks = Vec::new();
    for i in 0..16u64 {
        let store = store.clone();
        let archive = archive.to_owned();
        tasks.push(tokio::spawn(async move {
            let b = block_bytes(100 + i, if i % 2 == 0 { 70_000 } else { 300_000 });
            let (id, p) = put(&store, &archive, &b, 16_384).await;
            assert_eq!(
                store.read(&archive, &id, p.location).await.unwrap(),
                b,
                "concurrent put reads back"
            );
            id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }

    // list sees every block (a re-put may list twice), nothing of another archive
    let listed = store.list(archive).await.unwrap();
    for id in stored
        .iter()
        .map(|(id, _)| id)
        .chain(&ids)
        .chain([&empty, &big_id])
    {
        assert!(listed.iter().any(|(l, _, _)| l == id), "list misses {id}");
    }
    assert!(
        !listed.iter().any(|(l, _, _)| *l == BlockId::of(&orphan)),
        "list shows an abandoned write"
    );
    assert!(
        store.list(&format!("{archive}x")).await.unwrap().is_empty(),
        "list is per archive"
    );

    // delete: per block; an object block is gone, one never stored and a
    // packed one (its bytes go with its pack) are fine, and so is deleting
    // again
    let never = BlockId::of(b"never stored");
    let batch = [
        (big_id, Location::Object),
        (never, Location::Object),
        (never, Location::Packed { pack: 1, offset: 0 }),
    ];
    for r in store.delete(archive, &batch).await {
        r.unwrap();
    }
    assert_eq!(
        store
            .head(archive, &big_id, Location::Object)
            .await
            .unwrap(),
        None,
        "deleted"
    );
    let again = store.delete(archive, &batch[..1]).await;
    assert_eq!(again.len(), 1);
    again.into_iter().for_each(|r| r.unwrap());

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
    async fn disk_backend_without_packing_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StorageConfig {
            pack_max_block_bytes: 0,
            ..config(Backend::Disk)
        };
        let store = BlockStore::open(&cfg, dir.path()).unwrap();
        run(&store, "ar_nopack").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn small_blocks_are_packed_and_large_ones_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlockStore::open(&config(Backend::Disk), dir.path()).unwrap();
        let (_, small) = put(&store, "ar", &block_bytes(1, 64 << 10), 16 << 10).await;
        let (_, edge) = put(&store, "ar", &block_bytes(2, 128 << 10), 16 << 10).await;
        let (_, large) = put(&store, "ar", &block_bytes(3, (128 << 10) + 1), 16 << 10).await;
        assert!(matches!(small.location, Location::Packed { .. }));
        assert!(matches!(edge.location, Location::Packed { .. }));
        assert_eq!(large.location, Location::Object);
        // Two small blocks share one pack, one after the other.
        match (small.location, edge.location) {
            (Location::Packed { pack: a, offset: x }, Location::Packed { pack: b, offset: y }) => {
                assert_eq!(a, b);
                assert_eq!(y, x + crate::pack::HEADER + (64 << 10));
            }
            _ => unreachable!(),
        }
        // A reopened store starts a new pack and still reads the old one.
        drop(store);
        let store = BlockStore::open(&config(Backend::Disk), dir.path()).unwrap();
        let (_, next) = put(&store, "ar", &block_bytes(4, 1000), 1000).await;
        assert_ne!(pack_of(next.location), pack_of(small.location));
        assert_eq!(
            store
                .read(
                    "ar",
                    &BlockId::of(&block_bytes(1, 64 << 10)),
                    small.location
                )
                .await
                .unwrap(),
            block_bytes(1, 64 << 10)
        );
    }

    fn pack_of(l: Location) -> u64 {
        match l {
            Location::Packed { pack, .. } => pack,
            Location::Object => panic!("not packed"),
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
