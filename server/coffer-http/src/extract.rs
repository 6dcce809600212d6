//! Extractors whose refusals are the server's JSON errors: path segments and
//! query strings (percent-decoded by axum), JSON bodies read within the
//! route's limit, and what the gate put on the request (the principal, the
//! device, the checked archive).

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use coffer_core::CoreError;
use futures::StreamExt;
use http::header;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::budget::{stall_guard, BodyBudget, Held};
use crate::gate::BodyLimit;
use crate::response::ApiError;
use crate::routes::JSON_LIMIT;

/// A whole body of at most `limit` bytes; past it, `413 body_too_large`
/// (while streaming, when no `Content-Length` said so up front). Its memory
/// is taken from `budget` as it arrives (`503 server_busy` when spent) and
/// held until the returned [`Held`] is dropped.
pub(crate) async fn read_limited(
    body: Body,
    limit: usize,
    budget: &BodyBudget,
) -> Result<(Bytes, Held), CoreError> {
    let mut held = Held::default();
    let mut parts: Vec<Bytes> = Vec::new();
    let mut len = 0;
    let body = stall_guard(body.into_data_stream(), budget.stall);
    futures::pin_mut!(body);
    while let Some(data) = body.next().await {
        let data = data.map_err(|e| CoreError::BodyAborted(e.to_string()))?;
        len += data.len();
        if len > limit {
            return Err(CoreError::BodyTooLarge {
                limit: limit as u64,
            });
        }
        budget.take(&mut held, data.len())?;
        parts.push(data);
    }
    if parts.len() <= 1 {
        return Ok((parts.pop().unwrap_or_default(), held));
    }
    // One copy of exactly its size; the pieces' share is given back after.
    budget.take(&mut held, len)?;
    let mut whole = Vec::with_capacity(len);
    for p in parts {
        whole.extend_from_slice(&p);
    }
    budget.give_back(&mut held, len);
    Ok((whole.into(), held))
}

/// Refuse a body that says it is not JSON.
fn check_json_type(req: &Request) -> Result<(), CoreError> {
    match req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        Some(ct) if !ct.starts_with("application/json") => Err(CoreError::InvalidRequest(format!(
            "send JSON with content-type application/json, not {ct:?}"
        ))),
        _ => Ok(()),
    }
}

/// The body of `req` within the route's limit (1 MiB unless the route says
/// more), and its hold on the body budget.
async fn route_body(req: Request) -> Result<(Bytes, (Held, BodyBudget)), CoreError> {
    let limit = req
        .extensions()
        .get::<BodyLimit>()
        .map_or(JSON_LIMIT, |l| l.0);
    let budget = req
        .extensions()
        .get::<BodyBudget>()
        .cloned()
        .ok_or_else(|| CoreError::Internal("the route has no body budget".into()))?;
    let (bytes, held) = read_limited(req.into_body(), limit, &budget).await?;
    Ok((bytes, (held, budget)))
}

/// Bodies above this are parsed on the blocking pool: a block list of a
/// million ids takes a CPU for a quarter of a second, which an async worker
/// serving other tenants must not spend.
const PARSE_INLINE_MAX: usize = 256 << 10;

/// Parse `bytes`, holding `held` (the body's budget) until done, and more:
/// the parsed value (a block list is about half its JSON).
async fn parse<T: DeserializeOwned + Send + 'static>(
    bytes: Bytes,
    mut held: (Held, BodyBudget),
) -> Result<T, ApiError> {
    held.1.take(&mut held.0, bytes.len() / 2)?;
    let inline = bytes.len() <= PARSE_INLINE_MAX;
    let parse = move || {
        let _held = held;
        serde_json::from_slice(&bytes)
            .map_err(|e| CoreError::InvalidRequest(format!("invalid JSON body: {e}")).into())
    };
    if inline {
        return parse();
    }
    tokio::task::spawn_blocking(parse)
        .await
        .map_err(|e| CoreError::Internal(format!("parse a JSON body: {e}")))?
}

/// A JSON body within the route's limit.
#[derive(Debug)]
pub(crate) struct Json<T>(pub(crate) T);

impl<T: DeserializeOwned + Send + 'static, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        check_json_type(&req)?;
        let (bytes, held) = route_body(req).await?;
        parse(bytes, held).await.map(Json)
    }
}

/// An optional JSON body: none when the request's body is empty.
#[derive(Debug)]
pub(crate) struct OptionalJson<T>(pub(crate) Option<T>);

impl<T: DeserializeOwned + Send + 'static, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        check_json_type(&req)?;
        let (bytes, held) = route_body(req).await?;
        if bytes.is_empty() {
            return Ok(OptionalJson(None));
        }
        parse(bytes, held).await.map(|v| OptionalJson(Some(v)))
    }
}

/// Path segments, percent-decoded; a bad one is `400 invalid_id`.
#[derive(Debug)]
pub(crate) struct Seg<T>(pub(crate) T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Seg<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, s)
            .await
            .map(|p| Seg(p.0))
            .map_err(|e| CoreError::InvalidId(e.body_text()).into())
    }
}

/// A query string, percent-decoded; a bad one is `400 invalid_request`.
#[derive(Debug)]
pub(crate) struct Query<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, s: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, s)
            .await
            .map(|q| Query(q.0))
            .map_err(|e| CoreError::InvalidRequest(e.body_text()).into())
    }
}

/// What the gate put on the request. Missing means a handler sits on a
/// route of the wrong access: a bug, answered `500`.
#[derive(Debug)]
pub(crate) struct Gated<T>(pub(crate) T);

impl<T: Clone + Send + Sync + 'static, S: Send + Sync> FromRequestParts<S> for Gated<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<T>()
            .cloned()
            .map(Gated)
            .ok_or_else(|| {
                CoreError::Internal(format!(
                    "the route of {} is not gated for {}",
                    parts.uri.path(),
                    std::any::type_name::<T>()
                ))
                .into()
            })
    }
}
