//! The command line of `coffer-agent`: flags, environment and profile in,
//! the commands of [`crate::commands`] out.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::commands::{self, Agent};
use crate::restore::RestoreOptions;

use coffer_types::wire::DeviceSecurity;

use crate::api::Api;
use crate::escrow;
use crate::profile::Profile;
use crate::progress::Progress;
use crate::settings;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "coffer-agent",
    version,
    about = "Back up to a Coffer server: encrypted on this device, deduplicated, resumable"
)]
struct Cli {
    /// Profile file written by `init` (default ~/.config/coffer/agent.toml).
    #[arg(long, env = "COFFER_PROFILE", global = true)]
    profile: Option<PathBuf>,
    /// Server URL: https://HOST:PORT, or http://HOST:PORT for an h2c server.
    #[arg(long, env = "COFFER_SERVER", global = true)]
    server: Option<String>,
    /// Device token from `coffer admin device enroll`.
    #[arg(long, env = "COFFER_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// Passphrase that protects the archive key.
    #[arg(long, env = "COFFER_PASSPHRASE", global = true, hide_env_values = true)]
    passphrase: Option<String>,
    /// File holding the passphrase.
    #[arg(long, env = "COFFER_PASSPHRASE_FILE", global = true)]
    passphrase_file: Option<PathBuf>,
    /// PEM certificate to trust (e.g. the server's self-signed one).
    #[arg(long, env = "COFFER_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    #[arg(long, global = true)]
    insecure: bool,
    /// Directory of the local file cache (default ~/.cache/coffer).
    #[arg(long, env = "COFFER_CACHE_DIR", global = true)]
    cache_dir: Option<PathBuf>,
    /// Machine-readable output: JSON lines of progress, then a JSON summary.
    #[arg(long, global = true)]
    json: bool,
    /// Open the archive with this escrow private key instead of the
    /// passphrase (administrator restore: with a restore token as the
    /// token; for backups, restore and verify).
    #[arg(long, env = "COFFER_ESCROW_KEY", global = true)]
    escrow_key: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

/// What to back up and how: `backup` and `run`.
#[derive(Debug, Clone, clap::Args)]
struct BackupArgs {
    /// Files and directories to back up
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Skip paths matching this glob (full path or file name); repeatable.
    #[arg(long)]
    exclude: Vec<String>,
    /// Do not descend into other filesystems.
    #[arg(long)]
    one_file_system: bool,
    /// Uploads in flight on the one HTTP/2 connection (default 16, or the
    /// org's device_defaults.streams).
    #[arg(long)]
    streams: Option<usize>,
    /// Send at most this many bytes per second ("5MiB"; 0 = no limit;
    /// default: the org's device_defaults.bandwidth_limit).
    #[arg(long, value_parser = parse_rate)]
    bandwidth_limit: Option<u64>,
    /// Keep files gone from the selection in the following backups, as
    /// deleted files: "forever", a duration ("90d"), or 0 (default: the
    /// org's device_defaults.keep_deleted; a legal hold may lock it).
    #[arg(long, value_parser = parse_keep_deleted)]
    keep_deleted: Option<String>,
}

fn parse_keep_deleted(s: &str) -> Result<String, String> {
    match settings::keep_deleted_value(&serde_json::Value::from(s)) {
        serde_json::Value::Number(_) => Ok(s.trim().to_string()),
        serde_json::Value::String(t) if t == "forever" => Ok(t),
        _ => Err(format!("{s:?} is not forever, 0, or a duration like 90d")),
    }
}

#[derive(Debug, Clone, Subcommand)]
enum Command {
    /// Store the settings in the profile (mode 0600) and create the archive
    /// key (or check the passphrase against an existing one).
    Init,
    /// Back up files and directories.
    Backup {
        #[command(flatten)]
        what: BackupArgs,
    },
    /// Back up PATHS again and again, every device_defaults.backup_interval
    /// (or --every), until stopped (SIGINT, SIGTERM) or --count backups are
    /// done. A failed round (the server unreachable, say) is tried again
    /// after a backoff that doubles from 5 s up to the interval.
    Run {
        #[command(flatten)]
        what: BackupArgs,
        /// Time between backups ("15m", "1h"); default: the org's
        /// device_defaults.backup_interval.
        #[arg(long, value_parser = humantime::parse_duration)]
        every: Option<std::time::Duration>,
        /// Stop after this many backups.
        #[arg(long)]
        count: Option<u64>,
    },
    /// The device defaults in effect for this device: each value and where
    /// it comes from (the server's org settings, a push, a lock, the
    /// profile).
    Settings,
    /// List the archive's backups.
    Backups,
    /// Restore a backup (default: the latest) into a directory.
    Restore {
        /// Backup id, as `backups` lists it (default: the latest)
        backup: Option<String>,
        /// Directory to restore into; paths keep their absolute form below it
        #[arg(long)]
        target: PathBuf,
        /// Restore only paths matching this glob (relative, as listed); repeatable.
        #[arg(long)]
        include: Vec<String>,
        /// Downloads in flight on the one HTTP/2 connection
        #[arg(long, default_value_t = 16)]
        streams: usize,
        /// Keep files' setuid and setgid bits (by default they are removed:
        /// a restore must not plant privileged programs)
        #[arg(long)]
        keep_setuid: bool,
        /// Restore the files the backup keeps as deleted too (gone from the
        /// disk before it ran; see --keep-deleted)
        #[arg(long)]
        include_deleted: bool,
    },
    /// Download and check every block of a backup (default: the latest).
    Verify {
        /// Backup id, as `backups` lists it (default: the latest)
        backup: Option<String>,
        /// Downloads in flight on the one HTTP/2 connection
        #[arg(long, default_value_t = 16)]
        streams: usize,
    },
    /// Key escrow: the operator's escrow key pair.
    Escrow {
        #[command(subcommand)]
        command: EscrowCommand,
    },
}

#[derive(Debug, Clone, Subcommand)]
enum EscrowCommand {
    /// Make an escrow key pair, offline: DIR/escrow.key (mode 0600, the
    /// private half; keep it away from the server) and DIR/escrow.pub (one
    /// line: set it with `coffer admin org settings set ORG
    /// security.escrow_public_key=LINE`).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
}

/// A secret on the command line is visible to every user of the machine
/// (`ps`, `/proc/PID/cmdline`) and lands in shell history: say so, and
/// name the safer forms.
fn warn_secret_flags(args: &[std::ffi::OsString]) {
    for a in args.iter().skip(1).filter_map(|a| a.to_str()) {
        if a == "--" {
            break;
        }
        let flag = a.split('=').next().unwrap_or(a);
        let better = match flag {
            "--token" => "COFFER_TOKEN or the profile (`coffer-agent init` saves it, mode 0600)",
            "--passphrase" => "--passphrase-file FILE or COFFER_PASSPHRASE",
            _ => continue,
        };
        eprintln!(
            "warning: {flag} on the command line is visible to other users (ps) and kept in \
             shell history; use {better}"
        );
    }
}

/// Run the command line `args` (the first is the program name).
pub fn main_with(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args: Vec<std::ffi::OsString> = args.into_iter().collect();
    warn_secret_flags(&args);
    let cli = match Cli::try_parse_from(args) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A rate as people write it: "5MiB", "500KiB", a byte count.
fn parse_rate(t: &str) -> Result<u64, String> {
    t.parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|_| {
            format!("{t:?} is not a size per second; write it like \"5MiB\" or a byte count")
        })
}

/// `coffer-agent run`: a backup round, again and again.
async fn scheduled(cli: Cli) -> anyhow::Result<ExitCode> {
    let Command::Run { what, every, count } = cli.command.clone() else {
        unreachable!("called for run only")
    };
    let round = Cli {
        command: Command::Backup { what },
        ..cli.clone()
    };
    let mut done = 0u64;
    let mut backoff = Duration::from_secs(5);
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        let started = tokio::time::Instant::now();
        let outcome = match interval(&cli, every).await {
            Ok(i) => Box::pin(run(round.clone())).await.map(|code| (i, code)),
            Err(e) => Err(e),
        };
        let wait = match outcome {
            Ok((i, code)) => {
                done += 1;
                backoff = Duration::from_secs(5);
                eprintln!(
                    "run: backup {done} {}; the next in {}",
                    if code == ExitCode::SUCCESS {
                        "done"
                    } else {
                        "done with files skipped"
                    },
                    humantime::format_duration(i)
                );
                if count.is_some_and(|c| done >= c) {
                    return Ok(ExitCode::SUCCESS);
                }
                i.saturating_sub(started.elapsed())
            }
            Err(e) if !transient(&e) => return Err(e),
            Err(e) => {
                let cap = every.unwrap_or(Duration::from_secs(3600));
                let w = backoff.min(cap);
                eprintln!(
                    "run: this round failed: {e:#}; trying again in {}",
                    humantime::format_duration(w)
                );
                backoff = (backoff * 2).min(cap);
                w
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut stop => {
                eprintln!("run: stopped after {done} backups");
                return Ok(ExitCode::SUCCESS);
            }
        }
    }
}

/// Whether a failed round can succeed later: the server could not be
/// reached, or answered that it cannot serve now. Anything else (a lock
/// refused, a wrong passphrase, a quota) stops `run`.
fn transient(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<reqwest::Error>().is_some()
            || c.downcast_ref::<crate::api::ServerError>()
                .is_some_and(|s| {
                    (s.status == 429 || s.status >= 500)
                        && s.body.as_ref().is_none_or(|b| b.error.retryable)
                })
    })
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The profile and a connection to the server, flags over the profile.
async fn connect(cli: &Cli) -> anyhow::Result<(Profile, Api)> {
    let profile_path = cli.profile.clone().unwrap_or_else(Profile::default_path);
    let profile = Profile::load(&profile_path)?;
    let api = Api::connect(
        cli.server.as_deref().map_or_else(|| profile.server(), Ok)?,
        cli.token.as_deref().map_or_else(|| profile.token(), Ok)?,
        cli.ca_cert.as_deref().or(profile.ca_cert.as_deref()),
        cli.insecure || profile.insecure,
    )
    .await?;
    Ok((profile, api))
}

/// The time between two backups of `run`: `--every`, else the device's
/// `backup_interval` from the server (refusing `--every` against a lock).
async fn interval(cli: &Cli, every: Option<Duration>) -> anyhow::Result<Duration> {
    let (_, api) = connect(cli).await?;
    let server = api.settings().await?;
    let s = server
        .as_ref()
        .and_then(|s| s.values.get("backup_interval"));
    match (s, every) {
        (Some(s), Some(e)) if s.locked && s.value.as_u64() != Some(e.as_secs()) => {
            anyhow::bail!(
                "device_defaults.backup_interval is locked at {} by org {}: --every {} is \
                 refused; drop it",
                s.text,
                s.locked_by.as_deref().unwrap_or(&s.from),
                humantime::format_duration(e)
            )
        }
        (_, Some(e)) => Ok(e),
        (Some(s), None) => Ok(Duration::from_secs(s.value.as_u64().unwrap_or(3600).max(1))),
        (None, None) => Ok(Duration::from_secs(3600)),
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    if matches!(cli.command, Command::Run { .. }) {
        return Box::pin(scheduled(cli)).await;
    }
    if let Command::Escrow {
        command: EscrowCommand::Keygen { out },
    } = &cli.command
    {
        let (key, public, line) = escrow::keygen(out)?;
        if cli.json {
            println!(
                "{}",
                serde_json::json!({"private_key_file": key, "public_key_file": public, "public_key": line})
            );
        } else {
            println!("{line}");
            eprintln!(
                "wrote {} (mode 0600: keep it offline, never on the server) and {}; set the \
                 public key with\n  coffer admin org settings set ORG \
                 security.escrow_public_key={line}",
                key.display(),
                public.display()
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(key) = cli.escrow_key.clone() {
        if !matches!(
            cli.command,
            Command::Backups | Command::Restore { .. } | Command::Verify { .. }
        ) {
            anyhow::bail!(
                "--escrow-key opens an archive for backups, restore and verify only; this \
                 command needs the device's own token and passphrase"
            );
        }
        return escrowed(cli, &key).await;
    }
    let profile_path = cli.profile.clone().unwrap_or_else(Profile::default_path);
    let flags = Profile {
        server: cli.server.clone(),
        token: cli.token.clone(),
        passphrase: cli.passphrase.clone(),
        passphrase_file: cli.passphrase_file.clone(),
        ca_cert: cli.ca_cert.clone(),
        insecure: cli.insecure,
        cache_dir: cli.cache_dir.clone(),
        settings: Default::default(),
    };
    let profile = Profile::load(&profile_path)?.overlay(flags);
    let api = Api::connect(
        profile.server()?,
        profile.token()?,
        profile.ca_cert.as_deref(),
        profile.insecure,
    )
    .await?;
    // The device defaults, at the start of every command but init (which
    // has no profile yet): pushes are applied to the profile once, a lock
    // refuses what contradicts it.
    let mut security = None;
    let (resolved, mut api) = if matches!(cli.command, Command::Init) {
        (None, api)
    } else {
        let given = match &cli.command {
            Command::Backup { what: w } => settings::Local {
                excludes: (!w.exclude.is_empty()).then(|| w.exclude.clone()),
                one_file_system: w.one_file_system.then_some(true),
                streams: w.streams,
                bandwidth_limit: w.bandwidth_limit,
                keep_deleted: w.keep_deleted.clone(),
                ..settings::Local::default()
            },
            _ => settings::Local::default(),
        };
        let server = api.settings().await?;
        security = server.as_ref().and_then(|s| s.security.clone());
        let mut own = profile.settings.clone();
        let (r, changed) = settings::resolve(server.as_ref(), &mut own, &given)?;
        if changed {
            // Only the settings change in the file: flags stay out of it.
            let mut stored = Profile::load(&profile_path)?;
            stored.settings = own;
            stored.save(&profile_path)?;
        }
        (Some(r), api)
    };
    if let (Command::Settings, Some(r)) = (&cli.command, &resolved) {
        if cli.json {
            let v: serde_json::Map<String, serde_json::Value> = r
                .origin
                .iter()
                .map(|(k, (v, from))| (k.clone(), serde_json::json!({"value": v, "from": from})))
                .collect();
            println!("{}", serde_json::to_string_pretty(&v)?);
        } else {
            for (k, (v, from)) in &r.origin {
                println!("{k:<16} {v:<24} {from}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(r) = &resolved {
        api.set_bandwidth_limit(r.bandwidth_limit);
    }
    let passphrase = profile.passphrase()?;

    if let Command::Init = cli.command {
        let created = commands::init(&api, &passphrase).await?;
        // Escrow at once where the org asks it (the key was just made).
        if let Some(s) = api.settings().await?.and_then(|s| s.security) {
            if s.escrow_public_key.is_some() {
                let cache_dir = profile.cache_dir.clone().unwrap_or_else(default_cache_dir);
                escrow_now(
                    &Agent::open(api.clone(), &passphrase, &cache_dir).await?,
                    &s,
                )
                .await;
            }
        }
        // Later commands run from anywhere: keep absolute paths.
        let mut profile = profile;
        for p in [&mut profile.ca_cert, &mut profile.passphrase_file]
            .into_iter()
            .flatten()
        {
            *p = std::path::absolute(&*p).with_context(|| format!("resolve {}", p.display()))?;
        }
        profile.save(&profile_path)?;
        println!(
            "{} archive {}; settings saved to {} (mode 0600)",
            if created {
                "created the key of"
            } else {
                "passphrase checked against the key of"
            },
            api.archive,
            profile_path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let cache_dir = profile.cache_dir.clone().unwrap_or_else(default_cache_dir);
    let compress = resolved.as_ref().is_none_or(|r| r.compression);
    let keep_deleted = resolved
        .as_ref()
        .map(|r| r.keep_deleted)
        .unwrap_or_default();
    let agent = Agent::open(api, &passphrase, &cache_dir)
        .await?
        .with_compression(compress)
        .with_keep_deleted(keep_deleted);
    if let Some(s) = &security {
        escrow_now(&agent, s).await;
    }
    command(cli, agent, resolved).await
}

/// Escrow the archive key if the settings ask it (a failure is reported,
/// and the command goes on: a backup matters more than its escrow).
async fn escrow_now(agent: &Agent, security: &DeviceSecurity) {
    match agent.escrow(security).await {
        Ok(Some(key)) => eprintln!("escrowed the archive key to {key}"),
        Ok(None) => {}
        Err(e) => eprintln!("warning: could not escrow the archive key: {e:#}"),
    }
}

/// A command run with the escrow private key and a restore token: no
/// passphrase, no device settings (the token is not the device).
async fn escrowed(cli: Cli, key: &std::path::Path) -> anyhow::Result<ExitCode> {
    let secret = escrow::load_secret(key)?;
    let (profile, api) = connect(&cli).await?;
    let cache_dir = cli
        .cache_dir
        .clone()
        .or(profile.cache_dir.clone())
        .unwrap_or_else(default_cache_dir);
    let agent = Agent::open_escrowed(api, &secret, &cache_dir).await?;
    command(cli, agent, None).await
}

/// Run the command of `cli` on an opened archive.
async fn command(
    cli: Cli,
    agent: Agent,
    resolved: Option<settings::Resolved>,
) -> anyhow::Result<ExitCode> {
    let progress = Progress::new(cli.json);
    match cli.command {
        Command::Init => unreachable!("handled above"),
        Command::Settings | Command::Run { .. } | Command::Escrow { .. } => {
            unreachable!("handled above")
        }
        Command::Backup { what } => {
            let r = resolved.expect("resolved for every command but init");
            let s = agent
                .backup(
                    what.paths,
                    r.excludes,
                    r.one_file_system,
                    r.streams,
                    progress,
                )
                .await?;
            if cli.json {
                print_summary(None, &s);
            } else {
                println!(
                    "backup {}: {} files, {} dirs, {} MiB; read {} files ({} unchanged), uploaded {} blocks ({} MiB) in {:.1} s",
                    s.backup, s.files, s.dirs, s.bytes >> 20, s.files_read, s.files_from_cache, s.blocks_uploaded, s.bytes_uploaded >> 20, s.seconds
                );
                if s.deleted_kept > 0 {
                    println!("kept {} deleted file(s) (keep_deleted)", s.deleted_kept);
                }
                if s.skipped > 0 {
                    println!(
                        "skipped {} unreadable path(s): {}",
                        s.skipped,
                        s.skipped_paths.join(", ")
                    );
                }
            }
            // Like restic: 3 means "done, but some files could not be read".
            Ok(if s.skipped > 0 {
                ExitCode::from(3)
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Backups => {
            let list = agent.backups().await?;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!(
                    "{:<36}  {:<20}  {:>8}  {:>10}  {:>7}  STATE",
                    "BACKUP", "COMMITTED", "FILES", "MIB", "BLOCKS"
                );
                for b in &list {
                    let t =
                        std::time::UNIX_EPOCH + std::time::Duration::from_millis(b.committed_at);
                    // Damaged: the server found some of its blocks corrupt or
                    // gone; the next backup uploads them again.
                    let state = match b.damaged_blocks {
                        0 => "ok".to_string(),
                        n => format!("damaged ({n} blocks; the next backup heals it)"),
                    };
                    println!(
                        "{:<36}  {:<20}  {:>8}  {:>10}  {:>7}  {state}",
                        b.backup,
                        humantime::format_rfc3339_seconds(t),
                        b.stats.files,
                        b.stats.bytes >> 20,
                        b.block_count
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore {
            backup,
            target,
            include,
            streams,
            keep_setuid,
            include_deleted,
        } => {
            let include = if include.is_empty() {
                None
            } else {
                let mut g = globset::GlobSetBuilder::new();
                for i in &include {
                    g.add(globset::Glob::new(i).with_context(|| format!("include pattern {i:?}"))?);
                }
                Some(g.build()?)
            };
            let (b, s) = agent
                .restore(
                    backup.as_deref(),
                    &RestoreOptions {
                        target,
                        include,
                        streams,
                        keep_setuid,
                        include_deleted,
                    },
                    &progress,
                )
                .await?;
            if cli.json {
                print_summary(Some(&b), &s);
            } else {
                println!(
                    "restored backup {b}: {} files ({} MiB), {} dirs, {} symlinks",
                    s.files,
                    s.bytes >> 20,
                    s.dirs,
                    s.symlinks
                );
                for (f, why) in &s.failed {
                    println!("FAILED {f}: {why}");
                }
                for f in &s.refused {
                    println!("REFUSED unsafe path {f:?}");
                }
            }
            Ok(if s.failed.is_empty() && s.refused.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Verify { backup, streams } => {
            let (b, s) = agent.verify(backup.as_deref(), streams).await?;
            if cli.json {
                print_summary(Some(&b), &s);
            } else {
                println!(
                    "backup {b}: checked {} blocks ({} MiB), {} bad",
                    s.blocks,
                    s.bytes >> 20,
                    s.bad.len()
                );
                for bad in &s.bad {
                    println!(
                        "BAD {}: {} (files: {})",
                        bad.block,
                        bad.error,
                        bad.files.join(", ")
                    );
                }
            }
            Ok(if s.bad.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

fn default_cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("."))
        .join("coffer")
}

/// The closing JSON line of `--json` output.
fn print_summary(backup: Option<&str>, summary: &impl serde::Serialize) {
    println!(
        "{}",
        serde_json::json!({"event": "summary", "backup": backup, "summary": summary})
    );
}
