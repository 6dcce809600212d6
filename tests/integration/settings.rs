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

/// acme → acme-eu → acme-eu-sales.
fn three_levels(server: &TestServer) {
    cli_ok(&server.cli(&["org", "create", "acme"]));
    cli_ok(&server.cli(&["org", "create", "acme-eu", "--parent", "acme"]));
    cli_ok(&server.cli(&["org", "create", "acme-eu-sales", "--parent", "acme-eu"]));
}

/// `org settings set ORG KV` as the account of `token` is refused: the key
/// is locked by acme.
fn assert_locked_for(server: &TestServer, token: &str, org: &str, kv: &str) {
    let out = server.cli_as(Some(token), &["org", "settings", "set", org, kv]);
    assert!(
        !out.status.success()
            && String::from_utf8_lossy(&out.stderr).contains("locked by org acme"),
        "{out:?}"
    );
}

fn pair(text: &str, from: &str) -> (String, String) {
    (text.to_string(), from.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_inherit_down_the_org_tree_and_every_change_is_audited() {
    let server = TestServer::h2c().await;
    three_levels(&server);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_user_and_org_quotas_refuse_uploads_with_507_while_reads_and_commits_go_on() {
    use coffer_types::BlockId;
    const K: usize = 100 << 10;
    let mut server = TestServer::h2c().await;
    cli_ok(&server.cli(&["org", "create", "acme"]));
    cli_ok(&server.cli(&["org", "create", "acme-eu", "--parent", "acme"]));
    let ann1 = server.enroll("acme-eu", "ann", "ann-laptop").await;
    let ann2 = server.enroll("acme-eu", "ann", "ann-desktop").await;
    let bob = server.enroll("acme-eu", "bob", "bob-laptop").await;
    let eve = server.enroll("acme", "eve", "eve-laptop").await;
    let block = |seed: u64| block_bytes(seed, K);
    let set = |org: &str, kv: &str| cli_ok(&server.cli(&["org", "settings", "set", org, kv]));

    // A device quota of 250 KiB, set at the top, inherited: two blocks fit.
    set("acme", "quotas.device_bytes=250KiB");
    assert_eq!(ann1.put(&block(1)).await.status, 201);
    assert_eq!(ann1.put(&block(2)).await.status, 201);
    let r = ann1.put(&block(3)).await;
    assert_refused(
        &r,
        507,
        "quota_exceeded",
        &format!("device {}", ann1.device),
    );
    let msg = r.error().unwrap().error.message;
    assert!(
        msg.contains("250.0 KiB")
            && msg.contains("200.0 KiB")
            && msg.contains("quotas.device_bytes"),
        "{msg}"
    );
    // Nothing of it was kept; what is stored reads back, a block the archive
    // holds can be sent again, and a commit of stored blocks goes through.
    assert_eq!(ann1.get(&BlockId::of(&block(3))).await.status, 404);
    assert_eq!(ann1.get(&BlockId::of(&block(1))).await.status, 200);
    assert_eq!(ann1.put(&block(1)).await.status, 200);
    let ids = [BlockId::of(&block(1)), BlockId::of(&block(2))];
    let s = ann1.open_session().await;
    assert_eq!(ann1.commit(&s, &ids[0], &ids, 100.0).await.status, 201);
    // The device list shows usage against the quota.
    let list = cli_ok(&server.cli(&["device", "list"]));
    assert!(list.contains("200.0 KiB of 250.0 KiB"), "{list}");
    let d = server.admin_api().await.device(&ann1.device).await.unwrap();
    assert_eq!(d.quota_bytes, 250 << 10);

    // A user quota of 300 KiB: ann's second device has room of its own but
    // not within ann's.
    set("acme", "quotas.user_bytes=300KiB");
    assert_eq!(ann2.put(&block(4)).await.status, 201);
    let r = ann2.put(&block(5)).await;
    assert_refused(&r, 507, "quota_exceeded", "user ann (org acme-eu)");

    // An org quota on acme counts its whole subtree: 500 KiB with 300 KiB
    // stored. bob stores one more, eve (in acme itself) is then refused, and
    // so is bob; the refusal names acme.
    set("acme", "quotas.org_bytes=500KiB");
    assert_eq!(bob.put(&block(6)).await.status, 201);
    assert_eq!(eve.put(&block(7)).await.status, 201);
    let r = bob.put(&block(8)).await;
    assert_refused(
        &r,
        507,
        "quota_exceeded",
        "org acme (with the orgs below it)",
    );
    let r = eve.put(&block(9)).await;
    assert_refused(&r, 507, "quota_exceeded", "org acme");
    // acme-eu's own org quota, inherited from acme, is the same 500 KiB but
    // counts only acme-eu's 400 KiB: acme's quota is the one that bites.
    let s = show(&server, "acme-eu");
    assert_eq!(s["usage"]["bytes_stored"], 400 * 1024, "{s}");
    let s = show(&server, "acme");
    assert_eq!(s["usage"]["bytes_stored"], 500 * 1024, "{s}");
    assert_eq!(s["usage"]["org_bytes"], 500 * 1024, "{s}");
    let text = cli_ok(&server.cli(&["org", "settings", "show", "acme"]));
    assert!(
        text.contains("stored by acme and the orgs below it: 500.0 KiB (100 % of its quota"),
        "{text}"
    );

    // Warnings at quotas.warn_at (0.9 by default): acme's subtree reached
    // it, and so did ann (the user, 300 of 300 KiB); ann's laptop (200 of
    // 250 KiB) is under it.
    let scopes = |org: &str| -> Vec<String> {
        let mut v: Vec<String> = show(&server, org)["usage"]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["scope"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(scopes("acme"), ["org:acme", "user:acme-eu/ann"]);
    assert_eq!(scopes("acme-eu"), ["user:acme-eu/ann"]);
    assert!(
        text.contains("warning: org:acme stores 500.0 KiB"),
        "{text}"
    );

    // Raising the quotas lets uploads through again, and the warnings of
    // scopes now under their level are cleared by the next block counted.
    set("acme", "quotas.org_bytes=10MiB");
    set("acme", "quotas.user_bytes=10MiB");
    assert_eq!(ann2.put(&block(5)).await.status, 201);
    assert_eq!(scopes("acme"), Vec::<String>::new());
    let audit = cli_ok(&server.cli(&["audit", "list", "--json"]));
    assert!(
        audit.matches("quotas").count() >= 5,
        "every quota change is audited: {audit}"
    );

    // The counts survive a restart: 600 KiB stored, a quota of 600 KiB.
    set("acme", "quotas.org_bytes=600KiB");
    server.restart();
    let eve = eve.reconnect(&server).await;
    let r = eve.put(&block(10)).await;
    assert_refused(
        &r,
        507,
        "quota_exceeded",
        "600.0 KiB (614400 bytes) of it is in use",
    );
    assert_eq!(eve.get(&BlockId::of(&block(7))).await.status, 200);
}

/// `GET /v1/settings` of `dev`, as JSON.
async fn device_settings(dev: &Agent) -> Value {
    let r = dev
        .client
        .get(&coffer_client::paths::device_settings())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    r.json().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn save_reaches_new_devices_push_and_lock_every_device_and_a_lock_holds_below() {
    let server = TestServer::h2c().await;
    cli_ok(&server.cli(&["org", "create", "acme"]));
    cli_ok(&server.cli(&["org", "create", "acme-eu", "--parent", "acme"]));
    let set = |org: &str, kv: &str, mode: &str| {
        let mut args = vec!["org", "settings", "set", org, kv];
        if !mode.is_empty() {
            args.push(mode);
        }
        server.cli(&args)
    };
    let old = server.enroll("acme", "ann", "old-laptop").await;
    let eu = server.enroll("acme-eu", "bob", "eu-laptop").await;

    // Save (the default): only devices enrolled from now on.
    cli_ok(&set("acme", "device_defaults.streams=4", ""));
    let new = server.enroll("acme", "ann", "new-laptop").await;
    let streams = |s: &Value| s["values"]["streams"]["value"].clone();
    assert_eq!(streams(&device_settings(&old).await), 16);
    assert_eq!(streams(&device_settings(&new).await), 4);
    let s = show(&server, "acme");
    assert_eq!(
        s["groups"]["device_defaults"]["values"]["streams"]["mode"],
        "save"
    );

    // Push: every device, once (a version to apply it by), not locked.
    cli_ok(&set(
        "acme",
        "device_defaults.excludes=*.tmp,node_modules",
        "--push",
    ));
    for d in [&old, &new, &eu] {
        let s = device_settings(d).await;
        let e = &s["values"]["excludes"];
        assert_eq!(e["text"], "*.tmp,node_modules", "{s}");
        assert_eq!(e["locked"], false);
        assert!(e["pushed_at"].as_u64().unwrap() > 0, "{s}");
        assert_eq!(s["version"], e["pushed_at"]);
    }
    // A save of the same key afterwards reaches new devices only: the
    // pushed value stays with the devices enrolled before.
    cli_ok(&set("acme", "device_defaults.excludes=*.iso", ""));
    assert_eq!(
        device_settings(&old).await["values"]["excludes"]["text"],
        "*.tmp,node_modules"
    );
    let newest = server.enroll("acme", "ann", "newest-laptop").await;
    assert_eq!(
        device_settings(&newest).await["values"]["excludes"]["text"],
        "*.iso"
    );

    // Lock: every device, locked by acme — also in acme-eu, below it.
    cli_ok(&set(
        "acme",
        "device_defaults.bandwidth_limit=5MiB",
        "--lock",
    ));
    for d in [&old, &new, &eu] {
        let s = device_settings(d).await;
        let b = &s["values"]["bandwidth_limit"];
        assert_eq!(
            (b["value"].clone(), b["locked"].clone()),
            (Value::from(5u64 << 20), Value::from(true)),
            "{s}"
        );
        assert_eq!(b["locked_by"], "acme");
    }
    let s = show(&server, "acme-eu");
    let b = &s["groups"]["device_defaults"]["values"]["bandwidth_limit"];
    assert_eq!(
        (b["mode"].clone(), b["locked_by"].clone()),
        (Value::from("lock"), Value::from("acme")),
        "{s}"
    );

    // Below the lock nobody changes it: not the server's admin at acme-eu,
    // not acme-eu's org-admin (who cannot touch acme's settings either).
    let out = set("acme-eu", "device_defaults.bandwidth_limit=0", "--push");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("conflict") && err.contains("locked by org acme"),
        "{err}"
    );
    let eu_admin = server.account_token("eve", "org-admin", Some("acme-eu"));
    assert_locked_for(
        &server,
        &eu_admin,
        "acme-eu",
        "device_defaults.bandwidth_limit=0",
    );
    let out = server.cli_as(
        Some(&eu_admin),
        &[
            "org",
            "settings",
            "set",
            "acme",
            "device_defaults.bandwidth_limit=0",
        ],
    );
    assert!(!out.status.success(), "{out:?}");
    // acme-eu turning inheritance off does not lift it either.
    cli_ok(&server.cli(&[
        "org",
        "settings",
        "inherit",
        "acme-eu",
        "device_defaults",
        "off",
    ]));
    assert_eq!(
        device_settings(&eu).await["values"]["bandwidth_limit"]["locked_by"],
        "acme"
    );
    // Other keys stay free below, and the modes go only with device
    // defaults.
    cli_ok(&set("acme-eu", "device_defaults.streams=2", "--push"));
    assert_eq!(streams(&device_settings(&eu).await), 2);
    let out = set("acme", "reporting.warning_after=2d", "--lock");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("apply modes (save, push, lock) are for device_defaults"),
        "{out:?}"
    );

    // acme unlocks by saving: the value stays with its devices, unlocked.
    cli_ok(&set(
        "acme",
        "device_defaults.bandwidth_limit=5MiB",
        "--push",
    ));
    let s = device_settings(&old).await;
    assert_eq!(s["values"]["bandwidth_limit"]["locked"], false, "{s}");
    // Every change is in the audit log, with its mode.
    let audit = cli_ok(&server.cli(&["audit", "list", "--json"]));
    for m in ["save", "push", "lock"] {
        assert!(
            audit.contains(&format!("\"mode\": \"{m}\"")),
            "{m}: {audit}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_restore_and_enhanced_security_are_refused_together_with_the_orgs_named() {
    let server = TestServer::h2c().await;
    three_levels(&server);
    let set = |org: &str, kv: &str| server.cli(&["org", "settings", "set", org, kv]);
    cli_ok(&set("acme-eu-sales", "security.archive_security=enhanced"));

    // admin_restore on where a child org uses enhanced security: refused,
    // in the seed's words, naming it.
    let out = set("acme-eu", "security.admin_restore=on");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("archive_security_conflict")
            && err.contains(
                "Your changes cannot be applied because this organization or child \
                 organizations use upgraded encryption settings: acme-eu-sales"
            ),
        "{err}"
    );
    // At the top of the tree, the system-wide wording.
    let out = set("acme", "security.admin_restore=on");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("one or more organizations use upgraded encryption settings: acme-eu-sales"),
        "{err}"
    );
    assert_eq!(
        value(&server, "acme-eu", "security", "admin_restore"),
        pair("off", "default")
    );

    // The other way round: admin_restore on in acme-eu (sales back to
    // standard first), then enhanced below it is refused — also when it
    // would come by inheritance.
    cli_ok(&set("acme-eu-sales", "security.archive_security=standard"));
    cli_ok(&set("acme-eu", "security.admin_restore=on"));
    let out = set("acme-eu-sales", "security.archive_security=enhanced");
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("upgraded encryption settings: acme-eu-sales"),
        "{out:?}"
    );
    // Turning inheritance of security on in acme-eu-sales would give it
    // acme-eu's standard: fine. acme (above, admin_restore off) may use
    // enhanced: acme-eu keeps its own security values.
    cli_ok(&server.cli(&[
        "org",
        "settings",
        "inherit",
        "acme-eu-sales",
        "security",
        "on",
    ]));
    cli_ok(&set("acme", "security.archive_security=enhanced"));
    // Now admin_restore on at acme meets acme's own enhanced security.
    let out = set("acme", "security.admin_restore=on");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("archive_security_conflict") && err.contains("settings: acme"),
        "{err}"
    );
    // Changes of other groups are not held up by it.
    cli_ok(&set("acme-eu", "reporting.warning_after=2d"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_archive_security_holds_for_every_org_below_until_unlocked_where_it_was_locked() {
    let server = TestServer::h2c().await;
    three_levels(&server);
    let set = |org: &str, kv: &str, mode: &str| {
        let mut args = vec!["org", "settings", "set", org, kv];
        if !mode.is_empty() {
            args.push(mode);
        }
        server.cli(&args)
    };
    // The seed's step 3–5: standard, locked, system-wide from the top.
    cli_ok(&set("acme", "security.archive_security=standard", "--lock"));
    let s = show(&server, "acme-eu-sales");
    let v = &s["groups"]["security"]["values"]["archive_security"];
    assert_eq!(
        (v["text"].clone(), v["mode"].clone(), v["locked_by"].clone()),
        ("standard".into(), "lock".into(), "acme".into()),
        "{s}"
    );
    // Below, nobody changes it: not the server's admin, not an org-admin,
    // not by turning inheritance off (the lock still decides).
    let out = set("acme-eu-sales", "security.archive_security=enhanced", "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("security.archive_security is locked by org acme, above acme-eu-sales"),
        "{err}"
    );
    let eu_admin = server.account_token("eve", "org-admin", Some("acme-eu"));
    assert_locked_for(
        &server,
        &eu_admin,
        "acme-eu",
        "security.archive_security=enhanced",
    );
    cli_ok(&server.cli(&["org", "settings", "inherit", "acme-eu", "security", "off"]));
    cli_ok(&set("acme-eu", "security.admin_restore=on", ""));
    assert_eq!(
        value(&server, "acme-eu-sales", "security", "archive_security"),
        pair("standard", "acme")
    );
    // Only a push mode is refused for security; --lock is its only mode.
    let out = set("acme", "security.archive_security=standard", "--push");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("security keys also take --lock"),
        "{out:?}"
    );
    // Locked enhanced at the top would meet acme-eu's admin_restore: the
    // seed-000 refusal names the orgs the lock would reach.
    let out = set("acme", "security.archive_security=enhanced", "--lock");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("archive_security_conflict") && err.contains("acme-eu, acme-eu-sales"),
        "{err}"
    );
    // Setting it again without --lock unlocks it: then acme-eu decides.
    cli_ok(&set("acme", "security.archive_security=standard", ""));
    cli_ok(&set("acme-eu", "security.admin_restore=off", ""));
    cli_ok(&set("acme-eu", "security.archive_security=enhanced", ""));
    assert_eq!(
        value(&server, "acme-eu-sales", "security", "archive_security"),
        pair("enhanced", "acme-eu")
    );
    let audit = cli_ok(&server.cli(&["audit", "list", "--json"]));
    assert!(audit.contains("\"mode\": \"lock\""), "{audit}");
}
