//! Quota warnings: a scope whose stored bytes reached its warning level
//! (`quotas.warn_at` of its quota), kept until its usage falls below it,
//! for the alert channels to send.

use coffer_types::UnixMillis;
use serde::{Deserialize, Serialize};

use crate::engine::{enc, engine, scan};
use crate::{MetaStore, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaWarningRecord {
    /// `org:acme`, `user:acme/ann` or `device:dv_…`.
    pub scope: String,
    /// Bytes stored when the level was reached.
    pub used: u64,
    pub quota: u64,
    /// When the level was reached.
    pub at: UnixMillis,
}

impl MetaStore {
    /// Record (true if there was none) the warning of its scope.
    pub fn record_quota_warning(&self, w: &QuotaWarningRecord) -> Result<bool> {
        let old = self
            .t
            .quota_warnings
            .compare_and_swap(w.scope.as_bytes(), None as Option<&[u8]>, Some(enc(w)))
            .map_err(engine("record a quota warning"))?;
        Ok(old.is_ok())
    }

    /// Clear the warning of `scope` (its usage is below the level again).
    pub fn clear_quota_warning(&self, scope: &str) -> Result<()> {
        self.t
            .quota_warnings
            .remove(scope.as_bytes())
            .map_err(engine("clear a quota warning"))?;
        Ok(())
    }

    /// Every recorded warning, by scope.
    pub fn quota_warnings(&self) -> Result<Vec<QuotaWarningRecord>> {
        scan(&self.t.quota_warnings, &[], "quota warning")
    }
}
