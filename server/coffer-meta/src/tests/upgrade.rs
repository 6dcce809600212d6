//! The schema upgrade, from a database laid out exactly as schema 1 wrote
//! it (the trees and JSON of the first release, written here with sled
//! directly); the integration suite also upgrades a data directory that the
//! schema-1 server itself wrote (`tests/fixtures/schema-v1`).

use super::*;

/// A schema-1 database: one org, one device with a block, a session and a
/// backup, and the admin token hash.
/// The database opened behind the store's back, without sled's background
/// flusher: a flusher thread outlives the `Db` for up to its interval and
/// keeps the lock, so the store's open right after would fail (seen: "could
/// not acquire lock" in a CI run).
fn raw_db(path: &std::path::Path) -> sled::Db {
    sled::Config::new()
        .path(path)
        .flush_every_ms(None)
        .open()
        .unwrap()
}

/// Opens the store once sled's threads of the raw handle above have let go
/// of the lock; any other outcome is returned as it is.
fn try_open_after_raw(path: &std::path::Path, now: u64) -> Result<MetaStore, crate::MetaError> {
    super::open_when_free(path, now)
}

fn open_after_raw(path: &std::path::Path, now: u64) -> MetaStore {
    try_open_after_raw(path, now).unwrap_or_else(|e| panic!("{e}"))
}

fn write_v1(path: &std::path::Path, admin_hash: [u8; 32]) {
    let db = raw_db(path);
    let tree = |n: &str| db.open_tree(n).unwrap();
    let meta = tree("meta");
    meta.insert(b"schema_version", &1u32.to_be_bytes()).unwrap();
    meta.insert(b"admin_token_hash", &admin_hash).unwrap();
    tree("orgs")
        .insert(
            b"acme",
            br#"{"name":"acme","parent":null,"created_at":1}"#.to_vec(),
        )
        .unwrap();
    tree("users")
        .insert(
            b"acme\0ann",
            br#"{"org":"acme","name":"ann","created_at":2}"#.to_vec(),
        )
        .unwrap();
    let dev = device("dv_1", "ar_1", "acme");
    tree("devices")
        .insert(b"dv_1", serde_json::to_vec(&dev).unwrap())
        .unwrap();
    tree("tokens").insert(&dev.token_hash[..], b"dv_1").unwrap();
    tree("archives")
        .insert(
            b"ar_1",
            br#"{"id":"ar_1","device":"dv_1","created_at":1,"bytes_stored":5,"block_count":1,
                "backup_count":1,"last_activity":9,"last_completed":9,"percent_complete":100.0}"#
                .to_vec(),
        )
        .unwrap();
    let block = BlockId::of(b"hello");
    let mut bk = b"ar_1\0".to_vec();
    bk.extend_from_slice(block.as_bytes());
    let mut rec = 5u64.to_be_bytes().to_vec();
    rec.extend_from_slice(&9u64.to_be_bytes());
    tree("blocks").insert(bk, rec).unwrap();
    tree("sessions")
        .insert(
            b"ar_1\0se_1",
            br#"{"id":"se_1","archive":"ar_1","state":"committed","opened_at":3,"last_activity":9,
                "percent":100.0,"bytes":5,"files":1,"backup":"bk_1"}"#
                .to_vec(),
        )
        .unwrap();
    tree("backups")
        .insert(
            b"ar_1\0bk_1",
            format!(
                r#"{{"id":"bk_1","archive":"ar_1","session":"se_1","committed_at":9,"manifest":"{block}",
                "block_count":1,"stats":{{"files":1,"bytes":5,"percent":100.0}}}}"#
            )
            .into_bytes(),
        )
        .unwrap();
    tree("refs")
        .insert(b"ar_1\0bk_1\0\0\0\0\0", block.as_bytes().to_vec())
        .unwrap();
    db.flush().unwrap();
}

#[test]
fn a_schema_1_database_is_upgraded_and_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    let admin_hash = *blake3::hash(b"cfa_old").as_bytes();
    write_v1(&path, admin_hash);

    let s = open_after_raw(&path, 1000);
    assert_eq!(s.upgraded_from(), Some(1));
    // The old admin token is the admin account's token.
    let (tok, acct) = s.admin_token_by_hash(&admin_hash).unwrap().unwrap();
    assert_eq!(acct.name.as_str(), BOOTSTRAP_ACCOUNT);
    assert_eq!(acct.role, AccountRole::Admin);
    assert_eq!(tok.expires_at, None);
    assert!(s.t.meta.get(b"admin_token_hash").unwrap().is_none());
    // Everything schema 1 held reads back.
    let dev = s
        .device_by_token(&device("dv_1", "ar_1", "acme").token_hash)
        .unwrap()
        .unwrap();
    assert_eq!(dev.archive, name("ar_1"));
    assert_eq!(s.users().unwrap().len(), 1);
    let b = s.backups(&name("ar_1")).unwrap();
    assert_eq!((b.len(), b[0].stats.percent), (1, 100.0));
    let block = BlockId::of(b"hello");
    assert_eq!(
        s.backup_blocks(&name("ar_1"), &name("bk_1")).unwrap(),
        [block]
    );
    assert_eq!(s.block(&name("ar_1"), &block).unwrap().unwrap().size, 5);
    assert_eq!(
        s.session(&name("ar_1"), &name("se_1"))
            .unwrap()
            .unwrap()
            .state,
        SessionStatus::Committed
    );
    // The indexes were built.
    assert_eq!(s.devices_in_org(&name("acme")).unwrap().len(), 1);
    assert_eq!(
        s.device_of_archive(&name("ar_1")).unwrap().unwrap().id,
        name("dv_1")
    );
    // The upgrade is the first audit entry, and the chain verifies.
    let log = s
        .audit_list(&AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].action.as_str(), log[0].at),
        ("metadata.upgrade", 1000)
    );
    assert_eq!(log[0].details["from"], "1");
    assert_eq!(s.audit_verify().unwrap().first_break, None);
    drop(s);

    // Opened again: already version 2, nothing more to do.
    let s = open_after_raw(&path, 2000);
    assert_eq!(s.upgraded_from(), None);
    assert_eq!(s.audit_head().unwrap(), 1);
}

#[test]
fn an_interrupted_upgrade_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    let admin_hash = [7u8; 32];
    write_v1(&path, admin_hash);
    // As if a first attempt had made the account and stopped before the
    // version was written: the tree exists, the version is still 1.
    {
        let db = raw_db(&path);
        let acct = AccountRecord {
            name: name(BOOTSTRAP_ACCOUNT),
            role: AccountRole::Admin,
            org: None,
            password_hash: None,
            disabled: false,
            created_at: 5,
            created_by: "first attempt".into(),
        };
        db.open_tree("accounts")
            .unwrap()
            .insert(BOOTSTRAP_ACCOUNT, serde_json::to_vec(&acct).unwrap())
            .unwrap();
        db.flush().unwrap();
    }
    let s = open_after_raw(&path, 1000);
    assert_eq!(s.upgraded_from(), Some(1));
    assert_eq!(s.accounts().unwrap().len(), 1);
    assert!(s.admin_token_by_hash(&admin_hash).unwrap().is_some());
}

#[test]
fn an_unknown_version_is_refused_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meta");
    {
        let db = raw_db(&path);
        db.open_tree("meta")
            .unwrap()
            .insert(b"schema_version", &0u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let e = match try_open_after_raw(&path, 0) {
        Ok(_) => panic!("an unknown schema version was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("schema version 0") && e.contains("Upgrade the server"),
        "{e}"
    );
}
