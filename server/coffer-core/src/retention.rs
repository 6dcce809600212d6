//! Version retention, pure (research B4, at the granularity the server
//! sees: whole backups). Given an archive's backups with their
//! server-stamped commit times, the tiers and the compliance time, which
//! backups a rule keeps and which may go.
//!
//! - Every backup younger than `keep_all` is kept.
//! - Then, until `daily`, the newest backup of each UTC day; until `weekly`,
//!   the newest of each ISO week (Monday to Sunday); until `monthly` (or
//!   forever), the newest of each calendar month. A bucket is judged among
//!   the backups whose age falls in the tier.
//! - Nothing younger than `min_age` is expired, whatever the tiers (or a
//!   plugin) say.
//! - The newest complete backup (100 % of the selection) is always kept, and
//!   so is the newest backup when it is newer than that (an incomplete one:
//!   the agent's latest state); a backup stamped in the future counts as
//!   age zero.
//!
//! Keep wins: a backup is expired only if no rule keeps it.

use coffer_types::{Name, UnixMillis};
use serde::Serialize;

const DAY_MS: u64 = 24 * 3600 * 1000;

/// The tiers, in seconds (`monthly: None` is forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tiers {
    pub keep_all: u64,
    pub daily: u64,
    pub weekly: u64,
    pub monthly: Option<u64>,
    pub min_age: u64,
}

impl Tiers {
    /// The stricter of two tier sets, tier by tier (what a preservation
    /// policy with tiers applies on top of the org's).
    pub fn stricter(self, o: Tiers) -> Tiers {
        Tiers {
            keep_all: self.keep_all.max(o.keep_all),
            daily: self.daily.max(o.daily),
            weekly: self.weekly.max(o.weekly),
            monthly: match (self.monthly, o.monthly) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            },
            min_age: self.min_age.max(o.min_age),
        }
    }
}

/// A backup as retention sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: Name,
    pub committed_at: UnixMillis,
    pub complete: bool,
}

/// Why a backup is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    Newest,
    KeepAll,
    Daily,
    Weekly,
    Monthly,
    MinAge,
}

impl Keep {
    pub fn as_str(self) -> &'static str {
        match self {
            Keep::Newest => "newest",
            Keep::KeepAll => "keep_all",
            Keep::Daily => "daily",
            Keep::Weekly => "weekly",
            Keep::Monthly => "monthly",
            Keep::MinAge => "min_age",
        }
    }
}

/// Days since the epoch → (year, month) in the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn year_month(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m)
}

/// The bucket of a time in a tier: UTC day, ISO week (Monday-based), or
/// calendar month.
fn bucket(tier: Keep, t: UnixMillis) -> i64 {
    let days = (t / DAY_MS) as i64;
    match tier {
        Keep::Daily => days,
        // 1970-01-01 was a Thursday; 1969-12-29, three days before, a Monday.
        Keep::Weekly => (days + 3).div_euclid(7),
        Keep::Monthly => {
            let (y, m) = year_month(days);
            y * 12 + m as i64
        }
        _ => 0,
    }
}

/// The verdict on every backup (in the order given): `Some(rule)` kept by
/// that rule, `None` expired.
pub fn plan(backups: &[Candidate], tiers: &Tiers, now: UnixMillis) -> Vec<Option<Keep>> {
    let age = |b: &Candidate| now.saturating_sub(b.committed_at) / 1000;
    let mut out: Vec<Option<Keep>> = vec![None; backups.len()];
    // The newest complete backup, and the newest of all when newer.
    let newest_by = |f: &dyn Fn(&Candidate) -> bool| {
        backups
            .iter()
            .enumerate()
            .filter(|(_, b)| f(b))
            .max_by(|(_, a), (_, b)| a.committed_at.cmp(&b.committed_at).then(a.id.cmp(&b.id)))
            .map(|(i, _)| i)
    };
    let newest_complete = newest_by(&|b| b.complete);
    let newest_any = newest_by(&|_| true);
    for i in [newest_complete, newest_any].into_iter().flatten() {
        let keep = match newest_complete {
            Some(c) => backups[i].committed_at >= backups[c].committed_at,
            None => true,
        };
        if keep {
            out[i] = Some(Keep::Newest);
        }
    }
    for (i, b) in backups.iter().enumerate() {
        if out[i].is_none() && age(b) < tiers.keep_all {
            out[i] = Some(Keep::KeepAll);
        }
    }
    let tiers_in_order = [
        (Keep::Daily, tiers.keep_all, Some(tiers.daily)),
        (Keep::Weekly, tiers.daily, Some(tiers.weekly)),
        (Keep::Monthly, tiers.weekly, tiers.monthly),
    ];
    for (tier, from, until) in tiers_in_order {
        let mut newest: std::collections::HashMap<i64, usize> = Default::default();
        for (i, b) in backups.iter().enumerate() {
            let a = age(b);
            if a < from || until.is_some_and(|u| a >= u) {
                continue;
            }
            let k = bucket(tier, b.committed_at);
            let e = newest.entry(k).or_insert(i);
            let cur = &backups[*e];
            if (b.committed_at, &b.id) > (cur.committed_at, &cur.id) {
                *e = i;
            }
        }
        for i in newest.into_values() {
            if out[i].is_none() {
                out[i] = Some(tier);
            }
        }
    }
    for (i, b) in backups.iter().enumerate() {
        if out[i].is_none() && age(b) < tiers.min_age {
            out[i] = Some(Keep::MinAge);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3600 * 1000;

    fn tiers() -> Tiers {
        Tiers {
            keep_all: 7 * 86_400,
            daily: 90 * 86_400,
            weekly: 365 * 86_400,
            monthly: None,
            min_age: 7 * 86_400,
        }
    }

    fn history(from: UnixMillis, to: UnixMillis, every: u64) -> Vec<Candidate> {
        (0..)
            .map(|i| from + i * every)
            .take_while(|t| *t <= to)
            .enumerate()
            .map(|(i, t)| Candidate {
                id: Name::new(format!("bk-{i:08}")).unwrap(),
                committed_at: t,
                complete: true,
            })
            .collect()
    }

    /// An independent oracle: for each tier, group by the calendar bucket
    /// computed through a different route (a days-from-civil table), keep
    /// the newest.
    fn oracle(backups: &[Candidate], t: &Tiers, now: UnixMillis) -> Vec<bool> {
        fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
            let y = if m <= 2 { y - 1 } else { y };
            let era = y.div_euclid(400);
            let yoe = y - era * 400;
            let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
            let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
            era * 146_097 + doe - 719_468
        }
        // Month of a day by search from a table of month starts.
        let mut starts = Vec::new();
        for y in 1969..2100 {
            for m in 1..=12 {
                starts.push((days_from_civil(y, m, 1), y * 12 + m));
            }
        }
        let month = |days: i64| starts.iter().rev().find(|(s, _)| *s <= days).unwrap().1;
        // Backups are in time order and buckets and tiers are contiguous in
        // time, so a backup is the newest of its bucket exactly when the
        // next one is in another tier or another bucket.
        let tier_of = |c: &Candidate| {
            let a = (now - c.committed_at) / 1000;
            if a < t.keep_all {
                0
            } else if a < t.daily {
                1
            } else if a < t.weekly {
                2
            } else {
                3
            }
        };
        let key_of = |c: &Candidate| {
            let days = (c.committed_at / DAY_MS) as i64;
            match tier_of(c) {
                1 => days,
                // Monday-based weeks counted from 1970-01-05, a Monday.
                2 => (days - 4).div_euclid(7),
                _ => month(days),
            }
        };
        let n = backups.len();
        let mut keep = vec![false; n];
        for (i, b) in backups.iter().enumerate() {
            let age = (now - b.committed_at) / 1000;
            let last_of_bucket = match backups.get(i + 1) {
                None => true,
                Some(o) => tier_of(o) != tier_of(b) || key_of(o) != key_of(b),
            };
            keep[i] = i == n - 1
                || age < t.keep_all
                || age < t.min_age
                || (tier_of(b) > 0 && last_of_bucket);
        }
        keep
    }

    #[test]
    fn three_years_at_fifteen_minutes_match_the_oracle() {
        // 2023-01-01T00:00Z to 2026-01-01, every 15 minutes: 105 217 backups.
        let start = 1_672_531_200_000;
        let end = start + (3 * 365 + 1) * 24 * H;
        let h = history(start, end, H / 4);
        let p = plan(&h, &tiers(), end);
        let o = oracle(&h, &tiers(), end);
        let kept: Vec<bool> = p.iter().map(Option::is_some).collect();
        assert_eq!(kept, o);
        let n = kept.iter().filter(|k| **k).count();
        // 7 days of everything (672), 83 days, ~40 weeks, ~25 months.
        assert!((810..=830).contains(&n), "{n}");
    }

    #[test]
    fn buckets_follow_utc_iso_weeks_and_months() {
        let day = |y: i64, m: i64, d: i64| {
            let dd: i64 = {
                let y = if m <= 2 { y - 1 } else { y };
                let era = y / 400;
                let yoe = y - era * 400;
                let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
                era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
            };
            dd as u64 * DAY_MS
        };
        // 2026-12-31 (Thursday) and 2027-01-03 (Sunday) share ISO week 53.
        assert_eq!(
            bucket(Keep::Weekly, day(2026, 12, 31)),
            bucket(Keep::Weekly, day(2027, 1, 3))
        );
        // 2027-01-04 is a Monday: the next week.
        assert_ne!(
            bucket(Keep::Weekly, day(2027, 1, 3)),
            bucket(Keep::Weekly, day(2027, 1, 4))
        );
        // Leap day is February; March 1st is not.
        assert_eq!(
            bucket(Keep::Monthly, day(2028, 2, 29)),
            bucket(Keep::Monthly, day(2028, 2, 1))
        );
        assert_ne!(
            bucket(Keep::Monthly, day(2028, 2, 29)),
            bucket(Keep::Monthly, day(2028, 3, 1))
        );
        // A second before midnight UTC is the day before.
        assert_ne!(
            bucket(Keep::Daily, day(2027, 3, 28) - 1000),
            bucket(Keep::Daily, day(2027, 3, 28))
        );
    }

    #[test]
    fn the_newest_complete_backup_is_always_kept_and_failed_ones_do_not_count() {
        let now = 1_800_000_000_000;
        let old = now - 400 * 86_400_000;
        let mk = |i: u64, t, complete| Candidate {
            id: Name::new(format!("bk-{i}")).unwrap(),
            committed_at: t,
            complete,
        };
        // Everything is far past every tier but the monthly one, which is
        // off: only "newest" keeps anything.
        let t = Tiers {
            keep_all: 0,
            daily: 0,
            weekly: 0,
            monthly: Some(0),
            min_age: 0,
        };
        let bs = vec![
            mk(1, old, true),
            mk(2, old + 1000, false),
            mk(3, old + 2000, true),
            mk(4, old + 3000, false),
        ];
        let p = plan(&bs, &t, now);
        // bk-3 is the newest complete; bk-4 (incomplete, newer) is kept too;
        // bk-2 (incomplete, older than the newest complete) goes.
        assert_eq!(p, vec![None, None, Some(Keep::Newest), Some(Keep::Newest)]);
        // A backup stamped in the future is age zero, never expired.
        let f = vec![mk(1, now - 1000, true), mk(2, now + 86_400_000, true)];
        assert_eq!(plan(&f, &tiers(), now)[1], Some(Keep::Newest));
    }

    #[test]
    fn min_age_floors_every_tier() {
        let now = 1_800_000_000_000;
        let t = Tiers {
            keep_all: 0,
            daily: 0,
            weekly: 0,
            monthly: Some(0),
            min_age: 7 * 86_400,
        };
        // A burst of 100 backups in the last hour: min_age keeps them all
        // (a compromised agent cannot flush real backups with fakes).
        let h = history(now - H, now, 36_000);
        assert!(plan(&h, &t, now).iter().all(Option::is_some));
    }

    #[test]
    fn stricter_is_tier_by_tier() {
        let a = tiers();
        let b = Tiers {
            keep_all: 30 * 86_400,
            daily: 60 * 86_400,
            weekly: 400 * 86_400,
            monthly: Some(800 * 86_400),
            min_age: 0,
        };
        let s = a.stricter(b);
        assert_eq!(
            (s.keep_all, s.daily, s.weekly, s.monthly, s.min_age),
            (30 * 86_400, 90 * 86_400, 400 * 86_400, None, 7 * 86_400)
        );
    }
}
