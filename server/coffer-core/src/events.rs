//! What happened on the server, for whoever subscribed (the plugin
//! integrations). Publishing never blocks and never fails the operation that
//! published: each subscriber has a bounded queue, and a full queue drops
//! the event and counts it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use coffer_types::wire::{BackupInfo, DeviceInfo, SessionInfo};
use coffer_types::{BlockId, Name, UnixMillis};
use serde::Serialize;
use tokio::sync::mpsc;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    BackupCommitted {
        device: Name,
        backup: BackupInfo,
    },
    SessionOpened {
        device: Name,
        session: SessionInfo,
    },
    SessionAborted {
        device: Name,
        session: SessionInfo,
    },
    /// The agent gave the session up because the backup failed.
    SessionFailed {
        device: Name,
        session: SessionInfo,
        reason: String,
    },
    DeviceEnrolled {
        device: DeviceInfo,
    },
    DeviceRevoked {
        device: DeviceInfo,
    },
    /// A stored block of `archive` was found damaged (published once per
    /// block until it is healed).
    BlockDamaged {
        device: Name,
        archive: Name,
        block: BlockId,
        damage: Damage,
        found_by: FoundBy,
    },
    /// A block found damaged was replaced by a good upload.
    BlockHealed {
        device: Name,
        archive: Name,
        block: BlockId,
    },
    /// A device's alert level changed (or stays critical: a reminder), as
    /// recorded once in the alert outbox under `seq`. The outbox is the
    /// fact; this event is a copy for plugins.
    HealthChanged {
        seq: u64,
        device: Name,
        name: String,
        user: Name,
        from: String,
        to: String,
        reason: String,
        reminder: bool,
        last_activity: Option<UnixMillis>,
        last_completed: Option<UnixMillis>,
    },
}

/// How a stored block is damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Damage {
    Corrupt,
    Missing,
}

impl From<coffer_meta::Damage> for Damage {
    fn from(d: coffer_meta::Damage) -> Self {
        match d {
            coffer_meta::Damage::Corrupt => Damage::Corrupt,
            coffer_meta::Damage::Missing => Damage::Missing,
        }
    }
}

/// What found a damaged block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    /// The scrub worker.
    Scrub,
    /// A read: restore, fetch, full-block GET.
    Read,
}

#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Server-stamped.
    pub at: UnixMillis,
    /// The organization the event belongs to.
    pub org: Name,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// One subscriber's queue and its counters.
#[derive(Debug)]
pub struct Subscriber {
    pub name: String,
    tx: mpsc::Sender<Event>,
    published: AtomicU64,
    dropped: AtomicU64,
}

impl Subscriber {
    /// Events queued for this subscriber so far.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }
    /// Events dropped because its queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The fan-out of events to subscribers.
#[derive(Debug, Default)]
pub struct EventBus {
    subs: RwLock<Vec<Arc<Subscriber>>>,
}

impl EventBus {
    /// Subscribe `name` with a queue of `capacity` events (replacing an
    /// earlier subscription of the same name).
    pub fn subscribe(
        &self,
        name: &str,
        capacity: usize,
    ) -> (Arc<Subscriber>, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let s = Arc::new(Subscriber {
            name: name.to_string(),
            tx,
            published: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        });
        let mut subs = self.subs.write().unwrap();
        subs.retain(|o| o.name != name);
        subs.push(s.clone());
        (s, rx)
    }

    pub fn unsubscribe(&self, name: &str) {
        self.subs.write().unwrap().retain(|o| o.name != name);
    }

    /// Offer `event` to every subscriber without waiting.
    pub fn publish(&self, event: Event) {
        let subs = self.subs.read().unwrap();
        for s in subs.iter() {
            match s.tx.try_send(event.clone()) {
                Ok(()) => {
                    s.published.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn ev() -> Event {
        Event {
            at: 1,
            org: n("acme"),
            kind: EventKind::DeviceRevoked {
                device: DeviceInfo {
                    device: n("dv_1"),
                    name: "laptop".into(),
                    org: n("acme"),
                    user: n("ann"),
                    os: None,
                    archive: n("ar_1"),
                    revoked: true,
                    enrolled_at: 0,
                    last_connection: None,
                    agent_version: None,
                    bytes_stored: 0,
                    block_count: 0,
                    backup_count: 0,
                    last_activity: None,
                    last_completed: None,
                    percent_complete: None,
                    damaged_blocks: 0,
                    damaged_backups: 0,
                    quota_bytes: 0,
                    parked: false,
                    health: None,
                    deactivated_at: None,
                    cold_until: None,
                    purged_at: None,
                    held_by: Vec::new(),
                },
            },
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_blocking() {
        let bus = EventBus::default();
        let (slow, mut rx) = bus.subscribe("slow", 2);
        for _ in 0..5 {
            bus.publish(ev());
        }
        assert_eq!((slow.published(), slow.dropped()), (2, 3));
        assert!(rx.try_recv().is_ok());
        bus.publish(ev());
        assert_eq!(slow.published(), 3);
        bus.unsubscribe("slow");
        bus.publish(ev());
        assert_eq!(slow.published() + slow.dropped(), 6);
    }
}
