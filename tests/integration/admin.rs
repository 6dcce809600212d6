//! The `coffer admin` CLI and `coffer config` against the real binary.

use coffer_client::paths;
use std::process::Command;

use coffer_types::wire::{DeviceList, DeviceToken};

use crate::harness::*;

use crate::harness::cli_ok as ok;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_creates_orgs_users_and_devices_over_tls() {
    let server = TestServer::start(Opts {
        tls: true,
        ..Default::default()
    })
    .await;
    // The admin token file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(server.data_dir.join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    ok(&server.cli(&["org", "create", "acme"]));
    ok(&server.cli(&["org", "create", "acme-eu", "--parent", "acme"]));
    ok(&server.cli(&["user", "add", "--org", "acme-eu", "ann"]));
    let out = ok(&server.cli(&[
        "device",
        "enroll",
        "--org",
        "acme-eu",
        "--user",
        "ann",
        "--name",
        "Ann's laptop",
        "--json",
    ]));
    let t: DeviceToken = serde_json::from_str(&out).unwrap();
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for field in ["device", "archive", "token"] {
        assert!(v[field].is_string(), "--json has {field}");
    }
    // The token works for the agent protocol.
    let agent = server.client().await.with_token(&t.token);
    assert_eq!(
        agent
            .get(&paths::backups(t.archive.as_str()))
            .await
            .unwrap()
            .status,
        200
    );

    let out = ok(&server.cli(&["device", "list", "--json"]));
    let l: DeviceList = serde_json::from_str(&out).unwrap();
    assert_eq!(l.devices.len(), 1);
    assert_eq!(l.devices[0].name, "Ann's laptop");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for f in [
        "archive",
        "bytes_stored",
        "block_count",
        "last_activity",
        "last_completed",
        "percent_complete",
    ] {
        assert!(v["devices"][0].get(f).is_some(), "device list has {f}");
    }
    let table = ok(&server.cli(&["device", "list"]));
    assert!(
        table.contains("LAST COMPLETED") && table.contains(t.archive.as_str()),
        "{table}"
    );

    // Errors carry the server's sentence.
    let out = server.cli(&["org", "create", "acme"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already_exists"));
    let out = server.cli(&["user", "add", "--org", "nope", "bob"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));

    ok(&server.cli(&["device", "revoke", t.device.as_str()]));
    assert_eq!(
        agent
            .get(&paths::backups(t.archive.as_str()))
            .await
            .unwrap()
            .status,
        401
    );
    let out = ok(&server.cli(&["device", "rotate", t.device.as_str(), "--json"]));
    let t2: DeviceToken = serde_json::from_str(&out).unwrap();
    let agent = server.client().await.with_token(&t2.token);
    assert_eq!(
        agent
            .get(&paths::backups(t.archive.as_str()))
            .await
            .unwrap()
            .status,
        200
    );

    // A wrong admin token is refused.
    let bad = server.root.path().join("bad.token");
    std::fs::write(&bad, "cfa_nope").unwrap();
    let out = server.cli(&["--token-file", bad.to_str().unwrap(), "org", "list"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unauthorized"));
}

#[test]
fn config_check_accepts_the_example_and_names_bad_keys() {
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/coffer.example.toml"
    );
    let out = Command::new(COFFER)
        .args(["config", "check", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[storage]\nbakend = \"disk\"\n").unwrap();
    let out = Command::new(COFFER)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bakend"), "{err}");

    std::fs::write(&bad, "[tls]\nmode = \"files\"\n").unwrap();
    let out = Command::new(COFFER)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("tls.cert_file"));

    std::fs::write(&bad, "[meta]\ncache_bytes = 4096\n").unwrap();
    let out = Command::new(COFFER)
        .args(["config", "check"])
        .arg(&bad)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("meta.cache_bytes must be at least"));

    // Environment overrides are checked too.
    let out = Command::new(COFFER)
        .args(["config", "check", example])
        .env("COFFER__HTTP__LISTEN", "not an address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("listen"));
}

#[test]
fn with_no_config_the_server_uses_the_embedded_defaults() {
    let out = Command::new(COFFER)
        .args(["config", "show"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("data_dir = \"coffer-data\""), "{text}");
    assert!(text.contains("listen = \"127.0.0.1:8443\""), "{text}");
    assert!(text.contains("mode = \"self_signed\""), "{text}");
    assert!(text.contains("backend = \"disk\""), "{text}");
}
