//! The route table as a client sees it: 405 with `Allow`, body limits
//! enforced from `Content-Length` before a byte is read (and while
//! streaming without one), percent-decoded paths and queries, and the
//! OpenAPI description the server serves.

use std::time::Duration;

use bytes::Bytes;
use coffer_client::paths;
use coffer_types::wire::DeviceInfo;
use http::Method;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_is_405_with_allow() {
    let server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let admin = server.admin().await;
    let r = admin
        .send(Method::DELETE, &paths::orgs(), &[], Bytes::new())
        .await
        .unwrap();
    assert_refused(&r, 405, "method_not_allowed", "DELETE is not served");
    let allow = r
        .headers
        .get("allow")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    let block = paths::block(&agent.archive, &"0".repeat(64));
    let r = agent
        .client
        .send(Method::PATCH, &block, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(r.status, 405);
    let allow = r.headers.get("allow").unwrap().to_str().unwrap();
    for m in ["GET", "HEAD", "PUT"] {
        assert!(allow.contains(m), "{allow}");
    }
    // A path nobody serves is still 404.
    let r = admin.get("/admin/v1/nothing-here").await.unwrap();
    assert_refused(&r, 404, "not_found", "no resource");
}

/// Send `content_length` announced bytes of which none arrive: the answer
/// must come anyway (the server refused without reading).
async fn announce(
    client: &coffer_http::client::Client,
    path: &str,
    content_length: u64,
) -> coffer_http::client::ClientResponse {
    let (_tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let send = client.send_stream(
        Method::POST,
        path,
        &[("content-type", "application/json")],
        Some(content_length),
        rx,
    );
    tokio::time::timeout(Duration::from_secs(10), send)
        .await
        .expect("the server waited for the body instead of refusing it")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_refused_from_its_length_before_it_is_read() {
    let server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let sid = agent.open_session().await;
    let admin = server.admin().await;

    // Small JSON routes take 1 MiB.
    let r = announce(&admin, &paths::orgs(), 2 << 20).await;
    assert_refused(&r, 413, "body_too_large", "1048576");
    let r = announce(
        &agent.client,
        &paths::session_progress(&agent.archive, &sid),
        2 << 20,
    )
    .await;
    assert_refused(&r, 413, "body_too_large", "1048576");
    // The block lists of missing and commit take more: 2 MiB is fine there
    // (the request waits for its body, so it is not refused at once).
    let (_tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let missing = paths::blocks_missing(&agent.archive);
    let pending = agent.client.send_stream(
        Method::POST,
        &missing,
        &[("content-type", "application/json")],
        Some(2 << 20),
        rx,
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), pending)
            .await
            .is_err(),
        "blocks/missing refused 2 MiB"
    );
    // Without Content-Length, the limit holds while the body streams in.
    let chunks = (0..40).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 64 << 10])));
    let r = admin
        .send_stream(
            Method::POST,
            &paths::orgs(),
            &[("content-type", "application/json")],
            None,
            futures::stream::iter(chunks),
        )
        .await
        .unwrap();
    assert_refused(&r, 413, "body_too_large", "1048576");
    // The server is fine afterwards.
    assert_eq!(admin.get(&paths::orgs()).await.unwrap().status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_and_queries_are_percent_decoded() {
    let server = TestServer::h2c().await;
    let agent = server.enroll("acme", "ann", "laptop").await;
    let admin = server.admin().await;
    // The device id with its underscore written as %5F.
    let encoded = format!("/admin/v1/devices/{}", agent.device.replace('_', "%5F"));
    let d: DeviceInfo = admin.get(&encoded).await.unwrap().json().unwrap();
    assert_eq!(d.device.as_str(), agent.device);
    // A decoded segment that is not a name is refused, not routed.
    let r = admin.get(&paths::device("../orgs")).await.unwrap();
    assert_refused(&r, 400, "invalid_id", "");
    // target=device%3A is "device:", every device's entries.
    let r = admin.get("/admin/v1/audit?target=device%3A").await.unwrap();
    let v: serde_json::Value = r.json().unwrap();
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{v}");
    assert_eq!(entries[0]["action"], "device.enroll");
    let r = admin.get("/admin/v1/audit?limit=lots").await.unwrap();
    assert_refused(&r, 400, "invalid_request", "limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_serves_its_openapi_description() {
    let server = TestServer::h2c().await;
    // Open to anyone, like /healthz.
    let doc = server.api().await.openapi().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method, id) in [
        ("/v1/archives/{archive}/blocks/{id}", "put", "put_block"),
        (
            "/v1/archives/{archive}/sessions/{session}/commit",
            "post",
            "commit",
        ),
        ("/admin/v1/devices", "get", "admin_list_devices"),
        ("/admin/v1/accounts", "post", "admin_create_account"),
        ("/admin/v1/audit/verify", "get", "admin_verify_audit"),
        ("/admin/v1/workers", "get", "admin_list_workers"),
    ] {
        assert_eq!(doc["paths"][path][method]["operationId"], id, "{path}");
    }
    assert!(doc["components"]["schemas"]["DeviceInfo"].is_object());
    assert!(doc["components"]["securitySchemes"]["admin_token"].is_object());
}
