//! Backup sessions: open, in progress, then committed into a backup or
//! aborted.

use coffer_types::{Name, UnixMillis};
use serde::{Deserialize, Serialize};

use crate::engine::{enc, engine, get, key, prefix, scan, update};
use crate::{MetaStore, Result};

/// Where a session stands, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    Open,
    Committed,
    Aborted,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub id: Name,
    pub archive: Name,
    pub state: SessionStatus,
    pub opened_at: UnixMillis,
    pub last_activity: UnixMillis,
    pub percent: f64,
    pub bytes: u64,
    pub files: u64,
    pub backup: Option<Name>,
}

impl MetaStore {
    pub fn create_session(&self, rec: &SessionRecord) -> Result<()> {
        let k = key(&[rec.archive.as_str().as_bytes(), rec.id.as_str().as_bytes()]);
        self.t
            .sessions
            .insert(k, enc(rec))
            .map_err(engine("write session"))?;
        Ok(())
    }

    pub fn session(&self, archive: &Name, id: &Name) -> Result<Option<SessionRecord>> {
        let k = key(&[archive.as_str().as_bytes(), id.as_str().as_bytes()]);
        get(&self.t.sessions, &k, "session")
    }

    pub fn sessions(&self, archive: &Name) -> Result<Vec<SessionRecord>> {
        scan(
            &self.t.sessions,
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
        update(&self.t.sessions, &k, "session", f)
    }
}
