//! `plugin.toml`: what a plugin is and what it asks for. The operator's
//! grants decide what it gets; everything else is denied.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The WIT world a plugin implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum World {
    Reporter,
    Retention,
    Integration,
}

impl World {
    pub const ALL: [World; 3] = [World::Reporter, World::Retention, World::Integration];

    pub fn as_str(self) -> &'static str {
        match self {
            World::Reporter => "reporter",
            World::Retention => "retention",
            World::Integration => "integration",
        }
    }

    /// The capabilities a world can use at all.
    pub fn can_use(self, c: Capability) -> bool {
        match self {
            World::Reporter => matches!(c, Capability::Kv | Capability::Inventory),
            World::Retention => false,
            World::Integration => matches!(c, Capability::Kv | Capability::Http),
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for World {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        World::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| {
                format!("unknown world {s:?}: expected reporter, retention or integration")
            })
    }
}

/// What a plugin may ask for. Logging needs no grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    /// Its private key-value store.
    Kv,
    /// Outbound HTTP to the operator's allow-list.
    Http,
    /// Read-only inventory of the call's organization.
    Inventory,
}

/// One setting in the plugin's config schema.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigField {
    #[serde(rename = "type", default)]
    pub kind: ConfigType,
    #[serde(default)]
    pub required: bool,
    pub default: Option<String>,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigType {
    #[default]
    String,
    Integer,
    Boolean,
    Url,
}

/// A parsed `plugin.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub world: World,
    /// The contract version the plugin was built against. Optional: the
    /// component's imports say it; when given, the two must agree.
    #[serde(default)]
    pub contract: Option<String>,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    #[serde(default)]
    pub config: BTreeMap<String, ConfigField>,
}

impl Manifest {
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let m: Manifest = toml::from_str(text)?;
        m.validate()?;
        Ok(m)
    }

    fn validate(&self) -> anyhow::Result<()> {
        let ok_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok_name {
            anyhow::bail!(
                "plugin name {:?}: use 1-64 lowercase letters, digits and '-'",
                self.name
            );
        }
        if let Some(c) = self.capabilities.iter().find(|c| !self.world.can_use(**c)) {
            anyhow::bail!(
                "plugin {}: a {} plugin cannot ask for the {c:?} capability",
                self.name,
                self.world
            );
        }
        if let Some(c) = &self.contract {
            if crate::Contract::of(c).is_none() {
                anyhow::bail!(
                    "plugin {} was built for coffer:plugin@{c}; this server serves {}",
                    self.name,
                    crate::Contract::served()
                );
            }
        }
        Ok(())
    }

    /// The operator's settings checked against the schema, with defaults
    /// filled in: what the plugin sees as `call-context.config`.
    pub fn resolve_config(
        &self,
        given: &BTreeMap<String, String>,
    ) -> anyhow::Result<Vec<(String, String)>> {
        if let Some(k) = given.keys().find(|k| !self.config.contains_key(*k)) {
            anyhow::bail!(
                "plugin {} has no setting {k:?} (it knows: {})",
                self.name,
                self.config.keys().cloned().collect::<Vec<_>>().join(", ")
            );
        }
        let mut out = Vec::new();
        for (k, field) in &self.config {
            let Some(v) = given.get(k).or(field.default.as_ref()) else {
                if field.required {
                    anyhow::bail!("plugin {}: setting {k:?} is required", self.name);
                }
                continue;
            };
            let ok = match field.kind {
                ConfigType::String => true,
                ConfigType::Integer => v.parse::<i64>().is_ok(),
                ConfigType::Boolean => matches!(v.as_str(), "true" | "false"),
                ConfigType::Url => v.starts_with("http://") || v.starts_with("https://"),
            };
            if !ok {
                anyhow::bail!(
                    "plugin {}: setting {k:?} = {v:?} is not a valid {:?}",
                    self.name,
                    field.kind
                );
            }
            out.push((k.clone(), v.clone()));
        }
        Ok(out)
    }
}

/// What the operator grants one plugin (in the server's config).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Capabilities granted; a capability the manifest does not ask for is
    /// not given even if listed here.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// `host` or `host:port` the plugin may reach over HTTP. Empty denies all.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The plugin's settings (checked against its config schema).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl Grants {
    /// Granted by the operator and asked for by the manifest.
    pub fn has(&self, m: &Manifest, c: Capability) -> bool {
        self.capabilities.contains(&c) && m.capabilities.contains(&c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GFS: &str = r#"
name = "gfs"
version = "1.0.0"
world = "retention"
[config.daily]
type = "integer"
default = "7"
[config.label]
required = true
"#;

    #[test]
    fn a_manifest_parses_and_its_config_is_checked_against_the_schema() {
        let m = Manifest::parse(GFS).unwrap();
        assert_eq!(m.world, World::Retention);
        let mut given = BTreeMap::new();
        assert!(m
            .resolve_config(&given)
            .unwrap_err()
            .to_string()
            .contains("\"label\" is required"));
        given.insert("label".into(), "x".into());
        assert_eq!(
            m.resolve_config(&given).unwrap(),
            vec![("daily".into(), "7".into()), ("label".into(), "x".into())]
        );
        given.insert("daily".into(), "seven".into());
        assert!(m.resolve_config(&given).is_err());
        given.insert("colour".into(), "red".into());
        assert!(m
            .resolve_config(&given)
            .unwrap_err()
            .to_string()
            .contains("no setting \"colour\""));
    }

    #[test]
    fn capabilities_outside_the_world_and_foreign_contracts_are_refused() {
        let bad = GFS.replace(
            "world = \"retention\"",
            "world = \"retention\"\ncapabilities = [\"http\"]",
        );
        assert!(Manifest::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("cannot ask for"));
        let old = GFS.replace(
            "world = \"retention\"",
            "world = \"retention\"\ncontract = \"1.0.0\"",
        );
        assert!(Manifest::parse(&old)
            .unwrap_err()
            .to_string()
            .contains("this server serves 0.1.0, 0.2.0, 0.3.0"));
        assert!(Manifest::parse(&GFS.replace("\"gfs\"", "\"GFS!\"")).is_err());
    }

    #[test]
    fn a_grant_needs_both_the_operator_and_the_manifest() {
        let m = Manifest::parse(
            "name = \"w\"\nversion = \"1\"\nworld = \"integration\"\ncapabilities = [\"kv\"]",
        )
        .unwrap();
        let g = Grants {
            capabilities: vec![Capability::Http, Capability::Kv],
            ..Grants::default()
        };
        assert!(g.has(&m, Capability::Kv));
        assert!(!g.has(&m, Capability::Http), "not asked for");
        assert!(!Grants::default().has(&m, Capability::Kv), "not granted");
    }
}
