//! The connections the server holds: a limit on how many, which of them is
//! idle, and whom to evict for a newcomer when at the limit.
//!
//! At the limit a new connection takes the place of the connection idle the
//! longest (no request in flight): that one is told to go away (GOAWAY) and
//! closed. Each newcomer displaces a connection of its own, and at most
//! [`MAX_OVER`] are admitted while those close, so a flood of newcomers
//! cannot push the count far past the limit. When none is idle, the newcomer is served in "busy" mode: every
//! request it sends is answered `503 server_busy` with `Retry-After`, and it
//! is closed after a second. Busy connections are few at a time; past that,
//! a newcomer is closed at once. The descriptors this needs come from the
//! reserve kept out of the limit.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

/// How many connections may be in busy mode at once.
pub(crate) const MAX_BUSY: usize = 64;

/// How many newcomers may be admitted past the limit while the connections
/// they displace are closing: with `MAX_BUSY`, well inside the descriptors
/// kept out of the limit.
pub(crate) const MAX_OVER: usize = 64;

/// One connection's state, shared by its task and the tracker.
#[derive(Debug)]
pub(crate) struct ConnState {
    /// Requests being served now.
    pub(crate) in_flight: AtomicUsize,
    /// When the last request ended or this connection was accepted, in ms
    /// since the tracker started.
    last_active: AtomicU64,
    /// Told when this connection is to make room for another.
    pub(crate) evict: Notify,
    /// Chosen to make room already (so no second newcomer counts on it).
    evicting: std::sync::atomic::AtomicBool,
    epoch: Instant,
}

impl ConnState {
    /// A request begins on this connection; its end is the guard's drop.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Milliseconds since the last request ended, if none is in flight.
    pub(crate) fn idle_for_ms(&self) -> Option<u64> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let now = self.epoch.elapsed().as_millis() as u64;
        Some(now.saturating_sub(self.last_active.load(Ordering::Acquire)))
    }
}

/// A request in flight on a connection.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.epoch.elapsed().as_millis() as u64;
        self.0.last_active.fetch_max(now, Ordering::AcqRel);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
pub(crate) struct Conns {
    max: usize,
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    next: AtomicU64,
    busy: AtomicUsize,
    epoch: Instant,
    /// Told when the last connection closes.
    pub(crate) empty: Notify,
}

/// What a new connection gets.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Served normally; the slot is freed when the guard drops.
    Admitted(Slot),
    /// Served in busy mode (503 to every request) for a moment.
    Busy(BusySlot),
    /// Closed at once: too many in busy mode already.
    Refused,
}

impl Conns {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            busy: AtomicUsize::new(0),
            epoch: Instant::now(),
            empty: Notify::new(),
        })
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// Connections held now (busy ones not counted).
    pub(crate) fn len(&self) -> usize {
        self.open.lock().expect("connection table").len()
    }

    /// Take a slot for a new connection, evicting the connection idle the
    /// longest when at the limit.
    pub(crate) fn admit(self: &Arc<Self>) -> Admission {
        let mut open = self.open.lock().expect("connection table");
        if open.len() >= self.max {
            // Each newcomer past the limit displaces a connection of its own,
            // and only so many may wait for theirs to close.
            let idlest = (open.len() < self.max + MAX_OVER)
                .then(|| {
                    open.values()
                        .filter(|c| !c.evicting.load(Ordering::Acquire))
                        .filter_map(|c| c.idle_for_ms().map(|ms| (ms, c)))
                        .max_by_key(|(ms, _)| *ms)
                })
                .flatten();
            match idlest {
                Some((_, c)) => {
                    c.evicting.store(true, Ordering::Release);
                    c.evict.notify_one();
                }
                None => {
                    drop(open);
                    if self.busy.fetch_add(1, Ordering::AcqRel) >= MAX_BUSY {
                        self.busy.fetch_sub(1, Ordering::AcqRel);
                        return Admission::Refused;
                    }
                    return Admission::Busy(BusySlot(self.clone()));
                }
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState {
            in_flight: AtomicUsize::new(0),
            last_active: AtomicU64::new(self.epoch.elapsed().as_millis() as u64),
            evict: Notify::new(),
            evicting: std::sync::atomic::AtomicBool::new(false),
            epoch: self.epoch,
        });
        open.insert(id, state.clone());
        Admission::Admitted(Slot {
            conns: self.clone(),
            id,
            state,
        })
    }
}

/// A held connection slot.
#[derive(Debug)]
pub(crate) struct Slot {
    conns: Arc<Conns>,
    id: u64,
    pub(crate) state: Arc<ConnState>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.conns.open.lock().expect("connection table");
        open.remove(&self.id);
        if open.is_empty() {
            self.conns.empty.notify_waiters();
        }
    }
}

/// A connection in busy mode.
#[derive(Debug)]
pub(crate) struct BusySlot(Arc<Conns>);

impl Drop for BusySlot {
    fn drop(&mut self) {
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Requests in flight per device, over all its connections.
#[derive(Debug)]
pub(crate) struct DeviceRequests {
    max: usize,
    counts: Mutex<HashMap<coffer_types::Name, usize>>,
}

/// A device's request in flight; its end is the drop.
#[derive(Debug)]
pub(crate) struct DeviceRequest<'a>(&'a DeviceRequests, coffer_types::Name);

impl DeviceRequests {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            counts: Mutex::new(HashMap::new()),
        }
    }

    /// Count a request of `device`, or refuse with `429 too_many_requests`.
    pub(crate) fn begin(
        &self,
        device: &coffer_types::Name,
    ) -> Result<DeviceRequest<'_>, coffer_core::CoreError> {
        let mut counts = self.counts.lock().expect("device requests");
        let n = counts.entry(device.clone()).or_insert(0);
        if *n >= self.max {
            return Err(coffer_core::CoreError::TooManyRequests(format!(
                "device {device} has {} requests in flight, its limit \
                 (http.max_requests_per_device); retry when some finish",
                self.max
            )));
        }
        *n += 1;
        Ok(DeviceRequest(self, device.clone()))
    }
}

impl Drop for DeviceRequest<'_> {
    fn drop(&mut self) {
        let mut counts = self.0.counts.lock().expect("device requests");
        if let Some(n) = counts.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_limit_the_longest_idle_connection_makes_room() {
        let c = Conns::new(2);
        let Admission::Admitted(a) = c.admit() else {
            panic!()
        };
        std::thread::sleep(std::time::Duration::from_millis(5));
        let Admission::Admitted(b) = c.admit() else {
            panic!()
        };
        let _busy_b = b.state.begin();
        // a is idle, b is not: a is told to go; the newcomer is admitted.
        let Admission::Admitted(n) = c.admit() else {
            panic!()
        };
        assert!(futures::FutureExt::now_or_never(a.state.evict.notified()).is_some());
        // a is closing: the next newcomer cannot count on it too.
        let _busy_new = n.state.begin();
        assert!(matches!(c.admit(), Admission::Busy(_)));
        drop(a);
        assert_eq!(c.len(), 2);
        // Every connection busy: busy mode, then refusal past MAX_BUSY.
        let mut held = Vec::new();
        for _ in 0..MAX_BUSY {
            match c.admit() {
                Admission::Busy(s) => held.push(s),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(c.admit(), Admission::Refused));
        drop(held);
        assert!(matches!(c.admit(), Admission::Busy(_)));
    }

    #[test]
    fn past_the_limit_at_most_max_over_newcomers_wait_for_room() {
        let c = Conns::new(MAX_OVER * 2);
        let mut slots = Vec::new();
        for _ in 0..MAX_OVER * 2 {
            match c.admit() {
                Admission::Admitted(s) => slots.push(s),
                other => panic!("{other:?}"),
            }
        }
        // All idle: each newcomer displaces one, up to MAX_OVER of them
        // while none has closed yet; then busy mode.
        for _ in 0..MAX_OVER {
            match c.admit() {
                Admission::Admitted(s) => slots.push(s),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(c.len(), MAX_OVER * 3);
        assert!(matches!(c.admit(), Admission::Busy(_)));
    }

    #[test]
    fn a_device_has_at_most_its_limit_in_flight() {
        let d = DeviceRequests::new(2);
        let (a, b) = (
            coffer_types::Name::new("dv_a").unwrap(),
            coffer_types::Name::new("dv_b").unwrap(),
        );
        let one = d.begin(&a).unwrap();
        let _two = d.begin(&a).unwrap();
        let e = d.begin(&a).unwrap_err();
        assert_eq!(e.code(), coffer_types::ErrorCode::TooManyRequests);
        let _other = d.begin(&b).unwrap();
        drop(one);
        let _three = d.begin(&a).unwrap();
    }

    #[test]
    fn idle_time_counts_from_the_last_request() {
        let c = Conns::new(4);
        let Admission::Admitted(a) = c.admit() else {
            panic!()
        };
        let r = a.state.begin();
        assert_eq!(a.state.idle_for_ms(), None);
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(r);
        assert!(a.state.idle_for_ms().unwrap() < 20);
    }
}
