//! Connections cannot exhaust the server: a limit sized from the open-files
//! limit with idle connections making room, handshake and idle timeouts,
//! stalled bodies, and per-device limits on requests and sessions.

use std::time::{Duration, Instant};

use bytes::Bytes;
use coffer_client::paths;
use coffer_types::BlockId;
use http::Request;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::harness::*;

/// Raise this process's open-files limit to its hard limit (the test opens
/// over a thousand sockets).
fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    );
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

fn addr(server: &TestServer) -> String {
    server.url.trim_start_matches("http://").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_idle_sockets_do_not_lock_out_a_device() {
    if raise_nofile() < 2000 {
        eprintln!("skipped: this process may not open 2000 files");
        return;
    }
    let server = TestServer::start(Opts {
        nofile: Some(1024),
        ..Opts::default()
    })
    .await;
    let a = server.enroll("acme", "ann", "ann-laptop").await;
    // 1 100 connections that never send a byte.
    let mut idle = Vec::new();
    for _ in 0..1100 {
        idle.push(TcpStream::connect(addr(&server)).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A device connecting now is served at once, on a new connection.
    let t = Instant::now();
    let dev = server.client().await.with_token(&a.token);
    let body = block_bytes(77, 1 << 20);
    let r = tokio::time::timeout(
        Duration::from_secs(10),
        dev.put(
            &paths::block(&a.archive, &BlockId::of(&body).to_hex()),
            Bytes::from(body),
        ),
    )
    .await
    .expect("the upload is answered while 1 100 idle sockets are open")
    .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    eprintln!("upload with 1 100 idle sockets open: {:?}", t.elapsed());
    let log = server.log_text();
    assert!(!log.contains("Too many open files"), "{log}");
    // The idle sockets are closed by the handshake timeout or evicted.
    drop(idle);
    let m = server.api().await.metrics().await.unwrap();
    assert!(m.contains("coffer_http_connections"), "{m}");
}

#[tokio::test]
async fn silent_and_idle_connections_are_closed() {
    let server = TestServer::start(
        Opts::default()
            .env("COFFER__HTTP__HANDSHAKE_TIMEOUT_SECS", 1)
            .env("COFFER__HTTP__IDLE_TIMEOUT_SECS", 2),
    )
    .await;
    let a = server.enroll("acme", "ann", "ann-laptop").await;
    // No preface: closed after the handshake timeout.
    let mut silent = TcpStream::connect(addr(&server)).await.unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("the server closes a silent connection")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    // A request, then nothing: closed after the idle timeout.
    let tcp = TcpStream::connect(addr(&server)).await.unwrap();
    let (mut h2, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let req = Request::get(format!("http://coffer{}", paths::agent_whoami()))
        .header("authorization", format!("Bearer {}", a.token))
        .body(())
        .unwrap();
    let (resp, _) = h2.send_request(req, true).unwrap();
    assert_eq!(resp.await.unwrap().status(), 200);
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), conn)
        .await
        .expect("the server closes an idle connection")
        .unwrap()
        .ok();
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn the_client_reconnects_after_the_server_closes_an_idle_connection() {
    let server = TestServer::start(Opts::default().env("COFFER__HTTP__IDLE_TIMEOUT_SECS", 1)).await;
    let a = server.enroll("acme", "ann", "ann-laptop").await;
    assert_eq!(
        a.client.get(&paths::agent_whoami()).await.unwrap().status,
        200
    );
    // Past the idle timeout the server has sent GOAWAY and closed; the same
    // client's next request goes out on a new connection.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = a.client.get(&paths::agent_whoami()).await;
    assert_eq!(r.expect("a request after the idle close").status, 200);
}

/// Start a request whose body is sent in part and then stalls.
async fn stalled_upload(
    server: &TestServer,
    a: &Agent,
    seed: u64,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let tcp = TcpStream::connect(addr(server)).await.unwrap();
    let (h2, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(conn);
    let mut h2 = h2.ready().await.unwrap();
    let body = block_bytes(seed, 1 << 20);
    let req = Request::put(format!(
        "http://coffer{}",
        paths::block(&a.archive, &BlockId::of(&body).to_hex())
    ))
    .header("authorization", format!("Bearer {}", a.token))
    .body(())
    .unwrap();
    let (resp, mut send) = h2.send_request(req, false).unwrap();
    send.send_data(Bytes::copy_from_slice(&body[..1000]), false)
        .unwrap();
    (resp, send)
}

#[tokio::test]
async fn stalled_bodies_fail_and_devices_are_held_to_their_limits() {
    let server = TestServer::start(
        Opts::default()
            .env("COFFER__HTTP__BODY_TIMEOUT_SECS", 2)
            .env("COFFER__HTTP__MAX_REQUESTS_PER_DEVICE", 2)
            .env("COFFER__LIMITS__MAX_OPEN_SESSIONS", 2),
    )
    .await;
    let a = server.enroll("acme", "ann", "ann-laptop").await;
    let b = server.enroll("acme", "bob", "bob-laptop").await;
    // Two stalled uploads hold both of ann's places in flight.
    let (r1, _s1) = stalled_upload(&server, &a, 1).await;
    let (r2, _s2) = stalled_upload(&server, &a, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = a.put(&block_bytes(3, 1000)).await;
    assert_refused(&r, 429, "too_many_requests", "requests in flight");
    assert_eq!(
        r.headers.get("retry-after").map(|v| v.as_bytes()),
        Some(&b"1"[..])
    );
    // Another device is served meanwhile.
    assert_eq!(b.put(&block_bytes(4, 1000)).await.status, 201);
    // The stalled bodies fail after the body timeout, and nothing was stored.
    for r in [r1, r2] {
        let resp = tokio::time::timeout(Duration::from_secs(10), r)
            .await
            .expect("a stalled body is answered")
            .unwrap();
        assert_eq!(resp.status(), 400);
    }
    assert_eq!(a.put(&block_bytes(3, 1000)).await.status, 201);
    let missing = a.get(&BlockId::of(&block_bytes(1, 1 << 20))).await;
    assert_eq!(missing.status, 404);
    // Sessions: two open at most.
    a.open_session().await;
    a.open_session().await;
    let r = a
        .client
        .post_json(&paths::sessions(&a.archive), &serde_json::json!({}))
        .await
        .unwrap();
    assert_refused(&r, 429, "too_many_requests", "open sessions");
}
