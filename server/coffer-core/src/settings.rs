//! Organization settings: the groups, their keys and defaults, how values
//! are written and checked, and how an org's effective settings follow from
//! the org tree. Pure functions over the data they judge; storing, scope
//! checks and audit live with the operations that call them.
//!
//! The model (seed 002, DESIGN §2): each org inherits each group from its
//! parent unless inheritance of that group is off for it. An org with
//! inheritance off holds its own values for the whole group (turning it off
//! copies the values in effect then); turning it back on drops them. An org
//! below one with inheritance off follows that org, not the orgs above it.
//! A top-level org that inherits gets the defaults.

use std::collections::BTreeMap;
use std::fmt;

use coffer_types::Name;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A settings group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    /// Health and alert thresholds, alert recipients, the report schedule.
    Reporting,
    /// What devices are told: excludes, streams, bandwidth, schedule, …
    DeviceDefaults,
    /// Archive security and key escrow.
    Security,
    /// Storage quotas of the org's subtree, its users and its devices.
    Quotas,
    /// Version retention.
    Retention,
}

impl Group {
    pub const ALL: [Group; 5] = [
        Group::Reporting,
        Group::DeviceDefaults,
        Group::Security,
        Group::Quotas,
        Group::Retention,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Group::Reporting => "reporting",
            Group::DeviceDefaults => "device_defaults",
            Group::Security => "security",
            Group::Quotas => "quotas",
            Group::Retention => "retention",
        }
    }

    pub fn parse(s: &str) -> Result<Group, String> {
        Group::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a settings group; the groups are {}",
                    Group::ALL.map(|g| g.as_str()).join(", ")
                )
            })
    }

    /// The keys of this group, with their kinds and defaults.
    pub fn specs(self) -> &'static [Spec] {
        match self {
            Group::Reporting => REPORTING,
            Group::DeviceDefaults => DEVICE_DEFAULTS,
            Group::Security => SECURITY,
            Group::Quotas => QUOTAS,
            Group::Retention => RETENTION,
        }
    }

    pub fn spec(self, key: &str) -> Result<&'static Spec, String> {
        self.specs().iter().find(|s| s.key == key).ok_or_else(|| {
            format!(
                "{}.{key} is not a setting; {} has {}",
                self.as_str(),
                self.as_str(),
                self.specs()
                    .iter()
                    .map(|s| s.key)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a setting is written and stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// `"3d"`, `"36h"`, `"90s"` (or seconds); stored as seconds.
    Duration,
    /// A duration, or `"forever"` (stored as `null`).
    DurationOrForever,
    /// A duration, or `"off"` (stored as `null`).
    DurationOrOff,
    /// A time of day, `"HH:MM"` or `"HH:MM:SS"` in UTC; stored as seconds
    /// after midnight.
    TimeOfDay,
    /// `true` / `false` (also `on` / `off`).
    Bool,
    /// A whole number in `min..=max`.
    Count { min: u64, max: u64 },
    /// `"500GiB"`, `"5MiB"` or a byte count; stored as bytes. `0` = none.
    Size,
    /// A fraction in `0..=1` (`0.9`).
    Ratio,
    /// One of the listed words.
    Choice(&'static [&'static str]),
    /// A list of glob patterns (comma-separated when written on a command
    /// line, a JSON array otherwise).
    Globs,
    /// A list of mail addresses.
    Emails,
    /// A list of `http://` or `https://` URLs.
    Urls,
    /// Free text on one line (empty allowed).
    Text,
    /// An escrow public key (`coffer-escrow-v1:` and 64 hex digits), or
    /// empty for none.
    EscrowKey,
}

/// One setting: its key, how it is written, its default (as a person
/// would write it) and what it does.
#[derive(Debug)]
pub struct Spec {
    pub key: &'static str,
    pub kind: Kind,
    pub default: &'static str,
    pub about: &'static str,
}

const REPORTING: &[Spec] = &[
    Spec {
        key: "warning_after",
        kind: Kind::Duration,
        default: "3d",
        about: "a device without new data for this long is yellow (warning)",
    },
    Spec {
        key: "critical_after",
        kind: Kind::Duration,
        default: "7d",
        about: "a device without new data for this long is red (critical)",
    },
    Spec {
        key: "alert_warning_after",
        kind: Kind::Duration,
        default: "3d",
        about: "a warning alert is sent after this long without new data",
    },
    Spec {
        key: "alert_critical_after",
        kind: Kind::Duration,
        default: "5d",
        about: "a critical alert is sent after this long without new data",
    },
    Spec {
        key: "recipients",
        kind: Kind::Emails,
        default: "",
        about: "who receives the org's alert mails",
    },
    Spec {
        key: "remind_every",
        kind: Kind::DurationOrOff,
        default: "off",
        about: "while a device stays critical, the alert is sent again this often",
    },
    Spec {
        key: "digest",
        kind: Kind::Choice(&["off", "daily", "weekly"]),
        default: "off",
        about: "a summary of the org's devices that need attention, by mail",
    },
    Spec {
        key: "digest_time",
        kind: Kind::TimeOfDay,
        default: "08:00",
        about: "when the digest goes out (UTC; weekly digests on Mondays)",
    },
    Spec {
        key: "webhooks",
        kind: Kind::Urls,
        default: "",
        about: "URLs each alert is POSTed to as JSON",
    },
    Spec {
        key: "webhook_secret",
        kind: Kind::Text,
        default: "",
        about: "the key of the HMAC-SHA256 signature of webhook posts",
    },
];

const DEVICE_DEFAULTS: &[Spec] = &[
    Spec {
        key: "excludes",
        kind: Kind::Globs,
        default: "",
        about: "paths the agent does not back up (globs on the path or the file name)",
    },
    Spec {
        key: "one_file_system",
        kind: Kind::Bool,
        default: "false",
        about: "stay on the file system of each selected path",
    },
    Spec {
        key: "streams",
        kind: Kind::Count { min: 1, max: 256 },
        default: "16",
        about: "uploads in flight",
    },
    Spec {
        key: "bandwidth_limit",
        kind: Kind::Size,
        default: "0",
        about: "bytes per second the agent sends at most (0 = no limit)",
    },
    Spec {
        key: "backup_interval",
        kind: Kind::Duration,
        default: "1h",
        about: "time between backups in the agent's scheduled mode",
    },
    Spec {
        key: "compression",
        kind: Kind::Choice(&["on", "off"]),
        default: "on",
        about: "compress blocks before sealing them",
    },
    Spec {
        key: "keep_deleted",
        kind: Kind::DurationOrForever,
        default: "0",
        about: "how long the agent keeps a file gone from its selection in the backups that follow (0: not at all; a legal hold's policy may lock it)",
    },
];

const SECURITY: &[Spec] = &[
    Spec {
        key: "archive_security",
        kind: Kind::Choice(&["standard", "enhanced"]),
        default: "standard",
        about: "enhanced: only the passphrase opens an archive, nothing is escrowed",
    },
    Spec {
        key: "escrow_public_key",
        kind: Kind::EscrowKey,
        default: "",
        about:
            "the public half of the escrow key agents seal their archive key to (standard security)",
    },
    Spec {
        key: "admin_restore",
        kind: Kind::Choice(&["off", "on"]),
        default: "off",
        about: "administrators may restore a device's backups with the escrow key",
    },
];

const QUOTAS: &[Spec] = &[
    Spec {
        key: "org_bytes",
        kind: Kind::Size,
        default: "0",
        about: "bytes the org's whole subtree may store (0 = no quota)",
    },
    Spec {
        key: "user_bytes",
        kind: Kind::Size,
        default: "0",
        about: "bytes each user in it may store (0 = no quota)",
    },
    Spec {
        key: "device_bytes",
        kind: Kind::Size,
        default: "0",
        about: "bytes each device in it may store (0 = no quota)",
    },
    Spec {
        key: "warn_at",
        kind: Kind::Ratio,
        default: "0.9",
        about: "the share of a quota at which a warning is recorded",
    },
];

const RETENTION: &[Spec] = &[
    Spec {
        key: "keep_all",
        kind: Kind::Duration,
        default: "7d",
        about: "every backup is kept this long",
    },
    Spec {
        key: "daily",
        kind: Kind::Duration,
        default: "90d",
        about: "then the newest of each UTC day, until this age",
    },
    Spec {
        key: "weekly",
        kind: Kind::Duration,
        default: "365d",
        about: "then the newest of each ISO week, until this age",
    },
    Spec {
        key: "monthly",
        kind: Kind::DurationOrForever,
        default: "forever",
        about: "then the newest of each calendar month, until this age",
    },
    Spec {
        key: "min_age",
        kind: Kind::Duration,
        default: "7d",
        about: "nothing younger is expired, whatever a rule or plugin says",
    },
    Spec {
        key: "cold_storage",
        kind: Kind::Duration,
        default: "365d",
        about: "how long a deactivated device's archive is kept before it is purged",
    },
    Spec {
        key: "plugin",
        kind: Kind::Text,
        default: "",
        about:
            "a retention plugin that proposes what expires instead of the tiers (empty: the tiers)",
    },
];

/// Keys renamed since they were first stored: `(group, new, old)`. A value
/// stored under the old name still counts.
const RENAMED: &[(Group, &str, &str)] = &[
    (Group::Retention, "keep_all", "keep_all_for"),
    (Group::Retention, "daily", "daily_until"),
    (Group::Retention, "weekly", "weekly_until"),
    (Group::Retention, "monthly", "monthly_until"),
];

fn former_key(group: Group, key: &str) -> Option<&'static str> {
    RENAMED
        .iter()
        .find(|(g, new, _)| *g == group && *new == key)
        .map(|(_, _, old)| *old)
}

impl Spec {
    /// The stored form of `text`, or why it is not a value of this setting.
    pub fn parse(&self, text: &str) -> Result<Value, String> {
        let t = text.trim();
        let bad = |why: String| format!("{}: {why}", self.key);
        Ok(match self.kind {
            Kind::Duration => Value::from(crate::duration::parse(t).map_err(bad)?.as_secs()),
            Kind::DurationOrForever if t == "forever" => Value::Null,
            Kind::DurationOrOff if t == "off" => Value::Null,
            Kind::DurationOrOff => Value::from(
                crate::duration::parse(t)
                    .map_err(|e| bad(format!("{e}, or \"off\"")))?
                    .as_secs(),
            ),
            Kind::TimeOfDay => {
                let parts: Vec<&str> = t.split(':').collect();
                let n = |p: &str, max: u64| {
                    (p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
                        .then(|| p.parse::<u64>().ok())
                        .flatten()
                        .filter(|v| *v < max)
                };
                let secs = match parts[..] {
                    [h, m] => n(h, 24).zip(n(m, 60)).map(|(h, m)| h * 3600 + m * 60),
                    [h, m, s] => n(h, 24)
                        .zip(n(m, 60))
                        .zip(n(s, 60))
                        .map(|((h, m), s)| h * 3600 + m * 60 + s),
                    _ => None,
                };
                Value::from(secs.ok_or_else(|| {
                    bad(format!(
                        "{t:?} is not a time of day; write it HH:MM or HH:MM:SS (UTC)"
                    ))
                })?)
            }
            Kind::Urls => {
                let list = split_list(t);
                for u in &list {
                    let ok = (u.starts_with("http://") || u.starts_with("https://"))
                        && u.len() <= 2048
                        && !u.chars().any(|c| c.is_whitespace() || c.is_control());
                    if !ok {
                        return Err(bad(format!("{u:?} is not an http:// or https:// URL")));
                    }
                }
                Value::from(list)
            }
            Kind::DurationOrForever => Value::from(
                crate::duration::parse(t)
                    .map_err(|e| bad(format!("{e}, or \"forever\"")))?
                    .as_secs(),
            ),
            Kind::Bool => Value::Bool(match t {
                "true" | "on" | "yes" => true,
                "false" | "off" | "no" => false,
                _ => return Err(bad(format!("{t:?} is not true or false"))),
            }),
            Kind::Count { min, max } => {
                let n: u64 = t
                    .parse()
                    .map_err(|_| bad(format!("{t:?} is not a whole number")))?;
                if !(min..=max).contains(&n) {
                    return Err(bad(format!("{n} is outside {min}..={max}")));
                }
                Value::from(n)
            }
            Kind::Size => Value::from(parse_size(t).map_err(bad)?),
            Kind::Ratio => {
                let r: f64 = t
                    .parse()
                    .map_err(|_| bad(format!("{t:?} is not a number")))?;
                if !(0.0..=1.0).contains(&r) {
                    return Err(bad(format!("{r} is not between 0 and 1")));
                }
                Value::from(r)
            }
            Kind::Choice(words) => {
                if !words.contains(&t) {
                    return Err(bad(format!("{t:?} is not one of {}", words.join(", "))));
                }
                Value::from(t)
            }
            Kind::Globs => {
                let list = split_list(t);
                for g in &list {
                    globset::Glob::new(g).map_err(|e| bad(format!("{g:?} is not a glob ({e})")))?;
                }
                Value::from(list)
            }
            Kind::Emails => {
                let list = split_list(t);
                for m in &list {
                    let ok = m.split_once('@').is_some_and(|(u, d)| {
                        !u.is_empty() && d.contains('.') && !m.chars().any(char::is_whitespace)
                    });
                    if !ok {
                        return Err(bad(format!("{m:?} is not a mail address")));
                    }
                }
                Value::from(list)
            }
            Kind::Text => {
                if t.chars().any(char::is_control) || t.len() > 4096 {
                    return Err(bad("one line of at most 4 096 bytes".into()));
                }
                Value::from(t)
            }
            Kind::EscrowKey => {
                if !t.is_empty() {
                    crate::escrow::check_public_key(t).map_err(bad)?;
                }
                Value::from(t)
            }
        })
    }

    /// The stored form of a JSON value sent through the API: strings are
    /// read as a person writes them, lists and numbers as they are.
    pub fn from_json(&self, v: &Value) -> Result<Value, String> {
        match (self.kind, v) {
            (_, Value::String(s)) => self.parse(s),
            (Kind::Globs | Kind::Emails | Kind::Urls, Value::Array(items)) => {
                let mut parts = Vec::with_capacity(items.len());
                for i in items {
                    match i.as_str() {
                        Some(s) if !s.contains(',') => parts.push(s.to_string()),
                        _ => {
                            return Err(format!(
                                "{}: list items are strings without commas",
                                self.key
                            ))
                        }
                    }
                }
                self.parse(&parts.join(","))
            }
            (Kind::Bool, Value::Bool(_)) => Ok(v.clone()),
            (Kind::DurationOrForever | Kind::DurationOrOff, Value::Null) => Ok(Value::Null),
            (
                Kind::Duration
                | Kind::DurationOrForever
                | Kind::DurationOrOff
                | Kind::Count { .. }
                | Kind::Size
                | Kind::Ratio,
                Value::Number(n),
            ) => self.parse(&n.to_string()),
            _ => Err(format!("{}: {v} is not a value of this setting", self.key)),
        }
    }

    /// A stored value as a person writes it (`"3d"`, `"500GiB"`,
    /// `"*.tmp,node_modules"`), which [`Spec::parse`] reads back.
    pub fn text(&self, v: &Value) -> String {
        match (self.kind, v) {
            (Kind::TimeOfDay, Value::Number(n)) => {
                let s = n.as_u64().unwrap_or(0);
                let hm = format!("{:02}:{:02}", s / 3600, s / 60 % 60);
                if s % 60 == 0 {
                    hm
                } else {
                    format!("{hm}:{:02}", s % 60)
                }
            }
            (Kind::DurationOrOff, Value::Null) => "off".into(),
            (Kind::Duration | Kind::DurationOrForever | Kind::DurationOrOff, Value::Number(n)) => {
                crate::duration::format(std::time::Duration::from_secs(n.as_u64().unwrap_or(0)))
            }
            (Kind::DurationOrForever, Value::Null) => "forever".into(),
            (Kind::Size, Value::Number(n)) => size_text(n.as_u64().unwrap_or(0)),
            (_, Value::String(s)) => s.clone(),
            (_, Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
            (_, other) => other.to_string(),
        }
    }

    /// The default, stored form.
    pub fn default_value(&self) -> Value {
        self.parse(self.default)
            .unwrap_or_else(|e| panic!("the default of {} does not parse: {e}", self.key))
    }
}

fn split_list(t: &str) -> Vec<String> {
    t.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// A byte count in the largest binary unit that divides it (`"500GiB"`).
fn size_text(n: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if n != 0 && n.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

/// `"500GiB"`, `"5 MiB"`, `"1.5TB"` or a plain byte count.
pub fn parse_size(t: &str) -> Result<u64, String> {
    t.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| {
            format!("{t:?} is not a size; write it like \"500GiB\", \"5MiB\" or a byte count")
        })
}

/// The values one org holds for the groups whose inheritance it turned off.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OrgSettings {
    /// Group → key → stored value. A group present here is not inherited.
    #[serde(default)]
    pub own: BTreeMap<Group, BTreeMap<String, Value>>,
    /// Device defaults: key → how the org last set it. A key missing here
    /// was saved.
    #[serde(default)]
    pub modes: BTreeMap<String, KeyMode>,
}

/// How a device default reaches devices (seed 002's table).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Devices enrolled from now on get it; enrolled ones keep theirs.
    #[default]
    Save,
    /// Every device gets it, once; its user may change it afterwards.
    Push,
    /// Every device gets it, and no user (and no org below) may change it.
    Lock,
}

impl Mode {
    pub fn parse(t: &str) -> Result<Mode, String> {
        match t {
            "save" => Ok(Mode::Save),
            "push" => Ok(Mode::Push),
            "lock" => Ok(Mode::Lock),
            _ => Err(format!(
                "{t:?} is not an apply mode; use save, push or lock"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Save => "save",
            Mode::Push => "push",
            Mode::Lock => "lock",
        }
    }
}

/// A device default's mode at the org that set it, and its latest push or
/// lock (kept across later saves: a save does not undo what was pushed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyMode {
    pub mode: Mode,
    #[serde(default)]
    pub pushed: Option<Pushed>,
}

/// A value pushed (or locked) to every device, and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pushed {
    pub value: Value,
    pub at: coffer_types::UnixMillis,
}

/// Where an effective value comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Default,
    Org(Name),
}

/// An effective value and where it comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Effective {
    pub value: Value,
    pub from: Source,
}

/// The effective settings of one group.
pub type GroupValues = BTreeMap<String, Effective>;

/// The effective values of `group` for the org at the head of `chain`
/// (that org, then its parent, … up to its top-level org, each with what it
/// holds): the nearest org with inheritance of the group off supplies every
/// key it has; keys it lacks (added since it turned inheritance off) and
/// groups no org on the chain holds come from the defaults.
pub fn effective(group: Group, chain: &[(&Name, &OrgSettings)]) -> GroupValues {
    let owner = chain
        .iter()
        .find_map(|(org, s)| s.own.get(&group).map(|vals| (*org, vals)));
    group
        .specs()
        .iter()
        .map(|spec| {
            let e = match owner.and_then(|(org, vals)| {
                vals.get(spec.key)
                    .or_else(|| former_key(group, spec.key).and_then(|k| vals.get(k)))
                    .map(|v| (org, v))
            }) {
                Some((org, v)) => Effective {
                    value: v.clone(),
                    from: Source::Org(org.clone()),
                },
                None => Effective {
                    value: spec.default_value(),
                    from: Source::Default,
                },
            };
            (spec.key.to_string(), e)
        })
        .collect()
}

/// Whether keys of `group` can be locked: device defaults (seed 002's
/// table) and security (no org below may change a locked key).
pub fn lockable(group: Group) -> bool {
    matches!(group, Group::DeviceDefaults | Group::Security)
}

/// The key under which `group.key`'s mode is kept in
/// [`OrgSettings::modes`]: a device default by its own key, a security key
/// as `security.KEY` (device default keys have no dot).
pub fn mode_key(group: Group, key: &str) -> String {
    match group {
        Group::DeviceDefaults => key.to_string(),
        g => format!("{g}.{key}"),
    }
}

/// Whether a key of [`OrgSettings::modes`] is `group`'s.
pub fn mode_of_group(group: Group, mode_key: &str) -> bool {
    match group {
        Group::DeviceDefaults => !mode_key.contains('.'),
        g => mode_key
            .strip_prefix(g.as_str())
            .is_some_and(|k| k.starts_with('.')),
    }
}

/// [`effective`] with the locks of a group other than the device defaults
/// applied (devices apply those themselves): the topmost org on the chain
/// that locked a key decides it, also below an org with inheritance off.
/// Each locked key comes with the org that locked it.
pub fn effective_locked(
    group: Group,
    chain: &[(&Name, &OrgSettings)],
) -> BTreeMap<String, (Effective, Option<Name>)> {
    effective(group, chain)
        .into_iter()
        .map(|(k, e)| {
            if group == Group::DeviceDefaults {
                return (k, (e, None));
            }
            match crate::device_settings::lock(chain, &mode_key(group, &k)) {
                Some((org, v)) => (
                    k,
                    (
                        Effective {
                            value: v.clone(),
                            from: Source::Org(org.clone()),
                        },
                        Some(org.clone()),
                    ),
                ),
                None => (k, (e, None)),
            }
        })
        .collect()
}

/// Checks across the keys of a group, on its effective values after a
/// change: `None` when they hold together.
pub fn check_group(group: Group, values: &BTreeMap<String, Value>) -> Option<String> {
    let secs = |k: &str| values.get(k).and_then(Value::as_u64);
    let order = |a: &str, b: &str| match (secs(a), secs(b)) {
        (Some(x), Some(y)) if x >= y => Some(format!(
            "{group}.{a} ({}) must be shorter than {group}.{b} ({})",
            crate::duration::format(std::time::Duration::from_secs(x)),
            crate::duration::format(std::time::Duration::from_secs(y))
        )),
        _ => None,
    };
    match group {
        Group::Reporting => order("warning_after", "critical_after")
            .or_else(|| order("alert_warning_after", "alert_critical_after")),
        Group::Retention => {
            // Tiers end in order: each tier is at least as coarse as the one
            // before, so its end may not come before the previous one's.
            let not_after = |a: &str, b: &str| {
                match (secs(a), values.get(b)) {
                (Some(x), Some(Value::Number(y))) if y.as_u64().is_some_and(|y| y < x) => {
                    Some(format!(
                        "{group}.{b} ({}) must not be shorter than {group}.{a} ({}): a coarser tier cannot end before a finer one",
                        crate::duration::format(std::time::Duration::from_secs(y.as_u64().unwrap_or(0))),
                        crate::duration::format(std::time::Duration::from_secs(x))
                    ))
                }
                _ => None,
            }
            };
            not_after("keep_all", "daily")
                .or_else(|| not_after("daily", "weekly"))
                .or_else(|| not_after("weekly", "monthly"))
        }
        _ => None,
    }
}

/// What turning inheritance of `group` on drops: the org's own values.
pub fn dropped_on_inherit(s: &OrgSettings, group: Group) -> Vec<(String, Value)> {
    s.own
        .get(&group)
        .map(|vals| vals.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The org's own values when it turns inheritance of `group` off: the
/// values in effect for it at that moment.
pub fn own_from_effective(values: &GroupValues) -> BTreeMap<String, Value> {
    values
        .iter()
        .map(|(k, e)| (k.clone(), e.value.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Name {
        Name::new(s).unwrap()
    }

    fn own(group: Group, kv: &[(&str, &str)]) -> OrgSettings {
        let mut s = OrgSettings::default();
        let vals = kv
            .iter()
            .map(|(k, v)| (k.to_string(), group.spec(k).unwrap().parse(v).unwrap()))
            .collect();
        s.own.insert(group, vals);
        s
    }

    #[test]
    fn every_default_parses_and_every_group_checks_out() {
        for g in Group::ALL {
            let d: BTreeMap<String, Value> = g
                .specs()
                .iter()
                .map(|s| (s.key.to_string(), s.default_value()))
                .collect();
            assert_eq!(check_group(g, &d), None, "{g}");
            assert_eq!(Group::parse(g.as_str()).unwrap(), g);
        }
    }

    #[test]
    fn docs_list_every_setting_with_its_default() {
        let doc = include_str!("../../../docs/settings.md");
        for g in Group::ALL {
            for spec in g.specs() {
                let default = if spec.default.is_empty() {
                    "(none)".to_string()
                } else {
                    format!("`{}`", spec.default)
                };
                let row = doc
                    .lines()
                    .find(|l| l.starts_with(&format!("| `{g}.{}` |", spec.key)))
                    .unwrap_or_else(|| panic!("docs/settings.md lacks {g}.{}", spec.key));
                assert!(row.contains(&format!("| {default} |")), "{row}");
            }
        }
    }

    #[test]
    fn values_are_written_as_people_write_them() {
        let r = Group::Reporting;
        let t = r.spec("digest_time").unwrap();
        assert_eq!(t.parse("08:00").unwrap(), Value::from(28_800));
        assert_eq!(t.parse("23:59:30").unwrap(), Value::from(86_370));
        assert_eq!(t.text(&Value::from(28_800)), "08:00");
        assert_eq!(t.text(&Value::from(86_370)), "23:59:30");
        for bad in ["8:00", "24:00", "08:60", "08:00:60", "0800", "08:00:00:00"] {
            assert!(t.parse(bad).is_err(), "{bad}");
        }
        let off = r.spec("remind_every").unwrap();
        assert_eq!(off.parse("off").unwrap(), Value::Null);
        assert_eq!(off.text(&Value::Null), "off");
        assert_eq!(off.parse("90s").unwrap(), Value::from(90));
        let hooks = r.spec("webhooks").unwrap();
        assert!(hooks.parse("ftp://x.example").is_err());
        assert_eq!(
            hooks
                .parse("https://a.example/h, http://b.example")
                .unwrap(),
            Value::from(vec!["https://a.example/h", "http://b.example"])
        );
        assert_eq!(
            r.spec("warning_after").unwrap().parse("36h").unwrap(),
            Value::from(129_600)
        );
        assert_eq!(
            r.spec("warning_after").unwrap().parse("90").unwrap(),
            Value::from(90)
        );
        let q = Group::Quotas;
        assert_eq!(
            q.spec("org_bytes").unwrap().parse("500GiB").unwrap(),
            Value::from(500u64 << 30)
        );
        assert_eq!(
            q.spec("org_bytes").unwrap().parse("1024").unwrap(),
            Value::from(1024)
        );
        let d = Group::DeviceDefaults;
        assert_eq!(
            d.spec("excludes")
                .unwrap()
                .parse("*.tmp, node_modules")
                .unwrap(),
            serde_json::json!(["*.tmp", "node_modules"])
        );
        assert_eq!(
            d.spec("one_file_system").unwrap().parse("on").unwrap(),
            Value::Bool(true)
        );
        assert_eq!(
            Group::Retention
                .spec("monthly")
                .unwrap()
                .parse("forever")
                .unwrap(),
            Value::Null
        );
        // JSON through the API: strings as written, lists and numbers as they are.
        let ex = d.spec("excludes").unwrap();
        assert_eq!(
            ex.from_json(&serde_json::json!(["*.iso"])).unwrap(),
            serde_json::json!(["*.iso"])
        );
        assert_eq!(
            d.spec("streams")
                .unwrap()
                .from_json(&serde_json::json!(8))
                .unwrap(),
            Value::from(8)
        );
    }

    #[test]
    fn every_value_reads_back_from_its_text() {
        for g in Group::ALL {
            for spec in g.specs() {
                let v = spec.default_value();
                assert_eq!(spec.parse(&spec.text(&v)).unwrap(), v, "{g}.{}", spec.key);
            }
        }
        let q = Group::Quotas.spec("org_bytes").unwrap();
        assert_eq!(q.text(&Value::from(500u64 << 30)), "500GiB");
        assert_eq!(q.text(&Value::from(1000)), "1000");
        let ex = Group::DeviceDefaults.spec("excludes").unwrap();
        assert_eq!(ex.text(&serde_json::json!(["*.tmp", "x"])), "*.tmp,x");
    }

    #[test]
    fn bad_values_name_the_key_and_why() {
        let cases = [
            (
                Group::Reporting,
                "warning_after",
                "soon",
                "warning_after: \"soon\" is not a duration",
            ),
            (
                Group::DeviceDefaults,
                "streams",
                "0",
                "streams: 0 is outside 1..=256",
            ),
            (
                Group::DeviceDefaults,
                "compression",
                "zstd",
                "\"zstd\" is not one of on, off",
            ),
            (
                Group::Quotas,
                "warn_at",
                "1.5",
                "warn_at: 1.5 is not between 0 and 1",
            ),
            (Group::Quotas, "user_bytes", "lots", "is not a size"),
            (
                Group::Reporting,
                "recipients",
                "ops",
                "\"ops\" is not a mail address",
            ),
            (Group::DeviceDefaults, "excludes", "a[", "is not a glob"),
        ];
        for (g, k, v, says) in cases {
            let e = g.spec(k).unwrap().parse(v).unwrap_err();
            assert!(e.contains(says), "{g}.{k}={v}: {e}");
        }
        let e = Group::Security.spec("escrow").unwrap_err();
        assert!(
            e.contains("security.escrow is not a setting") && e.contains("escrow_public_key"),
            "{e}"
        );
        assert!(Group::parse("alerts")
            .unwrap_err()
            .contains("reporting, device_defaults"));
    }

    #[test]
    fn a_warning_after_the_critical_threshold_is_refused() {
        let mut v = own(
            Group::Reporting,
            &[("warning_after", "8d"), ("critical_after", "7d")],
        )
        .own[&Group::Reporting]
            .clone();
        let e = check_group(Group::Reporting, &v).unwrap();
        assert!(
            e.contains(
                "reporting.warning_after (8d) must be shorter than reporting.critical_after (7d)"
            ),
            "{e}"
        );
        v.insert("warning_after".into(), Value::from(3600));
        assert_eq!(check_group(Group::Reporting, &v), None);
    }

    #[test]
    fn retention_tiers_must_grow() {
        let g = Group::Retention;
        let mut v: BTreeMap<String, Value> = g
            .specs()
            .iter()
            .map(|s| (s.key.to_string(), s.default_value()))
            .collect();
        assert_eq!(check_group(g, &v), None);
        v.insert("monthly".into(), Value::from(86_400));
        let e = check_group(g, &v).unwrap();
        assert!(
            e.contains("retention.monthly (1d) must not be shorter than retention.weekly (365d)"),
            "{e}"
        );
        v.insert("monthly".into(), Value::Null);
        v.insert("weekly".into(), Value::from(3_600));
        let e = check_group(g, &v).unwrap();
        assert!(
            e.contains("retention.weekly (1h) must not be shorter than retention.daily (90d)"),
            "{e}"
        );
        // Equal ends are fine (that tier is simply empty).
        v.insert("weekly".into(), Value::from(90 * 86_400));
        assert_eq!(check_group(g, &v), None);
    }

    #[test]
    fn a_value_stored_under_a_former_name_still_counts() {
        let org = Name::new("acme").unwrap();
        let mut s = OrgSettings::default();
        s.own.insert(
            Group::Retention,
            [("daily_until".to_string(), Value::from(3_600))].into(),
        );
        let e = effective(Group::Retention, &[(&org, &s)]);
        assert_eq!(e["daily"].value, Value::from(3_600));
        assert_eq!(e["weekly"].value, Value::from(365 * 86_400));
    }

    #[test]
    fn inheritance_three_levels_deep_and_the_nearest_org_with_inheritance_off_wins() {
        let (acme, eu, sales) = (n("acme"), n("acme-eu"), n("acme-eu-sales"));
        let g = Group::Reporting;
        let none = OrgSettings::default();
        // Nobody holds the group: the defaults, from "default".
        let e = effective(g, &[(&sales, &none), (&eu, &none), (&acme, &none)]);
        assert_eq!(
            e["warning_after"],
            Effective {
                value: Value::from(259_200),
                from: Source::Default
            }
        );
        // The top turns inheritance off: everyone below follows it.
        let top = own(g, &[("warning_after", "2d")]);
        let e = effective(g, &[(&sales, &none), (&eu, &none), (&acme, &top)]);
        assert_eq!(
            e["warning_after"],
            Effective {
                value: Value::from(172_800),
                from: Source::Org(acme.clone())
            }
        );
        // A key the owner lacks (added since) is the default.
        assert_eq!(e["critical_after"].from, Source::Default);
        // The middle turns it off too: its children follow it, not the top.
        let mid = own(g, &[("warning_after", "1d")]);
        let e = effective(g, &[(&sales, &none), (&eu, &mid), (&acme, &top)]);
        assert_eq!(
            e["warning_after"],
            Effective {
                value: Value::from(86_400),
                from: Source::Org(eu.clone())
            }
        );
        // The other groups are untouched.
        let q = effective(
            Group::Quotas,
            &[(&sales, &none), (&eu, &mid), (&acme, &top)],
        );
        assert!(q.values().all(|e| e.from == Source::Default));
    }

    #[test]
    fn inheritance_off_copies_what_is_in_effect_and_back_on_drops_it() {
        let (acme, eu) = (n("acme"), n("acme-eu"));
        let g = Group::Quotas;
        let top = own(g, &[("org_bytes", "1TiB"), ("warn_at", "0.8")]);
        let none = OrgSettings::default();
        let before = effective(g, &[(&eu, &none), (&acme, &top)]);
        let mut mine = OrgSettings::default();
        mine.own.insert(g, own_from_effective(&before));
        let after = effective(g, &[(&eu, &mine), (&acme, &top)]);
        // Same values, now its own.
        for (k, e) in &after {
            assert_eq!(e.value, before[k].value, "{k}");
            assert_eq!(e.from, Source::Org(eu.clone()), "{k}");
        }
        let dropped = dropped_on_inherit(&mine, g);
        assert_eq!(dropped.len(), g.specs().len());
        assert!(dropped
            .iter()
            .any(|(k, v)| k == "org_bytes" && v.as_u64() == Some(1u64 << 40)));
        assert!(dropped_on_inherit(&none, g).is_empty());
    }
}
