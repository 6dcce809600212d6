//! The alert channels the core's delivery workers hand alerts to: mail
//! over SMTP (lettre, TLS on rustls) and signed webhook posts (the
//! server's own outbound HTTP client).

use std::time::Duration;

use anyhow::Context;
use coffer_core::notify::{Channel, DeliverFuture, Notice, Reporting};
use coffer_http::outbound::{Outbound, OutboundRequest};
use hmac::Mac;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{AlertsConfig, MailConfig, MailTls};

/// Alert mail through the operator's SMTP server.
pub struct Mail {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// The right part of each `Message-ID`.
    domain: String,
}

impl Mail {
    /// The mail channel `[mail]` describes; `None` when `mail.host` is
    /// unset.
    pub fn new(cfg: &MailConfig) -> anyhow::Result<Option<Self>> {
        let Some(host) = &cfg.host else {
            return Ok(None);
        };
        let from: Mailbox = cfg
            .from
            .as_deref()
            .unwrap_or_default()
            .parse()
            .context("mail.from")?;
        let tls = |host: &str| -> anyhow::Result<TlsParameters> {
            let mut b = TlsParameters::builder(host.to_string());
            if let Some(ca) = &cfg.ca_file {
                let pem = std::fs::read(ca)
                    .with_context(|| format!("read mail.ca_file {}", ca.display()))?;
                b = b.add_root_certificate(
                    Certificate::from_pem(&pem)
                        .with_context(|| format!("mail.ca_file {}", ca.display()))?,
                );
            }
            b.build_rustls().context("mail TLS settings")
        };
        let (tls, port) = match cfg.tls {
            MailTls::Starttls => (Tls::Required(tls(host)?), 587),
            MailTls::Tls => (Tls::Wrapper(tls(host)?), 465),
            MailTls::None => (Tls::None, 25),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(cfg.port.unwrap_or(port))
            .tls(tls)
            .timeout(Some(Duration::from_secs(cfg.timeout_secs.unwrap_or(30))));
        if let Some(user) = &cfg.username {
            let password = match (&cfg.password, &cfg.password_file) {
                (Some(p), _) => p.clone(),
                (None, Some(f)) => std::fs::read_to_string(f)
                    .with_context(|| format!("read mail.password_file {}", f.display()))?
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                (None, None) => String::new(),
            };
            b = b.credentials(Credentials::new(user.clone(), password));
        }
        let domain = from.email.domain().to_string();
        Ok(Some(Self {
            transport: b.build(),
            from,
            domain,
        }))
    }

    async fn send(&self, msg: Message) -> Result<String, String> {
        let r = self.transport.send(msg).await.map_err(|e| {
            let mut s = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(c) = src {
                s.push_str(&format!(": {c}"));
                src = c.source();
            }
            s
        })?;
        Ok(format!(
            "{} {}",
            r.code(),
            r.message().collect::<Vec<_>>().join(" ")
        ))
    }

    fn message(&self, to: &str) -> Result<lettre::message::MessageBuilder, String> {
        let mut m = Message::builder()
            .from(self.from.clone())
            .user_agent(format!("Coffer {}", env!("CARGO_PKG_VERSION")));
        for a in to.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            m = m.to(a
                .parse::<Mailbox>()
                .map_err(|e| format!("{a:?} is not a mail address: {e}"))?);
        }
        Ok(m)
    }
}

impl Channel for Mail {
    fn name(&self) -> &'static str {
        "mail"
    }

    fn targets(&self, r: &Reporting) -> Vec<String> {
        if r.recipients.is_empty() {
            Vec::new()
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
            let msg = self
                .message(target)?
                .subject(n.subject())
                // The same id at every attempt: a receiver drops the copy a
                // crash after the server accepted made us send again.
                .message_id(Some(format!("<{}@{}>", n.id, self.domain)))
                .multipart(MultiPart::alternative_plain_html(n.text(), n.html()))
                .map_err(|e| format!("build the mail: {e}"))?;
            self.send(msg).await
        })
    }

    fn digests(&self) -> bool {
        true
    }

    fn deliver_digest<'a>(
        &'a self,
        d: &'a coffer_core::digest::DigestNotice,
        target: &'a str,
    ) -> DeliverFuture<'a> {
        Box::pin(async move {
            let msg = self
                .message(target)?
                .subject(d.subject())
                .message_id(Some(format!("<{}@{}>", d.id, self.domain)))
                .multipart(MultiPart::alternative_plain_html(d.text(), d.html()))
                .map_err(|e| format!("build the mail: {e}"))?;
            self.send(msg).await
        })
    }

    fn test<'a>(&'a self, to: &'a str) -> DeliverFuture<'a> {
        Box::pin(async move {
            let msg = self
                .message(to)?
                .subject("[Coffer] test mail")
                .body(
                    "This is a test mail from Coffer: alert mails from this server reach you.\n"
                        .to_string(),
                )
                .map_err(|e| format!("build the mail: {e}"))?;
            self.send(msg).await
        })
    }
}

/// Alert posts to the org's `reporting.webhooks`, signed with its
/// `reporting.webhook_secret`.
pub struct Webhook {
    out: Outbound,
    allowed: Vec<String>,
    timeout: Duration,
}

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "x-coffer-signature";

/// `t=<ms>,sha256=<hex>`: HMAC-SHA256 with `secret` over `<ms>.<body>`.
pub fn signature(secret: &str, t: u64, body: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    format!("t={t},sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhook {
    pub fn new(cfg: &AlertsConfig) -> anyhow::Result<Self> {
        Ok(Self {
            out: Outbound::new().map_err(anyhow::Error::msg)?,
            allowed: cfg.webhook_allowed_hosts.clone(),
            timeout: Duration::from_secs(cfg.webhook_timeout_secs),
        })
    }
}

impl Channel for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn targets(&self, r: &Reporting) -> Vec<String> {
        r.webhooks.clone()
    }

    fn deliver<'a>(&'a self, n: &'a Notice, url: &'a str, r: &'a Reporting) -> DeliverFuture<'a> {
        Box::pin(async move {
            let dest = coffer_plugin_host::net::check_destination(
                url,
                &self.allowed,
                "alerts.webhook_allowed_hosts",
            )
            .await?;
            let body = serde_json::to_vec(n).map_err(|e| e.to_string())?;
            let mut headers = vec![
                ("content-type".to_string(), "application/json".to_string()),
                (
                    "user-agent".to_string(),
                    format!("Coffer/{}", env!("CARGO_PKG_VERSION")),
                ),
                ("x-coffer-event".to_string(), n.event.to_string()),
                ("x-coffer-delivery".to_string(), n.id.clone()),
            ];
            if !r.webhook_secret.is_empty() {
                let t = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                headers.push((
                    SIGNATURE_HEADER.to_string(),
                    signature(&r.webhook_secret, t, &body),
                ));
            }
            let answer = self
                .out
                .send(
                    dest.addr,
                    dest.tls_name,
                    OutboundRequest {
                        method: "POST".into(),
                        url: url.to_string(),
                        headers,
                        body,
                    },
                    self.timeout,
                    4096,
                )
                .await?;
            if (200..300).contains(&answer.status) {
                Ok(format!("HTTP {}", answer.status))
            } else {
                Err(format!(
                    "{url} answered HTTP {}: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ))
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_time_and_body() {
        // Python: hmac.new(b"k", b"1.body", hashlib.sha256).hexdigest()
        assert_eq!(
            signature("k", 1, b"body"),
            "t=1,sha256=6e005234e2e9b8d2d4963e861925cbc22f29be0a65e4d9ba7cd6b8af0115dae2"
        );
    }
}
