//! The host's own rules on top of a retention plugin's plan: the newest
//! backup of the archive and every pinned backup are kept whatever the plan
//! says, and ids the plan invents are ignored. (Legal holds are applied by
//! the server before anything is destroyed.)

use serde::Serialize;

use crate::bindings::retention::{Expiry, Plan};
use crate::bindings::types::BackupSummary;

/// A plan after the host's rules.
#[derive(Debug, Clone, Serialize)]
pub struct GuardedPlan {
    /// What would be expired.
    pub expire: Vec<Expiry>,
    /// What the plugin proposed and the host keeps, with why.
    pub kept_by_host: Vec<(String, String)>,
    /// Ids in the plan that are not backups of this archive.
    pub unknown: Vec<String>,
}

pub fn guard(plan: Plan, backups: &[BackupSummary]) -> GuardedPlan {
    let newest = backups
        .iter()
        .max_by_key(|b| (b.committed_at_ms, b.id.clone()))
        .map(|b| b.id.clone());
    let mut out = GuardedPlan {
        expire: Vec::new(),
        kept_by_host: Vec::new(),
        unknown: Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    for e in plan.expire {
        if !seen.insert(e.backup.clone()) {
            continue;
        }
        match backups.iter().find(|b| b.id == e.backup) {
            None => out.unknown.push(e.backup),
            Some(b) if Some(&b.id) == newest.as_ref() => out
                .kept_by_host
                .push((b.id.clone(), "the newest backup is always kept".into())),
            Some(b) if b.pinned => out
                .kept_by_host
                .push((b.id.clone(), "pinned backups are kept".into())),
            Some(_) => out.expire.push(e),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(id: &str, at: u64, pinned: bool) -> BackupSummary {
        BackupSummary {
            id: id.into(),
            archive: "ar".into(),
            committed_at_ms: at,
            files: 0,
            bytes: 0,
            block_count: 0,
            pinned,
        }
    }

    #[test]
    fn the_newest_and_pinned_backups_survive_any_plan() {
        let backups = [b("old", 1, false), b("pin", 2, true), b("new", 3, false)];
        let plan = Plan {
            expire: ["old", "pin", "new", "ghost", "old"]
                .iter()
                .map(|id| Expiry {
                    backup: id.to_string(),
                    reason: "r".into(),
                })
                .collect(),
        };
        let g = guard(plan, &backups);
        assert_eq!(
            g.expire
                .iter()
                .map(|e| e.backup.as_str())
                .collect::<Vec<_>>(),
            ["old"]
        );
        assert_eq!(
            g.kept_by_host
                .iter()
                .map(|k| k.0.as_str())
                .collect::<Vec<_>>(),
            ["pin", "new"]
        );
        assert_eq!(g.unknown, ["ghost"]);
    }
}
