//! The agent side of docs/protocol.md, over HTTP/2 (TLS with ALPN h2, or h2c
//! with prior knowledge for `http://` URLs). Failed requests that can succeed
//! later (connection errors, 429, 5xx, 503, 507) are retried with backoff,
//! waiting at least what `Retry-After` asks.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use coffer_types::wire::{
    BackupInfo, BackupList, ErrorBody, MissingResponse, RefInfo, SessionInfo,
};
use coffer_types::BlockId;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::json;

const ATTEMPTS: u32 = 6;

/// A connection to the server for one archive. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
    pub archive: String,
    /// Paces uploads to `device_defaults.bandwidth_limit`.
    throttle: Option<std::sync::Arc<Throttle>>,
}

/// Uploads at most `rate` bytes per second on average: each upload waits
/// until the bytes before it have had their time.
#[derive(Debug)]
pub struct Throttle {
    rate: u64,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Throttle {
    pub fn new(bytes_per_sec: u64) -> Self {
        Self {
            rate: bytes_per_sec.max(1),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        }
    }

    /// Wait for the turn of `n` bytes.
    pub async fn take(&self, n: usize) {
        let start = {
            let mut next = self.next.lock().await;
            let now = tokio::time::Instant::now();
            let start = (*next).max(now);
            *next = start + Duration::from_secs_f64(n as f64 / self.rate as f64);
            start
        };
        tokio::time::sleep_until(start).await;
    }
}

/// An error answer from the server.
#[derive(Debug)]
pub struct ServerError {
    pub status: u16,
    pub body: Option<ErrorBody>,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.body {
            Some(b) => write!(
                f,
                "the server answered {} {}: {}",
                self.status, b.error.code, b.error.message
            ),
            None => write!(f, "the server answered {}", self.status),
        }
    }
}

impl std::error::Error for ServerError {}

impl Api {
    /// Connect (lazily) to `server` with `token`, trusting `ca_cert` (PEM) or,
    /// with `insecure`, any certificate. Asks the server which archive the
    /// token reaches.
    pub async fn connect(
        server: &str,
        token: &str,
        ca_cert: Option<&Path>,
        insecure: bool,
    ) -> anyhow::Result<Self> {
        // ring's provider for rustls, as the server uses; an error means one
        // is installed already (a second connect in the same process).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder()
            .http2_prior_knowledge()
            .http2_initial_stream_window_size(8 << 20)
            .http2_initial_connection_window_size(32 << 20)
            .http2_max_frame_size(256 << 10)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("coffer-agent/", env!("CARGO_PKG_VERSION")));
        // --insecure wins: a profile's CA file (which may be gone) is not read.
        if let Some(ca) = ca_cert.filter(|_| !insecure) {
            let pem = std::fs::read(ca)
                .with_context(|| format!("read CA certificate {}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .with_context(|| format!("parse CA certificate {}", ca.display()))?;
            b = b.tls_certs_only([cert]);
        }
        if insecure {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        let http = b.build().context("set up the HTTP client")?;
        let mut api = Self {
            http,
            base: server.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            archive: String::new(),
            throttle: None,
        };
        let who: serde_json::Value = api.call(Method::GET, "/v1/whoami", None).await?;
        api.archive = who["archive"]
            .as_str()
            .context("whoami answer has no archive")?
            .to_owned();
        Ok(api)
    }

    /// Pace uploads to `bytes_per_sec` (0: no limit).
    pub fn set_bandwidth_limit(&mut self, bytes_per_sec: u64) {
        self.throttle =
            (bytes_per_sec > 0).then(|| std::sync::Arc::new(Throttle::new(bytes_per_sec)));
    }

    /// The device defaults the server gives this device; None from a server
    /// that has none (older than `GET /v1/settings`).
    pub async fn settings(&self) -> anyhow::Result<Option<coffer_types::wire::DeviceSettings>> {
        let (status, bytes) = self
            .send(Method::GET, "/v1/settings", None, false, &[])
            .await?;
        if status.as_u16() == 404 {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(server_error(status, &bytes)).context("read this device's settings");
        }
        Ok(Some(
            serde_json::from_slice(&bytes).context("read this device's settings")?,
        ))
    }

    /// Store the archive key sealed to the escrow key `public_key`.
    pub async fn put_escrow(&self, public_key: &str, sealed: &[u8]) -> anyhow::Result<()> {
        let body = serde_json::to_vec(&coffer_types::wire::EscrowUpload {
            public_key: public_key.to_string(),
            sealed: hex::encode(sealed),
        })?;
        let (status, bytes) = self
            .send(
                Method::PUT,
                &self.path("escrow"),
                Some(body.into()),
                true,
                &[],
            )
            .await?;
        if !status.is_success() {
            return Err(server_error(status, &bytes)).context("store the escrowed key");
        }
        Ok(())
    }

    /// The archive's escrowed key, or `None` if the server holds none.
    pub async fn get_escrow(&self) -> anyhow::Result<Option<coffer_types::wire::EscrowInfo>> {
        let (status, bytes) = self
            .send(Method::GET, &self.path("escrow"), None, false, &[])
            .await?;
        match status.as_u16() {
            200 => Ok(Some(
                serde_json::from_slice(&bytes).context("read the escrowed key")?,
            )),
            404 => Ok(None),
            _ => Err(server_error(status, &bytes)).context("read the escrowed key"),
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/v1/archives/{}/{rest}", self.archive)
    }

    /// Send a request, retrying what can succeed later; returns status and body.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        json_body: bool,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        let url = format!("{}{path}", self.base);
        let mut delay = Duration::from_millis(200);
        let mut last_err = None;
        for attempt in 1..=ATTEMPTS {
            let mut rb = self
                .http
                .request(method.clone(), &url)
                .bearer_auth(&self.token);
            for (k, v) in headers {
                rb = rb.header(*k, *v);
            }
            if let Some(b) = &body {
                if json_body {
                    rb = rb.header("content-type", "application/json");
                }
                rb = rb.body(b.clone());
            }
            match rb.send().await {
                Ok(resp) => {
                    let status = resp.status();
                    // 429: this device is at its limit of requests or
                    // sessions in flight; 5xx: the server or its storage.
                    let retry = matches!(status.as_u16(), 429 | 500..=599);
                    let retry_after = resp
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.trim().parse::<u64>().ok())
                        .map(|s| Duration::from_secs(s.min(60)));
                    let bytes = match resp.bytes().await {
                        Ok(b) => b,
                        Err(e) => {
                            last_err = Some(
                                anyhow::Error::new(e)
                                    .context(format!("read answer to {method} {path}")),
                            );
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                            continue;
                        }
                    };
                    // An answer that says a retry cannot help (a quota)
                    // is final.
                    let final_answer = serde_json::from_slice::<ErrorBody>(&bytes)
                        .is_ok_and(|b| !b.error.retryable);
                    if retry && !final_answer && attempt < ATTEMPTS {
                        tokio::time::sleep(retry_after.map_or(delay, |r| r.max(delay))).await;
                        delay *= 2;
                        last_err = Some(anyhow::Error::new(server_error(status, &bytes)));
                        continue;
                    }
                    return Ok((status, bytes));
                }
                Err(e) => {
                    last_err =
                        Some(anyhow::Error::new(e).context(format!("{method} {}", self.base)));
                    if attempt < ATTEMPTS {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        }
        Err(last_err.expect("at least one attempt"))
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> anyhow::Result<T> {
        let body = body.map(|v| Bytes::from(serde_json::to_vec(&v).expect("JSON")));
        let (status, bytes) = self.send(method, path, body, true, &[]).await?;
        if !status.is_success() {
            return Err(server_error(status, &bytes).into());
        }
        serde_json::from_slice(&bytes)
            .with_context(|| format!("read the server's answer to {path}"))
    }

    pub async fn open_session(&self) -> anyhow::Result<SessionInfo> {
        self.call(Method::POST, &self.path("sessions"), Some(json!({})))
            .await
    }

    pub async fn progress(
        &self,
        session: &str,
        percent: f64,
        bytes: u64,
        files: u64,
    ) -> anyhow::Result<()> {
        let _: SessionInfo = self
            .call(
                Method::POST,
                &self.path(&format!("sessions/{session}/progress")),
                Some(json!({"percent": percent, "bytes": bytes, "files": files})),
            )
            .await?;
        Ok(())
    }

    pub async fn commit(
        &self,
        session: &str,
        manifest: BlockId,
        blocks: &[BlockId],
        files: u64,
        bytes: u64,
    ) -> anyhow::Result<BackupInfo> {
        let body = json!({"manifest": manifest, "blocks": blocks, "stats": {"files": files, "bytes": bytes, "percent": 100.0}});
        self.call(
            Method::POST,
            &self.path(&format!("sessions/{session}/commit")),
            Some(body),
        )
        .await
    }

    /// Of `ids`, those the server does not hold; the rest are pinned to the session.
    pub async fn missing(
        &self,
        ids: &[BlockId],
        session: Option<&str>,
    ) -> anyhow::Result<Vec<BlockId>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(10_000) {
            let r: MissingResponse = self
                .call(
                    Method::POST,
                    &self.path("blocks/missing"),
                    Some(json!({"ids": chunk, "session": session})),
                )
                .await?;
            out.extend(r.missing);
        }
        Ok(out)
    }

    pub async fn put_block(
        &self,
        id: &BlockId,
        blob: Bytes,
        session: Option<&str>,
    ) -> anyhow::Result<()> {
        if let Some(t) = &self.throttle {
            t.take(blob.len()).await;
        }
        let headers: Vec<(&str, &str)> =
            session.map(|s| ("coffer-session", s)).into_iter().collect();
        let (status, bytes) = self
            .send(
                Method::PUT,
                &self.path(&format!("blocks/{id}")),
                Some(blob),
                false,
                &headers,
            )
            .await?;
        if !status.is_success() {
            return Err(server_error(status, &bytes)).with_context(|| format!("upload block {id}"));
        }
        Ok(())
    }

    /// Upload several small blocks in one request (`POST …/blocks/bundle`);
    /// together at most `coffer_types::wire::BUNDLE_MAX_BYTES`.
    pub async fn put_bundle(
        &self,
        blocks: &[(BlockId, Bytes)],
        session: Option<&str>,
    ) -> anyhow::Result<()> {
        use coffer_types::wire::{push_record, BUNDLE_RECORD_HEADER};
        let size = blocks
            .iter()
            .map(|(_, b)| BUNDLE_RECORD_HEADER + b.len())
            .sum();
        let mut body = Vec::with_capacity(size);
        for (id, b) in blocks {
            push_record(&mut body, id, Some(b));
        }
        if let Some(t) = &self.throttle {
            t.take(body.len()).await;
        }
        let headers: Vec<(&str, &str)> =
            session.map(|s| ("coffer-session", s)).into_iter().collect();
        let (status, bytes) = self
            .send(
                Method::POST,
                &self.path("blocks/bundle"),
                Some(body.into()),
                false,
                &headers,
            )
            .await?;
        if !status.is_success() {
            return Err(server_error(status, &bytes))
                .with_context(|| format!("upload a bundle of {} blocks", blocks.len()));
        }
        Ok(())
    }

    /// Several whole blocks in one answer (`POST …/blocks/fetch`), in the
    /// order asked: `None` for a block the server does not hold. Together
    /// at most `coffer_types::wire::BUNDLE_MAX_BYTES`.
    pub async fn fetch_blocks(&self, ids: &[BlockId]) -> anyhow::Result<Vec<Option<Bytes>>> {
        use coffer_types::wire::{record_header, BUNDLE_RECORD_HEADER as H, FETCH_ABSENT};
        let body = serde_json::to_vec(&json!({ "ids": ids }))?;
        let (status, mut rest) = self
            .send(
                Method::POST,
                &self.path("blocks/fetch"),
                Some(body.into()),
                true,
                &[],
            )
            .await?;
        if !status.is_success() {
            return Err(server_error(status, &rest))
                .with_context(|| format!("fetch a bundle of {} blocks", ids.len()));
        }
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some((_, len)) = record_header(&rest).filter(|(got, _)| got == id) else {
                anyhow::bail!(
                    "the server's answer to a fetch of {} blocks is malformed at block {id}",
                    ids.len()
                );
            };
            if len == FETCH_ABSENT {
                out.push(None);
                rest = rest.slice(H..);
                continue;
            }
            let end = H + len as usize;
            anyhow::ensure!(
                rest.len() >= end,
                "the server's answer to a fetch ends inside block {id}"
            );
            out.push(Some(rest.slice(H..end)));
            rest = rest.slice(end..);
        }
        anyhow::ensure!(
            rest.is_empty(),
            "the server's answer to a fetch has {} bytes too many",
            rest.len()
        );
        Ok(out)
    }

    /// A block's bytes, or `None` if the server does not hold it.
    pub async fn get_block(&self, id: &BlockId) -> anyhow::Result<Option<Bytes>> {
        let (status, bytes) = self
            .send(
                Method::GET,
                &self.path(&format!("blocks/{id}")),
                None,
                false,
                &[],
            )
            .await?;
        match status.as_u16() {
            200 => Ok(Some(bytes)),
            404 => Ok(None),
            _ => Err(server_error(status, &bytes)).with_context(|| format!("read block {id}")),
        }
    }

    pub async fn backups(&self) -> anyhow::Result<Vec<BackupInfo>> {
        let l: BackupList = self.call(Method::GET, &self.path("backups"), None).await?;
        Ok(l.backups)
    }

    pub async fn backup(&self, id: &str) -> anyhow::Result<BackupInfo> {
        self.call(Method::GET, &self.path(&format!("backups/{id}")), None)
            .await
    }

    pub async fn get_ref(&self, name: &str) -> anyhow::Result<Option<RefInfo>> {
        let (status, bytes) = self
            .send(
                Method::GET,
                &self.path(&format!("refs/{name}")),
                None,
                false,
                &[],
            )
            .await?;
        match status.as_u16() {
            200 => Ok(Some(serde_json::from_slice(&bytes)?)),
            404 => Ok(None),
            _ => Err(server_error(status, &bytes).into()),
        }
    }

    /// Point reference `name` at `block`; false when the server keeps the
    /// reference it has (`409`: the write-once `key` names another block).
    pub async fn set_ref(&self, name: &str, block: BlockId) -> anyhow::Result<bool> {
        let (status, bytes) = self
            .send(
                Method::PUT,
                &self.path(&format!("refs/{name}")),
                Some(serde_json::to_vec(&json!({"block": block}))?.into()),
                true,
                &[],
            )
            .await?;
        if status.as_u16() == 409 && name == "key" {
            return Ok(false);
        }
        if !status.is_success() {
            return Err(server_error(status, &bytes).into());
        }
        Ok(true)
    }
}

fn server_error(status: StatusCode, body: &[u8]) -> ServerError {
    ServerError {
        status: status.as_u16(),
        body: serde_json::from_slice(body).ok(),
    }
}
