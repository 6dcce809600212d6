//! Health, readiness, metrics and the OpenAPI description: open to anyone.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use coffer_core::CoreError;
use coffer_types::wire::ErrorBody;
use http::{header, HeaderMap, StatusCode};
use subtle::ConstantTimeEq;

use crate::app::App;
use crate::gate::bearer;
use crate::response::{json, Handled};

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", operation_id = "healthz",
    responses((status = 200, description = "`{\"status\": \"ok\"}`")))]
pub(crate) async fn healthz() -> Response {
    json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

/// The storage backend answers.
#[utoipa::path(get, path = "/readyz", tag = "ops", operation_id = "readyz",
    responses((status = 200, description = "`{\"status\": \"ready\"}`"),
              (status = 503, body = ErrorBody, description = "the storage cannot be reached")))]
pub(crate) async fn readyz(State(app): State<Arc<App>>) -> Handled {
    app.core.ready().await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({"status": "ready"}),
    ))
}

/// Prometheus metrics (OpenMetrics text). With `http.metrics_token_file`
/// set, only for `Authorization: Bearer <that file's token>`.
#[utoipa::path(get, path = "/metrics", tag = "ops", operation_id = "metrics",
    responses((status = 200, content_type = "application/openmetrics-text", body = String),
              (status = 401, body = ErrorBody, description = "`http.metrics_token_file` is set and the token is not its")))]
pub(crate) async fn metrics(State(app): State<Arc<App>>, headers: HeaderMap) -> Handled {
    if let Some(file) = &app.metrics_token_file {
        // Read at each scrape, so the token can be rotated without a restart.
        let want = std::fs::read_to_string(file)
            .map_err(|e| CoreError::Internal(format!("read http.metrics_token_file: {e}")))?;
        let got = bearer(&headers).unwrap_or("");
        let want = want.trim();
        if want.is_empty() || !bool::from(want.as_bytes().ct_eq(got.as_bytes())) {
            return Err(CoreError::Unauthorized.into());
        }
    }
    Ok(Response::builder()
        .header(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .body(Body::from(app.metrics_text()))
        .expect("valid response"))
}

/// This description of the admin and agent APIs (OpenAPI 3.1).
#[utoipa::path(get, path = "/admin/v1/openapi.json", tag = "ops", operation_id = "openapi",
    responses((status = 200, content_type = "application/json", description = "the OpenAPI document")))]
pub(crate) async fn openapi(State(app): State<Arc<App>>) -> Response {
    Response::builder()
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(app.openapi.clone()))
        .expect("valid response")
}
