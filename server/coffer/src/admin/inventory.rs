//! `coffer admin org|user|device …`.

use anyhow::Context;
use clap::Subcommand;
use coffer_client::Client;
use coffer_types::wire::{
    AddUser, CreateOrg, DeviceInfo, DeviceToken, EnrollDevice, IssueRestoreToken, OrgSettingsInfo,
    SetOrgSettings,
};
use coffer_types::Name;

use super::output::{bytes, print_json, table, time};

#[derive(Debug, Subcommand)]
pub(crate) enum OrgCommand {
    /// Create an organization, optionally under a parent.
    Create {
        name: Name,
        #[arg(long)]
        parent: Option<Name>,
    },
    /// List the organizations in your scope.
    List {
        #[arg(long)]
        json: bool,
    },
    /// An org's settings: show them, set values, turn a group's
    /// inheritance on or off.
    #[command(subcommand)]
    Settings(SettingsCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum SettingsCommand {
    /// Every group's values in effect, where each comes from, and which
    /// groups the org inherits.
    Show {
        org: Name,
        #[arg(long)]
        json: bool,
    },
    /// Set values: GROUP.KEY=VALUE, written as people write them ("3d",
    /// "500GiB", "*.tmp,node_modules"). A group the org inherits stops
    /// being inherited (its values in effect become the org's own).
    Set {
        org: Name,
        #[arg(required = true, value_name = "GROUP.KEY=VALUE")]
        values: Vec<String>,
        /// Device defaults: devices enrolled from now on get them (the
        /// default).
        #[arg(long, group = "apply")]
        save: bool,
        /// Device defaults: every device gets them once; users may change
        /// them.
        #[arg(long, group = "apply")]
        push: bool,
        /// Device defaults: every device gets them; neither users nor orgs
        /// below may change them.
        #[arg(long, group = "apply")]
        lock: bool,
        #[arg(long)]
        json: bool,
    },
    /// Turn inheritance of a group on (the org's own values are dropped,
    /// and listed) or off (the values in effect become its own).
    Inherit {
        org: Name,
        group: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user to an organization.
    Add {
        #[arg(long)]
        org: Name,
        name: Name,
    },
    /// List the users in your scope.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Deactivate every device of a user (their archives enter cold
    /// storage). Refused while the user is on legal hold.
    Deactivate {
        #[arg(long)]
        org: Name,
        name: Name,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
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
    /// List the devices in your scope with bytes stored, blocks, last
    /// activity, last completed backup and percent complete.
    List {
        /// Only deactivated devices, whose archives are in cold storage
        /// (or were purged).
        #[arg(long)]
        cold: bool,
        #[arg(long)]
        json: bool,
    },
    /// One device in detail (JSON).
    Show { device: Name },
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
    /// Park a device (on leave, retired): it shows as parked and raises no
    /// alerts until unparked.
    Park {
        device: Name,
        #[arg(long)]
        json: bool,
    },
    /// Unpark a device: its health counts again.
    Unpark {
        device: Name,
        #[arg(long)]
        json: bool,
    },
    /// Deactivate a device: it may not back up (401 device_deactivated),
    /// and its archive enters cold storage for the org's
    /// retention.cold_storage, then is purged (never while held).
    Deactivate {
        device: Name,
        #[arg(long)]
        json: bool,
    },
    /// Bring a device back from cold storage, its archive intact.
    Reactivate {
        device: Name,
        #[arg(long)]
        json: bool,
    },
    /// Purge a deactivated device's archive now, before its cold storage
    /// ends. Refused (409 hold_active) while a legal hold protects it.
    Purge {
        device: Name,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// Issue a read-only, expiring token for the device's archive
    /// (administrator restore): with it and the escrow private key,
    /// `coffer-agent restore --escrow-key` restores without the passphrase.
    /// Needs security.admin_restore = on for the device's org.
    RestoreToken {
        device: Name,
        /// How long the token works ("1h", "30m", "90s"; at most 7d).
        #[arg(long, default_value = "1h")]
        expires: String,
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn org(client: &Client, command: OrgCommand) -> anyhow::Result<()> {
    match command {
        OrgCommand::Create { name, parent } => {
            let o = client.create_org(&CreateOrg { name, parent }).await?;
            println!("created org {}", o.name);
        }
        OrgCommand::List { json } => {
            let l = client.list_orgs().await?;
            if json {
                return print_json(&l);
            }
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
        OrgCommand::Settings(c) => settings(client, c).await?,
    }
    Ok(())
}

async fn settings(client: &Client, command: SettingsCommand) -> anyhow::Result<()> {
    match command {
        SettingsCommand::Show { org, json } => {
            let s = client.org_settings(org.as_str()).await?;
            if json {
                return print_json(&s);
            }
            print_settings(&s);
        }
        SettingsCommand::Set {
            org,
            values,
            save: _,
            push,
            lock,
            json,
        } => {
            let mode = if lock {
                Some("lock".to_string())
            } else if push {
                Some("push".to_string())
            } else {
                None
            };
            // One change per group, in the order first named.
            let mut groups: Vec<(String, SetOrgSettings)> = Vec::new();
            for kv in &values {
                let (gk, v) = kv
                    .split_once('=')
                    .with_context(|| format!("{kv:?}: write GROUP.KEY=VALUE"))?;
                let (g, k) = gk
                    .split_once('.')
                    .with_context(|| format!("{kv:?}: write GROUP.KEY=VALUE"))?;
                let at = match groups.iter().position(|(name, _)| name == g) {
                    Some(i) => i,
                    None => {
                        groups.push((
                            g.to_string(),
                            SetOrgSettings {
                                group: g.to_string(),
                                values: Default::default(),
                                mode: mode.clone(),
                            },
                        ));
                        groups.len() - 1
                    }
                };
                groups[at]
                    .1
                    .values
                    .insert(k.to_string(), serde_json::Value::from(v));
            }
            for (g, req) in &groups {
                let c = client.set_org_settings(org.as_str(), req).await?;
                if json {
                    print_json(&c)?;
                    continue;
                }
                if c.inheritance_turned_off {
                    println!(
                        "org {org} no longer inherits {g}: its values in effect are now its own"
                    );
                }
                for k in req.values.keys() {
                    if let Some(v) = c.settings.groups.get(g).and_then(|x| x.values.get(k)) {
                        match &v.mode {
                            Some(m) => println!("{g}.{k} = {} ({m})", v.text),
                            None => println!("{g}.{k} = {}", v.text),
                        }
                    }
                }
            }
        }
        SettingsCommand::Inherit {
            org,
            group,
            state,
            json,
        } => {
            let c = client
                .set_org_inherit(org.as_str(), &group, state == "on")
                .await?;
            if json {
                return print_json(&c);
            }
            if state == "on" {
                println!("org {org} inherits {group} again");
                for d in &c.dropped {
                    println!("dropped its own {group}.{} = {}", d.key, d.text);
                }
            } else {
                println!(
                    "org {org} no longer inherits {group}: its values in effect are now its own"
                );
            }
        }
    }
    Ok(())
}

fn print_settings(s: &OrgSettingsInfo) {
    table(
        &["SETTING", "VALUE", "FROM", "GROUP INHERITED"],
        s.groups.iter().flat_map(|(g, info)| {
            info.values.iter().map(move |(k, v)| {
                vec![
                    format!("{g}.{k}"),
                    if v.text.is_empty() {
                        "-".into()
                    } else {
                        v.text.clone()
                    },
                    match (&v.mode, &v.locked_by) {
                        (_, Some(by)) => format!("{} (locked)", by),
                        (Some(m), None) if m != "save" => format!("{} ({m})", v.from),
                        _ => v.from.clone(),
                    },
                    if info.inherit { "yes" } else { "no" }.into(),
                ]
            })
        }),
    );
    let u = &s.usage;
    let against = if u.org_bytes == 0 {
        "no org quota".to_string()
    } else {
        format!(
            "{:.0} % of its quota of {}",
            100.0 * u.bytes_stored as f64 / u.org_bytes as f64,
            bytes(u.org_bytes)
        )
    };
    println!(
        "\nstored by {} and the orgs below it: {} ({against})",
        s.org,
        bytes(u.bytes_stored)
    );
    for w in &u.warnings {
        println!(
            "warning: {} stores {} of its quota of {} ({:.0} %)",
            w.scope,
            bytes(w.used),
            bytes(w.quota),
            100.0 * w.used as f64 / w.quota.max(1) as f64
        );
    }
}

pub(crate) async fn user(client: &Client, command: UserCommand) -> anyhow::Result<()> {
    match command {
        UserCommand::Deactivate { org, name, json } => {
            let l = client.deactivate_user(org.as_str(), name.as_str()).await?;
            if json {
                return print_json(&l);
            }
            println!(
                "deactivated {} device(s) of {org}/{name}; their archives are in cold storage",
                l.devices.len()
            );
            cold_table(&l.devices);
        }
        UserCommand::Add { org, name } => {
            let u = client.add_user(&AddUser { org, name }).await?;
            println!("added user {} to org {}", u.name, u.org);
        }
        UserCommand::List { json } => {
            let l = client.list_users().await?;
            if json {
                return print_json(&l);
            }
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
    Ok(())
}

pub(crate) async fn device(client: &Client, command: DeviceCommand) -> anyhow::Result<()> {
    match command {
        DeviceCommand::Enroll {
            org,
            user,
            name,
            os,
            json,
        } => {
            let t = client
                .enroll_device(&EnrollDevice {
                    org,
                    user,
                    name,
                    os,
                })
                .await?;
            print_token(&t, json)?;
        }
        DeviceCommand::List { cold, json } => {
            let mut l = client.list_devices().await?;
            if cold {
                l.devices.retain(|d| d.deactivated_at.is_some());
            }
            if json {
                return print_json(&l);
            }
            if cold {
                cold_table(&l.devices);
            } else {
                device_table(&l.devices);
            }
        }
        DeviceCommand::Deactivate { device, json } => {
            let d = client.deactivate_device(device.as_str()).await?;
            if json {
                return print_json(&d);
            }
            println!(
                "deactivated device {}: its archive {} is in cold storage until {}{}",
                d.device,
                d.archive,
                time(d.cold_until),
                held(&d)
            );
        }
        DeviceCommand::Reactivate { device, json } => {
            let d = client.reactivate_device(device.as_str()).await?;
            if json {
                return print_json(&d);
            }
            println!(
                "reactivated device {}: its archive {} is back, {} backups",
                d.device, d.archive, d.backup_count
            );
        }
        DeviceCommand::Purge {
            device,
            reason,
            json,
        } => {
            let d = client.purge_device(device.as_str(), &reason).await?;
            if json {
                return print_json(&d);
            }
            println!(
                "purged the archive {} of device {}; garbage collection gives its {} back",
                d.archive,
                d.device,
                bytes(d.bytes_stored)
            );
        }
        DeviceCommand::Show { device } => print_json(&client.device(device.as_str()).await?)?,
        DeviceCommand::Revoke { device, json } => {
            let d = client.revoke_device(device.as_str()).await?;
            if json {
                return print_json(&d);
            }
            println!(
                "revoked the token of device {}; its archive {} is kept",
                d.device, d.archive
            );
        }
        DeviceCommand::Rotate { device, json } => {
            let t = client.rotate_device(device.as_str()).await?;
            print_token(&t, json)?;
        }
        DeviceCommand::Park { device, json } => park(client, &device, true, json).await?,
        DeviceCommand::Unpark { device, json } => park(client, &device, false, json).await?,
        DeviceCommand::RestoreToken {
            device,
            expires,
            json,
        } => {
            let t = client
                .restore_token(
                    device.as_str(),
                    &IssueRestoreToken {
                        expires: Some(expires),
                    },
                )
                .await?;
            if json {
                return print_json(&t);
            }
            println!(
                "device:     {}\narchive:    {}\ntoken:      {}\nexpires:    {}\nescrow key: {}",
                t.device,
                t.archive,
                t.token,
                time(Some(t.expires_at)),
                t.escrow_public_key
            );
            eprintln!(
                "(read-only, shown only once; restore with\n  COFFER_TOKEN=<token> coffer-agent \
                 restore --escrow-key DIR/escrow.key --target DIR)"
            );
        }
    }
    Ok(())
}

pub(crate) async fn alerts(
    client: &Client,
    after: Option<u64>,
    limit: Option<usize>,
    json: bool,
) -> anyhow::Result<()> {
    let l = client.alerts(after, limit).await?;
    if json {
        return print_json(&l);
    }
    table(
        &[
            "SEQ",
            "AT",
            "DEVICE",
            "ORG",
            "FROM",
            "TO",
            "REASON",
            "DELIVERIES",
        ],
        l.alerts.iter().map(|a| {
            let deliveries: Vec<String> = a
                .deliveries
                .iter()
                .map(|d| match d.state.as_str() {
                    "delivered" => format!("{} delivered", d.channel),
                    _ => format!(
                        "{} pending ({} tries{})",
                        d.channel,
                        d.attempts,
                        d.last_error
                            .as_deref()
                            .map(|e| format!(": {}", e.chars().take(60).collect::<String>()))
                            .unwrap_or_default()
                    ),
                })
                .collect();
            vec![
                a.seq.to_string(),
                time(Some(a.at)),
                if a.digest {
                    "(digest)".to_string()
                } else {
                    a.device.to_string()
                },
                a.org.to_string(),
                a.from.clone(),
                a.to.clone(),
                if a.reminder {
                    format!("{} (reminder)", a.reason)
                } else {
                    a.reason.clone()
                },
                if deliveries.is_empty() {
                    "-".into()
                } else {
                    deliveries.join(", ")
                },
            ]
        }),
    );
    Ok(())
}

async fn park(client: &Client, device: &Name, parked: bool, json: bool) -> anyhow::Result<()> {
    let d = client.park_device(device.as_str(), parked).await?;
    if json {
        return print_json(&d);
    }
    println!(
        "device {} is {}",
        d.device,
        if parked {
            "parked: it raises no alerts until unparked"
        } else {
            "unparked: its health counts again"
        }
    );
    Ok(())
}

fn print_token(t: &DeviceToken, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(t);
    }
    println!(
        "device:  {}\narchive: {}\ntoken:   {}",
        t.device, t.archive, t.token
    );
    eprintln!("(the token is shown only once: give it to the device's agent now)");
    Ok(())
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
            "HEALTH",
            "STATE",
        ],
        devices.iter().map(|d| {
            vec![
                d.device.to_string(),
                d.name.clone(),
                d.org.to_string(),
                d.user.to_string(),
                d.archive.to_string(),
                if d.quota_bytes == 0 {
                    bytes(d.bytes_stored)
                } else {
                    format!("{} of {}", bytes(d.bytes_stored), bytes(d.quota_bytes))
                },
                d.block_count.to_string(),
                d.backup_count.to_string(),
                time(d.last_activity),
                time(d.last_completed),
                d.percent_complete
                    .map_or("-".into(), |p| format!("{p:.1}%")),
                d.health.as_ref().map_or("-".into(), |h| {
                    if h.reason == "ok" {
                        h.state.clone()
                    } else {
                        format!("{} ({})", h.state, h.reason)
                    }
                }),
                match (d.revoked, d.damaged_backups) {
                    (true, _) => "revoked".into(),
                    (false, 0) => "active".into(),
                    // Backups that cannot be fully restored until the
                    // device uploads the damaged blocks again.
                    (false, n) => format!("damaged ({n} backups, {} blocks)", d.damaged_blocks),
                },
            ]
        }),
    );
}

/// The devices in cold storage: when deactivated, until when, held by.
fn cold_table(devices: &[coffer_types::wire::DeviceInfo]) {
    table(
        &[
            "DEVICE",
            "ORG",
            "USER",
            "ARCHIVE",
            "STORED",
            "DEACTIVATED",
            "COLD UNTIL",
            "HELD BY",
        ],
        devices.iter().map(|d| {
            vec![
                d.device.to_string(),
                d.org.to_string(),
                d.user.to_string(),
                d.archive.to_string(),
                bytes(d.bytes_stored),
                time(d.deactivated_at),
                match d.purged_at {
                    Some(p) => format!("purged {}", time(Some(p))),
                    None => time(d.cold_until),
                },
                if d.held_by.is_empty() {
                    "-".into()
                } else {
                    d.held_by.join(",")
                },
            ]
        }),
    );
}

fn held(d: &coffer_types::wire::DeviceInfo) -> String {
    if d.held_by.is_empty() {
        String::new()
    } else {
        format!(
            " (held by {}: it is not purged while held)",
            d.held_by.join(", ")
        )
    }
}
