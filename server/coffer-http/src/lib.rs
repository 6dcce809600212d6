//! Coffer's HTTP/2 front, and the only crate that names hyper and rustls.
//!
//! It owns the listener (TLS with ALPN `h2`, or cleartext h2c with prior
//! knowledge), routing, authentication, the one mapping from domain errors to
//! HTTP statuses and JSON error bodies, request ids, metrics, graceful
//! shutdown, and the h2 client the admin CLI, the tests and the benchmark use.

pub mod client;
mod config;
mod metrics;
pub mod outbound;
mod response;
mod router;
mod server;
mod tls;

pub use config::{HttpConfig, TlsConfig, TlsMode};
pub use metrics::Metrics;
pub use server::Server;
pub use tls::{load_or_create_tls, TlsSetup};

/// Why the HTTP front could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    #[error("{op} {path}: {source}")]
    File {
        op: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
}
