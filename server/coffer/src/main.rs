//! `coffer`: the destination server (`coffer serve`), its config checker
//! (`coffer config check`) and the admin CLI (`coffer admin …`).

mod admin;
mod channels;
mod config;
mod plugin_cmd;
mod plugin_env;
mod plugins;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's malloc: sled copies a metadata leaf node on
/// every write, and under glibc a million-block collection spent a third of
/// its time searching fragmented free lists (bench/README.md, GC).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "coffer",
    version,
    about = "Coffer: a storage destination server for encrypted backups"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server. With no flags: data in ./coffer-data, TLS with a
    /// self-signed certificate, listening on 127.0.0.1:8443.
    Serve(serve::ServeArgs),
    /// Work with configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Administer a running server through its admin API.
    Admin(admin::AdminArgs),
    /// Work with plugins without a server (e.g. `coffer plugin test`).
    Plugin(plugin_cmd::PluginArgs),
    /// Replace the admin token of a stopped server (when admin.token is lost).
    ResetAdminToken {
        /// The server's data directory.
        #[arg(long, default_value = "coffer-data", env = "COFFER_DATA_DIR")]
        data_dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a config file (and environment overrides) without starting.
    Check { file: PathBuf },
    /// Print the effective configuration, defaults filled in, as TOML
    /// (secrets shown as `<redacted>`).
    Show { file: Option<PathBuf> },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Config {
            command: ConfigCommand::Check { file },
        } => config::Config::load(Some(&file))
            .and_then(|c| c.validate().map(|_| c))
            .map(|_| println!("{}: ok", file.display())),
        Command::Config {
            command: ConfigCommand::Show { file },
        } => config::Config::load(file.as_deref()).and_then(|c| {
            c.validate()?;
            print!("{}", toml::to_string_pretty(&c.redacted())?);
            Ok(())
        }),
        Command::Admin(args) => admin::run(args),
        Command::Plugin(args) => plugin_cmd::run(args),
        Command::ResetAdminToken { data_dir } => serve::reset_admin_token(&data_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
