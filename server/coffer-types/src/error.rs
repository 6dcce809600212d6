//! The stable, machine-readable error codes of the agent protocol and the
//! admin API, each with the HTTP status it maps to and whether a retry of the
//! same request can help. This table is the one place that decides statuses.

use serde::{Deserialize, Serialize};

/// A machine-readable error code, sent as `{"error": {"code": …}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// The body's blake3 is not the id in the URL.
    DigestMismatch,
    /// A block id, name or path segment is malformed.
    InvalidId,
    /// The request body or query is not what the endpoint takes.
    InvalidRequest,
    /// No token, or a token that is unknown, revoked or malformed.
    Unauthorized,
    /// The token is valid but does not allow this operation.
    Forbidden,
    /// No such resource, or one this token may not see.
    NotFound,
    /// The method is not served at this path.
    MethodNotAllowed,
    /// A block over the configured size limit.
    BlockTooLarge,
    /// A request body (other than a block) over its limit.
    BodyTooLarge,
    /// A commit names blocks the archive does not hold.
    MissingBlocks,
    /// The resource already exists (e.g. an org name).
    AlreadyExists,
    /// The change conflicts with the current state (e.g. it would remove the
    /// last admin account); the message says what.
    Conflict,
    /// The session is committed or aborted and takes no more changes.
    SessionClosed,
    /// Administrator restore and enhanced archive security would meet: an
    /// org where `security.admin_restore` is on, with itself or an org
    /// below it using enhanced security. The message names those orgs.
    ArchiveSecurityConflict,
    /// The archive's org uses enhanced archive security: only the
    /// passphrase opens the archive, and no escrowed key is taken.
    EscrowRefused,
    /// The storage has no room; reads keep working.
    StorageFull,
    /// The upload would take a device, user or org over its storage quota;
    /// the message names the quota and its figures. Reads, commits of
    /// stored blocks and deletions keep working.
    QuotaExceeded,
    /// The storage backend cannot be reached right now.
    StorageUnavailable,
    /// A stored block does not match its id (found on read).
    CorruptBlock,
    /// The requested byte range is outside the block.
    RangeNotSatisfiable,
    /// The server is shutting down.
    ShuttingDown,
    /// The server is at a limit it keeps for everyone (connections,
    /// memory for request bodies); `Retry-After` says when to try again.
    ServerBusy,
    /// This device has as many requests or sessions in flight as it may;
    /// `Retry-After` says when to try again.
    TooManyRequests,
    /// A plugin failed (trapped, ran out of time or memory, returned an
    /// error, or is suspended); the message says which.
    PluginFailed,
    /// A mail server or webhook receiver refused a message or could not be
    /// reached; the message says what it answered.
    DeliveryFailed,
    /// A legal hold protects what the request would destroy or remove; the
    /// message names the matters.
    HoldActive,
    /// The device was deactivated: its archive is in cold storage and it
    /// may not back up until reactivated.
    DeviceDeactivated,
    /// A bug or an unexpected failure; the log has details.
    Internal,
}

impl ErrorCode {
    /// The code as sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DigestMismatch => "digest_mismatch",
            Self::InvalidId => "invalid_id",
            Self::InvalidRequest => "invalid_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::BlockTooLarge => "block_too_large",
            Self::BodyTooLarge => "body_too_large",
            Self::MissingBlocks => "missing_blocks",
            Self::AlreadyExists => "already_exists",
            Self::Conflict => "conflict",
            Self::SessionClosed => "session_closed",
            Self::ArchiveSecurityConflict => "archive_security_conflict",
            Self::EscrowRefused => "escrow_refused",
            Self::StorageFull => "storage_full",
            Self::QuotaExceeded => "quota_exceeded",
            Self::StorageUnavailable => "storage_unavailable",
            Self::CorruptBlock => "corrupt_block",
            Self::RangeNotSatisfiable => "range_not_satisfiable",
            Self::ShuttingDown => "shutting_down",
            Self::ServerBusy => "server_busy",
            Self::TooManyRequests => "too_many_requests",
            Self::PluginFailed => "plugin_failed",
            Self::DeliveryFailed => "delivery_failed",
            Self::HoldActive => "hold_active",
            Self::DeviceDeactivated => "device_deactivated",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status this code is answered with.
    pub fn http_status(self) -> u16 {
        match self {
            Self::DigestMismatch | Self::InvalidId | Self::InvalidRequest => 400,
            Self::Unauthorized | Self::DeviceDeactivated => 401,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::MissingBlocks
            | Self::AlreadyExists
            | Self::Conflict
            | Self::SessionClosed
            | Self::ArchiveSecurityConflict
            | Self::EscrowRefused
            | Self::HoldActive => 409,
            Self::BlockTooLarge | Self::BodyTooLarge => 413,
            Self::RangeNotSatisfiable => 416,
            Self::Internal | Self::CorruptBlock => 500,
            Self::StorageUnavailable | Self::ShuttingDown | Self::ServerBusy => 503,
            Self::TooManyRequests => 429,
            Self::StorageFull | Self::QuotaExceeded => 507,
            Self::PluginFailed | Self::DeliveryFailed => 502,
        }
    }

    /// Whether sending the same request again later can succeed.
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Self::StorageUnavailable
                | Self::ShuttingDown
                | Self::ServerBusy
                | Self::TooManyRequests
                | Self::StorageFull
                | Self::PluginFailed
                | Self::DeliveryFailed
                | Self::Internal
        )
    }

    /// Every code, for documentation and exhaustive tests.
    pub const ALL: &'static [ErrorCode] = &[
        Self::DigestMismatch,
        Self::InvalidId,
        Self::InvalidRequest,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::MethodNotAllowed,
        Self::BlockTooLarge,
        Self::BodyTooLarge,
        Self::MissingBlocks,
        Self::AlreadyExists,
        Self::Conflict,
        Self::SessionClosed,
        Self::ArchiveSecurityConflict,
        Self::EscrowRefused,
        Self::StorageFull,
        Self::QuotaExceeded,
        Self::StorageUnavailable,
        Self::CorruptBlock,
        Self::RangeNotSatisfiable,
        Self::ShuttingDown,
        Self::ServerBusy,
        Self::TooManyRequests,
        Self::PluginFailed,
        Self::DeliveryFailed,
        Self::HoldActive,
        Self::DeviceDeactivated,
        Self::Internal,
    ];
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde_names() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            assert!((400..600).contains(&code.http_status()));
        }
    }
}
