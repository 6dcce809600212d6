//! Coffer's metadata store, and the only crate that names `sled`.
//!
//! The API is shaped by the domain and says nothing about the engine, so sled
//! can be swapped without touching the core. It is built in two layers:
//!
//! * **The engine** (`engine.rs`, `durability.rs`, `migrate.rs`): trees, key
//!   and value encoding, transactions, the durability point and the schema
//!   version with its upgrades.
//! * **One module per aggregate**, each owning its stored record types (not
//!   the wire types) and methods: `orgs` (orgs and users), `accounts` (admin
//!   accounts and API tokens), `devices` (with their indexes), `archives`,
//!   `blocks` (with pins), `sessions`, `backups` (with the commit), `refs`,
//!   `escrow` (escrowed keys and restore tokens), `alerts` (alert levels,
//!   the due index and the outbox), `plugins` (kv data and
//!   state), `audit` (the hash-chained log).
//!
//! Two things matter beyond plain storage:
//!
//! * **Durability.** A write is applied at once but is only *durable* after
//!   [`MetaStore::durable`] returns: sled's own `flush()` ends in
//!   `sync_file_range` on Linux, which flushes neither the device cache nor file
//!   metadata, so the committer thread follows every flush with `fdatasync` on
//!   sled's files. Concurrent callers share one flush (group commit).
//! * **Audit with the change.** Every admin change writes its audit entry in
//!   the same transaction as the change, so both are durable together.

mod accounts;
mod alerts;
mod archives;
mod audit;
mod backups;
mod blocks;
mod deliveries;
mod devices;
mod durability;
mod engine;
mod escrow;
mod gc;
mod holds;
mod migrate;
mod orgs;
mod plugins;
mod quotas;
mod refs;
mod sessions;
mod store;

pub use accounts::{AccountRecord, AccountRole, AdminTokenRecord, BOOTSTRAP_ACCOUNT};
pub use alerts::{AlertRecord, AlertStateRecord};
pub use archives::ArchiveRecord;
pub use audit::{AuditBreak, AuditDraft, AuditFilter, AuditRecord, AuditVerdict};
pub use backups::{BackupRecord, BackupStatsRecord, CommitOutcome};
pub use blocks::{BlockRecord, Damage, DamagedBlock, StoredBlock};
pub use deliveries::DeliveryRecord;
pub use devices::DeviceRecord;
pub use escrow::{EscrowRecord, RestoreTokenRecord};
pub use gc::{Epochs, JournalEntry, PackJournalRecord};
pub use holds::{
    AddCustodian, Created, CustodianRecord, KeepRecord, MatterRecord, MatterStatus, PolicyRecord,
    ReleaseStep,
};
pub use migrate::SCHEMA_VERSION;
pub use orgs::{OrgRecord, OrgSettingsRecord, UserRecord};
pub use plugins::PluginStateRecord;
pub use quotas::QuotaWarningRecord;
pub use refs::{NamedRef, SetRefOutcome};
pub use sessions::{SessionRecord, SessionStatus};
pub use store::{MetaStore, DEFAULT_CACHE_BYTES};

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
    #[error("metadata at {path} has schema version {found}; this server reads version {expected} (and upgrades older ones). Upgrade the server, or restore a metadata backup")]
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
    /// A flush failed earlier: nothing written since can be known durable
    /// (after a failed fsync the kernel may have dropped the unwritten
    /// pages and a later fsync succeed), so no write is acknowledged until
    /// the server restarts and recovers from what is on disk.
    #[error("the metadata store stopped taking writes after a failed flush ({0}); restart the server once the disk is healthy")]
    FailStopped(String),
    /// A garbage-collection sweep is deleting this block's bytes right
    /// now; storing it again must wait until it is done.
    #[error("block {0} is being removed by garbage collection; send it again in a moment")]
    BeingDestroyed(coffer_types::BlockId),
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests;
