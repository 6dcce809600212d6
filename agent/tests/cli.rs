//! The `coffer-agent` binary without a server: what an operator sees when
//! the settings are missing or wrong. (The agent against a real server is in
//! the workspace's integration tests, which run this same binary.)

use std::path::Path;
use std::process::{Command, Output};

const AGENT: &str = env!("CARGO_BIN_EXE_coffer-agent");

/// The agent with a private profile path and none of the caller's settings.
fn agent(dir: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(AGENT);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("COFFER_") {
            c.env_remove(k);
        }
    }
    c.env("COFFER_PROFILE", dir.join("agent.toml"))
        .env("COFFER_CACHE_DIR", dir.join("cache"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn each_missing_setting_is_named_with_its_flag_and_variable() {
    let dir = tempfile::tempdir().unwrap();
    let o = agent(dir.path(), &["backups"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--server, set COFFER_SERVER"),
        "{}",
        stderr(&o)
    );

    let o = agent(dir.path(), &["--server", "http://127.0.0.1:9", "backups"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("COFFER_TOKEN"), "{}", stderr(&o));
}

#[test]
fn an_unreachable_server_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on: bind one, learn it, close it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let o = agent(dir.path(), &["--server", &url, "--token", "t", "backups"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    // The --token warning, then the error.
    assert!(e.starts_with("warning: --token on the command line"), "{e}");
    assert!(
        e.lines().nth(1).is_some_and(|l| l.starts_with("error: ")),
        "{e}"
    );
    assert!(!e.contains("panicked"), "{e}");
}

#[test]
fn a_missing_ca_certificate_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("nope.pem");
    let o = agent(
        dir.path(),
        &[
            "--server",
            "https://127.0.0.1:9",
            "--token",
            "t",
            "--ca-cert",
            ca.to_str().unwrap(),
            "backups",
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("read CA certificate {}", ca.display())),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_broken_profile_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("agent.toml");
    std::fs::write(&profile, "server = 42\n").unwrap();
    let o = agent(dir.path(), &["backups"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&profile.display().to_string()),
        "{}",
        stderr(&o)
    );
}

#[test]
fn usage_errors_exit_2_and_help_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let o = agent(dir.path(), &["backup"]);
    assert_eq!(o.status.code(), Some(2), "backup needs a path");
    let o = agent(dir.path(), &["--help"]);
    assert!(o.status.success());
    let out = String::from_utf8_lossy(&o.stdout);
    for cmd in ["init", "backup", "backups", "restore", "verify"] {
        assert!(out.contains(cmd), "{cmd} missing from --help:\n{out}");
    }
}
