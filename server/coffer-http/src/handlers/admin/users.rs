//! Users.

use std::sync::Arc;

use axum::extract::State;
use coffer_core::Principal;
use coffer_types::wire::{AddUser, ErrorBody, UserInfo, UserList};
use http::StatusCode;

use crate::app::App;
use crate::extract::{Gated, Json};
use crate::handlers::ERROR;
use crate::response::{json, Handled};

/// The users in the caller's scope.
#[utoipa::path(get, path = "/admin/v1/users", tag = "users", operation_id = "admin_list_users",
    security(("admin_token" = [])),
    responses((status = 200, body = UserList),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn list(State(app): State<Arc<App>>, Gated(p): Gated<Principal>) -> Handled {
    Ok(json(
        StatusCode::OK,
        &UserList {
            users: app.core.users(&p).await?,
        },
    ))
}

/// Add a user to an org.
#[utoipa::path(post, path = "/admin/v1/users", tag = "users", operation_id = "admin_add_user",
    security(("admin_token" = [])),
    request_body = AddUser,
    responses((status = 201, body = UserInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn add(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Json(b): Json<AddUser>,
) -> Handled {
    Ok(json(
        StatusCode::CREATED,
        &app.core.add_user(&p, b.org, b.name).await?,
    ))
}

/// Deactivate every device of a user (refused, `409 hold_active`, while
/// the user is on legal hold).
#[utoipa::path(post, path = "/admin/v1/users/deactivate", tag = "users", operation_id = "admin_deactivate_user",
    security(("admin_token" = [])),
    request_body = coffer_types::wire::UserRef,
    responses((status = 200, body = coffer_types::wire::DeviceList),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn deactivate(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Json(b): Json<coffer_types::wire::UserRef>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &coffer_types::wire::DeviceList {
            devices: app.core.deactivate_user(&p, &b.org, &b.user).await?,
        },
    ))
}
