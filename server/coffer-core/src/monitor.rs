//! Device health as the server answers it: the `reporting` thresholds in
//! force per org (cached until a setting or the org tree changes), the
//! `health` object of every device answer, parking, and the connection
//! stamp of every authenticated request. The rules are in
//! [`crate::health`].

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use coffer_types::wire::{DeviceHealth, DeviceInfo};
use coffer_types::{Name, UnixMillis};

use crate::access::{DeviceAuth, Permission, Principal};
use crate::admin::device_missing;
use crate::health::{self, Facts, State, Thresholds};
use crate::settings::Group;
use crate::{Coffer, Result};

/// A device's connection is written at most this often (ms), or a tenth
/// of its org's `warning_after` if that is shorter: every request would
/// otherwise write the metadata.
const CONNECTION_STAMP_EVERY: u64 = 5_000;

/// What the health answers keep in memory.
#[derive(Debug)]
pub(crate) struct MonitorState {
    /// The thresholds in force per org.
    thresholds: Mutex<HashMap<Name, Thresholds>>,
    /// When each device's connection was last written.
    stamped: Mutex<HashMap<Name, UnixMillis>>,
    /// Archives that received data since the evaluator's last tick.
    pub(crate) dirty: Mutex<HashSet<Name>>,
    /// The next tick evaluates every device (at start; after a settings or
    /// org-tree change).
    pub(crate) full_pass: AtomicBool,
    /// No org's digest is due before this time (0: work it out again).
    pub(crate) digest_next: std::sync::atomic::AtomicU64,
    /// The metadata store's id, once read (alert ids name it).
    pub(crate) store_id: std::sync::OnceLock<String>,
}

impl Default for MonitorState {
    fn default() -> Self {
        Self {
            thresholds: Mutex::default(),
            stamped: Mutex::default(),
            dirty: Mutex::default(),
            full_pass: AtomicBool::new(true),
            digest_next: std::sync::atomic::AtomicU64::new(0),
            store_id: std::sync::OnceLock::new(),
        }
    }
}

impl Coffer {
    /// Forget the cached thresholds (a setting or the tree changed).
    pub(crate) fn thresholds_changed(&self) {
        self.monitor.full_pass.store(true, Ordering::SeqCst);
        self.monitor.digest_next.store(0, Ordering::SeqCst);
        self.monitor
            .thresholds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The `reporting` values in force for `org` (inherited).
    pub(crate) fn reporting_values(&self, org: &Name) -> Result<crate::settings::GroupValues> {
        let (chain, _) = self.settings_chain(org)?;
        let refs: Vec<_> = chain.iter().map(|(n, s)| (n, s)).collect();
        Ok(crate::settings::effective(Group::Reporting, &refs))
    }

    /// The `reporting` thresholds in force for `org`.
    pub(crate) fn thresholds(&self, org: &Name) -> Result<Thresholds> {
        if let Some(t) = self
            .monitor
            .thresholds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(org)
        {
            return Ok(*t);
        }
        let v = self.reporting_values(org)?;
        let d = Thresholds::default();
        let ms = |k: &str, dflt: u64| {
            v.get(k)
                .and_then(|e| e.value.as_u64())
                .map_or(dflt, |s| s.saturating_mul(1000))
        };
        let t = Thresholds {
            warning_after: ms("warning_after", d.warning_after),
            critical_after: ms("critical_after", d.critical_after),
            alert_warning_after: ms("alert_warning_after", d.alert_warning_after),
            alert_critical_after: ms("alert_critical_after", d.alert_critical_after),
            remind_every: v
                .get("remind_every")
                .and_then(|e| e.value.as_u64())
                .map(|s| s.saturating_mul(1000).max(1000)),
            digest: match v.get("digest").and_then(|e| e.value.as_str()) {
                Some(p @ ("daily" | "weekly")) => Some(health::DigestSchedule {
                    weekly: p == "weekly",
                    second: v
                        .get("digest_time")
                        .and_then(|e| e.value.as_u64())
                        .unwrap_or(8 * 3600),
                }),
                _ => None,
            },
        };
        self.monitor
            .thresholds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(org.clone(), t);
        Ok(t)
    }

    /// The health of the device `d` describes, at `now`, under its org's
    /// thresholds.
    pub(crate) fn health_at(&self, d: &DeviceInfo, now: UnixMillis) -> Result<health::Health> {
        let facts = Facts {
            enrolled_at: d.enrolled_at,
            last_connection: d.last_connection,
            last_activity: d.last_activity,
            last_completed: d.last_completed,
            parked: d.parked,
        };
        Ok(health::evaluate(&facts, &self.thresholds(&d.org)?, now))
    }

    /// The health object of a device answer, at the server's time now.
    pub(crate) fn health_of(&self, d: &DeviceInfo) -> Result<DeviceHealth> {
        let h = self.health_at(d, self.now())?;
        Ok(DeviceHealth {
            state: h.state.as_str().into(),
            reason: h.reason.as_str().into(),
            since: h.since,
            alert: h.alert.as_str().into(),
            alert_since: h.alert_since,
            next_change: h.next_change,
        })
    }

    /// Park (`true`) or unpark a device: a parked device (on leave,
    /// retired) shows as `parked` and raises no alerts. Audited.
    pub async fn park_device(&self, p: &Principal, id: &Name, parked: bool) -> Result<DeviceInfo> {
        let action = if parked {
            "device.park"
        } else {
            "device.unpark"
        };
        self.seen_device(p, id, Permission::ManageInventory, action)
            .await?;
        let d = self
            .meta
            .set_device_parked(
                id,
                parked,
                &self.draft(p, action, format!("device:{id}"), []),
            )?
            .ok_or_else(|| device_missing(id))?;
        self.meta.durable().await?;
        self.health_touched(&d.archive);
        tracing::info!(device = %id, parked, by = %p.account(), "device parking changed");
        self.device_now(id)
    }

    /// Note a request of `d` (its own token, not a restore token): its last
    /// connection, written at most every few seconds.
    pub fn device_seen(&self, d: &DeviceAuth) {
        if d.restore_token.is_some() {
            return;
        }
        let now = self.now();
        let every = self.thresholds(&d.org).map_or(CONNECTION_STAMP_EVERY, |t| {
            CONNECTION_STAMP_EVERY.min(t.warning_after / 10)
        });
        {
            let mut stamped = self
                .monitor
                .stamped
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match stamped.get(&d.device) {
                Some(t) if now.saturating_sub(*t) < every => return,
                _ => {
                    stamped.insert(d.device.clone(), now);
                }
            }
        }
        if let Err(e) = self.meta.touch_device(&d.device, now, None) {
            tracing::warn!(device = %d.device, error = %e, "could not record a connection");
        }
    }
}

impl Coffer {
    /// Devices per org and health state, now: every state of every org
    /// that has devices (0 where none is in it).
    pub fn devices_per_state(&self) -> Result<std::collections::BTreeMap<(Name, State), u64>> {
        let mut out = std::collections::BTreeMap::new();
        let now = self.now();
        for d in self.meta.devices()? {
            let a = self.meta.archive(&d.archive)?;
            let info = crate::admin::device_info(d, a);
            let h = self.health_at(&info, now)?;
            for s in [State::Ok, State::Warning, State::Critical, State::Parked] {
                *out.entry((info.org.clone(), s)).or_insert(0) += u64::from(s == h.state);
            }
        }
        Ok(out)
    }
}

/// `/metrics`: `coffer_devices{org, state}`, devices per org and health
/// state (orgs only: no device labels, so the series stay few).
#[derive(Debug)]
pub struct HealthMetrics(pub Coffer);

impl prometheus_client::collector::Collector for HealthMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::result::Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::family::Family;
        use prometheus_client::metrics::gauge::Gauge;
        let devices = Family::<Vec<(String, String)>, Gauge>::default();
        match self.0.devices_per_state() {
            Ok(counts) => {
                for ((org, state), n) in counts {
                    devices
                        .get_or_create(&vec![
                            ("org".to_string(), org.to_string()),
                            ("state".to_string(), state.as_str().to_string()),
                        ])
                        .set(n as i64);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not count devices per health state"),
        }
        devices.encode(encoder.encode_descriptor(
            "devices",
            "Devices per org and health state (ok, warning, critical, parked)",
            None,
            devices.metric_type(),
        )?)
    }
}
