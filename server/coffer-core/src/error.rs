//! The core's error type and its mapping onto the wire's error codes.

use coffer_meta::MetaError;
use coffer_storage::StorageError;
use coffer_types::{BlockId, ErrorCode};

/// A failed domain operation. [`CoreError::code`] gives the wire code (and so
/// the HTTP status); the message is for a person.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    #[error("the body's blake3 is {actual}, not the block id {expected} it was sent as; the block was not stored")]
    DigestMismatch { expected: BlockId, actual: BlockId },
    #[error("the block is larger than the limit of {limit} bytes")]
    BlockTooLarge { limit: u64 },
    #[error("the request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: u64 },
    #[error("{0}")]
    InvalidId(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error(
        "missing or invalid token: send \"Authorization: Bearer <token>\" with a current token"
    )]
    Unauthorized,
    /// A token that is known but does not work any more (expired, or its
    /// account is disabled): `401` with the reason.
    #[error("{0}")]
    TokenRejected(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the commit references {} block(s) the archive does not hold; upload them and commit again", .0.len())]
    MissingBlocks(Vec<BlockId>),
    #[error("{0}")]
    AlreadyExists(String),
    /// The change would break a rule of the current state (e.g. remove the
    /// last admin).
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    SessionClosed(String),
    /// Seed 000's refusal: admin restore where enhanced security is used.
    #[error("{0}")]
    ArchiveSecurityConflict(String),
    /// An escrow upload for an archive under enhanced security.
    #[error("{0}")]
    EscrowRefused(String),
    #[error("the storage is full ({0}); blocks already stored remain readable")]
    StorageFull(String),
    /// Over a device's, user's or org's quota (the message says which).
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("the storage backend cannot be reached ({0}); retry later")]
    StorageUnavailable(String),
    #[error("the byte range is outside the block of {size} bytes")]
    RangeNotSatisfiable { size: u64 },
    #[error("the upload was interrupted: {0}")]
    BodyAborted(String),
    /// A limit kept for every tenant is reached (memory for request
    /// bodies, connections): `503` with `Retry-After`.
    #[error("{0}")]
    Busy(String),
    /// The device is at its own limit of requests or sessions in flight:
    /// `429` with `Retry-After`.
    #[error("{0}")]
    TooManyRequests(String),
    #[error("{0}")]
    PluginFailed(String),
    /// A mail server or webhook receiver refused or was unreachable.
    #[error("{0}")]
    DeliveryFailed(String),
    /// The stored copy of a block is damaged (found on read): recorded, and
    /// asked again of its device at its next backup.
    #[error("{0}")]
    CorruptBlock(String),
    /// A legal hold protects it (the message names the matters).
    #[error("{0}")]
    HoldActive(String),
    #[error("{0}")]
    DeviceDeactivated(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl CoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::DigestMismatch { .. } => ErrorCode::DigestMismatch,
            Self::BlockTooLarge { .. } => ErrorCode::BlockTooLarge,
            Self::BodyTooLarge { .. } => ErrorCode::BodyTooLarge,
            Self::InvalidId(_) => ErrorCode::InvalidId,
            Self::InvalidRequest(_) | Self::BodyAborted(_) => ErrorCode::InvalidRequest,
            Self::Unauthorized | Self::TokenRejected(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::MissingBlocks(_) => ErrorCode::MissingBlocks,
            Self::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::SessionClosed(_) => ErrorCode::SessionClosed,
            Self::ArchiveSecurityConflict(_) => ErrorCode::ArchiveSecurityConflict,
            Self::EscrowRefused(_) => ErrorCode::EscrowRefused,
            Self::StorageFull(_) => ErrorCode::StorageFull,
            Self::QuotaExceeded(_) => ErrorCode::QuotaExceeded,
            Self::StorageUnavailable(_) => ErrorCode::StorageUnavailable,
            Self::RangeNotSatisfiable { .. } => ErrorCode::RangeNotSatisfiable,
            Self::Busy(_) => ErrorCode::ServerBusy,
            Self::TooManyRequests(_) => ErrorCode::TooManyRequests,
            Self::PluginFailed(_) => ErrorCode::PluginFailed,
            Self::DeliveryFailed(_) => ErrorCode::DeliveryFailed,
            Self::CorruptBlock(_) => ErrorCode::CorruptBlock,
            Self::HoldActive(_) => ErrorCode::HoldActive,
            Self::DeviceDeactivated(_) => ErrorCode::DeviceDeactivated,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// With `missing_blocks`: the ids to upload.
    pub fn missing(&self) -> Option<&[BlockId]> {
        match self {
            Self::MissingBlocks(ids) => Some(ids),
            _ => None,
        }
    }
}

impl From<MetaError> for CoreError {
    fn from(e: MetaError) -> Self {
        match e {
            MetaError::FailStopped(_) => CoreError::StorageUnavailable(e.to_string()),
            MetaError::BeingDestroyed(_) => CoreError::Busy(e.to_string()),
            e => CoreError::Internal(format!("metadata: {e}")),
        }
    }
}

impl From<StorageError> for CoreError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::NotFound { id } => {
                CoreError::NotFound(format!("block {id} is not stored"))
            }
            StorageError::Full { detail } => CoreError::StorageFull(detail),
            StorageError::Unavailable { .. } => CoreError::StorageUnavailable(e.to_string()),
            other => CoreError::Internal(format!("storage: {other}")),
        }
    }
}
