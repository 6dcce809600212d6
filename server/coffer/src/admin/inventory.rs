//! `coffer admin org|user|device …`.

use clap::Subcommand;
use coffer_client::Client;
use coffer_types::wire::{AddUser, CreateOrg, DeviceInfo, DeviceToken, EnrollDevice};
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
    }
    Ok(())
}

pub(crate) async fn user(client: &Client, command: UserCommand) -> anyhow::Result<()> {
    match command {
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
        DeviceCommand::List { json } => {
            let l = client.list_devices().await?;
            if json {
                return print_json(&l);
            }
            device_table(&l.devices);
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
    }
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
