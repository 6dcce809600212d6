//! The reference agent against the real server: round trip of an awkward
//! tree, incremental runs, wrong passphrases, corruption on the server's
//! disk, and hostile manifests. (The binary itself, killed mid-backup, is in
//! `agent_cli`.)

use coffer_client::paths;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use coffer_agent::api::Api;
use coffer_agent::commands::{self, Agent as Device};
use coffer_agent::manifest::{Entry, Kind, Manifest, ManifestRoot, PathRepr, Stats};
use coffer_agent::progress::Progress;
use coffer_agent::restore::RestoreOptions;
use coffer_types::BlockId;

use crate::harness::*;

/// A server with one enrolled device whose agent has run `init`.
async fn setup() -> (TestServer, Api, tempfile::TempDir) {
    let server = TestServer::h2c().await;
    let enrolled = server.enroll("acme", "ann", "laptop").await;
    let api = Api::connect(&server.url, &enrolled.token, None, false)
        .await
        .unwrap();
    assert!(
        commands::init(&api, "correct horse").await.unwrap(),
        "init creates the key"
    );
    assert!(
        !commands::init(&api, "correct horse").await.unwrap(),
        "a second init only checks the passphrase"
    );
    (server, api, tempfile::tempdir().unwrap())
}

async fn device(api: &Api, work: &Path) -> Device {
    Device::open(api.clone(), "correct horse", &work.join("cache"))
        .await
        .unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Every file, dir and symlink under `a` is under `b` with the same bytes,
/// mode, mtime and link target.
pub(crate) fn assert_same_tree(a: &Path, b: &Path) {
    let mut stack = vec![PathBuf::new()];
    let mut n = 0;
    while let Some(rel) = stack.pop() {
        let (pa, pb) = (a.join(&rel), b.join(&rel));
        let (ma, mb) = (
            std::fs::symlink_metadata(&pa).unwrap(),
            std::fs::symlink_metadata(&pb).unwrap_or_else(|e| panic!("{}: {e}", pb.display())),
        );
        assert_eq!(ma.file_type(), mb.file_type(), "{}", rel.display());
        n += 1;
        if ma.file_type().is_symlink() {
            assert_eq!(
                std::fs::read_link(&pa).unwrap(),
                std::fs::read_link(&pb).unwrap()
            );
            continue;
        }
        assert_eq!(
            ma.mode() & 0o7777,
            mb.mode() & 0o7777,
            "mode of {}",
            rel.display()
        );
        assert_eq!(
            (ma.mtime(), ma.mtime_nsec()),
            (mb.mtime(), mb.mtime_nsec()),
            "mtime of {}",
            rel.display()
        );
        if ma.is_dir() {
            for e in std::fs::read_dir(&pa).unwrap() {
                stack.push(rel.join(e.unwrap().file_name()));
            }
        } else {
            assert!(
                std::fs::read(&pa).unwrap() == std::fs::read(&pb).unwrap(),
                "content of {}",
                rel.display()
            );
        }
    }
    assert!(n > 1);
}

/// Restore the latest backup into `target`.
async fn restore_all(
    dev: &Device,
    target: &Path,
) -> (String, coffer_agent::restore::RestoreSummary) {
    restore_with(dev, target, false).await
}

async fn restore_with(
    dev: &Device,
    target: &Path,
    keep_setuid: bool,
) -> (String, coffer_agent::restore::RestoreSummary) {
    let opts = RestoreOptions {
        target: target.to_path_buf(),
        include: None,
        streams: 8,
        keep_setuid,
        include_deleted: false,
    };
    dev.restore(None, &opts, &Progress::quiet()).await.unwrap()
}

pub(crate) fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_awkward_tree_round_trips_and_reruns_upload_nothing() {
    let (_server, api, work) = setup().await;
    let src = work.path().join("src");
    write(&src.join("empty"), b"");
    write(&src.join("big.bin"), &block_bytes(1, 70 << 20));
    let mut deep = src.join("deep");
    for i in 0..30 {
        deep = deep.join(format!("level{i}"));
    }
    write(&deep.join("bottom.txt"), b"at the bottom");
    write(
        &src.join("unicode/ünïcödé ✓ 日本.txt"),
        "ü".repeat(1000).as_bytes(),
    );
    write(&src.join("odd/with space\tand\\back $(x) 'q'"), b"odd");
    write(
        &src.join(std::ffi::OsStr::from_bytes(b"odd/not-utf8-\xff\xfe")),
        b"raw name",
    );
    std::os::unix::fs::symlink("../empty", src.join("odd/link-to-empty")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/target", src.join("dangling")).unwrap();
    std::fs::set_permissions(src.join("empty"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(src.join("odd"), std::fs::Permissions::from_mode(0o750)).unwrap();
    filetime::set_file_mtime(
        src.join("big.bin"),
        filetime::FileTime::from_unix_time(1_500_000_000, 123_456_789),
    )
    .unwrap();

    let dev = device(&api, work.path()).await;
    let first = dev
        .backup(vec![src.clone()], vec![], false, 16, Progress::quiet())
        .await
        .unwrap();
    assert_eq!(first.skipped, 0);
    // Content-defined chunks average 1 MiB: a 70 MiB file makes tens of them.
    assert!(
        (35..=140).contains(&first.blocks_uploaded),
        "chunks of a 70 MiB file: {}",
        first.blocks_uploaded
    );

    let target = work.path().join("restore");
    let (_, r) = restore_all(&dev, &target).await;
    assert!(r.failed.is_empty() && r.refused.is_empty(), "{r:?}");
    assert_same_tree(&src, &restored(&target, &src));

    // Unchanged: nothing read, no data block sent (only the new manifest).
    let second = dev
        .backup(vec![src.clone()], vec![], false, 16, Progress::quiet())
        .await
        .unwrap();
    assert_eq!(second.files_read, 0);
    assert!(
        second.blocks_uploaded <= 2,
        "an unchanged tree sends only manifest blocks: {}",
        second.blocks_uploaded
    );
    let (_, v) = dev.verify(None, 8).await.unwrap();
    assert!(v.bad.is_empty() && v.blocks >= 35, "{v:?}");
}

/// A cache entry naming a block the server does not hold (the cache is
/// older than what the server kept) must not put that block in a backup:
/// the agent asks about every reused chunk and reads such a file again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_chunk_the_server_lacks_is_read_again() {
    let (_server, api, work) = setup().await;
    let src = work.path().join("src");
    write(&src.join("a.txt"), b"kept as it was");
    write(&src.join("b.bin"), &block_bytes(2, 3 << 20));
    let dev = device(&api, work.path()).await;
    dev.backup(vec![src.clone()], vec![], false, 16, Progress::quiet())
        .await
        .unwrap();

    let cache_file = std::fs::read_dir(work.path().join("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("the agent keeps a file cache");
    let mut cache: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache_file).unwrap()).unwrap();
    let never_stored = BlockId::of(b"a block nobody stored");
    let mut pointed = 0;
    for f in cache["files"].as_object_mut().unwrap().values_mut() {
        if f["size"] == 3 << 20 {
            f["chunks"] = serde_json::json!([never_stored]);
            pointed += 1;
        }
    }
    assert_eq!(pointed, 1);
    std::fs::write(&cache_file, serde_json::to_vec(&cache).unwrap()).unwrap();

    let second = dev
        .backup(vec![src.clone()], vec![], false, 16, Progress::quiet())
        .await
        .unwrap();
    assert_eq!(second.files_read, 0, "both files looked unchanged");
    let target = work.path().join("restore");
    let (_, r) = restore_all(&dev, &target).await;
    assert!(r.failed.is_empty(), "{r:?}");
    assert_same_tree(&src, &restored(&target, &src));
    let (_, v) = dev.verify(None, 8).await.unwrap();
    assert!(v.bad.is_empty(), "{v:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_changed_byte_in_100_mib_sends_about_one_chunk() {
    let (_server, api, work) = setup().await;
    let src = work.path().join("src");
    let mut data = block_bytes(7, 100 << 20);
    write(&src.join("disk.img"), &data);
    let dev = device(&api, work.path()).await;
    let first = dev
        .backup(vec![src.clone()], vec![], false, 16, Progress::quiet())
        .await
        .unwrap();
    data[50 << 20] ^= 0xff;
    write(&src.join("disk.img"), &data);
    let second = dev
        .backup(vec![src.clone()], vec![], false, 16, Progress::quiet())
        .await
        .unwrap();
    assert_eq!(second.files_read, 1);
    // One or two chunks around the change, plus the manifest's two blocks.
    assert!(
        second.blocks_uploaded <= 4,
        "uploaded {} blocks after a 1-byte change (first run {})",
        second.blocks_uploaded,
        first.blocks_uploaded
    );
    assert!(
        second.bytes_uploaded < 10 << 20,
        "uploaded {} bytes",
        second.bytes_uploaded
    );
    let target = work.path().join("r");
    restore_all(&dev, &target).await;
    assert!(std::fs::read(restored(&target, &src).join("disk.img")).unwrap() == data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_passphrase_is_refused_clearly() {
    let (_server, api, work) = setup().await;
    let err = Device::open(api.clone(), "wrong horse", &work.path().join("c"))
        .await
        .err()
        .unwrap();
    assert!(format!("{err:#}").contains("wrong passphrase"), "{err:#}");
    let err = commands::init(&api, "wrong horse").await.err().unwrap();
    assert!(format!("{err:#}").contains("wrong passphrase"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corruption_on_the_server_is_found_by_verify_and_restore() {
    let (server, api, work) = setup().await;
    let src = work.path().join("src");
    write(&src.join("victim.bin"), &block_bytes(1, 3 << 20));
    write(&src.join("bystander.txt"), b"still fine");
    // Small files are packed on the server and restored in bundles: one
    // bad block in a bundle fails its own file only.
    let small_victim = block_bytes(2, 5000);
    write(&src.join("small-victim.bin"), &small_victim);
    write(&src.join("small-bystander.bin"), &block_bytes(3, 7000));
    let dev = device(&api, work.path()).await;
    dev.backup(vec![src.clone()], vec![], false, 16, Progress::quiet())
        .await
        .unwrap();
    // Flip one byte in one stored chunk file of the victim (chunks of a
    // random 3 MiB file are far above the packing threshold: own files).
    let mut files = Vec::new();
    let mut stack = vec![server.data_dir.join("blocks/archives")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.metadata().unwrap().len() > 200_000 {
                files.push(e.path());
            }
        }
    }
    let victim = &files[0];
    let mut bytes = std::fs::read(victim).unwrap();
    bytes[1000] ^= 1;
    std::fs::write(victim, bytes).unwrap();
    // The small victim's block is sealed deterministically: find its record
    // (`CPK1 | length | id | bytes`) in the archive's pack by its id.
    let keys = archive_keys(&api).await;
    let small_id = BlockId::of(&keys.seal(&small_victim));
    let mut packed = 0;
    for d in std::fs::read_dir(server.data_dir.join("blocks/packs")).unwrap() {
        for pack in std::fs::read_dir(d.unwrap().path()).unwrap() {
            let pack = pack.unwrap().path();
            let mut bytes = std::fs::read(&pack).unwrap();
            if let Some(at) = bytes.windows(32).position(|w| w == small_id.as_bytes()) {
                bytes[at + 32 + 100] ^= 1;
                std::fs::write(&pack, bytes).unwrap();
                packed += 1;
            }
        }
    }
    assert_eq!(packed, 1, "the small victim's block is in one pack");

    let (_, v) = dev.verify(None, 8).await.unwrap();
    assert_eq!(v.bad.len(), 2, "{v:?}");
    for name in ["/victim.bin", "/small-victim.bin"] {
        assert!(
            v.bad
                .iter()
                .any(|b| b.files.iter().any(|f| f.ends_with(name)) && b.error.contains("corrupt")),
            "{name}: {v:?}"
        );
    }

    let target = work.path().join("r");
    let (_, r) = restore_all(&dev, &target).await;
    let mut failed: Vec<_> = r
        .failed
        .iter()
        .map(|(f, _)| f.rsplit('/').next().unwrap())
        .collect();
    failed.sort();
    assert_eq!(failed, ["small-victim.bin", "victim.bin"], "{r:?}");
    assert!(r.failed.iter().all(|(_, e)| e.contains("corrupt")), "{r:?}");
    let out = restored(&target, &src);
    assert_eq!(
        std::fs::read(out.join("bystander.txt")).unwrap(),
        b"still fine"
    );
    assert_eq!(
        std::fs::read(out.join("small-bystander.bin")).unwrap(),
        block_bytes(3, 7000)
    );
    for name in ["victim.bin", "small-victim.bin"] {
        assert!(
            !out.join(name).exists(),
            "a corrupt file is not left half-written"
        );
    }
    // Verify and restore each fetched the three small files in one request.
    let metrics = server.client().await.get(&paths::metrics()).await.unwrap();
    let metrics = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(
        metrics.contains("coffer_http_requests_total{route=\"fetch_blocks\",status=\"200\"} 2\n"),
        "{metrics}"
    );
    // The server recorded both as corrupt and reports them missing: the
    // next backup uploads them again, and the new backup verifies.
    dev.backup(vec![src.clone()], vec![], false, 16, Progress::quiet())
        .await
        .unwrap();
    let (_, v) = dev.verify(None, 8).await.unwrap();
    assert!(v.bad.is_empty(), "{v:?}");
    let target = work.path().join("r2");
    let (_, r) = restore_all(&dev, &target).await;
    assert!(r.failed.is_empty(), "{r:?}");
    assert_eq!(
        std::fs::read(restored(&target, &src).join("victim.bin")).unwrap(),
        block_bytes(1, 3 << 20)
    );
}

/// The archive's keys, unwrapped as the agent does.
async fn archive_keys(api: &Api) -> coffer_agent::crypto::Keys {
    let key_ref = api.get_ref("key").await.unwrap().unwrap();
    coffer_agent::crypto::Keys::unwrap(
        &api.get_block(&key_ref.block).await.unwrap().unwrap(),
        "correct horse",
    )
    .unwrap()
}

/// Seal and upload each plaintext as a block; their ids.
async fn put_sealed(api: &Api, keys: &coffer_agent::crypto::Keys, plain: &[&[u8]]) -> Vec<BlockId> {
    let mut ids = Vec::new();
    for p in plain {
        let sealed = keys.seal(p);
        let id = BlockId::of(&sealed);
        api.put_block(&id, sealed.into(), None).await.unwrap();
        ids.push(id);
    }
    ids
}

/// A file entry of a forged manifest.
fn forged_entry(path: &str, kind: Kind, size: u64, chunks: Vec<BlockId>) -> Entry {
    Entry {
        path: PathRepr::Text(path.into()),
        kind,
        mode: 0o644,
        mtime_sec: 0,
        mtime_nsec: 0,
        size,
        target: None,
        chunks,
        deleted_ms: None,
    }
}

/// Commit a backup of `entries` sealed with the archive's own key: what a
/// compromised or buggy writer could produce. `blocks` are the data blocks
/// the entries name.
async fn commit_forged(
    api: &Api,
    keys: &coffer_agent::crypto::Keys,
    entries: Vec<Entry>,
    blocks: &[BlockId],
) {
    let m = Manifest {
        version: 1,
        created_ms: 0,
        host: "evil".into(),
        roots: vec![],
        stats: Stats::default(),
        entries,
    };
    let part_id = put_sealed(api, keys, &[&serde_json::to_vec(&m).unwrap()]).await[0];
    let root = ManifestRoot {
        version: 1,
        parts: vec![part_id],
    };
    let root_id = put_sealed(api, keys, &[&serde_json::to_vec(&root).unwrap()]).await[0];
    let s = api.open_session().await.unwrap();
    let referenced: Vec<BlockId> = blocks.iter().copied().chain([part_id]).collect();
    api.commit(s.session.as_str(), root_id, &referenced, 1, 5)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_the_server_refuses_is_fetched_file_by_file() {
    let (server, api, work) = setup().await;
    let keys = archive_keys(&api).await;
    // Three entries claim 100 bytes but name 3 MiB blocks: together more
    // than a fetch answers, so the server refuses the bundle, and the agent
    // fetches each of its files alone. Each then fails on its size, by
    // name; the honest file of the same bundle is restored.
    let big: Vec<Vec<u8>> = (0..3).map(|i| block_bytes(40 + i, 3 << 20)).collect();
    let big_ids = put_sealed(&api, &keys, &[&big[0], &big[1], &big[2]]).await;
    let small_id = put_sealed(&api, &keys, &[b"honest"]).await[0];
    let mut entries: Vec<Entry> = big_ids
        .iter()
        .enumerate()
        .map(|(i, id)| forged_entry(&format!("liar{i}.bin"), Kind::File, 100, vec![*id]))
        .collect();
    entries.push(forged_entry("honest.txt", Kind::File, 6, vec![small_id]));
    let blocks: Vec<BlockId> = big_ids.iter().copied().chain([small_id]).collect();
    commit_forged(&api, &keys, entries, &blocks).await;

    let dev = device(&api, work.path()).await;
    let target = work.path().join("r");
    let (_, r) = restore_all(&dev, &target).await;
    let mut failed: Vec<&str> = r.failed.iter().map(|(f, _)| f.as_str()).collect();
    failed.sort();
    assert_eq!(failed, ["liar0.bin", "liar1.bin", "liar2.bin"], "{r:?}");
    assert!(
        r.failed
            .iter()
            .all(|(_, e)| e.contains("the manifest says 100")),
        "{r:?}"
    );
    assert_eq!(std::fs::read(target.join("honest.txt")).unwrap(), b"honest");
    let metrics = server.client().await.get(&paths::metrics()).await.unwrap();
    let metrics = String::from_utf8(metrics.body.to_vec()).unwrap();
    assert!(
        metrics.contains("coffer_http_requests_total{route=\"fetch_blocks\",status=\"400\"} 1\n"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_that_climbs_out_of_the_target_is_refused() {
    let (_server, api, work) = setup().await;
    let keys = archive_keys(&api).await;
    let pid = put_sealed(&api, &keys, &[b"owned"]).await[0];
    let entry = |path: &str, kind| forged_entry(path, kind, 5, vec![pid]);
    let mut link = entry("x/escape", Kind::Symlink);
    link.target = Some(PathRepr::Text("/".into()));
    let entries = vec![
        entry("../../evil.txt", Kind::File),
        entry("/tmp/evil-abs.txt", Kind::File),
        link,
        entry("x/escape/evil-through-link.txt", Kind::File),
        entry("x/good.txt", Kind::File),
    ];
    commit_forged(&api, &keys, entries, &[pid]).await;

    let dev = device(&api, work.path()).await;
    let target = work.path().join("jail/r");
    let (_, r) = restore_all(&dev, &target).await;
    assert_eq!(r.refused.len(), 2, "{r:?}");
    assert!(!work.path().join("evil.txt").exists() && !work.path().join("jail/evil.txt").exists());
    assert!(!Path::new("/tmp/evil-abs.txt").exists());
    assert_eq!(std::fs::read(target.join("x/good.txt")).unwrap(), b"owned");
    // Files are written before any symlink exists, into real directories:
    // the file under x/escape/ lands inside the target, and the symlink
    // that would have redirected it cannot take that place.
    assert!(!Path::new("/evil-through-link.txt").exists());
    assert_eq!(
        std::fs::read(target.join("x/escape/evil-through-link.txt")).unwrap(),
        b"owned"
    );
    assert!(std::fs::symlink_metadata(target.join("x/escape"))
        .unwrap()
        .is_dir());
    assert!(r.failed.iter().any(|(p, _)| p == "x/escape"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symlinks_already_under_the_target_are_never_followed_and_setuid_is_removed() {
    use std::os::unix::fs::PermissionsExt;
    let (_server, api, work) = setup().await;
    let keys = archive_keys(&api).await;
    let pid = put_sealed(&api, &keys, &[b"owned"]).await[0];
    let entry = |path: &str, kind, mode| {
        let mut e = forged_entry(path, kind, 5, vec![pid]);
        e.mode = mode;
        e
    };
    let entries = vec![
        entry("planted", Kind::Dir, 0o777),
        entry("planted/x.txt", Kind::File, 0o644),
        entry("d", Kind::Dir, 0o750),
        entry("d/suid", Kind::File, 0o4755),
        entry("d/sgid", Kind::File, 0o2755),
    ];
    commit_forged(&api, &keys, entries, &[pid]).await;

    // Somebody with write access to the target planted a symlink where the
    // backup has a directory, pointing outside.
    let outside = work.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o700)).unwrap();
    let target = work.path().join("r");
    std::fs::create_dir(&target).unwrap();
    std::os::unix::fs::symlink(&outside, target.join("planted")).unwrap();

    let dev = device(&api, work.path()).await;
    let (_, r) = restore_all(&dev, &target).await;
    // Nothing written through the link, and its target's mode untouched
    // (a restore that chmods a path follows the link).
    assert!(std::fs::read_dir(&outside).unwrap().next().is_none());
    let mode = std::fs::metadata(&outside).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700);
    assert!(
        r.failed
            .iter()
            .any(|(p, e)| p == "planted/x.txt" && e.contains("not writing through it")),
        "{r:?}"
    );
    // The rest is restored; setuid and setgid removed, and counted.
    let mode = |p: &str| {
        std::fs::metadata(target.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(
        (mode("d/suid"), mode("d/sgid"), mode("d")),
        (0o755, 0o755, 0o750)
    );
    assert_eq!(r.setuid_removed, 2, "{r:?}");
    // Asked for, they are kept.
    let again = work.path().join("r2");
    let (_, r) = restore_with(&dev, &again, true).await;
    assert_eq!(r.setuid_removed, 0);
    let mode = |p: &str| {
        std::fs::metadata(again.join(p))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!((mode("d/suid"), mode("d/sgid")), (0o4755, 0o2755));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_file_is_reported_and_skipped() {
    let (_server, api, work) = setup().await;
    let src = work.path().join("src");
    write(&src.join("fine.txt"), b"fine");
    // Tests run as root, which reads any file whatever its mode; but
    // /proc/self/mem is a regular file whose reads at offset 0 fail (EIO).
    let unreadable = PathBuf::from("/proc/self/mem");
    let dev = device(&api, work.path()).await;
    let s = dev
        .backup(
            vec![src.clone(), unreadable.clone()],
            vec![],
            false,
            4,
            Progress::quiet(),
        )
        .await
        .unwrap();
    assert_eq!(s.skipped, 1, "{s:?}");
    assert_eq!(s.skipped_paths, vec![unreadable.display().to_string()]);
    assert_eq!(s.files, 1, "the readable file is in the backup");
    let target = work.path().join("r");
    let (_, r) = restore_all(&dev, &target).await;
    assert!(r.failed.is_empty());
    assert_eq!(
        std::fs::read(restored(&target, &src).join("fine.txt")).unwrap(),
        b"fine"
    );
}
