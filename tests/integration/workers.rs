//! The supervised workers through the real server: listed with their
//! state, a failing worker backs off, shows its error, is counted in
//! `/metrics`, and recovers by itself once the cause is gone.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::*;

fn worker(server: &TestServer, name: &str) -> Value {
    let out = cli_ok(&server.cli(&["workers", "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == name)
        .unwrap_or_else(|| panic!("no worker {name}: {v}"))
        .clone()
}

fn wait_for(server: &TestServer, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let w = worker(server, name);
        if ok(&w) {
            return w;
        }
        assert!(Instant::now() < deadline, "worker {name} never {what}: {w}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_worker_backs_off_shows_its_error_and_recovers() {
    let plugins = tempfile::tempdir().unwrap();
    let server = TestServer::start(Opts {
        config: Some(format!(
            "[plugins]\ndir = \"{}\"\nreload_poll_ms = 200\n",
            plugins.path().display()
        )),
        ..Opts::default()
    })
    .await;
    let table = cli_ok(&server.cli(&["workers"]));
    assert!(
        table.contains("plugin-reload") && table.contains("spool-sweep"),
        "{table}"
    );
    let w = wait_for(&server, "plugin-reload", "ran", |w| {
        w["runs"].as_u64() >= Some(2)
    });
    assert_eq!(
        (w["state"].as_str(), w["failures"].as_u64()),
        (Some("idle"), Some(0))
    );
    assert!(w["next_run"].is_u64() && w["last_success"].is_u64(), "{w}");
    assert_eq!(worker(&server, "spool-sweep")["runs"], 1);

    // Take the plugins directory away: each step fails.
    std::fs::remove_dir(plugins.path()).unwrap();
    let w = wait_for(&server, "plugin-reload", "failed twice", |w| {
        w["failures_in_a_row"].as_u64() >= Some(2)
    });
    assert_eq!(w["state"], "backing_off");
    assert!(
        w["last_error"]
            .as_str()
            .unwrap()
            .contains("read the plugins directory"),
        "{w}"
    );
    let metrics = server.api().await.metrics().await.unwrap();
    assert!(
        metrics.contains("coffer_worker_backing_off{worker=\"plugin-reload\"} 1"),
        "{metrics}"
    );
    let failures: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("coffer_worker_failures_total{worker=\"plugin-reload\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures >= 2);

    // Bring it back: the supervisor retries and the worker recovers.
    std::fs::create_dir(plugins.path()).unwrap();
    let w = wait_for(&server, "plugin-reload", "recovered", |w| {
        w["state"] == "idle" && w["failures_in_a_row"] == 0
    });
    assert!(
        w["failures"].as_u64() >= Some(2),
        "the failures are kept: {w}"
    );
}
