//! The `[http]` and `[tls]` tables of the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `[http]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Address to listen on. Default `127.0.0.1:8443`; use `0.0.0.0:8443` to
    /// serve other machines.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The address people reach this server at (`https://coffer.example.com`):
    /// alert mails link to the device's console page under it.
    #[serde(default)]
    pub public_url: Option<String>,
    /// On SIGTERM/SIGINT: stop accepting, let in-flight requests finish for up
    /// to this many seconds, then stop. Default 30.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// Concurrent HTTP/2 streams per connection. Default 256.
    #[serde(default = "default_streams")]
    pub max_concurrent_streams: u32,
    /// Largest HTTP/2 frame the server accepts. Larger frames cost less CPU
    /// per byte on uploads. Default 262144 (256 KiB); 16384 to 16777215.
    #[serde(default = "default_frame")]
    pub max_frame_size: u32,
    /// HTTP/2 flow-control window per stream, in bytes. Default 4 MiB.
    #[serde(default = "default_stream_window")]
    pub stream_window_bytes: u32,
    /// HTTP/2 flow-control window per connection: the most request data one
    /// connection can have buffered in the server. Default 16 MiB.
    #[serde(default = "default_conn_window")]
    pub connection_window_bytes: u32,
    /// Largest JSON request body (block lists of commits and missing-block
    /// queries). Default 64 MiB, room for about a million block ids.
    #[serde(default = "default_json")]
    pub max_json_body_bytes: usize,
    /// Memory all buffered request bodies (block lists, bundles) and built
    /// answers (`blocks/fetch`) may hold at once; past it, requests are
    /// refused with `503 server_busy` and `Retry-After` until some finish.
    /// At least `max_json_body_bytes`. Default 128 MiB.
    #[serde(default = "default_body_memory")]
    pub body_memory_bytes: usize,
    /// Connections held at once. Default: from the open-files limit (raised
    /// to its hard limit at start), keeping 256 descriptors for storage,
    /// metadata and plugins. At the limit a newcomer takes the place of the
    /// connection idle the longest, or is answered `503 server_busy`.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// Seconds a new connection has to finish its TLS handshake and send
    /// the HTTP/2 preface. Default 10.
    #[serde(default = "default_handshake")]
    pub handshake_timeout_secs: u64,
    /// Seconds a connection may stay with no request in flight before it is
    /// closed (GOAWAY; clients reconnect when they need to). Default 120.
    #[serde(default = "default_idle")]
    pub idle_timeout_secs: u64,
    /// Seconds a request body may go without sending data before the
    /// request fails. Default 60.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// Requests one device may have in flight at once, over all its
    /// connections; past it, `429 too_many_requests` with `Retry-After`.
    /// Default 512.
    #[serde(default = "default_device_requests")]
    pub max_requests_per_device: usize,
    /// A file holding a token: `/metrics` then answers only requests with
    /// `Authorization: Bearer <token>` (read at each scrape). Unset: open.
    #[serde(default)]
    pub metrics_token_file: Option<PathBuf>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8443))
}
fn default_grace() -> u64 {
    30
}
fn default_streams() -> u32 {
    256
}
fn default_frame() -> u32 {
    256 << 10
}
fn default_stream_window() -> u32 {
    4 << 20
}
fn default_conn_window() -> u32 {
    16 << 20
}
fn default_json() -> usize {
    64 << 20
}
fn default_handshake() -> u64 {
    10
}
fn default_idle() -> u64 {
    120
}
fn default_body_timeout() -> u64 {
    60
}
fn default_device_requests() -> usize {
    512
}
fn default_body_memory() -> usize {
    128 << 20
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            public_url: None,
            shutdown_grace_secs: default_grace(),
            max_concurrent_streams: default_streams(),
            max_frame_size: default_frame(),
            stream_window_bytes: default_stream_window(),
            connection_window_bytes: default_conn_window(),
            max_json_body_bytes: default_json(),
            body_memory_bytes: default_body_memory(),
            max_connections: None,
            handshake_timeout_secs: default_handshake(),
            idle_timeout_secs: default_idle(),
            body_timeout_secs: default_body_timeout(),
            max_requests_per_device: default_device_requests(),
            metrics_token_file: None,
        }
    }
}

impl HttpConfig {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(u) = &self.public_url {
            if !(u.starts_with("https://") || u.starts_with("http://"))
                || u.contains(char::is_whitespace)
            {
                return Err(format!(
                    "http.public_url {u:?} is not an http:// or https:// URL"
                ));
            }
        }
        if !(16_384..=16_777_215).contains(&self.max_frame_size) {
            return Err(format!(
                "http.max_frame_size is {}; HTTP/2 allows 16384 to 16777215",
                self.max_frame_size
            ));
        }
        if self.stream_window_bytes < 65_535 || self.connection_window_bytes < 65_535 {
            return Err(
                "http.stream_window_bytes and http.connection_window_bytes must be at least 65535"
                    .into(),
            );
        }
        if self.stream_window_bytes > i32::MAX as u32
            || self.connection_window_bytes > i32::MAX as u32
        {
            return Err("http windows must be at most 2147483647 bytes".into());
        }
        if self.body_memory_bytes < self.max_json_body_bytes.max(2 * (16 << 20)) {
            return Err(format!(
                "http.body_memory_bytes is {}; it must be at least http.max_json_body_bytes \
                 ({}) and 32 MiB, or the largest requests could never be served",
                self.body_memory_bytes, self.max_json_body_bytes
            ));
        }
        for (key, v) in [
            ("handshake_timeout_secs", self.handshake_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
        ] {
            if v == 0 {
                return Err(format!("http.{key} must be at least 1"));
            }
        }
        if self.max_connections == Some(0) || self.max_requests_per_device == 0 {
            return Err(
                "http.max_connections and http.max_requests_per_device must be at least 1".into(),
            );
        }
        if let Some(f) = &self.metrics_token_file {
            match std::fs::read_to_string(f) {
                Ok(t) if !t.trim().is_empty() => {}
                Ok(_) => {
                    return Err(format!(
                        "http.metrics_token_file {} is empty; put a token in it",
                        f.display()
                    ))
                }
                Err(e) => return Err(format!("http.metrics_token_file {}: {e}", f.display())),
            }
        }
        if self.max_concurrent_streams == 0 {
            return Err("http.max_concurrent_streams must be at least 1".into());
        }
        Ok(())
    }
}

/// How the listener speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// TLS with a self-signed certificate generated at first start and kept
    /// in the data directory (`tls/cert.pem`, `tls/key.pem`). The default.
    #[default]
    SelfSigned,
    /// TLS with the certificate chain and key in `cert_file` / `key_file`.
    Files,
    /// Cleartext HTTP/2 with prior knowledge (h2c): only for loopback or
    /// behind a TLS-terminating proxy.
    Off,
}

/// The `[tls]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// `self_signed` (default), `files` or `off`.
    #[serde(default)]
    pub mode: TlsMode,
    /// With `files`: PEM certificate chain, leaf first.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// With `files`: PEM private key (PKCS#8, PKCS#1 or SEC1).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl TlsConfig {
    pub fn validate(&self) -> Result<(), String> {
        match (self.mode, &self.cert_file, &self.key_file) {
            (TlsMode::Files, Some(_), Some(_)) => Ok(()),
            (TlsMode::Files, _, _) => {
                Err("tls.mode is \"files\": set both tls.cert_file and tls.key_file".into())
            }
            (_, None, None) => Ok(()),
            _ => {
                Err("tls.cert_file and tls.key_file are used only with tls.mode = \"files\"".into())
            }
        }
    }
}
