//! The injectable clock. Every time the server records comes from here, so
//! tests move time without sleeping.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use coffer_types::UnixMillis;

/// A source of server time.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch (the wall clock, which an operator
    /// or NTP may set anywhere).
    fn now(&self) -> UnixMillis;

    /// Milliseconds of elapsed time from an arbitrary start, never set
    /// back or forward: what bounds the compliance clock's advance.
    fn monotonic(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixMillis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn monotonic(&self) -> u64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        START
            .get_or_init(std::time::Instant::now)
            .elapsed()
            .as_millis() as u64
    }
}

/// A clock that moves only when told to. Clones share the time.
///
/// [`ManualClock::advance`] is time passing (wall and monotonic move
/// together); [`ManualClock::set`] is someone setting the wall clock
/// (the monotonic time does not move).
#[derive(Debug, Default, Clone)]
pub struct ManualClock(Arc<(AtomicU64, AtomicU64)>);

impl ManualClock {
    pub fn new(start: UnixMillis) -> Self {
        Self(Arc::new((AtomicU64::new(start), AtomicU64::new(0))))
    }

    /// Set the wall clock (elapsed time does not move).
    pub fn set(&self, t: UnixMillis) {
        self.0 .0.store(t, Ordering::SeqCst);
    }

    /// Let `ms` pass.
    pub fn advance(&self, ms: u64) {
        self.0 .0.fetch_add(ms, Ordering::SeqCst);
        self.0 .1.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixMillis {
        self.0 .0.load(Ordering::SeqCst)
    }

    fn monotonic(&self) -> u64 {
        self.0 .1.load(Ordering::SeqCst)
    }
}
