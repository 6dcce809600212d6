//! No client can take the server's memory: huge request bodies that never
//! say their size, and readers that never open their flow-control window,
//! spoken in raw HTTP/2 (a normal client does neither).

use std::time::Duration;

use bytes::Bytes;
use coffer_client::paths;
use coffer_types::BlockId;
use h2::client::SendRequest;
use http::Request;
use tokio::net::TcpStream;

use crate::harness::*;

/// An h2c connection to `server`; `window` is the stream window the
/// client grants (0: the server may send no data at all).
async fn h2_connect(server: &TestServer, window: u32) -> SendRequest<Bytes> {
    let addr = server.url.trim_start_matches("http://");
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .initial_connection_window_size(window.max(65_535))
        .handshake(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

fn request(method: &str, path: &str, token: &str) -> Request<()> {
    Request::builder()
        .method(method)
        .uri(format!("http://coffer{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(())
        .unwrap()
}

/// Send a JSON body of `total` bytes (a list of ids that goes on and on,
/// with no `Content-Length`) until the server answers; the answer's status.
async fn endless_body(
    mut h2: SendRequest<Bytes>,
    path: String,
    token: String,
    total: usize,
) -> u16 {
    h2 = h2.ready().await.unwrap();
    let (resp, mut body) = h2
        .send_request(request("POST", &path, &token), false)
        .unwrap();
    let piece = Bytes::from(format!("\"{}\",", "0".repeat(64)).repeat(1000));
    let send = async {
        let mut sent = 0;
        body.send_data(Bytes::from_static(b"{\"ids\":["), false)
            .ok()?;
        while sent < total {
            body.reserve_capacity(piece.len());
            match futures::future::poll_fn(|cx| body.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                _ => return None,
            }
            body.send_data(piece.clone(), false).ok()?;
            sent += piece.len();
        }
        // Not valid JSON (the list never closes): refused once read.
        body.send_data(Bytes::new(), true).ok()?;
        None::<()>
    };
    tokio::pin!(resp);
    tokio::select! {
        biased;
        r = &mut resp => return r.map(|r| r.status().as_u16()).unwrap_or(0),
        _ = send => {}
    }
    // Sending stopped (the server reset the stream after answering, or
    // the whole body went): the answer.
    resp.await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn huge_bodies_and_readers_that_never_read_leave_memory_bounded() {
    let server = TestServer::h2c().await;
    let a = server.enroll("acme", "ann", "ann-laptop").await;
    // Blocks for the readers: 1 MiB each.
    let mut ids = Vec::new();
    for i in 0..8 {
        let b = block_bytes(900 + i, 1 << 20);
        assert_eq!(a.put(&b).await.status, 201);
        ids.push(BlockId::of(&b));
    }
    let before = server.peak_rss();

    // 256 readers on 16 connections that grant no window: half read a whole
    // block, half fetch 8 of them in one answer. None ever reads a byte.
    let mut readers = Vec::new();
    let mut conns = Vec::new();
    for c in 0..16 {
        let mut h2 = h2_connect(&server, 0).await;
        for s in 0..16 {
            h2 = h2.ready().await.unwrap();
            let (resp, mut body) = if s % 2 == 0 {
                let id = ids[(c + s) % ids.len()].to_hex();
                h2.send_request(
                    request("GET", &paths::block(&a.archive, &id), &a.token),
                    true,
                )
                .unwrap()
            } else {
                let (r, b) = h2
                    .send_request(
                        request("POST", &paths::blocks_fetch(&a.archive), &a.token),
                        false,
                    )
                    .unwrap();
                (r, b)
            };
            if s % 2 == 1 {
                let req = serde_json::json!({"ids": ids});
                body.send_data(Bytes::from(req.to_string()), true).unwrap();
            }
            readers.push(resp);
        }
        conns.push(h2);
    }
    let mut statuses = std::collections::BTreeMap::new();
    for r in readers {
        let status = tokio::time::timeout(Duration::from_secs(30), r)
            .await
            .expect("every reader gets its answer's head")
            .unwrap()
            .status()
            .as_u16();
        *statuses.entry(status).or_insert(0) += 1;
    }
    eprintln!(
        "readers' answers by status: {statuses:?}; peak RSS {} MiB",
        server.peak_rss() >> 20
    );

    // 256 bodies of 60 MiB each, without Content-Length, on 16 connections:
    // half are block lists of `missing`, half of `commit`.
    let session = a.open_session().await;
    let mut bodies = Vec::new();
    for c in 0..16 {
        let h2 = h2_connect(&server, 65_535).await;
        for s in 0..16 {
            let path = if (c + s) % 2 == 0 {
                paths::blocks_missing(&a.archive)
            } else {
                paths::session_commit(&a.archive, &session)
            };
            bodies.push(tokio::spawn(endless_body(
                h2.clone(),
                path,
                a.token.clone(),
                60 << 20,
            )));
        }
    }
    let mut answers = std::collections::BTreeMap::new();
    for b in bodies {
        let status = tokio::time::timeout(Duration::from_secs(120), b)
            .await
            .expect("every body is answered")
            .unwrap();
        *answers.entry(status).or_insert(0) += 1;
    }
    eprintln!("bodies' answers by status: {answers:?}");
    assert!(
        answers.keys().all(|s| [400, 413, 503].contains(s)),
        "{answers:?}"
    );
    let peak = server.peak_rss();
    eprintln!(
        "server peak RSS: {} MiB before, {} MiB after 256 zero-window readers and 256 bodies of 60 MiB",
        before >> 20,
        peak >> 20
    );
    assert!(peak < 512 << 20, "peak RSS {} MiB", peak >> 20);

    // The readers still hold their streams; the server serves others.
    let b = server.enroll("other", "bob", "bob-laptop").await;
    assert_eq!(b.put(&block_bytes(7, 64 << 10)).await.status, 201);
    drop(conns);
}

#[tokio::test]
async fn a_backup_of_many_blocks_is_read_back_whole_and_in_order() {
    let server = TestServer::h2c().await;
    let a = server.enroll("acme", "ann", "ann-laptop").await;
    // 5 000 blocks: three stored chunks of the reference list.
    let blocks: Vec<Vec<u8>> = (0u32..5000).map(|i| i.to_le_bytes().to_vec()).collect();
    let ids: Vec<BlockId> = blocks.iter().map(|b| BlockId::of(b)).collect();
    let api = server.api().await.with_token(&a.token);
    for chunk in blocks.chunks(coffer_types::wire::BUNDLE_MAX_BLOCKS) {
        let mut body = Vec::new();
        for b in chunk {
            coffer_types::wire::push_record(&mut body, &BlockId::of(b), Some(b));
        }
        api.put_bundle(&a.archive, Bytes::from(body), None)
            .await
            .unwrap();
    }
    let session = a.open_session().await;
    let r = a.commit(&session, &ids[0], &ids, 100.0).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let bid = r.json::<serde_json::Value>().unwrap()["backup"]
        .as_str()
        .unwrap()
        .to_string();
    let b = api.backup(&a.archive, &bid).await.unwrap();
    assert_eq!(b.block_count, 5000);
    assert_eq!(b.blocks.unwrap(), ids);
    let other = api.backup(&a.archive, "bk_nope").await.unwrap_err();
    assert!(other.to_string().contains("not found"), "{other}");
}
