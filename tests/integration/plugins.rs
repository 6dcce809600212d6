//! Plugins through the `coffer` binary: `coffer plugin test` runs the
//! example plugins, built from source, on their sample data — and the
//! webhook example reaches a real HTTP listener on loopback only when the
//! operator allows it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use coffer_plugin_host::testing::{build_guests, guest_workspace};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::harness::COFFER;

fn example(name: &str) -> (PathBuf, PathBuf) {
    let wasm = build_guests().join(format!("{}.wasm", name.replace('-', "_")));
    (wasm, guest_workspace().join("examples").join(name))
}

fn plugin_test(wasm: &Path, dir: &Path, extra: &[&str]) -> Output {
    Command::new(COFFER)
        .args(["plugin", "test"])
        .arg(wasm)
        .arg("--manifest")
        .arg(dir.join("plugin.toml"))
        .arg("--input")
        .arg(dir.join("sample.json"))
        .args(extra)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn the_gfs_example_plans_and_the_host_keeps_newest_and_pinned() {
    let (wasm, dir) = example("gfs-retention");
    let o = plugin_test(
        &wasm,
        &dir,
        &["--config", "daily=3", "--config", "weekly=0"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let expire: Vec<&str> = plan["expire"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["backup"].as_str().unwrap())
        .collect();
    assert!(!expire.contains(&"bk_00"), "the newest stays");
    assert!(expire.contains(&"bk_01"), "{expire:?}");
    assert!(!expire.contains(&"bk_15"), "pinned stays");
    assert_eq!(plan["kept_by_host"][0][0], "bk_15", "{plan}");
    // A bad setting is the operator's error, named.
    let o = plugin_test(&wasm, &dir, &["--config", "daily=lots"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("\"daily\" = \"lots\""),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn the_csv_report_renders_the_sample_inventory() {
    let (wasm, dir) = example("csv-report");
    let o = plugin_test(&wasm, &dir, &["--grant", "inventory", "--format", "csv"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "org,user,device,device id,health,last backup,backups,stored MiB,status"
    );
    assert_eq!(lines.len(), 4, "{out}");
    assert!(lines[2].contains("bob-desktop,dv_2,red,5 d ago"), "{out}");
}

/// Accept one HTTP/1.1 request on `l`, answer 204, return the request.
async fn one_request(l: tokio::net::TcpListener) -> String {
    let (mut s, _) = l.accept().await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        got.extend_from_slice(&buf[..n]);
        let t = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = t.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                break;
            }
        }
        assert!(n > 0, "connection closed early");
    }
    s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
        .await
        .unwrap();
    String::from_utf8(got).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_example_posts_to_an_allowed_listener_only() {
    let (wasm, dir) = example("webhook");
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let url = format!("url=http://127.0.0.1:{port}/hook");
    let allowed = format!("127.0.0.1:{port}");
    let listener = tokio::spawn(one_request(l));
    let run = |extra: Vec<String>| {
        let (wasm, dir) = (wasm.clone(), dir.clone());
        tokio::task::spawn_blocking(move || {
            let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
            plugin_test(&wasm, &dir, &extra)
        })
    };
    // Not on the allow-list (the list is empty): denied, nothing sent.
    let o = run(vec![
        "--config".into(),
        url.clone(),
        "--grant".into(),
        "http".into(),
    ])
    .await
    .unwrap();
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("not on this plugin's allow-list"),
        "{}",
        text(&o.stderr)
    );
    // Allowed: delivered.
    let o = run(vec![
        "--config".into(),
        url,
        "--grant".into(),
        "http".into(),
        "--grant".into(),
        "kv".into(),
        "--allow-host".into(),
        allowed,
    ])
    .await
    .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let req = listener.await.unwrap();
    assert!(req.starts_with("POST /hook HTTP/1.1\r\n"), "{req}");
    let body: serde_json::Value =
        serde_json::from_str(req.split_once("\r\n\r\n").unwrap().1).unwrap();
    assert_eq!(body["messages"][0]["event"], "backup.committed");
    assert_eq!(body["messages"][1]["event"], "session.failed");
    assert_eq!(body["messages"][1]["reason"], "the agent stopped sending");
}
