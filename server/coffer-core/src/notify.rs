//! Delivery of the alert outbox to channels (mail, webhooks), exactly once
//! per channel and target as far as the far end lets us know.
//!
//! Each channel is a worker. A step takes the outbox entries after the
//! channel's cursor in, one pending delivery per target the org's
//! `reporting` settings name at that moment (cursor and records in one
//! transaction), then attempts the pending deliveries that are due: each is
//! claimed with compare-and-set for a lease before the attempt, and on
//! success leaves for the done records; on failure it is tried again after
//! a backoff that doubles up to a ceiling, for as long as it takes.
//!
//! A restart between the recording and the delivery finds the delivery
//! pending and makes it; two workers over one store cannot both claim it.
//! The one window left is a crash after the far end accepted and before the
//! done record is written: that delivery is made again, under the same
//! `Message-ID` (mail) and `X-Coffer-Delivery` (webhooks), which the
//! receiver can drop as a duplicate.
//!
//! The channels themselves (SMTP, HTTP) live in the server binary; the core
//! knows them by this trait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use coffer_meta::{AlertRecord, DeliveryRecord};
use coffer_types::wire::DeviceInfo;
use coffer_types::{Name, UnixMillis};
use serde::Serialize;

use crate::access::{Permission, Principal};
use crate::admin::device_info;
use crate::workers::{StepFuture, Worker};
use crate::{Coffer, CoreError, Result};

/// Outbox entries one step takes in.
const TAKE_PER_STEP: usize = 200;
/// Pending deliveries one step looks at.
const PENDING_PER_STEP: usize = 1000;

/// What an org's `reporting` settings say about where alerts go (its
/// thresholds, reminders and digest are [`crate::health::Thresholds`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reporting {
    pub recipients: Vec<String>,
    pub webhooks: Vec<String>,
    pub webhook_secret: String,
}

/// One alert as the channels tell it: the outbox entry with the device it
/// is about, as the server knows it when the delivery is made.
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// `health.alert` (a change of alert level) or `health.reminder` (still
    /// critical).
    pub event: &'static str,
    pub seq: u64,
    /// When the change was recorded.
    pub at: UnixMillis,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub device: NoticeDevice,
    /// The device's page in the console (`[http] public_url` set).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
    /// One line a person reads (the mail's subject).
    pub summary: String,
    /// Identifies this alert from this server (the mail's `Message-ID`
    /// left part).
    pub id: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoticeDevice {
    pub device: Name,
    pub name: String,
    pub user: Name,
    pub org: Name,
    pub os: Option<String>,
    pub agent_version: Option<String>,
    pub enrolled_at: UnixMillis,
    pub last_connection: Option<UnixMillis>,
    pub last_activity: Option<UnixMillis>,
    pub last_completed: Option<UnixMillis>,
    pub percent_complete: Option<f64>,
    pub bytes_stored: u64,
}

impl Notice {
    /// The notice of outbox entry `a` about device `d`.
    pub fn new(a: &AlertRecord, d: &DeviceInfo, store_id: &str, public_url: Option<&str>) -> Self {
        let event = if a.reminder {
            "health.reminder"
        } else {
            "health.alert"
        };
        let mut n = Notice {
            event,
            seq: a.seq,
            at: a.at,
            from: a.from.clone(),
            to: a.to.clone(),
            reason: a.reason.clone(),
            device: NoticeDevice {
                device: d.device.clone(),
                name: d.name.clone(),
                user: d.user.clone(),
                org: d.org.clone(),
                os: d.os.clone(),
                agent_version: d.agent_version.clone(),
                enrolled_at: d.enrolled_at,
                last_connection: d.last_connection,
                last_activity: d.last_activity,
                last_completed: d.last_completed,
                percent_complete: d.percent_complete,
                bytes_stored: d.bytes_stored,
            },
            console_url: public_url
                .map(|u| format!("{}/console/devices/{}", u.trim_end_matches('/'), d.device)),
            summary: String::new(),
            id: format!("alert-{}.{store_id}", a.seq),
        };
        n.summary = n.subject_line();
        n
    }

    /// `critical: dan-laptop (dan, acme-eu) has not backed up for 5 days`.
    fn subject_line(&self) -> String {
        let d = &self.device;
        let who = format!("{} ({}, {})", d.name, d.user, d.org);
        if self.to == "ok" {
            return format!("recovered: {who} is backing up again");
        }
        let since = |t: Option<UnixMillis>| self.at.saturating_sub(t.unwrap_or(d.enrolled_at));
        let what = match self.reason.as_str() {
            "never_backed_up" => format!(
                "has never completed a backup (enrolled {} ago)",
                span(since(None))
            ),
            "not_connecting" => format!("has not connected for {}", span(since(d.last_connection))),
            "connecting_no_new_data" => format!(
                "connects but has sent no new data for {}",
                span(since(d.last_activity))
            ),
            "not_completing" => format!(
                "sends data but has not completed a backup for {}",
                span(since(d.last_completed))
            ),
            _ => format!("has not backed up for {}", span(since(d.last_activity))),
        };
        let state = if self.event == "health.reminder" {
            format!("still {}", self.to)
        } else {
            self.to.clone()
        };
        format!("{state}: {who} {what}")
    }

    /// The mail's subject.
    pub fn subject(&self) -> String {
        format!("[Coffer] {}", self.summary)
    }

    /// Label and value of each fact the mail lists.
    pub fn facts(&self) -> Vec<(&'static str, String)> {
        let d = &self.device;
        let t = |v: Option<UnixMillis>| v.map_or_else(|| "never".to_string(), time_text);
        let mut f = vec![
            ("Device", format!("{} ({})", d.name, d.device)),
            ("User", d.user.to_string()),
            ("Organization", d.org.to_string()),
            (
                "State",
                if self.from == self.to {
                    format!("still {}", self.to)
                } else {
                    format!("{} (was {})", self.to, self.from)
                },
            ),
            ("Reason", self.reason.replace('_', " ")),
            ("Last activity", t(d.last_activity)),
            ("Last completed backup", t(d.last_completed)),
            ("Last connection", t(d.last_connection)),
            ("Recorded", time_text(self.at)),
        ];
        if let Some(p) = d.percent_complete {
            f.push(("Latest backup", format!("{p:.0} % complete")));
        }
        if let Some(u) = &self.console_url {
            f.push(("In the console", u.clone()));
        }
        f
    }

    /// The plain-text part of the mail.
    pub fn text(&self) -> String {
        let mut s = format!("{}\n\n", self.summary);
        for (k, v) in self.facts() {
            s.push_str(&format!("{k:<22} {v}\n"));
        }
        s.push_str("\nSent by Coffer. Park a device on leave or retired with `coffer admin device park` to silence it.\n");
        s
    }

    /// The HTML part of the mail (every value escaped).
    pub fn html(&self) -> String {
        let mut s = format!(
            "<!DOCTYPE html><html><body><p><strong>{}</strong></p><table>",
            escape_html(&self.summary)
        );
        for (k, v) in self.facts() {
            let v = if k == "In the console" {
                format!("<a href=\"{0}\">{0}</a>", escape_html(&v))
            } else {
                escape_html(&v)
            };
            s.push_str(&format!("<tr><th align=\"left\">{k}</th><td>{v}</td></tr>"));
        }
        s.push_str("</table><p>Sent by Coffer.</p></body></html>");
        s
    }
}

/// `5 days`, `3 hours`, `90 seconds`: the largest whole unit.
pub fn span(ms: u64) -> String {
    let s = ms / 1000;
    let (n, unit) = if s >= 2 * 86_400 {
        (s / 86_400, "day")
    } else if s >= 2 * 3600 {
        (s / 3600, "hour")
    } else if s >= 2 * 60 {
        (s / 60, "minute")
    } else {
        (s, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// `2026-12-02 08:00:00 UTC`.
pub fn time_text(ms: UnixMillis) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_millis(ms))
        .to_string()
        .replace('T', " ")
        .replace('Z', " UTC")
}

pub(crate) fn escape_html(t: &str) -> String {
    let mut o = String::with_capacity(t.len());
    for c in t.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// A way alerts leave the server.
pub trait Channel: Send + Sync + 'static {
    /// `mail`, `webhook`: the worker is `alerts-NAME`.
    fn name(&self) -> &'static str;
    /// Where an alert of an org with these settings goes; none: nowhere.
    fn targets(&self, r: &Reporting) -> Vec<String>;
    /// Hand `n` over to `target`; what the far end answered, or why not.
    fn deliver<'a>(&'a self, n: &'a Notice, target: &'a str, r: &'a Reporting)
        -> DeliverFuture<'a>;
    /// Whether this channel sends the orgs' digests (mail does).
    fn digests(&self) -> bool {
        false
    }
    /// Hand digest `d` over to `target`.
    fn deliver_digest<'a>(
        &'a self,
        d: &'a crate::digest::DigestNotice,
        target: &'a str,
    ) -> DeliverFuture<'a> {
        let _ = (d, target);
        Box::pin(async { Err("this channel sends no digests".to_string()) })
    }
    /// Send a test message to `to` (mail only).
    fn test<'a>(&'a self, to: &'a str) -> DeliverFuture<'a> {
        let _ = to;
        Box::pin(async { Err("this channel sends no test messages".to_string()) })
    }
}

/// How deliveries are retried.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    pub interval: Duration,
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// An attempt's claim: after this, a claim whose attempt never
    /// reported back (a crash) may be taken again.
    pub lease: Duration,
    /// `[http] public_url`: the console links.
    pub public_url: Option<String>,
}

impl DeliveryPolicy {
    /// The wait before attempt `attempts + 1`.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let f = 1u32 << attempts.saturating_sub(1).min(20);
        self.retry_min.saturating_mul(f).min(self.retry_max)
    }
}

impl Coffer {
    /// The `reporting` settings in force for `org`.
    pub fn reporting(&self, org: &Name) -> Result<Reporting> {
        let v = self.reporting_values(org)?;
        let list = |k: &str| -> Vec<String> {
            v.get(k)
                .and_then(|e| e.value.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Reporting {
            recipients: list("recipients"),
            webhooks: list("webhooks"),
            webhook_secret: v
                .get("webhook_secret")
                .and_then(|e| e.value.as_str())
                .unwrap_or_default()
                .to_string(),
        })
    }

    /// The delivery worker of `channel`. Its cursor starts at the outbox's
    /// end the first time the channel is configured (earlier alerts stay
    /// in `coffer admin alerts`), here, before any worker runs.
    pub fn delivery_worker(
        &self,
        channel: Arc<dyn Channel>,
        policy: DeliveryPolicy,
    ) -> Result<Arc<dyn Worker>> {
        let from = self.meta.start_delivery_channel(channel.name())?;
        tracing::info!(
            channel = channel.name(),
            after = from,
            "alert channel ready"
        );
        Ok(Arc::new(Delivery {
            core: self.clone(),
            worker: format!("alerts-{}", channel.name()),
            channel,
            policy,
        }))
    }

    /// The mail channel `coffer admin mail test` uses.
    pub fn set_mailer(&self, m: Arc<dyn Channel>) {
        let _ = self.mailer.set(m);
    }

    /// Send a test mail to `to` now; what the mail server answered.
    pub async fn test_mail(&self, p: &Principal, to: &str) -> Result<String> {
        self.require(p, Permission::ManageServer, "sending a test mail")
            .await?;
        let spec = crate::settings::Group::Reporting
            .spec("recipients")
            .map_err(CoreError::Internal)?;
        spec.parse(to)
            .map_err(|e| CoreError::InvalidRequest(e.replacen("recipients", "to", 1)))?;
        let Some(m) = self.mailer.get() else {
            return Err(CoreError::Conflict(
                "mail is not configured on this server: add a [mail] table with at least `host` and `from` to the config file and restart".into(),
            ));
        };
        let answer = m.test(to).await.map_err(|e| {
            CoreError::DeliveryFailed(format!("the test mail to {to} was not sent: {e}"))
        })?;
        self.meta.audit_append(&self.draft(
            p,
            "mail.test",
            format!("mail:{to}"),
            [("answer", answer.clone())],
        ))?;
        self.meta.durable().await?;
        Ok(answer)
    }

    /// The store's id (the right part of alert ids), read once.
    fn store_id(&self) -> Result<&str> {
        if let Some(id) = self.monitor.store_id.get() {
            return Ok(id);
        }
        let id = self.meta.store_id()?;
        Ok(self.monitor.store_id.get_or_init(|| id))
    }

    /// The notice of outbox entry `a` (`None`: its device is gone).
    fn notice(&self, a: &AlertRecord, public_url: Option<&str>) -> Result<Option<Notice>> {
        let Some(d) = self.meta.device(&a.device)? else {
            return Ok(None);
        };
        let archive = self.meta.archive(&d.archive)?;
        let info = device_info(d, archive);
        Ok(Some(Notice::new(a, &info, self.store_id()?, public_url)))
    }

    /// One step of `channel`: take new outbox entries in, then attempt what
    /// is due. How many deliveries it made.
    async fn deliver_step(&self, channel: &dyn Channel, policy: &DeliveryPolicy) -> Result<usize> {
        let name = channel.name();
        // Take in.
        loop {
            let Some(from) = self.meta.delivery_cursor(name)? else {
                return Err(CoreError::Internal(format!(
                    "channel {name} was not started"
                )));
            };
            let batch = self.meta.alerts(from, TAKE_PER_STEP)?;
            let Some(last) = batch.last().map(|a| a.seq) else {
                break;
            };
            let now = self.now();
            let mut recs = Vec::new();
            for a in &batch {
                if a.digest && !channel.digests() {
                    continue;
                }
                let r = self.reporting(&a.org)?;
                for target in channel.targets(&r) {
                    recs.push(DeliveryRecord {
                        channel: name.to_string(),
                        seq: a.seq,
                        target,
                        attempts: 0,
                        next_attempt: now,
                        claimed_until: None,
                        last_error: None,
                        delivered_at: None,
                        outcome: None,
                    });
                }
            }
            self.meta.take_into_channel(name, from, last, &recs)?;
            if batch.len() < TAKE_PER_STEP {
                break;
            }
        }
        // Attempt.
        let mut made = 0;
        for rec in self.meta.pending_deliveries(name, PENDING_PER_STEP)? {
            let now = self.now();
            if rec.next_attempt > now || rec.claimed_until.is_some_and(|c| c > now) {
                continue;
            }
            let claimed = DeliveryRecord {
                claimed_until: Some(now.saturating_add(policy.lease.as_millis() as u64)),
                ..rec.clone()
            };
            if !self.meta.update_delivery(&rec, &claimed)? {
                continue; // another worker has it
            }
            let attempts = claimed.attempts.saturating_add(1);
            let outcome = match self.meta.alert(rec.seq)? {
                None => Ok("the alert is gone".to_string()),
                Some(a) if a.digest => {
                    let d =
                        self.digest_notice(&a, self.store_id()?, policy.public_url.as_deref())?;
                    channel.deliver_digest(&d, &rec.target).await
                }
                Some(a) => match self.notice(&a, policy.public_url.as_deref())? {
                    None => Ok("the device is gone".to_string()),
                    Some(n) => {
                        let r = self.reporting(&a.org)?;
                        channel.deliver(&n, &rec.target, &r).await
                    }
                },
            };
            let now = self.now();
            match outcome {
                Ok(answer) => {
                    let done = DeliveryRecord {
                        attempts,
                        claimed_until: None,
                        delivered_at: Some(now),
                        outcome: Some(answer.clone()),
                        ..claimed.clone()
                    };
                    if self.meta.delivery_done(&claimed, &done)? {
                        made += 1;
                        // At once, not at the step's end: the window in
                        // which a crash makes it send again stays the
                        // moment between the far end's answer and this.
                        self.meta.durable().await?;
                        tracing::info!(channel = name, seq = rec.seq, target = %rec.target, attempts, answer = %answer, "alert delivered");
                    }
                }
                Err(why) => {
                    let wait = policy.backoff(attempts);
                    let failed = DeliveryRecord {
                        attempts,
                        claimed_until: None,
                        next_attempt: now.saturating_add(wait.as_millis() as u64),
                        last_error: Some(why.clone()),
                        ..claimed.clone()
                    };
                    self.meta.update_delivery(&claimed, &failed)?;
                    tracing::warn!(channel = name, seq = rec.seq, target = %rec.target, attempts, retry_in_ms = wait.as_millis() as u64, error = %why, "alert delivery failed; will retry");
                }
            }
        }
        Ok(made)
    }
}

struct Delivery {
    core: Coffer,
    worker: String,
    channel: Arc<dyn Channel>,
    policy: DeliveryPolicy,
}

impl Worker for Delivery {
    fn name(&self) -> &str {
        &self.worker
    }

    fn interval(&self) -> Duration {
        self.policy.interval
    }

    fn step(&self) -> StepFuture<'_> {
        Box::pin(async move {
            self.core
                .deliver_step(self.channel.as_ref(), &self.policy)
                .await
                .map(|_| ())
                .map_err(|e| format!("deliver alerts: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use coffer_types::wire::SetOrgSettings;

    use super::*;
    use crate::testing::{name, Fixture};

    /// A channel that fails its first `fail` attempts and records the rest.
    #[derive(Default)]
    struct Flaky {
        fail: AtomicUsize,
        got: Mutex<Vec<(u64, String, String)>>,
    }

    impl Channel for Flaky {
        fn name(&self) -> &'static str {
            "mail"
        }
        fn digests(&self) -> bool {
            true
        }
        fn deliver_digest<'a>(
            &'a self,
            d: &'a crate::digest::DigestNotice,
            target: &'a str,
        ) -> DeliverFuture<'a> {
            Box::pin(async move {
                let text = d.text();
                self.got.lock().unwrap().push((
                    d.seq,
                    target.to_string(),
                    format!("{}\n{text}", d.subject()),
                ));
                Ok("250 ok".into())
            })
        }
        fn targets(&self, r: &Reporting) -> Vec<String> {
            if r.recipients.is_empty() {
                vec![]
            } else {
                vec![r.recipients.join(",")]
            }
        }
        fn deliver<'a>(
            &'a self,
            n: &'a Notice,
            target: &'a str,
            _: &'a Reporting,
        ) -> DeliverFuture<'a> {
            Box::pin(async move {
                if self
                    .fail
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
                    .is_ok()
                {
                    return Err("connection refused".into());
                }
                self.got
                    .lock()
                    .unwrap()
                    .push((n.seq, target.to_string(), n.subject()));
                Ok("250 ok".into())
            })
        }
    }

    fn policy() -> DeliveryPolicy {
        DeliveryPolicy {
            interval: Duration::from_millis(100),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(4),
            lease: Duration::from_secs(60),
            public_url: Some("https://coffer.example".into()),
        }
    }

    async fn reporting(f: &Fixture, org: &str, values: &[(&str, &str)]) {
        f.core
            .set_org_settings(
                &f.admin(),
                &name(org),
                &SetOrgSettings {
                    group: "reporting".into(),
                    values: values
                        .iter()
                        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
                        .collect(),
                    mode: None,
                },
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn each_alert_is_delivered_once_after_failures_and_restarts() {
        let f = Fixture::new();
        f.org("acme", None).await;
        reporting(
            &f,
            "acme",
            &[
                ("warning_after", "10s"),
                ("critical_after", "30s"),
                ("alert_warning_after", "10s"),
                ("alert_critical_after", "20s"),
                ("recipients", "ops@acme.example,boss@acme.example"),
            ],
        )
        .await;
        let dev = f.device("acme", "ann", "laptop").await;
        let ch = Arc::new(Flaky::default());
        ch.fail.store(2, Ordering::SeqCst);
        let c = &f.core;
        let _w = c.delivery_worker(ch.clone(), policy()).unwrap();
        c.evaluate_health().await.unwrap();
        f.clock.advance(10_000);
        assert_eq!(c.evaluate_health().await.unwrap().1, 1);
        // Two failures, backing off 1 s then 2 s.
        assert_eq!(c.deliver_step(ch.as_ref(), &policy()).await.unwrap(), 0);
        assert_eq!(c.deliver_step(ch.as_ref(), &policy()).await.unwrap(), 0);
        f.clock.advance(1_000);
        assert_eq!(c.deliver_step(ch.as_ref(), &policy()).await.unwrap(), 0);
        f.clock.advance(1_999);
        assert_eq!(c.deliver_step(ch.as_ref(), &policy()).await.unwrap(), 0);
        let list = c.alerts(&f.admin(), 0, 10).await.unwrap().alerts;
        let d = &list[0].deliveries[0];
        assert_eq!((d.state.as_str(), d.attempts), ("pending", 2));
        assert_eq!(d.last_error.as_deref(), Some("connection refused"));
        f.clock.advance(1);
        assert_eq!(c.deliver_step(ch.as_ref(), &policy()).await.unwrap(), 1);
        // A restart (a new core, a new worker) delivers nothing again.
        let again = f.restarted();
        let _w = again.delivery_worker(ch.clone(), policy()).unwrap();
        assert_eq!(again.deliver_step(ch.as_ref(), &policy()).await.unwrap(), 0);
        assert_eq!(c.deliver_step(ch.as_ref(), &policy()).await.unwrap(), 0);
        let got = ch.got.lock().unwrap().clone();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, "ops@acme.example,boss@acme.example");
        assert!(
            got[0]
                .2
                .starts_with("[Coffer] warning: laptop (ann, acme) has never completed a backup"),
            "{}",
            got[0].2
        );
        let list = c.alerts(&f.admin(), 0, 10).await.unwrap().alerts;
        let d = &list[0].deliveries[0];
        assert_eq!((d.state.as_str(), d.attempts), ("delivered", 3));
        // Recorded but not yet delivered when the server stops: the next
        // one delivers it.
        f.clock.advance(10_000);
        assert_eq!(c.evaluate_health().await.unwrap().1, 1);
        let third = f.restarted();
        let _w = third.delivery_worker(ch.clone(), policy()).unwrap();
        assert_eq!(third.deliver_step(ch.as_ref(), &policy()).await.unwrap(), 1);
        assert_eq!(ch.got.lock().unwrap().len(), 2);
        // Two workers over one store at once: one claims, one delivers.
        f.device("acme", "bob", "desk").await;
        c.evaluate_health().await.unwrap();
        f.clock.advance(10_000);
        assert_eq!(c.evaluate_health().await.unwrap().1, 1);
        let p = policy();
        let (a, b) = tokio::join!(
            c.deliver_step(ch.as_ref(), &p),
            third.deliver_step(ch.as_ref(), &p)
        );
        assert_eq!(a.unwrap() + b.unwrap(), 1);
        assert_eq!(ch.got.lock().unwrap().len(), 3);
        let _ = dev;
    }

    #[tokio::test]
    async fn reminders_while_critical_and_none_without_recipients() {
        let f = Fixture::new();
        f.org("acme", None).await;
        reporting(
            &f,
            "acme",
            &[
                ("warning_after", "10s"),
                ("critical_after", "30s"),
                ("alert_warning_after", "10s"),
                ("alert_critical_after", "20s"),
                ("remind_every", "60s"),
            ],
        )
        .await;
        f.device("acme", "ann", "laptop").await;
        let c = &f.core;
        let ch = Arc::new(Flaky::default());
        let _w = c.delivery_worker(ch.clone(), policy()).unwrap();
        c.evaluate_health().await.unwrap();
        f.clock.advance(20_000);
        c.evaluate_health().await.unwrap();
        // (At 30 s the colour turns red: evaluated, nothing to send.)
        f.clock.advance(59_999);
        assert_eq!(c.evaluate_health().await.unwrap().1, 0);
        f.clock.advance(1);
        assert_eq!(c.evaluate_health().await.unwrap(), (1, 1));
        f.clock.advance(60_000);
        assert_eq!(c.evaluate_health().await.unwrap(), (1, 1));
        let log: Vec<_> = c
            .alerts(&f.admin(), 0, 10)
            .await
            .unwrap()
            .alerts
            .into_iter()
            .map(|a| (a.from, a.to, a.reminder))
            .collect();
        let s = |a: &str, b: &str, r| (a.to_string(), b.to_string(), r);
        assert_eq!(
            log,
            [
                s("ok", "critical", false),
                s("critical", "critical", true),
                s("critical", "critical", true)
            ]
        );
        // No recipients: nothing to deliver, nothing pending.
        assert_eq!(c.deliver_step(ch.as_ref(), &policy()).await.unwrap(), 0);
        assert!(c.meta.pending_deliveries("mail", 10).unwrap().is_empty());
        assert!(ch.got.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_daily_digest_goes_out_once_a_day_at_its_time() {
        const H: u64 = 3_600_000;
        let wed_0500 = 1_796_187_600_000; // 2026-12-02T05:00:00Z
        let f = Fixture::new();
        f.clock.set(wed_0500);
        f.org("acme", None).await;
        reporting(
            &f,
            "acme",
            &[
                ("warning_after", "1h"),
                ("critical_after", "2h"),
                ("digest", "daily"),
                ("digest_time", "08:00"),
                ("recipients", "ops@acme.example"),
            ],
        )
        .await;
        f.device("acme", "ann", "old-laptop").await;
        let c = &f.core;
        let ch = Arc::new(Flaky::default());
        let _w = c.delivery_worker(ch.clone(), policy()).unwrap();
        let digests = |c: &Coffer| {
            c.meta
                .alerts(0, 100)
                .unwrap()
                .into_iter()
                .filter(|a| a.digest)
                .count()
        };
        // Turned on at 05:00: that day's 08:00 is the first.
        c.evaluate_health().await.unwrap();
        f.clock.set(wed_0500 + 3 * H - 60_000);
        f.device("acme", "bob", "new-desktop").await;
        c.evaluate_health().await.unwrap();
        assert_eq!(digests(c), 0);
        f.clock.set(wed_0500 + 3 * H);
        c.evaluate_health().await.unwrap();
        c.evaluate_health().await.unwrap();
        assert_eq!(digests(c), 1);
        // (The digest tells the devices as they are when it is sent.)
        assert_eq!(c.deliver_step(ch.as_ref(), &policy()).await.unwrap(), 1);
        // A restart within the period records nothing more.
        f.clock.advance(H);
        let again = f.restarted();
        again.evaluate_health().await.unwrap();
        assert_eq!(digests(c), 1);
        let got = ch.got.lock().unwrap().clone();
        let digest = got.iter().find(|g| g.2.contains("digest")).unwrap();
        assert_eq!(digest.1, "ops@acme.example");
        assert!(
            digest
                .2
                .starts_with("[Coffer] daily digest of acme: 1 critical, 0 warning, 1 ok\n"),
            "{}",
            digest.2
        );
        assert!(digest.2.contains("old-laptop (ann)"), "{}", digest.2);
        assert!(!digest.2.contains("new-desktop"), "{}", digest.2);
        // The next day at 08:00, the next one.
        f.clock.set(wed_0500 + 27 * H - 1);
        c.evaluate_health().await.unwrap();
        assert_eq!(digests(c), 1);
        f.clock.advance(1);
        c.evaluate_health().await.unwrap();
        assert_eq!(digests(c), 2);
        // Webhooks do not take digests: nothing pending for them.
        assert!(c.meta.pending_deliveries("webhook", 10).unwrap().is_empty());
    }

    #[test]
    fn subjects_name_state_device_and_how_long() {
        assert_eq!(span(5 * 86_400_000 + 7), "5 days");
        assert_eq!(span(86_400_000), "24 hours");
        assert_eq!(span(90_000), "90 seconds");
        assert_eq!(span(1000), "1 second");
        assert_eq!(time_text(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            escape_html("<a href='x'>&"),
            "&lt;a href=&#39;x&#39;&gt;&amp;"
        );
    }
}
