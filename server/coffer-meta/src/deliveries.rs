//! Deliveries of the alert outbox, per channel (mail, webhook): each
//! channel's cursor into the outbox, and one record per (channel, entry,
//! target) that is pending until the channel has handed it over.
//!
//! A channel takes new outbox entries in by moving its cursor and writing
//! their pending records in one transaction, so an entry is taken in once.
//! A delivery is claimed with compare-and-set before it is attempted (a
//! lease, so a crashed claimant's delivery is tried again once the lease
//! runs out), and leaves the pending tree for the done tree when it is
//! handed over. The pattern is healthchecks' `Flip` (`processed` set with
//! compare-and-set): the outbox row is the fact, the delivery its claim.

use coffer_types::UnixMillis;
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::engine::{dec, enc, engine, get, prefix, tx_err};
use crate::{MetaStore, Result};

/// One delivery of an outbox entry to one target of one channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    pub channel: String,
    /// The outbox entry's sequence number.
    pub seq: u64,
    /// What the channel delivers to (mail: the recipients; webhook: the
    /// URL).
    pub target: String,
    pub attempts: u32,
    /// Not attempted before this time.
    pub next_attempt: UnixMillis,
    /// Claimed by an attempt in flight until this time.
    #[serde(default)]
    pub claimed_until: Option<UnixMillis>,
    #[serde(default)]
    pub last_error: Option<String>,
    /// When it was handed over (done records only).
    #[serde(default)]
    pub delivered_at: Option<UnixMillis>,
    /// What the far end answered (done records only).
    #[serde(default)]
    pub outcome: Option<String>,
}

impl DeliveryRecord {
    fn key(&self) -> Vec<u8> {
        delivery_key(&self.channel, self.seq, &self.target)
    }
}

fn delivery_key(channel: &str, seq: u64, target: &str) -> Vec<u8> {
    let mut k = prefix(&[channel.as_bytes()]);
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(target.as_bytes());
    k
}

impl MetaStore {
    /// Where `channel` has read the outbox to (`None`: it never started).
    pub fn delivery_cursor(&self, channel: &str) -> Result<Option<u64>> {
        get(
            &self.t.delivery_cursor,
            channel.as_bytes(),
            "delivery cursor",
        )
    }

    /// Start `channel` at the outbox's current end, unless it started
    /// before; returns where it reads from. Claims left by an attempt of an
    /// earlier run (a crash mid-delivery) are released: only one process
    /// opens a store.
    pub fn start_delivery_channel(&self, channel: &str) -> Result<u64> {
        for d in self.pending_deliveries(channel, usize::MAX)? {
            if d.claimed_until.is_some() {
                let free = DeliveryRecord {
                    claimed_until: None,
                    ..d.clone()
                };
                self.update_delivery(&d, &free)?;
            }
        }
        let end = self
            .t
            .alert_outbox
            .last()
            .map_err(engine("read the alert outbox"))?
            .map_or(0, |(k, _)| {
                u64::from_be_bytes(k.as_ref().try_into().unwrap_or([0; 8]))
            });
        let t = &self.t.delivery_cursor;
        let _ = t
            .compare_and_swap(channel.as_bytes(), None::<&[u8]>, Some(enc(&end)))
            .map_err(engine("start a delivery channel"))?;
        Ok(self.delivery_cursor(channel)?.unwrap_or(end))
    }

    /// Take outbox entries up to `upto` into `channel`, with their
    /// targets, if the channel's cursor is still at `from`. False when
    /// another taker moved it first (nothing written).
    pub fn take_into_channel(
        &self,
        channel: &str,
        from: u64,
        upto: u64,
        deliveries: &[DeliveryRecord],
    ) -> Result<bool> {
        let t = &self.t;
        (&t.delivery_cursor, &t.delivery_pending)
            .transaction(|(cursor, pending)| {
                let at: Option<u64> = crate::engine::tx_get(cursor, channel.as_bytes(), "cursor")?;
                if at != Some(from) {
                    return Ok(false);
                }
                for d in deliveries {
                    pending.insert(d.key(), enc(d))?;
                }
                cursor.insert(channel.as_bytes(), enc(&upto))?;
                Ok(true)
            })
            .map_err(tx_err("take alerts into a channel"))
    }

    /// `channel`'s pending deliveries, oldest entry first, at most `limit`.
    pub fn pending_deliveries(&self, channel: &str, limit: usize) -> Result<Vec<DeliveryRecord>> {
        let mut out = Vec::new();
        for kv in self
            .t
            .delivery_pending
            .scan_prefix(prefix(&[channel.as_bytes()]))
        {
            let (_, v) = kv.map_err(engine("scan pending deliveries"))?;
            out.push(dec("delivery", &v)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Replace the pending `old` with `new` if it is still `old` (a claim,
    /// or the record of a failed attempt); false if it changed meanwhile.
    pub fn update_delivery(&self, old: &DeliveryRecord, new: &DeliveryRecord) -> Result<bool> {
        let r = self
            .t
            .delivery_pending
            .compare_and_swap(old.key(), Some(enc(old)), Some(enc(new)))
            .map_err(engine("update a delivery"))?;
        Ok(r.is_ok())
    }

    /// `claimed` was handed over: it leaves the pending tree for the done
    /// tree, if it is still the claimed record.
    pub fn delivery_done(&self, claimed: &DeliveryRecord, done: &DeliveryRecord) -> Result<bool> {
        let t = &self.t;
        let k = claimed.key();
        let old = enc(claimed);
        (&t.delivery_pending, &t.delivery_done)
            .transaction(|(pending, finished)| {
                if pending.get(&k)?.as_deref() != Some(&old[..]) {
                    return Ok(false);
                }
                pending.remove(k.clone())?;
                finished.insert(k.clone(), enc(done))?;
                Ok(true)
            })
            .map_err(tx_err("finish a delivery"))
    }

    /// Every delivery of outbox entry `seq`, pending or done, over
    /// `channels`.
    pub fn deliveries_of(&self, channels: &[&str], seq: u64) -> Result<Vec<DeliveryRecord>> {
        let mut out = Vec::new();
        for c in channels {
            let mut p = prefix(&[c.as_bytes()]);
            p.extend_from_slice(&seq.to_be_bytes());
            for tree in [&self.t.delivery_done, &self.t.delivery_pending] {
                for kv in tree.scan_prefix(&p) {
                    let (_, v) = kv.map_err(engine("scan deliveries"))?;
                    out.push(dec("delivery", &v)?);
                }
            }
        }
        Ok(out)
    }
}

const STORE_ID: &[u8] = b"store_id";

impl MetaStore {
    /// This store's random id, made at first use: it tells one server's
    /// alert mails (their `Message-ID`) from another's.
    pub fn store_id(&self) -> Result<String> {
        let fresh = {
            let mut b = [0u8; 16];
            getrandom::fill(&mut b).map_err(|e| crate::MetaError::Engine {
                context: "make the store id",
                source: Box::new(std::io::Error::other(e.to_string())),
            })?;
            hex::encode(b)
        };
        let _ = self
            .t
            .meta
            .compare_and_swap(STORE_ID, None::<&[u8]>, Some(enc(&fresh)))
            .map_err(engine("make the store id"))?;
        Ok(get::<String>(&self.t.meta, STORE_ID, "store id")?.unwrap_or(fresh))
    }
}
