//! `coffer admin audit …` and `coffer admin workers`.

use std::io::Write;

use anyhow::bail;
use clap::{Subcommand, ValueEnum};
use coffer_client::{AuditQuery, Client};
use coffer_core::Clock;

use super::output::{or_dash, print_json, table, time};

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Entries, oldest first.
    List {
        /// Entries since a time: a duration back from now (24h, 7d) or an
        /// RFC 3339 time (2026-12-01T09:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Entries by this account (or `system`).
        #[arg(long)]
        actor: Option<String>,
        /// Entries on this target (device:dv_…); ending in ":", every
        /// target of that kind (device:).
        #[arg(long)]
        target: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// The whole log, to standard output.
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
    },
    /// Recompute the hash chain from the first entry; name the first entry
    /// that does not match (and exit 1).
    Verify {
        #[arg(long)]
        json: bool,
    },
}

/// `--since`: a duration back from now, or an RFC 3339 time.
fn since(s: &str) -> anyhow::Result<u64> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64));
    }
    match coffer_core::duration::parse(s) {
        Ok(d) => Ok(coffer_core::SystemClock
            .now()
            .saturating_sub(d.as_millis() as u64)),
        Err(_) => bail!("--since {s:?}: give a duration back from now (24h, 7d) or a time (2026-12-01T09:00:00Z)"),
    }
}

pub(crate) async fn audit(client: &Client, command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::List {
            since: s,
            actor,
            target,
            limit,
            json,
        } => {
            let l = client
                .audit(&AuditQuery {
                    since: s.as_deref().map(since).transpose()?,
                    actor,
                    target,
                    after: None,
                    limit: Some(limit),
                })
                .await?;
            if json {
                return print_json(&l);
            }
            table(
                &[
                    "SEQ", "TIME", "ACTOR", "ROLE", "ACTION", "TARGET", "OUTCOME", "DETAILS",
                ],
                l.entries.iter().map(|e| {
                    vec![
                        e.seq.to_string(),
                        time(Some(e.at)),
                        e.actor.clone(),
                        or_dash(e.role.as_ref()),
                        e.action.clone(),
                        e.target.clone(),
                        e.outcome.clone(),
                        e.details
                            .iter()
                            .map(|(k, v)| format!("{k}={v}"))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ]
                }),
            );
        }
        AuditCommand::Export {
            format: ExportFormat::Jsonl,
        } => {
            let body = client.audit_export().await?;
            std::io::stdout().write_all(&body)?;
        }
        AuditCommand::Verify { json } => {
            let v = client.audit_verify().await?;
            if json {
                print_json(&v)?;
            } else if v.ok {
                println!("audit log: {} entries, the hash chain holds", v.entries);
            } else {
                println!(
                    "audit log: the hash chain breaks at entry {}: {}",
                    or_dash(v.first_bad_seq),
                    v.problem.as_deref().unwrap_or("")
                );
            }
            if !v.ok {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

pub(crate) async fn workers(client: &Client, json: bool) -> anyhow::Result<()> {
    let l = client.workers().await?;
    if json {
        return print_json(&l);
    }
    table(
        &[
            "WORKER",
            "STATE",
            "EVERY",
            "RUNS",
            "FAILURES",
            "LAST RUN",
            "NEXT RUN",
            "LAST ERROR",
        ],
        l.workers.iter().map(|w| {
            vec![
                w.name.clone(),
                w.state.clone(),
                coffer_core::duration::format(std::time::Duration::from_secs(w.interval_secs)),
                w.runs.to_string(),
                w.failures.to_string(),
                time(w.last_run),
                w.next_run.map_or("-".into(), |t| time(Some(t))),
                or_dash(w.last_error.as_ref()),
            ]
        }),
    );
    Ok(())
}
