//! An inventory report: one row per device with its health, last backup and
//! stored bytes. Returns a table; `coffer admin report run csv-report
//! --format csv` renders it as CSV (or `--format json`).

use coffer_plugin_sdk::reporter::{
    export, inventory, CallContext, Guest, HealthState, PluginError, Report, Table,
};

struct CsvReport;

fn age(now_ms: u64, at: Option<u64>) -> String {
    match at {
        None => "never".into(),
        Some(t) => {
            let h = now_ms.saturating_sub(t) / 3_600_000;
            if h < 48 {
                format!("{h} h ago")
            } else {
                format!("{} d ago", h / 24)
            }
        }
    }
}

impl Guest for CsvReport {
    fn report(ctx: CallContext, params: Vec<(String, String)>) -> Result<Report, PluginError> {
        let only_unhealthy = params
            .iter()
            .any(|(k, v)| k == "unhealthy-only" && v == "true");
        let health = inventory::health();
        let mut rows = Vec::new();
        for d in inventory::devices() {
            let state = health
                .iter()
                .find(|h| h.device == d.id)
                .map(|h| h.state)
                .unwrap_or(HealthState::Green);
            if only_unhealthy && state == HealthState::Green {
                continue;
            }
            rows.push(vec![
                d.org.clone(),
                d.user.clone(),
                d.name.clone(),
                d.id.clone(),
                match state {
                    HealthState::Green => "green",
                    HealthState::Yellow => "yellow",
                    HealthState::Red => "red",
                }
                .into(),
                age(ctx.now_ms, d.last_backup_ms),
                d.backup_count.to_string(),
                format!("{:.1}", d.stored_bytes as f64 / (1u64 << 20) as f64),
                if d.revoked { "revoked" } else { "active" }.into(),
            ]);
        }
        rows.sort();
        Ok(Report::Table(Table {
            columns: [
                "org",
                "user",
                "device",
                "device id",
                "health",
                "last backup",
                "backups",
                "stored MiB",
                "status",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        }))
    }
}

export!(CsvReport);
