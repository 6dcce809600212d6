//! `coffer admin …`: the admin API from the command line, through the typed
//! client (`coffer-client`). One module per area; `output` prints tables,
//! times and sizes.

mod accounts;
mod audit;
mod health;
mod holds;
mod inventory;
mod output;
mod plugins;
mod scrub;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use coffer_client::{Client, ClientTls};

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
    /// File holding the admin token. Default: $COFFER_ADMIN_TOKEN if set,
    /// else DATA_DIR/admin.token.
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
        command: inventory::OrgCommand,
    },
    /// Users.
    User {
        #[command(subcommand)]
        command: inventory::UserCommand,
    },
    /// Devices and their archives.
    Device {
        #[command(subcommand)]
        command: inventory::DeviceCommand,
    },
    /// Health alerts: each device's change of alert level (warning,
    /// critical, recovery), recorded once, oldest first.
    Alerts {
        /// Only alerts after this sequence number.
        #[arg(long)]
        after: Option<u64>,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Alert mail.
    Mail {
        #[command(subcommand)]
        command: health::MailCommand,
    },
    /// Admin accounts and their roles.
    Account {
        #[command(subcommand)]
        command: accounts::AccountCommand,
    },
    /// Admin API tokens.
    Token {
        #[command(subcommand)]
        command: accounts::TokenCommand,
    },
    /// Who the token in use belongs to: account, role, scope.
    Whoami {
        #[arg(long)]
        json: bool,
    },
    /// The audit log of admin changes and refusals.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// The background workers: state, last and next run, last error.
    Workers {
        #[arg(long)]
        json: bool,
    },
    /// The scrub: every stored block checked against its id.
    Scrub {
        #[command(subcommand)]
        command: scrub::ScrubCommand,
    },
    /// WebAssembly plugins.
    Plugin {
        #[command(subcommand)]
        command: plugins::PluginCommand,
    },
    /// Reports: device status, orgs and users (health), and reporter
    /// plugins' reports.
    Report {
        #[command(subcommand)]
        command: plugins::ReportCommand,
    },
    /// Version retention: plans (dry runs) and runs, per archive.
    Retention {
        #[command(subcommand)]
        command: holds::RetentionCommand,
    },
    /// Legal hold: preservation policies, matters, custodians.
    Hold {
        #[command(subcommand)]
        command: holds::HoldCommand,
    },
    /// Garbage collection of blocks no backup references.
    Gc {
        #[command(subcommand)]
        command: holds::GcCommand,
    },
    /// The compliance clock retention and holds are decided on.
    Clock {
        #[command(subcommand)]
        command: holds::ClockCommand,
    },
}

pub fn run(args: AdminArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

/// The admin token: `--token-file`, `$COFFER_ADMIN_TOKEN`, or the data
/// directory's `admin.token`.
fn token(args: &AdminArgs) -> anyhow::Result<String> {
    if args.token_file.is_none() {
        if let Ok(t) = std::env::var("COFFER_ADMIN_TOKEN") {
            return Ok(t.trim().to_string());
        }
    }
    let file = args
        .token_file
        .clone()
        .unwrap_or_else(|| args.data_dir.join("admin.token"));
    let t = std::fs::read_to_string(&file).with_context(|| {
        format!(
            "read the admin token from {} (use --token-file or COFFER_ADMIN_TOKEN)",
            file.display()
        )
    })?;
    Ok(t.trim().to_string())
}

async fn run_async(args: AdminArgs) -> anyhow::Result<()> {
    let token = token(&args)?;
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
        .with_token(&token);
    match args.command {
        AdminCommand::Org { command } => inventory::org(&client, command).await,
        AdminCommand::User { command } => inventory::user(&client, command).await,
        AdminCommand::Device { command } => inventory::device(&client, command).await,
        AdminCommand::Alerts { after, limit, json } => {
            inventory::alerts(&client, after, limit, json).await
        }
        AdminCommand::Mail { command } => health::mail(&client, command).await,
        AdminCommand::Account { command } => accounts::account(&client, command).await,
        AdminCommand::Token { command } => accounts::token(&client, command).await,
        AdminCommand::Whoami { json } => accounts::whoami(&client, json).await,
        AdminCommand::Audit { command } => audit::audit(&client, command).await,
        AdminCommand::Workers { json } => audit::workers(&client, json).await,
        AdminCommand::Scrub { command } => scrub::run(&client, command).await,
        AdminCommand::Plugin { command } => plugins::plugin(&client, command).await,
        AdminCommand::Report { command } => plugins::report(&client, command).await,
        AdminCommand::Retention { command } => holds::retention(&client, command).await,
        AdminCommand::Hold { command } => holds::hold(&client, command).await,
        AdminCommand::Gc { command } => holds::gc(&client, command).await,
        AdminCommand::Clock { command } => holds::clock(&client, command).await,
    }
}
