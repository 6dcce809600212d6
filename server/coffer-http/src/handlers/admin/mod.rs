//! The admin API (`/admin/v1`), one module per kind of object. The gate has
//! authenticated the admin token into a `Principal` and checked its role;
//! every call below hands the principal to the core, which checks the scope.

pub(crate) mod accounts;
pub(crate) mod audit;
pub(crate) mod devices;
pub(crate) mod holds;
pub(crate) mod orgs;
pub(crate) mod plugins;
pub(crate) mod reports;
pub(crate) mod retention;
pub(crate) mod tokens;
pub(crate) mod users;
pub(crate) mod workers;

use axum::response::Response;
use coffer_core::Principal;
use coffer_types::wire::{ErrorBody, WhoAmI};
use http::StatusCode;

use crate::extract::Gated;
use crate::handlers::ERROR;
use crate::response::json;

/// The account, role and scope the token stands for.
#[utoipa::path(get, path = "/admin/v1/whoami", tag = "admin", operation_id = "admin_whoami",
    security(("admin_token" = [])),
    responses((status = 200, body = WhoAmI),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn whoami(Gated(p): Gated<Principal>) -> Response {
    json(
        StatusCode::OK,
        &WhoAmI {
            account: p.account().clone(),
            role: p.role(),
            org: p.org().cloned(),
            token: p.token().cloned(),
        },
    )
}
