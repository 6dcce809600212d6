//! `coffer admin hold …`, `retention …`, `gc …`, `clock …`: legal hold,
//! version retention, garbage collection and the compliance clock.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::Subcommand;
use coffer_client::Client;
use coffer_types::wire::{
    CreateHoldPolicy, CreateMatter, CustodianInfo, CustodianRequest, GcReport, RetentionReport,
};
use coffer_types::Name;

use super::output::{bytes, or_dash, print_json, table, time};

#[derive(Debug, Subcommand)]
pub(crate) enum HoldCommand {
    /// Preservation policies: what a matter keeps.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Matters: the legal cases holds belong to.
    Matter {
        #[command(subcommand)]
        command: MatterCommand,
    },
    /// Custodians: users on hold under a matter.
    Custodian {
        #[command(subcommand)]
        command: CustodianCommand,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Create a policy: keep every backup (--keep all, the default), or
    /// tiers (--keep tiers --retention daily=180d …), each applied as the
    /// stricter of it and the org's.
    Create {
        name: String,
        #[arg(long, default_value = "all", value_parser = ["all", "tiers"])]
        keep: String,
        /// A tier: keep_all=D, daily=D, weekly=D, monthly=D|forever.
        #[arg(long = "retention", value_name = "TIER=DURATION")]
        retention: Vec<String>,
        /// How long the custodians' agents keep files gone from their
        /// backup selection: forever (the default) or a duration; pushed
        /// to their devices as device_defaults.keep_deleted, locked.
        #[arg(long, value_name = "forever|DURATION")]
        keep_deleted: Option<String>,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum MatterCommand {
    /// Create a matter under a preservation policy.
    Create {
        name: String,
        #[arg(long)]
        policy: String,
        #[arg(long, default_value = "")]
        description: String,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        json: bool,
    },
    /// One matter and its custodians.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Close a matter: every custodian is released (their quarantine
    /// begins).
    Close {
        name: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum CustodianCommand {
    /// Place a user on hold under a matter: every device and archive of the
    /// user, now and later, is preserved.
    Add {
        #[arg(long)]
        matter: String,
        #[arg(long)]
        user: String,
        /// The user's org, when the name exists in several.
        #[arg(long)]
        org: Option<String>,
        #[arg(long, default_value = "")]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Release a custodian (with the two-person rule, a second legal-hold
    /// admin's release completes it). Data the hold alone protected stays
    /// for the quarantine.
    Release {
        #[arg(long)]
        matter: String,
        #[arg(long)]
        user: String,
        #[arg(long)]
        org: Option<String>,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    List {
        #[arg(long)]
        matter: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RetentionCommand {
    /// What retention would expire now, and what it keeps by which rule or
    /// hold (a dry run). With --plugin, what that retention plugin proposes.
    Plan {
        /// The archive (or its device).
        #[arg(long)]
        archive: Name,
        #[arg(long)]
        plugin: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run retention on an archive now: every expiry through the
    /// destruction gate.
    Run {
        #[arg(long)]
        archive: Name,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GcCommand {
    /// Collect blocks no backup references now (--dry-run: count only).
    Run {
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// The grace, the repack threshold and the last run.
    Status {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum ClockCommand {
    /// The compliance clock against the wall clock.
    Show {
        #[arg(long)]
        json: bool,
    },
    /// Take the wall clock as right when it is ahead (after downtime, or a
    /// corrected clock): the compliance clock moves forward to it. Audited.
    Accept {
        #[arg(long)]
        json: bool,
    },
}

fn custodian_table(cs: &[CustodianInfo]) {
    table(
        &[
            "MATTER",
            "ORG",
            "USER",
            "STATE",
            "SINCE",
            "BY",
            "RELEASED",
            "QUARANTINE UNTIL",
        ],
        cs.iter().map(|c| {
            vec![
                c.matter.to_string(),
                c.org.to_string(),
                c.user.to_string(),
                c.state.clone(),
                time(Some(c.added_at)),
                c.added_by.clone(),
                time(c.released_at),
                time(c.quarantine_until),
            ]
        }),
    );
}

pub(crate) async fn hold(client: &Client, command: HoldCommand) -> anyhow::Result<()> {
    match command {
        HoldCommand::Policy { command } => match command {
            PolicyCommand::Create {
                name,
                keep,
                retention,
                keep_deleted,
                json,
            } => {
                let mut tiers = BTreeMap::new();
                for kv in retention {
                    let Some((k, v)) = kv.split_once('=') else {
                        bail!("--retention takes TIER=DURATION (e.g. daily=180d), not {kv:?}");
                    };
                    tiers.insert(k.trim().to_string(), v.trim().to_string());
                }
                let keep = if tiers.is_empty() {
                    keep
                } else {
                    "tiers".into()
                };
                let p = client
                    .create_hold_policy(&CreateHoldPolicy {
                        name,
                        keep: Some(keep),
                        retention: tiers,
                        keep_deleted,
                    })
                    .await?;
                if json {
                    return print_json(&p);
                }
                println!(
                    "created preservation policy {} (keep {}; deleted files kept {})",
                    p.name, p.keep, p.keep_deleted
                );
            }
            PolicyCommand::List { json } => {
                let l = client.hold_policies().await?;
                if json {
                    return print_json(&l);
                }
                table(
                    &["POLICY", "KEEP", "TIERS", "DELETED FILES", "CREATED", "BY"],
                    l.policies.iter().map(|p| {
                        vec![
                            p.name.to_string(),
                            p.keep.clone(),
                            if p.retention.is_empty() {
                                "-".into()
                            } else {
                                p.retention
                                    .iter()
                                    .map(|(k, v)| format!("{k}={v}"))
                                    .collect::<Vec<_>>()
                                    .join(" ")
                            },
                            p.keep_deleted.clone(),
                            time(Some(p.created_at)),
                            p.created_by.clone(),
                        ]
                    }),
                );
            }
        },
        HoldCommand::Matter { command } => match command {
            MatterCommand::Create {
                name,
                policy,
                description,
                json,
            } => {
                let m = client
                    .create_matter(&CreateMatter {
                        name,
                        policy,
                        description,
                    })
                    .await?;
                if json {
                    return print_json(&m);
                }
                println!("created matter {} under policy {}", m.name, m.policy);
            }
            MatterCommand::List { json } => {
                let l = client.matters().await?;
                if json {
                    return print_json(&l);
                }
                table(
                    &[
                        "MATTER",
                        "STATUS",
                        "POLICY",
                        "CUSTODIANS",
                        "CREATED",
                        "BY",
                        "DESCRIPTION",
                    ],
                    l.matters.iter().map(|m| {
                        vec![
                            m.name.to_string(),
                            m.status.clone(),
                            m.policy.to_string(),
                            m.active_custodians.to_string(),
                            time(Some(m.created_at)),
                            m.created_by.clone(),
                            m.description.clone(),
                        ]
                    }),
                );
            }
            MatterCommand::Show { name, json } => {
                let m = client.matter(&name).await?;
                if json {
                    return print_json(&m);
                }
                println!(
                    "matter {} ({}), policy {}, created {} by {}",
                    m.name,
                    m.status,
                    m.policy,
                    time(Some(m.created_at)),
                    m.created_by
                );
                if !m.description.is_empty() {
                    println!("{}", m.description);
                }
                if let (Some(at), Some(by)) = (m.closed_at, &m.closed_by) {
                    println!(
                        "closed {} by {}: {}",
                        time(Some(at)),
                        by,
                        or_dash(m.close_reason.as_ref())
                    );
                }
                custodian_table(&m.custodians);
            }
            MatterCommand::Close { name, reason, json } => {
                let m = client.close_matter(&name, &reason).await?;
                if json {
                    return print_json(&m);
                }
                println!(
                    "closed matter {}: {} custodian(s) released",
                    m.name,
                    m.custodians.len()
                );
                custodian_table(&m.custodians);
            }
        },
        HoldCommand::Custodian { command } => match command {
            CustodianCommand::Add {
                matter,
                user,
                org,
                reason,
                json,
            } => {
                let c = client
                    .add_custodian(&CustodianRequest {
                        matter,
                        user,
                        org,
                        reason,
                    })
                    .await?;
                if json {
                    return print_json(&c);
                }
                println!(
                    "{}/{} is on hold under matter {}: every device and archive of the user is preserved",
                    c.org, c.user, c.matter
                );
            }
            CustodianCommand::Release {
                matter,
                user,
                org,
                reason,
                json,
            } => {
                let c = client
                    .release_custodian(&CustodianRequest {
                        matter,
                        user,
                        org,
                        reason,
                    })
                    .await?;
                if json {
                    return print_json(&c);
                }
                match c.state.as_str() {
                    "release_pending" => println!(
                        "release of {}/{} from {} recorded; it takes a second legal-hold admin to complete",
                        c.org, c.user, c.matter
                    ),
                    _ => println!(
                        "released {}/{} from {}; what the hold alone protected stays until {}",
                        c.org,
                        c.user,
                        c.matter,
                        time(c.quarantine_until)
                    ),
                }
            }
            CustodianCommand::List { matter, json } => {
                let l = client.custodians(matter.as_deref()).await?;
                if json {
                    return print_json(&l);
                }
                custodian_table(&l.custodians);
            }
        },
    }
    Ok(())
}

fn print_retention(r: &RetentionReport) {
    let what = if r.dry_run { "would expire" } else { "expired" };
    println!(
        "archive {} (device {}), policy {}, at {}: {what} {}, kept {}{}",
        r.archive,
        r.device,
        r.policy,
        time(Some(r.now)),
        r.expired,
        r.kept,
        if r.refused > 0 {
            format!(", refused by the gate {}", r.refused)
        } else {
            String::new()
        }
    );
    table(
        &["BACKUP", "COMMITTED", "VERDICT", "RULE"],
        r.items.iter().map(|i| {
            vec![
                i.backup.to_string(),
                time(Some(i.committed_at)),
                i.verdict.clone(),
                i.reason.clone(),
            ]
        }),
    );
}

pub(crate) async fn retention(client: &Client, command: RetentionCommand) -> anyhow::Result<()> {
    match command {
        RetentionCommand::Plan {
            archive,
            plugin: Some(plugin),
            json,
        } => {
            super::plugins::plugin_plan(client, archive, Some(plugin), json).await?;
        }
        RetentionCommand::Plan {
            archive,
            plugin: None,
            json,
        } => {
            let r = client.retention_dry_run(archive.as_str()).await?;
            if json {
                return print_json(&r);
            }
            print_retention(&r);
        }
        RetentionCommand::Run { archive, json } => {
            let r = client.retention_run(archive.as_str()).await?;
            if json {
                return print_json(&r);
            }
            print_retention(&r);
        }
    }
    Ok(())
}

fn print_gc(r: &GcReport) {
    println!(
        "{}{} archives; cutoff {}; marked {}, swept {} ({}), refused {}, restarted {}; \
         packs rewritten {} ({} back); orphans dropped {}",
        if r.dry_run { "dry run: " } else { "" },
        r.archives,
        time(Some(r.cutoff)),
        r.marked,
        r.swept,
        bytes(r.swept_bytes),
        r.refused,
        r.restarted,
        r.packs_rewritten,
        bytes(r.pack_bytes_reclaimed),
        r.orphans_dropped
    );
}

pub(crate) async fn gc(client: &Client, command: GcCommand) -> anyhow::Result<()> {
    match command {
        GcCommand::Run { dry_run, json } => {
            let r = client.gc_run(dry_run).await?;
            if json {
                return print_json(&r);
            }
            print_gc(&r);
        }
        GcCommand::Status { json } => {
            let s = client.gc_status().await?;
            if json {
                return print_json(&s);
            }
            println!(
                "{}; grace {}, packs rewritten below {:.0}% live",
                if s.running { "running" } else { "idle" },
                coffer_core::duration::format(std::time::Duration::from_secs(s.grace_secs)),
                s.repack_below * 100.0
            );
            match &s.last {
                Some(r) => {
                    print!("last run {}: ", time(Some(r.finished_at)));
                    print_gc(r);
                }
                None => println!("no run yet"),
            }
        }
    }
    Ok(())
}

pub(crate) async fn clock(client: &Client, command: ClockCommand) -> anyhow::Result<()> {
    let (c, json) = match command {
        ClockCommand::Show { json } => (client.clock().await?, json),
        ClockCommand::Accept { json } => (client.clock_accept().await?, json),
    };
    if json {
        return print_json(&c);
    }
    println!(
        "compliance {}  wall {}  persisted {}  state {}",
        time(Some(c.compliance)),
        time(Some(c.wall)),
        time(Some(c.persisted)),
        c.state
    );
    Ok(())
}
