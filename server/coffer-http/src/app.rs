//! The state every request shares, and the one entry point that serves a
//! request: request id, tracing span, metrics and the error log line around
//! the router.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::response::Response;
use axum::Router;
use coffer_core::Coffer;
use coffer_types::ErrorCode;
use http::{HeaderValue, Request};
use prometheus_client::registry::Registry;
use tower::ServiceExt;
use tracing::Instrument;

use crate::budget::BodyBudget;
use crate::config::HttpConfig;
use crate::conn::DeviceRequests;
use crate::gate::RouteId;
use crate::metrics::Metrics;
use crate::response::ErrorNote;
use crate::routes::{Limit, FETCH_LIMIT, JSON_LIMIT};

/// Everything a handler needs.
pub(crate) struct App {
    pub(crate) core: Coffer,
    pub(crate) metrics: Arc<Metrics>,
    registry: Arc<Registry>,
    /// `http.max_json_body_bytes`: the block lists of `missing` and `commit`.
    block_list_limit: usize,
    /// Memory for buffered bodies and built answers (`http.body_memory_bytes`).
    pub(crate) budget: BodyBudget,
    /// Requests in flight per device (`http.max_requests_per_device`).
    pub(crate) device_requests: DeviceRequests,
    /// The OpenAPI description, serialized once.
    pub(crate) openapi: Bytes,
    /// `http.metrics_token_file`: `/metrics` only for its token.
    pub(crate) metrics_token_file: Option<std::path::PathBuf>,
    request_prefix: String,
    request_counter: AtomicU64,
}

impl App {
    pub(crate) fn new(
        core: Coffer,
        metrics: Arc<Metrics>,
        registry: Arc<Registry>,
        config: &HttpConfig,
        openapi: Bytes,
    ) -> Self {
        let mut r = [0u8; 4];
        let _ = getrandom::fill(&mut r);
        Self {
            core,
            metrics,
            registry,
            block_list_limit: config.max_json_body_bytes,
            budget: BodyBudget::new(config.body_memory_bytes)
                .with_stall(std::time::Duration::from_secs(config.body_timeout_secs)),
            device_requests: DeviceRequests::new(config.max_requests_per_device),
            openapi,
            metrics_token_file: config.metrics_token_file.clone(),
            request_prefix: hex::encode(r),
            request_counter: AtomicU64::new(0),
        }
    }

    /// The byte limit of a route's body.
    pub(crate) fn limit(&self, l: Limit) -> usize {
        match l {
            Limit::Json => JSON_LIMIT,
            Limit::BlockList => self.block_list_limit,
            // An id is 66 bytes of JSON and a comma; room for spaces, the
            // session and the braces.
            Limit::Missing => {
                (self.core.limits().max_missing_ids * 72 + (64 << 10)).min(self.block_list_limit)
            }
            Limit::Fetch => FETCH_LIMIT,
            Limit::Bundle => coffer_types::wire::BUNDLE_MAX_BYTES,
            Limit::Block => self.core.limits().max_block_bytes as usize,
        }
    }

    /// The Prometheus text of every registered component.
    pub(crate) fn metrics_text(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Serve one request through `router`. Never fails: errors are JSON
    /// error answers, logged here once with the request id.
    pub(crate) async fn handle<B>(self: Arc<Self>, router: Router, req: Request<B>) -> Response
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("{}-{n:x}", self.request_prefix);
        let span = tracing::info_span!("request", id = %request_id, method = %req.method(), path = %req.uri().path());
        let start = Instant::now();
        self.metrics.in_flight().inc();
        let req = req.map(Body::new);
        let mut resp = match router.oneshot(req).instrument(span.clone()).await {
            Ok(r) => r,
            Err(never) => match never {},
        };
        self.metrics.in_flight().dec();
        let route = resp
            .extensions()
            .get::<RouteId>()
            .map_or("unknown", |r| r.0);
        if let Some(note) = resp.extensions().get::<ErrorNote>().cloned() {
            if note.code == ErrorCode::Internal {
                // The details (paths, engine errors) go to the log only; the
                // client gets the request id that finds them there.
                let mut r = crate::response::error(
                    ErrorCode::Internal,
                    format!(
                        "internal error; the server's log has the details under request id \
                         {request_id}"
                    ),
                    None,
                );
                r.extensions_mut().insert(note.clone());
                if let Some(route) = resp.extensions().get::<RouteId>().cloned() {
                    r.extensions_mut().insert(route);
                }
                resp = r;
            }
            self.metrics.error(note.code.as_str());
            let _g = span.enter();
            match note.code {
                ErrorCode::Internal => {
                    tracing::error!(route, error = %note.message, "request failed")
                }
                ErrorCode::StorageUnavailable | ErrorCode::StorageFull => {
                    tracing::warn!(route, error = %note.message, "request refused")
                }
                code => {
                    tracing::debug!(route, code = code.as_str(), error = %note.message, "request refused")
                }
            }
        }
        let status = resp.status().as_u16();
        self.metrics.request(route, status);
        {
            let _g = span.enter();
            tracing::debug!(
                status,
                route,
                micros = start.elapsed().as_micros() as u64,
                "request done"
            );
        }
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            resp.headers_mut().insert("x-request-id", v);
        }
        resp
    }
}
