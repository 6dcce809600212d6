//! A data directory written by the schema-1 server (the release before
//! accounts; `tests/fixtures/make-schema-v1.sh`) served by today's server:
//! upgraded at start, every block, backup and token kept, the agent of that
//! release's backups restoring byte for byte; and a schema from the future
//! refused with a sentence.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::agent_cli::{agent, ok};
use crate::harness::*;

fn unpack(into: &Path) {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/schema-v1.tar.gz");
    let st = Command::new("tar")
        .arg("-xzf")
        .arg(&fixture)
        .arg("-C")
        .arg(into)
        .status()
        .unwrap();
    assert!(st.success(), "unpack {}", fixture.display());
}

fn same_tree(a: &Path, b: &Path) {
    let mut files = Vec::new();
    let mut dirs = vec![a.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 10, "{} files", files.len());
    for f in files {
        let rel = f.strip_prefix(a).unwrap();
        assert_eq!(
            std::fs::read(&f).unwrap(),
            std::fs::read(b.join(rel)).unwrap_or_default(),
            "{} differs",
            rel.display()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_1_data_directory_upgrades_and_keeps_everything() {
    let work = tempfile::tempdir().unwrap();
    unpack(work.path());
    let out = work.path().join("out");
    let data = work.path().join("data");
    let mut server = TestServer::start(Opts {
        data_dir: Some(data.clone()),
        ..Opts::default()
    })
    .await;
    assert!(
        server.log_text().contains("metadata upgraded"),
        "{}",
        server.log_text()
    );

    // The schema-1 admin token is the admin account's now.
    let who = cli_ok(&server.cli(&["whoami", "--json"]));
    let who: Value = serde_json::from_str(&who).unwrap();
    assert_eq!(
        (who["account"].as_str(), who["role"].as_str()),
        (Some("admin"), Some("admin"))
    );
    assert_eq!(
        std::fs::read_to_string(out.join("admin.token")).unwrap(),
        std::fs::read_to_string(data.join("admin.token")).unwrap()
    );
    // Orgs, the device and its counters.
    let orgs = cli_ok(&server.cli(&["org", "list", "--json"]));
    assert!(orgs.contains("acme-eu"), "{orgs}");
    let devices: Value =
        serde_json::from_str(&cli_ok(&server.cli(&["device", "list", "--json"]))).unwrap();
    let enrolled: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("device.json")).unwrap()).unwrap();
    let d = &devices["devices"][0];
    assert_eq!(d["device"], enrolled["device"]);
    assert_eq!(
        (d["backup_count"].as_u64(), d["org"].as_str()),
        (Some(2), Some("acme-eu"))
    );
    // The new index answers a scoped listing.
    let eve = server.account_token("eve", "org-admin", Some("acme-eu"));
    let scoped = cli_ok(&server.cli_as(Some(&eve), &["device", "list", "--json"]));
    assert!(
        scoped.contains(enrolled["device"].as_str().unwrap()),
        "{scoped}"
    );
    // The upgrade is the first audit entry, and the chain holds.
    let log: Value =
        serde_json::from_str(&cli_ok(&server.cli(&["audit", "list", "--json"]))).unwrap();
    assert_eq!(log["entries"][0]["action"], "metadata.upgrade");
    assert_eq!(log["entries"][0]["details"]["from"], "1");
    cli_ok(&server.cli(&["audit", "verify"]));

    // The device's token works and its agent restores both backups' files
    // byte for byte with the passphrase of then.
    let token = enrolled["token"].as_str().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let p = profile.path();
    ok(agent(p)
        .args(["init", "--server", &server.url, "--token", token])
        .arg("--passphrase-file")
        .arg(out.join("passphrase"))
        .output()
        .unwrap());
    let backups: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("backups.json")).unwrap()).unwrap();
    assert_eq!(backups.as_array().unwrap().len(), 2);
    let target = p.join("restore");
    ok(agent(p)
        .arg("restore")
        .arg("--target")
        .arg(&target)
        .output()
        .unwrap());
    let src_then = std::fs::read_to_string(out.join("source-path")).unwrap();
    let restored = target.join(src_then.trim().trim_start_matches('/'));
    same_tree(&out.join("src"), &restored);
    ok(agent(p).arg("verify").output().unwrap());

    // A schema newer than this server knows is refused at start.
    server.sigterm();
    assert!(server.wait_exit(Duration::from_secs(30)).success());
    edit_sled(&data.join("meta"), |db| {
        db.open_tree("meta")
            .unwrap()
            .insert("schema_version", &9u32.to_be_bytes())
            .unwrap();
    });
    let o = Command::new(COFFER)
        .args([
            "serve",
            "--insecure-h2c",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("schema version 9") && err.contains("Upgrade the server"),
        "{err}"
    );
}
