//! Building responses: JSON bodies, streamed bodies, and the one place where
//! a domain error becomes an HTTP status and a JSON error body.

use bytes::Bytes;
use coffer_core::CoreError;
use coffer_types::wire::{ErrorBody, ErrorDetail};
use coffer_types::ErrorCode;
use http::{header, HeaderValue, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use serde::Serialize;

pub(crate) type Body = UnsyncBoxBody<Bytes, std::io::Error>;

pub(crate) fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    // Serializing the wire types cannot fail.
    let body = serde_json::to_vec(value).expect("wire types serialize");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .expect("valid response")
}

/// An error answer: status from the code, JSON body, and `Retry-After` when
/// a retry later can help.
pub(crate) fn error(
    code: ErrorCode,
    message: String,
    missing: Option<Vec<coffer_types::BlockId>>,
) -> Response<Body> {
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = json(
        status,
        &ErrorBody {
            error: ErrorDetail {
                code,
                message,
                retryable: code.retryable(),
                missing,
            },
        },
    );
    let retry_after = match code {
        ErrorCode::StorageUnavailable | ErrorCode::ShuttingDown => Some("5"),
        ErrorCode::StorageFull => Some("60"),
        _ => None,
    };
    if let Some(s) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(s));
    }
    resp
}

pub(crate) fn core_error(e: &CoreError) -> Response<Body> {
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
