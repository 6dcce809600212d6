//! The records the metadata store keeps, one struct per kind. Times are
//! server-stamped Unix milliseconds.

use coffer_types::wire::{BackupStats, SessionState};
use coffer_types::{BlockId, Name, UnixMillis};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub name: Name,
    pub parent: Option<Name>,
    pub created_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub org: Name,
    pub name: Name,
    pub created_at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub id: Name,
    pub name: String,
    pub org: Name,
    pub user: Name,
    pub os: Option<String>,
    pub archive: Name,
    /// blake3 of the device token; the token itself is never stored.
    pub token_hash: [u8; 32],
    pub revoked: bool,
    pub enrolled_at: UnixMillis,
    pub last_connection: Option<UnixMillis>,
    pub agent_version: Option<String>,
}

/// An archive: all data of one device at this destination, with the
/// server-stamped health facts later issues build on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArchiveRecord {
    pub id: Name,
    pub device: Name,
    pub created_at: UnixMillis,
    pub bytes_stored: u64,
    pub block_count: u64,
    pub backup_count: u64,
    pub last_activity: Option<UnixMillis>,
    pub last_completed: Option<UnixMillis>,
    pub percent_complete: Option<f64>,
}

impl ArchiveRecord {
    /// A new archive holding nothing yet.
    pub fn new(id: Name, device: Name, created_at: UnixMillis) -> Self {
        Self {
            id,
            device,
            created_at,
            bytes_stored: 0,
            block_count: 0,
            backup_count: 0,
            last_activity: None,
            last_completed: None,
            percent_complete: None,
        }
    }
}

/// A block the archive holds: size, server-stamped time, and where the
/// storage put it (opaque bytes the storage layer defines; empty for a block
/// stored as its own object). Encoded as `size | stored_at | location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockRecord {
    pub size: u64,
    pub stored_at: UnixMillis,
    pub location: Vec<u8>,
}

impl BlockRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.location.len());
        out.extend_from_slice(&self.size.to_be_bytes());
        out.extend_from_slice(&self.stored_at.to_be_bytes());
        out.extend_from_slice(&self.location);
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<Self> {
        let size = u64::from_be_bytes(bytes.get(..8)?.try_into().ok()?);
        let stored_at = u64::from_be_bytes(bytes.get(8..16)?.try_into().ok()?);
        Some(Self {
            size,
            stored_at,
            location: bytes[16..].to_vec(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: Name,
    pub archive: Name,
    pub state: SessionState,
    pub opened_at: UnixMillis,
    pub last_activity: UnixMillis,
    pub percent: f64,
    pub bytes: u64,
    pub files: u64,
    pub backup: Option<Name>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupRecord {
    pub id: Name,
    pub archive: Name,
    pub session: Name,
    pub committed_at: UnixMillis,
    pub manifest: BlockId,
    pub block_count: u64,
    pub stats: BackupStats,
}

/// A named reference of an archive to one of its blocks (e.g. the agent's
/// wrapped key). The block it names must stay stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedRef {
    pub block: BlockId,
    pub updated_at: UnixMillis,
}
