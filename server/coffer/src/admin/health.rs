//! `coffer admin mail …` and the health reports (`coffer admin report
//! device-status | orgs | users`).

use std::io::Write;

use clap::Subcommand;
use coffer_client::Client;
use coffer_core::reports::push_csv_row;
use coffer_types::wire::ReportQuery;

use super::output::{bytes, print_json, table, time};

#[derive(Debug, Subcommand)]
pub(crate) enum MailCommand {
    /// Send a test mail through the server's `[mail]` settings now.
    Test {
        /// The address to send it to.
        #[arg(long)]
        to: String,
        #[arg(long)]
        json: bool,
    },
}

pub(crate) async fn mail(client: &Client, command: MailCommand) -> anyhow::Result<()> {
    let MailCommand::Test { to, json } = command;
    let r = client.mail_test(&to).await?;
    if json {
        return print_json(&r);
    }
    println!(
        "test mail to {} accepted by the mail server: {}",
        r.to, r.answer
    );
    Ok(())
}

/// `coffer admin report device-status | orgs | users`.
#[derive(Debug, clap::Args)]
pub(crate) struct ReportArgs {
    /// Only this org and the orgs below it.
    #[arg(long)]
    org: Option<String>,
    /// Only these states (comma-separated: warning,critical).
    #[arg(long)]
    state: Option<String>,
    /// Only these reasons (comma-separated: not_connecting,not_completing).
    #[arg(long)]
    reason: Option<String>,
    /// The column to sort by (the report's column names, such as
    /// last_activity or bytes_stored).
    #[arg(long)]
    sort: Option<String>,
    /// Sort descending.
    #[arg(long, conflicts_with = "asc")]
    desc: bool,
    /// Sort ascending.
    #[arg(long)]
    asc: bool,
    /// One page of at most this many rows (default: every row).
    #[arg(long)]
    limit: Option<usize>,
    /// The page after this cursor (a previous page's next_after).
    #[arg(long)]
    after: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    format: ReportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ReportFormat {
    Table,
    Csv,
    Json,
}

/// Rows per request when the whole report is fetched.
const FETCH_PAGE: usize = 10_000;

pub(crate) async fn report(client: &Client, report: &str, a: ReportArgs) -> anyhow::Result<()> {
    let mut q = ReportQuery {
        org: a.org,
        state: a.state,
        reason: a.reason,
        sort: a.sort,
        desc: (a.desc || a.asc).then_some(a.desc),
        after: a.after,
        limit: a.limit,
    };
    if a.format == ReportFormat::Csv && a.limit.is_none() && q.after.is_none() {
        let body = client.report_csv(report, &q).await?;
        std::io::stdout().write_all(&body)?;
        return Ok(());
    }
    // One page when asked for one, else every page.
    let mut page = client
        .report(
            report,
            &ReportQuery {
                limit: Some(a.limit.unwrap_or(FETCH_PAGE)),
                ..q.clone()
            },
        )
        .await?;
    if a.limit.is_none() {
        while let Some(next) = page.next_after.take() {
            q.after = Some(next);
            q.limit = Some(FETCH_PAGE);
            let more = client.report(report, &q).await?;
            page.rows.extend(more.rows);
            page.next_after = more.next_after;
        }
    }
    match a.format {
        ReportFormat::Json => print_json(&page),
        ReportFormat::Csv => {
            // The server's writer, so a page reads as the whole report does.
            let mut out = String::new();
            push_csv_row(&mut out, page.columns.iter().map(|c| c.as_str().into()));
            for r in &page.rows {
                push_csv_row(&mut out, page.columns.iter().map(|c| r[c].clone()));
            }
            std::io::stdout().write_all(out.as_bytes())?;
            if let Some(n) = &page.next_after {
                eprintln!("more rows: --after {n}");
            }
            Ok(())
        }
        ReportFormat::Table => {
            let head: Vec<String> = page.columns.iter().map(|c| c.to_uppercase()).collect();
            let head: Vec<&str> = head.iter().map(String::as_str).collect();
            table(
                &head,
                page.rows
                    .iter()
                    .map(|r| page.columns.iter().map(|c| table_cell(c, &r[c])).collect()),
            );
            match &page.next_after {
                Some(n) => eprintln!(
                    "{} of {} rows; more: --after {n}",
                    page.rows.len(),
                    page.total
                ),
                None => eprintln!("{} rows", page.total),
            }
            Ok(())
        }
    }
}

/// A cell as the table shows it: times and sizes for people.
fn table_cell(column: &str, v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::Number(n) if column.starts_with("last_") => time(n.as_u64()),
        serde_json::Value::Number(n) if column == "bytes_stored" => bytes(n.as_u64().unwrap_or(0)),
        serde_json::Value::Number(n) if column == "percent_complete" => {
            format!("{:.0} %", n.as_f64().unwrap_or(0.0))
        }
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
