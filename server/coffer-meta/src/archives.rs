//! Archives: all data of one device at this destination, with the
//! server-stamped health facts later issues build on.

use coffer_types::{Name, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::engine::{get, update};
use crate::{MetaStore, Result};

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

impl MetaStore {
    pub fn archive(&self, id: &Name) -> Result<Option<ArchiveRecord>> {
        get(&self.t.archives, id.as_str().as_bytes(), "archive")
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
            &self.t.archives,
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
}
