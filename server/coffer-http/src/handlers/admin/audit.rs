//! The audit log: pages of entries, the whole log as JSON lines, and
//! verification of its hash chain.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use coffer_core::{AuditQuery, Principal, AUDIT_PAGE_MAX};
use coffer_types::wire::{AuditList, AuditVerify, ErrorBody};
use http::{header, StatusCode};
use serde::Deserialize;

use crate::app::App;
use crate::extract::{Gated, Query};
use crate::handlers::ERROR;
use crate::response::{json, Handled};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Entries at or after this server time (Unix milliseconds).
    since: Option<u64>,
    /// Entries by this account (or `system`).
    actor: Option<String>,
    /// Entries on this target (`device:dv_…`); ending in `:`, every target
    /// of that kind (`device:`).
    target: Option<String>,
    /// Entries after this sequence number (the previous page's
    /// `next_after`).
    after: Option<u64>,
    /// At most this many (default 100, at most 1000).
    limit: Option<usize>,
}

/// A page of entries, oldest first.
#[utoipa::path(get, path = "/admin/v1/audit", tag = "audit", operation_id = "admin_list_audit",
    security(("admin_token" = [])),
    params(ListQuery),
    responses((status = 200, body = AuditList),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Query(q): Query<ListQuery>,
) -> Handled {
    let q = AuditQuery {
        since: q.since,
        actor: q.actor,
        target: q.target,
        after: q.after,
        limit: q.limit,
    };
    Ok(json(StatusCode::OK, &app.core.audit_list(&p, q).await?))
}

/// The whole log, one JSON object per line, oldest first (streamed a page
/// at a time).
#[utoipa::path(get, path = "/admin/v1/audit/export", tag = "audit", operation_id = "admin_export_audit",
    security(("admin_token" = [])),
    responses((status = 200, content_type = "application/x-ndjson", body = String),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn export(State(app): State<Arc<App>>, Gated(p): Gated<Principal>) -> Handled {
    // The first page checks the caller before the answer starts.
    let first = app.core.audit_page(&p, 0, AUDIT_PAGE_MAX).await?;
    let pages = futures::stream::try_unfold(
        (app, p, Some(first), 0u64),
        |(app, p, page, after)| async move {
            let page = match page {
                Some(pg) => pg,
                None => app
                    .core
                    .audit_page(&p, after, AUDIT_PAGE_MAX)
                    .await
                    .map_err(|e| std::io::Error::other(e.to_string()))?,
            };
            let Some(last) = page.last().map(|e| e.seq) else {
                return Ok(None);
            };
            let mut out = Vec::new();
            for e in &page {
                serde_json::to_writer(&mut out, e).expect("entries serialize");
                out.push(b'\n');
            }
            Ok::<_, std::io::Error>(Some((Bytes::from(out), (app, p, None, last))))
        },
    );
    Ok(Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(pages))
        .expect("valid response"))
}

/// Recompute the chain from the first entry; name the first that does not
/// match.
#[utoipa::path(get, path = "/admin/v1/audit/verify", tag = "audit", operation_id = "admin_verify_audit",
    security(("admin_token" = [])),
    responses((status = 200, body = AuditVerify),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn verify(State(app): State<Arc<App>>, Gated(p): Gated<Principal>) -> Handled {
    Ok(json(StatusCode::OK, &app.core.audit_verify(&p).await?))
}
