//! Retention plans and runs, garbage collection, the compliance clock.

use std::sync::Arc;

use axum::extract::State;
use coffer_core::Principal;
use coffer_types::wire::{ClockInfo, ErrorBody, GcReport, GcStatus, RetentionReport};
use http::StatusCode;
use serde::Deserialize;

use crate::app::App;
use crate::extract::{Gated, Query, Seg};
use crate::handlers::ERROR;
use crate::response::{json, Handled};

/// What retention would expire in an archive now, and what it keeps by
/// which rule or hold (a dry run).
#[utoipa::path(get, path = "/admin/v1/retention/{archive}/plan", tag = "retention", operation_id = "admin_retention_dry_run",
    security(("admin_token" = [])),
    params(("archive" = String, Path, description = "the archive (or its device)")),
    responses((status = 200, body = RetentionReport),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn plan(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(archive): Seg<String>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.retention_dry_run(&p, &archive).await?,
    ))
}

/// Run retention on an archive now, every expiry through the gate.
#[utoipa::path(post, path = "/admin/v1/retention/{archive}/run", tag = "retention", operation_id = "admin_retention_run",
    security(("admin_token" = [])),
    params(("archive" = String, Path, description = "the archive (or its device)")),
    responses((status = 200, body = RetentionReport),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn run(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(archive): Seg<String>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.retention_run(&p, &archive).await?,
    ))
}

/// The collector's settings and its last run.
#[utoipa::path(get, path = "/admin/v1/gc", tag = "retention", operation_id = "admin_gc_status",
    security(("admin_token" = [])),
    responses((status = 200, body = GcStatus),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn gc_status(State(app): State<Arc<App>>, Gated(p): Gated<Principal>) -> Handled {
    Ok(json(StatusCode::OK, &app.core.gc_status(&p).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct GcQuery {
    /// Count what would be swept; destroy nothing.
    #[serde(default)]
    dry_run: bool,
}

/// Collect unreferenced blocks now (or count them, with `dry_run`).
#[utoipa::path(post, path = "/admin/v1/gc/run", tag = "retention", operation_id = "admin_gc_run",
    security(("admin_token" = [])),
    params(GcQuery),
    responses((status = 200, body = GcReport),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn gc_run(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Query(q): Query<GcQuery>,
) -> Handled {
    Ok(json(StatusCode::OK, &app.core.gc_run(&p, q.dry_run).await?))
}

fn clock_info(s: coffer_core::compliance::ClockStatus) -> ClockInfo {
    ClockInfo {
        compliance: s.compliance,
        wall: s.wall,
        persisted: s.persisted,
        state: s.state.into(),
    }
}

/// The compliance clock, the wall clock and their state.
#[utoipa::path(get, path = "/admin/v1/clock", tag = "retention", operation_id = "admin_clock",
    security(("admin_token" = [])),
    responses((status = 200, body = ClockInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn clock(State(app): State<Arc<App>>, Gated(p): Gated<Principal>) -> Handled {
    Ok(json(
        StatusCode::OK,
        &clock_info(app.core.clock_status(&p).await?),
    ))
}

/// Move the compliance clock forward to the wall clock (never back).
#[utoipa::path(post, path = "/admin/v1/clock/accept", tag = "retention", operation_id = "admin_clock_accept",
    security(("admin_token" = [])),
    responses((status = 200, body = ClockInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn clock_accept(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &clock_info(app.core.accept_clock(&p).await?),
    ))
}
