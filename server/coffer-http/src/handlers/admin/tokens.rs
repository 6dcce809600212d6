//! Admin API tokens.

use std::sync::Arc;

use axum::extract::State;
use coffer_core::Principal;
use coffer_types::wire::{CreateToken, ErrorBody, NewToken, TokenInfo, TokenList};
use coffer_types::Name;
use http::StatusCode;
use serde::Deserialize;

use crate::app::App;
use crate::extract::{Gated, Json, Query, Seg};
use crate::handlers::ERROR;
use crate::response::{json, Handled};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct TokenQuery {
    /// Only this account's tokens.
    account: Option<Name>,
}

/// Tokens of the accounts in the caller's scope (never the tokens
/// themselves).
#[utoipa::path(get, path = "/admin/v1/tokens", tag = "tokens", operation_id = "admin_list_tokens",
    security(("admin_token" = [])),
    params(TokenQuery),
    responses((status = 200, body = TokenList),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn list(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Query(q): Query<TokenQuery>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &TokenList {
            tokens: app.core.tokens(&p, q.account.as_ref()).await?,
        },
    ))
}

/// Create a token for an account: shown once, kept as a hash, expiring
/// (default 90 days).
#[utoipa::path(post, path = "/admin/v1/tokens", tag = "tokens", operation_id = "admin_create_token",
    security(("admin_token" = [])),
    request_body = CreateToken,
    responses((status = 201, body = NewToken),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn create(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Json(b): Json<CreateToken>,
) -> Handled {
    Ok(json(
        StatusCode::CREATED,
        &app.core.create_token(&p, b).await?,
    ))
}

/// Revoke a token: it stops working at once.
#[utoipa::path(post, path = "/admin/v1/tokens/{token}/revoke", tag = "tokens", operation_id = "admin_revoke_token",
    security(("admin_token" = [])),
    params(("token" = String, Path, description = "the token's id (`tk_…`)")),
    responses((status = 200, body = TokenInfo),
              (status = "default", body = ErrorBody, description = ERROR)))]
pub(crate) async fn revoke(
    State(app): State<Arc<App>>,
    Gated(p): Gated<Principal>,
    Seg(token): Seg<Name>,
) -> Handled {
    Ok(json(
        StatusCode::OK,
        &app.core.revoke_token(&p, &token).await?,
    ))
}
