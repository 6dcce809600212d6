//! The device defaults the server gives this device (`GET /v1/settings`),
//! applied over the agent's own choices (docs/settings.md):
//!
//! - a **locked** value is the value; a flag or a profile entry that says
//!   otherwise is refused, naming the setting and the org that locked it;
//! - a **pushed** value replaces the profile's choice once per push (it is
//!   written into the profile's `[settings]`); a later change of the
//!   profile is kept until the next push;
//! - otherwise a flag wins over the profile, and the profile over the
//!   server's saved value.

use std::collections::BTreeMap;

use coffer_types::wire::DeviceSettings;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The agent's own choices, kept in the profile's `[settings]`, and the
/// pushes it has applied.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Local {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub one_file_system: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streams: Option<usize>,
    /// Bytes per second (0 = none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_limit: Option<u64>,
    /// `"on"` or `"off"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    /// `"forever"`, a duration (`"30d"`), or `"0"` (not kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_deleted: Option<String>,
    /// Setting → the `pushed_at` of the last push applied.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub applied: BTreeMap<String, u64>,
}

impl Local {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// What this run uses, and where each value came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub excludes: Vec<String>,
    pub one_file_system: bool,
    pub streams: usize,
    pub bandwidth_limit: u64,
    pub compression: bool,
    pub keep_deleted: crate::backup::KeepDeleted,
    /// Setting → (value as text, where it came from).
    pub origin: BTreeMap<String, (String, String)>,
}

/// The keys the agent applies, with the flag that sets each (compression
/// has none: the profile's `[settings]` or the server decide).
const KEYS: [(&str, &str); 6] = [
    ("excludes", "--exclude"),
    ("one_file_system", "--one-file-system"),
    ("streams", "--streams"),
    ("bandwidth_limit", "--bandwidth-limit"),
    ("compression", "compression"),
    ("keep_deleted", "--keep-deleted"),
];

/// `keep_deleted` as the agent compares it: seconds, or `"forever"` (the
/// server says forever with `null`; the profile and the flag in words).
pub fn keep_deleted_value(v: &Value) -> Value {
    match v {
        Value::Null => Value::from("forever"),
        Value::String(t) if t.trim() == "forever" => Value::from("forever"),
        Value::String(t) => match t.trim().parse::<u64>() {
            Ok(n) => Value::from(n),
            Err(_) => humantime::parse_duration(t.trim())
                .map(|d| Value::from(d.as_secs()))
                .unwrap_or_else(|_| v.clone()),
        },
        other => other.clone(),
    }
}

/// A server value as the agent compares it.
fn normalized(key: &str, v: &Value) -> Value {
    if key == "keep_deleted" {
        keep_deleted_value(v)
    } else {
        v.clone()
    }
}

fn get(l: &Local, key: &str) -> Option<Value> {
    match key {
        "excludes" => l.excludes.as_ref().map(|v| Value::from(v.clone())),
        "one_file_system" => l.one_file_system.map(Value::from),
        "streams" => l.streams.map(Value::from),
        "bandwidth_limit" => l.bandwidth_limit.map(Value::from),
        "compression" => l.compression.clone().map(Value::from),
        "keep_deleted" => l
            .keep_deleted
            .as_ref()
            .map(|t| keep_deleted_value(&Value::from(t.as_str()))),
        _ => None,
    }
}

fn set(l: &mut Local, key: &str, v: &Value) {
    match key {
        "excludes" => {
            l.excludes = v.as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
        }
        "one_file_system" => l.one_file_system = v.as_bool(),
        "streams" => l.streams = v.as_u64().map(|n| n as usize),
        "bandwidth_limit" => l.bandwidth_limit = v.as_u64(),
        "compression" => l.compression = v.as_str().map(str::to_string),
        "keep_deleted" => {
            l.keep_deleted = match keep_deleted_value(v) {
                Value::Number(n) => Some(format!("{n}s")),
                Value::String(t) => Some(t),
                _ => None,
            }
        }
        _ => {}
    }
}

/// Two values the same setting (lists compared as sets).
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_array(), b.as_array()) {
        (Some(x), Some(y)) => {
            let mut x: Vec<String> = x.iter().map(|v| v.to_string()).collect();
            let mut y: Vec<String> = y.iter().map(|v| v.to_string()).collect();
            x.sort();
            y.sort();
            x == y
        }
        _ => a == b,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|s| s.as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
            .join(","),
        Value::Null => "-".into(),
        Value::String(t) => t.clone(),
        other => other.to_string(),
    }
}

/// The values for this run, from the server's settings (`None`: a server
/// without them), the profile's choices (updated in place with new pushes;
/// the bool says whether they changed) and the flags given.
pub fn resolve(
    server: Option<&DeviceSettings>,
    profile: &mut Local,
    flags: &Local,
) -> anyhow::Result<(Resolved, bool)> {
    let mut changed = false;
    let mut out = BTreeMap::new();
    for (key, flag) in KEYS {
        let s = server.and_then(|s| s.values.get(key)).map(|s| {
            let mut s = s.clone();
            s.value = normalized(key, &s.value);
            s
        });
        let s = s.as_ref();
        if let Some(s) = s.filter(|s| s.pushed_at > profile.applied.get(key).copied().unwrap_or(0))
        {
            set(profile, key, &s.value);
            profile.applied.insert(key.to_string(), s.pushed_at);
            changed = true;
        }
        let (v, from) = match (s, get(flags, key), get(profile, key)) {
            (Some(s), given, own) if s.locked => {
                // An org's lock, or a legal hold's (its preservation
                // policy's deleted-file handling).
                let by = s.locked_by.as_deref().unwrap_or(&s.from);
                let by = if by.starts_with("legal hold") {
                    by.to_string()
                } else {
                    format!("org {by}")
                };
                if let Some(g) = given.filter(|g| !same(g, &s.value)) {
                    anyhow::bail!(
                        "device_defaults.{key} is locked at {} by {by}: {flag} {} is refused; \
                         drop it",
                        s.text,
                        text(&g)
                    );
                }
                if let Some(o) = own.filter(|o| !same(o, &s.value)) {
                    anyhow::bail!(
                        "device_defaults.{key} is locked at {} by {by}: the profile's \
                         [settings] {key} = {} is refused; remove it",
                        s.text,
                        text(&o)
                    );
                }
                (s.value.clone(), format!("locked by {by}"))
            }
            (_, Some(g), _) => (g, format!("flag {flag}")),
            (s, None, Some(o)) => {
                let pushed = s.is_some_and(|s| profile.applied.get(key) == Some(&s.pushed_at));
                let from = if pushed && s.is_some_and(|s| same(&s.value, &o)) {
                    format!("pushed by org {}", s.map_or("", |s| s.from.as_str()))
                } else {
                    "profile".to_string()
                };
                (o, from)
            }
            (Some(s), None, None) => (s.value.clone(), format!("server ({})", s.from)),
            (None, None, None) => (Value::Null, "agent default".to_string()),
        };
        out.insert(key.to_string(), (v, from));
    }
    let val = |k: &str| out.get(k).map(|(v, _)| v.clone()).unwrap_or(Value::Null);
    let r = Resolved {
        excludes: val("excludes")
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        one_file_system: val("one_file_system").as_bool().unwrap_or(false),
        streams: val("streams")
            .as_u64()
            .map_or(16, |n| n.clamp(1, 256) as usize),
        bandwidth_limit: val("bandwidth_limit").as_u64().unwrap_or(0),
        compression: val("compression").as_str() != Some("off"),
        keep_deleted: crate::backup::KeepDeleted::from_value(&val("keep_deleted")),
        origin: out
            .iter()
            .map(|(k, (v, from))| (k.clone(), (text(v), from.clone())))
            .collect(),
    };
    Ok((r, changed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer_types::wire::DeviceSetting;

    fn server(key: &str, v: Value, locked: bool, pushed_at: u64) -> DeviceSettings {
        DeviceSettings {
            device: coffer_types::Name::new("dv_1").unwrap(),
            org: coffer_types::Name::new("acme").unwrap(),
            version: pushed_at,
            values: [(
                key.to_string(),
                DeviceSetting {
                    text: text(&v),
                    value: v,
                    from: "acme".into(),
                    locked,
                    locked_by: locked.then(|| "acme".into()),
                    pushed_at,
                },
            )]
            .into(),
            security: None,
        }
    }

    #[test]
    fn a_push_replaces_the_profile_once_and_a_later_local_change_is_kept() {
        let s = server("streams", Value::from(4), false, 100);
        let mut p = Local {
            streams: Some(8),
            ..Local::default()
        };
        let (r, changed) = resolve(Some(&s), &mut p, &Local::default()).unwrap();
        assert!(changed);
        assert_eq!((r.streams, p.streams), (4, Some(4)));
        assert_eq!(r.origin["streams"].1, "pushed by org acme");
        // The user sets 2 afterwards: kept, until the next push.
        p.streams = Some(2);
        let (r, changed) = resolve(Some(&s), &mut p, &Local::default()).unwrap();
        assert!(!changed);
        assert_eq!((r.streams, r.origin["streams"].1.as_str()), (2, "profile"));
        let next = server("streams", Value::from(6), false, 200);
        assert_eq!(
            resolve(Some(&next), &mut p, &Local::default())
                .unwrap()
                .0
                .streams,
            6
        );
        // A flag wins for one run, and is not kept.
        let flags = Local {
            streams: Some(1),
            ..Local::default()
        };
        assert_eq!(resolve(Some(&next), &mut p, &flags).unwrap().0.streams, 1);
        assert_eq!(p.streams, Some(6));
    }

    #[test]
    fn a_legal_holds_keep_deleted_is_forever_locked_and_named_and_a_release_lets_go() {
        // The server says forever with null, locked by the hold.
        let mut s = server("keep_deleted", Value::Null, true, 100);
        let v = s.values.get_mut("keep_deleted").unwrap();
        v.locked_by = Some("legal hold m1".into());
        v.from = "legal hold".into();
        v.text = "forever".into();
        let mut p = Local::default();
        let (r, changed) = resolve(Some(&s), &mut p, &Local::default()).unwrap();
        assert!(changed);
        assert_eq!(r.keep_deleted, crate::backup::KeepDeleted::Forever);
        assert_eq!(r.origin["keep_deleted"].1, "locked by legal hold m1");
        assert_eq!(p.keep_deleted.as_deref(), Some("forever"));
        // The same value as a flag is no contradiction; another is refused.
        let same_flag = Local {
            keep_deleted: Some("forever".into()),
            ..Local::default()
        };
        assert!(resolve(Some(&s), &mut p, &same_flag).is_ok());
        let off = Local {
            keep_deleted: Some("0".into()),
            ..Local::default()
        };
        let e = resolve(Some(&s), &mut p, &off).unwrap_err().to_string();
        assert!(
            e.contains("device_defaults.keep_deleted is locked at forever by legal hold m1"),
            "{e}"
        );
        // Released: the org's value comes back as a push, and replaces the
        // hold's in the profile.
        let back = server("keep_deleted", Value::from(0), false, 200);
        let (r, changed) = resolve(Some(&back), &mut p, &Local::default()).unwrap();
        assert!(changed);
        assert_eq!(r.keep_deleted, crate::backup::KeepDeleted::Off);
        // A duration given as a flag.
        let flag = Local {
            keep_deleted: Some("90d".into()),
            ..Local::default()
        };
        let (r, _) = resolve(Some(&back), &mut p, &flag).unwrap();
        assert_eq!(
            r.keep_deleted,
            crate::backup::KeepDeleted::For(std::time::Duration::from_secs(90 * 86_400))
        );
    }

    #[test]
    fn a_locked_value_refuses_contradicting_flags_and_profile_entries() {
        let s = server("bandwidth_limit", Value::from(5u64 << 20), true, 100);
        let mut p = Local::default();
        let flags = Local {
            bandwidth_limit: Some(0),
            ..Local::default()
        };
        let e = resolve(Some(&s), &mut p, &flags).unwrap_err().to_string();
        assert!(
            e.contains("device_defaults.bandwidth_limit is locked")
                && e.contains("by org acme")
                && e.contains("--bandwidth-limit 0"),
            "{e}"
        );
        // The same value is no contradiction.
        let same_flag = Local {
            bandwidth_limit: Some(5 << 20),
            ..Local::default()
        };
        let (r, _) = resolve(Some(&s), &mut p, &same_flag).unwrap();
        assert_eq!(r.bandwidth_limit, 5 << 20);
        assert_eq!(r.origin["bandwidth_limit"].1, "locked by org acme");
        // A profile edited against the lock after it arrived is refused.
        p.bandwidth_limit = Some(1);
        let e = resolve(Some(&s), &mut p, &Local::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("the profile's [settings] bandwidth_limit = 1"),
            "{e}"
        );
        // Without a server answer, the agent's own choices.
        let (r, _) = resolve(None, &mut Local::default(), &Local::default()).unwrap();
        assert_eq!((r.streams, r.bandwidth_limit), (16, 0));
    }
}
