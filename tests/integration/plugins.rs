//! Plugins through the `coffer` binary: `coffer plugin test` runs the
//! example plugins, built from source, on their sample data — and the
//! webhook example reaches a real HTTP listener on loopback only when the
//! operator allows it.

use coffer_client::paths;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use coffer_plugin_host::testing::{build_guests, build_guests_v0_1, guest_workspace};
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

/// The backup ids a printed plan expires.
fn expired(plan: &serde_json::Value) -> Vec<&str> {
    plan["expire"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["backup"].as_str().unwrap())
        .collect()
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
    let expire = expired(&plan);
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

/// The JSON body of the one request `hook` (from [`one_request`]) received.
async fn webhook_body(hook: tokio::task::JoinHandle<String>) -> serde_json::Value {
    let req = tokio::time::timeout(std::time::Duration::from_secs(20), hook)
        .await
        .expect("the webhook was called")
        .unwrap();
    serde_json::from_str(req.split_once("\r\n\r\n").unwrap().1).unwrap()
}

/// Accept one HTTP/1.1 request on `l`, answer 204, return the request.
async fn one_request(l: tokio::net::TcpListener) -> String {
    let (s, _) = l.accept().await.unwrap();
    answer_204(s).await
}

/// Every request `l` receives, answered 204, as the JSON bodies.
fn hook_bodies(
    l: tokio::net::TcpListener,
) -> tokio::sync::mpsc::UnboundedReceiver<serde_json::Value> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let req = answer_204(s).await;
            let body = serde_json::from_str(req.split_once("\r\n\r\n").unwrap().1).unwrap();
            if tx.send(body).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next body from [`hook_bodies`], waiting at most 20 s.
async fn next_body(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) -> serde_json::Value {
    tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
        .await
        .expect("the webhook was called")
        .unwrap()
}

/// Read one HTTP/1.1 request from `s`, answer 204, return the request.
async fn answer_204(mut s: tokio::net::TcpStream) -> String {
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

/// A plugins directory holding the named guests as `<name>/plugin.{wasm,toml}`.
fn plugins_dir(names: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for n in names {
        install(d.path(), n, n);
    }
    d
}

/// Put guest `crate_name` into `dir/<as_name>/`.
fn install(dir: &Path, as_name: &str, crate_name: &str) {
    let (wasm, src) = example_or_test(crate_name);
    install_from(dir, as_name, crate_name, &wasm, &src)
}

/// Put `wasm`, with the manifest of `src`, into `dir/<as_name>/`.
fn install_from(dir: &Path, as_name: &str, crate_name: &str, wasm: &Path, src: &Path) {
    let to = dir.join(as_name);
    std::fs::create_dir_all(&to).unwrap();
    let toml = std::fs::read_to_string(src.join("plugin.toml"))
        .unwrap()
        .replacen(
            &format!("name = \"{crate_name}\""),
            &format!("name = \"{as_name}\""),
            1,
        );
    // Write then rename, as an operator's deploy would, so a scan never
    // sees half a file.
    for (file, bytes) in [
        ("plugin.toml", toml.into_bytes()),
        ("plugin.wasm", std::fs::read(wasm).unwrap()),
    ] {
        std::fs::write(to.join(format!(".{file}.tmp")), bytes).unwrap();
        std::fs::rename(to.join(format!(".{file}.tmp")), to.join(file)).unwrap();
    }
}

fn example_or_test(name: &str) -> (PathBuf, PathBuf) {
    let ws = guest_workspace();
    let dir = ["examples", "test-plugins"]
        .iter()
        .map(|d| ws.join(d).join(name))
        .find(|p| p.exists())
        .unwrap();
    (
        build_guests().join(format!("{}.wasm", name.replace('-', "_"))),
        dir,
    )
}

fn admin_cli(server: &crate::harness::TestServer, args: &[&str]) -> Output {
    server.cli(args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_plugins_per_org_from_its_plugins_directory() {
    use crate::harness::{Opts, TestServer};
    let plugins = plugins_dir(&["gfs-retention", "csv-report", "webhook"]);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let config = format!(
        r#"
[plugins]
dir = "{dir}"
reload_poll_ms = 100
batch_wait_ms = 50

[plugins.grants.webhook]
orgs = ["acme"]
capabilities = ["http", "kv"]
allowed_hosts = ["127.0.0.1:{port}"]
config = {{ url = "http://127.0.0.1:{port}/hook", events = "committed" }}

[plugins.grants.csv-report]
orgs = ["acme"]
capabilities = ["inventory"]

[plugins.grants.gfs-retention]
orgs = ["*"]
config = {{ daily = "1", weekly = "0", monthly = "0", yearly = "0" }}
"#,
        dir = plugins.path().display()
    );
    let mut server = TestServer::start(Opts {
        config: Some(config),
        ..Opts::default()
    })
    .await;
    // A sub-organization inherits its parent's plugins.
    let o = admin_cli(&server, &["org", "create", "acme"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = admin_cli(&server, &["org", "create", "--parent", "acme", "acme-eu"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let o = admin_cli(&server, &["org", "create", "other"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let dev = server.enroll("acme-eu", "ann", "laptop").await;
    let stranger = server.enroll("other", "bob", "desktop").await;

    // Two backups of ann's laptop and one of a device in another org.
    let hook = tokio::spawn(one_request(l));
    for (agent, n) in [(&dev, 2), (&stranger, 1)] {
        for i in 0..n {
            let body = crate::harness::block_bytes(500 + i, 1000);
            let r = agent.put(&body).await;
            assert_eq!(r.status, 201, "{r:?}");
            let id = coffer_types::BlockId::of(&body);
            let s = agent.open_session().await;
            let r = agent.commit(&s, &id, &[id], 100.0).await;
            assert_eq!(r.status, 201, "{r:?}");
        }
    }
    // The webhook got acme-eu's commits (batched), never other's.
    let body = webhook_body(hook).await;
    for m in body["messages"].as_array().unwrap() {
        assert_eq!(m["event"], "backup.committed");
        assert_eq!(m["org"], "acme-eu", "{body}");
        assert_eq!(m["archive"], dev.archive.as_str());
    }

    // A device that never backs up, in an org below acme with thresholds
    // of a second: red by the time the report runs.
    assert!(
        admin_cli(&server, &["org", "create", "acme-idle", "--parent", "acme"])
            .status
            .success()
    );
    let o = admin_cli(
        &server,
        &[
            "org",
            "settings",
            "set",
            "acme-idle",
            "reporting.warning_after=1s",
            "reporting.critical_after=2s",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let idle = server.enroll("acme-idle", "ivy", "idle").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;

    // Reports, through the CLI, for the org that has the plugin.
    let o = admin_cli(&server, &["report", "run", "csv-report", "--org", "acme"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let csv = text(&o.stdout);
    assert!(csv.starts_with("org,user,device"), "{csv}");
    assert!(
        csv.contains(&format!("acme-eu,ann,laptop,{}", dev.device)),
        "{csv}"
    );
    assert!(!csv.contains("desktop"), "another org's device: {csv}");
    // The health column comes from the server's health (inventory.health):
    // the device backed up just now is green, the idle one red.
    assert!(
        csv.contains(&format!("acme-eu,ann,laptop,{},green,", dev.device)),
        "{csv}"
    );
    assert!(
        csv.contains(&format!("acme-idle,ivy,idle,{},red,", idle.device)),
        "{csv}"
    );
    let o = admin_cli(&server, &["report", "run", "csv-report", "--org", "other"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("not enabled for org other"),
        "{}",
        text(&o.stderr)
    );

    // A retention plan (dry run): daily=1 keeps one; the newest is kept anyway.
    let o = admin_cli(
        &server,
        &[
            "retention",
            "plan",
            "--archive",
            &dev.archive,
            "--plugin",
            "gfs-retention",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(plan["plugin"], "gfs-retention");
    assert_eq!(plan["backups"], 2);
    assert_eq!(plan["expire"].as_array().unwrap().len(), 1, "{plan}");
    assert_eq!(plan["dry_run"], true);

    // list, disable, enable, and the metrics.
    let o = admin_cli(&server, &["plugin", "list", "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let names: Vec<&str> = list["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["csv-report", "gfs-retention", "webhook"]);
    let o = admin_cli(&server, &["plugin", "disable", "csv-report"]);
    assert!(text(&o.stdout).contains("disabled"), "{}", text(&o.stdout));
    let o = admin_cli(&server, &["report", "run", "csv-report", "--org", "acme"]);
    assert!(
        text(&o.stderr).contains("plugin_failed"),
        "{}",
        text(&o.stderr)
    );
    let o = admin_cli(&server, &["plugin", "enable", "csv-report"]);
    assert!(o.status.success());
    let metrics = server.client().await.get(&paths::metrics()).await.unwrap();
    let m = text(&metrics.body);
    assert!(
        m.contains("coffer_plugin_calls_total{plugin=\"csv-report\"}"),
        "{m}"
    );
    assert!(m.trim_end().ends_with("# EOF"));

    // The operator's setting outlives a restart, and is audited.
    let o = admin_cli(&server, &["plugin", "disable", "webhook"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    server.restart();
    let o = admin_cli(&server, &["plugin", "status", "webhook"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(s["enabled"], false, "{s}");
    let o = admin_cli(&server, &["audit", "list", "--target", "plugin:", "--json"]);
    let log: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["plugin.disable", "plugin.enable", "plugin.disable"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_plugin_file_is_reloaded_and_a_broken_one_leaves_the_old_running() {
    use crate::harness::{Opts, TestServer};
    let plugins = plugins_dir(&["gfs-retention"]);
    let config = format!(
        "[plugins]\ndir = \"{}\"\nreload_poll_ms = 100\n[plugins.grants.gfs-retention]\norgs = [\"*\"]\n",
        plugins.path().display()
    );
    let server = TestServer::start(Opts {
        config: Some(config),
        ..Opts::default()
    })
    .await;
    let status = |server: &TestServer| -> serde_json::Value {
        let o = server.cli(&["plugin", "status", "gfs-retention"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let first = status(&server)["digest"].as_str().unwrap().to_string();
    // A file that is not a component: refused, the old version serves on.
    let wasm = plugins.path().join("gfs-retention/plugin.wasm");
    let good = std::fs::read(&wasm).unwrap();
    std::fs::write(wasm.with_extension("tmp"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::rename(wasm.with_extension("tmp"), &wasm).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let refused = loop {
        let s = status(&server);
        if s["load_error"].is_string() || std::time::Instant::now() > deadline {
            break s;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        refused["load_error"]
            .as_str()
            .unwrap()
            .contains("core WebAssembly module"),
        "{refused}"
    );
    assert_eq!(
        refused["digest"],
        first.as_str(),
        "the old version still serves"
    );
    // The hostile plugin under the same name, by explicit reload: swapped.
    let (hostile, _) = example_or_test("hostile");
    std::fs::write(&wasm, std::fs::read(hostile).unwrap()).unwrap();
    let o = server.cli(&["plugin", "reload", "gfs-retention"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let s = status(&server);
    assert_ne!(s["digest"], first.as_str());
    assert!(s["load_error"].is_null(), "{s}");
    let _ = good;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_integration_plugin_drops_events_instead_of_slowing_ingest() {
    use crate::harness::{Opts, TestServer};
    let plugins = tempfile::tempdir().unwrap();
    install(plugins.path(), "slowpoke", "prober");
    let config = format!(
        "[plugins]\ndir = \"{}\"\nqueue_capacity = 2\nbatch_max = 1\nbatch_wait_ms = 1\ncpu_ms = 300\n\
         [plugins.grants.slowpoke]\norgs = [\"*\"]\nconfig = {{ action = \"slow\" }}\n",
        plugins.path().display()
    );
    let server = TestServer::start(Opts {
        config: Some(config),
        ..Opts::default()
    })
    .await;
    let dev = server.enroll("acme", "ann", "laptop").await;
    let body = crate::harness::block_bytes(900, 1000);
    assert_eq!(dev.put(&body).await.status, 201);
    let id = coffer_types::BlockId::of(&body);
    // Each event costs the plugin 300 ms of CPU; 20 commits do not wait.
    for _ in 0..20 {
        let s = dev.open_session().await;
        let r = dev.commit(&s, &id, &[id], 100.0).await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    let o = server.cli(&["plugin", "status", "slowpoke"]);
    let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(s["events_dropped"].as_u64().unwrap() > 0, "{s}");
    assert_eq!(
        s["events_dropped"].as_u64().unwrap() + s["events_queued"].as_u64().unwrap(),
        41,
        "enrollment, 20 session openings and 20 commits: {s}"
    );
}

#[test]
fn a_python_plugin_built_with_componentize_py_runs_in_the_same_host() {
    // Built from a copy: componentize-py writes __pycache__ beside the source.
    let out = tempfile::tempdir().unwrap();
    let src = out.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let example = guest_workspace().join("examples/python-retention");
    for e in std::fs::read_dir(&example).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), src.join(e.file_name())).unwrap();
        }
    }
    let wasm = out.path().join("python_retention.wasm");
    let o = crate::harness::componentize_py()
        .arg("-d")
        .arg(guest_workspace().join("../../wit"))
        .args(["-w", "retention", "componentize", "-p"])
        .arg(&src)
        .args(["app", "-o"])
        .arg(&wasm)
        .output()
        .unwrap();
    assert!(o.status.success(), "componentize-py: {}", text(&o.stderr));
    let sample = guest_workspace().join("examples/gfs-retention/sample.json");
    let o = Command::new(COFFER)
        .args(["plugin", "test"])
        .arg(&wasm)
        .arg("--manifest")
        .arg(src.join("plugin.toml"))
        .arg("--input")
        .arg(sample)
        .args(["--config", "keep=30"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let expire = expired(&plan);
    // 40 backups, the newest 30 kept; bk_15 is pinned, so the host keeps it
    // even if proposed (it is not: it is among the newest 30).
    assert_eq!(expire.len(), 10, "{plan}");
    assert!(
        expire.contains(&"bk_39") && !expire.contains(&"bk_29"),
        "{plan}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_session_reaches_the_webhook_with_its_reason() {
    use crate::harness::{Opts, TestServer};
    let plugins = plugins_dir(&["webhook"]);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let config = format!(
        "[plugins]\ndir = \"{}\"\nbatch_wait_ms = 20\n[plugins.grants.webhook]\norgs = [\"*\"]\n\
         capabilities = [\"http\"]\nallowed_hosts = [\"127.0.0.1:{port}\"]\n\
         config = {{ url = \"http://127.0.0.1:{port}/hook\", events = \"failed\" }}\n",
        plugins.path().display()
    );
    let server = TestServer::start(Opts {
        config: Some(config),
        ..Opts::default()
    })
    .await;
    let dev = server.enroll("acme", "ann", "laptop").await;
    let hook = tokio::spawn(one_request(l));
    // A plain abort is not a failure; a control character is refused.
    let s = dev.open_session().await;
    let r = dev
        .client
        .post_json(
            &paths::session_abort(&dev.archive, &s.to_string()),
            &serde_json::json!({}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let s = dev.open_session().await;
    let path = paths::session_abort(&dev.archive, &s.to_string());
    let r = dev
        .client
        .post_json(&path, &serde_json::json!({"failed": "bad\u{7}"}))
        .await
        .unwrap();
    assert_eq!(r.status, 400, "{r:?}");
    let r = dev
        .client
        .post_json(
            &path,
            &serde_json::json!({"failed": "the disk of the laptop is failing"}),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let body = webhook_body(hook).await;
    let m = &body["messages"];
    assert_eq!(m.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(m[0]["event"], "session.failed");
    assert_eq!(m[0]["session"], s.as_str());
    assert_eq!(m[0]["reason"], "the disk of the laptop is failing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_and_healed_blocks_reach_integrations_and_plugins_built_for_0_1_keep_running() {
    use crate::harness::{block_bytes, cli_ok, Opts, TestServer};
    use coffer_types::BlockId;
    // The webhook example built against the current contract, and the same
    // source built against coffer:plugin@0.1.0, side by side.
    let plugins = plugins_dir(&[]);
    let (_, src) = example_or_test("webhook");
    install_from(
        plugins.path(),
        "hook-new",
        "webhook",
        &build_guests().join("webhook.wasm"),
        &src,
    );
    install_from(
        plugins.path(),
        "hook-old",
        "webhook",
        &build_guests_v0_1().join("webhook.wasm"),
        &src,
    );
    let new_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let old_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grant = |name: &str, l: &tokio::net::TcpListener, events: &str| {
        let port = l.local_addr().unwrap().port();
        format!(
            "[plugins.grants.{name}]\norgs = [\"*\"]\ncapabilities = [\"http\"]\n\
             allowed_hosts = [\"127.0.0.1:{port}\"]\n\
             config = {{ url = \"http://127.0.0.1:{port}/hook\", events = \"{events}\" }}\n"
        )
    };
    let config = format!(
        "[plugins]\ndir = \"{}\"\nbatch_wait_ms = 20\n{}{}",
        plugins.path().display(),
        grant("hook-new", &new_l, "damaged,healed"),
        grant("hook-old", &old_l, "committed,damaged,healed"),
    );
    let server = TestServer::start(Opts {
        config: Some(config),
        ..Opts::default().env("COFFER__SCRUB__INTERVAL", "1h")
    })
    .await;
    let listed: serde_json::Value =
        serde_json::from_str(&cli_ok(&admin_cli(&server, &["plugin", "list", "--json"]))).unwrap();
    let contract = |name: &str| {
        listed["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["contract"].clone())
            .unwrap()
    };
    assert_eq!(contract("hook-new"), "0.3.0", "{listed}");
    assert_eq!(contract("hook-old"), "0.1.0", "{listed}");
    let text = cli_ok(&admin_cli(&server, &["plugin", "list"]));
    assert!(
        text.contains("CONTRACT") && text.contains("0.1.0"),
        "{text}"
    );

    let a = server.enroll("acme", "ann", "ann-laptop").await;
    let good = block_bytes(77, 256 << 10);
    let id = BlockId::of(&good);
    assert_eq!(a.put(&good).await.status, 201);
    let hex = id.to_hex();
    let file = server.block_file(&a.archive, &id);
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[1000] ^= 0x5a;
    std::fs::write(&file, bytes).unwrap();

    // The scrub finds it: the 0.2 plugin hears of it once.
    let mut new_hook = hook_bodies(new_l);
    cli_ok(&admin_cli(&server, &["scrub", "run"]));
    let body = next_body(&mut new_hook).await;
    let m = &body["messages"];
    assert_eq!(m.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(m[0]["event"], "block.damaged", "{body}");
    assert_eq!(m[0]["block"], hex.as_str());
    assert_eq!(m[0]["archive"], a.archive.as_str());
    assert_eq!(m[0]["device"], a.device.as_str());
    assert_eq!(m[0]["damage"], "corrupt");
    assert_eq!(m[0]["found_by"], "scrub");

    // The device uploads it again: healed.
    assert_eq!(a.put(&good).await.status, 201);
    let body = next_body(&mut new_hook).await;
    assert_eq!(body["messages"][0]["event"], "block.healed", "{body}");
    assert_eq!(body["messages"][0]["block"], hex.as_str());

    // The 0.1 plugin was sent none of that, and gets the commit.
    let hook = tokio::spawn(one_request(old_l));
    let session = a.open_session().await;
    assert_eq!(a.commit(&session, &id, &[id], 100.0).await.status, 201);
    let body = webhook_body(hook).await;
    let m = body["messages"].as_array().unwrap();
    assert_eq!(m.len(), 1, "{body}");
    assert_eq!(m[0]["event"], "backup.committed");
    let status: serde_json::Value = serde_json::from_str(&cli_ok(&admin_cli(
        &server,
        &["plugin", "status", "hook-old"],
    )))
    .unwrap();
    // It was called for the enrolment, the session and the commit (two or
    // three batches); the damage and the heal, each in a batch of its own,
    // would have made two more.
    let calls = status["calls"].as_u64().unwrap();
    assert!((2..=3).contains(&calls), "{status}");
    assert_eq!(status["failures"], 0, "{status}");
    assert_eq!(status["events_queued"], 5, "{status}");
    // A second scrub finds nothing new to tell.
    cli_ok(&admin_cli(&server, &["scrub", "run"]));
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(500), new_hook.recv())
            .await
            .is_err(),
        "nothing more was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_change_reaches_an_integration_plugin_once_it_is_recorded() {
    use crate::harness::{cli_ok, Opts, TestServer};
    let plugins = plugins_dir(&["webhook"]);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let config = format!(
        "[plugins]\ndir = \"{}\"\nbatch_wait_ms = 20\n[plugins.grants.webhook]\norgs = [\"*\"]\n\
         capabilities = [\"http\"]\nallowed_hosts = [\"127.0.0.1:{port}\"]\n\
         config = {{ url = \"http://127.0.0.1:{port}/hook\", events = \"health\" }}\n\
         [workers]\nhealth_tick_ms = 100\n",
        plugins.path().display()
    );
    let server = TestServer::start(Opts {
        config: Some(config),
        ..Opts::default()
    })
    .await;
    cli_ok(&server.cli(&["org", "create", "acme"]));
    cli_ok(&server.cli(&[
        "org",
        "settings",
        "set",
        "acme",
        "reporting.warning_after=1s",
        "reporting.alert_warning_after=1s",
    ]));
    let dev = server.enroll("acme", "ann", "ann-laptop").await;
    let mut rx = hook_bodies(l);
    let body = next_body(&mut rx).await;
    let m = &body["messages"];
    assert_eq!(m.as_array().unwrap().len(), 1, "{body}");
    assert_eq!(m[0]["event"], "health.changed");
    assert_eq!(m[0]["device"], dev.device.as_str());
    assert_eq!(m[0]["name"], "ann-laptop");
    assert_eq!(
        (&m[0]["from"], &m[0]["to"]),
        (&"ok".into(), &"warning".into())
    );
    assert_eq!(m[0]["reason"], "never_backed_up");
    // The same change is in the outbox, once.
    let alerts: coffer_types::wire::AlertList =
        serde_json::from_str(&cli_ok(&server.cli(&["alerts", "--json"]))).unwrap();
    assert_eq!(alerts.alerts.len(), 1);
    assert_eq!(alerts.alerts[0].to, "warning");
}
