//! The audit log through the real server and CLI: an entry for each admin
//! change and for a refusal, the chain verifying, the export, and `audit
//! verify` naming the entry that was edited in the database behind the
//! server's back.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

fn entries(server: &TestServer) -> Vec<Value> {
    let out = cli_ok(&server.cli(&["audit", "list", "--limit", "1000", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["entries"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_change_and_refusal_is_audited_and_tampering_is_found() {
    let mut server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    cli_ok(&server.cli(&["org", "create", "acme-eu", "--parent", "acme"]));
    cli_ok(&server.cli(&["device", "rotate", &agent.device]));
    cli_ok(&server.cli(&["device", "revoke", &agent.device]));
    let ro = server.account_token("rita", "read-only", None);
    // A refused change.
    let out = server.cli_as(Some(&ro), &["org", "create", "nope"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden"));
    cli_ok(&server.cli(&[
        "account",
        "create",
        "ola",
        "--role",
        "org-admin",
        "--org",
        "acme-eu",
    ]));
    cli_ok(&server.cli(&["account", "disable", "ola"]));
    cli_ok(&server.cli(&["account", "enable", "ola"]));
    let out = cli_ok(&server.cli(&["token", "create", "--account", "ola", "--json"]));
    let id = serde_json::from_str::<Value>(&out).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    cli_ok(&server.cli(&["token", "revoke", &id]));
    cli_ok(&server.cli(&["account", "delete", "ola"]));

    let log = entries(&server);
    let got: Vec<(String, String, String)> = log
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["outcome"].as_str().unwrap().to_string(),
                e["actor"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want = [
        ("clock.init", "ok", "system"),
        ("account.create", "ok", "system"),
        ("token.create", "ok", "system"),
        ("org.create", "ok", "admin"),
        ("user.create", "ok", "admin"),
        ("device.enroll", "ok", "admin"),
        ("org.create", "ok", "admin"),
        ("device.rotate", "ok", "admin"),
        ("device.revoke", "ok", "admin"),
        ("account.create", "ok", "admin"),
        ("token.create", "ok", "admin"),
        ("POST /admin/v1/orgs", "refused", "rita"),
        ("account.create", "ok", "admin"),
        ("account.disable", "ok", "admin"),
        ("account.enable", "ok", "admin"),
        ("token.create", "ok", "admin"),
        ("token.revoke", "ok", "admin"),
        ("account.delete", "ok", "admin"),
    ];
    let want: Vec<(String, String, String)> = want
        .iter()
        .map(|(a, o, w)| (a.to_string(), o.to_string(), w.to_string()))
        .collect();
    assert_eq!(got, want);
    let refusal = &log[11];
    assert_eq!(refusal["role"], "read-only");
    assert!(refusal["details"]["reason"]
        .as_str()
        .unwrap()
        .contains("needs the admin"));
    assert_eq!(refusal["target"], "/admin/v1/orgs");
    assert_eq!(log[8]["target"], format!("device:{}", agent.device));
    // Filters.
    let out = cli_ok(&server.cli(&["audit", "list", "--actor", "rita", "--json"]));
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["entries"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let out = cli_ok(&server.cli(&[
        "audit",
        "list",
        "--since",
        "1h",
        "--target",
        "account:ola",
        "--json",
    ]));
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["entries"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    // The chain holds, and the export has every entry as a line.
    let out = cli_ok(&server.cli(&["audit", "verify"]));
    assert!(
        out.contains(&format!("{} entries, the hash chain holds", log.len())),
        "{out}"
    );
    let export = cli_ok(&server.cli(&["audit", "export", "--format", "jsonl"]));
    let lines: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), log.len());
    assert_eq!(lines[10]["hash"], log[10]["hash"]);
    // Only admin and legal-hold-admin read it.
    let out = server.cli_as(Some(&ro), &["audit", "verify"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("forbidden"));

    // Stop the server and edit entry 9 (the revocation) in the database.
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    edit_sled(&server.data_dir.join("meta"), |db| {
        let audit = db.open_tree("audit").unwrap();
        let key = 9u64.to_be_bytes();
        let mut e: Value = serde_json::from_slice(&audit.get(key).unwrap().unwrap()).unwrap();
        assert_eq!(e["action"], "device.revoke");
        e["actor"] = "somebody-else".into();
        audit.insert(key, serde_json::to_vec(&e).unwrap()).unwrap();
    });
    server.restart();
    let out = server.cli(&["audit", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("breaks at entry 9") && text.contains("changed"),
        "{text}"
    );
    let out = server.cli(&["audit", "verify", "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["ok"].as_bool(), v["first_bad_seq"].as_u64()),
        (Some(false), Some(9))
    );
}
