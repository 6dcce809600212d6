//! The engine layer: the sled database, its trees, key and value encoding,
//! and the read, scan and transaction helpers the aggregate modules share.
//! Nothing outside this crate sees a tree; the aggregates (`orgs.rs`,
//! `devices.rs`, …) speak of records.
//!
//! Keys are `part \0 part …`: names never contain a NUL (see
//! `coffer_types::Name`), block ids are raw 32 bytes at the end of a key and
//! sequence numbers are big-endian, so prefix scans and ordering follow the
//! key's parts.

use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

use crate::MetaError;

/// Every tree of the current schema, opened once.
pub(crate) struct Trees {
    /// Schema version, the audit chain's head, and (schema 1) the admin
    /// token hash.
    pub(crate) meta: sled::Tree,
    pub(crate) orgs: sled::Tree,
    /// `org \0 user`.
    pub(crate) users: sled::Tree,
    /// Admin accounts by name.
    pub(crate) accounts: sled::Tree,
    /// Admin API tokens by id.
    pub(crate) admin_tokens: sled::Tree,
    /// blake3 of an admin token → its id.
    pub(crate) admin_token_hashes: sled::Tree,
    pub(crate) devices: sled::Tree,
    /// blake3 of a device token → device id.
    pub(crate) tokens: sled::Tree,
    /// Index: `org \0 device` → nothing (schema 2).
    pub(crate) devices_by_org: sled::Tree,
    /// Index: archive → device (schema 2).
    pub(crate) archive_device: sled::Tree,
    pub(crate) archives: sled::Tree,
    /// `archive \0 block id` → block record.
    pub(crate) blocks: sled::Tree,
    /// `archive \0 session`.
    pub(crate) sessions: sled::Tree,
    /// `archive \0 backup`.
    pub(crate) backups: sled::Tree,
    /// `archive \0 backup \0 chunk number` → block ids.
    pub(crate) refs: sled::Tree,
    /// `archive \0 session \0 block id` → nothing.
    pub(crate) pins: sled::Tree,
    /// `archive \0 block id` → when its stored bytes were found not to match
    /// its id (big-endian ms); gone once a good copy replaced them.
    pub(crate) corrupt: sled::Tree,
    /// `archive \0 name` → named reference.
    pub(crate) named: sled::Tree,
    /// `plugin \0 key` → the plugin's bytes.
    pub(crate) plugin_kv: sled::Tree,
    /// Plugin name → what the operator set (enabled or not).
    pub(crate) plugin_state: sled::Tree,
    /// Sequence number (big-endian) → audit entry.
    pub(crate) audit: sled::Tree,
    /// Org → the settings groups it does not inherit, with its values.
    pub(crate) org_settings: sled::Tree,
    /// Quota scope (`org:…`, `user:…/…`, `device:…`) → its warning, while
    /// its usage is at or over the warning level.
    pub(crate) quota_warnings: sled::Tree,
    /// Device → the device defaults it received at enrollment.
    pub(crate) device_settings: sled::Tree,
    /// Archive → its key sealed to an escrow public key.
    pub(crate) escrow: sled::Tree,
    /// blake3 of a restore token → the token's record.
    pub(crate) restore_tokens: sled::Tree,
    /// Device → its alert level as last evaluated.
    pub(crate) alert_state: sled::Tree,
    /// `due (big-endian ms) device` → nothing: when each device is next
    /// due for evaluation.
    pub(crate) alert_due: sled::Tree,
    /// Sequence number (big-endian) → alert transition.
    pub(crate) alert_outbox: sled::Tree,
    /// Delivery channel → how far it has read the outbox (JSON number).
    pub(crate) delivery_cursor: sled::Tree,
    /// `channel \0 seq (big-endian) target` → a delivery not handed over
    /// yet.
    pub(crate) delivery_pending: sled::Tree,
    /// The same keys → deliveries handed over.
    pub(crate) delivery_done: sled::Tree,
    /// Org → the start of the last period its digest was recorded for.
    pub(crate) digest_state: sled::Tree,
    /// Preservation policy name → policy.
    pub(crate) hold_policies: sled::Tree,
    /// Matter name → matter.
    pub(crate) hold_matters: sled::Tree,
    /// `org \0 user \0 matter` → custodian record.
    pub(crate) hold_custodians: sled::Tree,
    /// Archive → its commit and sweep epochs (two big-endian u64).
    pub(crate) epochs: sled::Tree,
    /// `archive \0 block id` → when a sweep condemned it (big-endian ms).
    pub(crate) condemned: sled::Tree,
    /// `archive \0 block id` → the location of bytes to delete (the
    /// destruction journal).
    pub(crate) gc_journal: sled::Tree,
    /// `archive \0 pack (big-endian)` → a pack rewrite in progress.
    pub(crate) pack_journal: sled::Tree,
}

impl Trees {
    pub(crate) fn open(db: &sled::Db) -> Result<Self, sled::Error> {
        Ok(Self {
            meta: db.open_tree("meta")?,
            orgs: db.open_tree("orgs")?,
            users: db.open_tree("users")?,
            accounts: db.open_tree("accounts")?,
            admin_tokens: db.open_tree("admin_tokens")?,
            admin_token_hashes: db.open_tree("admin_token_hashes")?,
            devices: db.open_tree("devices")?,
            tokens: db.open_tree("tokens")?,
            devices_by_org: db.open_tree("devices_by_org")?,
            archive_device: db.open_tree("archive_device")?,
            archives: db.open_tree("archives")?,
            blocks: db.open_tree("blocks")?,
            sessions: db.open_tree("sessions")?,
            backups: db.open_tree("backups")?,
            refs: db.open_tree("refs")?,
            pins: db.open_tree("pins")?,
            corrupt: db.open_tree("corrupt_blocks")?,
            named: db.open_tree("named_refs")?,
            plugin_kv: db.open_tree("plugin_kv")?,
            plugin_state: db.open_tree("plugin_state")?,
            audit: db.open_tree("audit")?,
            org_settings: db.open_tree("org_settings")?,
            quota_warnings: db.open_tree("quota_warnings")?,
            device_settings: db.open_tree("device_settings")?,
            escrow: db.open_tree("escrow")?,
            restore_tokens: db.open_tree("restore_tokens")?,
            alert_state: db.open_tree("alert_state")?,
            alert_due: db.open_tree("alert_due")?,
            alert_outbox: db.open_tree("alert_outbox")?,
            delivery_cursor: db.open_tree("delivery_cursor")?,
            delivery_pending: db.open_tree("delivery_pending")?,
            delivery_done: db.open_tree("delivery_done")?,
            digest_state: db.open_tree("digest_state")?,
            hold_policies: db.open_tree("hold_policies")?,
            hold_matters: db.open_tree("hold_matters")?,
            hold_custodians: db.open_tree("hold_custodians")?,
            epochs: db.open_tree("archive_epochs")?,
            condemned: db.open_tree("condemned_blocks")?,
            gc_journal: db.open_tree("gc_journal")?,
            pack_journal: db.open_tree("pack_journal")?,
        })
    }
}

/// The error of a failed engine call, with what was being done.
pub(crate) fn engine(context: &'static str) -> impl FnOnce(sled::Error) -> MetaError {
    move |e| MetaError::Engine {
        context,
        source: Box::new(e),
    }
}

/// The error of a failed transaction: its own abort, or the engine's.
pub(crate) fn tx_err(
    context: &'static str,
) -> impl FnOnce(TransactionError<MetaError>) -> MetaError {
    move |e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => engine(context)(e),
    }
}

/// What a transaction closure returns.
pub(crate) type TxResult<T> = Result<T, ConflictableTransactionError<MetaError>>;

/// Abort a transaction with a metadata error.
pub(crate) fn abort<T>(e: MetaError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

pub(crate) fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(p);
    }
    out
}

/// The prefix of every key that starts with `parts`.
pub(crate) fn prefix(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = key(parts);
    k.push(0);
    k
}

pub(crate) fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing plain records to JSON cannot fail.
    serde_json::to_vec(v).expect("records serialize")
}

pub(crate) fn dec<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, MetaError> {
    serde_json::from_slice(bytes).map_err(|source| MetaError::Corrupt { what, source })
}

pub(crate) fn tx_dec<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> TxResult<T> {
    dec(what, bytes).map_err(ConflictableTransactionError::Abort)
}

pub(crate) fn get<T: DeserializeOwned>(
    tree: &sled::Tree,
    k: &[u8],
    what: &'static str,
) -> Result<Option<T>, MetaError> {
    match tree.get(k).map_err(engine("read record"))? {
        Some(v) => Ok(Some(dec(what, &v)?)),
        None => Ok(None),
    }
}

pub(crate) fn tx_get<T: DeserializeOwned>(
    tree: &TransactionalTree,
    k: &[u8],
    what: &'static str,
) -> TxResult<Option<T>> {
    match tree.get(k)? {
        Some(v) => Ok(Some(tx_dec(what, &v)?)),
        None => Ok(None),
    }
}

/// Every record whose key starts with `p`, in key order.
pub(crate) fn scan<T: DeserializeOwned>(
    tree: &sled::Tree,
    p: &[u8],
    what: &'static str,
) -> Result<Vec<T>, MetaError> {
    tree.scan_prefix(p)
        .map(|kv| {
            let (_, v) = kv.map_err(engine("scan records"))?;
            dec(what, &v)
        })
        .collect()
}

/// Read-modify-write one JSON record atomically; `None` if it does not exist.
pub(crate) fn update<T: DeserializeOwned + Serialize>(
    tree: &sled::Tree,
    k: &[u8],
    what: &'static str,
    f: impl Fn(&mut T),
) -> Result<Option<T>, MetaError> {
    tree.transaction(|t| {
        let Some(mut rec) = tx_get::<T>(t, k, what)? else {
            return Ok(None);
        };
        f(&mut rec);
        t.insert(k, enc(&rec))?;
        Ok(Some(rec))
    })
    .map_err(tx_err("update record"))
}
