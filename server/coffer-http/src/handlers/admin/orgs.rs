//! Organizations.

use std::sync::Arc;

use axum::extract::State;
use coffer_core::Principal;
use coffer_types::wire::{CreateOrg, ErrorBody, OrgInfo, OrgList};
use http::StatusCode;

use crate::app::App;
use crate::extract::{Gated, Json};
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
