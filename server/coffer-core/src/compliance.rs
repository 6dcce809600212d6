//! The compliance clock (DESIGN §3.5, research B6): the time retention,
//! quarantine and cold-storage decisions are made on. It never moves
//! backwards, and it never follows a forward jump of the wall clock at once.
//!
//! A plain high-water mark of the wall clock would be wrong: a clock set
//! ten years ahead for a minute would move the mark ten years, and every
//! retention would end at once, even after the clock is put right. So the
//! clock advances from its last anchor by at most the elapsed monotonic
//! time plus a drift allowance of one week per year (1/52):
//!
//! `now_c = max(last, min(wall, anchor + elapsed + elapsed / 52))`
//!
//! - A wall clock set back leaves `now_c` where it was (it waits for the wall
//!   clock to catch up), and the change is audited once (`clock.backwards`).
//! - A wall clock set forward is followed at the bounded rate only; past a
//!   day ahead it is audited once (`clock.forward_jump`). An admin who knows
//!   the new time is right (a server down for a week) accepts it
//!   (`coffer admin clock accept`), audited.
//! - The anchor is persisted (`coffer-meta`'s high-water mark) by the
//!   `compliance-clock` worker and before every destruction, so a restart
//!   resumes from it; time the server was down is not counted until
//!   accepted — every error errs towards keeping data longer.
//!
//! Two readings: `early` (= `now_c`) for everything that *ends* protection
//! (ages, expiries, quarantine ends), `late` (= max(`now_c`, wall)) for
//! everything that *starts or stamps* one (backup commit times, release
//! times, cold-storage starts).

use std::sync::Mutex;

use coffer_types::UnixMillis;
use serde::Serialize;

use crate::access::{Permission, Principal};
use crate::{Coffer, CoreError, Result};

/// Past this much ahead of the compliance clock, the wall clock is taken
/// to have jumped.
pub const FORWARD_JUMP_MS: u64 = 24 * 3600 * 1000;
/// The wall clock this much behind counts as set back.
const BACKWARDS_MS: u64 = 1000;

#[derive(Debug, Default)]
pub(crate) struct ComplianceState {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Inner {
    started: bool,
    anchor: UnixMillis,
    anchor_mono: u64,
    last: UnixMillis,
    persisted: UnixMillis,
    backwards: bool,
    forward: bool,
}

/// An anomaly seen by a reading, to audit once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Anomaly {
    Backwards,
    ForwardJump,
}

impl Inner {
    /// The reading at wall time `wall` and monotonic time `mono`, and an
    /// anomaly that just began.
    fn read(&mut self, wall: UnixMillis, mono: u64) -> (UnixMillis, Option<Anomaly>) {
        let elapsed = mono.saturating_sub(self.anchor_mono);
        let bound = self.anchor + elapsed + elapsed / 52;
        let now = self.last.max(wall.min(bound));
        self.last = now;
        let mut began = None;
        let back = wall + BACKWARDS_MS < now;
        if back && !self.backwards {
            began = Some(Anomaly::Backwards);
        }
        self.backwards = back;
        let ahead = wall > now + FORWARD_JUMP_MS;
        if ahead && !self.forward {
            began = Some(Anomaly::ForwardJump);
        }
        self.forward = ahead;
        (now, began)
    }
}

/// What `coffer admin clock` shows.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClockStatus {
    /// The compliance clock (ms).
    pub compliance: UnixMillis,
    /// The wall clock (ms).
    pub wall: UnixMillis,
    /// The persisted high-water mark (ms).
    pub persisted: UnixMillis,
    /// `ok`, `behind` (the wall clock is behind: it was set back) or
    /// `ahead` (the wall clock jumped more than a day ahead).
    pub state: &'static str,
}

impl Coffer {
    /// Start the compliance clock from the persisted mark (or, the first
    /// time, from the wall clock, audited as `clock.init`).
    pub(crate) fn start_compliance_clock(&self) -> Result<()> {
        let wall = self.clock.now();
        let mono = self.clock.monotonic();
        let stored = self.meta.clock_hwm()?;
        let hwm = match stored {
            Some(h) => h,
            None => {
                let h = self.meta.raise_clock_hwm(wall)?;
                self.system_audit("clock.init", "clock", [("at", crate::format_time(h))])?;
                h
            }
        };
        let mut g = self
            .compliance
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *g = Inner {
            started: true,
            anchor: hwm,
            anchor_mono: mono,
            last: hwm,
            persisted: hwm,
            backwards: false,
            forward: false,
        };
        Ok(())
    }

    fn compliance_read(&self) -> UnixMillis {
        let wall = self.clock.now();
        let mono = self.clock.monotonic();
        let (now, began) = {
            let mut g = self
                .compliance
                .inner
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if !g.started {
                // Not started (a core built without `new`): the wall clock.
                return wall;
            }
            g.read(wall, mono)
        };
        if let Some(a) = began {
            let (action, level) = match a {
                Anomaly::Backwards => (
                    "clock.backwards",
                    "the wall clock is behind the compliance clock",
                ),
                Anomaly::ForwardJump => (
                    "clock.forward_jump",
                    "the wall clock is more than a day ahead of the compliance clock",
                ),
            };
            tracing::warn!(wall, compliance = now, "{level}");
            if let Err(e) = self.system_audit(
                action,
                "clock",
                [
                    ("wall", crate::format_time(wall)),
                    ("compliance", crate::format_time(now)),
                ],
            ) {
                tracing::error!(error = %e, "could not audit a clock anomaly");
            }
        }
        now
    }

    /// The compliance clock's early reading: for ages, expiries and
    /// quarantine ends.
    pub fn compliance_now(&self) -> UnixMillis {
        self.compliance_read()
    }

    /// The late reading, max(compliance, wall): for times that start a
    /// protection (commit times, releases, cold-storage starts).
    pub fn compliance_late(&self) -> UnixMillis {
        self.compliance_read().max(self.clock.now())
    }

    /// Persist the compliance clock and re-anchor on it (the
    /// `compliance-clock` worker, and before every destruction).
    pub fn persist_compliance(&self) -> Result<UnixMillis> {
        let now = self.compliance_read();
        let stored = self.meta.raise_clock_hwm(now)?;
        let mono = self.clock.monotonic();
        let mut g = self
            .compliance
            .inner
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if g.started {
            g.anchor = g.last;
            g.anchor_mono = mono;
            g.persisted = stored;
        }
        Ok(stored)
    }

    pub async fn clock_status(&self, p: &Principal) -> Result<ClockStatus> {
        self.require(p, Permission::ReadServer, "clock.show")
            .await?;
        let compliance = self.compliance_read();
        let wall = self.clock.now();
        let persisted = self.meta.clock_hwm()?.unwrap_or(0);
        let state = if wall + BACKWARDS_MS < compliance {
            "behind"
        } else if wall > compliance + FORWARD_JUMP_MS {
            "ahead"
        } else {
            "ok"
        };
        Ok(ClockStatus {
            compliance,
            wall,
            persisted,
            state,
        })
    }

    /// Move the compliance clock to the wall clock when the wall clock is
    /// ahead (never back): an admin's statement that the wall clock is right.
    /// Audited with both times.
    pub async fn accept_clock(&self, p: &Principal) -> Result<ClockStatus> {
        self.require(p, Permission::ManageServer, "clock.accept")
            .await?;
        let before = self.compliance_read();
        let wall = self.clock.now();
        if wall <= before {
            return Err(CoreError::Conflict(format!(
                "the wall clock ({}) is not ahead of the compliance clock ({}); \
                 the compliance clock never moves back",
                crate::format_time(wall),
                crate::format_time(before)
            )));
        }
        {
            let mut g = self
                .compliance
                .inner
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            g.anchor = wall;
            g.anchor_mono = self.clock.monotonic();
            g.last = wall;
            g.forward = false;
        }
        self.meta.raise_clock_hwm(wall)?;
        let d = self.draft(
            p,
            "clock.accept",
            "clock",
            [
                ("from", crate::format_time(before)),
                ("to", crate::format_time(wall)),
            ],
        );
        self.meta.audit_append(&d)?;
        self.meta.durable().await?;
        tracing::warn!(from = before, to = wall, by = %p.account(), "compliance clock moved to the wall clock");
        self.clock_status(p).await
    }

    /// An audit entry by the server itself (appended alone).
    pub(crate) fn system_audit(
        &self,
        action: &str,
        target: &str,
        details: impl IntoIterator<Item = (&'static str, String)>,
    ) -> Result<()> {
        let d = self.draft(&Principal::system(), action, target, details);
        self.meta.audit_append(&d)?;
        Ok(())
    }
}

/// The `compliance-clock` worker: persists the clock every minute.
struct ClockWorker(Coffer);

impl crate::workers::Worker for ClockWorker {
    fn name(&self) -> &str {
        "compliance-clock"
    }

    fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60)
    }

    fn step(&self) -> crate::workers::StepFuture<'_> {
        Box::pin(async move {
            self.0
                .persist_compliance()
                .map_err(|e| format!("persist the compliance clock: {e}"))?;
            self.0
                .meta
                .durable()
                .await
                .map_err(|e| format!("persist the compliance clock: {e}"))?;
            Ok(())
        })
    }
}

impl Coffer {
    /// The worker that persists the compliance clock.
    pub fn clock_worker(&self) -> std::sync::Arc<dyn crate::workers::Worker> {
        std::sync::Arc::new(ClockWorker(self.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 24 * 3600 * 1000;
    const YEAR: u64 = 365 * DAY;

    fn start(at: u64) -> Inner {
        Inner {
            started: true,
            anchor: at,
            anchor_mono: 0,
            last: at,
            persisted: at,
            ..Inner::default()
        }
    }

    #[test]
    fn follows_the_wall_clock_while_it_runs_true() {
        let mut c = start(1_000 * DAY);
        for i in 1..=100u64 {
            let (now, a) = c.read(1_000 * DAY + i * 1000, i * 1000);
            assert_eq!(now, 1_000 * DAY + i * 1000);
            assert_eq!(a, None);
        }
    }

    #[test]
    fn a_clock_set_back_a_year_never_moves_it_back() {
        let t0 = 20_000 * DAY;
        let mut c = start(t0);
        let (now, a) = c.read(t0 - YEAR, 1000);
        assert_eq!(now, t0);
        assert_eq!(a, Some(Anomaly::Backwards));
        // Audited once, not at every reading.
        let (now2, a2) = c.read(t0 - YEAR + 5000, 6000);
        assert_eq!((now2, a2), (t0, None));
    }

    #[test]
    fn a_forward_jump_is_followed_at_the_bounded_rate_only() {
        let t0 = 20_000 * DAY;
        let mut c = start(t0);
        // Ten years ahead, one real hour later.
        let hour = 3600 * 1000;
        let (now, a) = c.read(t0 + 10 * YEAR, hour);
        assert_eq!(a, Some(Anomaly::ForwardJump));
        assert_eq!(now, t0 + hour + hour / 52);
        // A year of real time later it is at most a year and a week on.
        let (now, _) = c.read(t0 + 10 * YEAR + YEAR, YEAR);
        assert!(now <= t0 + YEAR + YEAR / 52 + 1, "{}", now - t0);
        // Set right again: it waits, it does not go back.
        let (after, _) = c.read(t0 + YEAR, YEAR + 1000);
        assert!(after >= now);
    }

    #[test]
    fn forward_and_back_never_shortens_anything() {
        let t0 = 20_000 * DAY;
        let mut c = start(t0);
        let mut max_gain = 0u64;
        for step in 1..=1000u64 {
            let mono = step * 60_000;
            // The wall clock jumps around wildly.
            let wall = if step % 3 == 0 {
                t0 + 5 * YEAR
            } else {
                t0 - YEAR
            };
            let (now, _) = c.read(wall, mono);
            max_gain = max_gain.max(now - t0);
            assert!(now - t0 <= mono + mono / 52);
        }
        assert!(max_gain > 0);
    }
}
