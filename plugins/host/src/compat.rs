//! Serving plugins built against an older contract version: the host works
//! in the current types (`bindings::types`, …) and converts at the edge.
//!
//! `coffer:plugin@0.1.0` differs from 0.2.0 only by the event kinds 0.2.0
//! added (`block-damaged`, `block-healed`): a 0.1 plugin is never given an
//! event it cannot represent ([`event_v0_1`] says which), everything else
//! maps field for field.

use crate::bindings::v0_1;
use crate::bindings::{http_client, inventory, kv, log, types};
use crate::bindings::{reporter, retention};
use crate::state::HostState;

/// `From` field by field between two records of the same shape.
macro_rules! same_record {
    ($from:path => $to:path { $($f:ident),* $(,)? }) => {
        impl From<$from> for $to {
            fn from(v: $from) -> Self {
                Self { $($f: v.$f.into()),* }
            }
        }
    };
}

/// `From` case by case between two enums of the same cases.
macro_rules! same_enum {
    ($from:path => $to:path { $($c:ident),* $(,)? }) => {
        impl From<$from> for $to {
            fn from(v: $from) -> Self {
                use $from as F;
                match v { $(F::$c => Self::$c),* }
            }
        }
    };
}

mod old {
    pub use crate::bindings::v0_1::http_client;
    pub use crate::bindings::v0_1::log;
    pub use crate::bindings::v0_1::reporter;
    pub use crate::bindings::v0_1::retention;
    pub use crate::bindings::v0_1::types;
}

// What the host hands a 0.1 guest.
same_record!(types::Device => old::types::Device {
    id, name, org, user, archive, enrolled_at_ms, revoked, last_data_ms, last_backup_ms,
    backup_count, block_count, stored_bytes,
});
same_record!(types::BackupSummary => old::types::BackupSummary {
    id, archive, committed_at_ms, files, bytes, block_count, pinned,
});
same_record!(types::Archive => old::types::Archive { id, device, org });
same_enum!(types::HealthState => old::types::HealthState { Green, Yellow, Red });
same_record!(types::HealthFacts => old::types::HealthFacts {
    device, state, last_data_ms, last_backup_ms,
});
same_record!(types::SessionInfo => old::types::SessionInfo {
    id, archive, device, opened_at_ms, reason,
});
same_record!(types::CallContext => old::types::CallContext { plugin, org, now_ms, config });
same_record!(http_client::Response => old::http_client::Response { status, headers, body });

// What a 0.1 guest hands back.
same_record!(old::types::PluginError => types::PluginError { code, message });
same_enum!(old::log::Level => log::Level { Trace, Debug, Info, Warn, Error });
same_record!(old::http_client::Request => http_client::Request { method, url, headers, body });
same_record!(old::retention::Expiry => retention::Expiry { backup, reason });
same_record!(old::reporter::Table => reporter::Table { columns, rows });
same_record!(old::reporter::Document => reporter::Document { media_type, body });

impl From<old::retention::Plan> for retention::Plan {
    fn from(p: old::retention::Plan) -> Self {
        Self {
            expire: p.expire.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<old::reporter::Report> for reporter::Report {
    fn from(r: old::reporter::Report) -> Self {
        match r {
            old::reporter::Report::Table(t) => Self::Table(t.into()),
            old::reporter::Report::Document(d) => Self::Document(d.into()),
        }
    }
}

/// `e` as a 0.1 plugin sees it, or None when 0.1 has no such event kind
/// (the plugin is not sent it).
pub fn event_v0_1(e: &types::Event) -> Option<old::types::Event> {
    use old::types::EventKind as O;
    use types::EventKind as K;
    let kind = match e.kind.clone() {
        K::BackupCommitted(b) => O::BackupCommitted(b.into()),
        K::SessionOpened(s) => O::SessionOpened(s.into()),
        K::SessionFailed(s) => O::SessionFailed(s.into()),
        K::SessionAborted(s) => O::SessionAborted(s.into()),
        K::DeviceEnrolled(d) => O::DeviceEnrolled(d.into()),
        K::DeviceRevoked(d) => O::DeviceRevoked(d.into()),
        K::BlockDamaged(_) | K::BlockHealed(_) => return None,
    };
    Some(old::types::Event {
        seq: e.seq,
        at_ms: e.at_ms,
        org: e.org.clone(),
        kind,
    })
}

/// Whether a plugin of contract `contract` can be sent events of this kind.
pub fn receives(contract: crate::Contract, kind: &types::EventKind) -> bool {
    match contract {
        crate::Contract::V0_2 => true,
        crate::Contract::V0_1 => !matches!(
            kind,
            types::EventKind::BlockDamaged(_) | types::EventKind::BlockHealed(_)
        ),
    }
}

/// Every item of `v`, converted.
pub(crate) fn all<A, B: From<A>>(v: Vec<A>) -> Vec<B> {
    v.into_iter().map(Into::into).collect()
}

// The 0.1 host interfaces, answered by the current ones.

impl v0_1::types::Host for HostState {}

impl v0_1::log::Host for HostState {
    fn log(&mut self, level: old::log::Level, message: String) -> wasmtime::Result<()> {
        log::Host::log(self, level.into(), message)
    }
}

impl v0_1::kv::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        kv::Host::get(self, key)
    }
    fn set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<Result<(), String>> {
        kv::Host::set(self, key, value)
    }
    fn delete(&mut self, key: String) -> wasmtime::Result<()> {
        kv::Host::delete(self, key)
    }
    fn list_keys(&mut self, prefix: String) -> wasmtime::Result<Vec<String>> {
        kv::Host::list_keys(self, prefix)
    }
}

impl v0_1::inventory::Host for HostState {
    fn devices(&mut self) -> wasmtime::Result<Vec<old::types::Device>> {
        inventory::Host::devices(self).map(all)
    }
    fn backups(&mut self, archive: String) -> wasmtime::Result<Vec<old::types::BackupSummary>> {
        inventory::Host::backups(self, archive).map(all)
    }
    fn health(&mut self) -> wasmtime::Result<Vec<old::types::HealthFacts>> {
        inventory::Host::health(self).map(all)
    }
}

impl v0_1::http_client::Host for HostState {
    async fn send(
        &mut self,
        req: old::http_client::Request,
    ) -> wasmtime::Result<Result<old::http_client::Response, String>> {
        Ok(http_client::Host::send(self, req.into())
            .await?
            .map(Into::into))
    }
}
