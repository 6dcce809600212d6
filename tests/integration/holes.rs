//! Smaller holes: what a 500 tells a client, who may read /metrics, what
//! `coffer config show` prints.

use coffer_types::BlockId;

use crate::harness::*;

#[tokio::test]
async fn a_500_names_its_request_id_and_no_server_path() {
    let server = TestServer::h2c().await;
    let a = server.enroll("acme", "ann", "ann-laptop").await;
    let body = block_bytes(61, 1 << 20);
    let hex = BlockId::of(&body).to_hex();
    // A file where the block's fan-out directory belongs: publishing fails.
    let archive_dir = server.data_dir.join("blocks/archives").join(&a.archive);
    std::fs::create_dir_all(&archive_dir).unwrap();
    std::fs::write(archive_dir.join(&hex[..2]), b"in the way").unwrap();
    let r = a.put(&body).await;
    assert_eq!(r.status, 500, "{}", String::from_utf8_lossy(&r.body));
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    let msg = r.error().unwrap().error.message;
    assert!(msg.contains(&id), "{msg}");
    let data_dir = server.data_dir.to_string_lossy().to_string();
    assert!(!msg.contains(&data_dir) && !msg.contains('/'), "{msg}");
    // The log has the details, under that id.
    let log = server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains(&id) && l.contains("request failed"))
        .unwrap_or_else(|| panic!("no log line for {id}:\n{log}"));
    assert!(line.contains(&hex[..2]), "{line}");
}

#[tokio::test]
async fn metrics_can_require_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, "m3tr1cs-s3cret\n").unwrap();
    let server = TestServer::start(
        Opts::default().env("COFFER__HTTP__METRICS_TOKEN_FILE", token_file.display()),
    )
    .await;
    let c = server.client().await;
    let r = c.get(&coffer_client::paths::metrics()).await.unwrap();
    assert_refused(&r, 401, "unauthorized", "token");
    let r = c
        .clone()
        .with_token("wrong")
        .get(&coffer_client::paths::metrics())
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = c
        .with_token("m3tr1cs-s3cret")
        .get(&coffer_client::paths::metrics())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(String::from_utf8_lossy(&r.body).contains("coffer_http_requests"));
    // Health and readiness stay open.
    let r = server
        .client()
        .await
        .get(&coffer_client::paths::healthz())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
}

#[test]
fn config_show_redacts_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("coffer.toml");
    std::fs::write(
        &cfg,
        r#"
[storage]
backend = "s3"
[storage.s3]
bucket = "b"
endpoint = "http://127.0.0.1:1"
allow_http = true
access_key_id = "AKIAEXAMPLE"
secret_access_key = "very-secret-key"
[plugins.grants.hook]
orgs = ["*"]
config = { url = "https://hooks.example.com", webhook_secret = "hush", api_token = "t0k" }
"#,
    )
    .unwrap();
    let out = std::process::Command::new(COFFER)
        .args(["config", "show"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in ["very-secret-key", "hush", "t0k"] {
        assert!(!text.contains(secret), "{secret} printed:\n{text}");
    }
    assert!(
        text.contains("<redacted>") && text.contains("AKIAEXAMPLE"),
        "{text}"
    );
    assert!(text.contains("https://hooks.example.com"), "{text}");
}
