//! The server's configuration: the TOML file, environment overrides, checks.
//!
//! Precedence, lowest first: built-in defaults, the config file, environment
//! variables `COFFER__SECTION__KEY=value` (e.g. `COFFER__STORAGE__S3__BUCKET`,
//! `COFFER__HTTP__LISTEN`), then command-line flags. Unknown keys — in the
//! file or the environment — are errors that name the key.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use coffer_core::Limits;
use coffer_http::{HttpConfig, TlsConfig};
use coffer_storage::StorageConfig;
use serde::{Deserialize, Serialize};

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where metadata, disk blocks, the TLS certificate and the admin token
    /// live. Default `./coffer-data`.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub tls: TlsConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub plugins: PluginsConfig,
    #[serde(default)]
    pub workers: WorkersConfig,
    #[serde(default)]
    pub scrub: ScrubConfig,
    #[serde(default)]
    pub meta: MetaConfig,
    #[serde(default)]
    pub mail: MailConfig,
    #[serde(default)]
    pub alerts: AlertsConfig,
    #[serde(default)]
    pub legal_hold: LegalHoldConfig,
    #[serde(default)]
    pub gc: GcConfig,
}

/// `[legal_hold]`: how releases work.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LegalHoldConfig {
    /// Legal-hold admins a release needs: 1, or 2 for the two-person rule
    /// (the release waits for a second admin). Default 1.
    pub release_approvals: u8,
    /// How long data a released hold alone protected is kept after the
    /// release (a duration: `"7d"`, `"12h"`, `"90s"`; `"0s"` for none).
    /// Default `"7d"`.
    pub release_quarantine: String,
}

impl Default for LegalHoldConfig {
    fn default() -> Self {
        Self {
            release_approvals: 1,
            release_quarantine: "7d".into(),
        }
    }
}

impl LegalHoldConfig {
    pub fn settings(&self) -> Result<coffer_core::HoldSettings, String> {
        if !(1..=2).contains(&self.release_approvals) {
            return Err(format!(
                "legal_hold.release_approvals is {}; it is 1, or 2 for the two-person rule",
                self.release_approvals
            ));
        }
        Ok(coffer_core::HoldSettings {
            release_approvals: self.release_approvals,
            release_quarantine: coffer_core::duration::parse(&self.release_quarantine)
                .map_err(|e| format!("legal_hold.release_quarantine: {e}"))?,
        })
    }
}

/// `[gc]`: garbage collection of blocks no backup references, and the
/// retention and cold-storage passes that make them so.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// Blocks stored, or pinned by a session active, more recently than
    /// this are never collected (a duration). Default `"24h"`.
    pub grace: String,
    /// Packs (small blocks on disk) whose live share of bytes falls below
    /// this are rewritten. Default 0.5.
    pub repack_below: f64,
    /// While uploads run, a collection rests this many times as long as
    /// each batch of its work took (0 to 100; 0: it never rests). Default
    /// 6: it works a seventh of the time.
    pub rest_factor: u32,
    /// Time between collections (a duration). Default `"6h"`.
    pub interval: String,
    /// Time between retention passes over every archive. Default `"1h"`.
    pub retention_interval: String,
    /// Time between cold-storage passes (held archives are tried again at
    /// each). Default `"24h"`.
    pub cold_storage_interval: String,
}

impl Default for GcConfig {
    fn default() -> Self {
        Self {
            grace: "24h".into(),
            repack_below: 0.5,
            rest_factor: coffer_core::GC_REST_FACTOR,
            interval: "6h".into(),
            retention_interval: "1h".into(),
            cold_storage_interval: "24h".into(),
        }
    }
}

impl GcConfig {
    fn duration(&self, key: &str, v: &str) -> Result<std::time::Duration, String> {
        let d = coffer_core::duration::parse(v).map_err(|e| format!("gc.{key}: {e}"))?;
        if key != "grace" && d.is_zero() {
            return Err(format!("gc.{key} must be longer than zero"));
        }
        Ok(d)
    }

    pub fn settings(&self) -> Result<coffer_core::GcSettings, String> {
        if !(0.0..=1.0).contains(&self.repack_below) {
            return Err(format!(
                "gc.repack_below is {}; it is a share between 0 and 1",
                self.repack_below
            ));
        }
        if self.rest_factor > 100 {
            return Err(format!(
                "gc.rest_factor is {}; it is a whole number from 0 to 100",
                self.rest_factor
            ));
        }
        Ok(coffer_core::GcSettings {
            grace: self.duration("grace", &self.grace)?,
            repack_below: self.repack_below,
            rest_factor: self.rest_factor,
        })
    }

    /// The collection, retention and cold-storage intervals.
    pub fn intervals(&self) -> Result<[std::time::Duration; 3], String> {
        Ok([
            self.duration("interval", &self.interval)?,
            self.duration("retention_interval", &self.retention_interval)?,
            self.duration("cold_storage_interval", &self.cold_storage_interval)?,
        ])
    }
}

/// `[mail]`: the SMTP server alert mails go through. Mail is on when
/// `host` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    pub host: Option<String>,
    /// Default: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub port: Option<u16>,
    /// `starttls` (default), `tls` (TLS from the first byte) or `none`
    /// (plain text: only to a relay on the same machine or network).
    pub tls: MailTls,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A file holding the password (its first line), instead of
    /// `password`.
    pub password_file: Option<PathBuf>,
    /// The sender, `coffer@example.com` or `Coffer <coffer@example.com>`.
    pub from: Option<String>,
    /// PEM certificates to trust besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
    /// Seconds one SMTP exchange may take. Default 30.
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailTls {
    #[default]
    Starttls,
    Tls,
    None,
}

/// `[alerts]`: how alert deliveries are made and retried.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Milliseconds between delivery steps. Default 1000.
    pub tick_ms: u64,
    /// The first retry of a failed delivery waits this long (ms), each
    /// next one twice as long, up to `retry_max_ms`. Default 10 000.
    pub retry_min_ms: u64,
    /// Default 3 600 000 (an hour).
    pub retry_max_ms: u64,
    /// Hosts (`host` or `host:port`) webhooks may be posted to. Org
    /// administrators set the URLs, so the operator says where they may
    /// point; empty (the default) allows none.
    pub webhook_allowed_hosts: Vec<String>,
    /// Seconds one webhook post may take. Default 10.
    pub webhook_timeout_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            tick_ms: 1000,
            retry_min_ms: 10_000,
            retry_max_ms: 3_600_000,
            webhook_allowed_hosts: Vec::new(),
            webhook_timeout_secs: 10,
        }
    }
}

impl MailConfig {
    fn validate(&self) -> Result<(), String> {
        if self.host.is_none() {
            return Ok(());
        }
        match &self.from {
            None => return Err("mail.from is required when mail.host is set (the sender of alert mails, such as \"Coffer <coffer@example.com>\")".into()),
            Some(f) if f.parse::<lettre::message::Mailbox>().is_err() => {
                return Err(format!("mail.from {f:?} is not a mail address (write it as coffer@example.com or \"Coffer <coffer@example.com>\")"))
            }
            Some(_) => {}
        }
        if self.password.is_some() && self.password_file.is_some() {
            return Err("mail.password and mail.password_file are both set; keep one".into());
        }
        if (self.password.is_some() || self.password_file.is_some()) && self.username.is_none() {
            return Err("mail.username is required with a password".into());
        }
        if self.timeout_secs == Some(0) {
            return Err("mail.timeout_secs must be at least 1".into());
        }
        Ok(())
    }
}

impl AlertsConfig {
    fn validate(&self) -> Result<(), String> {
        if self.tick_ms == 0 || self.retry_min_ms == 0 || self.webhook_timeout_secs == 0 {
            return Err("alerts.tick_ms, alerts.retry_min_ms and alerts.webhook_timeout_secs must be above 0".into());
        }
        if self.retry_max_ms < self.retry_min_ms {
            return Err("alerts.retry_max_ms must be at least alerts.retry_min_ms".into());
        }
        Ok(())
    }
}

/// `[meta]`: the metadata database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaConfig {
    /// The most memory sled's page cache takes, in bytes; it grows with the
    /// metadata up to this. Default 1073741824 (1 GiB, sled's own default).
    pub cache_bytes: u64,
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            cache_bytes: coffer_meta::DEFAULT_CACHE_BYTES,
        }
    }
}

impl MetaConfig {
    fn validate(&self) -> Result<(), String> {
        if self.cache_bytes < 1 << 20 {
            return Err("meta.cache_bytes must be at least 1048576 (1 MiB)".into());
        }
        Ok(())
    }
}

/// `[scrub]`: the background check of every stored block against its id
/// (`coffer admin scrub status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrubConfig {
    /// Whether the scrub runs at all. Default true.
    pub enabled: bool,
    /// Bytes read per second, at most. Default 52428800 (50 MiB/s).
    pub bytes_per_sec: u64,
    /// From the end of one pass to the start of the next, a duration
    /// (`"30d"`, `"12h"`, `"90s"`). Default `"30d"`; after a restart the next pass
    /// starts one interval after the last complete one (at once when none
    /// finished yet).
    pub interval: String,
}

impl Default for ScrubConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bytes_per_sec: 50 << 20,
            interval: "30d".into(),
        }
    }
}

impl ScrubConfig {
    pub fn interval(&self) -> Result<std::time::Duration, String> {
        coffer_core::duration::parse(&self.interval).map_err(|e| format!("scrub.interval: {e}"))
    }

    fn validate(&self) -> Result<(), String> {
        if self.bytes_per_sec == 0 {
            return Err("scrub.bytes_per_sec must be at least 1".into());
        }
        if self.interval()?.is_zero() {
            return Err("scrub.interval must be longer than zero".into());
        }
        Ok(())
    }
}

/// `[workers]`: how often the background workers run (`coffer admin
/// workers` shows them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// Seconds between sweeps of upload spool files no upload will finish
    /// (left by a crash, or abandoned for an hour). Default 21600 (6 h);
    /// the first sweep runs at start.
    pub spool_sweep_secs: u64,
    /// Milliseconds between ticks of the health evaluator (it looks only at
    /// the devices that are due, or received data). Default 1000.
    pub health_tick_ms: u64,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        Self {
            spool_sweep_secs: 6 * 3600,
            health_tick_ms: 1000,
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("coffer-data")
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            http: HttpConfig::default(),
            tls: TlsConfig::default(),
            storage: StorageConfig::default(),
            limits: Limits::default(),
            log: LogConfig::default(),
            plugins: PluginsConfig::default(),
            workers: WorkersConfig::default(),
            scrub: ScrubConfig::default(),
            meta: MetaConfig::default(),
            mail: MailConfig::default(),
            alerts: AlertsConfig::default(),
            legal_hold: LegalHoldConfig::default(),
            gc: GcConfig::default(),
        }
    }
}

/// The `[log]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `human` (default) or `json` (one object per line, for log shippers).
    #[serde(default)]
    pub format: LogFormat,
    /// A tracing filter: `info` (default), `debug`, or per module such as
    /// `info,coffer_http=debug`. `RUST_LOG` overrides it.
    #[serde(default = "default_level")]
    pub level: String,
}

fn default_level() -> String {
    "info".into()
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::default(),
            level: default_level(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Human,
    Json,
}

impl Config {
    /// Read `path` (or start from defaults), then apply environment overrides.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Self> {
        let mut value = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("read config file {}", p.display()))?;
                text.parse::<toml::Table>()
                    .with_context(|| format!("config file {} is not valid TOML", p.display()))?
            }
            None => toml::Table::new(),
        };
        apply_env(&mut value, std::env::vars())?;
        let what = path.map_or_else(
            || "the configuration".to_string(),
            |p| format!("config file {}", p.display()),
        );
        Config::deserialize(toml::Value::Table(value))
            .map_err(|e| anyhow::anyhow!("{what}: {}", e.to_string().trim()))
    }

    /// Check every section; the error names the key at fault.
    pub fn validate(&self) -> anyhow::Result<()> {
        let checks = [
            self.http.validate(),
            self.tls.validate(),
            self.storage.validate(),
            self.limits.validate(),
            self.plugins.validate(),
            self.workers.validate(),
            self.scrub.validate(),
            self.meta.validate(),
            self.mail.validate(),
            self.alerts.validate(),
            self.legal_hold.settings().map(|_| ()),
            self.gc.settings().map(|_| ()),
            self.gc.intervals().map(|_| ()),
        ];
        for c in checks {
            if let Err(msg) = c {
                bail!("{msg}");
            }
        }
        if self
            .log
            .level
            .parse::<tracing_subscriber::EnvFilter>()
            .is_err()
        {
            bail!(
                "log.level {:?} is not a valid filter (try \"info\" or \"info,coffer_http=debug\")",
                self.log.level
            );
        }
        Ok(())
    }
}

/// Apply `COFFER__A__B=v` variables onto the TOML tree as `a.b = v`. Values
/// are read as TOML (numbers, booleans, quoted strings) and otherwise taken
/// as plain strings.
fn apply_env(
    table: &mut toml::Table,
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<()> {
    for (k, v) in vars {
        let Some(path) = k.strip_prefix("COFFER__") else {
            continue;
        };
        let keys: Vec<String> = path.split("__").map(str::to_ascii_lowercase).collect();
        if keys.iter().any(String::is_empty) {
            bail!("environment variable {k}: empty key segment");
        }
        let value = format!("v = {v}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or(toml::Value::String(v.clone()));
        let mut t = &mut *table;
        for key in &keys[..keys.len() - 1] {
            let entry = t
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            t = entry
                .as_table_mut()
                .with_context(|| format!("environment variable {k}: {key} is not a table"))?;
        }
        t.insert(keys[keys.len() - 1].clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        let t: toml::Table = text.parse()?;
        Ok(Config::deserialize(toml::Value::Table(t))?)
    }

    #[test]
    fn the_example_config_parses_and_validates() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/coffer.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let cfg = parse(&text).unwrap();
        cfg.validate().unwrap();
        // The example documents the defaults: it must not drift from them.
        let mut defaults = Config::default();
        defaults.storage.reserve_bytes = cfg.storage.reserve_bytes;
        assert_eq!(cfg.http, defaults.http);
        assert_eq!(cfg.limits, defaults.limits);
        assert_eq!(cfg.workers, defaults.workers);
        assert_eq!(cfg.scrub, defaults.scrub);
        assert_eq!(cfg.alerts, defaults.alerts);
        assert_eq!(cfg.mail, defaults.mail);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse("[http]\nlisten = \"127.0.0.1:1\"\nlistne = 3\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listne"), "{err}");
    }

    #[test]
    fn bad_values_say_why() {
        let cfg = parse("[http]\nmax_frame_size = 10\n").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("http.max_frame_size"), "{err}");
        let cfg = parse("[storage]\nbackend = \"s3\"\n").unwrap();
        assert!(cfg
            .validate()
            .unwrap_err()
            .to_string()
            .contains("storage.s3"));
        let err = parse("[storage]\nbackend = \"tape\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tape"), "{err}");
        let cfg = parse("[gc]\nrest_factor = 101\n").unwrap();
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("gc.rest_factor"), "{err}");
        let cfg = parse("[gc]\nrest_factor = 0\n").unwrap();
        assert_eq!(cfg.gc.settings().unwrap().rest_factor, 0);
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut t: toml::Table = "[http]\nlisten = \"127.0.0.1:1\"\n".parse().unwrap();
        let vars = vec![
            (
                "COFFER__HTTP__LISTEN".to_string(),
                "127.0.0.1:2".to_string(),
            ),
            ("COFFER__STORAGE__BACKEND".to_string(), "memory".to_string()),
            (
                "COFFER__LIMITS__MAX_BLOCK_BYTES".to_string(),
                "1024".to_string(),
            ),
            ("UNRELATED".to_string(), "x".to_string()),
        ];
        apply_env(&mut t, vars.into_iter()).unwrap();
        let cfg = Config::deserialize(toml::Value::Table(t)).unwrap();
        assert_eq!(cfg.http.listen.port(), 2);
        assert_eq!(cfg.storage.backend, coffer_storage::Backend::Memory);
        assert_eq!(cfg.limits.max_block_bytes, 1024);
    }
}

/// `[plugins]`: the WebAssembly plugins. Each plugin is a directory
/// `<dir>/<name>/` holding `plugin.toml` and `plugin.wasm`; it runs only for
/// the organizations its `[plugins.grants.<name>]` lists, with only the
/// capabilities granted there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    pub enabled: bool,
    /// Default `<data_dir>/plugins`.
    pub dir: Option<PathBuf>,
    /// Guest execution time per call.
    pub cpu_ms: u64,
    /// Wall-clock time per call, host calls included.
    pub call_timeout_ms: u64,
    /// Each linear memory of a plugin instance.
    pub memory_mib: u64,
    /// Events waiting per integration plugin; beyond, events are dropped
    /// and counted (ingest never waits for a plugin).
    pub queue_capacity: usize,
    /// Events per call to an integration plugin.
    pub batch_max: usize,
    /// How long a batch waits to fill.
    pub batch_wait_ms: u64,
    /// How often the plugins directory is checked for changed files (0: only
    /// on `coffer admin plugin reload`).
    pub reload_poll_ms: u64,
    /// Failures in a row that suspend a plugin (doubling backoff from 30 s).
    pub suspend_after: u32,
    /// The most of one core an integration plugin may use over time: after
    /// each call its worker rests in proportion. Integrations also run at
    /// the lowest CPU priority (SCHED_IDLE).
    pub event_cpu_share: f64,
    pub grants: std::collections::BTreeMap<String, PluginGrant>,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: None,
            cpu_ms: 500,
            call_timeout_ms: 5000,
            memory_mib: 64,
            queue_capacity: 1024,
            batch_max: 100,
            batch_wait_ms: 200,
            reload_poll_ms: 2000,
            suspend_after: 5,
            event_cpu_share: 0.25,
            grants: Default::default(),
        }
    }
}

/// What the operator grants one plugin.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PluginGrant {
    /// Organizations served, with their sub-organizations; "*" for all.
    pub orgs: Vec<String>,
    /// kv, http, inventory.
    pub capabilities: Vec<String>,
    /// host or host:port for outbound HTTP; empty denies all.
    pub allowed_hosts: Vec<String>,
    /// The plugin's settings (checked against its manifest's schema).
    pub config: std::collections::BTreeMap<String, String>,
}

/// What `coffer config show` prints in place of a secret.
pub const REDACTED: &str = "<redacted>";

/// Whether a plugin setting's name says it holds a secret.
fn secret_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["secret", "password", "token", "key", "credential"]
        .iter()
        .any(|w| k.contains(w))
}

impl Config {
    /// This configuration with its secrets replaced by [`REDACTED`]: the S3
    /// secret key, and plugin settings whose names say secret, password,
    /// token, key or credential.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        if let Some(s3) = c.storage.s3.as_mut() {
            if s3.secret_access_key.is_some() {
                s3.secret_access_key = Some(REDACTED.into());
            }
        }
        if c.mail.password.is_some() {
            c.mail.password = Some(REDACTED.into());
        }
        for grant in c.plugins.grants.values_mut() {
            for (k, v) in grant.config.iter_mut() {
                if secret_name(k) {
                    *v = REDACTED.into();
                }
            }
        }
        c
    }
}

impl WorkersConfig {
    fn validate(&self) -> Result<(), String> {
        if self.spool_sweep_secs == 0 {
            return Err("workers.spool_sweep_secs must be at least 1".into());
        }
        if self.health_tick_ms == 0 {
            return Err("workers.health_tick_ms must be at least 1".into());
        }
        Ok(())
    }
}

impl PluginsConfig {
    fn validate(&self) -> Result<(), String> {
        if self.cpu_ms == 0 || self.call_timeout_ms == 0 {
            return Err("plugins.cpu_ms and plugins.call_timeout_ms must be above 0".into());
        }
        if !(1..=4096).contains(&self.memory_mib) {
            return Err("plugins.memory_mib must be between 1 and 4096".into());
        }
        if !(self.event_cpu_share > 0.0 && self.event_cpu_share <= 1.0) {
            return Err("plugins.event_cpu_share must be above 0 and at most 1".into());
        }
        if self.queue_capacity == 0 || self.batch_max == 0 {
            return Err("plugins.queue_capacity and plugins.batch_max must be above 0".into());
        }
        for (name, g) in &self.grants {
            for c in &g.capabilities {
                if !matches!(c.as_str(), "kv" | "http" | "inventory") {
                    return Err(format!(
                        "plugins.grants.{name}.capabilities: {c:?} is not kv, http or inventory"
                    ));
                }
            }
        }
        Ok(())
    }
}
