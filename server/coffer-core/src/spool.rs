//! The `spool-sweep` worker: removes upload spool files no upload will
//! finish — those left by an earlier process (older than this start) and
//! those an upload abandoned long ago (older than an hour: a live upload
//! writes its spool file far more often than that).

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use coffer_types::UnixMillis;

use crate::workers::{StepFuture, Worker};
use crate::Coffer;

/// A spool file untouched this long belongs to no live upload.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

struct SpoolSweep {
    core: Coffer,
    started: UnixMillis,
    interval: Duration,
}

impl Worker for SpoolSweep {
    fn name(&self) -> &str {
        "spool-sweep"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn step(&self) -> StepFuture<'_> {
        Box::pin(async move {
            let cutoff = self.started.max(
                self.core
                    .now()
                    .saturating_sub(ABANDONED_AFTER.as_millis() as u64),
            );
            let storage = self.core.storage.clone();
            let removed = tokio::task::spawn_blocking(move || {
                storage.sweep_spool(UNIX_EPOCH + Duration::from_millis(cutoff))
            })
            .await
            .map_err(|e| format!("sweep the upload spool: {e}"))?
            .map_err(|e| format!("sweep the upload spool: {e}"))?;
            if removed > 0 {
                tracing::info!(removed, "removed upload spool files no upload will finish");
            }
            Ok(())
        })
    }
}

impl Coffer {
    /// The spool sweep, run at start and then every `interval`.
    pub fn spool_sweep_worker(&self, interval: Duration) -> Arc<dyn Worker> {
        Arc::new(SpoolSweep {
            core: self.clone(),
            started: self.now(),
            interval,
        })
    }
}
