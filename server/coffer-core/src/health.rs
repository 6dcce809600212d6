//! Device health (seed 001, DESIGN §5), pure: from a device's
//! server-stamped facts, its org's `reporting` thresholds and the time,
//! its state (green / yellow / red, or parked), the reason, when the state
//! began, and when it next changes if nothing arrives.
//!
//! - **Age**: the time since the destination last received new data (a
//!   block or a progress report); a device that has never completed a
//!   backup is judged by the time since it was enrolled.
//! - **State** (the console's colours): `warning` from
//!   `reporting.warning_after` of age, `critical` from `critical_after`.
//! - **Alert level** (what the mails and webhooks say): the same age
//!   against `alert_warning_after` and `alert_critical_after`.
//! - **Reason**, telling connection problems from backup problems:
//!   `never_backed_up` (no completed backup yet), `not_connecting` (no
//!   authenticated request for `warning_after`), `connecting_no_new_data`
//!   (it connects, but sends nothing new), `not_completing` (data arrives
//!   but no commit at 100 % for `warning_after`: locked files, a selection
//!   too large for the interval), `ok`.
//! - A **parked** device (on leave, retired) shows as `parked` and raises
//!   no alerts; its reason is still worked out.

use coffer_types::UnixMillis;
use serde::{Deserialize, Serialize};

/// A device's health state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Ok,
    Warning,
    Critical,
    Parked,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Warning => "warning",
            State::Critical => "critical",
            State::Parked => "parked",
        }
    }

    pub fn parse(t: &str) -> Result<State, String> {
        match t {
            "ok" => Ok(State::Ok),
            "warning" => Ok(State::Warning),
            "critical" => Ok(State::Critical),
            "parked" => Ok(State::Parked),
            _ => Err(format!(
                "{t:?} is not a health state; use ok, warning, critical or parked"
            )),
        }
    }
}

/// Why a device is in its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    Ok,
    NeverBackedUp,
    NotConnecting,
    ConnectingNoNewData,
    NotCompleting,
}

impl Reason {
    pub const ALL: [Reason; 5] = [
        Reason::Ok,
        Reason::NeverBackedUp,
        Reason::NotConnecting,
        Reason::ConnectingNoNewData,
        Reason::NotCompleting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::NeverBackedUp => "never_backed_up",
            Reason::NotConnecting => "not_connecting",
            Reason::ConnectingNoNewData => "connecting_no_new_data",
            Reason::NotCompleting => "not_completing",
        }
    }

    pub fn parse(t: &str) -> Result<Reason, String> {
        Reason::ALL
            .into_iter()
            .find(|r| r.as_str() == t)
            .ok_or_else(|| {
                let all: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
                format!("{t:?} is not a health reason; use {}", all.join(", "))
            })
    }
}

/// The `reporting` thresholds in force for a device's org, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub warning_after: u64,
    pub critical_after: u64,
    pub alert_warning_after: u64,
    pub alert_critical_after: u64,
    /// While the alert level is critical, remind this often (`None`: off).
    pub remind_every: Option<u64>,
    /// The org's digest (`None`: off).
    pub digest: Option<DigestSchedule>,
}

/// When an org's digest goes out: every day, or every Monday, at `second`
/// seconds after midnight UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestSchedule {
    pub weekly: bool,
    pub second: u64,
}

const DAY_MS: u64 = 86_400_000;

impl DigestSchedule {
    /// How long one period lasts.
    pub fn length(self) -> u64 {
        if self.weekly {
            7 * DAY_MS
        } else {
            DAY_MS
        }
    }

    /// The latest scheduled time at or before `now`: when the period the
    /// digest of `now` covers began. (1970-01-01 was a Thursday.)
    pub fn period_start(self, now: UnixMillis) -> UnixMillis {
        let day = now / DAY_MS;
        let first = if self.weekly {
            day - (day + 3) % 7
        } else {
            day
        };
        let at = first * DAY_MS + self.second * 1000;
        if at <= now {
            at
        } else {
            at.saturating_sub(self.length())
        }
    }
}

impl Default for Thresholds {
    /// The defaults of the settings: 3 d, 7 d; alerts at 3 d and 5 d.
    fn default() -> Self {
        const DAY: u64 = 24 * 3600 * 1000;
        Self {
            warning_after: 3 * DAY,
            critical_after: 7 * DAY,
            alert_warning_after: 3 * DAY,
            alert_critical_after: 5 * DAY,
            remind_every: None,
            digest: None,
        }
    }
}

/// What the server recorded of a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Facts {
    pub enrolled_at: UnixMillis,
    /// Any authenticated request.
    pub last_connection: Option<UnixMillis>,
    /// New data: a block stored or progress reported.
    pub last_activity: Option<UnixMillis>,
    /// A commit at 100 % of the selection.
    pub last_completed: Option<UnixMillis>,
    pub parked: bool,
}

/// A device's health at one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    pub state: State,
    pub reason: Reason,
    /// When the state began (for `ok`, when the data that made it ok
    /// arrived).
    pub since: UnixMillis,
    /// The alert level: `ok`, `warning`, `critical`, or `parked`.
    pub alert: State,
    /// When the alert level began.
    pub alert_since: UnixMillis,
    /// When the state, the alert level or the reason next changes if no
    /// new fact arrives (`None`: not before one does).
    pub next_change: Option<UnixMillis>,
}

/// The level of `age_from` at `now` against two thresholds, when that level
/// began, and when the next level begins.
fn level(
    age_from: UnixMillis,
    warning: u64,
    critical: u64,
    now: UnixMillis,
) -> (State, UnixMillis, Option<UnixMillis>) {
    let (w, c) = (
        age_from.saturating_add(warning),
        age_from.saturating_add(critical.max(warning)),
    );
    if now >= c {
        (State::Critical, c, None)
    } else if now >= w {
        (State::Warning, w, Some(c))
    } else {
        (State::Ok, age_from, Some(w))
    }
}

/// The health of a device with facts `f` under thresholds `t` at `now`.
pub fn evaluate(f: &Facts, t: &Thresholds, now: UnixMillis) -> Health {
    // Times are server-stamped; one in the future (a clock moved back)
    // counts as now, never as a longer age.
    let at = |x: UnixMillis| x.min(now);
    let enrolled = at(f.enrolled_at);
    let age_from = match f.last_completed {
        None => enrolled,
        Some(c) => at(f.last_activity.unwrap_or(c).max(c)),
    };
    let (state, since, next_state) = level(age_from, t.warning_after, t.critical_after, now);
    let (alert, alert_since, next_alert) =
        level(age_from, t.alert_warning_after, t.alert_critical_after, now);

    // The reason, and when it would change: each cause begins once its
    // fact is `warning_after` old.
    let stale = |x: Option<UnixMillis>| {
        let from = at(x.unwrap_or(f.enrolled_at).max(enrolled));
        let due = from.saturating_add(t.warning_after);
        (now >= due, due)
    };
    let (no_conn, conn_due) = stale(f.last_connection);
    let (no_data, data_due) = stale(f.last_activity);
    let (no_done, done_due) = stale(f.last_completed);
    let (reason, next_reason) = if f.last_completed.is_none() {
        (Reason::NeverBackedUp, None)
    } else if no_conn {
        (Reason::NotConnecting, None)
    } else if no_data {
        (Reason::ConnectingNoNewData, Some(conn_due))
    } else if no_done {
        (Reason::NotCompleting, Some(conn_due.min(data_due)))
    } else {
        (Reason::Ok, Some(conn_due.min(data_due).min(done_due)))
    };

    let next_change = [next_state, next_alert, next_reason]
        .into_iter()
        .flatten()
        .min();
    if f.parked {
        return Health {
            state: State::Parked,
            reason,
            since,
            alert: State::Parked,
            alert_since,
            next_change: None,
        };
    }
    Health {
        state,
        reason,
        since,
        alert,
        alert_since,
        next_change,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600 * 1000;
    const D: u64 = 24 * H;
    const T0: u64 = 1_000 * D;

    fn facts(conn: Option<u64>, act: Option<u64>, done: Option<u64>) -> Facts {
        Facts {
            enrolled_at: T0,
            last_connection: conn,
            last_activity: act,
            last_completed: done,
            parked: false,
        }
    }

    fn at(f: &Facts, days_after: f64) -> Health {
        evaluate(
            f,
            &Thresholds::default(),
            T0 + (days_after * D as f64) as u64,
        )
    }

    #[test]
    fn states_at_each_threshold_by_age_of_new_data() {
        // A completed backup at day 1, nothing since.
        let f = facts(Some(T0 + D), Some(T0 + D), Some(T0 + D));
        let cases = [
            (1.0, State::Ok, State::Ok),
            (3.99, State::Ok, State::Ok),
            (4.0, State::Warning, State::Warning),
            (5.99, State::Warning, State::Warning),
            (6.0, State::Warning, State::Critical),
            (7.99, State::Warning, State::Critical),
            (8.0, State::Critical, State::Critical),
            (80.0, State::Critical, State::Critical),
        ];
        for (day, state, alert) in cases {
            let h = at(&f, day);
            assert_eq!((h.state, h.alert), (state, alert), "day {day}");
        }
        // When each began, and what comes next.
        let h = at(&f, 2.0);
        assert_eq!((h.since, h.next_change), (T0 + D, Some(T0 + 4 * D)));
        let h = at(&f, 5.0);
        assert_eq!(h.since, T0 + 4 * D);
        assert_eq!(h.next_change, Some(T0 + 6 * D));
        let h = at(&f, 6.5);
        assert_eq!(
            (h.alert_since, h.next_change),
            (T0 + 6 * D, Some(T0 + 8 * D))
        );
        assert_eq!(at(&f, 9.0).next_change, None);
        // New data makes it green again at once.
        let back = facts(Some(T0 + 9 * D), Some(T0 + 9 * D), Some(T0 + D));
        let h = at(&back, 9.0);
        assert_eq!(
            (h.state, h.alert, h.since),
            (State::Ok, State::Ok, T0 + 9 * D)
        );
    }

    #[test]
    fn each_reason_at_its_threshold() {
        let r = |f: Facts, day: f64| at(&f, day).reason;
        // Enrolled, never completed: judged from enrollment.
        let never = facts(Some(T0 + D), Some(T0 + D), None);
        assert_eq!(r(never, 0.5), Reason::NeverBackedUp);
        // Data arrives, but without a completed backup the age runs from
        // enrollment.
        assert_eq!(at(&never, 2.9).state, State::Ok);
        assert_eq!(at(&never, 3.0).state, State::Warning);
        // Backing up well.
        let good = facts(Some(T0 + 2 * D), Some(T0 + 2 * D), Some(T0 + 2 * D));
        assert_eq!(r(good, 4.9), Reason::Ok);
        // No connection for warning_after.
        assert_eq!(r(good, 5.0), Reason::NotConnecting);
        // Connecting (day 6), nothing new since day 2.
        let idle = facts(Some(T0 + 6 * D), Some(T0 + 2 * D), Some(T0 + 2 * D));
        assert_eq!(r(idle, 6.0), Reason::ConnectingNoNewData);
        assert_eq!(at(&idle, 6.0).state, State::Warning);
        // Data every day, no 100 % commit since day 2: green, not completing.
        let partial = facts(Some(T0 + 6 * D), Some(T0 + 6 * D), Some(T0 + 2 * D));
        let h = at(&partial, 6.0);
        assert_eq!((h.state, h.reason), (State::Ok, Reason::NotCompleting));
        assert_eq!(r(partial, 4.9), Reason::Ok);
        // The reason's change is a next change too: good turns
        // not_connecting at day 5.
        assert_eq!(at(&good, 4.0).next_change, Some(T0 + 5 * D));
    }

    #[test]
    fn parked_devices_are_parked_and_due_for_nothing() {
        let mut f = facts(None, None, None);
        f.parked = true;
        let h = at(&f, 30.0);
        assert_eq!(
            (h.state, h.alert, h.next_change),
            (State::Parked, State::Parked, None)
        );
        assert_eq!(h.reason, Reason::NeverBackedUp);
    }

    #[test]
    fn a_time_in_the_future_never_makes_a_device_look_older() {
        // A clock moved back: the recorded times are after now.
        let f = facts(Some(T0 + 9 * D), Some(T0 + 9 * D), Some(T0 + 9 * D));
        let h = at(&f, 5.0);
        assert_eq!((h.state, h.reason), (State::Ok, Reason::Ok));
        assert_eq!(h.since, T0 + 5 * D);
    }

    #[test]
    fn thresholds_set_in_seconds_work_the_same() {
        let t = Thresholds {
            warning_after: 2_000,
            critical_after: 4_000,
            alert_warning_after: 2_000,
            alert_critical_after: 3_000,
            remind_every: None,
            digest: None,
        };
        let f = facts(Some(T0), Some(T0), Some(T0));
        let s = |ms| evaluate(&f, &t, T0 + ms);
        assert_eq!(s(1_999).alert, State::Ok);
        assert_eq!(s(2_000).alert, State::Warning);
        assert_eq!(s(3_000).alert, State::Critical);
        assert_eq!(s(3_000).state, State::Warning);
        assert_eq!(s(4_000).state, State::Critical);
        assert!(State::parse("red").is_err());
        assert_eq!(Reason::parse("not_completing"), Ok(Reason::NotCompleting));
    }

    #[test]
    fn digests_fall_daily_or_on_mondays_at_their_time() {
        // 2026-12-02 is a Wednesday; 08:00 UTC is second 28 800.
        let wed_0930 = 1_796_203_800_000; // 2026-12-02T09:30:00Z
        let daily = DigestSchedule {
            weekly: false,
            second: 28_800,
        };
        assert_eq!(daily.period_start(wed_0930), 1_796_198_400_000); // 12-02 08:00
        let wed_0700 = wed_0930 - 150 * 60_000;
        assert_eq!(daily.period_start(wed_0700), 1_796_198_400_000 - 86_400_000);
        let weekly = DigestSchedule {
            weekly: true,
            second: 28_800,
        };
        // Monday 2026-11-30 08:00.
        assert_eq!(weekly.period_start(wed_0930), 1_796_025_600_000);
        assert_eq!(weekly.period_start(1_796_025_600_000), 1_796_025_600_000);
        assert_eq!(
            weekly.period_start(1_796_025_600_000 - 1),
            1_796_025_600_000 - 7 * 86_400_000
        );
    }
}
