//! Devices, their tokens, and the indexes scoped listings use: devices by
//! org (`org \0 device`) and archive → device.

use coffer_types::{Name, UnixMillis};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::archives::ArchiveRecord;
use crate::audit::{append_in, AuditDraft};
use crate::engine::{enc, engine, get, key, prefix, scan, tx_err, tx_get, update};
use crate::{MetaStore, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub id: Name,
    pub name: String,
    pub org: Name,
    pub user: Name,
    pub os: Option<String>,
    pub archive: Name,
    /// blake3 of the device token; the token itself is never stored.
    pub token_hash: [u8; 32],
    pub revoked: bool,
    pub enrolled_at: UnixMillis,
    pub last_connection: Option<UnixMillis>,
    pub agent_version: Option<String>,
    /// Parked (on leave, retired): shown as such, raises no alerts.
    #[serde(default)]
    pub parked: bool,
    /// Deactivated at (compliance time, late reading): the device may not
    /// back up, and its archive is in cold storage until the org's
    /// `retention.cold_storage` has passed, then purged through the gate.
    #[serde(default)]
    pub deactivated_at: Option<UnixMillis>,
    /// The archive was purged (cold storage ended): its backups and blocks
    /// are gone; the record stays for the audit trail.
    #[serde(default)]
    pub purged_at: Option<UnixMillis>,
}

impl MetaStore {
    /// Record a new device, its token hash, its (empty) archive, the indexes
    /// and the audit entry atomically.
    pub fn enroll(
        &self,
        device: &DeviceRecord,
        archive: &ArchiveRecord,
        audit: &AuditDraft,
    ) -> Result<()> {
        let t = &self.t;
        let id = device.id.as_str().as_bytes();
        let org_key = key(&[device.org.as_str().as_bytes(), id]);
        (
            &t.devices,
            &t.tokens,
            &t.archives,
            &t.devices_by_org,
            &t.archive_device,
            &t.meta,
            &t.audit,
        )
            .transaction(
                |(devices, tokens, archives, by_org, by_archive, meta, log)| {
                    devices.insert(id, enc(device))?;
                    tokens.insert(&device.token_hash[..], id)?;
                    archives.insert(archive.id.as_str().as_bytes(), enc(archive))?;
                    by_org.insert(org_key.as_slice(), &[][..])?;
                    by_archive.insert(archive.id.as_str().as_bytes(), id)?;
                    append_in(meta, log, audit)?;
                    Ok(())
                },
            )
            .map_err(tx_err("enroll device"))
    }

    pub fn device(&self, id: &Name) -> Result<Option<DeviceRecord>> {
        get(&self.t.devices, id.as_str().as_bytes(), "device")
    }

    /// Every device, by id.
    pub fn devices(&self) -> Result<Vec<DeviceRecord>> {
        scan(&self.t.devices, &[], "device")
    }

    /// The devices of one org (not of its sub-orgs), through the index.
    pub fn devices_in_org(&self, org: &Name) -> Result<Vec<DeviceRecord>> {
        let p = prefix(&[org.as_str().as_bytes()]);
        let mut out = Vec::new();
        for kv in self.t.devices_by_org.scan_prefix(&p) {
            let (k, _) = kv.map_err(engine("scan devices by org"))?;
            if let Some(d) = get(&self.t.devices, &k[p.len()..], "device")? {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// The device an archive belongs to, through the index.
    pub fn device_of_archive(&self, archive: &Name) -> Result<Option<DeviceRecord>> {
        match self
            .t
            .archive_device
            .get(archive.as_str().as_bytes())
            .map_err(engine("read archive index"))?
        {
            Some(id) => get(&self.t.devices, &id, "device"),
            None => Ok(None),
        }
    }

    /// The device holding the token whose hash is `hash`, revoked or not.
    pub fn device_by_token(&self, hash: &[u8; 32]) -> Result<Option<DeviceRecord>> {
        let Some(id) = self.t.tokens.get(hash).map_err(engine("read token"))? else {
            return Ok(None);
        };
        get(&self.t.devices, &id, "device")
    }

    /// Replace a device's token: with `Some(hash)` a new token (rotation, the
    /// device is active again), with `None` revoke it (no token works). Writes
    /// `audit` with the change. Returns the updated device, or `None` if there
    /// is no such device.
    pub fn set_device_token(
        &self,
        id: &Name,
        new_hash: Option<[u8; 32]>,
        audit: &AuditDraft,
    ) -> Result<Option<DeviceRecord>> {
        let t = &self.t;
        let k = id.as_str().as_bytes();
        (&t.devices, &t.tokens, &t.meta, &t.audit)
            .transaction(|(devices, tokens, meta, log)| {
                let Some(mut dev) = tx_get::<DeviceRecord>(devices, k, "device")? else {
                    return Ok(None);
                };
                tokens.remove(&dev.token_hash[..])?;
                match new_hash {
                    Some(h) => {
                        dev.token_hash = h;
                        dev.revoked = false;
                        tokens.insert(&h[..], k)?;
                    }
                    None => dev.revoked = true,
                }
                devices.insert(k, enc(&dev))?;
                append_in(meta, log, audit)?;
                Ok(Some(dev))
            })
            .map_err(tx_err("replace device token"))
    }

    /// Change a device record with `f` (`None`: leave it) and write `audit`
    /// with it; the device as it stands and whether it changed, `None` if
    /// there is no such device.
    pub fn change_device(
        &self,
        id: &Name,
        audit: &AuditDraft,
        f: impl Fn(&DeviceRecord) -> Option<DeviceRecord>,
    ) -> Result<Option<(DeviceRecord, bool)>> {
        let t = &self.t;
        let k = id.as_str().as_bytes();
        (&t.devices, &t.meta, &t.audit)
            .transaction(|(devices, meta, log)| {
                let Some(dev) = tx_get::<DeviceRecord>(devices, k, "device")? else {
                    return Ok(None);
                };
                let Some(new) = f(&dev) else {
                    return Ok(Some((dev, false)));
                };
                devices.insert(k, enc(&new))?;
                append_in(meta, log, audit)?;
                Ok(Some((new, true)))
            })
            .map_err(tx_err("change a device"))
    }

    /// Park or unpark a device, with the audit entry; the updated device,
    /// or `None` if there is no such device.
    pub fn set_device_parked(
        &self,
        id: &Name,
        parked: bool,
        audit: &AuditDraft,
    ) -> Result<Option<DeviceRecord>> {
        let t = &self.t;
        let k = id.as_str().as_bytes();
        (&t.devices, &t.meta, &t.audit)
            .transaction(|(devices, meta, log)| {
                let Some(mut dev) = tx_get::<DeviceRecord>(devices, k, "device")? else {
                    return Ok(None);
                };
                dev.parked = parked;
                devices.insert(k, enc(&dev))?;
                append_in(meta, log, audit)?;
                Ok(Some(dev))
            })
            .map_err(tx_err("park a device"))
    }

    /// Note that the device connected at `now`, with its agent version.
    pub fn touch_device(&self, id: &Name, now: UnixMillis, agent: Option<&str>) -> Result<()> {
        update(
            &self.t.devices,
            id.as_str().as_bytes(),
            "device",
            |d: &mut DeviceRecord| {
                d.last_connection = Some(d.last_connection.map_or(now, |t| t.max(now)));
                if let Some(a) = agent {
                    d.agent_version = Some(a.to_owned());
                }
            },
        )
        .map(|_| ())
    }
}
