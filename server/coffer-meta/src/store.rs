//! [`MetaStore`]: opening the database (schema check and upgrades) and the
//! durability point. The records and their methods live in one module per
//! aggregate (`orgs.rs`, `devices.rs`, `blocks.rs`, …).

use std::path::{Path, PathBuf};

use coffer_types::UnixMillis;

use crate::durability::{sync_dir, GroupCommit};
use crate::engine::Trees;
use crate::{MetaError, Result};

/// sled's own default cache: 1 GiB.
pub const DEFAULT_CACHE_BYTES: u64 = 1 << 30;

/// The metadata store. Cheap to share behind an `Arc`; every method is safe to
/// call concurrently. Writes are applied at once and become durable at the
/// next [`MetaStore::durable`].
pub struct MetaStore {
    path: PathBuf,
    db: sled::Db,
    pub(crate) t: Trees,
    commit: GroupCommit,
    upgraded_from: Option<u32>,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore")
            .field("path", &self.path)
            .finish()
    }
}

impl MetaStore {
    /// Open (or create) the store in directory `path`. A database of an older
    /// schema is upgraded (see `migrate.rs`); one of a newer schema is
    /// refused. `now` stamps what an upgrade writes.
    pub fn open(path: &Path, now: UnixMillis) -> Result<Self> {
        Self::open_with(path, now, DEFAULT_CACHE_BYTES)
    }

    /// [`MetaStore::open`] with sled's page cache capped at `cache_bytes`
    /// (it grows with the metadata up to this, and counts in the server's
    /// memory).
    pub fn open_with(path: &Path, now: UnixMillis, cache_bytes: u64) -> Result<Self> {
        let open_err = |source: Box<dyn std::error::Error + Send + Sync>| MetaError::Open {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(path).map_err(|e| open_err(Box::new(e)))?;
        let db = sled::Config::new()
            .path(path)
            .mode(sled::Mode::HighThroughput)
            .cache_capacity(cache_bytes)
            // The committer thread flushes and fsyncs on demand; sled's own
            // periodic flush only adds background work.
            .flush_every_ms(Some(1000))
            .open()
            .map_err(|e| open_err(Box::new(e)))?;
        let t = Trees::open(&db).map_err(|e| open_err(Box::new(e)))?;
        let found = crate::migrate::prepare(path, &db, &t, now)?;
        let upgraded_from = found.filter(|v| *v != crate::SCHEMA_VERSION);
        let store = Self {
            commit: GroupCommit::start(db.clone(), path.to_path_buf())?,
            t,
            db,
            path: path.to_path_buf(),
            upgraded_from,
        };
        if let Some(parent) = path.parent() {
            sync_dir(parent).map_err(MetaError::Sync)?;
        }
        store.durable_blocking()?;
        Ok(store)
    }

    /// The schema version this open upgraded from, if it upgraded.
    pub fn upgraded_from(&self) -> Option<u32> {
        self.upgraded_from
    }

    /// Wait until every write applied before this call is on stable storage.
    /// Concurrent callers share one flush.
    /// Why the store stopped taking writes, if a flush failed (then
    /// [`MetaStore::durable`] refuses until the process restarts).
    pub fn failure(&self) -> Option<&str> {
        self.commit.failure()
    }

    #[cfg(test)]
    pub(crate) fn fail_next_flush(&self) {
        self.commit.fail_next_flush();
    }

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
}
