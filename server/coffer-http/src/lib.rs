//! Coffer's HTTP/2 front, and the only crate that names hyper, axum and
//! rustls.
//!
//! It owns the listener (TLS with ALPN `h2`, or cleartext h2c with prior
//! knowledge), the route table (`routes.rs`: every route with its handler,
//! access and body limit) and the gate every route passes (`gate.rs`:
//! authentication, permission, limits), the handlers by area (`handlers/`),
//! the OpenAPI description built from the table, the one mapping from
//! domain errors to HTTP statuses and JSON error bodies, request ids,
//! metrics, graceful shutdown, and the h2 transport the typed client
//! (`coffer-client`) uses.

mod app;
mod budget;
pub mod client;
mod config;
mod conn;
mod extract;
mod gate;
mod handlers;
mod metrics;
mod openapi;
pub mod outbound;
mod response;
mod routes;
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
