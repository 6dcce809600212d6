//! Plugins: the list, enable / disable / reload, reports and retention
//! plans.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use coffer_core::Principal;
use coffer_types::wire::{ErrorBody, PluginInfo, PluginList, RunReport};
use coffer_types::Name;
use http::{header, HeaderValue, StatusCode};
use serde::Deserialize;

use crate::app::App;
use crate::extract::{Gated, Json, Query, Seg};
use crate::handlers::ERROR;
use crate::response::{json, Handled};

/// Every plugin with its calls, failures and state.
#[utoipa::path(get, path = "/admin/v1/plugins", tag = "plugins", operation_id = "admin_list_plugins",
    security(("admin_token" = [])),
    responses((status = 200, body = PluginList),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn list(State(app): State<Arc<App>>, Gated(p): Gated<Principal>) -> Handled {
    Ok(json(
        StatusCode::OK,
        &PluginList {
            plugins: app.core.plugin_list(&p).await?,
        },
    ))
}

/// Enable a plugin (and lift a suspension); kept across restarts.
#[utoipa::path(post, path = "/admin/v1/plugins/{plugin}/enable", tag = "plugins", operation_id = "admin_enable_plugin",
    security(("admin_token" = [])),
    params(("plugin" = String, Path, description = "the plugin's name")),
    responses((status = 200, body = PluginInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn enable(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(plugin): Seg<String>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.set_plugin_enabled(&p, &plugin, true).await?,
    ))
}

/// Disable a plugin: it is not called until enabled again; kept across
/// restarts.
#[utoipa::path(post, path = "/admin/v1/plugins/{plugin}/disable", tag = "plugins", operation_id = "admin_disable_plugin",
    security(("admin_token" = [])),
    params(("plugin" = String, Path, description = "the plugin's name")),
    responses((status = 200, body = PluginInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn disable(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(plugin): Seg<String>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.set_plugin_enabled(&p, &plugin, false).await?,
    ))
}

/// Load the plugin's files again now (compile, check, smoke call, swap).
#[utoipa::path(post, path = "/admin/v1/plugins/{plugin}/reload", tag = "plugins", operation_id = "admin_reload_plugin",
    security(("admin_token" = [])),
    params(("plugin" = String, Path, description = "the plugin's name")),
    responses((status = 200, body = PluginInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn reload(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(plugin): Seg<String>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.reload_plugin(&p, &plugin).await?,
    ))
}

/// Run a reporter plugin for an org in the caller's scope: the report's
/// bytes, with its media type.
#[utoipa::path(post, path = "/admin/v1/plugins/{plugin}/report", tag = "plugins", operation_id = "admin_run_report",
    security(("admin_token" = [])),
    params(("plugin" = String, Path, description = "the reporter plugin")),
    request_body = RunReport,
    responses((status = 200, description = "the report (CSV, JSON or the plugin's document)"),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn report(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(plugin): Seg<String>,
    Json(b): Json<RunReport>,
) -> Handled {
    let (media, body) = app.core.run_report(&p, &plugin, b).await?;
    let mut r = Response::new(Body::from(body));
    if let Ok(v) = HeaderValue::from_str(&media) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    Ok(r)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PlanQuery {
    /// The retention plugin to ask (default: the enabled one serving the
    /// archive's org).
    plugin: Option<String>,
}

/// Which backups a retention plugin would expire (a dry run).
#[utoipa::path(get, path = "/admin/v1/archives/{archive}/retention-plan", tag = "plugins", operation_id = "admin_retention_plan",
    security(("admin_token" = [])),
    params(("archive" = String, Path, description = "the archive"), PlanQuery),
    responses((status = 200, description = "the plan"),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn retention_plan(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(archive): Seg<Name>,
    Query(q): Query<PlanQuery>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.retention_plan(&p, &archive, q.plugin).await?,
    ))
}
