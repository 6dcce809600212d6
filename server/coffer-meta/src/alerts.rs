//! Health alerts: each device's alert level as last recorded, the index of
//! when each device is next due for evaluation, and the outbox of alert
//! transitions (old level, new level, reason, time), appended in the same
//! transaction that records the new level, so a transition is never lost
//! and never recorded twice.

use coffer_types::{Name, UnixMillis};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::engine::{enc, engine, get, tx_err, tx_get};
use crate::{MetaStore, Result};

/// A device's alert level as last evaluated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertStateRecord {
    /// `ok`, `warning`, `critical` or `parked`.
    pub level: String,
    pub since: UnixMillis,
    pub reason: String,
    /// When it is next due for evaluation (its index key).
    pub due: Option<UnixMillis>,
    /// When its last outbox entry (a change or a reminder) was recorded.
    #[serde(default)]
    pub notified: Option<UnixMillis>,
}

/// One alert transition, in the outbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// Order of recording; assigned by the store.
    pub seq: u64,
    pub at: UnixMillis,
    pub device: Name,
    pub org: Name,
    pub from: String,
    pub to: String,
    pub reason: String,
    /// Still critical after `reporting.remind_every` (`from` = `to`).
    #[serde(default)]
    pub reminder: bool,
    /// An org's digest, not a device's alert: `device` holds the org's
    /// name, `reason` the period (`daily`, `weekly`), `at` when the period
    /// began.
    #[serde(default)]
    pub digest: bool,
}

fn due_key(due: UnixMillis, device: &Name) -> Vec<u8> {
    let mut k = due.to_be_bytes().to_vec();
    k.extend_from_slice(device.as_str().as_bytes());
    k
}

impl MetaStore {
    pub fn alert_state(&self, device: &Name) -> Result<Option<AlertStateRecord>> {
        get(
            &self.t.alert_state,
            device.as_str().as_bytes(),
            "alert state",
        )
    }

    /// Record `device`'s evaluated level (re-indexing when it is next due)
    /// and, with `transition`, append it to the outbox, if its stored level
    /// is still `expected` (what the evaluation started from); returns the
    /// transition's sequence number. Nothing is written when another
    /// evaluator changed it meanwhile: a change is recorded once.
    pub fn record_alert_state(
        &self,
        device: &Name,
        expected: Option<&AlertStateRecord>,
        state: &AlertStateRecord,
        transition: Option<&AlertRecord>,
    ) -> Result<Option<u64>> {
        let t = &self.t;
        let k = device.as_str().as_bytes();
        (&t.alert_state, &t.alert_due, &t.alert_outbox)
            .transaction(|(states, due, outbox)| {
                let current = tx_get::<AlertStateRecord>(states, k, "alert state")?;
                if current.as_ref() != expected {
                    return Ok(None);
                }
                if let Some(old) = current {
                    if let Some(d) = old.due {
                        due.remove(due_key(d, device))?;
                    }
                }
                if let Some(d) = state.due {
                    due.insert(due_key(d, device), &[][..])?;
                }
                states.insert(k, enc(state))?;
                let Some(tr) = transition else {
                    return Ok(None);
                };
                let seq = outbox.generate_id()? + 1;
                let rec = AlertRecord { seq, ..tr.clone() };
                outbox.insert(&seq.to_be_bytes()[..], enc(&rec))?;
                Ok(Some(seq))
            })
            .map_err(tx_err("record an alert state"))
    }

    /// Devices due for evaluation at `now`, oldest due first, at most
    /// `limit`.
    pub fn devices_due(&self, now: UnixMillis, limit: usize) -> Result<Vec<Name>> {
        let mut out = Vec::new();
        for kv in self
            .t
            .alert_due
            .range(..(now.saturating_add(1)).to_be_bytes().to_vec())
        {
            let (k, _) = kv.map_err(engine("scan due devices"))?;
            if let Some(n) = std::str::from_utf8(&k[8..])
                .ok()
                .and_then(|s| Name::new(s).ok())
            {
                out.push(n);
            }
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Outbox entry `seq`.
    pub fn alert(&self, seq: u64) -> Result<Option<AlertRecord>> {
        get(&self.t.alert_outbox, &seq.to_be_bytes(), "alert")
    }

    /// Alert transitions after sequence number `after`, oldest first, at
    /// most `limit`.
    pub fn alerts(&self, after: u64, limit: usize) -> Result<Vec<AlertRecord>> {
        let mut out = Vec::new();
        for kv in self
            .t
            .alert_outbox
            .range(after.saturating_add(1).to_be_bytes().to_vec()..)
        {
            let (_, v) = kv.map_err(engine("scan the alert outbox"))?;
            out.push(crate::engine::dec("alert", &v)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }
}

impl MetaStore {
    /// Record `org`'s digest of the period that began at `period`, once:
    /// the outbox entry and the org's last period in one transaction. The
    /// first call for an org only notes the period (digests start at the
    /// next one). Returns the entry's sequence number when one was made.
    pub fn record_digest(
        &self,
        org: &Name,
        period: UnixMillis,
        entry: &AlertRecord,
    ) -> Result<Option<u64>> {
        let t = &self.t;
        let k = org.as_str().as_bytes();
        (&t.digest_state, &t.alert_outbox)
            .transaction(|(state, outbox)| {
                let last: Option<UnixMillis> = tx_get(state, k, "digest state")?;
                if last.is_some_and(|l| l >= period) {
                    return Ok(None);
                }
                state.insert(k, enc(&period))?;
                if last.is_none() {
                    return Ok(None);
                }
                let seq = outbox.generate_id()? + 1;
                let rec = AlertRecord {
                    seq,
                    ..entry.clone()
                };
                outbox.insert(&seq.to_be_bytes()[..], enc(&rec))?;
                Ok(Some(seq))
            })
            .map_err(tx_err("record a digest"))
    }
}
