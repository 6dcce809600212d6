//! Grandfather-father-son retention: keep the newest backup of each of the
//! last `daily` days, `weekly` weeks, `monthly` months and `yearly` years
//! (UTC, by the server's commit time); propose the rest for expiry.
//!
//! The host keeps the archive's newest backup and pinned backups whatever
//! this plan says, and legal holds beat every plan.

use coffer_plugin_sdk::retention::{
    export, info, Archive, BackupSummary, CallContext, Expiry, Guest, Plan, PluginError,
};

struct Gfs;

const DAY_MS: u64 = 86_400_000;

/// (year, month) of a day number since 1970-01-01 (proleptic Gregorian).
fn year_month(days: i64) -> (i64, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

impl Guest for Gfs {
    fn plan(
        ctx: CallContext,
        archive: Archive,
        mut backups: Vec<BackupSummary>,
    ) -> Result<Plan, PluginError> {
        let quotas = [
            ("daily", ctx.config_u64("daily", 7)?),
            ("weekly", ctx.config_u64("weekly", 4)?),
            ("monthly", ctx.config_u64("monthly", 12)?),
            ("yearly", ctx.config_u64("yearly", 3)?),
        ];
        backups.sort_by_key(|b| std::cmp::Reverse(b.committed_at_ms));
        let mut seen: [Vec<i64>; 4] = Default::default();
        let mut expire = Vec::new();
        for b in &backups {
            let day = (b.committed_at_ms / DAY_MS) as i64;
            let (y, m) = year_month(day);
            // Weeks start on Monday: 1970-01-01 was a Thursday.
            let buckets = [day, (day + 3).div_euclid(7), y * 12 + i64::from(m), y];
            let mut kept = false;
            for (i, bucket) in buckets.iter().enumerate() {
                if !seen[i].contains(bucket) && (seen[i].len() as u64) < quotas[i].1 {
                    seen[i].push(*bucket);
                    kept = true;
                }
            }
            if !kept {
                expire.push(Expiry {
                    backup: b.id.clone(),
                    reason: format!(
                        "not the newest of any of the last {} days, {} weeks, {} months or {} years",
                        quotas[0].1, quotas[1].1, quotas[2].1, quotas[3].1
                    ),
                });
            }
        }
        info(&format!(
            "archive {}: {} backups, {} proposed for expiry",
            archive.id,
            backups.len(),
            expire.len()
        ));
        Ok(Plan { expire })
    }
}

export!(Gfs);

#[cfg(test)]
mod tests {
    use super::year_month;

    #[test]
    fn civil_months() {
        assert_eq!(year_month(0), (1970, 1));
        assert_eq!(year_month(31), (1970, 2));
        assert_eq!(year_month(20_454), (2026, 1)); // 2026-01-01
        assert_eq!(year_month(-1), (1969, 12));
    }
}
