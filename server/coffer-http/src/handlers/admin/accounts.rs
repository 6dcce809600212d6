//! Admin accounts.

use std::sync::Arc;

use axum::extract::State;
use coffer_core::Principal;
use coffer_types::wire::{AccountInfo, AccountList, CreateAccount, ErrorBody};
use coffer_types::Name;
use http::StatusCode;

use crate::app::App;
use crate::extract::{Gated, Json, Seg};
use crate::handlers::ERROR;
use crate::response::{json, Handled};

/// The accounts in the caller's scope.
#[utoipa::path(get, path = "/admin/v1/accounts", tag = "accounts", operation_id = "admin_list_accounts",
    security(("admin_token" = [])),
    responses((status = 200, body = AccountList),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn list(State(app): State<Arc<App>>, Gated(p): Gated<Principal>) -> Handled {
    Ok(json(
        StatusCode::OK,
        &AccountList {
            accounts: app.core.accounts(&p).await?,
        },
    ))
}

/// Create an account with a role (and, for a scoped role, an org).
#[utoipa::path(post, path = "/admin/v1/accounts", tag = "accounts", operation_id = "admin_create_account",
    security(("admin_token" = [])),
    request_body = CreateAccount,
    responses((status = 201, body = AccountInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Json(b): Json<CreateAccount>,
) -> Handled {
    Ok(json(
        StatusCode::CREATED,
        &app.core.create_account(&p, b).await?,
    ))
}

/// One account.
#[utoipa::path(get, path = "/admin/v1/accounts/{account}", tag = "accounts", operation_id = "admin_get_account",
    security(("admin_token" = [])),
    params(("account" = String, Path, description = "the account name")),
    responses((status = 200, body = AccountInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn get(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(account): Seg<Name>,
) -> Handled {
    Ok(json(StatusCode::OK, &app.core.account(&p, &account).await?))
}

/// Disable an account: its tokens stop working at once.
#[utoipa::path(post, path = "/admin/v1/accounts/{account}/disable", tag = "accounts", operation_id = "admin_disable_account",
    security(("admin_token" = [])),
    params(("account" = String, Path, description = "the account name")),
    responses((status = 200, body = AccountInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn disable(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(account): Seg<Name>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.set_account_disabled(&p, &account, true).await?,
    ))
}

/// Enable a disabled account again.
#[utoipa::path(post, path = "/admin/v1/accounts/{account}/enable", tag = "accounts", operation_id = "admin_enable_account",
    security(("admin_token" = [])),
    params(("account" = String, Path, description = "the account name")),
    responses((status = 200, body = AccountInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn enable(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(account): Seg<Name>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.set_account_disabled(&p, &account, false).await?,
    ))
}

/// Delete an account and its tokens.
#[utoipa::path(delete, path = "/admin/v1/accounts/{account}", tag = "accounts", operation_id = "admin_delete_account",
    security(("admin_token" = [])),
    params(("account" = String, Path, description = "the account name")),
    responses((status = 200, description = "`{\"deleted\": name}`"),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn delete(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(account): Seg<Name>,
) -> Handled {
    app.core.delete_account(&p, &account).await?;
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "deleted": account }),
    ))
}
