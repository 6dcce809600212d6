//! Org settings through the real server and `coffer admin`: inheritance
//! three levels deep, inheritance off (the values in effect copied) and back
//! on (the own values dropped, and listed), children following the nearest
//! org with inheritance off, validation naming the key and why, scope, and
//! the audit log.

use serde_json::Value;

use crate::harness::*;

/// `org settings show ORG --json`, as JSON.
fn show(server: &TestServer, org: &str) -> Value {
    serde_json::from_str(&cli_ok(
        &server.cli(&["org", "settings", "show", org, "--json"]),
    ))
    .unwrap()
}

/// The text and the source of `group.key` in `org`'s settings.
fn value(server: &TestServer, org: &str, group: &str, key: &str) -> (String, String) {
    let s = show(server, org);
    let v = &s["groups"][group]["values"][key];
    (
        v["text"].as_str().unwrap().to_string(),
        v["from"].as_str().unwrap().to_string(),
    )
}

fn pair(text: &str, from: &str) -> (String, String) {
    (text.to_string(), from.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_inherit_down_the_org_tree_and_every_change_is_audited() {
    let server = TestServer::h2c().await;
    for (org, parent) in [
        ("acme", None),
        ("acme-eu", Some("acme")),
        ("acme-eu-sales", Some("acme-eu")),
    ] {
        let mut args = vec!["org", "create", org];
        if let Some(p) = parent {
            args.extend(["--parent", p]);
        }
        cli_ok(&server.cli(&args));
    }
    let leaf = "acme-eu-sales";
    // Nothing set: the defaults, three levels down.
    assert_eq!(
        value(&server, leaf, "reporting", "warning_after"),
        pair("3d", "default")
    );
    assert_eq!(show(&server, leaf)["groups"]["reporting"]["inherit"], true);
    let table = cli_ok(&server.cli(&["org", "settings", "show", leaf]));
    assert!(
        table.contains("reporting.warning_after") && table.contains("default"),
        "{table}"
    );

    // Set at the top: it stops inheriting, and everyone below follows it.
    let out = cli_ok(&server.cli(&[
        "org",
        "settings",
        "set",
        "acme",
        "reporting.warning_after=2d",
        "quotas.org_bytes=500GiB",
    ]));
    assert!(
        out.contains("no longer inherits reporting")
            && out.contains("reporting.warning_after = 2d"),
        "{out}"
    );
    assert_eq!(
        value(&server, leaf, "reporting", "warning_after"),
        pair("2d", "acme")
    );
    assert_eq!(
        value(&server, leaf, "quotas", "org_bytes"),
        pair("500GiB", "acme")
    );
    let s = show(&server, leaf);
    assert_eq!(
        s["groups"]["quotas"]["values"]["org_bytes"]["value"],
        500u64 << 30
    );

    // The middle turns inheritance off: it keeps what was in effect, as its own.
    let out = cli_ok(&server.cli(&["org", "settings", "inherit", "acme-eu", "reporting", "off"]));
    assert!(out.contains("no longer inherits reporting"), "{out}");
    assert_eq!(
        value(&server, "acme-eu", "reporting", "warning_after"),
        pair("2d", "acme-eu")
    );
    cli_ok(&server.cli(&[
        "org",
        "settings",
        "set",
        "acme-eu",
        "reporting.critical_after=10d",
    ]));
    // A change above no longer reaches the children of the middle org.
    cli_ok(&server.cli(&[
        "org",
        "settings",
        "set",
        "acme",
        "reporting.warning_after=1d",
    ]));
    assert_eq!(
        value(&server, leaf, "reporting", "warning_after"),
        pair("2d", "acme-eu")
    );
    assert_eq!(
        value(&server, leaf, "reporting", "critical_after"),
        pair("10d", "acme-eu")
    );
    // Other groups still come from the top.
    assert_eq!(
        value(&server, leaf, "quotas", "org_bytes"),
        pair("500GiB", "acme")
    );

    // Back on: its own values are dropped, and the answer lists them.
    let out = server.cli(&[
        "org",
        "settings",
        "inherit",
        "acme-eu",
        "reporting",
        "on",
        "--json",
    ]);
    let c: Value = serde_json::from_str(&cli_ok(&out)).unwrap();
    let dropped: Vec<String> = c["dropped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{}={}",
                d["key"].as_str().unwrap(),
                d["text"].as_str().unwrap()
            )
        })
        .collect();
    assert!(
        dropped.contains(&"critical_after=10d".to_string())
            && dropped.contains(&"warning_after=2d".to_string()),
        "{dropped:?}"
    );
    assert_eq!(
        value(&server, leaf, "reporting", "warning_after"),
        pair("1d", "acme")
    );
    assert_eq!(
        value(&server, leaf, "reporting", "critical_after"),
        pair("7d", "acme")
    );

    // Bad input names the key and why, and changes nothing.
    for (arg, says) in [
        (
            "reporting.warning_after=9d",
            "reporting.warning_after (9d) must be shorter than reporting.critical_after (7d)",
        ),
        (
            "reporting.warn_after=1d",
            "reporting.warn_after is not a setting",
        ),
        ("device_defaults.streams=0", "streams: 0 is outside 1..=256"),
        ("quotas.user_bytes=lots", "is not a size"),
        ("alerts.x=1", "\"alerts\" is not a settings group"),
    ] {
        let out = server.cli(&["org", "settings", "set", "acme", arg]);
        assert!(!out.status.success(), "{arg}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(says) && err.contains("invalid_request"),
            "{arg}: {err}"
        );
    }
    assert_eq!(
        value(&server, "acme", "reporting", "warning_after"),
        pair("1d", "acme")
    );

    // An org-admin of acme-eu changes its subtree only; the top is hidden.
    let eu_admin = server.account_token("eve", "org-admin", Some("acme-eu"));
    cli_ok(&server.cli_as(
        Some(&eu_admin),
        &["org", "settings", "set", leaf, "device_defaults.streams=4"],
    ));
    assert_eq!(
        value(&server, leaf, "device_defaults", "streams"),
        pair("4", leaf)
    );
    let out = server.cli_as(
        Some(&eu_admin),
        &[
            "org",
            "settings",
            "set",
            "acme",
            "device_defaults.streams=4",
        ],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not_found"),
        "{out:?}"
    );
    let ro = server.account_token("rita", "read-only", None);
    let out = server.cli_as(Some(&ro), &["org", "settings", "show", leaf]);
    assert!(out.status.success());
    let out = server.cli_as(
        Some(&ro),
        &["org", "settings", "set", leaf, "device_defaults.streams=2"],
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("forbidden"),
        "{out:?}"
    );

    // Every change is in the audit log, with what it set or dropped.
    let log: Value = serde_json::from_str(&cli_ok(
        &server.cli(&["audit", "list", "--limit", "1000", "--json"]),
    ))
    .unwrap();
    let entries = log["entries"].as_array().unwrap();
    let find = |action: &str, detail: &str| {
        entries
            .iter()
            .any(|e| e["action"] == action && e.to_string().contains(detail))
    };
    assert!(find("org.settings.set", "warning_after=2d"), "{log}");
    assert!(find("org.settings.set", "org_bytes=500GiB"));
    assert!(find("org.settings.inherit", "critical_after=10d"));
    assert!(find("org.settings.set", "streams=4"));
    // The refused change too (refused at the route, before the body).
    assert!(
        entries
            .iter()
            .any(|e| e["action"] == "PATCH /admin/v1/orgs/{org}/settings"
                && e["outcome"] == "refused"
                && e["actor"] == "rita"),
        "{log}"
    );
}
