//! The schema version and the upgrades between versions.
//!
//! The version lives in the `meta` tree. At open, a database of an older
//! version is upgraded one version at a time; a newer one is refused, not
//! misread. Every step is idempotent and the version is written last, in the
//! same transaction as the step's audit entry, so a crash mid-upgrade leaves
//! a database of the old version that the next start upgrades again.
//!
//! Versions:
//! - 1: the first release (orgs, users, devices, archives, blocks, sessions,
//!   backups, refs, pins, named refs, plugin kv; one admin token hash).
//! - 2: admin accounts and API tokens (the schema-1 admin token becomes the
//!   `admin` account's token, so `admin.token` keeps working); the indexes
//!   devices-by-org and archive → device; the audit log; plugin state.

use std::collections::BTreeMap;
use std::path::Path;

use coffer_types::{Name, UnixMillis};
use sled::Transactional;

use crate::accounts::{AccountRecord, AccountRole, AdminTokenRecord, BOOTSTRAP_ACCOUNT};
use crate::audit::{append_in, AuditDraft};
use crate::devices::DeviceRecord;
use crate::engine::{dec, enc, engine, key, tx_err, Trees};
use crate::{MetaError, Result};

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: u32 = 2;

const SCHEMA_KEY: &[u8] = b"schema_version";

/// One upgrade: from a version to the next.
type Upgrade = fn(&Trees, UnixMillis) -> Result<()>;

/// The versions this build can upgrade from, oldest first.
const UPGRADES: &[(u32, Upgrade)] = &[(1, v1_to_v2)];

/// The stored version, `None` for a new database.
fn stored_version(t: &Trees) -> Result<Option<u32>> {
    Ok(t.meta
        .get(SCHEMA_KEY)
        .map_err(engine("read schema version"))?
        .map(|v| {
            v.as_ref()
                .try_into()
                .map(u32::from_be_bytes)
                .unwrap_or(u32::MAX)
        }))
}

/// Bring the database at `path` to [`SCHEMA_VERSION`]: stamp a new one,
/// upgrade an older one, refuse a newer one. Returns the version it found.
pub(crate) fn prepare(
    path: &Path,
    db: &sled::Db,
    t: &Trees,
    now: UnixMillis,
) -> Result<Option<u32>> {
    let found = stored_version(t)?;
    let Some(mut v) = found else {
        t.meta
            .insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
            .map_err(engine("write schema version"))?;
        return Ok(None);
    };
    if v > SCHEMA_VERSION || !(v == SCHEMA_VERSION || UPGRADES.iter().any(|(f, _)| *f == v)) {
        return Err(MetaError::SchemaMismatch {
            path: path.to_path_buf(),
            found: v,
            expected: SCHEMA_VERSION,
        });
    }
    while v < SCHEMA_VERSION {
        let (_, step) = UPGRADES
            .iter()
            .find(|(from, _)| *from == v)
            .expect("checked above: every older version has an upgrade");
        tracing::warn!(
            path = %path.display(),
            from = v,
            to = v + 1,
            "upgrading the metadata schema; the old server cannot read it afterwards"
        );
        step(t, now)?;
        db.flush().map_err(engine("flush schema upgrade"))?;
        v += 1;
    }
    Ok(found)
}

/// Write version `to` and its audit entry in one transaction: the last act
/// of an upgrade.
fn finish(t: &Trees, from: u32, to: u32, now: UnixMillis, extra: &[&[u8]]) -> Result<()> {
    let draft = AuditDraft {
        at: now,
        actor: "system".into(),
        role: None,
        action: "metadata.upgrade".into(),
        target: "metadata".into(),
        outcome: "ok".into(),
        details: BTreeMap::from([
            ("from".to_string(), from.to_string()),
            ("to".to_string(), to.to_string()),
        ]),
    };
    (&t.meta, &t.audit)
        .transaction(|(meta, audit)| {
            for k in extra {
                meta.remove(*k)?;
            }
            append_in(meta, audit, &draft)?;
            meta.insert(SCHEMA_KEY, &to.to_be_bytes())?;
            Ok(())
        })
        .map_err(tx_err("write schema version"))
}

/// The key under which schema 1 kept the one admin token's hash.
pub(crate) const V1_ADMIN_TOKEN_KEY: &[u8] = b"admin_token_hash";

/// 1 → 2: accounts from the admin token, and the device indexes.
fn v1_to_v2(t: &Trees, now: UnixMillis) -> Result<()> {
    // The one admin token becomes the `admin` account's token.
    let v1_hash: Option<[u8; 32]> = t
        .meta
        .get(V1_ADMIN_TOKEN_KEY)
        .map_err(engine("read admin token"))?
        .and_then(|v| v.as_ref().try_into().ok());
    if let Some(hash) = v1_hash {
        let name = Name::new(BOOTSTRAP_ACCOUNT).expect("a valid name");
        let account = AccountRecord {
            name: name.clone(),
            role: AccountRole::Admin,
            org: None,
            password_hash: None,
            disabled: false,
            created_at: now,
            created_by: "upgrade from schema 1".into(),
        };
        let token = AdminTokenRecord {
            id: Name::new("tk_schema1_admin").expect("a valid name"),
            account: name.clone(),
            hash,
            created_at: now,
            expires_at: None,
            revoked_at: None,
            created_by: "upgrade from schema 1 (admin.token)".into(),
        };
        (&t.accounts, &t.admin_tokens, &t.admin_token_hashes)
            .transaction(|(accounts, tokens, hashes)| {
                if accounts.get(name.as_str().as_bytes())?.is_none() {
                    accounts.insert(name.as_str().as_bytes(), enc(&account))?;
                }
                if hashes.get(&hash[..])?.is_none() {
                    tokens.insert(token.id.as_str().as_bytes(), enc(&token))?;
                    hashes.insert(&hash[..], token.id.as_str().as_bytes())?;
                }
                Ok(())
            })
            .map_err(tx_err("upgrade: admin account"))?;
    }
    // The indexes scoped listings need, built from the devices.
    let mut by_org = sled::Batch::default();
    let mut by_archive = sled::Batch::default();
    for kv in t.devices.iter() {
        let (_, v) = kv.map_err(engine("upgrade: scan devices"))?;
        let d: DeviceRecord = dec("device", &v)?;
        by_org.insert(
            key(&[d.org.as_str().as_bytes(), d.id.as_str().as_bytes()]),
            &[][..],
        );
        by_archive.insert(d.archive.as_str().as_bytes(), d.id.as_str().as_bytes());
    }
    t.devices_by_org
        .apply_batch(by_org)
        .map_err(engine("upgrade: index devices by org"))?;
    t.archive_device
        .apply_batch(by_archive)
        .map_err(engine("upgrade: index archives"))?;
    finish(t, 1, 2, now, &[V1_ADMIN_TOKEN_KEY])
}
