//! Administration: orgs, users, device enrollment, token revocation and
//! rotation, and the device list with each archive's health facts.

use coffer_meta::{ArchiveRecord, DeviceRecord, OrgRecord, UserRecord};
use coffer_types::wire::{DeviceInfo, DeviceToken, EnrollDevice, OrgInfo, UserInfo};
use coffer_types::Name;

use crate::auth::new_device_token;
use crate::events::{Event, EventKind};
use crate::{random16, Coffer, CoreError, Result};

impl Coffer {
    pub async fn create_org(&self, name: Name, parent: Option<Name>) -> Result<OrgInfo> {
        if let Some(p) = &parent {
            if self.meta.org(p)?.is_none() {
                return Err(CoreError::NotFound(format!(
                    "parent org {p:?} does not exist"
                )));
            }
        }
        let rec = OrgRecord {
            name: name.clone(),
            parent,
            created_at: self.now(),
        };
        if !self.meta.create_org(&rec)? {
            return Err(CoreError::AlreadyExists(format!(
                "an org named {name:?} exists"
            )));
        }
        self.meta.durable().await?;
        Ok(org_info(rec))
    }

    pub fn orgs(&self) -> Result<Vec<OrgInfo>> {
        Ok(self.meta.orgs()?.into_iter().map(org_info).collect())
    }

    pub async fn add_user(&self, org: Name, name: Name) -> Result<UserInfo> {
        if self.meta.org(&org)?.is_none() {
            return Err(CoreError::NotFound(format!("org {org:?} does not exist")));
        }
        let rec = UserRecord {
            org: org.clone(),
            name: name.clone(),
            created_at: self.now(),
        };
        if !self.meta.create_user(&rec)? {
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

    pub fn users(&self) -> Result<Vec<UserInfo>> {
        Ok(self
            .meta
            .users()?
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
    pub async fn enroll_device(&self, req: EnrollDevice) -> Result<DeviceToken> {
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
            return Err(CoreError::NotFound(format!(
                "org {:?} does not exist",
                req.org
            )));
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
        };
        let ar = ArchiveRecord::new(archive.clone(), device.clone(), now);
        self.meta.enroll(&dev, &ar)?;
        self.meta.durable().await?;
        tracing::info!(%device, %archive, "device enrolled");
        if let Ok(info) = self.device(&device) {
            self.events.publish(Event {
                at: now,
                org: info.org.clone(),
                kind: EventKind::DeviceEnrolled { device: info },
            });
        }
        Ok(DeviceToken {
            device,
            archive,
            token,
        })
    }

    /// Every device with its archive's facts, sorted by org, user, name.
    pub fn devices(&self) -> Result<Vec<DeviceInfo>> {
        let mut out = Vec::new();
        for d in self.meta.devices()? {
            let a = self.meta.archive(&d.archive)?;
            out.push(device_info(d, a));
        }
        out.sort_by(|a, b| (&a.org, &a.user, &a.name).cmp(&(&b.org, &b.user, &b.name)));
        Ok(out)
    }

    pub fn device(&self, id: &Name) -> Result<DeviceInfo> {
        let d = self
            .meta
            .device(id)?
            .ok_or_else(|| CoreError::NotFound(format!("device {id} does not exist")))?;
        let a = self.meta.archive(&d.archive)?;
        Ok(device_info(d, a))
    }

    /// Revoke a device's token: it can no longer reach its archive. Its data
    /// stays; `rotate_device_token` gives it a new token.
    pub async fn revoke_device(&self, id: &Name) -> Result<DeviceInfo> {
        self.meta
            .set_device_token(id, None)?
            .ok_or_else(|| CoreError::NotFound(format!("device {id} does not exist")))?;
        self.meta.durable().await?;
        tracing::info!(device = %id, "device token revoked");
        let info = self.device(id)?;
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
    pub async fn rotate_device_token(&self, id: &Name) -> Result<DeviceToken> {
        let (token, hash) = new_device_token()?;
        let d = self
            .meta
            .set_device_token(id, Some(hash))?
            .ok_or_else(|| CoreError::NotFound(format!("device {id} does not exist")))?;
        self.meta.durable().await?;
        tracing::info!(device = %id, "device token rotated");
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

fn device_info(d: DeviceRecord, a: Option<ArchiveRecord>) -> DeviceInfo {
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
    }
}
