//! `coffer admin plugin|report|retention …`.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use coffer_client::Client;
use coffer_types::wire::{PluginInfo, RunReport};
use coffer_types::Name;

use super::output::{print_json, table};

#[derive(Debug, Subcommand)]
pub(crate) enum PluginCommand {
    /// Every plugin with its calls, failures and state.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One plugin in detail.
    Status { name: String },
    /// Enable a plugin (and lift a suspension); kept across restarts.
    Enable { name: String },
    /// Disable a plugin: it is not called until enabled again; kept across
    /// restarts.
    Disable { name: String },
    /// Load the plugin's files again now (compile, check, smoke call, swap).
    Reload { name: String },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ReportCommand {
    /// Each device: state, reason, percent complete, last activity, last
    /// completed backup, last connection, agent, OS, bytes, backups.
    DeviceStatus(super::health::ReportArgs),
    /// Each org: parent, devices per state, users, bytes stored.
    Orgs(super::health::ReportArgs),
    /// Each user: org, devices, worst state, bytes stored.
    Users(super::health::ReportArgs),
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

fn plugin_state(p: &PluginInfo) -> String {
    match (&p.load_error, p.suspended_for_secs, p.enabled) {
        (Some(_), _, _) if p.version.is_empty() => "not loaded".into(),
        (_, Some(s), _) => format!("suspended {s} s"),
        (_, None, false) => "disabled".into(),
        (Some(_), None, true) => "enabled (newer files refused)".into(),
        (None, None, true) => "enabled".into(),
    }
}

pub(crate) async fn plugin(client: &Client, command: PluginCommand) -> anyhow::Result<()> {
    let p = match command {
        PluginCommand::List { json } => {
            let l = client.list_plugins().await?;
            if json {
                return print_json(&l);
            }
            table(
                &[
                    "PLUGIN", "VERSION", "WORLD", "CONTRACT", "STATE", "ORGS", "CALLS", "FAILED",
                    "P50", "P99", "DROPPED",
                ],
                l.plugins.iter().map(|p| {
                    let us = |v: Option<u64>| v.map_or("-".into(), |u| format!("{u} µs"));
                    vec![
                        p.name.clone(),
                        p.version.clone(),
                        p.world.clone(),
                        p.contract.clone(),
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
            return Ok(());
        }
        PluginCommand::Status { name } => {
            let p = client
                .list_plugins()
                .await?
                .plugins
                .into_iter()
                .find(|p| p.name == name)
                .with_context(|| format!("no plugin named {name:?}"))?;
            return print_json(&p);
        }
        PluginCommand::Enable { name } => client.enable_plugin(&name).await?,
        PluginCommand::Disable { name } => client.disable_plugin(&name).await?,
        PluginCommand::Reload { name } => client.reload_plugin(&name).await?,
    };
    println!(
        "plugin {} {} ({}): {}",
        p.name,
        p.version,
        p.world,
        plugin_state(&p)
    );
    Ok(())
}

pub(crate) async fn report(client: &Client, command: ReportCommand) -> anyhow::Result<()> {
    let (plugin, org, params, format) = match command {
        ReportCommand::DeviceStatus(a) => {
            return super::health::report(client, "device-status", a).await
        }
        ReportCommand::Orgs(a) => return super::health::report(client, "orgs", a).await,
        ReportCommand::Users(a) => return super::health::report(client, "users", a).await,
        ReportCommand::Run {
            plugin,
            org,
            params,
            format,
        } => (plugin, org, params, format),
    };
    let params = params
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--param {p:?}: expected KEY=VALUE"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (_, body) = client
        .run_report(
            &plugin,
            &RunReport {
                org,
                params,
                format,
            },
        )
        .await?;
    std::io::stdout().write_all(&body)?;
    Ok(())
}

/// A retention plugin's proposal for an archive (a dry run).
pub(crate) async fn plugin_plan(
    client: &Client,
    archive: Name,
    plugin: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let v = client
        .retention_plan(archive.as_str(), plugin.as_deref())
        .await?;
    if json {
        return print_json(&v);
    }
    println!(
        "retention proposal for archive {} by plugin {} (a dry run; the gate drops what is protected): {} of {} backups",
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
    Ok(())
}
