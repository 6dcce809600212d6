//! Building responses: JSON bodies, and the one place where a domain error
//! becomes an HTTP status and a JSON error body ([`core_error`]).

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use coffer_core::CoreError;
use coffer_types::wire::{ErrorBody, ErrorDetail};
use coffer_types::ErrorCode;
use http::{header, HeaderValue, StatusCode};
use serde::Serialize;

pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    // Serializing the wire types cannot fail.
    let body = serde_json::to_vec(value).expect("wire types serialize");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .expect("valid response")
}

/// `200` or `201` with a JSON body.
pub(crate) fn created_or_ok<T: Serialize>(created: bool, value: &T) -> Response {
    json(
        if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        value,
    )
}

/// What went wrong in a request, kept on the response for the log line and
/// the error counter (`router::App::handle`).
#[derive(Debug, Clone)]
pub(crate) struct ErrorNote {
    pub(crate) code: ErrorCode,
    pub(crate) message: String,
}

/// An error answer: status from the code, JSON body, and `Retry-After` when
/// a retry later can help.
pub(crate) fn error(
    code: ErrorCode,
    message: String,
    missing: Option<Vec<coffer_types::BlockId>>,
) -> Response {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json(
        status,
        &ErrorBody {
            error: ErrorDetail {
                code,
                message: message.clone(),
                retryable: code.retryable(),
                missing,
            },
        },
    );
    let retry_after = match code {
        ErrorCode::StorageUnavailable | ErrorCode::ShuttingDown => Some("5"),
        ErrorCode::StorageFull => Some("60"),
        ErrorCode::ServerBusy | ErrorCode::TooManyRequests => Some("1"),
        _ => None,
    };
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(s));
    }
    resp.extensions_mut().insert(ErrorNote { code, message });
    resp
}

pub(crate) fn core_error(e: &CoreError) -> Response {
    let mut resp = error(e.code(), e.to_string(), e.missing().map(<[_]>::to_vec));
    if let CoreError::RangeNotSatisfiable { size } = e {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
    }
    if e.code() == ErrorCode::Unauthorized {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

/// A handler's error: a domain error, answered by [`core_error`].
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) CoreError);

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        core_error(&self.0)
    }
}

/// What handlers return.
pub(crate) type Handled = Result<Response, ApiError>;
