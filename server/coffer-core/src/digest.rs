//! Daily and weekly digests (`reporting.digest`, `reporting.digest_time`):
//! per org, once per period, a summary of its own devices with those that
//! need attention, by mail.
//!
//! The evaluator's tick records each due digest in the alert outbox (the
//! org's last period and the entry in one transaction, so a period's
//! digest is recorded once whatever restarts happen); the mail channel
//! delivers it like an alert. The tick knows when the next digest of any
//! org is due and does nothing before then. An org's first period after
//! the digest is turned on is only noted: its first digest comes at the
//! next scheduled time.

use std::sync::atomic::Ordering;

use coffer_meta::AlertRecord;
use coffer_types::wire::DeviceStatusRow;
use coffer_types::{Name, UnixMillis};
use serde::Serialize;

use crate::notify::{escape_html, span, time_text};
use crate::{Coffer, Result};

/// Most devices a digest lists by name.
const DIGEST_ROWS: usize = 200;

/// One org's digest as the mail tells it.
#[derive(Debug, Clone, Serialize)]
pub struct DigestNotice {
    pub seq: u64,
    pub org: Name,
    /// `daily` or `weekly`.
    pub period: String,
    /// When the period began (the scheduled time).
    pub at: UnixMillis,
    pub ok: u64,
    pub warning: u64,
    pub critical: u64,
    pub parked: u64,
    /// The devices in warning or critical, worst and oldest first.
    pub attention: Vec<DeviceStatusRow>,
    /// How many more need attention than are listed.
    pub more: usize,
    pub console_url: Option<String>,
    pub id: String,
}

impl DigestNotice {
    pub fn subject(&self) -> String {
        format!(
            "[Coffer] {} digest of {}: {} critical, {} warning, {} ok{}",
            self.period,
            self.org,
            self.critical,
            self.warning,
            self.ok,
            if self.parked > 0 {
                format!(", {} parked", self.parked)
            } else {
                String::new()
            }
        )
    }

    fn lines(&self) -> Vec<[String; 5]> {
        self.attention
            .iter()
            .map(|d| {
                [
                    format!("{} ({})", d.name, d.user),
                    d.state.clone(),
                    d.reason.replace('_', " "),
                    d.last_activity.map_or("never".into(), |t| {
                        format!("{} ago", span(self.at.saturating_sub(t)))
                    }),
                    d.last_completed.map_or("never".into(), time_text),
                ]
            })
            .collect()
    }

    pub fn text(&self) -> String {
        let mut s = format!("{}\n\n", self.subject().trim_start_matches("[Coffer] "));
        if self.attention.is_empty() {
            s.push_str("No device needs attention.\n");
        } else {
            s.push_str("Devices that need attention:\n\n");
            for l in self.lines() {
                s.push_str(&format!(
                    "  {:<32} {:<9} {:<24} last data {:<16} last complete {}\n",
                    l[0], l[1], l[2], l[3], l[4]
                ));
            }
            if self.more > 0 {
                s.push_str(&format!("  … and {} more\n", self.more));
            }
        }
        if let Some(u) = &self.console_url {
            s.push_str(&format!("\nIn the console: {u}\n"));
        }
        s.push_str("\nSent by Coffer: reporting.digest of this org.\n");
        s
    }

    pub fn html(&self) -> String {
        let mut s = format!(
            "<!DOCTYPE html><html><body><p><strong>{}</strong></p>",
            escape_html(self.subject().trim_start_matches("[Coffer] "))
        );
        if self.attention.is_empty() {
            s.push_str("<p>No device needs attention.</p>");
        } else {
            s.push_str("<table><tr><th align=\"left\">Device</th><th align=\"left\">State</th><th align=\"left\">Reason</th><th align=\"left\">Last data</th><th align=\"left\">Last complete backup</th></tr>");
            for l in self.lines() {
                s.push_str("<tr>");
                for c in l {
                    s.push_str(&format!("<td>{}</td>", escape_html(&c)));
                }
                s.push_str("</tr>");
            }
            s.push_str("</table>");
            if self.more > 0 {
                s.push_str(&format!("<p>… and {} more</p>", self.more));
            }
        }
        if let Some(u) = &self.console_url {
            s.push_str(&format!("<p><a href=\"{0}\">{0}</a></p>", escape_html(u)));
        }
        s.push_str("</body></html>");
        s
    }
}

impl Coffer {
    /// Record every digest that is due at `now`; how many.
    pub(crate) fn record_digests(&self, now: UnixMillis) -> Result<usize> {
        if now < self.monitor.digest_next.load(Ordering::SeqCst) {
            return Ok(0);
        }
        let tree = self.org_tree();
        let mut made = 0;
        let mut next = u64::MAX;
        for org in tree.orgs() {
            let Some(s) = self.thresholds(org)?.digest else {
                continue;
            };
            let p = s.period_start(now);
            next = next.min(p + s.length());
            let entry = AlertRecord {
                seq: 0,
                at: p,
                device: org.clone(),
                org: org.clone(),
                from: String::new(),
                to: String::new(),
                reason: if s.weekly { "weekly" } else { "daily" }.into(),
                reminder: false,
                digest: true,
            };
            if let Some(seq) = self.meta.record_digest(org, p, &entry)? {
                tracing::info!(%org, seq, period = %entry.reason, "digest recorded");
                made += 1;
            }
        }
        self.monitor.digest_next.store(next, Ordering::SeqCst);
        Ok(made)
    }

    /// The digest notice of outbox entry `a` (a digest).
    pub(crate) fn digest_notice(
        &self,
        a: &AlertRecord,
        store_id: &str,
        public_url: Option<&str>,
    ) -> Result<DigestNotice> {
        let mut rows = self.status_rows_of(&a.org)?;
        let count = |s: &str| rows.iter().filter(|r| r.state == s).count() as u64;
        let (ok, warning, critical, parked) = (
            count("ok"),
            count("warning"),
            count("critical"),
            count("parked"),
        );
        rows.retain(|r| r.state == "warning" || r.state == "critical");
        rows.sort_by(|x, y| {
            (y.state == "critical")
                .cmp(&(x.state == "critical"))
                .then(x.last_activity.cmp(&y.last_activity))
                .then(x.device.cmp(&y.device))
        });
        let more = rows.len().saturating_sub(DIGEST_ROWS);
        rows.truncate(DIGEST_ROWS);
        Ok(DigestNotice {
            seq: a.seq,
            org: a.org.clone(),
            period: a.reason.clone(),
            at: a.at,
            ok,
            warning,
            critical,
            parked,
            attention: rows,
            more,
            console_url: public_url
                .map(|u| format!("{}/console/orgs/{}", u.trim_end_matches('/'), a.org)),
            id: format!("digest-{}.{store_id}", a.seq),
        })
    }
}
