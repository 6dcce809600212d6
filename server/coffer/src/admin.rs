//! `coffer admin …`: the admin API from the command line.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use coffer_http::client::{Client, ClientResponse, ClientTls};
use coffer_types::wire::{
    AddUser, CreateOrg, DeviceInfo, DeviceList, DeviceToken, EnrollDevice, OrgInfo, OrgList,
    PluginInfo, PluginList, RunReport, UserInfo, UserList,
};
use coffer_types::{Name, UnixMillis};
use serde::de::DeserializeOwned;

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// Server URL: https://HOST:PORT, or http://HOST:PORT for an h2c server.
    #[arg(
        long,
        env = "COFFER_SERVER",
        default_value = "https://127.0.0.1:8443",
        global = true
    )]
    server: String,
    /// File holding the admin token. Default: DATA_DIR/admin.token.
    #[arg(long, env = "COFFER_ADMIN_TOKEN_FILE", global = true)]
    token_file: Option<PathBuf>,
    /// PEM certificate to trust. Default: DATA_DIR/tls/cert.pem when it
    /// exists (the server's self-signed certificate), else the system roots.
    #[arg(long, env = "COFFER_CA_CERT", global = true)]
    ca_cert: Option<PathBuf>,
    /// Accept any server certificate (testing only).
    #[arg(long, global = true)]
    insecure: bool,
    /// The server's data directory, where the defaults above are looked up.
    #[arg(
        long,
        env = "COFFER_DATA_DIR",
        default_value = "coffer-data",
        global = true
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Users.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Devices and their archives.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// WebAssembly plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Reports made by reporter plugins.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Retention plans made by retention plugins.
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Every plugin with its calls, failures and state.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One plugin in detail.
    Status { name: String },
    /// Enable a plugin (and lift a suspension).
    Enable { name: String },
    /// Disable a plugin: it is not called until enabled again.
    Disable { name: String },
    /// Load the plugin's files again now (compile, check, smoke call, swap).
    Reload { name: String },
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Run a reporter plugin for an organization and print its report.
    Run {
        plugin: String,
        #[arg(long)]
        org: Name,
        /// A parameter for the report, KEY=VALUE (repeatable).
        #[arg(long = "param", value_name = "KEY=VALUE")]
        params: Vec<String>,
        #[arg(long, default_value = "csv")]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
enum RetentionCommand {
    /// Show which backups a retention plugin would expire (a dry run).
    Plan {
        #[arg(long)]
        archive: Name,
        /// The plugin (default: the enabled retention plugin serving the
        /// archive's organization).
        #[arg(long)]
        plugin: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum OrgCommand {
    /// Create an organization, optionally under a parent.
    Create {
        name: Name,
        #[arg(long)]
        parent: Option<Name>,
    },
    /// List organizations.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Add a user to an organization.
    Add {
        #[arg(long)]
        org: Name,
        name: Name,
    },
    /// List users.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceCommand {
    /// Enroll a device for a user: prints its id, archive id and token (the
    /// token is shown only once).
    Enroll {
        #[arg(long)]
        org: Name,
        #[arg(long)]
        user: Name,
        #[arg(long)]
        name: String,
        #[arg(long)]
        os: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List devices with bytes stored, blocks, last activity, last completed
    /// backup and percent complete.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device's token: the device can no longer reach its archive.
    Revoke {
        device: Name,
        #[arg(long)]
        json: bool,
    },
    /// Issue a new token for a device; the old one stops working.
    Rotate {
        device: Name,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: AdminArgs) -> anyhow::Result<()> {
    let token_file = args
        .token_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("admin.token"));
    let token = std::fs::read_to_string(&token_file).with_context(|| {
        format!(
            "read the admin token from {} (use --token-file)",
            token_file.display()
        )
    })?;
    let ca_cert = args.ca_cert.clone().or_else(|| {
        let p = args.data_dir.join("tls/cert.pem");
        p.exists().then_some(p)
    });
    let tls = ClientTls {
        ca_cert,
        insecure: args.insecure,
    };
    let client = Client::connect(&args.server, &tls)
        .await
        .with_context(|| format!("connect to {}", args.server))?
        .with_token(token.trim());

    match args.command {
        AdminCommand::Org {
            command: OrgCommand::Create { name, parent },
        } => {
            let o: OrgInfo = call(
                client
                    .post_json("/admin/v1/orgs", &CreateOrg { name, parent })
                    .await?,
            )?;
            println!("created org {}", o.name);
        }
        AdminCommand::Org {
            command: OrgCommand::List { json },
        } => {
            let l: OrgList = call(client.get("/admin/v1/orgs").await?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&l)?);
            } else {
                table(
                    &["ORG", "PARENT", "CREATED"],
                    l.orgs.iter().map(|o| {
                        vec![
                            o.name.to_string(),
                            o.parent.as_ref().map_or("-".into(), |p| p.to_string()),
                            time(Some(o.created_at)),
                        ]
                    }),
                );
            }
        }
        AdminCommand::User {
            command: UserCommand::Add { org, name },
        } => {
            let u: UserInfo = call(
                client
                    .post_json("/admin/v1/users", &AddUser { org, name })
                    .await?,
            )?;
            println!("added user {} to org {}", u.name, u.org);
        }
        AdminCommand::User {
            command: UserCommand::List { json },
        } => {
            let l: UserList = call(client.get("/admin/v1/users").await?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&l)?);
            } else {
                table(
                    &["ORG", "USER", "CREATED"],
                    l.users.iter().map(|u| {
                        vec![
                            u.org.to_string(),
                            u.name.to_string(),
                            time(Some(u.created_at)),
                        ]
                    }),
                );
            }
        }
        AdminCommand::Device {
            command:
                DeviceCommand::Enroll {
                    org,
                    user,
                    name,
                    os,
                    json,
                },
        } => {
            let t: DeviceToken = call(
                client
                    .post_json(
                        "/admin/v1/devices",
                        &EnrollDevice {
                            org,
                            user,
                            name,
                            os,
                        },
                    )
                    .await?,
            )?;
            print_token(&t, json)?;
        }
        AdminCommand::Device {
            command: DeviceCommand::List { json },
        } => {
            let l: DeviceList = call(client.get("/admin/v1/devices").await?)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&l)?);
            } else {
                device_table(&l.devices);
            }
        }
        AdminCommand::Device {
            command: DeviceCommand::Revoke { device, json },
        } => {
            let d: DeviceInfo = call(
                client
                    .post_json(
                        &format!("/admin/v1/devices/{device}/revoke"),
                        &serde_json::json!({}),
                    )
                    .await?,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else {
                println!(
                    "revoked the token of device {}; its archive {} is kept",
                    d.device, d.archive
                );
            }
        }
        AdminCommand::Device {
            command: DeviceCommand::Rotate { device, json },
        } => {
            let t: DeviceToken = call(
                client
                    .post_json(
                        &format!("/admin/v1/devices/{device}/rotate"),
                        &serde_json::json!({}),
                    )
                    .await?,
            )?;
            print_token(&t, json)?;
        }
        AdminCommand::Plugin { command } => plugin_command(&client, command).await?,
        AdminCommand::Report {
            command:
                ReportCommand::Run {
                    plugin,
                    org,
                    params,
                    format,
                },
        } => {
            let params = params
                .iter()
                .map(|p| {
                    p.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("--param {p:?}: expected KEY=VALUE"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let r = client
                .post_json(
                    &format!("/admin/v1/plugins/{plugin}/report"),
                    &RunReport {
                        org,
                        params,
                        format,
                    },
                )
                .await?;
            if r.error().is_some() || !r.is_success() {
                call::<serde_json::Value>(r)?;
            } else {
                use std::io::Write;
                std::io::stdout().write_all(&r.body)?;
            }
        }
        AdminCommand::Retention {
            command:
                RetentionCommand::Plan {
                    archive,
                    plugin,
                    json,
                },
        } => {
            let q = plugin.map(|p| format!("?plugin={p}")).unwrap_or_default();
            let v: serde_json::Value = call(
                client
                    .get(&format!("/admin/v1/archives/{archive}/retention-plan{q}"))
                    .await?,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                println!(
                    "retention plan for archive {} by plugin {} (dry run; nothing is expired): {} of {} backups",
                    v["archive"].as_str().unwrap_or(""),
                    v["plugin"].as_str().unwrap_or(""),
                    v["expire"].as_array().map_or(0, Vec::len),
                    v["backups"]
                );
                for e in v["expire"].as_array().into_iter().flatten() {
                    println!(
                        "EXPIRE {}  {}",
                        e["backup"].as_str().unwrap_or(""),
                        e["reason"].as_str().unwrap_or("")
                    );
                }
                for k in v["kept_by_host"].as_array().into_iter().flatten() {
                    println!(
                        "KEEP   {}  {} (the plugin proposed it)",
                        k["backup"].as_str().unwrap_or(""),
                        k["reason"].as_str().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok(())
}

async fn plugin_command(client: &Client, command: PluginCommand) -> anyhow::Result<()> {
    let (path, name) = match &command {
        PluginCommand::List { json } => {
            let l: PluginList = call(client.get("/admin/v1/plugins").await?)?;
            if *json {
                println!("{}", serde_json::to_string_pretty(&l)?);
            } else {
                table(
                    &[
                        "PLUGIN", "VERSION", "WORLD", "STATE", "ORGS", "CALLS", "FAILED", "P50",
                        "P99", "DROPPED",
                    ],
                    l.plugins.iter().map(|p| {
                        let us = |v: Option<u64>| v.map_or("-".into(), |u| format!("{u} µs"));
                        vec![
                            p.name.clone(),
                            p.version.clone(),
                            p.world.clone(),
                            plugin_state(p),
                            if p.orgs.is_empty() {
                                "(none)".into()
                            } else {
                                p.orgs.join(",")
                            },
                            p.calls.to_string(),
                            p.failures.to_string(),
                            us(p.p50_us),
                            us(p.p99_us),
                            p.events_dropped.to_string(),
                        ]
                    }),
                );
            }
            return Ok(());
        }
        PluginCommand::Status { name } => {
            let l: PluginList = call(client.get("/admin/v1/plugins").await?)?;
            let p = l
                .plugins
                .into_iter()
                .find(|p| &p.name == name)
                .with_context(|| format!("no plugin named {name:?}"))?;
            println!("{}", serde_json::to_string_pretty(&p)?);
            return Ok(());
        }
        PluginCommand::Enable { name } => ("enable", name),
        PluginCommand::Disable { name } => ("disable", name),
        PluginCommand::Reload { name } => ("reload", name),
    };
    let p: PluginInfo = call(
        client
            .post_json(
                &format!("/admin/v1/plugins/{name}/{path}"),
                &serde_json::json!({}),
            )
            .await?,
    )?;
    println!(
        "plugin {} {} ({}): {}",
        p.name,
        p.version,
        p.world,
        plugin_state(&p)
    );
    Ok(())
}

fn plugin_state(p: &PluginInfo) -> String {
    match (&p.load_error, p.suspended_for_secs, p.enabled) {
        (Some(_), _, _) if p.version.is_empty() => "not loaded".into(),
        (_, Some(s), _) => format!("suspended {s} s"),
        (_, None, false) => "disabled".into(),
        (Some(_), None, true) => "enabled (newer files refused)".into(),
        (None, None, true) => "enabled".into(),
    }
}

/// The body of a successful answer, or the server's error as an error.
fn call<T: DeserializeOwned>(r: ClientResponse) -> anyhow::Result<T> {
    if let Some(e) = r.error() {
        bail!(
            "the server answered {} {}: {}",
            r.status,
            e.error.code,
            e.error.message
        );
    }
    if !r.is_success() {
        bail!(
            "the server answered {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
    }
    r.json().context("read the server's answer")
}

fn print_token(t: &DeviceToken, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(t)?);
    } else {
        println!(
            "device:  {}\narchive: {}\ntoken:   {}",
            t.device, t.archive, t.token
        );
        eprintln!("(the token is shown only once: give it to the device's agent now)");
    }
    Ok(())
}

fn time(t: Option<UnixMillis>) -> String {
    match t {
        Some(ms) => humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        None => "never".into(),
    }
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn device_table(devices: &[DeviceInfo]) {
    table(
        &[
            "DEVICE",
            "NAME",
            "ORG",
            "USER",
            "ARCHIVE",
            "STORED",
            "BLOCKS",
            "BACKUPS",
            "LAST ACTIVITY",
            "LAST COMPLETED",
            "COMPLETE",
            "STATE",
        ],
        devices.iter().map(|d| {
            vec![
                d.device.to_string(),
                d.name.clone(),
                d.org.to_string(),
                d.user.to_string(),
                d.archive.to_string(),
                bytes(d.bytes_stored),
                d.block_count.to_string(),
                d.backup_count.to_string(),
                time(d.last_activity),
                time(d.last_completed),
                d.percent_complete
                    .map_or("-".into(), |p| format!("{p:.1}%")),
                if d.revoked {
                    "revoked".into()
                } else {
                    "active".into()
                },
            ]
        }),
    );
}

fn table(head: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let rows: Vec<Vec<String>> = rows.collect();
    let mut widths: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let s: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", s.join("  ").trim_end());
    };
    line(head.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r);
    }
}
