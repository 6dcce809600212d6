//! Coffer's domain: enrollment, authentication, block ingest, backup
//! sessions, commits and the server-stamped health facts of each archive.
//!
//! The core names neither the HTTP stack, nor sled, nor object_store: it
//! speaks to metadata through `coffer-meta`'s domain API and to blocks through
//! `coffer-storage`'s `BlockStore`, and takes request bodies as plain byte
//! streams. Time comes from an injected [`Clock`].

mod admin;
mod auth;
mod clock;
mod error;
pub mod events;
mod ingest;
pub mod plugins;
mod sessions;

use std::sync::Arc;

pub use clock::{Clock, ManualClock, SystemClock};
pub use coffer_meta::{DeviceRecord, MetaStore};
pub use coffer_storage::{BlockStore, StorageConfig};
pub use error::CoreError;
pub use ingest::{BlockRead, PutBlock};

use serde::{Deserialize, Serialize};

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Limits of the agent protocol, the `[limits]` table of the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest block accepted, in bytes (413 `block_too_large` above).
    /// Default 16 MiB.
    #[serde(default = "default_max_block")]
    pub max_block_bytes: u64,
    /// Most ids in one `blocks/missing` request. Default 100 000.
    #[serde(default = "default_max_missing")]
    pub max_missing_ids: usize,
    /// Most block ids one commit may reference. Default 10 000 000.
    #[serde(default = "default_max_commit")]
    pub max_commit_blocks: usize,
}

fn default_max_block() -> u64 {
    16 << 20
}
fn default_max_missing() -> usize {
    100_000
}
fn default_max_commit() -> usize {
    10_000_000
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_block_bytes: default_max_block(),
            max_missing_ids: default_max_missing(),
            max_commit_blocks: default_max_commit(),
        }
    }
}

impl Limits {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_block_bytes == 0 || self.max_block_bytes > 1 << 30 {
            return Err(format!(
                "limits.max_block_bytes is {}; it must be between 1 and 1073741824 (1 GiB)",
                self.max_block_bytes
            ));
        }
        if self.max_missing_ids < 10_000 {
            return Err(format!(
                "limits.max_missing_ids is {}; agents need at least 10000",
                self.max_missing_ids
            ));
        }
        if self.max_commit_blocks == 0 {
            return Err("limits.max_commit_blocks must be at least 1".into());
        }
        Ok(())
    }
}

/// The destination server's domain service. Cheap to clone.
#[derive(Clone)]
pub struct Coffer {
    pub(crate) meta: Arc<MetaStore>,
    pub(crate) storage: BlockStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: Limits,
    pub(crate) events: Arc<events::EventBus>,
    pub(crate) plugins: Arc<std::sync::OnceLock<Arc<dyn plugins::PluginAdmin>>>,
}

impl std::fmt::Debug for Coffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coffer")
            .field("storage", &self.storage)
            .finish()
    }
}

impl Coffer {
    pub fn new(
        meta: Arc<MetaStore>,
        storage: BlockStore,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Self {
        Self {
            meta,
            storage,
            clock,
            limits,
            events: Arc::default(),
            plugins: Arc::default(),
        }
    }

    /// Where the server's events are published (commits, sessions,
    /// enrollments, revocations).
    pub fn events(&self) -> &events::EventBus {
        &self.events
    }

    /// Publish an event about `archive`'s device (never fails the caller).
    pub(crate) fn publish_for_archive(
        &self,
        archive: &coffer_types::Name,
        kind: impl FnOnce(coffer_types::Name) -> events::EventKind,
    ) {
        let found = self
            .meta
            .archive(archive)
            .ok()
            .flatten()
            .and_then(|a| self.device(&a.device).ok());
        if let Some(d) = found {
            self.events.publish(events::Event {
                at: self.now(),
                org: d.org.clone(),
                kind: kind(d.device),
            });
        }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn storage(&self) -> &BlockStore {
        &self.storage
    }

    pub(crate) fn now(&self) -> coffer_types::UnixMillis {
        self.clock.now()
    }

    /// Readiness: the storage backend answers.
    pub async fn ready(&self) -> Result<()> {
        self.storage.check().await.map_err(CoreError::from)
    }

    /// Make all metadata written so far durable (used at shutdown).
    pub async fn sync(&self) -> Result<()> {
        self.meta.durable().await.map_err(CoreError::from)
    }
}

/// 16 random bytes from the OS, for ids and tokens.
pub(crate) fn random16() -> Result<[u8; 16]> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| CoreError::Internal(format!("read OS randomness: {e}")))?;
    Ok(b)
}
