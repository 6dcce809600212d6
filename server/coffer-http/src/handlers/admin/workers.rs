//! The background workers.

use std::sync::Arc;

use axum::extract::State;
use coffer_core::Principal;
use coffer_types::wire::{ErrorBody, WorkerList};
use http::StatusCode;

use crate::app::App;
use crate::extract::Gated;
use crate::handlers::ERROR;
use crate::response::{json, Handled};

/// Each worker: state, last run, next run, last error, runs and failures.
#[utoipa::path(get, path = "/admin/v1/workers", tag = "workers", operation_id = "admin_list_workers",
    security(("admin_token" = [])),
    responses((status = 200, body = WorkerList),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn list(State(app): State<Arc<App>>, Gated(p): Gated<Principal>) -> Handled {
    Ok(json(
        StatusCode::OK,
        &WorkerList {
            workers: app.core.workers(&p).await?,
        },
    ))
}
