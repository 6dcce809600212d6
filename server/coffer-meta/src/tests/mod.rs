//! The metadata store's own suite. `records` covers the aggregates, `audit`
//! the hash chain, `accounts` accounts and tokens, `upgrade` the schema
//! upgrade from a database laid out as schema 1 wrote it.

use std::collections::BTreeMap;

use coffer_types::{BlockId, Name};

use crate::*;

mod accounts;
mod audit;
mod records;
mod upgrade;

pub(crate) fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

pub(crate) fn open() -> (tempfile::TempDir, MetaStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::open(&dir.path().join("meta"), 0).unwrap();
    (dir, store)
}

/// Open `path` once nothing else holds it: after a store (or a raw sled
/// handle) over it is dropped, sled's background threads let go of the
/// database lock a moment later — on a loaded machine, seconds later — so
/// a lock refusal is tried again, for at most 10 s. Any other outcome is
/// returned as it is.
pub(crate) fn open_when_free(path: &std::path::Path, now: u64) -> Result<MetaStore> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match MetaStore::open(path, now) {
            Err(e)
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

pub(crate) fn draft(action: &str) -> AuditDraft {
    AuditDraft {
        at: 1,
        actor: "tester".into(),
        role: Some("admin".into()),
        action: action.into(),
        target: "test".into(),
        outcome: "ok".into(),
        details: BTreeMap::new(),
    }
}

pub(crate) fn device(dev: &str, ar: &str, org: &str) -> DeviceRecord {
    DeviceRecord {
        parked: false,
        id: name(dev),
        name: "laptop".into(),
        org: name(org),
        user: name("ann"),
        os: None,
        archive: name(ar),
        token_hash: *blake3::hash(dev.as_bytes()).as_bytes(),
        revoked: false,
        enrolled_at: 1,
        last_connection: None,
        agent_version: None,
        deactivated_at: None,
        purged_at: None,
    }
}

pub(crate) fn enroll(store: &MetaStore, dev: &str, ar: &str) {
    let archive = ArchiveRecord::new(name(ar), name(dev), 1);
    store
        .enroll(&device(dev, ar, "acme"), &archive, &draft("device.enroll"))
        .unwrap();
}

pub(crate) fn session(store: &MetaStore, ar: &str, sid: &str) {
    store
        .create_session(&SessionRecord {
            id: name(sid),
            archive: name(ar),
            state: SessionStatus::Open,
            opened_at: 5,
            last_activity: 5,
            percent: 0.0,
            bytes: 0,
            files: 0,
            backup: None,
        })
        .unwrap();
}

pub(crate) fn backup(ar: &str, sid: &str, bid: &str, manifest: BlockId) -> BackupRecord {
    BackupRecord {
        id: name(bid),
        archive: name(ar),
        session: name(sid),
        committed_at: 100,
        manifest,
        block_count: 0,
        stats: BackupStatsRecord::default(),
    }
}
