//! `coffer admin scrub`: the check of every stored block against its id.

use clap::Subcommand;
use coffer_client::Client;
use coffer_types::wire::ScrubStatus;

use super::output::{bytes, print_json, table, time};

#[derive(Debug, Subcommand)]
pub(crate) enum ScrubCommand {
    /// Start a pass now (after the running one, if one is running).
    Run {
        #[arg(long)]
        json: bool,
    },
    /// Progress, the last pass, and every damaged block by archive.
    Status {
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn run(client: &Client, cmd: ScrubCommand) -> anyhow::Result<()> {
    match cmd {
        ScrubCommand::Run { json } => {
            let s = client.scrub_run().await?;
            if json {
                return print_json(&s);
            }
            println!("scrub pass requested");
            show(&s);
        }
        ScrubCommand::Status { json } => {
            let s = client.scrub_status().await?;
            if json {
                return print_json(&s);
            }
            show(&s);
        }
    }
    Ok(())
}

fn show(s: &ScrubStatus) {
    println!(
        "{} at {}/s, every {}; this pass: {} blocks, {} (started {})",
        if s.running { "running" } else { "idle" },
        bytes(s.bytes_per_sec),
        coffer_core::duration::format(std::time::Duration::from_secs(s.interval_secs)),
        s.checked_blocks,
        bytes(s.checked_bytes),
        time(s.started_at),
    );
    println!(
        "last complete pass: {} ({} damaged found)",
        time(s.last_finished),
        s.last_found
    );
    if s.archives.is_empty() {
        println!("no damaged blocks");
        return;
    }
    table(
        &["ARCHIVE", "DAMAGE", "BLOCK"],
        s.archives.iter().flat_map(|a| {
            let corrupt = a
                .corrupt
                .iter()
                .map(move |id| vec![a.archive.to_string(), "corrupt".into(), id.to_string()]);
            let missing = a
                .missing
                .iter()
                .map(move |id| vec![a.archive.to_string(), "missing".into(), id.to_string()]);
            corrupt.chain(missing)
        }),
    );
}
