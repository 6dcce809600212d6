//! The agent protocol (`/v1`): blocks, sessions, commits, backups and named
//! references of the device's own archive. The gate has checked the device
//! token and that `{archive}` is the device's.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use coffer_core::{CoreError, DeviceAuth};
use coffer_types::wire::{
    AbortRequest, BackupInfo, BackupList, CommitRequest, DeviceSettings, ErrorBody, EscrowInfo,
    EscrowUpload, FetchRequest, MissingRequest, MissingResponse, ProgressRequest, PutBlockResponse,
    PutBundleResponse, RefInfo, SessionInfo, SetRef,
};
use futures::{StreamExt, TryStreamExt};
use http::{header, HeaderMap, StatusCode};

use crate::app::App;
use crate::budget::{stall_guard, ConnBudget, Held};
use crate::extract::{read_limited, Gated, Json, OptionalJson, Seg};
use crate::gate::{drain_later, BodyLimit, OwnArchive};
use crate::handlers::ERROR;
use crate::response::{created_or_ok, json, Handled};

/// The pieces a built answer is sent in.
const SEND_PIECE: usize = 256 << 10;

/// The `coffer-session` header of an upload, if any.
fn session_header(headers: &HeaderMap) -> Result<Option<String>, CoreError> {
    headers
        .get("coffer-session")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| CoreError::InvalidId("the coffer-session header is not text".into()))
        })
        .transpose()
}

/// The device and archive a token stands for.
#[utoipa::path(get, path = "/v1/whoami", tag = "agent", operation_id = "whoami",
    security(("device_token" = []), ("restore_token" = [])),
    responses((status = 200, description = "`{\"device\", \"archive\"}`"),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn whoami(Gated(d): Gated<DeviceAuth>) -> Response {
    json(
        StatusCode::OK,
        &serde_json::json!({"device": d.device, "archive": d.archive}),
    )
}

/// The device defaults this device applies: each value, whether it is
/// locked (and by which org), and when it was pushed.
#[utoipa::path(get, path = "/v1/settings", tag = "agent", operation_id = "device_settings",
    security(("device_token" = []), ("restore_token" = [])),
    responses((status = 200, body = DeviceSettings),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn device_settings(
    State(app): State<Arc<App>>,
    Gated(d): Gated<DeviceAuth>,
) -> Handled {
    Ok(json(StatusCode::OK, &app.core.device_settings(&d)?))
}

/// Which of these blocks the archive does not hold (with a session, the
/// ones it holds are pinned to it).
#[utoipa::path(post, path = "/v1/archives/{archive}/blocks/missing", tag = "agent",
    operation_id = "missing_blocks", security(("device_token" = [])),
    params(("archive" = String, Path, description = "the device's archive")),
    request_body = MissingRequest,
    responses((status = 200, body = MissingResponse),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn missing_blocks(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    Json(body): Json<MissingRequest>,
) -> Handled {
    let r = app
        .core
        .missing_blocks(&archive, body.ids, body.session.as_ref())
        .await?;
    Ok(json(StatusCode::OK, &r))
}

/// Many small blocks in one request: records `id (32 bytes) | length
/// (u32 LE) | bytes`, at most 1024 blocks and 8 MiB.
#[utoipa::path(post, path = "/v1/archives/{archive}/blocks/bundle", tag = "agent",
    operation_id = "put_bundle", security(("device_token" = [])),
    params(("archive" = String, Path, description = "the device's archive"),
           ("coffer-session" = Option<String>, Header, description = "pin the blocks to this open session")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = PutBundleResponse),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn put_bundle(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    Gated(BodyLimit(limit)): Gated<BodyLimit>,
    headers: HeaderMap,
    body: Body,
) -> Handled {
    let start = Instant::now();
    let session = session_header(&headers)?;
    let (body, _held) = read_limited(body, limit, &app.budget).await?;
    app.metrics.bytes_in(body.len() as u64);
    let blocks = app
        .core
        .put_bundle(&archive, session.as_deref(), body)
        .await?;
    let elapsed = start.elapsed().as_secs_f64();
    for b in &blocks {
        app.metrics.block(b.created, elapsed);
    }
    Ok(json(StatusCode::OK, &PutBundleResponse { blocks }))
}

/// Whole blocks in one answer (records in the bundle format, in the order
/// asked; an absent block has the length `0xFFFFFFFF`).
#[utoipa::path(post, path = "/v1/archives/{archive}/blocks/fetch", tag = "agent",
    operation_id = "fetch_blocks", security(("device_token" = []), ("restore_token" = [])),
    params(("archive" = String, Path, description = "the device's archive")),
    request_body = FetchRequest,
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn fetch_blocks(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    Gated(ConnBudget(answers)): Gated<ConnBudget>,
    Json(body): Json<FetchRequest>,
) -> Handled {
    // The answer's memory (the blocks read, then the answer built from
    // them) comes from the server's budget and from the connection's, held
    // until the last piece is sent: a client that stops reading pins at most
    // its connection's share, and all of them together the server's budget.
    let (out, held) = app
        .core
        .read_blocks(&archive, &body.ids, |n| {
            let mut held = Held::default();
            answers.take(&mut held, n as usize)?;
            app.budget.take(&mut held, n as usize)?;
            Ok(held)
        })
        .await?;
    app.metrics.bytes_out(out.len() as u64);
    let len = out.len();
    // In pieces, so a slow reader's stream buffers one piece at a time.
    let pieces = (0..len.div_ceil(SEND_PIECE)).map(move |i| {
        Ok::<_, std::io::Error>(out.slice(i * SEND_PIECE..((i + 1) * SEND_PIECE).min(len)))
    });
    let stream = futures::stream::iter(pieces).chain(futures::stream::once(async move {
        drop(held);
        Ok(Bytes::new())
    }));
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, len)
        .body(Body::from_stream(stream))
        .expect("valid response"))
}

/// Store one block; its id is the blake3 of the body. `201` stored, `200`
/// already present, acknowledged only once durable.
#[utoipa::path(put, path = "/v1/archives/{archive}/blocks/{id}", tag = "agent",
    operation_id = "put_block", security(("device_token" = [])),
    params(("archive" = String, Path, description = "the device's archive"),
           ("id" = String, Path, description = "the block's blake3, 64 lowercase hex"),
           ("coffer-session" = Option<String>, Header, description = "pin the block to this open session")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = PutBlockResponse, description = "stored"),
              (status = 200, body = PutBlockResponse, description = "already stored"),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn put_block(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    Seg((_, id)): Seg<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Handled {
    let start = Instant::now();
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let session = session_header(&headers)?;
    let limit = app.core.limits().max_block_bytes;
    if content_length.is_some_and(|n| n > limit) {
        // Refused before reading; the rest is read and dropped so that
        // clients read the answer (see `drain_later`).
        drain_later(body);
        return Err(CoreError::BlockTooLarge { limit }.into());
    }
    let metrics = app.metrics.clone();
    let body = stall_guard(body.into_data_stream(), app.budget.stall)
        .inspect_ok(move |b| metrics.bytes_in(b.len() as u64));
    let r = app
        .core
        .put_block(
            &archive,
            &id,
            content_length,
            session.as_deref(),
            Box::pin(body),
        )
        .await?;
    app.metrics.block(r.created, start.elapsed().as_secs_f64());
    Ok(created_or_ok(r.created, &r))
}

enum RangeSpec {
    /// No usable single range: serve the whole block (RFC 9110 allows it).
    None,
    From(u64, Option<u64>),
    Suffix(u64),
}

fn parse_range(h: &str) -> RangeSpec {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeSpec::None;
    };
    if spec.contains(',') {
        return RangeSpec::None;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeSpec::None;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        (true, false) => b.parse().map(RangeSpec::Suffix).unwrap_or(RangeSpec::None),
        (false, true) => a
            .parse()
            .map(|a| RangeSpec::From(a, None))
            .unwrap_or(RangeSpec::None),
        (false, false) => match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) => RangeSpec::From(a, Some(b)),
            _ => RangeSpec::None,
        },
        (true, true) => RangeSpec::None,
    }
}

/// Read a block, or one byte range of it (`Range: bytes=…`).
#[utoipa::path(get, path = "/v1/archives/{archive}/blocks/{id}", tag = "agent",
    operation_id = "get_block", security(("device_token" = []), ("restore_token" = [])),
    params(("archive" = String, Path, description = "the device's archive"),
           ("id" = String, Path, description = "the block's blake3"),
           ("range" = Option<String>, Header, description = "one range, `bytes=first-last`, `bytes=first-` or `bytes=-suffix`")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>),
              (status = 206, content_type = "application/octet-stream", body = Vec<u8>, description = "the range asked for"),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn get_block(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    Seg((_, id)): Seg<(String, String)>,
    headers: HeaderMap,
) -> Handled {
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => None,
        Some(h) => match parse_range(h) {
            RangeSpec::None => None,
            RangeSpec::From(first, last) => Some((first, last)),
            RangeSpec::Suffix(n) => {
                let size = app.core.block_size(&archive, &id)?;
                if n == 0 {
                    return Err(CoreError::RangeNotSatisfiable { size }.into());
                }
                Some((size.saturating_sub(n), None))
            }
        },
    };
    let read = app.core.read_block(&archive, &id, range).await?;
    let metrics = app.metrics.clone();
    let stream = read
        .stream
        .inspect_ok(move |b| metrics.bytes_out(b.len() as u64))
        .map_err(|e| std::io::Error::other(e.to_string()));
    let mut b = Response::builder()
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::ACCEPT_RANGES, "bytes");
    b = match &read.range {
        Some(r) => b
            .status(StatusCode::PARTIAL_CONTENT)
            .header(header::CONTENT_LENGTH, r.end - r.start)
            .header(
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", r.start, r.end - 1, read.size),
            ),
        None => b.header(header::CONTENT_LENGTH, read.size),
    };
    Ok(b.body(Body::from_stream(stream.boxed()))
        .expect("valid response"))
}

/// A block's size, without its bytes.
#[utoipa::path(head, path = "/v1/archives/{archive}/blocks/{id}", tag = "agent",
    operation_id = "head_block", security(("device_token" = []), ("restore_token" = [])),
    params(("archive" = String, Path, description = "the device's archive"),
           ("id" = String, Path, description = "the block's blake3")),
    responses((status = 200, description = "stored; `Content-Length` is its size"),
              (status = 404, description = "not stored")))]
pub(crate) async fn head_block(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    Seg((_, id)): Seg<(String, String)>,
) -> Handled {
    let size = app.core.block_size(&archive, &id)?;
    Ok(Response::builder()
        .header(header::CONTENT_LENGTH, size)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .body(Body::empty())
        .expect("valid response"))
}

/// Open a backup session (records the agent's version from `User-Agent`).
#[utoipa::path(post, path = "/v1/archives/{archive}/sessions", tag = "agent",
    operation_id = "open_session", security(("device_token" = [])),
    params(("archive" = String, Path, description = "the device's archive")),
    responses((status = 201, body = SessionInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn open_session(
    State(app): State<Arc<App>>,
    Gated(device): Gated<DeviceAuth>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    headers: HeaderMap,
) -> Handled {
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let s = app.core.open_session(&device, &archive, agent).await?;
    Ok(json(StatusCode::CREATED, &s))
}

/// One session.
#[utoipa::path(get, path = "/v1/archives/{archive}/sessions/{session}", tag = "agent",
    operation_id = "get_session", security(("device_token" = [])),
    params(("archive" = String, Path, description = "the device's archive"),
           ("session" = String, Path, description = "the session")),
    responses((status = 200, body = SessionInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn get_session(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    Seg((_, session)): Seg<(String, String)>,
) -> Handled {
    Ok(json(StatusCode::OK, &app.core.session(&archive, &session)?))
}

async fn abort(app: &App, archive: &coffer_types::Name, session: &str, b: AbortRequest) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core
            .abort(archive, session, b.failed.as_deref())
            .await?,
    ))
}

/// Abort an open session (optionally saying the backup failed, and why).
#[utoipa::path(post, path = "/v1/archives/{archive}/sessions/{session}/abort", tag = "agent",
    operation_id = "abort", security(("device_token" = [])),
    params(("archive" = String, Path, description = "the device's archive"),
           ("session" = String, Path, description = "the session")),
    request_body(content = Option<AbortRequest>, description = "optional"),
    responses((status = 200, body = SessionInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn abort_session(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    Seg((_, session)): Seg<(String, String)>,
    OptionalJson(body): OptionalJson<AbortRequest>,
) -> Handled {
    abort(&app, &archive, &session, body.unwrap_or_default()).await
}

/// Abort an open session (the same as `POST …/abort` without a body).
#[utoipa::path(delete, path = "/v1/archives/{archive}/sessions/{session}", tag = "agent",
    operation_id = "delete_session", security(("device_token" = [])),
    params(("archive" = String, Path, description = "the device's archive"),
           ("session" = String, Path, description = "the session")),
    responses((status = 200, body = SessionInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn delete_session(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    Seg((_, session)): Seg<(String, String)>,
) -> Handled {
    abort(&app, &archive, &session, AbortRequest::default()).await
}

/// Report progress: percent of the selection, bytes and files so far.
#[utoipa::path(post, path = "/v1/archives/{archive}/sessions/{session}/progress", tag = "agent",
    operation_id = "progress", security(("device_token" = [])),
    params(("archive" = String, Path, description = "the device's archive"),
           ("session" = String, Path, description = "the session")),
    request_body = ProgressRequest,
    responses((status = 200, body = SessionInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn progress(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    Seg((_, session)): Seg<(String, String)>,
    Json(body): Json<ProgressRequest>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.progress(&archive, &session, body).await?,
    ))
}

/// Commit a session into a backup: atomic and idempotent; `409
/// missing_blocks` lists the blocks to upload first.
#[utoipa::path(post, path = "/v1/archives/{archive}/sessions/{session}/commit", tag = "agent",
    operation_id = "commit", security(("device_token" = [])),
    params(("archive" = String, Path, description = "the device's archive"),
           ("session" = String, Path, description = "the session")),
    request_body = CommitRequest,
    responses((status = 201, body = BackupInfo, description = "committed"),
              (status = 200, body = BackupInfo, description = "committed before (a retry)"),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn commit(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    Seg((_, session)): Seg<(String, String)>,
    Json(body): Json<CommitRequest>,
) -> Handled {
    let (b, created) = app.core.commit(&archive, &session, body).await?;
    Ok(created_or_ok(created, &b))
}

/// The archive's committed backups, oldest first.
#[utoipa::path(get, path = "/v1/archives/{archive}/backups", tag = "agent",
    operation_id = "list_backups", security(("device_token" = []), ("restore_token" = [])),
    params(("archive" = String, Path, description = "the device's archive")),
    responses((status = 200, body = BackupList),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn list_backups(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &BackupList {
            backups: app.core.backups(&archive)?,
        },
    ))
}

/// One backup, with the blocks it references.
#[utoipa::path(get, path = "/v1/archives/{archive}/backups/{backup}", tag = "agent",
    operation_id = "get_backup", security(("device_token" = []), ("restore_token" = [])),
    params(("archive" = String, Path, description = "the device's archive"),
           ("backup" = String, Path, description = "the backup")),
    responses((status = 200, body = BackupInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn get_backup(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    Seg((_, backup)): Seg<(String, String)>,
) -> Handled {
    // `BackupInfo` with its `blocks`, written a stored chunk of ids at a
    // time: the answer for a million blocks is 67 MB of JSON, never built
    // whole.
    let (info, chunks) = app.core.backup_streamed(&archive, &backup)?;
    let head = serde_json::to_string(&info)
        .map_err(|e| CoreError::Internal(format!("encode a backup: {e}")))?;
    let head = format!("{},\"blocks\":[", head.strip_suffix('}').unwrap_or(&head));
    let mut first = true;
    let body = futures::stream::iter(chunks.map(move |c| {
        let ids = c.map_err(|e| std::io::Error::other(e.to_string()))?;
        let mut out = String::with_capacity(ids.len() * 67);
        for id in ids {
            if !std::mem::take(&mut first) {
                out.push(',');
            }
            out.push('"');
            out.push_str(&id.to_hex());
            out.push('"');
        }
        Ok::<_, std::io::Error>(Bytes::from(out))
    }));
    let stream = futures::stream::once(async move { Ok(Bytes::from(head)) })
        .chain(body)
        .chain(futures::stream::once(async {
            Ok(Bytes::from_static(b"]}"))
        }));
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from_stream(stream))
        .expect("valid response"))
}

/// Point a named reference at a block the archive holds.
#[utoipa::path(put, path = "/v1/archives/{archive}/refs/{name}", tag = "agent",
    operation_id = "set_ref", security(("device_token" = [])),
    params(("archive" = String, Path, description = "the device's archive"),
           ("name" = String, Path, description = "the reference")),
    request_body = SetRef,
    responses((status = 200, body = RefInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn set_ref(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    Seg((_, name)): Seg<(String, String)>,
    Json(body): Json<SetRef>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.set_ref(&archive, &name, body.block).await?,
    ))
}

/// A named reference.
#[utoipa::path(get, path = "/v1/archives/{archive}/refs/{name}", tag = "agent",
    operation_id = "get_ref", security(("device_token" = []), ("restore_token" = [])),
    params(("archive" = String, Path, description = "the device's archive"),
           ("name" = String, Path, description = "the reference")),
    responses((status = 200, body = RefInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn get_ref(
    State(app): State<Arc<App>>,
    Gated(OwnArchive(archive)): Gated<OwnArchive>,
    Seg((_, name)): Seg<(String, String)>,
) -> Handled {
    Ok(json(StatusCode::OK, &app.core.get_ref(&archive, &name)?))
}

/// Store the archive key sealed to the escrow public key in force
/// (standard security only: under enhanced, `409 escrow_refused`).
#[utoipa::path(put, path = "/v1/archives/{archive}/escrow", tag = "agent",
    operation_id = "put_escrow", security(("device_token" = [])),
    params(("archive" = String, Path, description = "the device's archive")),
    request_body = EscrowUpload,
    responses((status = 200, body = EscrowInfo, description = "stored"),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn put_escrow(
    State(app): State<Arc<App>>,
    Gated(d): Gated<DeviceAuth>,
    Gated(OwnArchive(_)): Gated<OwnArchive>,
    Json(body): Json<EscrowUpload>,
) -> Handled {
    Ok(json(StatusCode::OK, &app.core.put_escrow(&d, &body).await?))
}

/// The archive's escrowed key (a device token, or a restore token).
#[utoipa::path(get, path = "/v1/archives/{archive}/escrow", tag = "agent",
    operation_id = "get_escrow", security(("device_token" = []), ("restore_token" = [])),
    params(("archive" = String, Path, description = "the device's archive")),
    responses((status = 200, body = EscrowInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn get_escrow(
    State(app): State<Arc<App>>,
    Gated(d): Gated<DeviceAuth>,
    Gated(OwnArchive(_)): Gated<OwnArchive>,
) -> Handled {
    Ok(json(StatusCode::OK, &app.core.escrow(&d)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_rfc_9110() {
        assert!(matches!(
            parse_range("bytes=0-99"),
            RangeSpec::From(0, Some(99))
        ));
        assert!(matches!(
            parse_range("bytes=100-"),
            RangeSpec::From(100, None)
        ));
        assert!(matches!(parse_range("bytes=-5"), RangeSpec::Suffix(5)));
        assert!(matches!(parse_range("bytes=0-1,4-5"), RangeSpec::None));
        assert!(matches!(parse_range("items=0-1"), RangeSpec::None));
        assert!(matches!(parse_range("bytes=x-1"), RangeSpec::None));
    }

    proptest::proptest! {
        /// Any header text: a range or none, never a panic.
        #[test]
        fn fuzz_range_parser_takes_any_text(h in "\\PC{0,40}") {
            let _ = parse_range(&h);
        }

        /// Ranges as clients write them parse to what they say.
        #[test]
        fn fuzz_range_parser_reads_what_clients_send(a in 0u64..u64::MAX / 2, n in 0u64..1 << 40, sp in "[ ]{0,2}") {
            let b = a + n;
            let (full, open, suffix, many) = (
                parse_range(&format!("{sp}bytes={a}-{b}")),
                parse_range(&format!("bytes={a}-")),
                parse_range(&format!("bytes=-{n}")),
                parse_range(&format!("bytes={a}-{b},{b}-")),
            );
            proptest::prop_assert!(matches!(full, RangeSpec::From(x, Some(y)) if x == a && y == b));
            proptest::prop_assert!(matches!(open, RangeSpec::From(x, None) if x == a));
            proptest::prop_assert!(matches!(suffix, RangeSpec::Suffix(x) if x == n));
            proptest::prop_assert!(matches!(many, RangeSpec::None));
        }
    }
}
