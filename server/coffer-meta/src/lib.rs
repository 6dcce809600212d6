//! Coffer's metadata store, and the only crate that names `sled`.
//!
//! The API is shaped by the domain (orgs, devices, archives, blocks, sessions,
//! backups) and says nothing about the engine, so sled can be swapped without
//! touching the core. Two things matter beyond plain storage:
//!
//! * **Durability.** A write is applied at once but is only *durable* after
//!   [`MetaStore::durable`] returns: sled's own `flush()` ends in
//!   `sync_file_range` on Linux, which flushes neither the device cache nor file
//!   metadata, so the committer thread follows every flush with `fdatasync` on
//!   sled's files. Concurrent callers share one flush (group commit).
//! * **Schema version.** Stored in the database and checked at open; a
//!   database written by a newer schema is refused, not misread.

mod durability;
mod records;
mod store;

pub use records::{
    ArchiveRecord, BackupRecord, BlockRecord, DeviceRecord, NamedRef, OrgRecord, SessionRecord,
    UserRecord,
};
pub use store::{CommitOutcome, MetaStore, SCHEMA_VERSION};

/// A metadata failure. Domain outcomes (already exists, missing blocks) are
/// return values, not errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MetaError {
    #[error("open metadata at {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("metadata at {path} has schema version {found}; this server reads version {expected}. Upgrade the server, or restore a metadata backup")]
    SchemaMismatch {
        path: std::path::PathBuf,
        found: u32,
        expected: u32,
    },
    #[error("{context}: {source}")]
    Engine {
        context: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("decode {what}: {source}")]
    Corrupt {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("make metadata durable: {0}")]
    Sync(#[source] std::io::Error),
    #[error("metadata store is closed")]
    Closed,
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;
