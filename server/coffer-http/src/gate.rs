//! What every route runs before its handler, as its table row says:
//! authentication and the archive's ownership or the role's permission,
//! then the body limit against `Content-Length`. And the answers for paths
//! no route serves (`404`) and methods a path does not take (`405`).
//!
//! Order on `/v1`: token (`401`), archive ownership (`404`, the same answer
//! for a foreign archive as for none), then the request itself (`400`,
//! `413`, …), so nothing about other tenants leaks through error codes.

use std::sync::Arc;

use axum::extract::{RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use coffer_core::{CoreError, DeviceAuth};
use coffer_types::{ErrorCode, Name};
use http::{header, HeaderMap};

use crate::app::App;
use crate::response::{core_error, error};
use crate::routes::{Access, Limit, RouteMeta};

/// The route a request matched, on its response (the metrics' label).
#[derive(Debug, Clone)]
pub(crate) struct RouteId(pub(crate) &'static str);

/// The archive of a `/v1/archives/{archive}/…` request, checked to be the
/// device's own.
#[derive(Debug, Clone)]
pub(crate) struct OwnArchive(pub(crate) Name);

/// The body limit of the route, for the extractors that read bodies.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLimit(pub(crate) usize);

pub(crate) fn bearer(headers: &HeaderMap) -> Result<&str, CoreError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(CoreError::Unauthorized)
}

pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The checks of one route (see the module doc).
pub(crate) async fn gate(
    State((app, meta)): State<(Arc<App>, Arc<RouteMeta>)>,
    params: RawPathParams,
    mut req: Request,
    next: Next,
) -> Response {
    let mut resp = match check(&app, &meta, &params, &mut req).await {
        Ok(()) => {
            let device = req
                .extensions()
                .get::<DeviceAuth>()
                .map(|d| d.device.clone());
            match device
                .as_ref()
                .map(|d| app.device_requests.begin(d))
                .transpose()
            {
                Ok(_counted) => next.run(req).await,
                Err(e) => core_error(&e),
            }
        }
        Err(e) => {
            if matches!(e, CoreError::BodyTooLarge { .. }) {
                drain_later(std::mem::take(req.body_mut()));
            }
            core_error(&e)
        }
    };
    resp.extensions_mut().insert(RouteId(meta.id));
    resp
}

async fn check(
    app: &App,
    meta: &RouteMeta,
    params: &RawPathParams,
    req: &mut Request,
) -> Result<(), CoreError> {
    match meta.access {
        Access::Public => {}
        Access::Device | Access::Reader => {
            let token = bearer(req.headers())?;
            let device = if meta.access == Access::Reader {
                app.core.authenticate_reader(token)?
            } else {
                app.core.authenticate_device(token)?
            };
            app.core.device_seen(&device);
            if let Some((_, archive)) = params.iter().find(|(k, _)| *k == "archive") {
                let own = app.core.archive_of(&device, archive)?;
                req.extensions_mut().insert(OwnArchive(own));
            }
            req.extensions_mut().insert(device);
        }
        Access::Admin(perm) => {
            let principal = app.core.authenticate_admin(bearer(req.headers())?)?;
            app.core
                .require_on(&principal, perm, &meta.label, req.uri().path())
                .await?;
            req.extensions_mut().insert(principal);
        }
    }
    let limit = match meta.limit {
        // The core checks a block's size itself, as `block_too_large`.
        Limit::Block => return Ok(()),
        l => app.limit(l),
    };
    if content_length(req.headers()).is_some_and(|n| n > limit as u64) {
        return Err(CoreError::BodyTooLarge {
            limit: limit as u64,
        });
    }
    req.extensions_mut().insert(BodyLimit(limit));
    req.extensions_mut().insert(app.budget.clone());
    Ok(())
}

/// The most of a refused body read and thrown away, and for how long.
const DRAIN_MAX_BYTES: usize = 64 << 20;
const DRAIN_MAX_SECS: u64 = 10;

/// After refusing a body from its `Content-Length` (`413`), read and drop
/// the rest of it in the background (at most 64 MiB, 10 s) instead of
/// resetting the stream at once: some clients (curl 7.88 among them) drop a
/// complete answer when the stream is reset while they are still sending,
/// and report a framing error instead of the 413.
pub(crate) fn drain_later(body: axum::body::Body) {
    use http_body_util::BodyExt;
    tokio::spawn(async move {
        let mut body = body;
        let mut seen = 0usize;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(DRAIN_MAX_SECS), async {
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    seen += d.len();
                    if seen > DRAIN_MAX_BYTES {
                        break;
                    }
                }
            }
        })
        .await;
    });
}

/// A path no route serves.
pub(crate) async fn not_found(req: Request) -> Response {
    error(
        ErrorCode::NotFound,
        format!("no resource at {}", req.uri().path()),
        None,
    )
}

/// A path served, but not with this method (axum adds `Allow`).
pub(crate) async fn method_not_allowed(req: Request) -> Response {
    error(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} is not served at {}; the Allow header lists what is",
            req.method(),
            req.uri().path()
        ),
        None,
    )
    .into_response()
}
