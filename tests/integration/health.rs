//! Device health through the real server and `coffer admin device list`,
//! with thresholds of seconds: states and reasons as time passes and facts
//! arrive, thresholds inherited down the org tree, parked devices, and the
//! alert log: each change of alert level recorded once.

use std::time::{Duration, Instant};

use coffer_types::wire::DeviceList;
use coffer_types::BlockId;

use crate::harness::*;

/// Each device's `(state, reason, alert)` by name.
fn health(server: &TestServer) -> std::collections::BTreeMap<String, (String, String, String)> {
    let l: DeviceList =
        serde_json::from_str(&cli_ok(&server.cli(&["device", "list", "--json"]))).unwrap();
    l.devices
        .into_iter()
        .map(|d| {
            let h = d.health.expect("every device has a health object");
            (d.name, (h.state, h.reason, h.alert))
        })
        .collect()
}

fn h(state: &str, reason: &str, alert: &str) -> (String, String, String) {
    (state.into(), reason.into(), alert.into())
}

/// Wait until `at` (bounded by the test's own figures).
async fn until(at: Instant) {
    tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn states_and_reasons_follow_the_facts_and_the_inherited_thresholds() {
    let server = TestServer::h2c().await;
    cli_ok(&server.cli(&["org", "create", "acme"]));
    cli_ok(&server.cli(&["org", "create", "acme-eu", "--parent", "acme"]));
    cli_ok(&server.cli(&["org", "create", "beta"]));
    cli_ok(&server.cli(&[
        "org",
        "settings",
        "set",
        "acme",
        "reporting.warning_after=3s",
        "reporting.critical_after=9s",
        "reporting.alert_warning_after=3s",
        "reporting.alert_critical_after=6s",
    ]));
    let start = Instant::now();
    let _fresh = server.enroll("acme-eu", "ann", "fresh").await;
    let done = server.enroll("acme", "bob", "done").await;
    let _other = server.enroll("beta", "cy", "other").await;
    let _parked = server.enroll("acme", "dan", "parked").await;
    // `done` completes a backup.
    let body = block_bytes(5, 1000);
    let id = BlockId::of(&body);
    let s = done.open_session().await;
    assert_eq!(done.put_in(&s, &body).await.status, 201);
    assert_eq!(done.commit(&s, &id, &[id], 100.0).await.status, 201);

    let now = health(&server);
    assert_eq!(now["fresh"], h("ok", "never_backed_up", "ok"));
    assert_eq!(now["done"], h("ok", "ok", "ok"));
    assert_eq!(now["other"], h("ok", "never_backed_up", "ok"));
    assert_eq!(now.len(), 4);
    let l: DeviceList =
        serde_json::from_str(&cli_ok(&server.cli(&["device", "list", "--json"]))).unwrap();
    let dan = l.devices.iter().find(|d| d.name == "parked").unwrap();
    let out = cli_ok(&server.cli(&["device", "park", dan.device.as_str()]));
    assert!(out.contains("parked"), "{out}");

    // Past 3 s: `fresh` (in acme-eu, inheriting acme's thresholds) is
    // yellow, never backed up; `done` has not connected since; beta keeps
    // the defaults (3 days); the parked device is parked.
    until(start + Duration::from_millis(3300)).await;
    let now = health(&server);
    assert_eq!(now["fresh"], h("warning", "never_backed_up", "warning"));
    assert_eq!(now["done"], h("warning", "not_connecting", "warning"));
    assert_eq!(now["other"], h("ok", "never_backed_up", "ok"));
    assert_eq!(now["parked"], h("parked", "never_backed_up", "parked"));
    // `done` connects (any authenticated request), but sends nothing new.
    let r = done
        .client
        .get(&coffer_client::paths::agent_whoami())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        health(&server)["done"],
        h("warning", "connecting_no_new_data", "warning")
    );
    // Past 6 s the alert level is critical, the colour still yellow.
    until(start + Duration::from_millis(6300)).await;
    assert_eq!(
        health(&server)["fresh"],
        h("warning", "never_backed_up", "critical")
    );
    // New data and a complete backup: green at once.
    let body = block_bytes(6, 1000);
    let id2 = BlockId::of(&body);
    let s = done.open_session().await;
    assert_eq!(done.put_in(&s, &body).await.status, 201);
    assert_eq!(done.commit(&s, &id2, &[id, id2], 100.0).await.status, 201);
    assert_eq!(health(&server)["done"], h("ok", "ok", "ok"));
    // Past 9 s from enrollment, `fresh` is red.
    until(start + Duration::from_millis(9300)).await;
    assert_eq!(
        health(&server)["fresh"],
        h("critical", "never_backed_up", "critical")
    );
    // Unparked, it counts again; the table shows state and reason.
    cli_ok(&server.cli(&["device", "unpark", dan.device.as_str()]));
    let table = cli_ok(&server.cli(&["device", "list"]));
    assert!(table.contains("critical (never_backed_up)"), "{table}");
    // The alert log: each change of alert level once. The evaluator ticks
    // every second; wait (bounded) for the unparked device's alert.
    let ids: std::collections::BTreeMap<String, String> = {
        let l: DeviceList =
            serde_json::from_str(&cli_ok(&server.cli(&["device", "list", "--json"]))).unwrap();
        l.devices
            .into_iter()
            .map(|d| (d.device.to_string(), d.name))
            .collect()
    };
    let alerts = |server: &TestServer| {
        let l: coffer_types::wire::AlertList =
            serde_json::from_str(&cli_ok(&server.cli(&["alerts", "--json"]))).unwrap();
        let mut by: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for a in l.alerts {
            by.entry(ids[a.device.as_str()].clone())
                .or_default()
                .push(format!("{}->{}", a.from, a.to));
        }
        by
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !alerts(&server).contains_key("parked") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let by = alerts(&server);
    assert_eq!(by["fresh"], ["ok->warning", "warning->critical"], "{by:?}");
    // Parked through its warning and critical times: one alert, on unpark.
    assert_eq!(by["parked"], ["parked->critical"], "{by:?}");
    // `done` went yellow (perhaps red), recovered with its backup, and
    // (3 s after it) went yellow again.
    let done_log = &by["done"];
    assert_eq!(done_log[0], "ok->warning", "{by:?}");
    assert!(
        done_log
            .iter()
            .any(|t| t == "warning->ok" || t == "critical->ok"),
        "{by:?}"
    );
    assert!(!by.contains_key("other"), "{by:?}");
    let table = cli_ok(&server.cli(&["alerts"]));
    assert!(
        table.contains("warning") && table.contains("never_backed_up"),
        "{table}"
    );
    // /metrics: devices per org and state, no device labels.
    let m = server
        .client()
        .await
        .get(&coffer_client::paths::metrics())
        .await
        .unwrap();
    let m = String::from_utf8_lossy(&m.body).to_string();
    for line in [
        "coffer_devices{org=\"acme-eu\",state=\"critical\"} 1",
        "coffer_devices{org=\"acme-eu\",state=\"ok\"} 0",
        "coffer_devices{org=\"beta\",state=\"ok\"} 1",
        "coffer_devices{org=\"acme\",state=\"parked\"} 0",
    ] {
        assert!(m.lines().any(|l| l == line), "{line} not in\n{m}");
    }
    assert!(!m
        .lines()
        .any(|l| l.starts_with("coffer_devices{") && l.contains("dv_")));
    let audit = cli_ok(&server.cli(&["audit", "list", "--json"]));
    assert!(
        audit.contains("device.park") && audit.contains("device.unpark"),
        "{audit}"
    );
}
