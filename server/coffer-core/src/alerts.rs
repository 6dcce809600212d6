//! The health evaluator: alert transitions recorded exactly once.
//!
//! Each device's alert level as last evaluated is stored with the time it
//! is next due (`health::Health::next_change`), in an index. A tick of the
//! `health-evaluator` worker evaluates only the devices that are due, the
//! devices whose archive received data since the last tick (recoveries
//! come at once), and — at start and after a settings or org-tree change —
//! every device. When a device's level differs from the stored one, the
//! new level and the transition (old level, new level, reason, time) are
//! written in one transaction: the outbox entry exists exactly when the
//! level changed, whatever crashes, restarts or repeated ticks happen.
//! Delivery channels read the outbox by sequence number.
//!
//! Parked devices raise nothing: going parked, and coming back to `ok`
//! from parked, record the level without an outbox entry.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use coffer_meta::{AlertRecord, AlertStateRecord};
use coffer_types::wire::{AlertInfo, AlertList, DeliveryInfo};
use coffer_types::Name;

use crate::access::{Permission, Principal};
use crate::admin::device_info;
use crate::health::State;
use crate::workers::{StepFuture, Worker};
use crate::{Coffer, CoreError, Result};

/// Most devices one tick evaluates from the due index (the rest wait for
/// the next tick).
const DUE_PER_TICK: usize = 10_000;
/// The delivery channels an alert's deliveries are listed from.
const CHANNELS: &[&str] = &["mail", "webhook"];
/// Most alerts a page lists.
pub const ALERT_PAGE_MAX: usize = 1000;

impl Coffer {
    /// Note that `archive` received data: its device is evaluated at the
    /// next tick.
    pub(crate) fn health_touched(&self, archive: &Name) {
        self.monitor
            .dirty
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(archive.clone());
    }

    /// One tick of the evaluator; how many devices it evaluated and how
    /// many transitions it recorded.
    pub async fn evaluate_health(&self) -> Result<(usize, usize)> {
        let core = self.clone();
        tokio::task::spawn_blocking(move || core.evaluate_health_now())
            .await
            .map_err(|e| CoreError::Internal(format!("evaluate health: {e}")))?
    }

    fn evaluate_health_now(&self) -> Result<(usize, usize)> {
        let now = self.now();
        let full = self
            .monitor
            .full_pass
            .swap(false, std::sync::atomic::Ordering::SeqCst);
        let dirty: Vec<Name> =
            std::mem::take(&mut *self.monitor.dirty.lock().unwrap_or_else(|e| e.into_inner()))
                .into_iter()
                .collect();
        let mut devices: BTreeSet<Name> = BTreeSet::new();
        if full {
            devices.extend(self.meta.devices()?.into_iter().map(|d| d.id));
        } else {
            devices.extend(self.meta.devices_due(now, DUE_PER_TICK)?);
            for a in dirty {
                if let Some(d) = self.meta.device_of_archive(&a)? {
                    devices.insert(d.id);
                }
            }
        }
        let mut recorded = Vec::new();
        for d in &devices {
            if let Some(e) = self.evaluate_device(d, now)? {
                recorded.push(e);
            }
        }
        let n = recorded.len();
        let digests = self.record_digests(now)?;
        if n + digests > 0 {
            self.meta.durable_blocking()?;
        }
        // Plugins hear of a change once it is durable.
        for e in recorded {
            self.events.publish(e);
        }
        Ok((devices.len(), n))
    }

    /// Evaluate one device at `now`; the event of the transition it
    /// recorded, if it did.
    fn evaluate_device(
        &self,
        id: &Name,
        now: coffer_types::UnixMillis,
    ) -> Result<Option<crate::events::Event>> {
        let Some(d) = self.meta.device(id)? else {
            return Ok(None);
        };
        let a = self.meta.archive(&d.archive)?;
        let info = device_info(d, a);
        let h = self.health_at(&info, now)?;
        let old = self.meta.alert_state(id)?;
        let from = old.as_ref().map_or("ok", |o| o.level.as_str()).to_string();
        let to = h.alert.as_str();
        let changed = from != to;
        let silent = h.alert == State::Parked || (from == "parked" && h.alert == State::Ok);
        // Still critical: a reminder every `remind_every`, counted from the
        // last entry about the device.
        let remind = (h.alert == State::Critical)
            .then(|| self.thresholds(&info.org))
            .transpose()?
            .and_then(|t| t.remind_every);
        let last_notice = old
            .as_ref()
            .and_then(|o| o.notified.or(Some(o.since)))
            .unwrap_or(h.alert_since);
        let reminder_due = remind.map(|e| last_notice.saturating_add(e));
        let reminder = !changed && reminder_due.is_some_and(|t| t <= now);
        let record = (changed && !silent) || reminder;
        let notified = if record {
            Some(now)
        } else {
            old.as_ref().and_then(|o| o.notified)
        };
        let next_reminder = remind.map(|e| notified.unwrap_or(last_notice).saturating_add(e));
        let due = match (h.next_change, next_reminder) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let state = AlertStateRecord {
            level: to.to_string(),
            since: if changed {
                h.alert_since
            } else {
                old.as_ref().map_or(h.alert_since, |o| o.since)
            },
            reason: h.reason.as_str().to_string(),
            due,
            notified,
        };
        if old.as_ref() == Some(&state) {
            return Ok(None);
        }
        let transition = record.then(|| AlertRecord {
            seq: 0,
            at: now,
            device: id.clone(),
            org: info.org.clone(),
            from: from.clone(),
            to: to.to_string(),
            reason: state.reason.clone(),
            reminder,
            digest: false,
        });
        let seq = self
            .meta
            .record_alert_state(id, old.as_ref(), &state, transition.as_ref())?;
        Ok(seq.map(|seq| {
            tracing::info!(device = %id, org = %info.org, from = %from, to, reason = %state.reason, seq, "health alert recorded");
            crate::events::Event {
                at: now,
                org: info.org.clone(),
                kind: crate::events::EventKind::HealthChanged {
                    seq,
                    device: id.clone(),
                    name: info.name.clone(),
                    user: info.user.clone(),
                    from,
                    to: to.to_string(),
                    reason: state.reason.clone(),
                    reminder,
                    last_activity: info.last_activity,
                    last_completed: info.last_completed,
                },
            }
        }))
    }

    /// Alert transitions `p` may see, after sequence number `after`.
    pub async fn alerts(&self, p: &Principal, after: u64, limit: usize) -> Result<AlertList> {
        self.require(p, Permission::ReadInventory, "listing alerts")
            .await?;
        let limit = limit.clamp(1, ALERT_PAGE_MAX);
        let tree = self.org_tree();
        let mut out = Vec::new();
        let mut cursor = after;
        // Read in pages until `limit` visible ones (a scoped caller skips
        // other orgs' alerts).
        loop {
            let page = self.meta.alerts(cursor, limit)?;
            let Some(last) = page.last() else { break };
            cursor = last.seq;
            let full = page.len() == limit;
            out.extend(
                page.into_iter()
                    .filter(|a| p.sees(&tree, &a.org))
                    .map(|a| AlertInfo {
                        seq: a.seq,
                        at: a.at,
                        device: a.device,
                        org: a.org,
                        from: a.from,
                        to: a.to,
                        reason: a.reason,
                        reminder: a.reminder,
                        digest: a.digest,
                        deliveries: Vec::new(),
                    }),
            );
            if out.len() >= limit || !full {
                break;
            }
        }
        out.truncate(limit);
        for a in &mut out {
            a.deliveries = self
                .meta
                .deliveries_of(CHANNELS, a.seq)?
                .into_iter()
                .map(|d| DeliveryInfo {
                    state: if d.delivered_at.is_some() {
                        "delivered"
                    } else {
                        "pending"
                    }
                    .into(),
                    next_attempt: d.delivered_at.is_none().then_some(d.next_attempt),
                    channel: d.channel,
                    target: d.target,
                    attempts: d.attempts,
                    last_error: d.last_error,
                    delivered_at: d.delivered_at,
                    outcome: d.outcome,
                })
                .collect();
        }
        Ok(AlertList {
            next_after: (out.len() == limit)
                .then(|| out.last().map(|a| a.seq))
                .flatten(),
            alerts: out,
        })
    }

    /// The `health-evaluator` worker, every `interval`.
    pub fn health_worker(&self, interval: Duration) -> Arc<dyn Worker> {
        Arc::new(HealthEvaluator {
            core: self.clone(),
            interval,
        })
    }
}

struct HealthEvaluator {
    core: Coffer,
    interval: Duration,
}

impl Worker for HealthEvaluator {
    fn name(&self) -> &str {
        "health-evaluator"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn step(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.core
                .evaluate_health()
                .await
                .map(|_| ())
                .map_err(|e| format!("evaluate device health: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use coffer_types::wire::SetOrgSettings;
    use coffer_types::BlockId;

    use crate::testing::{name, Fixture};

    async fn thresholds(f: &Fixture) {
        f.core
            .set_org_settings(
                &f.admin(),
                &name("acme"),
                &SetOrgSettings {
                    group: "reporting".into(),
                    values: [
                        ("warning_after", "10s"),
                        ("critical_after", "30s"),
                        ("alert_warning_after", "10s"),
                        ("alert_critical_after", "20s"),
                    ]
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), serde_json::Value::from(v)))
                    .collect(),
                    mode: None,
                },
            )
            .await
            .unwrap();
    }

    fn log(f: &Fixture) -> Vec<String> {
        f.core
            .meta
            .alerts(0, 100)
            .unwrap()
            .into_iter()
            .map(|a| format!("{} {}->{} {}", a.device, a.from, a.to, a.reason))
            .collect()
    }

    #[tokio::test]
    async fn a_warning_a_critical_and_a_recovery_are_recorded_once_each() {
        let f = Fixture::new();
        f.org("acme", None).await;
        thresholds(&f).await;
        let dev = f.device("acme", "ann", "laptop").await;
        let c = &f.core;
        let id = dev.device.to_string();
        // The first tick sees every device; then nothing is due.
        assert_eq!(c.evaluate_health().await.unwrap(), (1, 0));
        assert_eq!(c.evaluate_health().await.unwrap(), (0, 0));
        f.clock.advance(9_000);
        assert_eq!(c.evaluate_health().await.unwrap(), (0, 0));
        // Due at 10 s: one warning, however many ticks follow.
        f.clock.advance(1_000);
        assert_eq!(c.evaluate_health().await.unwrap(), (1, 1));
        for _ in 0..3 {
            assert_eq!(c.evaluate_health().await.unwrap().1, 0);
        }
        f.clock.advance(10_000);
        assert_eq!(c.evaluate_health().await.unwrap(), (1, 1));
        assert_eq!(
            log(&f),
            [
                format!("{id} ok->warning never_backed_up"),
                format!("{id} warning->critical never_backed_up"),
            ]
        );
        // A restart (a new core over the same store) sends nothing again.
        let again = f.restarted();
        assert_eq!(again.evaluate_health().await.unwrap(), (1, 0));
        // New data and a complete backup: the recovery at the next tick.
        let d = c.authenticate_device(&dev.token).unwrap();
        let s = c.open_session(&d, &d.archive, None).await.unwrap();
        let body = bytes::Bytes::from_static(b"a block");
        let bid = BlockId::of(&body);
        c.put_block(
            &d.archive,
            &bid.to_hex(),
            Some(body.len() as u64),
            Some(s.session.as_str()),
            futures::stream::iter([Ok::<_, std::io::Error>(body)]),
        )
        .await
        .unwrap();
        c.commit(
            &d.archive,
            s.session.as_str(),
            coffer_types::wire::CommitRequest {
                manifest: bid,
                blocks: vec![bid],
                stats: coffer_types::wire::BackupStats {
                    percent: 100.0,
                    ..Default::default()
                },
            },
        )
        .await
        .unwrap();
        assert_eq!(c.evaluate_health().await.unwrap().1, 1);
        assert_eq!(log(&f).last().unwrap(), &format!("{id} critical->ok ok"));
        // Parked: silent both ways.
        c.park_device(&f.admin(), &dev.device, true).await.unwrap();
        f.clock.advance(60_000);
        c.evaluate_health().await.unwrap();
        c.park_device(&f.admin(), &dev.device, false).await.unwrap();
        assert_eq!(log(&f).len(), 3);
        // Unparked while it is red: that is a change worth an alert.
        c.evaluate_health().await.unwrap();
        assert_eq!(
            log(&f).last().unwrap(),
            &format!("{id} parked->critical not_connecting")
        );
        // A scoped caller sees its subtree's alerts only.
        f.org("beta", None).await;
        let beta = f.principal("bea", coffer_types::Role::OrgAdmin, Some("beta"));
        assert!(c.alerts(&beta, 0, 10).await.unwrap().alerts.is_empty());
        assert_eq!(c.alerts(&f.admin(), 0, 10).await.unwrap().alerts.len(), 4);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_evaluators_over_one_store_record_each_change_once() {
        let f = Fixture::new();
        f.org("acme", None).await;
        thresholds(&f).await;
        // (Racing for real: without the store's compare-and-set this fails
        // most runs; the metadata test checks the compare-and-set itself.)
        const N: usize = 150;
        for i in 0..N {
            f.device("acme", &format!("u{i}"), "laptop").await;
        }
        let (a, b) = (f.core.clone(), f.restarted());
        let both = || async {
            let (x, y) = tokio::join!(a.evaluate_health(), b.evaluate_health());
            x.unwrap().1 + y.unwrap().1
        };
        assert_eq!(both().await, 0);
        f.clock.advance(10_000);
        assert_eq!(both().await, N, "each warning once");
        f.clock.advance(10_000);
        assert_eq!(both().await, N, "each critical once");
        assert_eq!(both().await, 0);
        assert_eq!(f.core.meta.alerts(0, 10 * N).unwrap().len(), 2 * N);
    }
}
