//! The org settings operations: read an org's effective settings, set
//! values of a group, turn a group's inheritance off or on. The model (what
//! the keys are, how values are written, how inheritance resolves) is in
//! [`crate::settings`]; here are scope, storage and the audit entry.

use std::collections::BTreeMap;

use coffer_meta::OrgSettingsRecord;
use coffer_types::wire::{
    DeviceSetting, DeviceSettings, DroppedSetting, OrgSettingsChange, OrgSettingsInfo,
    SetOrgSettings, SettingValue, SettingsGroupInfo,
};
use coffer_types::Name;

use crate::access::{Permission, Principal};
use crate::admin::org_missing;
use crate::device_settings::{self, Snapshot};
use crate::settings::{self, Group, KeyMode, Mode, OrgSettings, Pushed, Source};
use crate::{Coffer, CoreError, Result};

/// The model of a stored settings record.
pub(crate) fn model(r: &OrgSettingsRecord) -> OrgSettings {
    OrgSettings {
        // A group this version does not know (written by a newer one) is
        // left out of the model.
        own: r
            .own
            .iter()
            .filter_map(|(g, vals)| Some((Group::parse(g).ok()?, vals.clone())))
            .collect(),
        modes: r
            .modes
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), serde_json::from_value(v.clone()).ok()?)))
            .collect(),
    }
}

fn to_record(s: &OrgSettings) -> OrgSettingsRecord {
    OrgSettingsRecord {
        own: s
            .own
            .iter()
            .map(|(g, vals)| (g.as_str().to_string(), vals.clone()))
            .collect(),
        version: 0,
        modes: s
            .modes
            .iter()
            .map(|(k, m)| {
                (
                    k.clone(),
                    serde_json::to_value(m).expect("a mode serializes"),
                )
            })
            .collect(),
    }
}

/// The device defaults' modes an org takes over when it turns their
/// inheritance off (its locks of other groups stay).
fn copy_modes(mine: &mut OrgSettings, chain: &[(&Name, &OrgSettings)]) {
    mine.modes
        .retain(|k, _| !settings::mode_of_group(Group::DeviceDefaults, k));
    mine.modes.extend(device_settings::modes_copied(chain));
}

/// Where a value comes from, as the wire says it.
fn source(s: &Source) -> String {
    match s {
        Source::Default => "default".to_string(),
        Source::Org(o) => o.to_string(),
    }
}

impl Coffer {
    /// `org` and each org above it, with what each holds, and the version
    /// of `org`'s own record.
    pub(crate) fn settings_chain(&self, org: &Name) -> Result<(Vec<(Name, OrgSettings)>, u64)> {
        let tree = self.org_tree();
        let mut chain = Vec::new();
        let mut version = 0;
        for (i, o) in tree.ancestors(org).into_iter().enumerate() {
            let rec = self.meta.org_settings(o)?;
            if i == 0 {
                version = rec.version;
            }
            chain.push((o.clone(), model(&rec)));
        }
        Ok((chain, version))
    }

    fn settings_info(&self, org: &Name) -> Result<OrgSettingsInfo> {
        let (chain, _) = self.settings_chain(org)?;
        let refs: Vec<(&Name, &OrgSettings)> = chain.iter().map(|(n, s)| (n, s)).collect();
        let own = chain.first().map(|(_, s)| s);
        let groups = Group::ALL
            .into_iter()
            .map(|g| {
                let owner = refs
                    .iter()
                    .find(|(_, s)| s.own.contains_key(&g))
                    .map(|(_, s)| *s);
                let values = settings::effective(g, &refs)
                    .into_iter()
                    .map(|(k, e)| {
                        let spec = g.spec(&k).expect("effective lists the group's keys");
                        let mut v = SettingValue {
                            text: spec.text(&e.value),
                            value: e.value,
                            from: source(&e.from),
                            mode: None,
                            version: None,
                            locked_by: None,
                        };
                        if g == Group::DeviceDefaults {
                            let m = owner.and_then(|s| s.modes.get(&k)).cloned();
                            let m = m.unwrap_or_default();
                            v.mode = Some(m.mode.as_str().to_string());
                            v.version = Some(m.pushed.as_ref().map_or(0, |p| p.at));
                        }
                        // The topmost lock above decides a lockable key.
                        let lock = settings::lockable(g)
                            .then(|| device_settings::lock(&refs, &settings::mode_key(g, &k)))
                            .flatten();
                        if let Some((org, value)) = lock {
                            v.text = spec.text(value);
                            v.value = value.clone();
                            v.from = org.to_string();
                            v.mode = Some(Mode::Lock.as_str().to_string());
                            v.locked_by = Some(org.to_string());
                        }
                        (k, v)
                    })
                    .collect();
                let inherit = !own.is_some_and(|s| s.own.contains_key(&g));
                (
                    g.as_str().to_string(),
                    SettingsGroupInfo { inherit, values },
                )
            })
            .collect();
        Ok(OrgSettingsInfo {
            org: org.clone(),
            groups,
            usage: self.quota_usage(org)?,
        })
    }

    /// Every settings group of `org`: the values in effect, where each comes
    /// from, and which groups it inherits.
    pub async fn org_settings(&self, p: &Principal, org: &Name) -> Result<OrgSettingsInfo> {
        self.authorize(
            p,
            Permission::ReadInventory,
            "reading org settings",
            &format!("org:{org}"),
            Some(org),
            || org_missing(org),
        )
        .await?;
        if self.meta.org(org)?.is_none() {
            return Err(org_missing(org));
        }
        self.settings_info(org)
    }

    /// Set values of one group of `org`. A group the org inherits stops
    /// being inherited first (its values in effect become the org's own);
    /// the answer says so. Every value is checked (the key named, and why),
    /// then the group as a whole.
    pub async fn set_org_settings(
        &self,
        p: &Principal,
        org: &Name,
        req: &SetOrgSettings,
    ) -> Result<OrgSettingsChange> {
        let action = "org.settings.set";
        let target = self.authorize_settings(p, org, action).await?;
        let group = Group::parse(&req.group).map_err(CoreError::InvalidRequest)?;
        if req.values.is_empty() {
            return Err(CoreError::InvalidRequest(format!(
                "no value to set in {group}; send {{\"group\": \"{group}\", \"values\": {{\"KEY\": VALUE}}}}"
            )));
        }
        let mode = match req.mode.as_deref() {
            None => Mode::Save,
            Some(m) => Mode::parse(m).map_err(CoreError::InvalidRequest)?,
        };
        let security_lock = group == Group::Security && mode == Mode::Lock;
        if group != Group::DeviceDefaults && mode != Mode::Save && !security_lock {
            return Err(CoreError::InvalidRequest(format!(
                "{group} settings take effect at once; the apply modes (save, push, lock) are for \
                 device_defaults (security keys also take --lock: no org below may change them)"
            )));
        }
        let mut parsed = BTreeMap::new();
        for (k, v) in &req.values {
            let spec = group.spec(k).map_err(CoreError::InvalidRequest)?;
            let value = spec
                .from_json(v)
                .map_err(|e| CoreError::InvalidRequest(format!("{group}.{e}")))?;
            parsed.insert(k.clone(), (spec, value));
        }
        let _one = self.org_lock.lock().await;
        if self.meta.org(org)?.is_none() {
            return Err(org_missing(org));
        }
        let (chain, version) = self.settings_chain(org)?;
        let refs: Vec<(&Name, &OrgSettings)> = chain.iter().map(|(n, s)| (n, s)).collect();
        if settings::lockable(group) {
            // An org above that locked a key decides it for its subtree.
            for k in parsed.keys() {
                if let Some((by, _)) =
                    device_settings::lock(&refs[1..], &settings::mode_key(group, k))
                {
                    return Err(CoreError::Conflict(format!(
                        "{group}.{k} is locked by org {by}, above {org}: it can only be changed \
                         or unlocked there"
                    )));
                }
            }
        }
        let mut mine = chain.first().map(|(_, s)| s.clone()).unwrap_or_default();
        let turned_off = !mine.own.contains_key(&group);
        if turned_off && group == Group::DeviceDefaults {
            copy_modes(&mut mine, &refs);
        }
        let vals = mine
            .own
            .entry(group)
            .or_insert_with(|| settings::own_from_effective(&settings::effective(group, &refs)));
        // Keys added since the org turned inheritance off take their default.
        for spec in group.specs() {
            vals.entry(spec.key.to_string())
                .or_insert_with(|| spec.default_value());
        }
        for (k, (_, v)) in &parsed {
            vals.insert(k.clone(), v.clone());
        }
        if let Some(why) = settings::check_group(group, vals) {
            return Err(CoreError::InvalidRequest(why));
        }
        if group == Group::Security {
            // A lock is kept with its value; setting the key again without
            // --lock unlocks it.
            let now = self.now();
            for (k, (_, v)) in &parsed {
                let mk = settings::mode_key(group, k);
                if mode == Mode::Lock {
                    let pushed = Some(Pushed {
                        value: v.clone(),
                        at: now,
                    });
                    mine.modes.insert(mk, KeyMode { mode, pushed });
                } else {
                    mine.modes.remove(&mk);
                }
            }
        }
        if group == Group::DeviceDefaults {
            let now = self.now();
            for (k, (_, v)) in &parsed {
                let m = mine.modes.entry(k.clone()).or_insert_with(KeyMode::default);
                m.mode = mode;
                if mode != Mode::Save {
                    m.pushed = Some(Pushed {
                        value: v.clone(),
                        at: now,
                    });
                }
            }
        }
        let mut details: Vec<(&'static str, String)> = vec![("group", group.to_string())];
        if turned_off {
            details.push(("inherit", "off".into()));
        }
        let set: Vec<String> = parsed
            .iter()
            .map(|(k, (spec, v))| format!("{k}={}", spec.text(v)))
            .collect();
        details.push(("set", set.join(" ")));
        if settings::lockable(group) {
            details.push(("mode", mode.as_str().into()));
        }
        self.store_settings(p, org, version, &mine, action, &target, details)?;
        self.meta.durable().await?;
        tracing::info!(org = %org, group = %group, by = %p.account(), "org settings set");
        Ok(OrgSettingsChange {
            settings: self.settings_info(org)?,
            inheritance_turned_off: turned_off,
            dropped: Vec::new(),
        })
    }

    /// Turn inheritance of `group` on (`inherit`: the org's own values are
    /// dropped, and listed in the answer) or off (the values in effect
    /// become the org's own). Doing what is already so changes nothing.
    pub async fn set_org_inherit(
        &self,
        p: &Principal,
        org: &Name,
        group: &str,
        inherit: bool,
    ) -> Result<OrgSettingsChange> {
        let action = "org.settings.inherit";
        let target = self.authorize_settings(p, org, action).await?;
        let group = Group::parse(group).map_err(CoreError::InvalidRequest)?;
        let _one = self.org_lock.lock().await;
        if self.meta.org(org)?.is_none() {
            return Err(org_missing(org));
        }
        let (chain, version) = self.settings_chain(org)?;
        let mut mine = chain.first().map(|(_, s)| s.clone()).unwrap_or_default();
        let inherits = !mine.own.contains_key(&group);
        if inherits == inherit {
            return Ok(OrgSettingsChange {
                settings: self.settings_info(org)?,
                inheritance_turned_off: false,
                dropped: Vec::new(),
            });
        }
        let mut dropped = Vec::new();
        let mut details: Vec<(&'static str, String)> = vec![
            ("group", group.to_string()),
            ("inherit", if inherit { "on" } else { "off" }.into()),
        ];
        if inherit {
            for (k, v) in settings::dropped_on_inherit(&mine, group) {
                let text = group
                    .spec(&k)
                    .map(|s| s.text(&v))
                    .unwrap_or_else(|_| v.to_string());
                dropped.push(DroppedSetting {
                    key: k,
                    value: v,
                    text,
                });
            }
            mine.own.remove(&group);
            // Its modes (and locks) go with its own values.
            mine.modes.retain(|k, _| !settings::mode_of_group(group, k));
            let list: Vec<String> = dropped
                .iter()
                .map(|d| format!("{}={}", d.key, d.text))
                .collect();
            details.push(("dropped", list.join(" ")));
        } else {
            let refs: Vec<(&Name, &OrgSettings)> = chain.iter().map(|(n, s)| (n, s)).collect();
            mine.own.insert(
                group,
                settings::own_from_effective(&settings::effective(group, &refs)),
            );
            if group == Group::DeviceDefaults {
                copy_modes(&mut mine, &refs);
            }
        }
        self.store_settings(p, org, version, &mine, action, &target, details)?;
        self.meta.durable().await?;
        tracing::info!(org = %org, group = %group, inherit, by = %p.account(), "org settings inheritance changed");
        Ok(OrgSettingsChange {
            settings: self.settings_info(org)?,
            inheritance_turned_off: !inherit,
            dropped,
        })
    }

    /// The device defaults `org`'s devices get at enrollment now: the
    /// values saved for it (a push saves its value too; locks apply on top
    /// whenever they are read).
    pub(crate) fn enrollment_snapshot(&self, org: &Name) -> Result<serde_json::Value> {
        let (chain, _) = self.settings_chain(org)?;
        let refs: Vec<(&Name, &OrgSettings)> = chain.iter().map(|(n, s)| (n, s)).collect();
        let values =
            settings::own_from_effective(&settings::effective(Group::DeviceDefaults, &refs));
        Ok(serde_json::to_value(Snapshot {
            at: self.now(),
            values,
        })
        .expect("a snapshot serializes"))
    }

    /// The device defaults a device applies (`GET /v1/settings`).
    pub fn device_settings(&self, d: &crate::access::DeviceAuth) -> Result<DeviceSettings> {
        let (chain, _) = self.settings_chain(&d.org)?;
        let refs: Vec<(&Name, &OrgSettings)> = chain.iter().map(|(n, s)| (n, s)).collect();
        let snapshot: Option<Snapshot> = self
            .meta
            .device_settings(&d.device)?
            .and_then(|v| serde_json::from_value(v).ok());
        let group = Group::DeviceDefaults;
        let mut values: BTreeMap<String, DeviceSetting> =
            device_settings::for_device(&refs, snapshot.as_ref())
                .into_iter()
                .map(|(k, v)| {
                    let spec = group.spec(&k).expect("the group's keys");
                    (
                        k,
                        DeviceSetting {
                            text: spec.text(&v.value),
                            value: v.value,
                            from: source(&v.from),
                            locked: v.locked_by.is_some(),
                            locked_by: v.locked_by.map(|o| o.to_string()),
                            pushed_at: v.pushed_at,
                        },
                    )
                })
                .collect();
        self.hold_device_settings(d, &mut values)?;
        Ok(DeviceSettings {
            device: d.device.clone(),
            org: d.org.clone(),
            version: values.values().map(|v| v.pushed_at).max().unwrap_or(0),
            values,
            security: Some(self.device_security(d)?),
        })
    }

    /// A legal hold's part in a custodian's device settings: while the user
    /// is held, `keep_deleted` is the most preserving of the holds'
    /// policies and the org's, locked, pushed when the newest hold was
    /// placed; a release pushes the org's value back (the agent applies a
    /// push once, so the value it took from the hold would otherwise stay).
    fn hold_device_settings(
        &self,
        d: &crate::access::DeviceAuth,
        values: &mut BTreeMap<String, DeviceSetting>,
    ) -> Result<()> {
        let Some(dev) = self.meta.device(&d.device)? else {
            return Ok(());
        };
        let Some(cur) = values.get_mut("keep_deleted") else {
            return Ok(());
        };
        let h = self.held_keep_deleted(&dev.org, &dev.user)?;
        match h.held {
            Some((secs, placed_at, matters)) => {
                // `null` is forever, on either side.
                let keep = match (secs, cur.value.as_u64()) {
                    (Some(a), Some(org)) if !cur.value.is_null() => Some(a.max(org)),
                    _ => None,
                };
                let value = keep.map_or(serde_json::Value::Null, serde_json::Value::from);
                let spec = Group::DeviceDefaults
                    .spec("keep_deleted")
                    .expect("a device default");
                *cur = DeviceSetting {
                    text: spec.text(&value),
                    value,
                    from: "legal hold".into(),
                    locked: true,
                    locked_by: Some(format!(
                        "legal hold {}",
                        matters
                            .iter()
                            .map(Name::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                    // Any change of the holds is a push: a release of
                    // one of several changes the value the agent holds.
                    pushed_at: placed_at.max(h.released_at).max(cur.pushed_at),
                };
            }
            None if h.released_at > cur.pushed_at => cur.pushed_at = h.released_at,
            None => {}
        }
        Ok(())
    }

    /// The check of a settings change of `org` by `p`; the audit target.
    async fn authorize_settings(&self, p: &Principal, org: &Name, action: &str) -> Result<String> {
        let target = format!("org:{org}");
        self.authorize(
            p,
            Permission::ManageInventory,
            action,
            &target,
            Some(org),
            || org_missing(org),
        )
        .await?;
        Ok(target)
    }

    /// Refuse settings for `org` (`next`) under which an org with
    /// `security.admin_restore` on would have itself or an org below it
    /// using enhanced archive security (seed 000): administrator restore
    /// needs the escrowed key that enhanced security never creates.
    /// Whether the security group changes at all.
    fn check_archive_security(&self, org: &Name, next: &OrgSettings) -> Result<bool> {
        let now = model(&self.meta.org_settings(org)?);
        if now.own.get(&Group::Security) == next.own.get(&Group::Security) {
            return Ok(false);
        }
        let tree = self.org_tree();
        let mut all: std::collections::HashMap<Name, OrgSettings> = Default::default();
        for o in tree.orgs() {
            all.insert(o.clone(), model(&self.meta.org_settings(o)?));
        }
        all.insert(org.clone(), next.clone());
        let security = |o: &Name| {
            let chain: Vec<(&Name, &OrgSettings)> = tree
                .ancestors(o)
                .into_iter()
                .filter_map(|a| all.get(a).map(|s| (a, s)))
                .collect();
            settings::effective_locked(Group::Security, &chain)
        };
        let mut enhanced = std::collections::BTreeSet::new();
        let mut restoring = Vec::new();
        for o in tree.orgs() {
            let s = crate::escrow::Security::of(&security(o));
            if s.enhanced {
                enhanced.insert(o.clone());
            }
            if s.admin_restore {
                restoring.push(o.clone());
            }
        }
        let mut named = std::collections::BTreeSet::new();
        for r in &restoring {
            for s in tree.subtree(r) {
                if enhanced.contains(s) {
                    named.insert(s.to_string());
                }
            }
        }
        if named.is_empty() {
            return Ok(true);
        }
        let names = named.into_iter().collect::<Vec<_>>().join(", ");
        Err(CoreError::ArchiveSecurityConflict(
            // At the top of the tree: the seed's system-wide wording.
            if tree.parent(org).is_none() {
                format!(
                    "Your changes cannot be applied because one or more organizations use \
                     upgraded encryption settings: {names}"
                )
            } else {
                format!(
                    "Your changes cannot be applied because this organization or child \
                     organizations use upgraded encryption settings: {names}"
                )
            },
        ))
    }

    #[allow(clippy::too_many_arguments)]
    fn store_settings(
        &self,
        p: &Principal,
        org: &Name,
        version: u64,
        s: &OrgSettings,
        action: &str,
        target: &str,
        details: Vec<(&'static str, String)>,
    ) -> Result<()> {
        let security_changed = self.check_archive_security(org, s)?;
        let mut details = details;
        let group = details
            .iter()
            .find(|(k, _)| *k == "group")
            .map(|(_, v)| v.clone());
        if matches!(group.as_deref(), Some("retention" | "quotas")) {
            // A shorter retention, a smaller quota or a change of
            // inheritance never reaches held data: name the custodians in
            // the subtree it does not touch.
            let tree = self.org_tree();
            let now = self.compliance_now();
            let q = self.hold_settings().release_quarantine.as_millis() as u64;
            let mut held: Vec<String> = self
                .meta
                .custodians()?
                .into_iter()
                .filter(|c| tree.is_inside(&c.org, org))
                .filter(|c| c.released_at.is_none_or(|r| r + q > now))
                .map(|c| format!("{}/{} ({})", c.org, c.user, c.matter))
                .collect();
            held.sort();
            held.dedup();
            if !held.is_empty() {
                details.push(("held_custodians_untouched", held.join(", ")));
            }
        }
        let stored = self.meta.set_org_settings(
            org,
            version,
            &to_record(s),
            &self.draft(p, action, target, details),
        )?;
        if !stored {
            return Err(CoreError::Conflict(format!(
                "the settings of org {org} changed meanwhile; read them again and retry"
            )));
        }
        self.quotas_changed();
        if security_changed {
            self.destroy_escrow_under_enhanced(p)?;
        }
        Ok(())
    }
}
