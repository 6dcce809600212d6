//! Key escrow and administrator restore (seed 000) through the real server
//! and both binaries: `coffer-agent escrow keygen`, the agent escrowing its
//! archive key at its next command (for an archive made before the setting),
//! `coffer admin device restore-token`, and `coffer-agent restore
//! --escrow-key` with that token and no passphrase, byte for byte. A
//! restore token never writes; enhanced security refuses escrow and destroys
//! what was escrowed, audited.

use std::os::unix::fs::PermissionsExt;

use bytes::Bytes;
use coffer_client::paths;
use coffer_types::BlockId;
use http::Method;
use serde_json::Value;

use crate::agent::{assert_same_tree, restored};
use crate::agent_cli::{agent, ok};
use crate::harness::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The refusal text of a failed `coffer admin` command.
fn refused(o: &std::process::Output) -> String {
    assert!(!o.status.success(), "{o:?}");
    stderr(o)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escrowed_key_restores_without_the_passphrase_and_enhanced_security_destroys_it() {
    let server = TestServer::h2c().await;
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let src = work.join("src");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    std::fs::write(src.join("big.bin"), block_bytes(31, 6 << 20)).unwrap();
    for i in 0..20 {
        std::fs::write(src.join(format!("docs/n{i}.txt")), format!("note {i}\n")).unwrap();
    }
    std::fs::set_permissions(
        src.join("docs/n3.txt"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();

    // The operator's key pair, made offline.
    let keys = work.join("keys");
    let o = ok(agent(work)
        .args(["escrow", "keygen", "--out"])
        .arg(&keys)
        .output()
        .unwrap());
    let line = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let key_file = keys.join("escrow.key");
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let pub_text = std::fs::read_to_string(keys.join("escrow.pub")).unwrap();
    assert_eq!(pub_text.lines().collect::<Vec<_>>(), [line.as_str()]);
    assert!(line.starts_with("coffer-escrow-v1:"), "{line}");

    // A device backs up before any escrow key is set.
    let dev = server.enroll("acme", "ann", "laptop").await;
    let pass = work.join("passphrase");
    std::fs::write(&pass, "correct horse\n").unwrap();
    ok(agent(work)
        .args(["init", "--server", &server.url, "--token", &dev.token])
        .arg("--passphrase-file")
        .arg(&pass)
        .output()
        .unwrap());
    ok(agent(work).arg("backup").arg(&src).output().unwrap());

    let set = |kv: &str| server.cli(&["org", "settings", "set", "acme", kv]);
    let restore_token = |expires: &str| {
        server.cli(&[
            "device",
            "restore-token",
            &dev.device,
            "--expires",
            expires,
            "--json",
        ])
    };
    // Not yet: administrator restore is off.
    let err = refused(&restore_token("1h"));
    assert!(
        err.contains("conflict") && err.contains("administrator restore is off for org acme"),
        "{err}"
    );
    // A malformed public key is refused as a setting.
    let err = refused(&set("security.escrow_public_key=not-a-key"));
    assert!(err.contains("is not an escrow public key"), "{err}");
    cli_ok(&set(&format!("security.escrow_public_key={line}")));
    cli_ok(&set("security.admin_restore=on"));
    // On, but the device has not escrowed yet.
    let err = refused(&restore_token("1h"));
    assert!(
        err.contains("has not escrowed its archive key yet"),
        "{err}"
    );

    // Its next command escrows the key of the archive made before; the
    // one after does not again.
    let o = ok(agent(work).arg("backups").output().unwrap());
    assert!(
        stderr(&o).contains(&format!("escrowed the archive key to {line}")),
        "{o:?}"
    );
    let o = ok(agent(work).arg("backup").arg(&src).output().unwrap());
    assert!(!stderr(&o).contains("escrowed"), "{o:?}");
    let s: Value = dev
        .client
        .get(&paths::device_settings())
        .await
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(s["security"]["escrowed_to"], line.as_str(), "{s}");

    // The token: read-only, expiring, for this one archive.
    let t: Value = serde_json::from_str(&cli_ok(&restore_token("1h"))).unwrap();
    let token = t["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("cfr_"), "{t}");
    assert_eq!(t["archive"], dev.archive.as_str());
    assert_eq!(t["escrow_public_key"], line.as_str());

    // The administrator's machine: no profile, no passphrase, only the
    // token, the server and the escrow private key.
    let admin_work = tempfile::tempdir().unwrap();
    let aw = admin_work.path();
    let target = aw.join("restore");
    let o = ok(agent(aw)
        .env("COFFER_TOKEN", &token)
        .env("COFFER_SERVER", &server.url)
        .args(["restore", "--escrow-key"])
        .arg(&key_file)
        .arg("--target")
        .arg(&target)
        .output()
        .unwrap());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("restored backup"),
        "{o:?}"
    );
    assert_same_tree(&src, &restored(&target, &src));
    let o = ok(agent(aw)
        .env("COFFER_TOKEN", &token)
        .env("COFFER_SERVER", &server.url)
        .args(["verify", "--escrow-key"])
        .arg(&key_file)
        .output()
        .unwrap());
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 bad"),
        "{o:?}"
    );

    // Another escrow key does not open it; a backup is refused with the
    // escrow key, before anything reaches the server.
    let other = aw.join("other");
    ok(agent(aw)
        .args(["escrow", "keygen", "--out"])
        .arg(&other)
        .output()
        .unwrap());
    let o = agent(aw)
        .env("COFFER_TOKEN", &token)
        .env("COFFER_SERVER", &server.url)
        .args(["restore", "--escrow-key"])
        .arg(other.join("escrow.key"))
        .arg("--target")
        .arg(aw.join("nope"))
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("sealed to another escrow key"),
        "{o:?}"
    );
    let o = agent(aw)
        .env("COFFER_TOKEN", &token)
        .env("COFFER_SERVER", &server.url)
        .args(["backup", "--escrow-key"])
        .arg(&key_file)
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        !o.status.success() && stderr(&o).contains("backups, restore and verify only"),
        "{o:?}"
    );

    // The token never writes: every write of the protocol is 403.
    let reader = server.client().await.with_token(&token);
    let body = Bytes::from_static(b"a block a restore token tries to store");
    let id = BlockId::of(&body);
    let writes = [
        (
            Method::PUT,
            paths::block(&dev.archive, &id.to_string()),
            body.clone(),
        ),
        (
            Method::POST,
            paths::sessions(&dev.archive),
            Bytes::from_static(b"{}"),
        ),
        (
            Method::PUT,
            paths::named_ref(&dev.archive, "key"),
            Bytes::from(format!("{{\"block\": \"{id}\"}}")),
        ),
        (
            Method::PUT,
            paths::escrow(&dev.archive),
            Bytes::from_static(b"{\"public_key\": \"x\", \"sealed\": \"00\"}"),
        ),
    ];
    for (m, path, body) in writes {
        let r = reader
            .send(
                m.clone(),
                &path,
                &[("content-type", "application/json")],
                body,
            )
            .await
            .unwrap();
        assert_refused(&r, 403, "forbidden", "never writes");
    }
    let r = reader.get(&paths::backups(&dev.archive)).await.unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    // Another archive is out of its reach, like any foreign archive.
    let eve = server.enroll("acme", "eve", "desktop").await;
    let r = reader.get(&paths::backups(&eve.archive)).await.unwrap();
    assert_eq!(r.status, 404, "{r:?}");

    // Enhanced security: admin_restore must go first (seed 000), then the
    // escrowed key is destroyed through the gate, audited; the server
    // refuses a new escrow and the agent sends none.
    let err = refused(&set("security.archive_security=enhanced"));
    assert!(err.contains("archive_security_conflict"), "{err}");
    cli_ok(&set("security.admin_restore=off"));
    // The live token stops working with admin_restore off.
    let r = reader.get(&paths::backups(&dev.archive)).await.unwrap();
    assert_refused(&r, 401, "unauthorized", "no longer allowed");
    cli_ok(&set("security.archive_security=enhanced"));
    let r = dev.client.get(&paths::escrow(&dev.archive)).await.unwrap();
    assert_eq!(r.status, 404, "{r:?}");
    let up = dev
        .client
        .send(
            Method::PUT,
            &paths::escrow(&dev.archive),
            &[("content-type", "application/json")],
            Bytes::from(format!(
                "{{\"public_key\": \"{line}\", \"sealed\": \"{}\"}}",
                "ab".repeat(80)
            )),
        )
        .await
        .unwrap();
    assert_refused(&up, 409, "escrow_refused", "enhanced archive security");
    let o = ok(agent(work).arg("backups").output().unwrap());
    assert!(!stderr(&o).contains("escrow"), "{o:?}");
    let err = refused(&restore_token("1h"));
    assert!(err.contains("archive_security_conflict"), "{err}");

    let log: Value =
        serde_json::from_str(&cli_ok(&server.cli(&["audit", "list", "--json"]))).unwrap();
    let entries = log["entries"].as_array().unwrap();
    let of = |action: &str| -> Vec<&Value> {
        entries.iter().filter(|e| e["action"] == action).collect()
    };
    let stored = of("escrow.store");
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["actor"], format!("device:{}", dev.device));
    let destroyed = of("escrow.destroy");
    assert_eq!(destroyed.len(), 1, "{destroyed:?}");
    assert_eq!(destroyed[0]["target"], format!("archive:{}", dev.archive));
    assert!(
        destroyed[0]["details"]["reason"]
            .as_str()
            .unwrap()
            .contains("enhanced"),
        "{destroyed:?}"
    );
    let issued = of("device.restore_token");
    assert!(
        issued.iter().any(|e| e["outcome"] == "ok")
            && issued.iter().filter(|e| e["outcome"] == "refused").count() >= 3,
        "{issued:?}"
    );
    cli_ok(&server.cli(&["audit", "verify"]));
}
