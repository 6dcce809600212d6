//! `coffer admin account|token|whoami …`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use coffer_client::Client;
use coffer_types::wire::{CreateAccount, CreateToken};
use coffer_types::{Name, Role};

use super::output::{or_dash, print_json, table, time};

#[derive(Debug, Subcommand)]
pub(crate) enum AccountCommand {
    /// Create an account. Roles: admin (everything), org-admin (one org's
    /// subtree; needs --org), legal-hold-admin (legal holds, the audit log,
    /// reading inventory), read-only (reads; --org limits it to a subtree).
    Create {
        name: Name,
        #[arg(long)]
        role: Role,
        #[arg(long)]
        org: Option<Name>,
        /// A file whose first line is the account's password (for the
        /// console's login; at least 12 characters).
        #[arg(long)]
        password_file: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// List the accounts in your scope.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One account.
    Show {
        name: Name,
        #[arg(long)]
        json: bool,
    },
    /// Disable an account: its tokens stop working at once.
    Disable { name: Name },
    /// Enable a disabled account again.
    Enable { name: Name },
    /// Delete an account and its tokens.
    Delete { name: Name },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TokenCommand {
    /// Create a token for an account: printed once, kept by the server as a
    /// hash.
    Create {
        #[arg(long)]
        account: Name,
        /// How long it works: a duration (90d, 12h, 3600s) or "never".
        #[arg(long, default_value = coffer_core::DEFAULT_TOKEN_LIFETIME)]
        expires: String,
        /// Print an object with id, account, token and expires_at.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (never the tokens themselves).
    List {
        #[arg(long)]
        account: Option<Name>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id (tk_…): it stops working at once.
    Revoke { id: Name },
}

pub(crate) async fn account(client: &Client, command: AccountCommand) -> anyhow::Result<()> {
    match command {
        AccountCommand::Create {
            name,
            role,
            org,
            password_file,
            json,
        } => {
            let password = match password_file {
                Some(f) => Some(
                    std::fs::read_to_string(&f)
                        .with_context(|| format!("read the password from {}", f.display()))?
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string(),
                ),
                None => None,
            };
            let a = client
                .create_account(&CreateAccount {
                    name,
                    role,
                    org,
                    password,
                })
                .await?;
            if json {
                return print_json(&a);
            }
            println!(
                "created account {} ({}{})",
                a.name,
                a.role,
                a.org.map(|o| format!(" of org {o}")).unwrap_or_default()
            );
            eprintln!(
                "(give it a token with `coffer admin token create --account {}`)",
                a.name
            );
        }
        AccountCommand::List { json } => {
            let l = client.list_accounts().await?;
            if json {
                return print_json(&l);
            }
            table(
                &[
                    "ACCOUNT", "ROLE", "ORG", "STATE", "TOKENS", "PASSWORD", "CREATED", "BY",
                ],
                l.accounts.iter().map(|a| {
                    vec![
                        a.name.to_string(),
                        a.role.to_string(),
                        or_dash(a.org.as_ref()),
                        if a.disabled { "disabled" } else { "enabled" }.into(),
                        a.active_tokens.to_string(),
                        if a.has_password { "set" } else { "-" }.into(),
                        time(Some(a.created_at)),
                        a.created_by.clone(),
                    ]
                }),
            );
        }
        AccountCommand::Show { name, json } => {
            let a = client.account(name.as_str()).await?;
            if json {
                return print_json(&a);
            }
            println!(
                "account {}: {}{}, {}, {} working token(s), created {} by {}",
                a.name,
                a.role,
                a.org.map(|o| format!(" of org {o}")).unwrap_or_default(),
                if a.disabled { "disabled" } else { "enabled" },
                a.active_tokens,
                time(Some(a.created_at)),
                a.created_by
            );
        }
        AccountCommand::Disable { name } => {
            client.disable_account(name.as_str()).await?;
            println!("disabled account {name}: its tokens no longer work");
        }
        AccountCommand::Enable { name } => {
            client.enable_account(name.as_str()).await?;
            println!("enabled account {name}");
        }
        AccountCommand::Delete { name } => {
            client.delete_account(name.as_str()).await?;
            println!("deleted account {name} and its tokens");
        }
    }
    Ok(())
}

pub(crate) async fn token(client: &Client, command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            account,
            expires,
            json,
        } => {
            let t = client
                .create_token(&CreateToken {
                    account,
                    expires: Some(expires),
                })
                .await?;
            if json {
                return print_json(&t);
            }
            println!(
                "token:   {}\nid:      {}\naccount: {}\nexpires: {}",
                t.token,
                t.id,
                t.account,
                time(t.expires_at)
            );
            eprintln!("(the token is shown only once)");
        }
        TokenCommand::List { account, json } => {
            let l = client
                .list_tokens(account.as_ref().map(Name::as_str))
                .await?;
            if json {
                return print_json(&l);
            }
            table(
                &["TOKEN", "ACCOUNT", "STATE", "EXPIRES", "CREATED", "BY"],
                l.tokens.iter().map(|t| {
                    vec![
                        t.id.to_string(),
                        t.account.to_string(),
                        t.state.clone(),
                        time(t.expires_at),
                        time(Some(t.created_at)),
                        t.created_by.clone(),
                    ]
                }),
            );
        }
        TokenCommand::Revoke { id } => {
            let t = client.revoke_token(id.as_str()).await?;
            println!("revoked token {} of account {}", t.id, t.account);
        }
    }
    Ok(())
}

pub(crate) async fn whoami(client: &Client, json: bool) -> anyhow::Result<()> {
    let w = client.admin_whoami().await?;
    if json {
        return print_json(&w);
    }
    println!(
        "account {} ({}{}), token {}",
        w.account,
        w.role,
        w.org.map(|o| format!(" of org {o}")).unwrap_or_default(),
        or_dash(w.token.as_ref())
    );
    Ok(())
}
