//! The `coffer-agent` binary as an operator runs it, against the real server
//! over TLS: `init` writes the profile, later commands need nothing else, and
//! a backup process killed with SIGKILL is finished by the next run without
//! re-sending what the server already holds.

use coffer_client::paths;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use coffer_types::wire::DeviceList;
use serde_json::Value;

use crate::harness::*;

/// `coffer-agent` with only the profile and cache locations set.
pub(crate) fn agent(work: &Path) -> Command {
    let mut c = Command::new(agent_binary());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("COFFER_") {
            c.env_remove(k);
        }
    }
    c.env("COFFER_PROFILE", work.join("agent.toml"))
        .env("COFFER_CACHE_DIR", work.join("cache"));
    c
}

/// A TLS server with one enrolled device.
async fn tls_server_with_device() -> (TestServer, Agent) {
    let server = TestServer::start(Opts {
        tls: true,
        ..Opts::default()
    })
    .await;
    let enrolled = server.enroll("acme", "ann", "laptop").await;
    (server, enrolled)
}

/// `work/passphrase`, holding the tests' passphrase.
fn passphrase_file(work: &Path) -> std::path::PathBuf {
    let pass = work.join("passphrase");
    std::fs::write(&pass, "correct horse\n").unwrap();
    pass
}

/// `coffer-agent init` of `work`'s profile for `enrolled`, with the
/// server's CA and `work/passphrase`.
fn init(work: &Path, server: &TestServer, enrolled: &Agent) -> Output {
    let pass = passphrase_file(work);
    ok(agent(work)
        .args(["init", "--server", &server.url, "--token", &enrolled.token])
        .arg("--passphrase-file")
        .arg(&pass)
        .arg("--ca-cert")
        .arg(server.ca_cert())
        .output()
        .unwrap())
}

pub(crate) fn ok(o: Output) -> Output {
    assert!(
        o.status.success(),
        "{:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// The closing `{"event":"summary"}` line of `--json` output.
fn summary(o: &Output) -> Value {
    let out = String::from_utf8_lossy(&o.stdout);
    let last = out.lines().last().expect("no output");
    let v: Value = serde_json::from_str(last).unwrap();
    assert_eq!(v["event"], "summary", "{last}");
    v
}

/// `coffer-agent backup FLAGS SRC`, which must fail: its stderr.
fn refused_backup(work: &Path, src: &Path, flags: &[&str]) -> String {
    let o = agent(work)
        .arg("backup")
        .args(flags)
        .arg(src)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    err
}

async fn stored_blocks(admin: &coffer_http::client::Client) -> (u64, u64) {
    let d: DeviceList = admin.get(&paths::devices()).await.unwrap().json().unwrap();
    (d.devices[0].block_count, d.devices[0].backup_count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_binary_killed_with_sigkill_is_finished_by_its_rerun() {
    let (server, enrolled) = tls_server_with_device().await;
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let src = work.join("src");
    std::fs::create_dir_all(src.join("docs")).unwrap();
    for i in 0..6 {
        std::fs::write(src.join(format!("f{i}.bin")), block_bytes(200 + i, 8 << 20)).unwrap();
    }
    for i in 0..50 {
        std::fs::write(src.join(format!("docs/n{i}.txt")), format!("note {i}\n")).unwrap();
    }
    // init: every setting once, kept in a 0600 profile.
    let o = init(work, &server, &enrolled);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("created the key"),
        "{o:?}"
    );
    let mode = std::fs::metadata(work.join("agent.toml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A backup, killed with SIGKILL once the server holds some of its blocks.
    let mut child = agent(work)
        .args(["backup", "--json", "--streams", "4"])
        .arg(&src)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let admin = server.admin().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while stored_blocks(&admin).await.0 < 10 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "the backup was still running when killed ({status:?})"
    );
    // Let the server finish (or drop) what the dead process had in flight.
    let (mut stored_before, mut backups) = stored_blocks(&admin).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = stored_blocks(&admin).await;
        if now == (stored_before, backups) {
            break;
        }
        (stored_before, backups) = now;
    }
    assert!(stored_before >= 10);
    assert_eq!(backups, 0);

    // The rerun, with no settings but the profile, finishes the backup.
    let o = ok(agent(work)
        .args(["backup", "--json"])
        .arg(&src)
        .output()
        .unwrap());
    let s = summary(&o);
    assert_eq!(s["summary"]["files"], 56);
    assert_eq!(s["summary"]["skipped"], 0);
    let list: Vec<Value> = serde_json::from_slice(
        &ok(agent(work).args(["backups", "--json"]).output().unwrap()).stdout,
    )
    .unwrap();
    assert_eq!(list.len(), 1);
    let total = list[0]["block_count"].as_u64().unwrap();
    let uploaded = s["summary"]["blocks_uploaded"].as_u64().unwrap();
    // Every block the rerun sent was new to the server. (The killed run may
    // also have stored blocks of its own manifest, which carries its start
    // time, so the server can hold more than this backup uses.)
    let (stored_after, _) = stored_blocks(&admin).await;
    assert_eq!(
        stored_after - stored_before,
        uploaded,
        "the rerun sent {uploaded} blocks, of which only {} were new to the server",
        stored_after - stored_before
    );
    assert!(uploaded < total, "the rerun sent all {total} blocks again");

    // verify and restore, by the same binary.
    let o = ok(agent(work).args(["verify", "--json"]).output().unwrap());
    assert_eq!(summary(&o)["summary"]["bad"], serde_json::json!([]));
    let target = work.join("restored");
    let o = ok(agent(work)
        .args(["restore", "--json", "--target"])
        .arg(&target)
        .output()
        .unwrap());
    assert_eq!(summary(&o)["summary"]["files"], 56);
    let back = target.join(src.strip_prefix("/").unwrap());
    for i in 0..6 {
        let name = format!("f{i}.bin");
        assert!(
            std::fs::read(back.join(&name)).unwrap() == block_bytes(200 + i, 8 << 20),
            "{name}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(back.join("docs/n7.txt")).unwrap(),
        "note 7\n"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_wins_over_a_missing_ca_file_and_secret_flags_warn() {
    let (server, enrolled) = tls_server_with_device().await;
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let pass = passphrase_file(work);
    let ca = work.join("ca.pem");
    std::fs::copy(server.ca_cert(), &ca).unwrap();
    let o = ok(agent(work)
        .args(["init", "--server", &server.url, "--token", &enrolled.token])
        .arg("--passphrase-file")
        .arg(&pass)
        .arg("--ca-cert")
        .arg(&ca)
        .output()
        .unwrap());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--token on the command line") && err.contains("COFFER_TOKEN"),
        "{err}"
    );
    // The profile's CA file is gone: commands fail, unless --insecure.
    std::fs::remove_file(&ca).unwrap();
    let o = agent(work).arg("backups").output().unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("ca.pem"),
        "{o:?}"
    );
    ok(agent(work)
        .args(["backups", "--insecure"])
        .output()
        .unwrap());
    // --passphrase warns too; the env form does not.
    let o = agent(work)
        .args(["backups", "--insecure", "--passphrase", "correct horse"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("--passphrase on the command line"), "{err}");
    let o = ok(agent(work)
        .args(["backups", "--insecure"])
        .env("COFFER_PASSPHRASE", "correct horse")
        .output()
        .unwrap());
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("warning"),
        "{o:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_on_two_machines_at_once_ends_with_one_key() {
    let server = TestServer::h2c().await;
    let enrolled = server.enroll("acme", "ann", "laptop").await;
    let (m1, m2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let start = |work: &Path| {
        let pass = passphrase_file(work);
        agent(work)
            .args(["init", "--server", &server.url])
            .env("COFFER_TOKEN", &enrolled.token)
            .arg("--passphrase-file")
            .arg(&pass)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (start(m1.path()), start(m2.path()));
    let (a, b) = (
        ok(a.wait_with_output().unwrap()),
        ok(b.wait_with_output().unwrap()),
    );
    let created = [&a, &b]
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stdout).contains("created the key"))
        .count();
    assert_eq!(created, 1, "{a:?}\n{b:?}");
    // Both machines back up with the one key, and each reads the other's.
    let src = m1.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"from machine one").unwrap();
    ok(agent(m1.path()).arg("backup").arg(&src).output().unwrap());
    let out = ok(agent(m2.path())
        .args(["restore", "--target"])
        .arg(m2.path().join("r"))
        .output()
        .unwrap());
    assert!(out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_over_its_quota_stops_at_once_naming_the_quota() {
    let (server, enrolled) = tls_server_with_device().await;
    cli_ok(&server.cli(&[
        "org",
        "settings",
        "set",
        "acme",
        "quotas.device_bytes=64KiB",
    ]));
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    // One file of one chunk, over the quota by itself.
    std::fs::write(src.join("one.bin"), block_bytes(300, 100 << 10)).unwrap();
    init(work, &server, &enrolled);
    let o = agent(work)
        .args(["backup", "--streams", "1"])
        .arg(&src)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(
        err.contains("quota_exceeded") && err.contains("the quota of device"),
        "{err}"
    );
    // Not retried with backoff: a quota does not go away by waiting. One
    // block, one refusal (six, over 6 s of backoff, before).
    let m = server.api().await.metrics().await.unwrap();
    let refused: Vec<&str> = m
        .lines()
        .filter(|l| l.starts_with("coffer_errors_total") && l.contains("quota_exceeded"))
        .collect();
    assert_eq!(
        refused,
        ["coffer_errors_total{code=\"quota_exceeded\"} 1"],
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_applies_pushed_and_locked_settings_and_keeps_to_the_bandwidth_limit() {
    let (server, enrolled) = tls_server_with_device().await;
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("big.bin"), block_bytes(400, 24 << 20)).unwrap();
    std::fs::write(src.join("skip.tmp"), b"not wanted").unwrap();
    init(work, &server, &enrolled);
    let set = |kv: &str, mode: &str| {
        cli_ok(&server.cli(&["org", "settings", "set", "acme", kv, mode]));
    };
    set("device_defaults.streams=4", "--push");
    set("device_defaults.excludes=*.tmp", "--push");
    set("device_defaults.bandwidth_limit=8MiB", "--lock");

    // `settings` shows each value and where it comes from; the pushes are
    // now the profile's own choices.
    let o = ok(agent(work).arg("settings").output().unwrap());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("bandwidth_limit") && out.contains("locked by org acme"),
        "{out}"
    );
    assert!(out.contains("pushed by org acme"), "{out}");
    let profile = std::fs::read_to_string(work.join("agent.toml")).unwrap();
    assert!(profile.contains("streams = 4"), "{profile}");

    // A flag against the lock is refused, naming it and the org.
    let err = refused_backup(work, &src, &["--bandwidth-limit", "0"]);
    assert!(
        err.contains("device_defaults.bandwidth_limit is locked at 8MiB by org acme"),
        "{err}"
    );

    // The backup keeps to 8 MiB/s: 24 MiB cannot take less than about 2.5 s
    // (the first block goes at once). The excluded file stays out.
    let started = Instant::now();
    let o = ok(agent(work)
        .args(["backup", "--json"])
        .arg(&src)
        .output()
        .unwrap());
    let took = started.elapsed();
    let s = summary(&o)["summary"].clone();
    assert_eq!(s["files"], 1, "{s}");
    assert!(
        took >= Duration::from_millis(2500),
        "24 MiB at 8 MiB/s in {took:?}"
    );
    eprintln!(
        "bandwidth limit 8 MiB/s: {} MiB uploaded in {:.2} s",
        s["bytes_uploaded"].as_u64().unwrap() >> 20,
        took.as_secs_f64()
    );

    // A local change after the push is kept until the next push.
    let mut p: toml::Table = toml::from_str(&profile).unwrap();
    p["settings"]["streams"] = toml::Value::Integer(2);
    std::fs::write(work.join("agent.toml"), toml::to_string(&p).unwrap()).unwrap();
    let o = ok(agent(work).arg("settings").output().unwrap());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("streams") && l.contains(" 2 ") && l.ends_with("profile")),
        "{out}"
    );
    set("device_defaults.streams=6", "--push");
    let o = ok(agent(work).arg("settings").output().unwrap());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("streams") && l.contains(" 6 ")),
        "{out}"
    );

    // Compression, on by default, off when the org says so.
    let text: Vec<u8> = (0..200_000u32)
        .flat_map(|i| format!("line {} of a log\n", i % 977).into_bytes())
        .collect();
    let uploaded = |name: &str| {
        let dir = work.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("log.txt"), &text).unwrap();
        let o = ok(agent(work)
            .args(["backup", "--json"])
            .arg(&dir)
            .output()
            .unwrap());
        summary(&o)["summary"]["bytes_uploaded"].as_u64().unwrap()
    };
    let on = uploaded("text-on");
    assert!(on < text.len() as u64 / 4, "{on} of {}", text.len());
    set("device_defaults.compression=off", "--push");
    // The same content again: sealed uncompressed, it is new blocks.
    let off = uploaded("text-off");
    assert!(off >= text.len() as u64, "{off} of {}", text.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_backs_up_every_backup_interval_and_waits_out_an_unreachable_server() {
    let (mut server, enrolled) = tls_server_with_device().await;
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let src = work.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"first").unwrap();
    init(work, &server, &enrolled);
    cli_ok(&server.cli(&[
        "org",
        "settings",
        "set",
        "acme",
        "device_defaults.backup_interval=2s",
        "--push",
    ]));
    // Two rounds, the org's interval apart.
    let started = Instant::now();
    let o = ok(agent(work)
        .args(["run", "--count", "2"])
        .arg(&src)
        .output()
        .unwrap());
    let took = started.elapsed();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.matches("run: backup").count(), 2, "{err}");
    assert!(err.contains("the next in 2s"), "{err}");
    assert!(took >= Duration::from_millis(1900), "{took:?}");
    let admin = server.admin_api().await;
    let d = admin.device(&enrolled.device).await.unwrap();
    assert_eq!(d.backup_count, 2);

    // The server goes away for longer than one request's own retries (about
    // 6 s): the round fails, is tried again after a backoff, and succeeds
    // once the server is back.
    server.kill9();
    let mut child = agent(work)
        .args(["run", "--count", "1", "--every", "1h"])
        .arg(&src)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(9)).await;
    server.restart_on_same_port();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "run did not finish after the restart"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(
        err.contains("this round failed") && err.contains("trying again in 5s"),
        "{err}"
    );
    assert!(err.contains("run: backup 1 done"), "{err}");
    let d = server
        .admin_api()
        .await
        .device(&enrolled.device)
        .await
        .unwrap();
    assert_eq!(d.backup_count, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_makes_the_custodians_agent_keep_deleted_files_until_released() {
    let (server, enrolled) = tls_server_with_device().await;
    let work = tempfile::tempdir().unwrap();
    let work = work.path();
    let src = work.join("src");
    std::fs::create_dir_all(src.join("dir")).unwrap();
    std::fs::write(src.join("a.txt"), b"evidence a").unwrap();
    std::fs::write(src.join("b.txt"), b"before the hold").unwrap();
    std::fs::write(src.join("dir/c.txt"), b"stays").unwrap();
    init(work, &server, &enrolled);
    let backup = || {
        let o = ok(agent(work)
            .args(["backup", "--json"])
            .arg(&src)
            .output()
            .unwrap());
        summary(&o)["summary"].clone()
    };
    backup();
    // Without a hold (keep_deleted 0 by default) a deleted file lives on
    // only in the older backups.
    std::fs::remove_file(src.join("b.txt")).unwrap();
    assert_eq!(backup()["deleted_kept"], 0);

    // A hold under a policy that keeps deleted files (forever, the default).
    let p: Value = serde_json::from_str(&cli_ok(
        &server.cli(&["hold", "policy", "create", "preserve", "--json"]),
    ))
    .unwrap();
    assert_eq!(p["keep_deleted"], "forever");
    cli_ok(&server.cli(&["hold", "matter", "create", "m1", "--policy", "preserve"]));
    cli_ok(&server.cli(&[
        "hold",
        "custodian",
        "add",
        "--matter",
        "m1",
        "--user",
        "ann",
        "--reason",
        "litigation",
    ]));
    let o = ok(agent(work).arg("settings").output().unwrap());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines().any(|l| l.starts_with("keep_deleted")
            && l.contains("forever")
            && l.contains("locked by legal hold m1")),
        "{out}"
    );
    // The agent may not turn it off.
    let err = refused_backup(work, &src, &["--keep-deleted", "0"]);
    assert!(
        err.contains("device_defaults.keep_deleted is locked at forever by legal hold m1"),
        "{err}"
    );
    // a.txt is deleted while held: every later backup keeps it, marked.
    backup();
    std::fs::remove_file(src.join("a.txt")).unwrap();
    let s = backup();
    assert_eq!(
        (s["deleted_kept"].clone(), s["files"].clone()),
        (1.into(), 1.into()),
        "{s}"
    );
    std::fs::write(src.join("d.txt"), b"new").unwrap();
    assert_eq!(backup()["deleted_kept"], 1);
    // What the previous backup held comes from its manifest: a lost local
    // cache loses nothing.
    std::fs::remove_dir_all(work.join("cache")).unwrap();
    assert_eq!(backup()["deleted_kept"], 1);
    let restored = |name: &str, extra: &[&str]| {
        let t = work.join(name);
        ok(agent(work)
            .args(["restore", "--target"])
            .arg(&t)
            .args(extra)
            .output()
            .unwrap());
        t.join(src.strip_prefix("/").unwrap())
    };
    let plain = restored("plain", &[]);
    assert!(!plain.join("a.txt").exists() && !plain.join("b.txt").exists());
    assert_eq!(std::fs::read(plain.join("dir/c.txt")).unwrap(), b"stays");
    let all = restored("all", &["--include-deleted"]);
    assert_eq!(std::fs::read(all.join("a.txt")).unwrap(), b"evidence a");
    assert!(
        !all.join("b.txt").exists(),
        "gone before the hold: not carried"
    );

    // Released: the org's value is pushed back, and the next backup lets
    // the deleted file go (the older backups still hold it, for retention).
    cli_ok(&server.cli(&[
        "hold",
        "custodian",
        "release",
        "--matter",
        "m1",
        "--user",
        "ann",
        "--reason",
        "settled",
    ]));
    let o = ok(agent(work).arg("settings").output().unwrap());
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.lines()
            .any(|l| l.starts_with("keep_deleted") && !l.contains("legal hold")),
        "{out}"
    );
    assert_eq!(backup()["deleted_kept"], 0);
}
