//! Inventory administration: orgs, users, device enrollment, token
//! revocation and rotation, and the device list with each archive's health
//! facts. Every operation takes the caller's [`Principal`] and is checked in
//! `access.rs`; every change is audited in the same write.

use coffer_meta::{ArchiveRecord, DeviceRecord, OrgRecord, UserRecord};
use coffer_types::wire::{DeviceInfo, DeviceToken, EnrollDevice, OrgInfo, UserInfo};
use coffer_types::Name;

use crate::access::{Permission, Principal};
use crate::auth::new_device_token;
use crate::events::{Event, EventKind};
use crate::orgtree::MAX_DEPTH;
use crate::{random16, Coffer, CoreError, Result};

pub(crate) fn org_missing(org: &Name) -> CoreError {
    CoreError::NotFound(format!("org {org} does not exist"))
}

pub(crate) fn device_missing(id: &Name) -> CoreError {
    CoreError::NotFound(format!("device {id} does not exist"))
}

impl Coffer {
    /// Create an org, optionally under a parent. An `org-admin` creates orgs
    /// inside its subtree only; a top-level org needs an unscoped admin.
    pub async fn create_org(
        &self,
        p: &Principal,
        name: Name,
        parent: Option<Name>,
    ) -> Result<OrgInfo> {
        let action = "org.create";
        let target = format!("org:{name}");
        self.require(p, Permission::ManageInventory, action).await?;
        match &parent {
            Some(parent) => {
                self.authorize(p, Permission::ManageInventory, action, &target, Some(parent), || {
                    org_missing(parent)
                })
                .await?;
                if self.org_tree().depth(parent) >= MAX_DEPTH {
                    return Err(CoreError::InvalidRequest(format!(
                        "org {parent} is {MAX_DEPTH} levels deep; an org tree is at most {MAX_DEPTH} levels"
                    )));
                }
            }
            None if p.org().is_some() => {
                return Err(self
                    .forbid(
                        p,
                        action,
                        &target,
                        format!(
                            "creating a top-level org needs the admin role; account {} is {} of org {} and creates orgs inside it (--parent)",
                            p.account(),
                            p.role(),
                            p.org().map_or("-", |o| o.as_str())
                        ),
                    )
                    .await)
            }
            None => {}
        }
        let rec = OrgRecord {
            name: name.clone(),
            parent: parent.clone(),
            created_at: self.now(),
        };
        let details = parent.iter().map(|p| ("parent", p.to_string()));
        let created = {
            // One org creation at a time, so the in-memory tree follows the
            // stored one exactly.
            let _g = self.org_lock.lock().await;
            let created = self
                .meta
                .create_org(&rec, &self.draft(p, action, &target, details))?;
            if created {
                self.refresh_org_tree()?;
            }
            created
        };
        if !created {
            return Err(CoreError::AlreadyExists(format!(
                "an org named {name:?} exists"
            )));
        }
        self.meta.durable().await?;
        tracing::info!(org = %name, by = %p.account(), "org created");
        Ok(org_info(rec))
    }

    /// The orgs `p` may see, by name.
    pub async fn orgs(&self, p: &Principal) -> Result<Vec<OrgInfo>> {
        self.require(p, Permission::ReadInventory, "listing orgs")
            .await?;
        let tree = self.org_tree();
        let mut out = Vec::new();
        for o in self.meta.orgs()? {
            if p.sees(&tree, &o.name) {
                out.push(org_info(o));
            }
        }
        Ok(out)
    }

    /// The names of the orgs `p` may see (its subtree, or every org).
    pub(crate) fn orgs_in_scope(&self, p: &Principal) -> Vec<Name> {
        let tree = self.org_tree();
        match p.org() {
            None => tree.orgs().cloned().collect(),
            Some(root) => tree.subtree(root).into_iter().cloned().collect(),
        }
    }

    pub async fn add_user(&self, p: &Principal, org: Name, name: Name) -> Result<UserInfo> {
        let action = "user.create";
        let target = format!("user:{org}/{name}");
        self.authorize(
            p,
            Permission::ManageInventory,
            action,
            &target,
            Some(&org),
            || org_missing(&org),
        )
        .await?;
        if self.meta.org(&org)?.is_none() {
            return Err(org_missing(&org));
        }
        let rec = UserRecord {
            org: org.clone(),
            name: name.clone(),
            created_at: self.now(),
        };
        if !self
            .meta
            .create_user(&rec, &self.draft(p, action, &target, []))?
        {
            return Err(CoreError::AlreadyExists(format!(
                "org {org:?} has a user named {name:?}"
            )));
        }
        self.meta.durable().await?;
        Ok(UserInfo {
            org: rec.org,
            name: rec.name,
            created_at: rec.created_at,
        })
    }

    /// The users `p` may see, by org and name.
    pub async fn users(&self, p: &Principal) -> Result<Vec<UserInfo>> {
        self.require(p, Permission::ReadInventory, "listing users")
            .await?;
        let records = match p.org() {
            None => self.meta.users()?,
            Some(_) => {
                let mut orgs = self.orgs_in_scope(p);
                orgs.sort();
                let mut v = Vec::new();
                for o in orgs {
                    v.extend(self.meta.users_of(&o)?);
                }
                v
            }
        };
        Ok(records
            .into_iter()
            .map(|u| UserInfo {
                org: u.org,
                name: u.name,
                created_at: u.created_at,
            })
            .collect())
    }

    /// Enroll a device for a user: a device id, its archive and a token (shown
    /// once).
    pub async fn enroll_device(&self, p: &Principal, req: EnrollDevice) -> Result<DeviceToken> {
        let action = "device.enroll";
        let target = format!("user:{}/{}", req.org, req.user);
        self.authorize(
            p,
            Permission::ManageInventory,
            action,
            &target,
            Some(&req.org),
            || org_missing(&req.org),
        )
        .await?;
        let name = req.name.trim();
        if name.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
            return Err(CoreError::InvalidRequest(
                "a device name is 1 to 128 printable characters".into(),
            ));
        }
        if let Some(os) = &req.os {
            if os.chars().count() > 128 || os.chars().any(char::is_control) {
                return Err(CoreError::InvalidRequest(
                    "an os is at most 128 printable characters".into(),
                ));
            }
        }
        if self.meta.org(&req.org)?.is_none() {
            return Err(org_missing(&req.org));
        }
        if self.meta.user(&req.org, &req.user)?.is_none() {
            return Err(CoreError::NotFound(format!(
                "org {:?} has no user {:?}; add it with `coffer admin user add`",
                req.org, req.user
            )));
        }
        let now = self.now();
        let device = Name::random("dv", random16()?);
        let archive = Name::random("ar", random16()?);
        let (token, token_hash) = new_device_token()?;
        let dev = DeviceRecord {
            id: device.clone(),
            name: name.to_owned(),
            org: req.org,
            user: req.user,
            os: req.os,
            archive: archive.clone(),
            token_hash,
            revoked: false,
            enrolled_at: now,
            last_connection: None,
            agent_version: None,
            parked: false,
            deactivated_at: None,
            purged_at: None,
        };
        let ar = ArchiveRecord::new(archive.clone(), device.clone(), now);
        let audit = self.draft(
            p,
            action,
            format!("device:{device}"),
            [
                ("org", dev.org.to_string()),
                ("user", dev.user.to_string()),
                ("name", dev.name.clone()),
                ("archive", archive.to_string()),
            ],
        );
        self.meta.enroll(&dev, &ar, &audit)?;
        // The device defaults it starts with (saved ones reach only devices
        // enrolled after them).
        self.meta
            .set_device_settings(&device, &self.enrollment_snapshot(&dev.org)?)?;
        self.meta.durable().await?;
        // Evaluated at the next tick, and from then on by the due index: a
        // device that never sends anything still goes yellow and red.
        self.health_touched(&archive);
        tracing::info!(%device, %archive, by = %p.account(), "device enrolled");
        let info = device_info(dev, Some(ar));
        self.events.publish(Event {
            at: now,
            org: info.org.clone(),
            kind: EventKind::DeviceEnrolled { device: info },
        });
        Ok(DeviceToken {
            device,
            archive,
            token,
        })
    }

    /// The devices `p` may see with their archives' facts, sorted by org,
    /// user, name. A scoped principal's list comes from the devices-by-org
    /// index of each org in its subtree, not a scan of every device.
    pub async fn devices(&self, p: &Principal) -> Result<Vec<DeviceInfo>> {
        self.require(p, Permission::ReadInventory, "listing devices")
            .await?;
        let records = match p.org() {
            None => self.meta.devices()?,
            Some(_) => {
                let mut v = Vec::new();
                for o in self.orgs_in_scope(p) {
                    v.extend(self.meta.devices_in_org(&o)?);
                }
                v
            }
        };
        self.device_infos(records)
    }

    pub(crate) fn device_infos(&self, records: Vec<DeviceRecord>) -> Result<Vec<DeviceInfo>> {
        let mut out = Vec::with_capacity(records.len());
        for d in records {
            let a = self.meta.archive(&d.archive)?;
            out.push(self.with_damage(device_info(d, a))?);
        }
        out.sort_by(|a, b| (&a.org, &a.user, &a.name).cmp(&(&b.org, &b.user, &b.name)));
        Ok(out)
    }

    /// A device `p` may see, or the same 404 as an absent one.
    pub(crate) async fn seen_device(
        &self,
        p: &Principal,
        id: &Name,
        perm: Permission,
        action: &str,
    ) -> Result<DeviceRecord> {
        let d = self.meta.device(id)?;
        let org = d.as_ref().map(|d| d.org.clone());
        match (d, org) {
            (Some(d), Some(org)) => {
                self.authorize(p, perm, action, &format!("device:{id}"), Some(&org), || {
                    device_missing(id)
                })
                .await?;
                Ok(d)
            }
            _ => {
                self.require(p, perm, action).await?;
                Err(device_missing(id))
            }
        }
    }

    pub async fn device(&self, p: &Principal, id: &Name) -> Result<DeviceInfo> {
        let d = self
            .seen_device(p, id, Permission::ReadInventory, "reading a device")
            .await?;
        let a = self.meta.archive(&d.archive)?;
        self.with_damage(device_info(d, a))
    }

    /// The device info of `id` as the server itself sees it (for events).
    pub(crate) fn device_now(&self, id: &Name) -> Result<DeviceInfo> {
        let d = self.meta.device(id)?.ok_or_else(|| device_missing(id))?;
        let a = self.meta.archive(&d.archive)?;
        self.with_damage(device_info(d, a))
    }

    /// `info` with its archive's damaged blocks and backups counted, and
    /// its quota.
    fn with_damage(&self, info: DeviceInfo) -> Result<DeviceInfo> {
        let (bad, per) = self.damage(&info.archive)?;
        Ok(DeviceInfo {
            damaged_blocks: bad.len() as u64,
            damaged_backups: per.len() as u64,
            quota_bytes: self.device_quota(&info.org),
            health: Some(self.health_of(&info)?),
            cold_until: match (info.deactivated_at, info.purged_at) {
                (Some(at), None) => Some(at.saturating_add(self.cold_storage_ms(&info.org)?)),
                _ => None,
            },
            held_by: self
                .holds_on(&info.org, &info.user, self.compliance_now())?
                .iter()
                .map(crate::holds::HoldOn::label)
                .collect(),
            ..info
        })
    }

    /// Revoke a device's token: it can no longer reach its archive. Its data
    /// stays; `rotate_device_token` gives it a new token.
    pub async fn revoke_device(&self, p: &Principal, id: &Name) -> Result<DeviceInfo> {
        let action = "device.revoke";
        self.seen_device(p, id, Permission::ManageInventory, action)
            .await?;
        self.meta
            .set_device_token(id, None, &self.draft(p, action, format!("device:{id}"), []))?
            .ok_or_else(|| device_missing(id))?;
        self.meta.durable().await?;
        tracing::info!(device = %id, by = %p.account(), "device token revoked");
        let info = self.device_now(id)?;
        self.events.publish(Event {
            at: self.now(),
            org: info.org.clone(),
            kind: EventKind::DeviceRevoked {
                device: info.clone(),
            },
        });
        Ok(info)
    }

    /// Issue a new token for a device; the old one stops working at once.
    pub async fn rotate_device_token(&self, p: &Principal, id: &Name) -> Result<DeviceToken> {
        let action = "device.rotate";
        self.seen_device(p, id, Permission::ManageInventory, action)
            .await?;
        let (token, hash) = new_device_token()?;
        let d = self
            .meta
            .set_device_token(
                id,
                Some(hash),
                &self.draft(p, action, format!("device:{id}"), []),
            )?
            .ok_or_else(|| device_missing(id))?;
        self.meta.durable().await?;
        tracing::info!(device = %id, by = %p.account(), "device token rotated");
        Ok(DeviceToken {
            device: d.id,
            archive: d.archive,
            token,
        })
    }
}

fn org_info(r: OrgRecord) -> OrgInfo {
    OrgInfo {
        name: r.name,
        parent: r.parent,
        created_at: r.created_at,
    }
}

pub(crate) fn device_info(d: DeviceRecord, a: Option<ArchiveRecord>) -> DeviceInfo {
    let a = a.unwrap_or(ArchiveRecord::new(
        d.archive.clone(),
        d.id.clone(),
        d.enrolled_at,
    ));
    DeviceInfo {
        device: d.id,
        name: d.name,
        org: d.org,
        user: d.user,
        os: d.os,
        archive: d.archive,
        revoked: d.revoked,
        enrolled_at: d.enrolled_at,
        last_connection: d.last_connection,
        agent_version: d.agent_version,
        bytes_stored: a.bytes_stored,
        block_count: a.block_count,
        backup_count: a.backup_count,
        last_activity: a.last_activity,
        last_completed: a.last_completed,
        percent_complete: a.percent_complete,
        // Counted by `with_damage` where the answer needs them.
        damaged_blocks: 0,
        damaged_backups: 0,
        quota_bytes: 0,
        parked: d.parked,
        health: None,
        deactivated_at: d.deactivated_at,
        cold_until: None,
        purged_at: d.purged_at,
        held_by: Vec::new(),
    }
}
