//! Posts a JSON message to a webhook for committed backups, for failed or
//! aborted sessions, for stored blocks found damaged or healed, and for
//! changes of a device's health (0.3.0). The URL's host must be on the
//! operator's allow-list for this plugin; the host refuses anything else.

use coffer_plugin_sdk::integration::{
    export, http_client, kv, CallContext, Event, EventKind, Guest, PluginError,
};
#[cfg(not(feature = "contract-0-1"))]
use coffer_plugin_sdk::integration::{DamageKind, DetectedBy};
use serde_json::json;

struct Webhook;

fn wanted(ctx: &CallContext, kind: &str) -> bool {
    ctx.config("events")
        .unwrap_or("committed,failed,aborted,damaged,healed,health")
        .split(',')
        .any(|k| k.trim() == kind)
}

fn message(e: &Event) -> Option<(&'static str, serde_json::Value)> {
    Some(match &e.kind {
        EventKind::BackupCommitted(b) => (
            "committed",
            json!({"event": "backup.committed", "org": e.org, "at_ms": e.at_ms, "backup": b.id,
                   "archive": b.archive, "files": b.files, "bytes": b.bytes}),
        ),
        EventKind::SessionFailed(s) => (
            "failed",
            json!({"event": "session.failed", "org": e.org, "at_ms": e.at_ms, "session": s.id,
                   "archive": s.archive, "device": s.device, "reason": s.reason}),
        ),
        EventKind::SessionAborted(s) => (
            "aborted",
            json!({"event": "session.aborted", "org": e.org, "at_ms": e.at_ms, "session": s.id,
                   "archive": s.archive, "device": s.device, "reason": s.reason}),
        ),
        // Kinds added by coffer:plugin@0.2.0.
        #[cfg(not(feature = "contract-0-1"))]
        EventKind::BlockDamaged(d) => (
            "damaged",
            json!({"event": "block.damaged", "org": e.org, "at_ms": e.at_ms, "archive": d.archive,
            "device": d.device, "block": d.block, "damage": match d.kind {
                DamageKind::Corrupt => "corrupt",
                DamageKind::Missing => "missing",
            }, "found_by": match d.detected_by {
                DetectedBy::Scrub => "scrub",
                DetectedBy::Read => "read",
            }}),
        ),
        #[cfg(not(feature = "contract-0-1"))]
        EventKind::BlockHealed(h) => (
            "healed",
            json!({"event": "block.healed", "org": e.org, "at_ms": e.at_ms, "archive": h.archive,
                   "device": h.device, "block": h.block}),
        ),
        // Added by coffer:plugin@0.3.0.
        #[cfg(not(any(feature = "contract-0-1", feature = "contract-0-2")))]
        EventKind::HealthChanged(h) => (
            "health",
            json!({"event": if h.reminder { "health.reminder" } else { "health.changed" },
                   "org": e.org, "at_ms": e.at_ms, "device": h.device, "name": h.name,
                   "user": h.user, "from": level(h.old_level), "to": level(h.new_level),
                   "reason": h.reason}),
        ),
        _ => return None,
    })
}

#[cfg(not(any(feature = "contract-0-1", feature = "contract-0-2")))]
fn level(l: coffer_plugin_sdk::integration::AlertLevel) -> &'static str {
    use coffer_plugin_sdk::integration::AlertLevel as L;
    match l {
        L::Ok => "ok",
        L::Warning => "warning",
        L::Critical => "critical",
        L::Parked => "parked",
    }
}

impl Guest for Webhook {
    fn on_events(ctx: CallContext, events: Vec<Event>) -> Result<(), PluginError> {
        let url = ctx
            .config("url")
            .ok_or_else(|| PluginError::new("bad_config", "no url configured"))?
            .to_string();
        let messages: Vec<_> = events
            .iter()
            .filter_map(message)
            .filter(|(k, _)| wanted(&ctx, k))
            .map(|(_, m)| m)
            .collect();
        if messages.is_empty() {
            return Ok(());
        }
        // How many messages this plugin has delivered, kept across calls in
        // its private key-value store.
        let delivered: u64 = kv::get("delivered")
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = json!({"source": "coffer", "plugin": ctx.plugin, "sequence": delivered + 1,
                          "messages": messages});
        let resp = http_client::send(&http_client::Request {
            method: "POST".into(),
            url: url.clone(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        })
        .map_err(|e| PluginError::new("http_denied", e))?;
        if !(200..300).contains(&resp.status) {
            return Err(PluginError::new(
                "delivery_failed",
                format!("{url} answered {}", resp.status),
            ));
        }
        let _ = kv::set("delivered", (delivered + 1).to_string().as_bytes());
        Ok(())
    }
}

export!(Webhook);
