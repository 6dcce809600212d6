//! Alert delivery through the real server: mail to a real SMTP server on
//! loopback (aiosmtpd), across an SMTP outage and a server restart between
//! the transition and the delivery, and webhooks to a loopback listener
//! that checks the signature.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use coffer_types::wire::{AlertList, DeviceList};
use coffer_types::BlockId;
use hmac::Mac;

use crate::harness::*;

fn fast(opts: Opts) -> Opts {
    opts.env("COFFER__WORKERS__HEALTH_TICK_MS", 100)
        .env("COFFER__ALERTS__TICK_MS", 100)
        .env("COFFER__ALERTS__RETRY_MIN_MS", 200)
        .env("COFFER__ALERTS__RETRY_MAX_MS", 800)
}

fn alerts(server: &TestServer) -> AlertList {
    serde_json::from_str(&cli_ok(&server.cli(&["alerts", "--json"]))).unwrap()
}

fn subjects(m: &[ReceivedMail]) -> Vec<String> {
    m.iter()
        .map(|m| m.header("Subject").unwrap_or_default().to_string())
        .collect()
}

/// Wait (bounded) until `cond` holds of the alert log.
async fn until_alerts(server: &TestServer, what: &str, cond: impl Fn(&AlertList) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let l = alerts(server);
        if cond(&l) {
            return;
        }
        assert!(Instant::now() < deadline, "waited for {what}: {l:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_mail_per_alert_through_an_smtp_outage_and_a_restart() {
    let mut smtp = SmtpServer::start();
    let mut server = TestServer::start(
        fast(smtp.server_env(Opts::default()))
            .env("COFFER__HTTP__PUBLIC_URL", "https://coffer.example"),
    )
    .await;
    cli_ok(&server.cli(&["org", "create", "acme"]));
    cli_ok(&server.cli(&["org", "create", "acme-eu", "--parent", "acme"]));
    // Thresholds and recipients set on acme, inherited by acme-eu.
    cli_ok(&server.cli(&[
        "org",
        "settings",
        "set",
        "acme",
        "reporting.warning_after=2s",
        "reporting.critical_after=30s",
        "reporting.alert_warning_after=2s",
        "reporting.alert_critical_after=4s",
        "reporting.recipients=ops@acme.example,it@acme.example",
    ]));

    // The test mail: the SMTP server's answer comes back.
    let out = cli_ok(&server.cli(&["mail", "test", "--to", "ops@acme.example"]));
    assert!(out.contains("accepted by the mail server: 250"), "{out}");
    let got = smtp.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(subjects(&got), ["[Coffer] test mail"]);
    let bad = server.cli(&["mail", "test", "--to", "not an address"]);
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("is not a mail address"),
        "{bad:?}"
    );

    let start = Instant::now();
    let dan = server.enroll("acme-eu", "dan", "dan-laptop").await;
    let eve = server.enroll("acme-eu", "eve", "eve-desktop").await;
    cli_ok(&server.cli(&["device", "park", &eve.device]));
    let body = block_bytes(7, 1000);
    let id = BlockId::of(&body);
    let s = dan.open_session().await;
    assert_eq!(dan.put_in(&s, &body).await.status, 201);
    assert_eq!(dan.commit(&s, &id, &[id], 100.0).await.status, 201);

    // 2 s without a connection: the warning, one mail to both recipients.
    let got = smtp.wait_for(2, Duration::from_secs(10)).await;
    assert!(start.elapsed() >= Duration::from_secs(2));
    assert_eq!(got.len(), 2, "{:?}", subjects(&got));
    let warning = &got[1];
    assert_eq!(
        warning.header("Subject"),
        Some("[Coffer] warning: dan-laptop (dan, acme-eu) has not connected for 2 seconds")
    );
    assert_eq!(
        warning.header("To"),
        Some("ops@acme.example, it@acme.example")
    );
    assert!(warning.raw.contains("text/plain") && warning.raw.contains("text/html"));
    let link = format!("https://coffer.example/console/devices/{}", dan.device);
    let text = warning.decoded();
    assert!(text.contains(&link), "{text}");
    assert!(text.contains(&format!("<a href=\"{link}\">")), "{text}");
    for fact in [
        "User                   dan",
        "Organization           acme-eu",
        "Reason                 not connecting",
        "Last completed backup",
    ] {
        assert!(text.contains(fact), "{fact} not in {text}");
    }
    let message_id = warning.header("Message-ID").unwrap().to_string();
    assert!(
        message_id.starts_with("<alert-") && message_id.ends_with("@coffer.test>"),
        "{message_id}"
    );

    // The SMTP server goes away; the critical alert is recorded at 4 s and
    // its delivery fails, and keeps failing, with the reason on record.
    smtp.stop();
    until_alerts(&server, "a failed critical delivery", |l| {
        l.alerts.iter().any(|a| {
            a.to == "critical"
                && a.deliveries
                    .iter()
                    .any(|d| d.state == "pending" && d.attempts >= 2 && d.last_error.is_some())
        })
    })
    .await;
    // The server is killed before it could deliver, and comes back.
    server.restart();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(smtp.messages().len(), 2);
    smtp.resume();
    let got = smtp.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 3, "{:?}", subjects(&got));
    assert_eq!(
        got[2].header("Subject"),
        Some("[Coffer] critical: dan-laptop (dan, acme-eu) has not connected for 4 seconds")
    );

    // A complete backup: the recovery, once.
    let dan = dan.reconnect(&server).await;
    let body = block_bytes(8, 1000);
    let id2 = BlockId::of(&body);
    let s = dan.open_session().await;
    assert_eq!(dan.put_in(&s, &body).await.status, 201);
    assert_eq!(dan.commit(&s, &id2, &[id, id2], 100.0).await.status, 201);
    let got = smtp.wait_for(4, Duration::from_secs(10)).await;
    assert_eq!(
        got[3].header("Subject"),
        Some("[Coffer] recovered: dan-laptop (dan, acme-eu) is backing up again")
    );
    // Nothing more: no duplicate, and nothing for the parked device (its
    // warning time has long passed). The next warning of dan comes 2 s
    // after its backup; stop looking before.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let got = smtp.messages();
    assert_eq!(got.len(), 4, "{:?}", subjects(&got));
    let ids: std::collections::BTreeSet<_> = got[1..]
        .iter()
        .filter_map(|m| m.header("Message-ID"))
        .collect();
    assert_eq!(ids.len(), 3, "each alert mail its own Message-ID");
    assert!(subjects(&got).iter().all(|s| !s.contains("eve-desktop")));

    // The log shows each delivery: the critical one after retries.
    let l = alerts(&server);
    let critical = l.alerts.iter().find(|a| a.to == "critical").unwrap();
    let d = &critical.deliveries[0];
    assert_eq!(
        (d.channel.as_str(), d.state.as_str()),
        ("mail", "delivered")
    );
    assert_eq!(d.target, "ops@acme.example,it@acme.example");
    assert!(d.attempts >= 3, "{d:?}");
    assert!(
        d.outcome.as_deref().unwrap_or_default().starts_with("250"),
        "{d:?}"
    );
    let l: DeviceList =
        serde_json::from_str(&cli_ok(&server.cli(&["device", "list", "--json"]))).unwrap();
    assert_eq!(l.devices.len(), 2);
    let audit = cli_ok(&server.cli(&["audit", "list", "--json"]));
    assert!(audit.contains("mail.test"), "{audit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_test_says_when_mail_is_not_configured_or_unreachable() {
    let server = TestServer::h2c().await;
    let out = server.cli(&["mail", "test", "--to", "ops@acme.example"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mail is not configured"), "{err}");
    // Configured, but nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = TestServer::start(
        Opts::default()
            .env("COFFER__MAIL__HOST", "127.0.0.1")
            .env("COFFER__MAIL__PORT", port)
            .env("COFFER__MAIL__TLS", "none")
            .env("COFFER__MAIL__FROM", "coffer@coffer.test"),
    )
    .await;
    let out = server.cli(&["mail", "test", "--to", "ops@acme.example", "--json"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("delivery_failed") || err.contains("was not sent"),
        "{err}"
    );
}

/// What the listener received: each request's headers and body.
type Posts = Arc<Mutex<Vec<(Vec<(String, String)>, Vec<u8>)>>>;

/// A loopback HTTP/1.1 listener: answers `500` to its first `fail` posts,
/// then `204`, and keeps every request's headers and body.
struct Hook {
    port: u16,
    got: Posts,
}

impl Hook {
    async fn start(fail: usize) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let got: Posts = Arc::default();
        let g = got.clone();
        tokio::spawn(async move {
            let mut seen = 0;
            while let Ok((mut c, _)) = l.accept().await {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body_start) = loop {
                    let n = c.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break (String::new(), 0);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break (String::from_utf8_lossy(&buf[..i]).to_string(), i + 4);
                    }
                };
                let headers: Vec<(String, String)> = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < body_start + len {
                    let n = c.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = buf[body_start.min(buf.len())..].to_vec();
                g.lock().unwrap().push((headers, body));
                seen += 1;
                let status = if seen <= fail {
                    "500 Internal Server Error"
                } else {
                    "204 No Content"
                };
                let _ = c
                    .write_all(
                        format!(
                            "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                        )
                        .as_bytes(),
                    )
                    .await;
            }
        });
        Self { port, got }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_retried_and_sent_once() {
    let hook = Hook::start(1).await;
    let server = TestServer::start(fast(Opts {
        config: Some(format!(
            "[alerts]\nwebhook_allowed_hosts = [\"127.0.0.1:{}\"]\n",
            hook.port
        )),
        ..Default::default()
    }))
    .await;
    cli_ok(&server.cli(&["org", "create", "acme"]));
    let url = format!("http://127.0.0.1:{}/coffer", hook.port);
    cli_ok(&server.cli(&[
        "org",
        "settings",
        "set",
        "acme",
        "reporting.warning_after=1s",
        "reporting.critical_after=30s",
        "reporting.alert_warning_after=1s",
        "reporting.alert_critical_after=60s",
        &format!("reporting.webhooks={url},http://10.1.2.3/not-allowed"),
        "reporting.webhook_secret=s3cret-s3cret",
    ]));
    let dev = server.enroll("acme", "ann", "ann-laptop").await;
    // The warning at 1 s: the first post is answered 500, the retry 204.
    let deadline = Instant::now() + Duration::from_secs(15);
    while hook.got.lock().unwrap().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = hook.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "one failure, one success, no more");
    assert_eq!(got[0].1, got[1].1, "the retry posts the same alert");
    let (headers, body) = &got[1];
    let h = |k: &str| {
        headers
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(h("content-type"), "application/json");
    assert_eq!(h("x-coffer-event"), "health.alert");
    // The signature: HMAC-SHA256 with the org's secret over "<t>.<body>".
    let sig = h("x-coffer-signature");
    let (t, mac) = sig
        .strip_prefix("t=")
        .and_then(|s| s.split_once(",sha256="))
        .unwrap_or_else(|| panic!("signature header {sig:?}"));
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"s3cret-s3cret").unwrap();
    m.update(format!("{t}.").as_bytes());
    m.update(body);
    m.verify_slice(&hex::decode(mac).unwrap())
        .expect("the signature verifies with the org's secret");
    let mut other = hmac::Hmac::<sha2::Sha256>::new_from_slice(b"another").unwrap();
    other.update(format!("{t}.").as_bytes());
    other.update(body);
    assert!(other.verify_slice(&hex::decode(mac).unwrap()).is_err());
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["event"], "health.alert");
    assert_eq!(v["to"], "warning");
    assert_eq!(v["reason"], "never_backed_up");
    assert_eq!(v["device"]["device"], dev.device.as_str());
    assert_eq!(v["device"]["org"], "acme");
    assert_eq!(h("x-coffer-delivery"), v["id"].as_str().unwrap());
    // The URL off the operator's allow-list is refused, and says why.
    let l = alerts(&server);
    let ds = &l.alerts[0].deliveries;
    let refused = ds.iter().find(|d| d.target.contains("10.1.2.3")).unwrap();
    assert_eq!(refused.state, "pending");
    assert!(
        refused
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("alerts.webhook_allowed_hosts"),
        "{refused:?}"
    );
    let ok = ds.iter().find(|d| d.target == url).unwrap();
    assert_eq!((ok.state.as_str(), ok.attempts), ("delivered", 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_over_starttls_and_implicit_tls_and_an_untrusted_certificate_is_refused() {
    for implicit in [false, true] {
        let smtp = SmtpServer::start_tls(implicit);
        let server = TestServer::start(smtp.server_env(Opts::default())).await;
        let out = cli_ok(&server.cli(&["mail", "test", "--to", "ops@acme.example"]));
        assert!(out.contains("250"), "{out}");
        let got = smtp.wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(
            subjects(&got),
            ["[Coffer] test mail"],
            "implicit = {implicit}"
        );
        // Without the certificate among the trusted ones: refused, saying
        // why, and nothing sent.
        let mut opts = smtp.server_env(Opts::default());
        opts.env.retain(|(k, _)| k != "COFFER__MAIL__CA_FILE");
        let server = TestServer::start(opts).await;
        let out = server.cli(&["mail", "test", "--to", "ops@acme.example"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("delivery_failed") && err.to_lowercase().contains("certificate"),
            "implicit = {implicit}: {err}"
        );
        assert_eq!(smtp.messages().len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_digest_mail_arrives_at_its_time_once() {
    let smtp = SmtpServer::start();
    let server = TestServer::start(fast(smtp.server_env(Opts::default()))).await;
    cli_ok(&server.cli(&["org", "create", "acme"]));
    let _dev = server.enroll("acme", "ann", "ann-laptop").await;
    // Four seconds from now, UTC (the period the digest is turned on in is
    // skipped, so this is its first).
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 4;
    let at = format!(
        "{:02}:{:02}:{:02}",
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60
    );
    cli_ok(&server.cli(&[
        "org",
        "settings",
        "set",
        "acme",
        "reporting.warning_after=1s",
        "reporting.critical_after=2s",
        "reporting.alert_warning_after=1h",
        "reporting.recipients=ops@acme.example",
        "reporting.digest=daily",
        &format!("reporting.digest_time={at}"),
    ]));
    let got = smtp.wait_for(1, Duration::from_secs(15)).await;
    assert_eq!(
        subjects(&got),
        ["[Coffer] daily digest of acme: 1 critical, 0 warning, 0 ok"]
    );
    let text = got[0].decoded();
    assert!(
        text.contains("ann-laptop (ann)") && text.contains("never backed up"),
        "{text}"
    );
    assert!(got[0].header("Message-ID").unwrap().starts_with("<digest-"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(smtp.messages().len(), 1, "one digest a day");
    let l = alerts(&server);
    assert!(
        l.alerts.iter().any(|a| a.digest && a.reason == "daily"),
        "{l:?}"
    );
}
