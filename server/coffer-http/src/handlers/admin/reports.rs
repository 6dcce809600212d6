//! The health reports: device status, orgs and users, as JSON pages or
//! one CSV document.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use coffer_core::reports::ReportKind;
use coffer_core::{CoreError, Principal};
use coffer_types::wire::{ErrorBody, ReportPage, ReportQuery};
use http::{header, HeaderValue, StatusCode};
use serde::Deserialize;

use crate::app::App;
use crate::extract::{Gated, Query, Seg};
use crate::handlers::ERROR;
use crate::response::{json, Handled};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReportParams {
    /// Only this org and the orgs below it.
    org: Option<String>,
    /// Only these states, comma-separated (`ok`, `warning`, `critical`,
    /// `parked`).
    state: Option<String>,
    /// Only these reasons, comma-separated.
    reason: Option<String>,
    /// The column to sort by.
    sort: Option<String>,
    /// Sort descending.
    desc: Option<bool>,
    /// The previous page's `next_after`.
    after: Option<String>,
    /// Rows per page (default 1000, at most 10 000; JSON only).
    limit: Option<usize>,
    /// `json` (default: one page) or `csv` (the whole report).
    format: Option<String>,
}

/// A health report in the caller's scope: `device-status` (each device's
/// state, reason and facts), `orgs` (devices per state, users and bytes
/// per org) or `users` (devices, worst state and bytes per user).
#[utoipa::path(get, path = "/admin/v1/reports/{report}", tag = "devices", operation_id = "admin_report",
    security(("admin_token" = [])),
    params(("report" = String, Path, description = "device-status, orgs or users"), ReportParams),
    responses((status = 200, body = ReportPage, description = "a page (JSON) or the whole report (text/csv)"),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(report): Seg<String>,
    Query(q): Query<ReportParams>,
) -> Handled {
    let kind = ReportKind::parse(&report)?;
    let format = q.format.clone().unwrap_or_else(|| "json".into());
    let query = ReportQuery {
        org: q.org,
        state: q.state,
        reason: q.reason,
        sort: q.sort,
        desc: q.desc,
        after: q.after,
        limit: q.limit,
    };
    match format.as_str() {
        "json" => Ok(json(
            StatusCode::OK,
            &app.core.report(&p, kind, &query).await?,
        )),
        "csv" => {
            let text = app.core.report_csv(&p, kind, &query).await?;
            let mut r = Response::new(Body::from(text));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            );
            Ok(r)
        }
        other => {
            Err(CoreError::InvalidRequest(format!("format {other:?} is not json or csv")).into())
        }
    }
}
