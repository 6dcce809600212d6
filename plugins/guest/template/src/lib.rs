//! Template: a retention policy that keeps the newest `keep` backups.
//! Replace the body of `plan` (or switch the SDK feature and implement
//! another world's `Guest`).

use coffer_plugin_sdk::retention::{
    export, Archive, BackupSummary, CallContext, Expiry, Guest, Plan, PluginError,
};

struct Template;

impl Guest for Template {
    fn plan(
        ctx: CallContext,
        _archive: Archive,
        mut backups: Vec<BackupSummary>,
    ) -> Result<Plan, PluginError> {
        let keep = ctx.config_u64("keep", 10)? as usize;
        backups.sort_by_key(|b| std::cmp::Reverse(b.committed_at_ms));
        Ok(Plan {
            expire: backups
                .iter()
                .skip(keep)
                .map(|b| Expiry {
                    backup: b.id.clone(),
                    reason: format!("older than the newest {keep}"),
                })
                .collect(),
        })
    }
}

export!(Template);
