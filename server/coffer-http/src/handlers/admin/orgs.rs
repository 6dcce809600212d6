//! Organizations and their settings.

use std::sync::Arc;

use axum::extract::State;
use coffer_core::Principal;
use coffer_types::wire::{
    CreateOrg, ErrorBody, OrgInfo, OrgList, OrgSettingsChange, OrgSettingsInfo, SetInherit,
    SetOrgSettings,
};
use coffer_types::Name;
use http::StatusCode;

use crate::app::App;
use crate::extract::{Gated, Json, Seg};
use crate::handlers::ERROR;
use crate::response::{json, Handled};

/// The orgs in the caller's scope.
#[utoipa::path(get, path = "/admin/v1/orgs", tag = "orgs", operation_id = "admin_list_orgs",
    security(("admin_token" = [])),
    responses((status = 200, body = OrgList),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn list(State(app): State<Arc<App>>, Gated(p): Gated<Principal>) -> Handled {
    Ok(json(
        StatusCode::OK,
        &OrgList {
            orgs: app.core.orgs(&p).await?,
        },
    ))
}

/// Create an org (under a parent in the caller's scope; a top-level org
/// needs the admin role).
#[utoipa::path(post, path = "/admin/v1/orgs", tag = "orgs", operation_id = "admin_create_org",
    security(("admin_token" = [])),
    request_body = CreateOrg,
    responses((status = 201, body = OrgInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Json(b): Json<CreateOrg>,
) -> Handled {
    Ok(json(
        StatusCode::CREATED,
        &app.core.create_org(&p, b.name, b.parent).await?,
    ))
}

/// An org's settings: every group, the values in effect, where each comes
/// from (`"default"` or the org that holds it), and which groups it
/// inherits.
#[utoipa::path(get, path = "/admin/v1/orgs/{org}/settings", tag = "orgs", operation_id = "admin_get_org_settings",
    security(("admin_token" = [])),
    params(("org" = String, Path, description = "the org")),
    responses((status = 200, body = OrgSettingsInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn get_settings(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(org): Seg<Name>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.org_settings(&p, &org).await?,
    ))
}

/// Set values of one settings group of an org. A group the org inherited
/// stops being inherited first (the answer says so).
#[utoipa::path(patch, path = "/admin/v1/orgs/{org}/settings", tag = "orgs", operation_id = "admin_set_org_settings",
    security(("admin_token" = [])),
    params(("org" = String, Path, description = "the org")),
    request_body = SetOrgSettings,
    responses((status = 200, body = OrgSettingsChange),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn set_settings(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(org): Seg<Name>,
    Json(b): Json<SetOrgSettings>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.set_org_settings(&p, &org, &b).await?,
    ))
}

/// Turn inheritance of a settings group on (the org's own values are
/// dropped, and listed) or off (the values in effect become its own).
#[utoipa::path(put, path = "/admin/v1/orgs/{org}/settings/{group}/inherit", tag = "orgs", operation_id = "admin_set_org_inherit",
    security(("admin_token" = [])),
    params(("org" = String, Path, description = "the org"),
           ("group" = String, Path, description = "reporting, device_defaults, security, quotas or retention")),
    request_body = SetInherit,
    responses((status = 200, body = OrgSettingsChange),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn set_inherit(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg((org, group)): Seg<(Name, String)>,
    Json(b): Json<SetInherit>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core
            .set_org_inherit(&p, &org, &group, b.inherit)
            .await?,
    ))
}
