//! Serving plugins built against an older contract version: the host works
//! in the current types (`bindings::types`, …) and converts at the edge.
//!
//! Each older version differs from the current one only by the event kinds
//! added since (0.2.0: `block-damaged`, `block-healed`; 0.3.0:
//! `health-changed`): a plugin is never given an event its version cannot
//! represent ([`receives`] says which), everything else maps field for
//! field, by the same conversions for every older version ([`older!`]).

use crate::bindings::{http_client, inventory, kv, log, types};
use crate::bindings::{reporter, retention};
use crate::bindings::{v0_1, v0_2};
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

/// The conversions and host interfaces of an older version `$v` (a module
/// of `crate::bindings`), the same for each.
macro_rules! older {
    ($v:ident) => {
// What the host hands an older guest.
same_record!(types::Device => $v::types::Device {
    id, name, org, user, archive, enrolled_at_ms, revoked, last_data_ms, last_backup_ms,
    backup_count, block_count, stored_bytes,
});
same_record!(types::BackupSummary => $v::types::BackupSummary {
    id, archive, committed_at_ms, files, bytes, block_count, pinned,
});
same_record!(types::Archive => $v::types::Archive { id, device, org });
same_enum!(types::HealthState => $v::types::HealthState { Green, Yellow, Red });
same_record!(types::HealthFacts => $v::types::HealthFacts {
    device, state, last_data_ms, last_backup_ms,
});
same_record!(types::SessionInfo => $v::types::SessionInfo {
    id, archive, device, opened_at_ms, reason,
});
same_record!(types::CallContext => $v::types::CallContext { plugin, org, now_ms, config });
same_record!(http_client::Response => $v::http_client::Response { status, headers, body });

// What an older guest hands back.
same_record!($v::types::PluginError => types::PluginError { code, message });
same_enum!($v::log::Level => log::Level { Trace, Debug, Info, Warn, Error });
same_record!($v::http_client::Request => http_client::Request { method, url, headers, body });
same_record!($v::retention::Expiry => retention::Expiry { backup, reason });
same_record!($v::reporter::Table => reporter::Table { columns, rows });
same_record!($v::reporter::Document => reporter::Document { media_type, body });

impl From<$v::retention::Plan> for retention::Plan {
    fn from(p: $v::retention::Plan) -> Self {
        Self {
            expire: p.expire.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<$v::reporter::Report> for reporter::Report {
    fn from(r: $v::reporter::Report) -> Self {
        match r {
            $v::reporter::Report::Table(t) => Self::Table(t.into()),
            $v::reporter::Report::Document(d) => Self::Document(d.into()),
        }
    }
}

// Its host interfaces, answered by the current ones.

impl $v::types::Host for HostState {}

impl $v::log::Host for HostState {
    fn log(&mut self, level: $v::log::Level, message: String) -> wasmtime::Result<()> {
        log::Host::log(self, level.into(), message)
    }
}

impl $v::kv::Host for HostState {
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

impl $v::inventory::Host for HostState {
    fn devices(&mut self) -> wasmtime::Result<Vec<$v::types::Device>> {
        inventory::Host::devices(self).map(all)
    }
    fn backups(&mut self, archive: String) -> wasmtime::Result<Vec<$v::types::BackupSummary>> {
        inventory::Host::backups(self, archive).map(all)
    }
    fn health(&mut self) -> wasmtime::Result<Vec<$v::types::HealthFacts>> {
        inventory::Host::health(self).map(all)
    }
}

impl $v::http_client::Host for HostState {
    async fn send(
        &mut self,
        req: $v::http_client::Request,
    ) -> wasmtime::Result<Result<$v::http_client::Response, String>> {
        Ok(http_client::Host::send(self, req.into())
            .await?
            .map(Into::into))
    }
}
    };
}

older!(v0_1);
older!(v0_2);

// 0.2.0's own kinds, for a 0.2 guest.
same_enum!(types::DamageKind => v0_2::types::DamageKind { Corrupt, Missing });
same_enum!(types::DetectedBy => v0_2::types::DetectedBy { Scrub, Read });
same_record!(types::BlockDamage => v0_2::types::BlockDamage {
    archive, device, block, kind, detected_by,
});
same_record!(types::BlockHeal => v0_2::types::BlockHeal { archive, device, block });

/// `e` as a 0.1 plugin sees it, or None when 0.1 has no such event kind
/// (the plugin is not sent it).
pub fn event_v0_1(e: &types::Event) -> Option<v0_1::types::Event> {
    use types::EventKind as K;
    use v0_1::types::EventKind as O;
    let kind = match e.kind.clone() {
        K::BackupCommitted(b) => O::BackupCommitted(b.into()),
        K::SessionOpened(s) => O::SessionOpened(s.into()),
        K::SessionFailed(s) => O::SessionFailed(s.into()),
        K::SessionAborted(s) => O::SessionAborted(s.into()),
        K::DeviceEnrolled(d) => O::DeviceEnrolled(d.into()),
        K::DeviceRevoked(d) => O::DeviceRevoked(d.into()),
        K::BlockDamaged(_) | K::BlockHealed(_) | K::HealthChanged(_) => return None,
    };
    Some(v0_1::types::Event {
        seq: e.seq,
        at_ms: e.at_ms,
        org: e.org.clone(),
        kind,
    })
}

/// `e` as a 0.2 plugin sees it, or None when 0.2 has no such event kind.
pub fn event_v0_2(e: &types::Event) -> Option<v0_2::types::Event> {
    use types::EventKind as K;
    use v0_2::types::EventKind as O;
    let kind = match e.kind.clone() {
        K::BackupCommitted(b) => O::BackupCommitted(b.into()),
        K::SessionOpened(s) => O::SessionOpened(s.into()),
        K::SessionFailed(s) => O::SessionFailed(s.into()),
        K::SessionAborted(s) => O::SessionAborted(s.into()),
        K::DeviceEnrolled(d) => O::DeviceEnrolled(d.into()),
        K::DeviceRevoked(d) => O::DeviceRevoked(d.into()),
        K::BlockDamaged(d) => O::BlockDamaged(d.into()),
        K::BlockHealed(h) => O::BlockHealed(h.into()),
        K::HealthChanged(_) => return None,
    };
    Some(v0_2::types::Event {
        seq: e.seq,
        at_ms: e.at_ms,
        org: e.org.clone(),
        kind,
    })
}

/// Whether a plugin of contract `contract` can be sent events of this kind.
pub fn receives(contract: crate::Contract, kind: &types::EventKind) -> bool {
    use types::EventKind as K;
    match contract {
        crate::Contract::V0_3 => true,
        crate::Contract::V0_2 => !matches!(kind, K::HealthChanged(_)),
        crate::Contract::V0_1 => !matches!(
            kind,
            K::BlockDamaged(_) | K::BlockHealed(_) | K::HealthChanged(_)
        ),
    }
}

/// Every item of `v`, converted.
pub(crate) fn all<A, B: From<A>>(v: Vec<A>) -> Vec<B> {
    v.into_iter().map(Into::into).collect()
}
