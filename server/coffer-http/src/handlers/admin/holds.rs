//! Legal hold: preservation policies, matters, custodians (the core checks
//! the role and scope: only legal-hold admins and admins change them).

use std::sync::Arc;

use axum::extract::State;
use coffer_core::Principal;
use coffer_types::wire::{
    CreateHoldPolicy, CreateMatter, CustodianInfo, CustodianList, CustodianRequest, ErrorBody,
    HoldPolicyInfo, HoldPolicyList, MatterInfo, MatterList, Reason,
};
use http::StatusCode;
use serde::Deserialize;

use crate::app::App;
use crate::extract::{Gated, Json, Query, Seg};
use crate::handlers::ERROR;
use crate::response::{json, Handled};

/// The preservation policies.
#[utoipa::path(get, path = "/admin/v1/holds/policies", tag = "holds", operation_id = "admin_list_hold_policies",
    security(("admin_token" = [])),
    responses((status = 200, body = HoldPolicyList),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn list_policies(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &HoldPolicyList {
            policies: app.core.hold_policies(&p).await?,
        },
    ))
}

/// Create a preservation policy: keep every backup, or tiers at least as
/// strict as the org's.
#[utoipa::path(post, path = "/admin/v1/holds/policies", tag = "holds", operation_id = "admin_create_hold_policy",
    security(("admin_token" = [])),
    request_body = CreateHoldPolicy,
    responses((status = 201, body = HoldPolicyInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn create_policy(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Json(b): Json<CreateHoldPolicy>,
) -> Handled {
    Ok(json(
        StatusCode::CREATED,
        &app.core.create_hold_policy(&p, b).await?,
    ))
}

/// The matters, with their active custodian counts.
#[utoipa::path(get, path = "/admin/v1/holds/matters", tag = "holds", operation_id = "admin_list_matters",
    security(("admin_token" = [])),
    responses((status = 200, body = MatterList),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn list_matters(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &MatterList {
            matters: app.core.matters(&p).await?,
        },
    ))
}

/// Create a matter under a preservation policy.
#[utoipa::path(post, path = "/admin/v1/holds/matters", tag = "holds", operation_id = "admin_create_matter",
    security(("admin_token" = [])),
    request_body = CreateMatter,
    responses((status = 201, body = MatterInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn create_matter(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Json(b): Json<CreateMatter>,
) -> Handled {
    Ok(json(
        StatusCode::CREATED,
        &app.core.create_matter(&p, b).await?,
    ))
}

/// One matter with its custodians.
#[utoipa::path(get, path = "/admin/v1/holds/matters/{matter}", tag = "holds", operation_id = "admin_get_matter",
    security(("admin_token" = [])),
    params(("matter" = String, Path, description = "the matter")),
    responses((status = 200, body = MatterInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn get_matter(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(matter): Seg<String>,
) -> Handled {
    Ok(json(StatusCode::OK, &app.core.matter(&p, &matter).await?))
}

/// Close a matter: every custodian is released (the quarantine begins).
#[utoipa::path(post, path = "/admin/v1/holds/matters/{matter}/close", tag = "holds", operation_id = "admin_close_matter",
    security(("admin_token" = [])),
    params(("matter" = String, Path, description = "the matter")),
    request_body = Reason,
    responses((status = 200, body = MatterInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn close_matter(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(matter): Seg<String>,
    Json(b): Json<Reason>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.close_matter(&p, &matter, &b.reason).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CustodianQuery {
    /// Only this matter's custodians.
    matter: Option<String>,
}

/// Custodians, of one matter or all, within the caller's scope.
#[utoipa::path(get, path = "/admin/v1/holds/custodians", tag = "holds", operation_id = "admin_list_custodians",
    security(("admin_token" = [])),
    params(CustodianQuery),
    responses((status = 200, body = CustodianList),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn list_custodians(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Query(q): Query<CustodianQuery>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &CustodianList {
            custodians: app.core.custodians(&p, q.matter.as_deref()).await?,
        },
    ))
}

/// Place a user on hold under a matter.
#[utoipa::path(post, path = "/admin/v1/holds/custodians", tag = "holds", operation_id = "admin_add_custodian",
    security(("admin_token" = [])),
    request_body = CustodianRequest,
    responses((status = 201, body = CustodianInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn add_custodian(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Json(b): Json<CustodianRequest>,
) -> Handled {
    Ok(json(
        StatusCode::CREATED,
        &app.core.add_custodian(&p, b).await?,
    ))
}

/// Release a custodian (a reason is required; with the two-person rule the
/// second legal-hold admin's call releases).
#[utoipa::path(post, path = "/admin/v1/holds/custodians/release", tag = "holds", operation_id = "admin_release_custodian",
    security(("admin_token" = [])),
    request_body = CustodianRequest,
    responses((status = 200, body = CustodianInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn release_custodian(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Json(b): Json<CustodianRequest>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.release_custodian(&p, b).await?,
    ))
}
