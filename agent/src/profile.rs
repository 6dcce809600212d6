//! Settings: flags, then environment (`COFFER_SERVER`, `COFFER_TOKEN`,
//! `COFFER_PASSPHRASE`, `COFFER_PASSPHRASE_FILE`, `COFFER_CA_CERT`), then the
//! profile file that `coffer-agent init` writes (mode 0600).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub server: Option<String>,
    pub token: Option<String>,
    pub passphrase: Option<String>,
    pub passphrase_file: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
    #[serde(default)]
    pub insecure: bool,
    /// Where the file cache lives (default: next to the profile).
    pub cache_dir: Option<PathBuf>,
    /// This device's own choices of the device defaults, and the pushes
    /// from the server it applied (see `crate::settings`).
    #[serde(default, skip_serializing_if = "crate::settings::Local::is_empty")]
    pub settings: crate::settings::Local,
}

impl Profile {
    /// The default profile path: `$XDG_CONFIG_HOME/coffer/agent.toml` or
    /// `~/.config/coffer/agent.toml`.
    pub fn default_path() -> PathBuf {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from("."));
        base.join("coffer/agent.toml")
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(t) => toml::from_str(&t).with_context(|| format!("read profile {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(e).with_context(|| format!("read profile {}", path.display())),
        }
    }

    /// Write the profile readable by its owner only.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("write profile {}", path.display()))?;
        f.write_all(toml::to_string_pretty(self)?.as_bytes())?;
        Ok(())
    }

    /// Lay `other` (flags and environment) over this profile.
    pub fn overlay(mut self, other: Profile) -> Self {
        self.server = other.server.or(self.server);
        self.token = other.token.or(self.token);
        if other.passphrase.is_some() || other.passphrase_file.is_some() {
            self.passphrase = other.passphrase;
            self.passphrase_file = other.passphrase_file;
        }
        self.ca_cert = other.ca_cert.or(self.ca_cert);
        self.insecure |= other.insecure;
        self.cache_dir = other.cache_dir.or(self.cache_dir);
        self
    }

    pub fn server(&self) -> anyhow::Result<&str> {
        self.server
            .as_deref()
            .context("no server: pass --server, set COFFER_SERVER, or run `coffer-agent init`")
    }

    pub fn token(&self) -> anyhow::Result<&str> {
        self.token
            .as_deref()
            .context("no device token: pass --token, set COFFER_TOKEN, or run `coffer-agent init`")
    }

    pub fn passphrase(&self) -> anyhow::Result<String> {
        if let Some(p) = &self.passphrase {
            return Ok(p.clone());
        }
        if let Some(f) = &self.passphrase_file {
            let p = std::fs::read_to_string(f)
                .with_context(|| format!("read passphrase file {}", f.display()))?;
            return Ok(p.trim_end_matches(['\n', '\r']).to_owned());
        }
        bail!("no passphrase: set COFFER_PASSPHRASE or COFFER_PASSPHRASE_FILE, or run `coffer-agent init`")
    }
}
