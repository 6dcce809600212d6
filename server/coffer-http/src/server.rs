//! The listener: accept, TLS handshake (ALPN `h2`) or h2c, HTTP/2 with
//! upload-friendly settings, and graceful shutdown.
//!
//! Shutdown, in order: the accept loop stops (no new connections); every
//! connection is told to stop (GOAWAY: no new streams, in-flight requests
//! run on); after `shutdown_grace_secs` whatever is left is dropped. A dropped
//! upload never acknowledged anything, so nothing acknowledged is lost.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use coffer_core::Coffer;
use hyper::server::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use prometheus_client::registry::Registry;

use crate::app::App;
use crate::budget::{BodyBudget, ConnBudget, CONNECTION_ANSWER_BYTES};
use crate::config::HttpConfig;
use crate::metrics::Metrics;
use crate::tls::TlsSetup;

/// A configured server, ready to [`Server::run`] on a bound listener.
pub struct Server {
    app: Arc<App>,
    router: Router,
    config: HttpConfig,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

impl Server {
    /// `metrics` are the HTTP series, registered in `registry` with every
    /// other component's; `/metrics` serves `registry`.
    pub fn new(
        core: Coffer,
        config: HttpConfig,
        tls: Option<&TlsSetup>,
        metrics: Arc<Metrics>,
        registry: Arc<Registry>,
    ) -> Self {
        let routes = crate::routes::table();
        let openapi = serde_json::to_vec(&crate::openapi::document(&routes))
            .expect("the description serializes");
        let app = Arc::new(App::new(core, metrics, registry, &config, openapi.into()));
        let router = crate::routes::router(&app, routes);
        Self {
            app,
            router,
            config,
            tls: tls.map(|t| TlsAcceptor::from(t.config.clone())),
        }
    }

    /// Serve on `listener` until `shutdown` turns true, then shut down
    /// gracefully. Returns once every connection is closed or the grace
    /// period ran out.
    pub async fn run(self, listener: TcpListener, mut shutdown: watch::Receiver<bool>) {
        let graceful = GracefulShutdown::new();
        let mut h2 = http2::Builder::new(TokioExecutor::new());
        h2.timer(TokioTimer::new())
            .max_frame_size(self.config.max_frame_size)
            .initial_stream_window_size(self.config.stream_window_bytes)
            .initial_connection_window_size(self.config.connection_window_bytes)
            .adaptive_window(false)
            .max_concurrent_streams(self.config.max_concurrent_streams)
            // What one stream may have queued for a slow reader, past its
            // window: with the storage's read piece, a bound per stream.
            .max_send_buf_size(512 << 10)
            .keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20));
        let h2 = Arc::new(h2);
        loop {
            let accepted = tokio::select! {
                r = listener.accept() => r,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let app = self.app.clone();
            let router = self.router.clone();
            let app_metrics = self.app.metrics.clone();
            let h2 = h2.clone();
            let tls = self.tls.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let answers = ConnBudget(BodyBudget::new(CONNECTION_ANSWER_BYTES));
                let svc = service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                    let (app, router) = (app.clone(), router.clone());
                    req.extensions_mut().insert(answers.clone());
                    async move { Ok::<_, Infallible>(app.handle(router, req).await) }
                });
                let connections = app_metrics.connections().clone();
                connections.inc();
                async move { match tls {
                    Some(acceptor) => {
                        let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                            Ok(Ok(s)) => s,
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                return;
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                                return;
                            }
                        };
                        let conn = h2.serve_connection(TokioIo::new(stream), svc);
                        if let Err(e) = watcher.watch(conn).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    }
                    None => {
                        let conn = h2.serve_connection(TokioIo::new(tcp), svc);
                        if let Err(e) = watcher.watch(conn).await {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                    }
                } }
                .await;
                connections.dec();
            });
        }
        drop(listener);
        let grace = Duration::from_secs(self.config.shutdown_grace_secs);
        tracing::info!(
            connections = graceful.count(),
            grace_secs = grace.as_secs(),
            "shutting down: no new connections, finishing in-flight requests"
        );
        tokio::select! {
            _ = graceful.shutdown() => tracing::info!("all connections closed"),
            _ = tokio::time::sleep(grace) => tracing::warn!("grace period over; dropping the remaining connections"),
        }
    }
}
