//! Organizations and their users.

use coffer_types::{Name, UnixMillis};
use serde::{Deserialize, Serialize};
use sled::Transactional;

use crate::audit::{append_in, AuditDraft};
use crate::engine::{enc, get, key, prefix, scan, tx_err};
use crate::{MetaStore, Result};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgRecord {
    pub name: Name,
    pub parent: Option<Name>,
    pub created_at: UnixMillis,
}

/// The settings groups an org does not inherit, with its own values (group
/// name → key → value, as the core's settings model stores them), and a
/// version that every change increases (for compare-and-set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrgSettingsRecord {
    #[serde(default)]
    pub own:
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    pub version: u64,
    /// Device defaults: key → how the org last set it (save, push, lock)
    /// and its latest push, as the core's settings model stores them.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub modes: std::collections::BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub org: Name,
    pub name: Name,
    pub created_at: UnixMillis,
}

impl MetaStore {
    /// Create an org and its audit entry; false (and nothing written) if one
    /// of that name exists.
    pub fn create_org(&self, rec: &OrgRecord, audit: &AuditDraft) -> Result<bool> {
        let t = &self.t;
        let k = rec.name.as_str().as_bytes();
        (&t.orgs, &t.meta, &t.audit)
            .transaction(|(orgs, meta, log)| {
                if orgs.get(k)?.is_some() {
                    return Ok(false);
                }
                orgs.insert(k, enc(rec))?;
                append_in(meta, log, audit)?;
                Ok(true)
            })
            .map_err(tx_err("create org"))
    }

    pub fn org(&self, name: &Name) -> Result<Option<OrgRecord>> {
        get(&self.t.orgs, name.as_str().as_bytes(), "org")
    }

    /// Every org, by name.
    pub fn orgs(&self) -> Result<Vec<OrgRecord>> {
        scan(&self.t.orgs, &[], "org")
    }

    /// The settings org `name` holds (none: it inherits every group).
    pub fn org_settings(&self, name: &Name) -> Result<OrgSettingsRecord> {
        Ok(get(
            &self.t.org_settings,
            name.as_str().as_bytes(),
            "org settings",
        )?
        .unwrap_or_default())
    }

    /// Replace org `name`'s settings with `rec` and write its audit entry,
    /// if its stored version is still `expected` (false, and nothing
    /// written, when another change came first). `rec.version` is set to
    /// `expected + 1`.
    pub fn set_org_settings(
        &self,
        name: &Name,
        expected: u64,
        rec: &OrgSettingsRecord,
        audit: &AuditDraft,
    ) -> Result<bool> {
        let t = &self.t;
        let k = name.as_str().as_bytes();
        let mut next = rec.clone();
        next.version = expected + 1;
        (&t.org_settings, &t.meta, &t.audit)
            .transaction(|(settings, meta, log)| {
                let now = match settings.get(k)? {
                    Some(v) => serde_json::from_slice::<OrgSettingsRecord>(&v)
                        .map(|r| r.version)
                        .unwrap_or(u64::MAX),
                    None => 0,
                };
                if now != expected {
                    return Ok(false);
                }
                settings.insert(k, enc(&next))?;
                append_in(meta, log, audit)?;
                Ok(true)
            })
            .map_err(tx_err("set org settings"))
    }

    /// The device defaults `device` received at enrollment (as the core's
    /// settings model stores them), if it has them.
    pub fn device_settings(&self, device: &Name) -> Result<Option<serde_json::Value>> {
        get(
            &self.t.device_settings,
            device.as_str().as_bytes(),
            "device settings",
        )
    }

    /// Keep the device defaults `device` received at enrollment.
    pub fn set_device_settings(&self, device: &Name, v: &serde_json::Value) -> Result<()> {
        self.t
            .device_settings
            .insert(device.as_str().as_bytes(), enc(v))
            .map_err(crate::engine::engine("keep device settings"))?;
        Ok(())
    }

    /// Create a user in an org and its audit entry; false if the org has a
    /// user of that name.
    pub fn create_user(&self, rec: &UserRecord, audit: &AuditDraft) -> Result<bool> {
        let t = &self.t;
        let k = key(&[rec.org.as_str().as_bytes(), rec.name.as_str().as_bytes()]);
        (&t.users, &t.meta, &t.audit)
            .transaction(|(users, meta, log)| {
                if users.get(&k)?.is_some() {
                    return Ok(false);
                }
                users.insert(k.as_slice(), enc(rec))?;
                append_in(meta, log, audit)?;
                Ok(true)
            })
            .map_err(tx_err("create user"))
    }

    pub fn user(&self, org: &Name, name: &Name) -> Result<Option<UserRecord>> {
        let k = key(&[org.as_str().as_bytes(), name.as_str().as_bytes()]);
        get(&self.t.users, &k, "user")
    }

    /// The users of one org, by name.
    pub fn users_of(&self, org: &Name) -> Result<Vec<UserRecord>> {
        scan(&self.t.users, &prefix(&[org.as_str().as_bytes()]), "user")
    }

    /// Every user, by org and name.
    pub fn users(&self) -> Result<Vec<UserRecord>> {
        scan(&self.t.users, &[], "user")
    }
}
