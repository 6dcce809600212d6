//! The sled-backed store: typed trees, transactions, schema version.
//!
//! Keys are `part \0 part …`: names never contain a NUL (see
//! `coffer_types::Name`), and block ids are raw 32 bytes at the end of a key.

use std::path::{Path, PathBuf};

use coffer_types::wire::SessionState;
use coffer_types::{BlockId, Name, UnixMillis};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sled::transaction::{abort, ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::durability::{sync_dir, GroupCommit};
use crate::records::*;
use crate::{MetaError, Result};

/// The schema this build reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

const SCHEMA_KEY: &[u8] = b"schema_version";
const ADMIN_TOKEN_KEY: &[u8] = b"admin_token_hash";
/// Block ids per stored chunk of a backup's reference list (64 KiB values, so
/// sled never spills them to its separate blob files).
const REFS_PER_CHUNK: usize = 2048;

/// What a commit did.
#[derive(Debug, Clone, PartialEq)]
pub enum CommitOutcome {
    /// The backup was recorded by this call.
    Committed(BackupRecord),
    /// The session was committed before (a retried commit): its backup.
    AlreadyCommitted(BackupRecord),
    /// These referenced blocks are not in the archive; nothing was written.
    MissingBlocks(Vec<BlockId>),
    /// The session was aborted.
    SessionAborted,
    /// No such session in this archive.
    NoSession,
}

/// The metadata store. Cheap to share behind an `Arc`; every method is safe to
/// call concurrently. Writes are applied at once and become durable at the
/// next [`MetaStore::durable`].
pub struct MetaStore {
    path: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    orgs: sled::Tree,
    users: sled::Tree,
    devices: sled::Tree,
    tokens: sled::Tree,
    archives: sled::Tree,
    blocks: sled::Tree,
    sessions: sled::Tree,
    backups: sled::Tree,
    refs: sled::Tree,
    pins: sled::Tree,
    named: sled::Tree,
    plugin_kv: sled::Tree,
    commit: GroupCommit,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore")
            .field("path", &self.path)
            .finish()
    }
}

fn engine(context: &'static str) -> impl FnOnce(sled::Error) -> MetaError {
    move |e| MetaError::Engine {
        context,
        source: Box::new(e),
    }
}

fn tx_err(context: &'static str) -> impl FnOnce(TransactionError<MetaError>) -> MetaError {
    move |e| match e {
        TransactionError::Abort(e) => e,
        TransactionError::Storage(e) => engine(context)(e),
    }
}

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len() + 1).sum());
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            out.push(0);
        }
        out.extend_from_slice(p);
    }
    out
}

fn prefix(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = key(parts);
    k.push(0);
    k
}

fn enc<T: Serialize>(v: &T) -> Vec<u8> {
    // Serializing plain records to JSON cannot fail.
    serde_json::to_vec(v).expect("records serialize")
}

fn dec<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| MetaError::Corrupt { what, source })
}

fn tx_dec<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> std::result::Result<T, ConflictableTransactionError<MetaError>> {
    dec(what, bytes).map_err(ConflictableTransactionError::Abort)
}

impl MetaStore {
    /// Open (or create) the store in directory `path`. Refuses a database whose
    /// schema version is not [`SCHEMA_VERSION`].
    pub fn open(path: &Path) -> Result<Self> {
        let open_err = |source: Box<dyn std::error::Error + Send + Sync>| MetaError::Open {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(path).map_err(|e| open_err(Box::new(e)))?;
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            // The committer thread flushes and fsyncs on demand; sled's own
            // periodic flush only adds background work.
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| open_err(Box::new(e)))?;
        let tree = |name: &str| db.open_tree(name).map_err(|e| open_err(Box::new(e)));
        let meta = tree("meta")?;
        match meta
            .get(SCHEMA_KEY)
            .map_err(engine("read schema version"))?
        {
            Some(v) => {
                let found = v
                    .as_ref()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .unwrap_or(u32::MAX);
                if found != SCHEMA_VERSION {
                    return Err(MetaError::SchemaMismatch {
                        path: path.to_path_buf(),
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
            None => {
                meta.insert(SCHEMA_KEY, &SCHEMA_VERSION.to_be_bytes())
                    .map_err(engine("write schema version"))?;
            }
        }
        let store = Self {
            orgs: tree("orgs")?,
            users: tree("users")?,
            devices: tree("devices")?,
            tokens: tree("tokens")?,
            archives: tree("archives")?,
            blocks: tree("blocks")?,
            sessions: tree("sessions")?,
            backups: tree("backups")?,
            refs: tree("refs")?,
            pins: tree("pins")?,
            named: tree("named_refs")?,
            plugin_kv: tree("plugin_kv")?,
            meta,
            commit: GroupCommit::start(db.clone(), path.to_path_buf())?,
            db,
            path: path.to_path_buf(),
        };
        if let Some(parent) = path.parent() {
            sync_dir(parent).map_err(MetaError::Sync)?;
        }
        store.durable_blocking()?;
        Ok(store)
    }

    /// Wait until every write applied before this call is on stable storage.
    /// Concurrent callers share one flush.
    pub async fn durable(&self) -> Result<()> {
        self.commit.durable().await
    }

    /// [`MetaStore::durable`] for code outside an async runtime.
    pub fn durable_blocking(&self) -> Result<()> {
        self.commit.durable_blocking()
    }

    /// Bytes the database takes on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    // ---- admin token ----

    pub fn admin_token_hash(&self) -> Result<Option<[u8; 32]>> {
        Ok(self
            .meta
            .get(ADMIN_TOKEN_KEY)
            .map_err(engine("read admin token"))?
            .and_then(|v| v.as_ref().try_into().ok()))
    }

    pub fn set_admin_token_hash(&self, hash: [u8; 32]) -> Result<()> {
        self.meta
            .insert(ADMIN_TOKEN_KEY, &hash)
            .map_err(engine("write admin token"))?;
        Ok(())
    }

    // ---- orgs and users ----

    /// Create an org; false if one of that name exists.
    pub fn create_org(&self, rec: &OrgRecord) -> Result<bool> {
        insert_new(&self.orgs, rec.name.as_str().as_bytes(), enc(rec))
    }

    pub fn org(&self, name: &Name) -> Result<Option<OrgRecord>> {
        get(&self.orgs, name.as_str().as_bytes(), "org")
    }

    pub fn orgs(&self) -> Result<Vec<OrgRecord>> {
        scan(&self.orgs, &[], "org")
    }

    /// Create a user in an org; false if the org has a user of that name.
    pub fn create_user(&self, rec: &UserRecord) -> Result<bool> {
        let k = key(&[rec.org.as_str().as_bytes(), rec.name.as_str().as_bytes()]);
        insert_new(&self.users, &k, enc(rec))
    }

    pub fn user(&self, org: &Name, name: &Name) -> Result<Option<UserRecord>> {
        let k = key(&[org.as_str().as_bytes(), name.as_str().as_bytes()]);
        get(&self.users, &k, "user")
    }

    pub fn users(&self) -> Result<Vec<UserRecord>> {
        scan(&self.users, &[], "user")
    }

    // ---- devices ----

    /// Record a new device, its token hash and its (empty) archive atomically.
    pub fn enroll(&self, device: &DeviceRecord, archive: &ArchiveRecord) -> Result<()> {
        (&self.devices, &self.tokens, &self.archives)
            .transaction(|(devices, tokens, archives)| {
                devices.insert(device.id.as_str().as_bytes(), enc(device))?;
                tokens.insert(&device.token_hash[..], device.id.as_str().as_bytes())?;
                archives.insert(archive.id.as_str().as_bytes(), enc(archive))?;
                Ok(())
            })
            .map_err(tx_err("enroll device"))
    }

    pub fn device(&self, id: &Name) -> Result<Option<DeviceRecord>> {
        get(&self.devices, id.as_str().as_bytes(), "device")
    }

    pub fn devices(&self) -> Result<Vec<DeviceRecord>> {
        scan(&self.devices, &[], "device")
    }

    /// The device holding the token whose hash is `hash`, revoked or not.
    pub fn device_by_token(&self, hash: &[u8; 32]) -> Result<Option<DeviceRecord>> {
        let Some(id) = self.tokens.get(hash).map_err(engine("read token"))? else {
            return Ok(None);
        };
        get(&self.devices, &id, "device")
    }

    /// Replace a device's token: with `Some(hash)` a new token (rotation, the
    /// device is active again), with `None` revoke it (no token works). Returns
    /// the updated device, or `None` if there is no such device.
    pub fn set_device_token(
        &self,
        id: &Name,
        new_hash: Option<[u8; 32]>,
    ) -> Result<Option<DeviceRecord>> {
        (&self.devices, &self.tokens)
            .transaction(|(devices, tokens)| {
                let Some(raw) = devices.get(id.as_str().as_bytes())? else {
                    return Ok(None);
                };
                let mut dev: DeviceRecord = tx_dec("device", &raw)?;
                tokens.remove(&dev.token_hash[..])?;
                match new_hash {
                    Some(h) => {
                        dev.token_hash = h;
                        dev.revoked = false;
                        tokens.insert(&h[..], id.as_str().as_bytes())?;
                    }
                    None => dev.revoked = true,
                }
                devices.insert(id.as_str().as_bytes(), enc(&dev))?;
                Ok(Some(dev))
            })
            .map_err(tx_err("replace device token"))
    }

    /// Note that the device connected at `now`, with its agent version.
    pub fn touch_device(&self, id: &Name, now: UnixMillis, agent: Option<&str>) -> Result<()> {
        update(
            &self.devices,
            id.as_str().as_bytes(),
            "device",
            |d: &mut DeviceRecord| {
                d.last_connection = Some(d.last_connection.map_or(now, |t| t.max(now)));
                if let Some(a) = agent {
                    d.agent_version = Some(a.to_owned());
                }
            },
        )
        .map(|_| ())
    }

    // ---- archives ----

    pub fn archive(&self, id: &Name) -> Result<Option<ArchiveRecord>> {
        get(&self.archives, id.as_str().as_bytes(), "archive")
    }

    /// Record activity (a block or a progress report) on an archive. A clock
    /// that moved backwards never moves a recorded time back.
    pub fn record_activity(
        &self,
        archive: &Name,
        now: UnixMillis,
        percent: Option<f64>,
    ) -> Result<()> {
        update(
            &self.archives,
            archive.as_str().as_bytes(),
            "archive",
            |a: &mut ArchiveRecord| {
                a.last_activity = Some(a.last_activity.map_or(now, |t| t.max(now)));
                if percent.is_some() {
                    a.percent_complete = percent;
                }
            },
        )
        .map(|_| ())
    }

    // ---- blocks ----

    pub fn block(&self, archive: &Name, id: &BlockId) -> Result<Option<BlockRecord>> {
        let k = key(&[archive.as_str().as_bytes(), id.as_bytes()]);
        Ok(self
            .blocks
            .get(k)
            .map_err(engine("read block record"))?
            .and_then(|v| BlockRecord::decode(&v)))
    }

    /// Record that `archive` holds block `id` (already written to storage),
    /// update the archive's counters and activity, and pin the block to an
    /// open session. Returns true if the block was new to the archive.
    pub fn insert_block(
        &self,
        archive: &Name,
        id: &BlockId,
        rec: &BlockRecord,
        pin: Option<&Name>,
    ) -> Result<bool> {
        let bk = key(&[archive.as_str().as_bytes(), id.as_bytes()]);
        let encoded = rec.encode();
        let pin_key = pin.map(|s| {
            key(&[
                archive.as_str().as_bytes(),
                s.as_str().as_bytes(),
                id.as_bytes(),
            ])
        });
        (&self.blocks, &self.archives, &self.pins)
            .transaction(|(blocks, archives, pins)| {
                let created = blocks.get(&bk)?.is_none();
                if created {
                    blocks.insert(bk.as_slice(), encoded.as_slice())?;
                }
                let Some(raw) = archives.get(archive.as_str().as_bytes())? else {
                    return abort(MetaError::Engine {
                        context: "insert block",
                        source: format!("archive {archive} has no record").into(),
                    });
                };
                let mut a: ArchiveRecord = tx_dec("archive", &raw)?;
                if created {
                    a.bytes_stored += rec.size;
                    a.block_count += 1;
                }
                a.last_activity = Some(
                    a.last_activity
                        .map_or(rec.stored_at, |t| t.max(rec.stored_at)),
                );
                archives.insert(archive.as_str().as_bytes(), enc(&a))?;
                if let Some(pk) = &pin_key {
                    pins.insert(pk.as_slice(), &[][..])?;
                }
                Ok(created)
            })
            .map_err(tx_err("insert block record"))
    }

    /// The ids among `ids` the archive does not hold, in the order given.
    /// With `pin`, the ids it does hold are pinned to that session.
    pub fn missing(
        &self,
        archive: &Name,
        ids: &[BlockId],
        pin: Option<&Name>,
    ) -> Result<Vec<BlockId>> {
        let a = archive.as_str().as_bytes();
        let mut missing = Vec::new();
        let mut batch = sled::Batch::default();
        for id in ids {
            let present = self
                .blocks
                .contains_key(key(&[a, id.as_bytes()]))
                .map_err(engine("read block record"))?;
            if !present {
                missing.push(*id);
            } else if let Some(s) = pin {
                batch.insert(key(&[a, s.as_str().as_bytes(), id.as_bytes()]), &[][..]);
            }
        }
        if pin.is_some() {
            self.pins.apply_batch(batch).map_err(engine("pin blocks"))?;
        }
        Ok(missing)
    }

    // ---- sessions ----

    pub fn create_session(&self, rec: &SessionRecord) -> Result<()> {
        let k = key(&[rec.archive.as_str().as_bytes(), rec.id.as_str().as_bytes()]);
        self.sessions
            .insert(k, enc(rec))
            .map_err(engine("write session"))?;
        Ok(())
    }

    pub fn session(&self, archive: &Name, id: &Name) -> Result<Option<SessionRecord>> {
        let k = key(&[archive.as_str().as_bytes(), id.as_str().as_bytes()]);
        get(&self.sessions, &k, "session")
    }

    pub fn sessions(&self, archive: &Name) -> Result<Vec<SessionRecord>> {
        scan(
            &self.sessions,
            &prefix(&[archive.as_str().as_bytes()]),
            "session",
        )
    }

    /// Apply `f` to a session atomically; `None` if there is no such session.
    pub fn update_session(
        &self,
        archive: &Name,
        id: &Name,
        f: impl Fn(&mut SessionRecord),
    ) -> Result<Option<SessionRecord>> {
        let k = key(&[archive.as_str().as_bytes(), id.as_str().as_bytes()]);
        update(&self.sessions, &k, "session", f)
    }

    /// Blocks pinned to a session.
    pub fn pinned_count(&self, archive: &Name, session: &Name) -> Result<u64> {
        let p = prefix(&[archive.as_str().as_bytes(), session.as_str().as_bytes()]);
        Ok(self.pins.scan_prefix(p).count() as u64)
    }

    /// Drop a closed session's pins: its blocks are now protected by the
    /// backup that references them, or free to collect.
    pub fn release_pins(&self, archive: &Name, session: &Name) -> Result<u64> {
        let p = prefix(&[archive.as_str().as_bytes(), session.as_str().as_bytes()]);
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for kv in self.pins.scan_prefix(p) {
            let (k, _) = kv.map_err(engine("scan pins"))?;
            batch.remove(k);
            n += 1;
        }
        self.pins
            .apply_batch(batch)
            .map_err(engine("release pins"))?;
        Ok(n)
    }

    /// Commit a session into `backup` atomically: every referenced block must be
    /// in the archive, the session must be open (or already committed, which
    /// returns its backup), and the archive's counters and last-completed time
    /// move in the same transaction. `completed` marks a backup that covered
    /// 100 % of the selection.
    pub fn commit(
        &self,
        backup: &BackupRecord,
        blocks: &[BlockId],
        completed: bool,
    ) -> Result<CommitOutcome> {
        let archive = backup.archive.as_str().as_bytes();
        let sk = key(&[archive, backup.session.as_str().as_bytes()]);
        let outcome = (
            &self.sessions,
            &self.blocks,
            &self.backups,
            &self.refs,
            &self.archives,
        )
            .transaction(|(sessions, blocks_t, backups, refs, archives)| {
                let Some(raw) = sessions.get(&sk)? else {
                    return Ok(CommitOutcome::NoSession);
                };
                let mut session: SessionRecord = tx_dec("session", &raw)?;
                match session.state {
                    SessionState::Aborted => return Ok(CommitOutcome::SessionAborted),
                    SessionState::Committed => {
                        let bid = session.backup.clone().unwrap_or_else(|| backup.id.clone());
                        let raw = backups.get(key(&[archive, bid.as_str().as_bytes()]))?;
                        return match raw {
                            Some(raw) => {
                                Ok(CommitOutcome::AlreadyCommitted(tx_dec("backup", &raw)?))
                            }
                            None => abort(MetaError::Engine {
                                context: "commit",
                                source: format!(
                                    "committed session {} has no backup {bid}",
                                    backup.session
                                )
                                .into(),
                            }),
                        };
                    }
                    SessionState::Open => {}
                }
                let missing = missing_in(blocks_t, archive, blocks)?;
                if !missing.is_empty() {
                    return Ok(CommitOutcome::MissingBlocks(missing));
                }
                backups.insert(key(&[archive, backup.id.as_str().as_bytes()]), enc(backup))?;
                for (i, chunk) in blocks.chunks(REFS_PER_CHUNK).enumerate() {
                    let mut v = Vec::with_capacity(chunk.len() * 32);
                    for id in chunk {
                        v.extend_from_slice(id.as_bytes());
                    }
                    let n = (i as u32).to_be_bytes();
                    refs.insert(key(&[archive, backup.id.as_str().as_bytes(), &n]), v)?;
                }
                session.state = SessionState::Committed;
                session.backup = Some(backup.id.clone());
                session.last_activity = session.last_activity.max(backup.committed_at);
                session.percent = backup.stats.percent;
                sessions.insert(sk.as_slice(), enc(&session))?;
                if let Some(raw) = archives.get(archive)? {
                    let mut a: ArchiveRecord = tx_dec("archive", &raw)?;
                    a.backup_count += 1;
                    a.percent_complete = Some(backup.stats.percent);
                    if completed {
                        let t = backup.committed_at;
                        a.last_completed = Some(a.last_completed.map_or(t, |c| c.max(t)));
                    }
                    archives.insert(archive, enc(&a))?;
                }
                Ok(CommitOutcome::Committed(backup.clone()))
            })
            .map_err(tx_err("commit backup"))?;
        Ok(outcome)
    }

    // ---- named references ----

    /// Point the archive's reference `name` at `block`, which must be stored
    /// in the archive (checked in the same transaction). Returns false, and
    /// changes nothing, if the block is not stored.
    pub fn set_named_ref(&self, archive: &Name, name: &Name, rec: &NamedRef) -> Result<bool> {
        let a = archive.as_str().as_bytes();
        let bk = key(&[a, rec.block.as_bytes()]);
        let nk = key(&[a, name.as_str().as_bytes()]);
        (&self.blocks, &self.named)
            .transaction(|(blocks, named)| {
                if blocks.get(&bk)?.is_none() {
                    return Ok(false);
                }
                named.insert(nk.as_slice(), enc(rec))?;
                Ok(true)
            })
            .map_err(tx_err("set named reference"))
    }

    /// A plugin's key-value entry. Plugin names hold no NUL byte, so
    /// `plugin NUL key` keeps every plugin in its own key range.
    pub fn plugin_kv_get(&self, plugin: &str, k: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .plugin_kv
            .get(key(&[plugin.as_bytes(), k.as_bytes()]))
            .map_err(engine("read plugin key"))?
            .map(|v| v.to_vec()))
    }

    /// Set an entry unless the plugin's keys and values would then exceed
    /// `max_total` bytes (`Ok(Err(why))`).
    pub fn plugin_kv_set(
        &self,
        plugin: &str,
        k: &str,
        value: &[u8],
        max_total: u64,
    ) -> Result<std::result::Result<(), String>> {
        let mut used = 0u64;
        for kv in self.plugin_kv.scan_prefix(prefix(&[plugin.as_bytes()])) {
            let (ek, ev) = kv.map_err(engine("scan plugin keys"))?;
            if ek[plugin.len() + 1..] != *k.as_bytes() {
                used += (ek.len() - plugin.len() - 1 + ev.len()) as u64;
            }
        }
        if used + (k.len() + value.len()) as u64 > max_total {
            return Ok(Err(format!(
                "the plugin's key-value store is full ({max_total} bytes)"
            )));
        }
        self.plugin_kv
            .insert(key(&[plugin.as_bytes(), k.as_bytes()]), value)
            .map_err(engine("write plugin key"))?;
        Ok(Ok(()))
    }

    pub fn plugin_kv_delete(&self, plugin: &str, k: &str) -> Result<()> {
        self.plugin_kv
            .remove(key(&[plugin.as_bytes(), k.as_bytes()]))
            .map_err(engine("delete plugin key"))?;
        Ok(())
    }

    /// The plugin's keys that start with `starts`, in order.
    pub fn plugin_kv_keys(&self, plugin: &str, starts: &str) -> Result<Vec<String>> {
        let mut p = prefix(&[plugin.as_bytes()]);
        p.extend_from_slice(starts.as_bytes());
        let mut out = Vec::new();
        for kv in self.plugin_kv.scan_prefix(p) {
            let (ek, _) = kv.map_err(engine("scan plugin keys"))?;
            out.push(String::from_utf8_lossy(&ek[plugin.len() + 1..]).into_owned());
        }
        Ok(out)
    }

    pub fn named_ref(&self, archive: &Name, name: &Name) -> Result<Option<NamedRef>> {
        get(
            &self.named,
            &key(&[archive.as_str().as_bytes(), name.as_str().as_bytes()]),
            "named reference",
        )
    }

    // ---- backups ----

    /// The archive's committed backups, oldest first.
    pub fn backups(&self, archive: &Name) -> Result<Vec<BackupRecord>> {
        let mut v: Vec<BackupRecord> = scan(
            &self.backups,
            &prefix(&[archive.as_str().as_bytes()]),
            "backup",
        )?;
        v.sort_by(|a, b| a.committed_at.cmp(&b.committed_at).then(a.id.cmp(&b.id)));
        Ok(v)
    }

    pub fn backup(&self, archive: &Name, id: &Name) -> Result<Option<BackupRecord>> {
        get(
            &self.backups,
            &key(&[archive.as_str().as_bytes(), id.as_str().as_bytes()]),
            "backup",
        )
    }

    /// The blocks a backup references, in the order committed.
    pub fn backup_blocks(&self, archive: &Name, id: &Name) -> Result<Vec<BlockId>> {
        let p = prefix(&[archive.as_str().as_bytes(), id.as_str().as_bytes()]);
        let mut out = Vec::new();
        for kv in self.refs.scan_prefix(p) {
            let (_, v) = kv.map_err(engine("read backup references"))?;
            for c in v.chunks_exact(32) {
                let mut b = [0u8; 32];
                b.copy_from_slice(c);
                out.push(BlockId::from_bytes(b));
            }
        }
        Ok(out)
    }
}

fn missing_in(
    blocks: &TransactionalTree,
    archive: &[u8],
    ids: &[BlockId],
) -> std::result::Result<Vec<BlockId>, ConflictableTransactionError<MetaError>> {
    let mut missing = Vec::new();
    for id in ids {
        if blocks.get(key(&[archive, id.as_bytes()]))?.is_none() {
            missing.push(*id);
        }
    }
    Ok(missing)
}

fn insert_new(tree: &sled::Tree, k: &[u8], v: Vec<u8>) -> Result<bool> {
    let r = tree
        .compare_and_swap(k, None as Option<&[u8]>, Some(v))
        .map_err(engine("create record"))?;
    Ok(r.is_ok())
}

fn get<T: DeserializeOwned>(tree: &sled::Tree, k: &[u8], what: &'static str) -> Result<Option<T>> {
    match tree.get(k).map_err(engine("read record"))? {
        Some(v) => Ok(Some(dec(what, &v)?)),
        None => Ok(None),
    }
}

fn scan<T: DeserializeOwned>(tree: &sled::Tree, p: &[u8], what: &'static str) -> Result<Vec<T>> {
    tree.scan_prefix(p)
        .map(|kv| {
            let (_, v) = kv.map_err(engine("scan records"))?;
            dec(what, &v)
        })
        .collect()
}

/// Read-modify-write one JSON record atomically; `None` if it does not exist.
fn update<T: DeserializeOwned + Serialize>(
    tree: &sled::Tree,
    k: &[u8],
    what: &'static str,
    f: impl Fn(&mut T),
) -> Result<Option<T>> {
    tree.transaction(|t| {
        let Some(raw) = t.get(k)? else {
            return Ok(None);
        };
        let mut rec: T = tx_dec(what, &raw)?;
        f(&mut rec);
        t.insert(k, enc(&rec))?;
        Ok(Some(rec))
    })
    .map_err(tx_err("update record"))
}

#[cfg(test)]
mod tests;
