//! What a device's defaults are, from its org's settings (pure): save,
//! push and lock (seed 002's table).
//!
//! | mode | future devices | existing devices | users may change |
//! |---|---|---|---|
//! | save | yes | no | yes |
//! | push | yes | yes | yes |
//! | lock | yes | yes | no |
//!
//! A device keeps the values in effect for its org when it was enrolled
//! (its [`Snapshot`]). For each key, the org that supplies the group (the
//! nearest with inheritance off, as for every group) may have pushed a
//! value since: then that value is the device's. A lock is stronger than
//! inheritance: the topmost org on the way up that locked a key decides it
//! for its whole subtree, and no org below can set it.

use std::collections::BTreeMap;

use coffer_types::{Name, UnixMillis};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::settings::{self, Group, KeyMode, Mode, OrgSettings, Source};

/// The device defaults a device received at enrollment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub at: UnixMillis,
    pub values: BTreeMap<String, Value>,
}

/// One device default as the device must apply it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceValue {
    pub value: Value,
    /// The org whose value it is (or the default).
    pub from: Source,
    /// The org that locked it, if one did.
    pub locked_by: Option<Name>,
    /// When the value was pushed or locked (0: neither; the device keeps
    /// what it chose). A device applies a pushed value once per `pushed_at`.
    pub pushed_at: UnixMillis,
}

/// The mode of `key` at `org`'s own settings.
fn mode<'a>(s: &'a OrgSettings, key: &str) -> Option<&'a KeyMode> {
    s.modes.get(key)
}

/// The topmost org of `chain` (the org, its parent, … its top) that locked
/// `key`, with its value.
pub fn lock<'a>(chain: &[(&'a Name, &'a OrgSettings)], key: &str) -> Option<(&'a Name, &'a Value)> {
    chain.iter().rev().find_map(|(org, s)| {
        let m = mode(s, key)?;
        match (m.mode, &m.pushed) {
            (Mode::Lock, Some(p)) => Some((*org, &p.value)),
            _ => None,
        }
    })
}

/// The device defaults of a device of the org at the head of `chain`,
/// enrolled with `snapshot` (None: enrolled before snapshots were kept; it
/// has the values saved now).
pub fn for_device(
    chain: &[(&Name, &OrgSettings)],
    snapshot: Option<&Snapshot>,
) -> BTreeMap<String, DeviceValue> {
    let group = Group::DeviceDefaults;
    let saved = settings::effective(group, chain);
    let owner = chain
        .iter()
        .find(|(_, s)| s.own.contains_key(&group))
        .map(|(_, s)| *s);
    let since = snapshot.map_or(0, |s| s.at);
    saved
        .into_iter()
        .map(|(key, e)| {
            let v = if let Some((org, value)) = lock(chain, &key) {
                let at = chain
                    .iter()
                    .find(|(o, _)| *o == org)
                    .and_then(|(_, s)| mode(s, &key)?.pushed.as_ref().map(|p| p.at))
                    .unwrap_or(0);
                DeviceValue {
                    value: value.clone(),
                    from: Source::Org(org.clone()),
                    locked_by: Some(org.clone()),
                    pushed_at: at,
                }
            } else {
                let pushed = owner.and_then(|s| mode(s, &key)?.pushed.as_ref());
                match pushed {
                    Some(p) if p.at > since || snapshot.is_none() => DeviceValue {
                        value: p.value.clone(),
                        from: e.from.clone(),
                        locked_by: None,
                        pushed_at: p.at,
                    },
                    _ => DeviceValue {
                        value: snapshot
                            .and_then(|s| s.values.get(&key).cloned())
                            .unwrap_or(e.value),
                        from: e.from,
                        locked_by: None,
                        pushed_at: pushed.map_or(0, |p| p.at),
                    },
                }
            };
            (key, v)
        })
        .collect()
}

/// The modes an org takes over when it turns inheritance of the device
/// defaults off: those of the org that supplied them (what it pushed stays
/// pushed). Locks are not copied: the lock above keeps deciding, and stops
/// when it is lifted there.
pub fn modes_copied(chain: &[(&Name, &OrgSettings)]) -> BTreeMap<String, KeyMode> {
    let group = Group::DeviceDefaults;
    chain
        .iter()
        .find(|(_, s)| s.own.contains_key(&group))
        .map(|(_, s)| {
            s.modes
                .iter()
                .filter(|(k, _)| settings::mode_of_group(group, k))
                .map(|(k, m)| {
                    let mode = match m.mode {
                        Mode::Lock => Mode::Push,
                        other => other,
                    };
                    (
                        k.clone(),
                        KeyMode {
                            mode,
                            pushed: m.pushed.clone(),
                        },
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Pushed;

    fn n(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    /// An org that holds the device defaults with `streams` set by `mode`
    /// at `at`.
    fn org(streams: u64, m: Mode, at: UnixMillis) -> OrgSettings {
        let mut s = OrgSettings::default();
        let mut vals: BTreeMap<String, Value> = Group::DeviceDefaults
            .specs()
            .iter()
            .map(|sp| (sp.key.to_string(), sp.default_value()))
            .collect();
        vals.insert("streams".into(), Value::from(streams));
        s.own.insert(Group::DeviceDefaults, vals);
        s.modes.insert(
            "streams".into(),
            KeyMode {
                mode: m,
                pushed: (m != Mode::Save).then(|| Pushed {
                    value: Value::from(streams),
                    at,
                }),
            },
        );
        s
    }

    fn snap(at: UnixMillis, streams: u64) -> Snapshot {
        Snapshot {
            at,
            values: [("streams".to_string(), Value::from(streams))].into(),
        }
    }

    fn streams(chain: &[(&Name, &OrgSettings)], s: Option<&Snapshot>) -> (Value, bool, u64) {
        let v = &for_device(chain, s)["streams"];
        (v.value.clone(), v.locked_by.is_some(), v.pushed_at)
    }

    #[test]
    fn save_reaches_devices_enrolled_later_push_and_lock_reach_every_device() {
        let acme = n("acme");
        let before = snap(10, 16);
        // Saved at 20: the device enrolled at 10 keeps 16; one enrolled at
        // 30 got 4 in its snapshot.
        let saved = org(4, Mode::Save, 20);
        let chain = [(&acme, &saved)];
        assert_eq!(streams(&chain, Some(&before)), (Value::from(16), false, 0));
        assert_eq!(streams(&chain, Some(&snap(30, 4))).0, Value::from(4));
        // Pushed at 20: both have 4, and may change it.
        let pushed = org(4, Mode::Push, 20);
        let chain = [(&acme, &pushed)];
        assert_eq!(streams(&chain, Some(&before)), (Value::from(4), false, 20));
        // Locked: the same, locked.
        let locked = org(4, Mode::Lock, 20);
        let chain = [(&acme, &locked)];
        assert_eq!(streams(&chain, Some(&before)), (Value::from(4), true, 20));
        // A save after a push does not undo it for devices enrolled before
        // the push, and devices enrolled between keep the pushed value.
        let mut later = org(8, Mode::Save, 40);
        later.modes.get_mut("streams").unwrap().pushed = Some(Pushed {
            value: Value::from(4),
            at: 20,
        });
        let chain = [(&acme, &later)];
        assert_eq!(streams(&chain, Some(&before)).0, Value::from(4));
        assert_eq!(streams(&chain, Some(&snap(30, 4))).0, Value::from(4));
        assert_eq!(streams(&chain, Some(&snap(50, 8))).0, Value::from(8));
    }

    #[test]
    fn the_topmost_lock_wins_over_inheritance_off_below() {
        let (top, mid, leaf) = (n("acme"), n("acme-eu"), n("acme-eu-sales"));
        let locked = org(2, Mode::Lock, 5);
        // acme-eu turned inheritance off and pushed its own value later.
        let own = org(32, Mode::Push, 50);
        let empty = OrgSettings::default();
        let chain = [(&leaf, &empty), (&mid, &own), (&top, &locked)];
        let v = &for_device(&chain, Some(&snap(1, 16)))["streams"];
        assert_eq!(v.value, Value::from(2));
        assert_eq!(v.locked_by.as_ref(), Some(&top));
        assert_eq!(lock(&chain, "streams").map(|(o, _)| o), Some(&top));
        assert_eq!(lock(&chain[..2], "streams"), None);
        // Other keys are not locked.
        assert_eq!(for_device(&chain, None)["excludes"].locked_by, None);
        // Copied on inheritance off: the push stays, the lock does not.
        let m = modes_copied(&chain[2..]);
        assert_eq!(m["streams"].mode, Mode::Push);
        assert_eq!(m["streams"].pushed.as_ref().unwrap().value, Value::from(2));
    }
}
