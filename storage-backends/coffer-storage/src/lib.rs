//! Coffer's block storage: one [`BlockStore`] over `object_store`, with local
//! disk, S3 (and S3-compatible servers) and memory behind it, a key layout
//! that fans out by hash prefix, and the conformance suite every backend
//! passes. This is the only crate that names `object_store`.
//!
//! A block is written in two steps. [`BlockStore::begin`] opens a spool file
//! that the caller streams the body into while it is hashed; only a body whose
//! hash is the block id and whose size is within the limit is
//! [`BlockWriter::publish`]ed. On disk the spool file lives beside the blocks
//! and publishing is `fdatasync` + rename + directory `fsync`; on S3 the spool
//! is uploaded with a conditional create (or a multipart upload for large
//! blocks). Either way `publish` returns only once the block is on stable
//! storage, and a body that fails verification is never visible.

mod config;
pub mod conformance;
mod durable;
mod pack;
mod store;
mod writer;

pub use config::{Backend, S3Config, StorageConfig};
pub use durable::create_dir_durably;
pub use pack::Location;
pub use store::{BlockRange, BlockStore, BlockStream};
pub use writer::{BlockWriter, Published, PutOutcome};

use coffer_types::BlockId;

/// A storage failure, classified by what the caller can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("block {id} not found")]
    NotFound { id: BlockId },
    /// The stored bytes are there but are not the block: a pack record
    /// whose header names another block, or no block at all.
    #[error("the stored copy of block {id} is damaged: {detail}")]
    Corrupt { id: BlockId, detail: String },
    #[error("storage is full: {detail}")]
    Full { detail: String },
    #[error("storage is unreachable ({op}): {source}")]
    Unavailable {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Backend {
        op: &'static str,
        #[source]
        source: object_store::Error,
    },
    #[error("invalid storage configuration: {0}")]
    Config(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    pub(crate) fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> StorageError {
        move |source| {
            if source.kind() == std::io::ErrorKind::StorageFull
                || source.kind() == std::io::ErrorKind::QuotaExceeded
            {
                StorageError::Full {
                    detail: format!("{op}: {source}"),
                }
            } else {
                StorageError::Io { op, source }
            }
        }
    }
}
