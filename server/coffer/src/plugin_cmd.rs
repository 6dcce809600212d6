//! `coffer plugin test`: run a plugin on sample data, with the server's own
//! sandbox and limits, and no server.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Subcommand;
use coffer_plugin_host::bindings::types;
use coffer_plugin_host::{
    guard, report, CallInfo, Capability, Grants, Host, HostOptions, Inventory, Manifest, World,
};
use serde::Deserialize;

#[derive(Debug, clap::Args)]
pub struct PluginArgs {
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Run a plugin once on sample data (a JSON file) and print what it
    /// returns. Nothing is granted unless asked for with --grant.
    Test {
        /// The plugin component (built for wasm32-wasip2).
        wasm: PathBuf,
        /// Sample input: {"archive", "backups"} for retention, {"params",
        /// "inventory"} for a reporter, {"events"} for an integration;
        /// "org" and "now_ms" optional.
        #[arg(long)]
        input: PathBuf,
        /// The plugin's manifest (default: plugin.toml beside the wasm, else
        /// a minimal one for --world).
        #[arg(long)]
        manifest: Option<PathBuf>,
        /// The world, when there is no manifest (or to check it).
        #[arg(long)]
        world: Option<World>,
        /// A setting, KEY=VALUE (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE")]
        config: Vec<String>,
        /// Grant a capability: kv, http, inventory (repeatable).
        #[arg(long = "grant", value_name = "CAPABILITY")]
        grants: Vec<String>,
        /// Allow outbound HTTP to HOST[:PORT] (repeatable).
        #[arg(long = "allow-host")]
        allow_hosts: Vec<String>,
        /// For a reporter's table: json or csv.
        #[arg(long, default_value = "json")]
        format: String,
    },
}

/// The sample input file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Sample {
    org: Option<String>,
    now_ms: Option<u64>,
    archive: Option<types::Archive>,
    backups: Vec<types::BackupSummary>,
    params: Vec<(String, String)>,
    inventory: Inventory,
    events: Vec<types::Event>,
}

pub fn run(args: PluginArgs) -> anyhow::Result<()> {
    let PluginCommand::Test {
        wasm,
        input,
        manifest,
        world,
        config,
        grants,
        allow_hosts,
        format,
    } = args.command;
    let bytes = std::fs::read(&wasm).with_context(|| format!("read {}", wasm.display()))?;
    let manifest = load_manifest(&wasm, manifest.as_deref(), world)?;
    let sample: Sample = serde_json::from_slice(
        &std::fs::read(&input).with_context(|| format!("read {}", input.display()))?,
    )
    .with_context(|| format!("{} is not a valid sample for this command", input.display()))?;
    let mut settings = BTreeMap::new();
    for kv in &config {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--config {kv:?}: expected KEY=VALUE"))?;
        settings.insert(k.to_string(), v.to_string());
    }
    let capabilities = grants
        .iter()
        .map(|g| {
            serde_json::from_value::<Capability>(serde_json::Value::String(g.clone()))
                .map_err(|_| anyhow::anyhow!("--grant {g:?}: expected kv, http or inventory"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let grants = Grants {
        capabilities,
        allowed_hosts: allow_hosts,
        config: settings,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let host = Host::new(HostOptions {
            http: Some(Arc::new(crate::plugin_env::PluginHttp::new()?)),
            ..HostOptions::default()
        })?;
        let started = std::time::Instant::now();
        let plugin = host.load(&bytes, manifest.clone(), grants)?;
        eprintln!(
            "loaded {} {} ({} plugin, coffer:plugin@{}) in {} ms",
            manifest.name,
            manifest.version,
            manifest.world,
            plugin.contract(),
            started.elapsed().as_millis()
        );
        let info = CallInfo {
            org: sample.org.clone().unwrap_or_else(|| "sample".into()),
            now_ms: sample
                .now_ms
                .unwrap_or_else(|| coffer_core::Clock::now(&coffer_core::SystemClock)),
        };
        let started = std::time::Instant::now();
        let took = || format!("{} µs", started.elapsed().as_micros());
        let fail = |e: coffer_plugin_host::CallError| {
            anyhow::anyhow!("{} ({}, after {})", e, e.code(), took())
        };
        match manifest.world {
            World::Retention => {
                let archive = sample.archive.clone().context(
                    "a retention sample needs \"archive\": {\"id\", \"device\", \"org\"}",
                )?;
                let plan = plugin
                    .plan(&info, &archive, &sample.backups)
                    .await
                    .map_err(fail)?;
                eprintln!("ok in {}", took());
                let g = guard::guard(plan, &sample.backups);
                println!("{}", serde_json::to_string_pretty(&g)?);
            }
            World::Reporter => {
                let r = plugin
                    .report(&info, &sample.params, Arc::new(sample.inventory))
                    .await
                    .map_err(fail)?;
                eprintln!("ok in {}", took());
                let (media, body) = report::render(&r, &format)?;
                eprintln!("media type: {media}");
                use std::io::Write;
                std::io::stdout().write_all(&body)?;
            }
            World::Integration => {
                plugin
                    .on_events(&info, &sample.events)
                    .await
                    .map_err(fail)?;
                eprintln!(
                    "ok in {}: {} events delivered to the plugin",
                    took(),
                    sample.events.len()
                );
            }
        }
        Ok(())
    })
}

fn load_manifest(
    wasm: &Path,
    path: Option<&Path>,
    world: Option<World>,
) -> anyhow::Result<Manifest> {
    let beside = wasm.with_file_name("plugin.toml");
    let path = path
        .map(Path::to_path_buf)
        .or(beside.exists().then_some(beside));
    let m = match path {
        Some(p) => Manifest::parse(
            &std::fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?,
        )
        .with_context(|| format!("manifest {}", p.display()))?,
        None => {
            let Some(world) = world else {
                bail!(
                    "no plugin.toml beside {}: pass --manifest or --world",
                    wasm.display()
                );
            };
            let name: String = wasm
                .file_stem()
                .map(|s| s.to_string_lossy().to_lowercase().replace('_', "-"))
                .unwrap_or_else(|| "plugin".into());
            let caps = [Capability::Kv, Capability::Http, Capability::Inventory]
                .into_iter()
                .filter(|c| world.can_use(*c))
                .map(|c| {
                    format!(
                        "{:?}",
                        serde_json::to_value(c).unwrap().as_str().unwrap_or("")
                    )
                })
                .collect::<Vec<_>>()
                .join(", ");
            Manifest::parse(&format!(
                "name = {name:?}\nversion = \"0.0.0\"\nworld = \"{world}\"\ncapabilities = [{caps}]\n"
            ))?
        }
    };
    if let Some(w) = world {
        if w != m.world {
            bail!(
                "the manifest says {} is a {} plugin, not {w}",
                m.name,
                m.world
            );
        }
    }
    Ok(m)
}
