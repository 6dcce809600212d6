//! Routing and handlers: authenticate, parse, call the core, answer.
//!
//! Order of checks on `/v1`: token (401), archive ownership (404, the same
//! answer for a foreign archive as for none), then the request itself (400,
//! 413, …), so nothing about other tenants leaks through error codes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use coffer_core::DeviceRecord;
use coffer_core::{Coffer, CoreError};
use coffer_types::wire::{
    AbortRequest, AddUser, BackupList, CommitRequest, CreateOrg, DeviceList, EnrollDevice,
    FetchRequest, MissingRequest, OrgList, PluginList, ProgressRequest, RunReport, SetRef,
    UserList,
};
use coffer_types::{ErrorCode, Name};
use futures::TryStreamExt;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, BodyStream, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::response::{core_error, empty, full, json, Body};

/// Everything a request handler needs.
pub(crate) struct App {
    pub(crate) core: Coffer,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) max_json: usize,
    request_prefix: String,
    request_counter: AtomicU64,
}

type Handled = Result<Response<Body>, CoreError>;

impl App {
    pub(crate) fn new(core: Coffer, metrics: Arc<Metrics>, max_json: usize) -> Self {
        let mut r = [0u8; 4];
        let _ = getrandom::fill(&mut r);
        Self {
            core,
            metrics,
            max_json,
            request_prefix: hex::encode(r),
            request_counter: AtomicU64::new(0),
        }
    }

    /// Serve one request. Never fails: errors become JSON error answers.
    pub(crate) async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Body> {
        let n = self.request_counter.fetch_add(1, Ordering::Relaxed);
        let request_id = format!("{}-{n:x}", self.request_prefix);
        let span = tracing::info_span!("request", id = %request_id, method = %req.method(), path = %req.uri().path());
        let start = Instant::now();
        self.metrics.in_flight().inc();
        let (route, result) = self.route(req).instrument(span.clone()).await;
        self.metrics.in_flight().dec();
        let mut resp = match result {
            Ok(r) => r,
            Err(e) => {
                self.metrics.error(e.code().as_str());
                let _g = span.enter();
                match e.code() {
                    ErrorCode::Internal => tracing::error!(error = %e, "request failed"),
                    ErrorCode::StorageUnavailable | ErrorCode::StorageFull => {
                        tracing::warn!(error = %e, "request refused")
                    }
                    _ => tracing::debug!(code = e.code().as_str(), error = %e, "request refused"),
                }
                core_error(&e)
            }
        };
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

    async fn route(&self, req: Request<Incoming>) -> (&'static str, Handled) {
        let path = req.uri().path().to_owned();
        let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let m = req.method().clone();
        match (segs.as_slice(), &m) {
            (["healthz"], &Method::GET) => (
                "healthz",
                Ok(json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
            ),
            (["readyz"], &Method::GET) => ("readyz", self.ready().await),
            (["metrics"], &Method::GET) => ("metrics", Ok(self.metrics_text())),
            (["v1", ..], _) => self.agent(req, &segs[1..]).await,
            (["admin", "v1", ..], _) => self.admin(req, &segs[2..]).await,
            _ => (
                "unknown",
                Err(CoreError::NotFound(format!("no resource at {path}"))),
            ),
        }
    }

    async fn ready(&self) -> Handled {
        match self.core.ready().await {
            Ok(()) => Ok(json(
                StatusCode::OK,
                &serde_json::json!({"status": "ready"}),
            )),
            Err(e) => Err(e),
        }
    }

    fn metrics_text(&self) -> Response<Body> {
        Response::builder()
            .header(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .body(full(self.metrics.encode_with(&plugin_metrics(&self.core))))
            .expect("valid response")
    }

    // ---- agent protocol ----

    fn device(&self, headers: &HeaderMap) -> Result<DeviceRecord, CoreError> {
        self.core.authenticate_device(bearer(headers)?)
    }

    async fn agent(&self, req: Request<Incoming>, segs: &[&str]) -> (&'static str, Handled) {
        let m = req.method().clone();
        let route = agent_route(segs, &m);
        if route == "unknown" {
            return (route, Err(not_served(&m, segs)));
        }
        let device = match self.device(req.headers()) {
            Ok(d) => d,
            Err(e) => return (route, Err(e)),
        };
        if route == "whoami" {
            return (
                route,
                Ok(json(
                    StatusCode::OK,
                    &serde_json::json!({"device": device.id, "archive": device.archive}),
                )),
            );
        }
        let archive = match self.core.archive_of(&device, segs[1]) {
            Ok(a) => a,
            Err(e) => return (route, Err(e)),
        };
        (
            route,
            self.agent_call(route, req, &device, &archive, segs).await,
        )
    }

    async fn agent_call(
        &self,
        route: &'static str,
        req: Request<Incoming>,
        device: &DeviceRecord,
        archive: &Name,
        segs: &[&str],
    ) -> Handled {
        match route {
            "put_block" => self.put_block(req, archive, segs[3]).await,
            "put_bundle" => self.put_bundle(req, archive).await,
            "get_block" => self.get_block(&req, archive, segs[3]).await,
            "fetch_blocks" => {
                let body: FetchRequest = self.read_json(req).await?;
                let out = self.core.read_blocks(archive, &body.ids).await?;
                self.metrics.bytes_out(out.len() as u64);
                Ok(Response::builder()
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .header(header::CONTENT_LENGTH, out.len())
                    .body(full(out))
                    .expect("valid response"))
            }
            "head_block" => {
                let size = self.core.block_size(archive, segs[3])?;
                Ok(Response::builder()
                    .header(header::CONTENT_LENGTH, size)
                    .header(header::ACCEPT_RANGES, "bytes")
                    .header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(empty())
                    .expect("valid response"))
            }
            "missing_blocks" => {
                let body: MissingRequest = self.read_json(req).await?;
                let r = self
                    .core
                    .missing_blocks(archive, &body.ids, body.session.as_ref())
                    .await?;
                Ok(json(StatusCode::OK, &r))
            }
            "open_session" => {
                let agent = req
                    .headers()
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let s = self
                    .core
                    .open_session(device, archive, agent.as_deref())
                    .await?;
                Ok(json(StatusCode::CREATED, &s))
            }
            "get_session" => Ok(json(StatusCode::OK, &self.core.session(archive, segs[3])?)),
            "progress" => {
                let body: ProgressRequest = self.read_json(req).await?;
                Ok(json(
                    StatusCode::OK,
                    &self.core.progress(archive, segs[3], body).await?,
                ))
            }
            "commit" => {
                let body: CommitRequest = self.read_json(req).await?;
                let (b, created) = self.core.commit(archive, segs[3], body).await?;
                Ok(json(
                    if created {
                        StatusCode::CREATED
                    } else {
                        StatusCode::OK
                    },
                    &b,
                ))
            }
            "abort" => {
                let has_body = req.method() == Method::POST
                    && req
                        .headers()
                        .get(header::CONTENT_LENGTH)
                        .is_some_and(|v| v.as_bytes() != b"0");
                let b: AbortRequest = if has_body {
                    self.read_json(req).await?
                } else {
                    AbortRequest::default()
                };
                Ok(json(
                    StatusCode::OK,
                    &self
                        .core
                        .abort(archive, segs[3], b.failed.as_deref())
                        .await?,
                ))
            }
            "list_backups" => Ok(json(
                StatusCode::OK,
                &BackupList {
                    backups: self.core.backups(archive)?,
                },
            )),
            "get_backup" => Ok(json(StatusCode::OK, &self.core.backup(archive, segs[3])?)),
            "set_ref" => {
                let body: SetRef = self.read_json(req).await?;
                Ok(json(
                    StatusCode::OK,
                    &self.core.set_ref(archive, segs[3], body.block).await?,
                ))
            }
            "get_ref" => Ok(json(StatusCode::OK, &self.core.get_ref(archive, segs[3])?)),
            _ => Err(CoreError::Internal(format!("route {route} has no handler"))),
        }
    }

    async fn put_block(&self, req: Request<Incoming>, archive: &Name, id: &str) -> Handled {
        let start = Instant::now();
        let headers = req.headers();
        let content_length = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let session = session_header(headers)?;
        let metrics = self.metrics.clone();
        let body = BodyStream::new(req.into_body())
            .try_filter_map(|f| futures::future::ready(Ok(f.into_data().ok())))
            .inspect_ok(move |b: &Bytes| metrics.bytes_in(b.len() as u64))
            .map_err(std::io::Error::other);
        let r = self
            .core
            .put_block(
                archive,
                id,
                content_length,
                session.as_deref(),
                Box::pin(body),
            )
            .await?;
        self.metrics.block(r.created, start.elapsed().as_secs_f64());
        Ok(json(
            if r.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            },
            &r,
        ))
    }

    /// `POST …/blocks/bundle`: many small blocks in one request.
    async fn put_bundle(&self, req: Request<Incoming>, archive: &Name) -> Handled {
        let start = Instant::now();
        let session = session_header(req.headers())?;
        let limit = coffer_types::wire::BUNDLE_MAX_BYTES;
        let body = read_limited(req, limit).await?;
        self.metrics.bytes_in(body.len() as u64);
        let blocks = self
            .core
            .put_bundle(archive, session.as_deref(), body)
            .await?;
        let elapsed = start.elapsed().as_secs_f64();
        for b in &blocks {
            self.metrics.block(b.created, elapsed);
        }
        Ok(json(
            StatusCode::OK,
            &coffer_types::wire::PutBundleResponse { blocks },
        ))
    }

    async fn get_block(&self, req: &Request<Incoming>, archive: &Name, id: &str) -> Handled {
        let range = match req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
        {
            None => None,
            Some(h) => match parse_range(h) {
                RangeSpec::None => None,
                RangeSpec::From(first, last) => Some((first, last)),
                RangeSpec::Suffix(n) => {
                    let size = self.core.block_size(archive, id)?;
                    if n == 0 {
                        return Err(CoreError::RangeNotSatisfiable { size });
                    }
                    Some((size.saturating_sub(n), None))
                }
            },
        };
        let read = self.core.read_block(archive, id, range).await?;
        let metrics = self.metrics.clone();
        let stream = read
            .stream
            .inspect_ok(move |b| metrics.bytes_out(b.len() as u64))
            .map_ok(Frame::data)
            .map_err(|e| std::io::Error::other(e.to_string()));
        let body = BodyExt::boxed_unsync(StreamBody::new(stream));
        let mut b = Response::builder()
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::ACCEPT_RANGES, "bytes");
        b = match &read.range {
            Some(r) => b
                .status(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_LENGTH, r.end - r.start)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {}-{}/{}", r.start, r.end - 1, read.size),
                ),
            None => b.header(header::CONTENT_LENGTH, read.size),
        };
        Ok(b.body(body).expect("valid response"))
    }

    async fn read_json<T: DeserializeOwned>(&self, req: Request<Incoming>) -> Result<T, CoreError> {
        if let Some(ct) = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
        {
            if !ct.starts_with("application/json") {
                return Err(CoreError::InvalidRequest(format!(
                    "send JSON with content-type application/json, not {ct:?}"
                )));
            }
        }
        let limit = self.max_json;
        let bytes = read_limited(req, limit).await?;
        self.metrics.bytes_in(bytes.len() as u64);
        serde_json::from_slice(&bytes)
            .map_err(|e| CoreError::InvalidRequest(format!("invalid JSON body: {e}")))
    }

    // ---- admin API ----

    async fn admin(&self, req: Request<Incoming>, segs: &[&str]) -> (&'static str, Handled) {
        let m = req.method().clone();
        let route = match (segs, &m) {
            (["orgs"], &Method::GET) => "admin_list_orgs",
            (["orgs"], &Method::POST) => "admin_create_org",
            (["users"], &Method::GET) => "admin_list_users",
            (["users"], &Method::POST) => "admin_add_user",
            (["devices"], &Method::GET) => "admin_list_devices",
            (["devices"], &Method::POST) => "admin_enroll_device",
            (["devices", _], &Method::GET) => "admin_get_device",
            (["devices", _, "revoke"], &Method::POST) => "admin_revoke_device",
            (["devices", _, "rotate"], &Method::POST) => "admin_rotate_device",
            (["plugins"], &Method::GET) => "admin_list_plugins",
            (["plugins", _, "enable"], &Method::POST) => "admin_enable_plugin",
            (["plugins", _, "disable"], &Method::POST) => "admin_disable_plugin",
            (["plugins", _, "reload"], &Method::POST) => "admin_reload_plugin",
            (["plugins", _, "report"], &Method::POST) => "admin_run_report",
            (["archives", _, "retention-plan"], &Method::GET) => "admin_retention_plan",
            _ => return ("unknown", Err(not_served(&m, segs))),
        };
        if let Err(e) = bearer(req.headers()).and_then(|t| self.core.authenticate_admin(t)) {
            return (route, Err(e));
        }
        let r = async {
            match route {
                "admin_list_orgs" => Ok(json(
                    StatusCode::OK,
                    &OrgList {
                        orgs: self.core.orgs()?,
                    },
                )),
                "admin_create_org" => {
                    let b: CreateOrg = self.read_json(req).await?;
                    Ok(json(
                        StatusCode::CREATED,
                        &self.core.create_org(b.name, b.parent).await?,
                    ))
                }
                "admin_list_users" => Ok(json(
                    StatusCode::OK,
                    &UserList {
                        users: self.core.users()?,
                    },
                )),
                "admin_add_user" => {
                    let b: AddUser = self.read_json(req).await?;
                    Ok(json(
                        StatusCode::CREATED,
                        &self.core.add_user(b.org, b.name).await?,
                    ))
                }
                "admin_list_devices" => Ok(json(
                    StatusCode::OK,
                    &DeviceList {
                        devices: self.core.devices()?,
                    },
                )),
                "admin_enroll_device" => {
                    let b: EnrollDevice = self.read_json(req).await?;
                    Ok(json(
                        StatusCode::CREATED,
                        &self.core.enroll_device(b).await?,
                    ))
                }
                "admin_get_device" => Ok(json(StatusCode::OK, &self.core.device(&name(segs[1])?)?)),
                "admin_revoke_device" => Ok(json(
                    StatusCode::OK,
                    &self.core.revoke_device(&name(segs[1])?).await?,
                )),
                "admin_rotate_device" => Ok(json(
                    StatusCode::OK,
                    &self.core.rotate_device_token(&name(segs[1])?).await?,
                )),
                "admin_list_plugins" => Ok(json(
                    StatusCode::OK,
                    &PluginList {
                        plugins: self.core.plugins()?.list(),
                    },
                )),
                "admin_enable_plugin" | "admin_disable_plugin" => Ok(json(
                    StatusCode::OK,
                    &self
                        .core
                        .plugins()?
                        .set_enabled(segs[1], route == "admin_enable_plugin")?,
                )),
                "admin_reload_plugin" => Ok(json(
                    StatusCode::OK,
                    &self.core.plugins()?.reload(segs[1].to_string()).await?,
                )),
                "admin_run_report" => {
                    let b: RunReport = self.read_json(req).await?;
                    let (media, body) = self.core.plugins()?.report(segs[1].to_string(), b).await?;
                    let mut r = Response::new(full(body));
                    if let Ok(v) = HeaderValue::from_str(&media) {
                        r.headers_mut().insert(header::CONTENT_TYPE, v);
                    }
                    Ok(r)
                }
                "admin_retention_plan" => {
                    let plugin = req.uri().query().and_then(|q| {
                        q.split('&')
                            .find_map(|kv| kv.strip_prefix("plugin="))
                            .map(str::to_string)
                    });
                    Ok(json(
                        StatusCode::OK,
                        &self
                            .core
                            .plugins()?
                            .retention_plan(name(segs[1])?, plugin)
                            .await?,
                    ))
                }
                _ => Err(CoreError::Internal(format!("route {route} has no handler"))),
            }
        }
        .await;
        (route, r)
    }
}

/// A metric family: name, type, help, and its value for one plugin.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&coffer_types::wire::PluginInfo) -> Option<f64>,
);

/// Per-plugin series, from the plugin service's own counters.
fn plugin_metrics(core: &Coffer) -> String {
    use std::fmt::Write;
    let Ok(p) = core.plugins() else {
        return String::new();
    };
    let list = p.list();
    let mut out = String::new();
    let series: [Series; 7] = [
        (
            "coffer_plugin_calls",
            "counter",
            "Calls to the plugin",
            |i| Some(i.calls as f64),
        ),
        (
            "coffer_plugin_failures",
            "counter",
            "Failed calls (trap, timeout, limit, plugin error)",
            |i| Some(i.failures as f64),
        ),
        (
            "coffer_plugin_suspended",
            "gauge",
            "1 while the plugin is suspended",
            |i| Some(i.suspended_for_secs.map_or(0.0, |_| 1.0)),
        ),
        (
            "coffer_plugin_events_queued",
            "counter",
            "Events queued for an integration plugin",
            |i| Some(i.events_queued as f64),
        ),
        (
            "coffer_plugin_events_dropped",
            "counter",
            "Events dropped on a full queue",
            |i| Some(i.events_dropped as f64),
        ),
        (
            "coffer_plugin_latency_p50_seconds",
            "gauge",
            "Median call latency of the latest calls",
            |i| i.p50_us.map(|u| u as f64 / 1e6),
        ),
        (
            "coffer_plugin_latency_p99_seconds",
            "gauge",
            "99th percentile call latency of the latest calls",
            |i| i.p99_us.map(|u| u as f64 / 1e6),
        ),
    ];
    for (name, kind, help, get) in series {
        let (metric, suffix) = match kind {
            "counter" => (name, "_total"),
            _ => (name, ""),
        };
        let _ = writeln!(out, "# HELP {metric} {help}.");
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        for i in &list {
            if let Some(v) = get(i) {
                let _ = writeln!(out, "{metric}{suffix}{{plugin=\"{}\"}} {v}", i.name);
            }
        }
    }
    out
}

/// A whole request body of at most `limit` bytes.
async fn read_limited(req: Request<Incoming>, limit: usize) -> Result<Bytes, CoreError> {
    Ok(Limited::new(req.into_body(), limit)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                CoreError::BodyTooLarge {
                    limit: limit as u64,
                }
            } else {
                CoreError::BodyAborted(e.to_string())
            }
        })?
        .to_bytes())
}

/// The `coffer-session` header of an upload, if any.
fn session_header(headers: &http::HeaderMap) -> Result<Option<String>, CoreError> {
    headers
        .get("coffer-session")
        .map(|v| {
            v.to_str()
                .map(str::to_owned)
                .map_err(|_| CoreError::InvalidId("the coffer-session header is not text".into()))
        })
        .transpose()
}

fn agent_route(segs: &[&str], m: &Method) -> &'static str {
    match (segs, m) {
        (["whoami"], &Method::GET) => "whoami",
        (["archives", _, "blocks", "missing"], &Method::POST) => "missing_blocks",
        (["archives", _, "blocks", "bundle"], &Method::POST) => "put_bundle",
        (["archives", _, "blocks", "fetch"], &Method::POST) => "fetch_blocks",
        (["archives", _, "blocks", _], &Method::PUT) => "put_block",
        (["archives", _, "blocks", _], &Method::GET) => "get_block",
        (["archives", _, "blocks", _], &Method::HEAD) => "head_block",
        (["archives", _, "sessions"], &Method::POST) => "open_session",
        (["archives", _, "sessions", _], &Method::GET) => "get_session",
        (["archives", _, "sessions", _], &Method::DELETE) => "abort",
        (["archives", _, "sessions", _, "abort"], &Method::POST) => "abort",
        (["archives", _, "sessions", _, "progress"], &Method::POST) => "progress",
        (["archives", _, "sessions", _, "commit"], &Method::POST) => "commit",
        (["archives", _, "backups"], &Method::GET) => "list_backups",
        (["archives", _, "backups", _], &Method::GET) => "get_backup",
        (["archives", _, "refs", _], &Method::PUT) => "set_ref",
        (["archives", _, "refs", _], &Method::GET) => "get_ref",
        _ => "unknown",
    }
}

fn not_served(m: &Method, segs: &[&str]) -> CoreError {
    CoreError::NotFound(format!("no resource answers {m} {}", segs.join("/")))
}

fn name(s: &str) -> Result<Name, CoreError> {
    Name::new(s).map_err(|e| CoreError::InvalidId(e.to_string()))
}

fn bearer(headers: &HeaderMap) -> Result<&str, CoreError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or(CoreError::Unauthorized)
}

enum RangeSpec {
    /// No usable single range: serve the whole block (RFC 9110 allows it).
    None,
    From(u64, Option<u64>),
    Suffix(u64),
}

fn parse_range(h: &str) -> RangeSpec {
    let Some(spec) = h.trim().strip_prefix("bytes=") else {
        return RangeSpec::None;
    };
    if spec.contains(',') {
        return RangeSpec::None;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeSpec::None;
    };
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        (true, false) => b.parse().map(RangeSpec::Suffix).unwrap_or(RangeSpec::None),
        (false, true) => a
            .parse()
            .map(|a| RangeSpec::From(a, None))
            .unwrap_or(RangeSpec::None),
        (false, false) => match (a.parse(), b.parse()) {
            (Ok(a), Ok(b)) => RangeSpec::From(a, Some(b)),
            _ => RangeSpec::None,
        },
        (true, true) => RangeSpec::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_like_rfc_9110() {
        assert!(matches!(
            parse_range("bytes=0-99"),
            RangeSpec::From(0, Some(99))
        ));
        assert!(matches!(
            parse_range("bytes=100-"),
            RangeSpec::From(100, None)
        ));
        assert!(matches!(parse_range("bytes=-5"), RangeSpec::Suffix(5)));
        assert!(matches!(parse_range("bytes=0-1,4-5"), RangeSpec::None));
        assert!(matches!(parse_range("items=0-1"), RangeSpec::None));
        assert!(matches!(parse_range("bytes=x-1"), RangeSpec::None));
    }

    #[test]
    fn every_agent_route_is_named() {
        assert_eq!(
            agent_route(&["archives", "a", "blocks", "missing"], &Method::POST),
            "missing_blocks"
        );
        assert_eq!(
            agent_route(&["archives", "a", "blocks", "x"], &Method::PUT),
            "put_block"
        );
        assert_eq!(
            agent_route(&["archives", "a", "blocks", "bundle"], &Method::POST),
            "put_bundle"
        );
        assert_eq!(
            agent_route(&["archives", "a", "blocks", "fetch"], &Method::POST),
            "fetch_blocks"
        );
        assert_eq!(
            agent_route(&["archives", "a", "blocks", "x"], &Method::DELETE),
            "unknown"
        );
    }
}
