//! The background workers, and the scrub.

use std::sync::Arc;

use axum::extract::State;
use coffer_core::Principal;
use coffer_types::wire::{ErrorBody, MailTest, MailTestResult, ScrubStatus, WorkerList};
use http::StatusCode;

use crate::app::App;
use crate::extract::{Gated, Json};
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

/// Where the scrub stands, and every block found damaged (corrupt or
/// missing) and not healed yet, by archive.
#[utoipa::path(get, path = "/admin/v1/scrub", tag = "workers", operation_id = "admin_scrub_status",
    security(("admin_token" = [])),
    responses((status = 200, body = ScrubStatus),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn scrub_status(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
) -> Handled {
    Ok(json(StatusCode::OK, &app.core.scrub_status(&p).await?))
}

/// Start a scrub pass now (after the running one, if one is running).
#[utoipa::path(post, path = "/admin/v1/scrub/run", tag = "workers", operation_id = "admin_scrub_run",
    security(("admin_token" = [])),
    responses((status = 200, body = ScrubStatus),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn scrub_run(State(app): State<Arc<App>>, Gated(p): Gated<Principal>) -> Handled {
    Ok(json(StatusCode::OK, &app.core.scrub_run(&p).await?))
}

/// Send a test mail through the configured SMTP server now; the answer is
/// the server's. `502 delivery_failed` says what went wrong, `409` that
/// `[mail]` is not configured.
#[utoipa::path(post, path = "/admin/v1/mail/test", tag = "workers", operation_id = "admin_mail_test",
    security(("admin_token" = [])),
    request_body = MailTest,
    responses((status = 200, body = MailTestResult),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn mail_test(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Json(b): Json<MailTest>,
) -> Handled {
    let answer = app.core.test_mail(&p, &b.to).await?;
    Ok(json(StatusCode::OK, &MailTestResult { to: b.to, answer }))
}
