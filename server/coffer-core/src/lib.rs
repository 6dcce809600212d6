//! Coffer's domain: enrollment, authentication, block ingest, backup
//! sessions, commits and the server-stamped health facts of each archive.
//!
//! The core names neither the HTTP stack, nor sled, nor object_store: it
//! speaks to metadata through `coffer-meta`'s domain API and to blocks through
//! `coffer-storage`'s `BlockStore`, and takes request bodies as plain byte
//! streams. Time comes from an injected [`Clock`].

mod access;
mod accounts;
mod admin;
mod alerts;
mod audit;
mod auth;
mod clock;
mod cold;
pub mod compliance;
mod destroy;
#[cfg(test)]
mod destroy_tests;
pub mod device_settings;
pub mod digest;
pub mod duration;
mod error;
mod escrow;
pub mod events;
mod expiry;
mod gc;
#[cfg(test)]
mod gc_tests;
pub mod health;
pub mod holds;
mod ingest;
mod monitor;
pub mod notify;
mod org_settings;
pub mod orgtree;
pub mod plugins;
mod quota;
pub mod reports;
pub mod retention;
mod scrub;
mod sessions;
pub mod settings;
mod spool;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod workers;

use std::sync::{Arc, OnceLock, RwLock};

pub use access::{role_allows, DeviceAuth, Permission, Principal};
pub use accounts::DEFAULT_TOKEN_LIFETIME;
pub use alerts::ALERT_PAGE_MAX;
pub use audit::{AuditQuery, AUDIT_PAGE_MAX};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::CoreError;
pub use gc::{GcMetrics, GcSettings, REST_FACTOR as GC_REST_FACTOR};
pub use holds::HoldSettings;
pub use ingest::{BlockRead, PutBlock};
pub use monitor::HealthMetrics;
pub use orgtree::OrgTree;
pub use scrub::ScrubSettings;

use coffer_meta::MetaStore;
use coffer_storage::BlockStore;
use serde::{Deserialize, Serialize};

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Limits of the agent protocol, the `[limits]` table of the config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest block accepted, in bytes (413 `block_too_large` above).
    /// Default 16 MiB.
    #[serde(default = "default_max_block")]
    pub max_block_bytes: u64,
    /// Most ids in one `blocks/missing` request. Default 100 000.
    #[serde(default = "default_max_missing")]
    pub max_missing_ids: usize,
    /// Most block ids one commit may reference. Default 10 000 000.
    #[serde(default = "default_max_commit")]
    pub max_commit_blocks: usize,
    /// Open sessions one archive may have that saw activity in the last
    /// day; past it, opening one more is `429 too_many_requests`. Default 16.
    #[serde(default = "default_max_sessions")]
    pub max_open_sessions: usize,
}

fn default_max_block() -> u64 {
    16 << 20
}
fn default_max_missing() -> usize {
    100_000
}
fn default_max_commit() -> usize {
    10_000_000
}
fn default_max_sessions() -> usize {
    16
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_block_bytes: default_max_block(),
            max_missing_ids: default_max_missing(),
            max_commit_blocks: default_max_commit(),
            max_open_sessions: default_max_sessions(),
        }
    }
}

impl Limits {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_block_bytes == 0 || self.max_block_bytes > 1 << 30 {
            return Err(format!(
                "limits.max_block_bytes is {}; it must be between 1 and 1073741824 (1 GiB)",
                self.max_block_bytes
            ));
        }
        if self.max_missing_ids < 10_000 {
            return Err(format!(
                "limits.max_missing_ids is {}; agents need at least 10000",
                self.max_missing_ids
            ));
        }
        if self.max_open_sessions == 0 {
            return Err("limits.max_open_sessions must be at least 1".into());
        }
        if self.max_commit_blocks == 0 {
            return Err("limits.max_commit_blocks must be at least 1".into());
        }
        Ok(())
    }
}

/// The destination server's domain service. Cheap to clone.
#[derive(Clone)]
pub struct Coffer {
    pub(crate) meta: Arc<MetaStore>,
    pub(crate) storage: BlockStore,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) limits: Limits,
    pub(crate) events: Arc<events::EventBus>,
    pub(crate) plugins: Arc<OnceLock<Arc<dyn plugins::PluginAdmin>>>,
    /// The mail channel, when `[mail]` is configured (for test mails).
    pub(crate) mailer: Arc<OnceLock<Arc<dyn notify::Channel>>>,
    pub(crate) workers: Arc<OnceLock<Arc<workers::Supervisor>>>,
    /// The org tree as stored, replaced after each org creation.
    orgs: Arc<RwLock<Arc<OrgTree>>>,
    /// One org creation at a time (so the tree in memory follows the store).
    pub(crate) org_lock: Arc<tokio::sync::Mutex<()>>,
    /// The scrub's progress.
    pub(crate) scrub: Arc<std::sync::Mutex<scrub::ScrubProgress>>,
    /// Bytes stored by device, user and org, and the quotas in effect.
    pub(crate) quota: Arc<quota::QuotaState>,
    /// An escrow upload's check and store, against the destruction of
    /// escrowed keys after a switch to enhanced security.
    pub(crate) escrow_lock: Arc<std::sync::Mutex<()>>,
    /// Health thresholds per org and connection stamps.
    pub(crate) monitor: Arc<monitor::MonitorState>,
    /// The compliance clock's anchor and last reading.
    pub(crate) compliance: Arc<compliance::ComplianceState>,
    /// `[legal_hold]`: approvals a release needs, the quarantine.
    pub(crate) hold_settings: Arc<RwLock<holds::HoldSettings>>,
    /// `[gc]` and the collector's state.
    pub(crate) gc: Arc<gc::GcState>,
}

impl std::fmt::Debug for Coffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coffer")
            .field("storage", &self.storage)
            .finish()
    }
}

impl Coffer {
    /// The service over an open metadata store and block store. Reads the
    /// org tree once.
    pub fn new(
        meta: Arc<MetaStore>,
        storage: BlockStore,
        clock: Arc<dyn Clock>,
        limits: Limits,
    ) -> Result<Self> {
        let c = Self {
            meta,
            storage,
            clock,
            limits,
            events: Arc::default(),
            plugins: Arc::default(),
            mailer: Arc::default(),
            workers: Arc::default(),
            orgs: Arc::default(),
            org_lock: Arc::default(),
            scrub: Arc::default(),
            quota: Arc::default(),
            escrow_lock: Arc::default(),
            monitor: Arc::default(),
            compliance: Arc::default(),
            hold_settings: Arc::default(),
            gc: Arc::default(),
        };
        c.start_compliance_clock()?;
        c.refresh_org_tree()?;
        c.load_usage()?;
        // A crash between a switch to enhanced security and the destruction
        // of the escrowed keys it dooms: finish it now.
        if c.destroy_escrow_under_enhanced(&access::Principal::system())? > 0 {
            c.meta.durable_blocking()?;
        }
        Ok(c)
    }

    /// The org tree as it is now.
    pub fn org_tree(&self) -> Arc<OrgTree> {
        self.orgs.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn refresh_org_tree(&self) -> Result<()> {
        let tree = OrgTree::new(self.meta.orgs()?.into_iter().map(|o| (o.name, o.parent)));
        *self.orgs.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(tree);
        self.quotas_changed();
        Ok(())
    }

    /// Where the server's events are published (commits, sessions,
    /// enrollments, revocations).
    pub fn events(&self) -> &events::EventBus {
        &self.events
    }

    /// Publish an event about `archive`'s device (never fails the caller).
    pub(crate) fn publish_for_archive(
        &self,
        archive: &coffer_types::Name,
        kind: impl FnOnce(coffer_types::Name) -> events::EventKind,
    ) {
        if let Ok(Some(d)) = self.meta.device_of_archive(archive) {
            self.events.publish(events::Event {
                at: self.now(),
                org: d.org,
                kind: kind(d.id),
            });
        }
    }

    /// Publish that a block of `archive` was newly found damaged.
    pub(crate) fn publish_damage(
        &self,
        archive: &coffer_types::Name,
        block: &coffer_types::BlockId,
        damage: coffer_meta::Damage,
        found_by: events::FoundBy,
    ) {
        self.publish_for_archive(archive, |device| events::EventKind::BlockDamaged {
            device,
            archive: archive.clone(),
            block: *block,
            damage: damage.into(),
            found_by,
        });
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Server time, from the clock every recorded time comes from.
    pub fn now(&self) -> coffer_types::UnixMillis {
        self.clock.now()
    }

    /// Run a metadata call that may take long (a block list of a million
    /// ids) on the blocking pool, so it never holds up the async workers
    /// that serve everyone else.
    pub(crate) async fn meta_blocking<T: Send + 'static>(
        &self,
        what: &'static str,
        f: impl FnOnce(&MetaStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let meta = self.meta.clone();
        tokio::task::spawn_blocking(move || f(&meta))
            .await
            .map_err(|e| CoreError::Internal(format!("{what}: {e}")))?
    }

    /// The metadata schema version this start upgraded from, if it did.
    pub fn metadata_upgraded_from(&self) -> Option<u32> {
        self.meta.upgraded_from()
    }

    /// Readiness: the metadata store takes writes and the storage backend
    /// answers.
    pub async fn ready(&self) -> Result<()> {
        if let Some(e) = self.meta.failure() {
            return Err(CoreError::StorageUnavailable(format!(
                "the metadata store stopped taking writes after a failed flush ({e}); restart \
                 the server once the disk is healthy"
            )));
        }
        self.storage.check().await.map_err(CoreError::from)
    }

    /// Make all metadata written so far durable (used at shutdown).
    pub async fn sync(&self) -> Result<()> {
        self.meta.durable().await.map_err(CoreError::from)
    }
}

#[cfg(test)]
mod tests;

/// A server time as RFC 3339, for messages.
pub(crate) fn format_time(t: coffer_types::UnixMillis) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(t))
        .to_string()
}

/// 16 random bytes from the OS, for ids and tokens.
pub(crate) fn random16() -> Result<[u8; 16]> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| CoreError::Internal(format!("read OS randomness: {e}")))?;
    Ok(b)
}
