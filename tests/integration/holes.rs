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

/// Send a 17 MiB block with its `Content-Length` over raw HTTP/2, every
/// byte; the answer's status, and whether the server reset the stream
/// while the body was still being sent.
async fn oversized_upload(server: &TestServer, a: &Agent, expect_continue: bool) -> (u16, bool) {
    use bytes::Bytes;
    let tcp = tokio::net::TcpStream::connect(server.url.trim_start_matches("http://"))
        .await
        .unwrap();
    let (h2, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut h2 = h2.ready().await.unwrap();
    let body = block_bytes(66, 17 << 20);
    let mut req = http::Request::put(format!(
        "http://coffer{}",
        coffer_client::paths::block(&a.archive, &BlockId::of(&body).to_hex())
    ))
    .header("authorization", format!("Bearer {}", a.token))
    .header("content-length", body.len());
    if expect_continue {
        req = req.header("expect", "100-continue");
    }
    let (resp, mut send) = h2.send_request(req.body(()).unwrap(), false).unwrap();
    let status = resp.await.unwrap().status().as_u16();
    // The answer came first; the rest of the body still goes through.
    let mut reset = false;
    for piece in body.chunks(1 << 20) {
        send.reserve_capacity(piece.len());
        loop {
            match futures::future::poll_fn(|cx| send.poll_capacity(cx)).await {
                Some(Ok(n)) if n > 0 => break,
                Some(Ok(_)) => continue,
                _ => {
                    reset = true;
                    break;
                }
            }
        }
        if reset
            || send
                .send_data(Bytes::copy_from_slice(piece), false)
                .is_err()
        {
            reset = true;
            break;
        }
    }
    (status, reset)
}

#[tokio::test]
async fn an_oversized_block_is_answered_413_and_the_client_may_finish_sending() {
    let server = TestServer::h2c().await;
    let a = server.enroll("acme", "ann", "ann-laptop").await;
    for expect in [false, true] {
        let (status, reset) = oversized_upload(&server, &a, expect).await;
        assert_eq!(status, 413, "expect-continue {expect}");
        assert!(
            !reset,
            "the stream was reset under the client (expect-continue {expect})"
        );
    }
    // The same with curl, as the issue saw it, when the machine has curl.
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("curl is not installed: its part of this test did not run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    let body = block_bytes(67, 17 << 20);
    std::fs::write(&big, &body).unwrap();
    for extra in [None, Some("Expect: 100-continue")] {
        let mut c = std::process::Command::new("curl");
        c.args([
            "-sS",
            "--http2-prior-knowledge",
            "-X",
            "PUT",
            "-w",
            "\n%{http_code}",
        ])
        .arg("-H")
        .arg(format!("authorization: Bearer {}", a.token))
        .arg("--data-binary")
        .arg(format!("@{}", big.display()));
        if let Some(h) = extra {
            c.arg("-H").arg(h);
        }
        let out = c
            .arg(format!(
                "{}{}",
                server.url,
                coffer_client::paths::block(&a.archive, &BlockId::of(&body).to_hex())
            ))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.ends_with("413") && text.contains("block_too_large"),
            "{extra:?}: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The upload spool files (`.*.part`) under `dir`.
fn spool_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|n| n.to_string_lossy().ends_with(".part"))
            {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test]
async fn a_cancelled_upload_leaves_no_spool_file() {
    use bytes::Bytes;
    let server = TestServer::h2c().await;
    let a = server.enroll("acme", "ann", "ann-laptop").await;
    let body = block_bytes(71, 4 << 20);
    for how in ["reset", "connection dropped"] {
        let tcp = tokio::net::TcpStream::connect(server.url.trim_start_matches("http://"))
            .await
            .unwrap();
        let (h2, conn) = h2::client::handshake(tcp).await.unwrap();
        let conn = tokio::spawn(conn);
        let mut h2 = h2.ready().await.unwrap();
        let req = http::Request::put(format!(
            "http://coffer{}",
            coffer_client::paths::block(&a.archive, &BlockId::of(&body).to_hex())
        ))
        .header("authorization", format!("Bearer {}", a.token))
        .header("content-length", body.len())
        .body(())
        .unwrap();
        let (_resp, mut send) = h2.send_request(req, false).unwrap();
        send.send_data(Bytes::copy_from_slice(&body[..1 << 20]), false)
            .unwrap();
        // The server has started a spool file for it.
        let blocks = server.data_dir.join("blocks");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while spool_files(&blocks).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "no spool file appeared"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        match how {
            "reset" => send.send_reset(h2::Reason::CANCEL),
            _ => {
                drop(send);
                drop(h2);
                conn.abort();
            }
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !spool_files(&blocks).is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "{how}: the spool file stayed: {:?}",
                spool_files(&blocks)
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    // Nothing was stored.
    assert_eq!(a.get(&BlockId::of(&body)).await.status, 404);
}
